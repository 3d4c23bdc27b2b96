#!/usr/bin/env bash
# Everything firmware-related that CI needs, in one script. Run it before the
# workspace's `cargo test` (tests/tests/firmware_qemu.rs needs QEMU and the
# thumbv7em target that this script installs):
#
#   1. installs qemu-system-arm and qemu-system-misc (Debian packages; the
#      second has qemu-system-riscv32) when missing;
#   2. adds the rustup targets: thumbv7em-none-eabihf (Cortex-M4F),
#      thumbv6m-none-eabi (Cortex-M0+), thumbv7m-none-eabi (Cortex-M3),
#      riscv32imc-unknown-none-elf;
#   3. builds the firmware: default, no-panic (links only if no panic path
#      survives), the product builds for f16 and for i8 models (no-panic),
#      the build that generates through the C interface (capi/, no-panic),
#      the STM32F4-Discovery profile (no-panic too), the Cortex-M0+
#      build (portable kernel, no-panic) and the RISC-V (riscv32imc) build,
#      directly and through the C interface (no-panic);
#   4. builds the runtime alone for thumbv6m-none-eabi and riscv32imc;
#   5. runs the demo under QEMU (`cargo run --release`) and checks its status.
#
# Exits non-zero at the first failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
step() { printf '\n==> firmware-demo/ci.sh: %s\n' "$*"; }

step "qemu-system-arm, qemu-system-riscv32"
missing=""
command -v qemu-system-arm >/dev/null || missing="$missing qemu-system-arm"
command -v qemu-system-riscv32 >/dev/null || missing="$missing qemu-system-misc"
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    # shellcheck disable=SC2086 # a list of package names
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
qemu-system-arm --version | head -1
qemu-system-riscv32 --version | head -1

step "rustup targets"
if command -v rustup >/dev/null; then
    rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi thumbv7m-none-eabi riscv32imc-unknown-none-elf
fi

# The firmware has its own target directory and configuration: build it
# from its folder, without an outer CARGO_TARGET_DIR.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
cd "$here"

step "firmware (thumbv7em-none-eabihf, QEMU mps2-an386)"
cargo build --release --locked

step "no-panic build: the panic handler calls an undefined function"
cargo build --release --locked --features no-panic

step "product builds, no-panic: f16 only, i8 only (the runtime without its f16 cells)"
cargo build --release --locked --no-default-features --features f16,no-panic
cargo build --release --locked --no-default-features --features int8,no-panic

step "through the C interface (capi/, feature c-api), no-panic: the library's panic handler, every weight type"
cargo build --release --locked --no-default-features --features c-api,f16,int8,truncation,no-panic

step "real board: STM32F4-Discovery memory map (build only)"
cargo build --release --locked --features board-stm32f4,no-panic

step "Cortex-M0 (thumbv6m-none-eabi, QEMU micro:bit map, i8 model): the whole firmware, portable kernel, no panic"
cargo build --release --locked --target thumbv6m-none-eabi --features no-panic

step "Cortex-M0 through the C interface, workspace sized to the model, no panic"
CHARLM_MAX_HIDDEN=128 CHARLM_MAX_LAYERS=1 CHARLM_MAX_VOCAB=128 \
    cargo build --release --locked --target thumbv6m-none-eabi --no-default-features --features c-api,int8,truncation,no-panic

step "RISC-V (riscv32imc-unknown-none-elf, QEMU virt): the whole firmware, portable kernel, no panic; and through the C interface"
cargo build --release --locked --target riscv32imc-unknown-none-elf --features no-panic
CHARLM_MAX_HIDDEN=128 CHARLM_MAX_LAYERS=1 CHARLM_MAX_VOCAB=128 \
    cargo build --release --locked --target riscv32imc-unknown-none-elf --no-default-features --features c-api,f16,int8,truncation,no-panic

step "runtime portability builds"
cd "$root"
for target in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    cargo build --release -p charlm-runtime --target "$target"
done

step "the demo under QEMU"
cd "$here"
# The build above left the default firmware in place; run it as a user would.
timeout 300 cargo run --release --locked >/dev/null
echo "firmware-demo/ci.sh: all firmware checks passed"
