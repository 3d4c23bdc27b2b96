#!/usr/bin/env bash
# Builds the fuzzers' seed corpora from the committed fixture models.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/load corpus/generate
for m in ../tests/fixtures/*.clm; do
    name=$(basename "$m" .clm)
    cp "$m" "corpus/load/$name"
    # temperature 0.8, seed 7, 40 characters, prompt "the "
    { printf '\xcd\xcc\x4c\x3f\x07\x00\x00\x00\x00\x00\x00\x00\x28\x04the '; cat "$m"; } > "corpus/generate/$name"
done
