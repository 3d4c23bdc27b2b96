#!/usr/bin/env bash
# Rewrites firmware-demo/golden/<model>.txt, the committed text of the
# firmware's default model: `charlm generate` (the host binary) run once per
# line of cases.tsv, outputs concatenated. Run it when the default model or
# cases.tsv changes on purpose, then review the diff; the QEMU parity test
# (tests/tests/firmware_qemu.rs) checks firmware and host against it.
#
#   firmware-demo/make-golden.sh [MODEL.clm]   (default: tests/fixtures/shakespeare-lstm128.clm)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-tests/fixtures/shakespeare-lstm128.clm}
cd "$root"
cargo build -q --release -p charlm-trainer --bin charlm
charlm=${CARGO_TARGET_DIR:-$root/target}/release/charlm
out=firmware-demo/golden/$(basename "$model" .clm).txt
: > "$out"
grep -v '^#' firmware-demo/cases.tsv | grep -v '^$' |
  while IFS=$'\t' read -r prompt temperature seed max_chars top_k top_p; do
    "$charlm" generate --model "$model" --prompt "$prompt" --temperature "$temperature" \
      --seed "$seed" --max-chars "$max_chars" --top-k "${top_k:-0}" --top-p "${top_p:-1}" >> "$out"
  done
echo "wrote $out ($(wc -l < "$out") texts)"
