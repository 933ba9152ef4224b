//! `meshlane` without `CNI_COMMAND`: the operator's command line.

mod args;
mod pods;
mod status;

use anyhow::Result;

use args::Args;

const USAGE: &str = "\
meshlane — Istio sidecar capture with eBPF, as a chained CNI plugin

Run by the container runtime with CNI_COMMAND set, meshlane is the CNI plugin.
Otherwise it is this command line:

  meshlane status [--bpffs-root DIR]   what is loaded and attached, and the counters
  meshlane pods   [--bpffs-root DIR]   the captured pods and their attachments
  meshlane version                     meshlane's version and CNI versions
  meshlane help

--bpffs-root defaults to /sys/fs/bpf/meshlane (the plugin's bpffsRoot).";

pub fn run(argv: Vec<String>) -> Result<i32> {
    let mut args = Args::new(argv);
    let command = args.command();
    match command.as_deref() {
        Some("status") => status::run(&mut args),
        Some("pods") => pods::run(&mut args),
        Some("version") | Some("--version") => {
            println!(
                "meshlane {} (CNI spec {})",
                env!("CARGO_PKG_VERSION"),
                crate::cni::version::CniVersion::SUPPORTED
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(0)
        }
        None | Some("help") | Some("--help") | Some("-h") => {
            println!("{USAGE}");
            Ok(0)
        }
        Some(other) => {
            eprintln!("meshlane: unknown command {other:?}\n\n{USAGE}");
            Ok(2)
        }
    }
}
