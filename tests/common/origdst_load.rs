//! `tests/tools/origdst_load.c`: a minimal sidecar that answers every connection with
//! the `SO_ORIGINAL_DST` it reads, and a client that holds thousands of captured
//! connections open at once, each sent to a destination of its own and checked.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use super::c_tool;
use super::process::{Identity, Place, Spawn, TestProcess};
use super::timing::{scaled, wait_until};

fn binary(place: &Place) -> std::path::PathBuf {
    c_tool::build(&place.work_dir, "origdst_load.c", "origdst-load")
}

/// Waits for the `index`-th JSON line of the process's output that has `key`.
fn json_line_with(process: &mut TestProcess, key: &str, index: usize, wait: Duration) -> Value {
    let mut found = None;
    wait_until(scaled(wait), Duration::from_millis(20), || {
        let lines = process.json_lines().into_iter();
        found = lines.filter(|line| line.get(key).is_some()).nth(index);
        // A process that exited prints no more: stop waiting for it.
        found.is_some() || !process.is_running()
    });
    found.unwrap_or_else(|| {
        panic!(
            "origdst-load printed no line with {key:?} (running: {}); output:\n{}",
            process.is_running(),
            process.output()
        )
    })
}

fn field(line: &Value, key: &str) -> u64 {
    line[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// The proxy's counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyCounts {
    pub accepted: u64,
    pub matched: u64,
    pub mismatched: u64,
    pub no_original_dst: u64,
    pub reply_failed: u64,
    /// Connections open right now.
    pub open: u64,
}

/// The minimal sidecar on 127.0.0.1:15001 (all addresses), as the proxy's UID.
pub struct LoadProxy {
    process: TestProcess,
    reports: usize,
}

impl LoadProxy {
    pub fn start(place: &Place, name: &str) -> LoadProxy {
        let mut process = Spawn::new(place, binary(place))
            .args(["proxy", "--name", name, "--port", "15001"])
            .identity(Identity::PROXY)
            .spawn();
        process.wait_for_line("READY", scaled(Duration::from_secs(10)));
        LoadProxy {
            process,
            reports: 0,
        }
    }

    /// Asks for its counts (SIGUSR1) and waits for them.
    pub fn counts(&mut self) -> ProxyCounts {
        let pid = libc::pid_t::try_from(self.process.pid()).expect("pid fits");
        // SAFETY: kill(2) on the pid of a child this handle owns and has not reaped.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGUSR1) },
            0,
            "signal the proxy"
        );
        let line = json_line_with(
            &mut self.process,
            "accepted",
            self.reports,
            Duration::from_secs(10),
        );
        self.reports += 1;
        ProxyCounts {
            accepted: field(&line, "accepted"),
            matched: field(&line, "matched"),
            mismatched: field(&line, "mismatched"),
            no_original_dst: field(&line, "no_original_dst"),
            reply_failed: field(&line, "reply_failed"),
            open: field(&line, "open"),
        }
    }

    pub fn output(&self) -> String {
        self.process.output()
    }
}

/// What the client found, connection by connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReport {
    pub connections: u64,
    pub ok: u64,
    pub wrong_dst: u64,
    pub wrong_name: u64,
    pub failed: u64,
    pub first_problem: String,
}

/// Connections to distinct destinations (`base` + i / `ports`, port `port_base` +
/// i % `ports`), all held open once checked; closed when this is dropped.
pub struct HeldConnections {
    process: TestProcess,
    pub report: ClientReport,
}

impl HeldConnections {
    pub fn open(
        place: &Place,
        count: u64,
        (base, ports, port_base): (Ipv4Addr, u32, u16),
        expect_name: &str,
    ) -> HeldConnections {
        // A connection that escapes waits for its SYN's retries: bounded here.
        let limit = scaled(Duration::from_secs(30)).as_secs().to_string();
        let mut process = Spawn::new(place, binary(place))
            .args(["client", "--hold", "--expect-name", expect_name])
            .args(["--timeout", &limit])
            .args(["--count", &count.to_string(), "--base", &base.to_string()])
            .args(["--ports", &ports.to_string()])
            .args(["--port-base", &port_base.to_string()])
            .identity(Identity::APP)
            .spawn();
        let line = json_line_with(&mut process, "connections", 0, Duration::from_secs(60));
        let report = ClientReport {
            connections: field(&line, "connections"),
            ok: field(&line, "ok"),
            wrong_dst: field(&line, "wrong_dst"),
            wrong_name: field(&line, "wrong_name"),
            failed: field(&line, "failed"),
            first_problem: line["first_problem"].as_str().unwrap_or_default().into(),
        };
        HeldConnections { process, report }
    }

    /// Closes every connection (the client is killed; the kernel closes its sockets).
    pub fn close(mut self) {
        self.process.kill();
    }
}
