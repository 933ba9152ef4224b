//! A real Envoy as the pod's sidecar: started in the pod netns and the hooked
//! cgroup as UID/GID 1337, ready before `start` returns, killed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::envoy_config::{self, ADMIN_PORT};
pub use super::envoy_config::{AccessLogEntry, EnvoyOptions};
use super::http_get;
use super::prereq;
use super::process::{Place, Spawn, TestProcess};
use super::timing::{poll, wait_until};

static NEXT_ENVOY: AtomicU32 = AtomicU32::new(0);

const LOG_TAIL_LINES: usize = 40;

/// A running sidecar.
#[derive(Debug)]
pub struct Envoy {
    process: TestProcess,
    place: Place,
    dir: PathBuf,
}

impl Envoy {
    /// Writes the bootstrap into a fresh directory (owned by the proxy user, who
    /// writes the logs there), starts Envoy and polls its admin `/ready` from inside
    /// the pod netns until it answers 200; panics with the log tail otherwise.
    pub fn start(place: &Place, options: EnvoyOptions) -> Envoy {
        let dir = place.work_dir.join(format!(
            "envoy-{}-{}",
            place.label,
            NEXT_ENVOY.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
        nix::unistd::chown(
            &dir,
            Some(nix::unistd::Uid::from_raw(options.identity.uid)),
            Some(nix::unistd::Gid::from_raw(options.identity.gid)),
        )
        .unwrap_or_else(|err| panic!("chown {}: {err}", dir.display()));

        let node_id = format!(
            "sidecar~0.0.0.0~{}.default~default.svc.cluster.local",
            place.label
        );
        let config = envoy_config::bootstrap(&options, &node_id, &dir.join("access.log"));
        let bootstrap = dir.join("bootstrap.yaml");
        // JSON is valid YAML; serde_json gets every quote right.
        fs::write(
            &bootstrap,
            serde_json::to_string_pretty(&config).expect("JSON"),
        )
        .unwrap_or_else(|err| panic!("write {}: {err}", bootstrap.display()));

        let process = Spawn::new(place, prereq::envoy_binary())
            .arg("-c")
            .arg(&bootstrap)
            .args(["--disable-hot-restart", "--concurrency"])
            .arg(options.concurrency.to_string())
            .args(["--log-level", &options.log_level])
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            // Access log lines reach the file within 100 ms instead of 10 s.
            .args(["--file-flush-interval-msec", "100"])
            .identity(options.identity)
            .spawn();
        let mut envoy = Envoy {
            process,
            place: place.clone(),
            dir,
        };
        envoy.wait_ready(options.ready_timeout);
        envoy
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let ready = wait_until(timeout, Duration::from_millis(50), || {
            if !self.process.is_running() {
                panic!(
                    "Envoy in {} exited during start-up; log tail:\n{}",
                    self.place.label,
                    self.log_tail()
                );
            }
            matches!(self.admin_get("/ready"), Ok((200, _)))
        });
        assert!(
            ready,
            "Envoy in {} not ready after {timeout:?}; log tail:\n{}",
            self.place.label,
            self.log_tail()
        );
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The directory with bootstrap.yaml, envoy.log and access.log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// GET on the admin listener (127.0.0.1:15000 in the pod netns): status and body.
    /// The request comes from the test runner, which is outside the hooked cgroup,
    /// so meshlane never captures it.
    pub fn admin_get(&self, path: &str) -> Result<(u16, String), String> {
        http_get::get_in_netns(&self.place.netns, ADMIN_PORT, path)
    }

    /// A counter or gauge from `/stats` (e.g. `listener_manager.total_listeners_active`).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let (_, body) = self.admin_get("/stats").ok()?;
        body.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    /// The access log's lines so far (flushed every 100 ms; a TCP connection is
    /// logged when it closes).
    pub fn access_log(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn access_entries(&self) -> Vec<AccessLogEntry> {
        self.access_log()
            .iter()
            .filter_map(|line| AccessLogEntry::parse(line))
            .collect()
    }

    /// Waits until `count` access log lines exist; panics with the log otherwise.
    pub fn wait_for_access_log(&self, count: usize, timeout: Duration) -> Vec<AccessLogEntry> {
        let entries = poll(timeout, Duration::from_millis(50), || {
            let entries = self.access_entries();
            if entries.len() >= count {
                Ok(entries)
            } else {
                Err(entries.len())
            }
        });
        entries.unwrap_or_else(|found| {
            panic!(
                "Envoy in {}: {found} access log lines after {timeout:?}, wanted {count}: {:?}",
                self.place.label,
                self.access_log()
            )
        })
    }

    /// The last lines of Envoy's own log and of its stdout/stderr.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        format!(
            "--- envoy.log ---\n{}\n--- stdout/stderr ---\n{}",
            tail(&log, LOG_TAIL_LINES),
            tail(&self.process.output(), LOG_TAIL_LINES)
        )
    }
}

/// The body of a `Transfer-Encoding: chunked` response (admin streams /stats).
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
