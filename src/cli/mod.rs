//! `meshlane` without `CNI_COMMAND`: the operator's command line.

mod args;
mod install;
mod pods;
mod precheck;
mod status;
mod uninstall;
mod upgrade;

use anyhow::Result;

use args::Args;

const USAGE: &str = "\
meshlane — Istio sidecar capture with eBPF, as a chained CNI plugin

Run by the container runtime with CNI_COMMAND set, meshlane is the CNI plugin.
Otherwise it is this command line:

  meshlane status [--bpffs-root DIR]   what is loaded and attached, and the counters
  meshlane pods   [--bpffs-root DIR]   the captured pods and their attachments
  meshlane version                     meshlane's version and CNI versions
  meshlane precheck [--bpffs-root DIR] [--cgroup DIR]
                                       can this node run meshlane? (exit 1 on FAIL)
  meshlane install  [settings]         the install DaemonSet's agent (runs until SIGTERM)
  meshlane uninstall [--cni-bin-dir DIR] [--cni-conf-dir DIR] [--bpffs-root DIR] [--force]
                                       remove meshlane from this node (exit 3 while
                                       captured pods remain, unless --force)
  meshlane upgrade-programs [--bpffs-root DIR] [--force]
                                       switch the attached programs that differ from
                                       this binary's, without detaching (--force:
                                       switch every one, even identical ones)
  meshlane help

--bpffs-root defaults to /sys/fs/bpf/meshlane (the plugin's bpffsRoot).

Settings of install (flag, else environment variable):";

pub fn run(mut argv: Vec<String>) -> Result<i32> {
    // `--force` is the one bare flag (uninstall's, upgrade-programs'); the other
    // options take values.
    let force = argv.iter().skip(2).any(|arg| arg == "--force");
    if matches!(
        argv.get(1).map(String::as_str),
        Some("uninstall" | "upgrade-programs")
    ) {
        argv.retain(|arg| arg != "--force");
    }
    let mut args = Args::new(argv);
    let command = args.command();
    match command.as_deref() {
        Some("status") => status::run(&mut args),
        Some("pods") => pods::run(&mut args),
        Some("install") => install::run(&mut args),
        Some("uninstall") => uninstall::run(&mut args, force),
        Some("upgrade-programs") => upgrade::run(&mut args, force),
        Some("precheck") => precheck::run(&mut args),
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
            println!("{USAGE}\n{}", install::usage());
            Ok(0)
        }
        Some(other) => {
            eprintln!(
                "meshlane: unknown command {other:?}\n\n{USAGE}\n{}",
                install::usage()
            );
            Ok(2)
        }
    }
}
