//! Running a prepared `Command` to completion with a deadline: a hung plugin or probe
//! must fail its test, not hang the whole run.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long output readers may lag behind the process's exit. A grandchild that
/// inherited stdout can keep the pipe open forever; we stop waiting for it.
const READER_GRACE: Duration = Duration::from_secs(2);

/// What a finished (or timed-out and killed) process produced.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Finished {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.success()
    }
}

/// Runs a command that must succeed and returns its stdout; panics with its
/// output otherwise.
pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `run_ok` for a command that reads `stdin` (a filter: PyYAML, a policy
/// evaluator), killed if it hangs: a guard for the run, not a measurement.
pub fn run_ok_with_stdin(command: Command, stdin: &str) -> String {
    let shown = format!("{command:?}");
    let finished = run_with_timeout(command, stdin.as_bytes(), Duration::from_secs(300))
        .unwrap_or_else(|err| panic!("running {shown}: {err}"));
    assert!(
        finished.success(),
        "{shown} failed ({}{}): {}{}",
        finished.status,
        if finished.timed_out {
            ", killed after 300 s"
        } else {
            ""
        },
        finished.stdout,
        finished.stderr
    );
    finished.stdout
}

/// Spawns `cmd` with piped stdin (fed `stdin`), stdout and stderr, and waits up to
/// `timeout`; on timeout the process is SIGKILLed and `timed_out` set.
pub fn run_with_timeout(
    mut cmd: Command,
    stdin: &[u8],
    timeout: Duration,
) -> std::io::Result<Finished> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;

    if let Some(mut pipe) = child.stdin.take() {
        let data = stdin.to_vec();
        // A process that never reads stdin must not block us: write from a thread,
        // and ignore EPIPE from one that exits early.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());

    let (status, timed_out) = wait_with_deadline(&mut child, timeout)?;
    Ok(Finished {
        status,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
        timed_out,
    })
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> std::io::Result<(ExitStatus, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Ok((child.wait()?, true));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Output gathered by a reader thread, readable even if the thread never finishes.
struct Collector {
    buffer: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> Collector {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        let sink = Arc::clone(&buffer);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                let n = match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
    }
    Collector { buffer, done }
}

impl Collector {
    fn finish(self) -> String {
        let _ = self.done.recv_timeout(READER_GRACE);
        let bytes = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
