#!/usr/bin/env bash
# Builds the `charlm` binary to carry to a GPU machine, linked against glibc
# 2.17 so that it starts on any x86-64 Linux from 2014 on, whatever that
# machine's image is (a plain `cargo build` here asks for the glibc of this
# machine: 2.34). cargo-zigbuild links with Zig's C toolchain, which carries
# the symbol versions of old glibc releases; both come from public
# registries and are installed when missing (pip's `ziglang`, crates.io's
# `cargo-zigbuild`). Prints the path of the binary on stdout:
#
#   bash scripts/build-gpu-binary.sh        # -> target/gpu-bin/charlm
#   # then carry target/gpu-bin and run scripts/gpu-check.sh there
#
# If the tools cannot be installed (no network), `cargo build --release -p
# charlm-trainer` and carrying target/release/charlm also works where the
# GPU machine has glibc 2.34 or later.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GLIBC="${CHARLM_GLIBC:-2.17}"
TARGET=x86_64-unknown-linux-gnu
PY="$(command -v python3 || true)"

if ! command -v zig > /dev/null && ! { [ -n "$PY" ] && "$PY" -m ziglang version > /dev/null 2>&1; }; then
    echo "build-gpu-binary: installing Zig (pip package ziglang)" >&2
    [ -n "$PY" ] || { echo "build-gpu-binary: python3 with pip is needed to install Zig" >&2; exit 1; }
    "$PY" -m pip install --quiet --disable-pip-version-check ziglang >&2
fi
if ! command -v cargo-zigbuild > /dev/null; then
    echo "build-gpu-binary: installing cargo-zigbuild" >&2
    cargo install --quiet --locked cargo-zigbuild >&2
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET" >&2

cargo zigbuild --quiet --release -p charlm-trainer --target "$TARGET.$GLIBC" \
    --target-dir target/zigbuild >&2
mkdir -p target/gpu-bin
cp target/zigbuild/$TARGET/release/charlm target/gpu-bin/charlm
# The newest glibc symbol version the binary asks for.
need="$(objdump -T target/gpu-bin/charlm 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n 1 || true)"
if [ -n "$need" ] && [ "$(printf '%s\n' "GLIBC_$GLIBC" "$need" | sort -V | tail -n 1)" != "GLIBC_$GLIBC" ]; then
    echo "build-gpu-binary: target/gpu-bin/charlm asks for $need, newer than glibc $GLIBC" >&2
    exit 1
fi
echo "build-gpu-binary: target/gpu-bin/charlm needs ${need:-an unknown glibc}" >&2
echo target/gpu-bin/charlm
