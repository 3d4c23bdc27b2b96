#!/usr/bin/env bash
# Runs a command with the CUDA simulator (cuda-sim/) in place of the CUDA
# driver and cuBLAS, and NVRTC from scripts/install-nvrtc.sh, e.g.
#
#   bash scripts/cuda-sim.sh target/release/charlm bench parity --device cuda --hidden 16 --steps 30
#   CHARLM_CUDA_SIM_TRACE=1 bash scripts/cuda-sim.sh target/release/charlm train --device cuda --max-steps 5
#
# The simulator runs the CUDA backend's Rust side and kernels on the CPU,
# slowly; it proves what they compute, not how fast (see cuda-sim/src/lib.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
sim="$(cargo run -q -p charlm-cuda-sim)"
nvrtc="$(bash scripts/install-nvrtc.sh)"
cd - > /dev/null
export LD_LIBRARY_PATH="$sim:$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
