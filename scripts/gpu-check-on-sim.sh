#!/usr/bin/env bash
# A dry run of scripts/gpu-check.sh on the CPU simulator of the CUDA driver
# and cuBLAS (cuda-sim/): every step of the script, with tiny sizes and
# PyTorch left out, so that a session with a real GPU does not spend its
# device time on a broken script. It runs the binary that such a session
# carries (scripts/build-gpu-binary.sh: glibc 2.17), or $CHARLM when set.
# Speed figures from it mean nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${CHARLM:-$(bash scripts/build-gpu-binary.sh)}"
sim="$(cargo run -q -p charlm-cuda-sim)"
nvrtc="$(bash scripts/install-nvrtc.sh)"
export LD_LIBRARY_PATH="$sim:$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
CHARLM="$bin" QUICK=1 DEADLINE=1200 SKIP_TORCH=1 CONFIGS=titles8 SECONDS_PER_CONFIG=1 CUBLAS_LIB="$sim/libcublas.so.12" \
    NVRTC_LIB="$(ls "$nvrtc"/libnvrtc.so.* | grep -v builtins | head -n 1)" bash scripts/gpu-check.sh
