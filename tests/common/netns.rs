//! Named network namespaces (`ip netns add`, so they live at /run/netns/<name> like a
//! runtime's) and a way to run a closure inside one.

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use nix::sched::{setns, CloneFlags};

use super::held::HeldPath;
use super::prereq;

pub const NETNS_DIR: &str = "/run/netns";

/// The first `ip netns add` on a machine turns /run/netns into a shared mount; two of
/// them racing could stack that mount twice. Serialise creation within this process.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// A network namespace created by the test; deleted on drop.
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
    held: HeldPath,
}

impl NamedNetns {
    /// `ip netns add <name>` and brings `lo` up inside it.
    pub fn create(name: &str) -> Result<Self, String> {
        {
            let _serialised = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            run_ip(&["netns", "add", name])?;
        }
        let netns = NamedNetns {
            name: name.to_string(),
            held: HeldPath::new("netns", Path::new(NETNS_DIR).join(name), delete_at),
        };
        // `ip -n` switches only its own process (and remounts /sys in a private
        // mount namespace of its own), nothing of the test runner.
        run_ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, what CNI_NETNS carries.
    pub fn path(&self) -> &Path {
        self.held.path()
    }

    pub fn is_deleted(&self) -> bool {
        !self.held.is_held()
    }

    /// `ip netns del`; idempotent. Processes still inside keep the namespace alive
    /// until they exit, but its name is gone.
    pub fn delete(&mut self) -> Result<(), String> {
        self.held.release()
    }
}

/// [`delete_named`] for the netns at `/run/netns/<name>`.
fn delete_at(path: &Path) -> Result<(), String> {
    let name = path.file_name().and_then(|n| n.to_str());
    delete_named(name.ok_or_else(|| format!("not a netns path: {}", path.display()))?)
}

/// Deletes /run/netns/<name> if it exists. Gone is gone: another run's sweep may
/// have deleted it between our check and our `ip netns del`.
pub fn delete_named(name: &str) -> Result<(), String> {
    let path = Path::new(NETNS_DIR).join(name);
    if !path.exists() {
        return Ok(());
    }
    match run_ip(&["netns", "del", name]) {
        Err(_) if !path.exists() => Ok(()),
        result => result.map(drop),
    }
}

/// Names under /run/netns that start with `prefix`.
pub fn list_named(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Runs `f` on a fresh thread that has joined the netns at `netns_path`. A thread may
/// switch its own netns without affecting the others; it ends with `f`, so nothing
/// needs restoring and the switch cannot leak into the test's own thread.
pub fn in_netns<T: Send>(netns_path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    let file =
        File::open(netns_path).map_err(|err| format!("open {}: {err}", netns_path.display()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|err| format!("setns {}: {err}", netns_path.display()))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `ip` with `args`, returning its stdout; an error carries its stderr.
pub fn run_ip(args: &[&str]) -> Result<String, String> {
    let ip = prereq::system_tool("ip").ok_or("iproute2's `ip` is missing")?;
    let output = Command::new(ip)
        .args(args)
        .output()
        .map_err(|err| format!("ip {}: {err}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Makes `cmd`'s child join the netns open as `netns` before it execs (the way a
/// runtime runs CNI plugins inside the node's namespace). `netns` must stay open
/// until the child is spawned. `ip netns exec` is not used: it remounts /sys, which
/// would hide the cgroup2 mount from the child.
pub fn join_before_exec(cmd: &mut std::process::Command, netns: &File) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = netns.as_raw_fd();
    // SAFETY: runs between fork and exec; a single raw syscall on an fd opened before
    // the fork, no allocation, async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
