//! One module per subcommand: its arguments and what it does.

pub mod bench;
pub mod eval;
pub mod generate;
pub mod info;
pub mod train;
