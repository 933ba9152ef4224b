//! A running `meshlane install` (or any long-running meshlane command) as its
//! own process, the way the DaemonSet runs it: output collected line by line,
//! health endpoints reachable, SIGTERM on request, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::node::NodeLayout;
use super::prereq::{meshlane_binary, CHILD_PATH};
use super::timing;

/// How long the agent may take to log, serve or stop.
pub const WAIT: Duration = Duration::from_secs(10);

/// `meshlane install` for a test node: its bin dir, `net_d`, pin root and
/// cgroup (where the plugin runs too, so the paths agree), its log in the work
/// dir, health endpoints on a free loopback port, a re-check every second.
pub fn install_args(layout: &NodeLayout, net_d: &Path) -> Vec<String> {
    let text = |path: &Path| path.to_string_lossy().into_owned();
    let mut args: Vec<String> = vec!["install".into()];
    for (flag, value) in [
        ("cni-bin-dir", text(&layout.bin_dir)),
        ("cni-conf-dir", text(net_d)),
        ("bpffs-root", text(&layout.pin_root)),
        ("cgroup", text(&layout.cgroup)),
        ("plugin-cgroup-path", text(&layout.cgroup)),
        ("log-file", text(&layout.work_dir.join("meshlane-cni.log"))),
        ("listen", "127.0.0.1:0".into()),
        ("recheck-seconds", "1".into()),
    ] {
        args.push(format!("--{flag}"));
        args.push(value);
    }
    args
}

/// Calls `check` every `every` until it gives a value; after `WAIT`, panics
/// with its last complaint and the agent's log.
fn poll<T, E: std::fmt::Display>(
    log: &Lines,
    every: Duration,
    check: impl FnMut() -> Result<T, E>,
) -> T {
    timing::poll(WAIT, every, check)
        .unwrap_or_else(|complaint| panic!("{complaint} (after {WAIT:?}):\n{}", log.text()))
}

/// Output of a child process, collected line by line as it comes.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn follow(pipe: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    pub fn find(&self, needle: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|line| line.contains(needle))
            .cloned()
    }
}

/// A running `meshlane install`; killed on drop if a test fails midway.
pub struct Agent {
    child: Option<Child>,
    pub stdout: Lines,
    pub stderr: Lines,
    /// The health and metrics address it logged.
    pub addr: String,
}

impl Agent {
    /// Runs `meshlane <args>` with only PATH and `env` in its environment (no
    /// MESHLANE_* of the caller's), inside `cgroup`, and waits until it serves.
    pub fn start(cgroup: &Path, args: &[String], env: &[(String, String)]) -> Agent {
        Agent::start_under(&[], cgroup, args, env)
    }

    /// Like `start`, with meshlane started by `wrapper` (a program and its
    /// arguments, meshlane's path appended), e.g. strace injecting a fault.
    pub fn start_under(
        wrapper: &[String],
        cgroup: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Agent {
        let mut agent = Agent::spawn_under(wrapper, cgroup, args, env);
        let line = agent.wait_for_log("serving /healthz");
        agent.addr = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("addr="))
            .expect("the agent logs its address")
            .to_owned();
        agent
    }

    /// Starts it without waiting for it to serve (it may be killed before).
    pub fn spawn_under(
        wrapper: &[String],
        cgroup: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Agent {
        // The agent joins the node's cgroup before it execs, so the node's
        // cleanup (and the sweep after a crashed run) kills it with the rest.
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg("echo 0 > \"$0/cgroup.procs\" && exec \"$@\"")
            .arg(cgroup)
            .args(wrapper)
            .arg(meshlane_binary())
            .args(args)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting meshlane install");
        let stdout = Lines::follow(child.stdout.take().unwrap());
        let stderr = Lines::follow(child.stderr.take().unwrap());
        Agent {
            child: Some(child),
            stdout,
            stderr,
            addr: String::new(),
        }
    }

    /// Waits (at most `WAIT`) for the agent to exit by itself: its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = poll(&self.stderr, Duration::from_millis(20), || {
            child.try_wait().unwrap().ok_or("the agent did not exit")
        });
        self.child = None;
        status
    }

    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let (child, stderr) = (self.child.as_mut().unwrap(), &self.stderr);
        poll(stderr, Duration::from_millis(50), || {
            if let Some(line) = stderr.find(needle) {
                return Ok(line);
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the agent exited ({status}) before logging {needle:?}:\n{}",
                    stderr.text()
                );
            }
            Err(format!("the agent did not log {needle:?}"))
        })
    }

    /// GET over a plain socket: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connecting to the agent");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP reply: {reply:?}"));
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    pub fn wait_until_ready(&self) {
        self.wait_for_readiness(200);
    }

    /// `/readyz`, once it answers with `status` (it may take a recheck): the body.
    pub fn wait_for_readiness(&self, status: u16) -> String {
        poll(&self.stderr, Duration::from_millis(100), || {
            let (got, body) = self.get("/readyz");
            if got == status {
                Ok(body)
            } else {
                Err(format!("/readyz never answered {status}: {got} {body}"))
            }
        })
    }

    /// SIGTERM (what a rolling update sends) and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let exited = timing::poll(WAIT, Duration::from_millis(20), || {
            child.try_wait().unwrap().ok_or(())
        });
        exited.unwrap_or_else(|()| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent ignored SIGTERM:\n{}", self.stderr.text());
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
