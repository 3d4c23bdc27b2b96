//! charlm's trainer and host tools. The `charlm` binary (src/main.rs) is a
//! thin command line over these modules; inference always goes through
//! `charlm-runtime`, never a second implementation.

pub mod batch;
pub mod checkpoint;
pub mod corpus;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod eval;
pub mod export;
pub mod host_kernel;
pub mod host_math;
pub mod import;
pub mod metrics;
pub mod optim;
pub mod out;
pub mod params;
pub mod rng;
pub mod sample;
pub mod train;
pub mod vocab;
