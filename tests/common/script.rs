//! One of the README's scripts (`scripts/demo.sh`, `scripts/bench.sh`) run to
//! the end as a test: output collected, bounded in time. On a hang it gets
//! SIGTERM, which makes the script clean up (its exit trap), then a grace period.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A script's run, for the assertions and their messages.
pub struct ScriptRun {
    pub what: String,
    pub status: ExitStatus,
    /// It ran past its timeout and was sent SIGTERM.
    pub timed_out: Option<Duration>,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptRun {
    pub fn describe(&self) -> String {
        format!(
            "{}: {}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status,
            match self.timed_out {
                Some(after) => format!(" (timed out after {after:?}, then SIGTERM)"),
                None => String::new(),
            },
            self.stdout,
            self.stderr
        )
    }

    pub fn succeeded(&self) -> bool {
        self.status.success() && self.timed_out.is_none()
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Runs `command` (named `what` in messages) for at most `timeout`, then SIGTERM
/// and at most `grace` more before SIGKILL.
pub fn run_script(
    what: &str,
    mut command: Command,
    timeout: Duration,
    grace: Duration,
) -> ScriptRun {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {what}: {err}"));
    let stdout = read_all(child.stdout.take().expect("piped"));
    let stderr = read_all(child.stderr.take().expect("piped"));
    let wait_until = |child: &mut std::process::Child, deadline: Instant| loop {
        if let Some(status) = child.try_wait().expect("waiting for the script") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut timed_out = None;
    let status = match wait_until(&mut child, Instant::now() + timeout) {
        Some(status) => status,
        None => {
            timed_out = Some(timeout);
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            wait_until(&mut child, Instant::now() + grace).unwrap_or_else(|| {
                let _ = child.kill();
                child.wait().expect("waiting for the killed script")
            })
        }
    };
    // A process that inherited the pipes could keep them open: do not wait forever.
    let collect = |rx: mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| "(output not collected: the pipe stayed open)".to_string())
    };
    ScriptRun {
        what: what.to_owned(),
        status,
        timed_out,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}
