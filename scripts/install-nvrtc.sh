#!/usr/bin/env bash
# Installs NVIDIA's NVRTC library (the runtime CUDA C++ compiler) from PyPI's
# `nvidia-cuda-nvrtc-cu12` wheel into a cache folder, without a GPU and
# without a CUDA toolkit, and prints the folder that holds libnvrtc.so.12.
#
#   export LD_LIBRARY_PATH="$(bash scripts/install-nvrtc.sh):${LD_LIBRARY_PATH:-}"
#   cargo test -p charlm-trainer --test cuda_nvrtc
#
# The cache folder is $CHARLM_NVRTC_CACHE, default .cache/nvrtc in the
# repository (git-ignored). A second run finds the library and installs
# nothing. Progress goes to stderr; stdout is only the folder.
set -euo pipefail

VERSION="${CHARLM_NVRTC_VERSION:-12.9.86}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CHARLM_NVRTC_CACHE:-$ROOT/.cache/nvrtc}"
LIB="$CACHE/$VERSION/nvidia/cuda_nvrtc/lib"

if [ ! -e "$LIB/libnvrtc.so.12" ]; then
    PY="$(command -v python3 || command -v python || true)"
    if [ -z "$PY" ]; then
        echo "install-nvrtc: python3 with pip is needed to fetch nvidia-cuda-nvrtc-cu12" >&2
        exit 1
    fi
    echo "install-nvrtc: installing nvidia-cuda-nvrtc-cu12==$VERSION into $CACHE/$VERSION" >&2
    mkdir -p "$CACHE"
    TMP="$(mktemp -d "$CACHE/.tmp.XXXXXX")"
    trap 'rm -rf "$TMP"' EXIT
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --target "$TMP" "nvidia-cuda-nvrtc-cu12==$VERSION" >&2
    if [ ! -e "$TMP/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ]; then
        echo "install-nvrtc: the wheel has no nvidia/cuda_nvrtc/lib/libnvrtc.so.12" >&2
        exit 1
    fi
    rm -rf "${CACHE:?}/$VERSION"
    mv "$TMP" "$CACHE/$VERSION"
    trap - EXIT
fi
# cudarc also tries the unversioned name; give it one.
[ -e "$LIB/libnvrtc.so" ] || ln -s libnvrtc.so.12 "$LIB/libnvrtc.so"
echo "$LIB"
