//! One binary: the CNI plugin when the runtime sets `CNI_COMMAND`, the operator's
//! command line otherwise.

use std::io::Write;

/// The musl build's allocator (Cargo.toml says why).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    let code = if std::env::var_os("CNI_COMMAND").is_some() {
        meshlane::cni::protocol::run(
            &meshlane::plugin::Meshlane,
            meshlane::cni::protocol::process_env(),
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
        )
    } else {
        match meshlane::cli::run(std::env::args().collect()) {
            Ok(code) => code,
            Err(err) => {
                let _ = writeln!(std::io::stderr(), "meshlane: {err:#}");
                1
            }
        }
    };
    std::process::exit(code);
}
