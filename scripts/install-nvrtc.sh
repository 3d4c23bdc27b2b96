#!/usr/bin/env bash
# Installs NVIDIA's NVRTC library (the runtime CUDA C++ compiler) from PyPI
# into a cache folder, without a GPU and without a CUDA toolkit, and prints
# the folder that holds it (libnvrtc.so.12 or .13, and a libnvrtc.so link,
# the name charlm loads).
#
#   export LD_LIBRARY_PATH="$(bash scripts/install-nvrtc.sh):${LD_LIBRARY_PATH:-}"
#   cargo test -p charlm-trainer --test cuda_nvrtc
#
# CHARLM_NVRTC_VERSION picks the release: 12.x comes from the wheel
# `nvidia-cuda-nvrtc-cu12` (the default, 12.9.86), 13.x from
# `nvidia-cuda-nvrtc` (CI also compiles the kernels with 13.0.88, the CUDA
# of the GPU machines' PyTorch). The cache folder is $CHARLM_NVRTC_CACHE,
# default .cache/nvrtc in the repository (git-ignored). A second run finds
# the library and installs nothing. Progress goes to stderr; stdout is only
# the folder.
set -euo pipefail

VERSION="${CHARLM_NVRTC_VERSION:-12.9.86}"
MAJOR="${VERSION%%.*}"
case "$MAJOR" in
    12) PACKAGE=nvidia-cuda-nvrtc-cu12 SUB=nvidia/cuda_nvrtc/lib ;;
    13) PACKAGE=nvidia-cuda-nvrtc SUB=nvidia/cu13/lib ;;
    *)
        echo "install-nvrtc: CHARLM_NVRTC_VERSION=$VERSION: use a 12.x or 13.x release" >&2
        exit 2
        ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CHARLM_NVRTC_CACHE:-$ROOT/.cache/nvrtc}"
LIB="$CACHE/$VERSION/$SUB"
SONAME="libnvrtc.so.$MAJOR"

if [ ! -e "$LIB/$SONAME" ]; then
    PY="$(command -v python3 || command -v python || true)"
    if [ -z "$PY" ]; then
        echo "install-nvrtc: python3 with pip is needed to fetch $PACKAGE" >&2
        exit 1
    fi
    echo "install-nvrtc: installing $PACKAGE==$VERSION into $CACHE/$VERSION" >&2
    mkdir -p "$CACHE"
    TMP="$(mktemp -d "$CACHE/.tmp.XXXXXX")"
    trap 'rm -rf "$TMP"' EXIT
    "$PY" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps \
        --only-binary=:all: --target "$TMP" "$PACKAGE==$VERSION" >&2
    if [ ! -e "$TMP/$SUB/$SONAME" ]; then
        echo "install-nvrtc: the wheel has no $SUB/$SONAME" >&2
        exit 1
    fi
    rm -rf "${CACHE:?}/$VERSION"
    mv "$TMP" "$CACHE/$VERSION"
    trap - EXIT
fi
# charlm (cudarc) loads libnvrtc.so first; give it that name.
[ -e "$LIB/libnvrtc.so" ] || ln -s "$SONAME" "$LIB/libnvrtc.so"
echo "$LIB"
