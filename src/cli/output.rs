//! `-o/--output`: text for people, JSON for scripts (`kubectl exec … -o json`).

use serde::Serialize;

use crate::install::flags::PinRootFlag;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct OutputFlag {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// The arguments of the commands that read the node's pins and print them
/// (`status`, `pods`).
#[derive(clap::Args, Debug)]
pub struct ReadPinsArgs {
    #[command(flatten)]
    pub pin_root: PinRootFlag,
    #[command(flatten)]
    pub output: OutputFlag,
}

/// Prints `value` as one JSON document.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
