//! charlm's trainer and host tools. The `charlm` binary (src/main.rs) is a
//! thin command line over these modules; inference always goes through
//! `charlm-runtime`, never a second implementation.

pub mod error;
pub mod host_kernel;
pub mod sample;
pub mod batch;
pub mod corpus;
pub mod cpu;
pub mod cuda;
pub mod params;
pub mod rng;
pub mod vocab;
pub mod optim;
pub mod eval;
pub mod export;
pub mod checkpoint;
pub mod metrics;
pub mod train;
