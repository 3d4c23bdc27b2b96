#!/usr/bin/env bash
# Builds the fuzzers' seed corpora from the committed models: the test
# fixtures and the small models in fuzz/seeds/ (made by
# `cargo run -p charlm-tests --bin make-fuzz-seeds`).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/load corpus/generate corpus/sample
for m in ../tests/fixtures/*.clm seeds/*.clm; do
    name=$(basename "$m" .clm)
    cp "$m" "corpus/load/$name"
    # temperature 0.8, seed 7, 40 characters, a 4-byte prompt
    { printf '\xcd\xcc\x4c\x3f\x07\x00\x00\x00\x00\x00\x00\x00\x28\x04ab x'; cat "$m"; } > "corpus/generate/$name"
done
# sample: temperature 0.8, top-k 3, top-p 0.9, seed 7, then logits -inf
# (padding), 1, 2, 2, -1 (a tie at the top)
printf '\xcd\xcc\x4c\x3f\x03\x00\x66\x66\x66\x3f\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\xff\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x00\x40\x00\x00\x80\xbf' > corpus/sample/tie
