#!/usr/bin/env bash
# The CUDA backend's checks on a real GPU, in one call (at most 5
# minutes; it stops itself at DEADLINE): parity with the CPU reference for
# both forms of the recurrence, a short `charlm train --device cuda` and
# `generate`, then training speed of both forms against PyTorch + cuDNN;
# time allowing, both forms with each step launched kernel by kernel
# rather than as a CUDA graph, NVIDIA's compute-sanitizer on a small parity
# run, the sequence kernels on fewer blocks at the lesson's size, spread
# over all multiprocessors at the larger ones, and without product tiles. For a machine with a GPU, python3 + torch, and neither a Rust
# toolchain nor a network. Build here, carry, run there:
#
#   bash scripts/build-gpu-binary.sh             # here: target/gpu-bin/charlm
#   run (device tool), carrying target/gpu-bin, with the command
#   bash scripts/gpu-check.sh                      # there, in the repo root
#
# (build-gpu-binary.sh links against glibc 2.17, so the binary starts on
# any image; a plain `cargo build --release -p charlm-trainer`, carried as
# target/release/charlm, needs glibc 2.34 there.) The carried tree must
# hold the binary, scripts/ and trainer/corpora/ (the bundled corpus both
# sides train on). Results go to
# stdout and, when $OUT is set (the device tool's folder), to
# $OUT/gpu-check.txt as well.
#
# Options (environment): DEADLINE (default 295): seconds from the start
# by which the script has finished: each stage's timeout is cut to the time
# left, and the optional stages are skipped when too little is left (the
# device tool's limit should leave a rerun's worth of room beyond it);
# CHARLM=path of the binary (default: target/gpu-bin/charlm if present,
# else target/release/charlm); SECONDS_PER_CONFIG
# (default 6); PROFILE_STEPS (default 20: after each timed run, that many
# steps with the GPU time of every phase of a step recorded and printed,
# `bench gpu --profile`); CONFIGS (default all: titles8,titles64,text256,big);
# SKIP_TORCH=1 to time charlm only; NVRTC_LIB, CUBLAS_LIB: paths of the
# libraries to use instead of searching; QUICK=1: tiny sizes, for a dry run
# of this script on the CPU simulator (scripts/gpu-check-on-sim.sh).
#
# Exit status: 0 when parity and the end-to-end run passed (speed is
# reported, not judged), 1 when either failed, 2 when something needed is
# missing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The binary: $CHARLM, else the one scripts/build-gpu-binary.sh made (glibc
# 2.17, starts on any image), else a plain release build.
BIN="${CHARLM:-}"
if [ -z "$BIN" ]; then
    BIN=target/release/charlm
    [ -x target/gpu-bin/charlm ] && BIN=target/gpu-bin/charlm
fi
SECS="${SECONDS_PER_CONFIG:-6}"
PROFILE_STEPS="${PROFILE_STEPS:-20}"
CONFIGS="${CONFIGS:-all}"
if [ "${QUICK:-0}" = 1 ]; then
    PARITY_ARGS=(--steps 3 --hidden 16); BIG_ARGS=(--steps 2 --hidden 40); WIDE_ARGS=(--steps 2 --hidden 16 --batch 16)
    E2E_ARGS=(--hidden 16 --seq-len 20 --max-steps 10)
    PROFILE_STEPS=2
else
    PARITY_ARGS=(--steps 200); BIG_ARGS=(--steps 50 --hidden 250); WIDE_ARGS=(--steps 20 --hidden 256 --batch 64)
    E2E_ARGS=(--hidden 128 --seq-len 100 --max-steps 300)
fi
SANITIZE_ARGS=(--steps 1 --hidden 16)
DEADLINE="${DEADLINE:-295}"
LOG="${OUT:-}"
[ -n "$LOG" ] && LOG="$LOG/gpu-check.txt" && : > "$LOG"

say() { if [ -n "$LOG" ]; then echo "$@" | tee -a "$LOG"; else echo "$@"; fi; }
# `within N cmd...`: runs cmd with a timeout of N seconds or the time left
# before DEADLINE, whichever is less (at least 5 s, so that a stage that has
# no time left fails at once and visibly rather than being skipped).
within() {
    local limit="$1" left=$(( DEADLINE - SECONDS ))
    shift
    [ "$left" -lt "$limit" ] && limit="$left"
    [ "$limit" -lt 5 ] && limit=5
    timeout "$limit" "$@"
    local rc=$?
    [ "$rc" = 124 ] && echo "gpu-check: stopped after $limit s (the stage's limit or the deadline): $*"
    return "$rc"
}
run_logged() { if [ -n "$LOG" ]; then "$@" 2>&1 | tee -a "$LOG"; else "$@" 2>&1; fi; }
# `time_for N WHAT`: whether an optional stage needing about N seconds fits
# before DEADLINE (if not, says WHAT was skipped).
time_for() {
    [ $(( DEADLINE - SECONDS )) -ge "$1" ] && return 0
    say "== $2: skipped ($SECONDS s of $DEADLINE gone)"
    return 1
}
# `judge RC WHAT`: an optional check's status: stopped for time (124) is
# reported but is no failure; any other non-zero status fails the check.
judge() {
    case "$1" in
        0) ;;
        124) say "$2: did not finish in time (not a failure)" ;;
        *) say "$2: FAILED (status $1)"; PARITY=1 ;;
    esac
    return "$1"
}

if [ ! -x "$BIN" ]; then
    echo "gpu-check: $BIN not found: build it with 'bash scripts/build-gpu-binary.sh' and carry target/gpu-bin" >&2
    exit 2
fi
PY="$(command -v python3 || true)"

# --- CUDA libraries -------------------------------------------------------
# charlm loads libcuda (the driver), libnvrtc and libcublas at run time. The
# driver is the system's; NVRTC and cuBLAS come first from the pip wheels
# that torch installed (nvidia-cuda-nvrtc-cu12, nvidia-cublas-cu12 or their
# CUDA 13 successors: the cuBLAS PyTorch itself uses, and an NVRTC recent
# enough for the GPU torch runs on), else from the system (ldconfig,
# /usr/local/cuda), else from .cache/nvrtc (scripts/install-nvrtc.sh). A
# folder of plain-named links (libnvrtc.so, libcublas.so) goes first on
# charlm's LD_LIBRARY_PATH, so whichever major version is found is the one
# loaded; PyTorch runs with the library path this script was given.
torch_site() { # the site-packages folder torch is installed in, if any
    [ -n "$PY" ] || return 0
    "$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("torch"); print(os.path.dirname(os.path.dirname(s.origin)) if s and s.origin else "")' 2>/dev/null
}
find_lib() { # $1 = libnvrtc | libcublas: prints the path of one real file
    local name="$1" p d
    d="$(torch_site)"
    if [ -n "$d" ] && [ -d "$d/nvidia" ]; then
        p="$(find "$d/nvidia" -maxdepth 4 -name "$name.so*" 2>/dev/null | grep -v -- '-builtins\|\.alt\.' | sort | head -n 1)"
        if [ -n "$p" ]; then echo "$p"; return; fi
    fi
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
    case "$lib" in
        libnvrtc) f="${NVRTC_LIB:-}" ;;
        libcublas) f="${CUBLAS_LIB:-}" ;;
    esac
    [ -n "$f" ] || f="$(find_lib "$lib")"
    if [ -z "$f" ]; then
        echo "gpu-check: $lib.so not found (system, torch's nvidia wheels, .cache/nvrtc)" >&2
        exit 2
    fi
    ln -sf "$f" "$LINKS/$lib.so"
    EXTRA="$EXTRA:$(dirname "$(readlink -f "$f")")"
    say "using $f ($(basename "$(readlink -f "$f")"))"
done
# PyTorch loads its own CUDA libraries: it keeps the path it came with.
TORCH_LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="$LINKS$EXTRA${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Compiled kernels are cached between the script's processes; somewhere
# writable whatever $HOME is.
export CHARLM_KERNEL_CACHE="${CHARLM_KERNEL_CACHE:-${TMPDIR:-/tmp}/charlm-kernels}"

say "== GPU"
if command -v nvidia-smi > /dev/null; then
    run_logged nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
# A binary built elsewhere may not start here (it needs glibc 2.34 or
# later): say why at once rather than fail every stage.
if ! VERSION="$("$BIN" --version 2>&1)"; then
    say "gpu-check: $BIN does not run on this machine: $VERSION"
    say "this machine's C library: $(ldd --version 2>&1 | head -n 1)"
    exit 2
fi
say "charlm: $BIN ($VERSION)"

# --- parity ---------------------------------------------------------------
# Both forms of the recurrence (CHARLM_CUDA_RECURRENCE): the sequence kernels
# (one cooperative launch per layer and pass) and the stepwise one (cuBLAS
# and a cell kernel per step); then the sequence kernels at a size where each
# block holds several units (250 = 32 blocks of 8, the last with 2) and the
# LSTM's backward kernel stages more than the default 48 KiB of shared
# memory (the limit raised by opting in); then at the running-text size
# (hidden 256, batch 64), where the plan differs again: the forward kernel
# stages with 4x4 product tiles, the backward one reads each step's gate
# gradients from L2 (they do not fit a block's shared memory), 2x2 tiles.
# If the sequence kernels fail (or hang until the timeout), the rest of the
# script runs stepwise only, so that it still finishes in time.
PARITY=0
STEPWISE_FAILED=0
FORMS="persistent stepwise"
for mode in persistent stepwise; do
    say "== parity: CUDA ($mode recurrence) against the CPU reference"
    if ! CHARLM_CUDA_RECURRENCE=$mode run_logged within 120 "$BIN" bench parity --device cuda "${PARITY_ARGS[@]}"; then
        PARITY=1
        [ "$mode" = persistent ] && FORMS="stepwise"
        [ "$mode" = stepwise ] && STEPWISE_FAILED=1
    fi
done
for args in "${BIG_ARGS[*]}" "${WIDE_ARGS[*]}"; do
    [ "$FORMS" = stepwise ] && break
    say "== parity: persistent recurrence, $args"
    # shellcheck disable=SC2086 # $args is a list of words
    if ! CHARLM_CUDA_RECURRENCE=persistent run_logged within 90 "$BIN" bench parity --device cuda $args; then
        PARITY=1
        FORMS="stepwise"
    fi
done
# Training steps run as CUDA graphs by default (the parity curves above
# replay them). If the stepwise form failed, try it once without graphs: if
# that passes, graphs are what failed, and the rest of the script runs
# without them (and says so), so that this GPU session still measures the rest.
if [ "$STEPWISE_FAILED" = 1 ] && [ -z "${CHARLM_CUDA_GRAPHS:-}" ]; then
    say "== parity failed: stepwise again without CUDA graphs (CHARLM_CUDA_GRAPHS=off)"
    if CHARLM_CUDA_GRAPHS=off CHARLM_CUDA_RECURRENCE=stepwise run_logged within 120 "$BIN" bench parity --device cuda "${PARITY_ARGS[@]}"; then
        say "gpu-check: parity passes without CUDA graphs and fails with them: the rest runs with CHARLM_CUDA_GRAPHS=off"
        export CHARLM_CUDA_GRAPHS=off
    fi
fi
E2E_FORM="auto"
[ "$FORMS" = stepwise ] && E2E_FORM="stepwise"

# --- end to end -------------------------------------------------------------
say "== charlm train --device cuda --batch 8 ${E2E_ARGS[*]}, then generate from its model"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/charlm-gpucheck.XXXXXX")"
trap 'rm -rf "$LINKS" "$WORK"' EXIT
if CHARLM_CUDA_RECURRENCE=$E2E_FORM run_logged within 90 "$BIN" train --device cuda --batch 8 "${E2E_ARGS[@]}" --out "$WORK/run" \
    && run_logged within 30 "$BIN" generate --model "$WORK/run/model.clm" --prompt "ROMEO:" --max-chars 120; then
    say "end to end: passed"
else
    say "end to end: FAILED"
    PARITY=1
fi
verdict() { if [ "$PARITY" = 0 ]; then say "gpu-check: parity passed"; else say "gpu-check: PARITY FAILED"; fi; }
verdict
say "(${SECONDS} s so far)"

# --- speed ----------------------------------------------------------------
say "== speed: training characters per second, $SECS s per configuration, then $PROFILE_STEPS steps profiled"
: > "$WORK/charlm-persistent.txt"
for mode in $FORMS; do
    CHARLM_CUDA_RECURRENCE=$mode run_logged within 100 "$BIN" bench gpu --device cuda --config "$CONFIGS" --seconds "$SECS" --profile "$PROFILE_STEPS" > "$WORK/charlm-$mode.txt"
    cat "$WORK/charlm-$mode.txt"
done
if [ "${SKIP_TORCH:-0}" != 1 ] && [ -n "$PY" ]; then
    LD_LIBRARY_PATH="$TORCH_LD_LIBRARY_PATH" run_logged within 120 "$PY" scripts/torch_train_gpu.py --config "$CONFIGS" --seconds "$SECS" > "$WORK/torch.txt"
    cat "$WORK/torch.txt"
else
    : > "$WORK/torch.txt"
fi
say ""
if [ -n "$PY" ]; then
    run_logged "$PY" scripts/gpu_table.py "$WORK/charlm-persistent.txt" "$WORK/charlm-stepwise.txt" "$WORK/torch.txt" "$SECS"
fi
# Optional, first: the same runs with each step launched kernel by kernel
# (CHARLM_CUDA_GRAPHS=off) instead of as a CUDA graph (the default), at the
# titles sizes, where launches rather than arithmetic bound a step: what
# the graphs gain, and whether `on` should stay the default.
if [ "${CHARLM_CUDA_GRAPHS:-on}" = on ] && time_for $(( 4 * SECS + 30 )) "steps without CUDA graphs"; then
    OFF_CONFIGS="$CONFIGS"
    [ "$CONFIGS" = all ] && OFF_CONFIGS="titles8,titles64"
    for mode in $FORMS; do
        say "== without CUDA graphs (CHARLM_CUDA_GRAPHS=off), $mode recurrence: $OFF_CONFIGS"
        CHARLM_CUDA_GRAPHS=off CHARLM_CUDA_RECURRENCE=$mode run_logged within 40 "$BIN" bench gpu --device cuda \
            --config "$OFF_CONFIGS" --seconds "$SECS" | tee "$WORK/nographs-$mode.txt"
        # graphs on (the speed runs above) against off, per configuration
        awk -v form="$mode" '
            /^RESULT/ { if (FILENAME == ARGV[1]) on[$2] = $3; else if ($2 in on) printf "graphs on / off, %s, %s: %s / %s chars/s = %.2fx\n", form, $2, on[$2], $3, on[$2] / $3 }
        ' "$WORK/charlm-$mode.txt" "$WORK/nographs-$mode.txt" | while read -r line; do say "$line"; done
    done
fi

# Optional: NVIDIA's compute-sanitizer (in the CUDA toolkit) on a tiny
# parity run (every kernel: LSTM and GRU, 1 to 4 layers, dropout, padding):
# memcheck (out-of-bounds and misaligned device accesses) with the sequence
# kernels, racecheck (shared-memory hazards) and synccheck (barrier and
# warp-shuffle misuse) on them with 2x2 product tiles forced (the tiled
# path's shuffles), then memcheck stepwise. What the simulator cannot see,
# seen on the GPU itself. An error found is reported as "SANITIZER
# REPORTED ERRORS", for the session to read (the tools see cuBLAS's
# kernels too), but does not change the exit status, which is parity's; a
# missing sanitizer or too little time skips it (the sanitizers slow
# kernels down by 10 to 1000 times, hence the tiny size).
SANITIZER="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)"
if [ -z "$SANITIZER" ]; then
    say "== compute-sanitizer: not found, skipped"
else
    for check in "memcheck persistent -" "racecheck persistent 2" "synccheck persistent 2" "memcheck stepwise -"; do
        read -r tool form tile <<< "$check"
        [ "$tile" = - ] && tile=""
        time_for 50 "compute-sanitizer --tool $tool ($form)" || continue
        say "== compute-sanitizer --tool $tool, $form recurrence${tile:+, tile $tile}, ${SANITIZE_ARGS[*]}"
        CHARLM_CUDA_RECURRENCE=$form CHARLM_CUDA_SEQ_TILE=$tile run_logged within 60 "$SANITIZER" --tool "$tool" \
            --error-exitcode 3 --print-limit 20 "$BIN" bench parity --device cuda "${SANITIZE_ARGS[@]}" \
            | tee "$WORK/sanitizer.txt"
        rc=$?
        # Some machines (a GPU behind gVisor, for one) refuse the
        # sanitizer: that says nothing of charlm, so it is no failure.
        if grep -qi 'device not supported\|failed to initialize' "$WORK/sanitizer.txt"; then
            say "compute-sanitizer cannot run on this machine ($(grep -i -m 1 'device not supported\|failed to initialize' "$WORK/sanitizer.txt" | sed 's/^=* *//')): skipped, not a failure"
            break
        fi
        case "$rc" in
            0) say "compute-sanitizer --tool $tool ($form): no error" ;;
            124) say "compute-sanitizer --tool $tool ($form): did not finish in time (not a failure)" ;;
            *) say "compute-sanitizer --tool $tool ($form): SANITIZER REPORTED ERRORS (status $rc; the reports are above)" ;;
        esac
    done
fi

# Optional: the lesson's size on fewer blocks than the default 32
# (CHARLM_CUDA_SEQ_BLOCKS=8, then 16). There a step's products are a
# fraction of a microsecond per block and each step ends at a grid barrier
# that every block must reach: whether fewer, busier blocks meet there
# faster decides the default plan for small layers.
if [ "$FORMS" != stepwise ] && time_for $(( 2 * SECS + 30 )) "the sequence kernels on fewer blocks"; then
    FEW_CONFIGS="$CONFIGS"
    [ "$CONFIGS" = all ] && FEW_CONFIGS="titles8"
    for n in 8 16; do
        say "== the sequence kernels on about $n blocks (CHARLM_CUDA_SEQ_BLOCKS=$n): $FEW_CONFIGS"
        CHARLM_CUDA_RECURRENCE=persistent CHARLM_CUDA_SEQ_BLOCKS=$n run_logged within 30 "$BIN" bench gpu --device cuda \
            --config "$FEW_CONFIGS" --seconds "$SECS"
    done
fi

# Optional: the sequence kernels spread over all multiprocessors
# (CHARLM_CUDA_SEQ_BLOCKS=all, one block on each) instead of about 32
# blocks, at the larger sizes, where 32 blocks leave most of the GPU idle
# during the recurrence: parity at the running-text plan, then speed.
if [ "$FORMS" != stepwise ] && time_for $(( 2 * SECS + 60 )) "the sequence kernels on all multiprocessors"; then
    SPREAD_CONFIGS="$CONFIGS"
    [ "$CONFIGS" = all ] && SPREAD_CONFIGS="text256,big"
    say "== the sequence kernels on all multiprocessors (CHARLM_CUDA_SEQ_BLOCKS=all): parity ${WIDE_ARGS[*]}, then $SPREAD_CONFIGS"
    CHARLM_CUDA_RECURRENCE=persistent CHARLM_CUDA_SEQ_BLOCKS=all run_logged within 45 "$BIN" bench parity \
        --device cuda "${WIDE_ARGS[@]}"
    if judge $? "parity on all multiprocessors"; then
        CHARLM_CUDA_RECURRENCE=persistent CHARLM_CUDA_SEQ_BLOCKS=all run_logged within 60 "$BIN" bench gpu --device cuda \
            --config "$SPREAD_CONFIGS" --seconds "$SECS"
    fi
fi

# Optional, last: the same sequence kernels with each thread computing one
# product at a time (no 2x2 / 4x4 tiles), where the plan tiles: what the
# tiles gain. Skipped when the deadline leaves too little time.
if [ "$FORMS" != stepwise ] && time_for $(( 2 * SECS + 20 )) "the sequence kernels untiled"; then
    TILE_CONFIGS="$CONFIGS"
    [ "$CONFIGS" = all ] && TILE_CONFIGS="titles64,text256"
    say "== the sequence kernels untiled (CHARLM_CUDA_SEQ_TILE=1): $TILE_CONFIGS"
    CHARLM_CUDA_RECURRENCE=persistent CHARLM_CUDA_SEQ_TILE=1 run_logged within 60 "$BIN" bench gpu --device cuda \
        --config "$TILE_CONFIGS" --seconds "$SECS"
fi
say "(${SECONDS} s in all)"
verdict
exit $(( PARITY == 0 ? 0 : 1 ))
