#!/usr/bin/env bash
# The figures of docs/BENCHMARKS.md ("Firmware"): the benchmark model (1-layer
# LSTM, hidden 128, 84 ids, f16) under QEMU -icount shift=0, with the
# Cortex-M4F kernel, with the portable kernel, and without diagnostics (the
# flash a product build needs); then the same model with i8 weights
# (`charlm export --weights i8`) on the Cortex-M4F kernel, in the default
# build and in the i8-only product build. Prints the five reports.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
model=${BENCH_MODEL:-/tmp/charlm-bench-lstm128.clm}
model_i8=${model%.clm}-i8.clm
(cd "$root" && cargo run -q --release -p charlm-tests --bin make-bench-model -- "$model" \
    && cargo run -q --release -p charlm-trainer -- export "$model" --weights i8 --out "$model_i8" --force > /dev/null)
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
cd "$here"
for features in "" "--features portable-kernel" "--no-default-features --features f16"; do
    printf '\n### CHARLM_MODEL=%s cargo run --release %s\n' "$model" "$features"
    CHARLM_MODEL=$model cargo run -q --release $features 2>&1 >/dev/null | grep -v '^case '
done
for features in "" "--no-default-features --features int8"; do
    printf '\n### CHARLM_MODEL=%s cargo run --release %s\n' "$model_i8" "$features"
    CHARLM_MODEL=$model_i8 cargo run -q --release $features 2>&1 >/dev/null | grep -v '^case '
done
