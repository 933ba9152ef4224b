//! `meshlane` without `CNI_COMMAND`: the operator's command line, one
//! `Subcommand` enum (clap). `main.rs` dispatches the CNI plugin first, so a
//! CNI call never builds this parser.

mod install;
mod output;
mod pods;
mod precheck;
mod status;
mod uninstall;
mod upgrade;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

pub use output::Output;

const ABOUT: &str = "Istio sidecar capture with eBPF, as a chained CNI plugin";

const LONG_ABOUT: &str = "\
Istio sidecar capture with eBPF, as a chained CNI plugin.

Run by the container runtime with CNI_COMMAND set, meshlane is the CNI plugin.
Otherwise it is this command line. On a cluster, run it in the agent's pod:
  kubectl -n meshlane-system exec ds/meshlane-node -- /meshlane pods -o json";

#[derive(Parser, Debug)]
#[command(name = "meshlane", version, about = ABOUT, long_about = LONG_ABOUT)]
#[command(arg_required_else_help = true, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// What is loaded and attached, and the counters (exit 1 when something is missing)
    Status(status::Args),
    /// The captured pods, their capture settings and attachments
    Pods(pods::Args),
    /// Can this node run meshlane? A verdict and a fix per check (exit 1 on FAIL)
    Precheck(precheck::Args),
    /// The install DaemonSet's agent (runs until SIGTERM)
    Install(Box<install::Args>),
    /// Remove meshlane from this node (exit 3 while captured pods remain, unless --force)
    Uninstall(uninstall::Args),
    /// Switch the attached programs that differ from this binary's, without detaching
    UpgradePrograms(upgrade::Args),
    /// meshlane's version and the CNI spec versions it speaks
    Version,
}

/// A bad combination of flags found after parsing: shown like clap's own
/// usage errors, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn version_text() -> String {
    format!(
        "meshlane {} (CNI spec {})",
        env!("CARGO_PKG_VERSION"),
        crate::cni::version::CniVersion::SUPPORTED
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Parses `argv` and runs the command; returns the exit code (2 for a usage
/// error, with clap's message and suggestion on stderr).
pub fn run(argv: Vec<String>) -> Result<i32> {
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return Ok(err.exit_code());
        }
    };
    let result = match cli.command {
        Command::Status(args) => status::run(&args),
        Command::Pods(args) => pods::run(&args),
        Command::Precheck(args) => precheck::run(&args),
        Command::Install(args) => install::run(&args),
        Command::Uninstall(args) => uninstall::run(&args),
        Command::UpgradePrograms(args) => upgrade::run(&args),
        Command::Version => {
            println!("{}", version_text());
            Ok(0)
        }
    };
    match result {
        Err(err) => match err.downcast_ref::<UsageError>() {
            Some(usage) => {
                let err = Cli::command().error(clap::error::ErrorKind::ValueValidation, &usage.0);
                let _ = err.print();
                Ok(2)
            }
            None => Err(err),
        },
        ok => ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("meshlane").chain(args.iter().copied()))
    }

    #[test]
    fn the_parser_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_help() {
        for command in Cli::command().get_subcommands() {
            let name = command.get_name().to_owned();
            for flag in ["--help", "-h"] {
                let err = parse(&[&name, flag]).expect_err(&name);
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::DisplayHelp,
                    "{name} {flag}"
                );
                assert_eq!(err.exit_code(), 0);
            }
        }
    }

    #[test]
    fn usage_errors_exit_2_with_a_suggestion() {
        let err = parse(&["stauts"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("similar"), "{err}");
        let err = parse(&["status", "--bpffs-rot", "/x"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--bpffs-root"), "{err}");
        let err = parse(&["status", "-o", "yaml"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn install_help_shows_defaults_and_variables() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("install")
            .unwrap()
            .render_long_help()
            .to_string();
        for text in [
            "--cni-bin-dir",
            "MESHLANE_CNI_BIN_DIR",
            "[default: /host/opt/cni/bin]",
            "[default: meshlane.io/agent-not-ready]",
            "[default: 1337]",
        ] {
            assert!(help.contains(text), "{text} missing from\n{help}");
        }
    }
}
