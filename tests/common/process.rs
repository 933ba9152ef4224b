//! Processes a test starts "in a pod": inside the pod's netns, inside the hooked
//! cgroup, as a chosen user. Also "outside every pod": the node netns, same cgroup.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::exec::{self, Finished};
use super::prereq::CHILD_PATH;
use super::timing::wait_until;

const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT_LOG: AtomicU32 = AtomicU32::new(0);

/// Who a spawned process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

impl Identity {
    pub const ROOT: Identity = Identity { uid: 0, gid: 0 };
    /// Istio's proxy user: Envoy, and Istio's start-up check, run as 1337:1337.
    pub const PROXY: Identity = Identity {
        uid: 1337,
        gid: 1337,
    };
    /// An unprivileged application user.
    pub const APP: Identity = Identity {
        uid: 1000,
        gid: 1000,
    };
}

/// Where processes run: a netns and the hooked cgroup, plus a directory for their
/// logs and files. Plain data, cheap to clone; get it from `Pod::place` or
/// `TestNode::outside_pods`.
#[derive(Debug, Clone)]
pub struct Place {
    /// Short name for log files and messages (the pod name, or "node").
    pub label: String,
    pub netns: PathBuf,
    /// The hooked cgroup's directory.
    pub cgroup: PathBuf,
    /// Writable directory for logs and generated files (inside the node's temp dir).
    pub work_dir: PathBuf,
}

/// A command about to run at a [`Place`]. Build it, then `spawn()` (background,
/// killed on drop) or `run()` (to completion, with a timeout).
#[derive(Debug, Clone)]
pub struct Spawn {
    place: Place,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    identity: Identity,
    timeout: Duration,
    stdin: Vec<u8>,
}

impl Spawn {
    pub fn new(place: &Place, program: impl AsRef<OsStr>) -> Self {
        Spawn {
            place: place.clone(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            identity: Identity::ROOT,
            timeout: DEFAULT_RUN_TIMEOUT,
            stdin: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds an environment variable (the environment starts with PATH only).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Limit for `run()`; the process is killed and the test fails when it is hit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bytes fed to stdin by `run()`.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = data.into();
        self
    }

    fn describe(&self) -> String {
        let mut text = self.program.to_string_lossy().into_owned();
        for arg in &self.args {
            text.push(' ');
            text.push_str(&arg.to_string_lossy());
        }
        format!(
            "`{text}` in {} as {}:{}",
            self.place.label, self.identity.uid, self.identity.gid
        )
    }

    /// Builds the Command with the netns/cgroup/user switch in its pre_exec. The
    /// returned files must stay open until the child has been spawned.
    fn command(&self) -> io::Result<(Command, [File; 2])> {
        let netns = File::open(&self.place.netns)?;
        let procs = OpenOptions::new()
            .write(true)
            .open(self.place.cgroup.join("cgroup.procs"))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/");
        let (netns_fd, procs_fd, identity) = (netns.as_raw_fd(), procs.as_raw_fd(), self.identity);
        // SAFETY: the closure runs between fork and exec in the child; it only makes
        // raw syscalls on integers and fds opened before the fork, with no allocation
        // and no locks, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || enter_place(netns_fd, procs_fd, identity));
        }
        Ok((cmd, [netns, procs]))
    }

    /// Starts the process in the background; stdout and stderr go to a log file in
    /// the place's work dir. It is killed when the returned handle is dropped.
    pub fn spawn(self) -> TestProcess {
        let log = self.place.work_dir.join(format!(
            "{}-{}-{}.log",
            self.place.label,
            Path::new(&self.program)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            NEXT_LOG.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let out = File::create(&log)?;
            let (mut cmd, _open_until_spawned) = self.command()?;
            cmd.stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            cmd.spawn()
        })();
        match result {
            Ok(child) => TestProcess {
                child,
                log,
                what: self.describe(),
            },
            Err(err) => panic!("cannot start {}: {err}", self.describe()),
        }
    }

    /// Runs to completion, capturing stdout and stderr. Panics on timeout or when the
    /// process cannot start; a non-zero exit is returned, not a panic.
    pub fn run(self) -> Finished {
        let finished = self.command().and_then(|(cmd, _open_until_spawned)| {
            exec::run_with_timeout(cmd, &self.stdin, self.timeout)
        });
        match finished {
            Ok(f) if f.timed_out => panic!(
                "{} timed out after {:?}\nstdout: {}\nstderr: {}",
                self.describe(),
                self.timeout,
                f.stdout,
                f.stderr
            ),
            Ok(f) => f,
            Err(err) => panic!("cannot run {}: {err}", self.describe()),
        }
    }
}

/// The child side of a spawn, in this order: join the netns (needs root), move into
/// the hooked cgroup (root writes the pre-opened cgroup.procs), drop to the user
/// (setgroups/setgid before setuid, which gives up the right to change them).
/// std's `Command::uid/gid` would run before pre_exec and take away root too early.
fn enter_place(netns_fd: i32, procs_fd: i32, identity: Identity) -> io::Result<()> {
    let gid = identity.gid as libc::gid_t;
    let groups = [gid];
    // SAFETY: plain syscalls with valid integer arguments and pointers to live stack
    // data; raw syscalls (not glibc's setuid) act on this single-threaded child only.
    unsafe {
        if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        // "0" means "the writing process".
        if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_setgroups, 1 as libc::c_long, groups.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_setgid, gid as libc::c_long) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_setuid, identity.uid as libc::c_long) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A background process; SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct TestProcess {
    child: Child,
    log: PathBuf,
    what: String,
}

impl TestProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines of its output that are JSON (the reports tools print as they go).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until a line of its output equals `line`; panics with the output when
    /// the process exits first or `timeout` passes.
    pub fn wait_for_line(&mut self, line: &str, timeout: Duration) {
        let printed = wait_until(timeout, Duration::from_millis(10), || {
            if self.output().lines().any(|l| l.trim_end() == line) {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {line:?}; output:\n{}",
                    self.what,
                    self.output()
                );
            }
            false
        });
        assert!(
            printed,
            "{} did not print {line:?} within {timeout:?}; output:\n{}",
            self.what,
            self.output()
        );
    }

    /// SIGKILLs and reaps it; idempotent.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
