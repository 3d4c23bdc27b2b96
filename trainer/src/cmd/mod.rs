//! One module per subcommand: its arguments and what it does.

pub mod generate;
pub mod info;
pub mod eval;
pub mod train;
pub mod bench;
