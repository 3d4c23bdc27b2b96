//! One module per subcommand: its arguments and what it does.

pub mod generate;
pub mod info;
