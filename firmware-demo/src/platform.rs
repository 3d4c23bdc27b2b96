//! What differs between the two architectures the demo runs on, so that
//! the rest of the program names neither: the start-up code's `entry`
//! attribute, semihosting (standard output, standard error, exit) and a
//! `singleton!` for the workspace. Cortex-M through cortex-m-rt and
//! cortex-m-semihosting; RISC-V through riscv-rt and riscv-semihosting
//! (the same API, forked from it). The clock is in measure.rs.

#[cfg(target_arch = "arm")]
pub use cortex_m::singleton;
#[cfg(target_arch = "arm")]
pub use cortex_m_rt::entry;
#[cfg(target_arch = "arm")]
pub use cortex_m_semihosting as semihosting;

#[cfg(target_arch = "riscv32")]
pub use riscv::singleton;
#[cfg(target_arch = "riscv32")]
pub use riscv_rt::entry;
#[cfg(target_arch = "riscv32")]
pub use riscv_semihosting as semihosting;

#[cfg(not(any(target_arch = "arm", target_arch = "riscv32")))]
compile_error!("the firmware demo runs on Cortex-M (thumbv6m, thumbv7m, thumbv7em) and riscv32 targets");
