#!/usr/bin/env bash
# The CUDA backend's checks on a real GPU, in one call (about 3 minutes,
# under 5): parity with the CPU reference, then training speed against
# PyTorch + cuDNN. For a machine with a GPU, python3 + torch, and neither
# a Rust toolchain nor a network. Build here, carry, run there:
#
#   cargo build --release -p charlm-trainer       # here: target/release/charlm
#   run (device tool), carrying target/release/charlm, with the command
#   bash scripts/gpu-check.sh                      # there, in the repo root
#
# The carried tree must hold target/release/charlm, scripts/ and
# trainer/corpora/ (the bundled corpus both sides train on). Results go to
# stdout and, when $OUT is set (the device tool's folder), to
# $OUT/gpu-check.txt as well.
#
# Options (environment): CHARLM=path of the binary; SECONDS_PER_CONFIG
# (default 8); SKIP_TORCH=1 to time charlm only.
#
# Exit status: 0 when parity passed (speed is reported, not judged), 1 when
# parity failed, 2 when something needed is missing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${CHARLM:-target/release/charlm}"
SECS="${SECONDS_PER_CONFIG:-8}"
LOG="${OUT:-}"
[ -n "$LOG" ] && LOG="$LOG/gpu-check.txt" && : > "$LOG"

say() { if [ -n "$LOG" ]; then echo "$@" | tee -a "$LOG"; else echo "$@"; fi; }
run_logged() { if [ -n "$LOG" ]; then "$@" 2>&1 | tee -a "$LOG"; else "$@" 2>&1; fi; }

if [ ! -x "$BIN" ]; then
    echo "gpu-check: $BIN not found: build it with 'cargo build --release -p charlm-trainer' and carry it" >&2
    exit 2
fi
PY="$(command -v python3 || true)"

# --- CUDA libraries -------------------------------------------------------
# charlm loads libcuda (the driver), libnvrtc and libcublas at run time. The
# driver is the system's; NVRTC and cuBLAS come from the system (ldconfig,
# /usr/local/cuda) or else from the pip wheels that torch installed
# (nvidia-cuda-nvrtc-cu12, nvidia-cublas-cu12 or their CUDA 13 successors),
# or from .cache/nvrtc (scripts/install-nvrtc.sh). A folder of plain-named
# links (libnvrtc.so, libcublas.so) goes first on LD_LIBRARY_PATH, so
# whichever major version is found is the one loaded.
find_lib() { # $1 = libnvrtc | libcublas: prints the path of one real file
    local name="$1" p
    p="$(ldconfig -p 2>/dev/null | awk -v n="$name.so" '$1 ~ "^"n {print $NF; exit}')"
    if [ -n "$p" ] && [ -e "$p" ]; then echo "$p"; return; fi
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        p="$(ls "$d/$name".so* 2>/dev/null | grep -v -- '-builtins\|\.alt\.' | head -n 1)"
        if [ -n "$p" ]; then echo "$p"; return; fi
    done
    if [ -n "$PY" ]; then
        local sp
        sp="$("$PY" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)"
        while IFS= read -r d; do
            [ -d "$d/nvidia" ] || [ -d "$d/torch/lib" ] || continue
            p="$(find "$d/nvidia" "$d/torch/lib" -maxdepth 4 -name "$name.so*" 2>/dev/null | grep -v -- '-builtins\|\.alt\.' | sort | head -n 1)"
            if [ -n "$p" ]; then echo "$p"; return; fi
        done <<< "$sp"
    fi
    p="$(ls .cache/nvrtc/*/nvidia/cuda_nvrtc/lib/"$name".so.* 2>/dev/null | grep -v -- '-builtins\|\.alt\.' | head -n 1)"
    [ -n "$p" ] && echo "$p"
}

LINKS="$(mktemp -d "${TMPDIR:-/tmp}/charlm-cudalibs.XXXXXX")"
trap 'rm -rf "$LINKS"' EXIT
EXTRA=""
for lib in libnvrtc libcublas; do
    f="$(find_lib "$lib")"
    if [ -z "$f" ]; then
        echo "gpu-check: $lib.so not found (system, torch's nvidia wheels, .cache/nvrtc)" >&2
        exit 2
    fi
    ln -sf "$f" "$LINKS/$lib.so"
    EXTRA="$EXTRA:$(dirname "$(readlink -f "$f")")"
    say "using $f"
done
export LD_LIBRARY_PATH="$LINKS$EXTRA${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

say "== GPU"
if command -v nvidia-smi > /dev/null; then
    run_logged nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
say "charlm: $("$BIN" --version)"

# --- parity ---------------------------------------------------------------
say "== parity: CUDA against the CPU reference"
run_logged timeout 150 "$BIN" bench parity --device cuda --steps 200
PARITY=$?  # pipefail: the command's status, not tee's

# --- speed ----------------------------------------------------------------
say "== speed: training characters per second, $SECS s per configuration"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/charlm-gpucheck.XXXXXX")"
trap 'rm -rf "$LINKS" "$WORK"' EXIT
run_logged timeout 120 "$BIN" bench gpu --device cuda --config all --seconds "$SECS" > "$WORK/charlm.txt"
cat "$WORK/charlm.txt"
if [ "${SKIP_TORCH:-0}" != 1 ] && [ -n "$PY" ]; then
    run_logged timeout 150 "$PY" scripts/torch_train_gpu.py --config all --seconds "$SECS" > "$WORK/torch.txt"
    cat "$WORK/torch.txt"
else
    : > "$WORK/torch.txt"
fi
say ""
if [ -n "$PY" ]; then
    run_logged "$PY" scripts/gpu_table.py "$WORK/charlm.txt" "$WORK/torch.txt" "$SECS"
fi
if [ "$PARITY" = 0 ]; then say "gpu-check: parity passed"; else say "gpu-check: PARITY FAILED (status $PARITY)"; fi
exit $(( PARITY == 0 ? 0 : 1 ))
