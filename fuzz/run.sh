#!/usr/bin/env bash
# Runs the fuzz targets for a bounded time each (default 60 s), as CI does:
#   bash fuzz/run.sh [SECONDS]
# Needs the nightly toolchain and cargo-fuzz (installed if missing). Exits
# non-zero on the first crash; libFuzzer's report is in fuzz/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
bash seeds.sh
for target in load generate sample; do
    if ! cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=65536 >"$target.log" 2>&1; then
        tail -n 40 "$target.log"
        echo "fuzz target $target FAILED (see fuzz/$target.log and fuzz/artifacts/$target)"
        exit 1
    fi
    echo "fuzz target $target: $(grep -E '^#[0-9]+' "$target.log" | tail -n 1)"
done
