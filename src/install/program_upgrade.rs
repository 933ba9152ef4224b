//! The agent's program upgrade: once the node's programs are attached, a new
//! meshlane switches every one that differs from its own build, in place
//! (`datapath::upgrade`). A rolling update of the DaemonSet thus upgrades each
//! node's programs as its agent starts, without a gap in capture.
//!
//! Until the upgrade has succeeded the agent is not ready, so that a rolling
//! update stops at the first node where it fails (a map whose layout changed,
//! say) instead of leaving old programs on every node; the old programs keep
//! capturing meanwhile. A failed upgrade is retried, at most once a minute (each
//! attempt loads every object).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::datapath::{upgrade_programs, Outcome, PinLayout, UpgradeMode};

use crate::log::{error, info};

const RETRY_EVERY: Duration = Duration::from_secs(60);

enum State {
    NotYet,
    Done,
    Failed { error: String, at: Instant },
}

/// Shared by the agent's loop (which runs it) and its readiness probe.
pub struct StartupUpgrade {
    state: Mutex<State>,
}

impl Default for StartupUpgrade {
    fn default() -> Self {
        StartupUpgrade {
            state: Mutex::new(State::NotYet),
        }
    }
}

impl StartupUpgrade {
    /// Upgrades the programs under `layout` unless that already succeeded (or
    /// failed less than a minute ago). Logs each replaced program.
    pub fn run_once(&self, layout: &PinLayout) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match &*state {
            State::Done => return,
            State::Failed { at, .. } if at.elapsed() < RETRY_EVERY => return,
            _ => {}
        }
        match upgrade_programs(layout, UpgradeMode::WhatDiffers) {
            Ok(report) => {
                for program in report.replaced() {
                    info(
                        "program upgraded",
                        &[
                            ("target", &program.target),
                            ("program", &program.program),
                            ("old_id", &program.old_id),
                            ("new_id", &program.new_id),
                        ],
                    );
                }
                info(
                    "node programs are this version's",
                    &[
                        ("replaced", &report.replaced().count()),
                        ("current", &report.current().count()),
                        ("netns_gone", &report.with(Outcome::NetnsGone).count()),
                    ],
                );
                *state = State::Done;
            }
            Err(err) => {
                let message = err.to_string();
                let repeated = matches!(&*state, State::Failed { error, .. } if *error == message);
                if !repeated {
                    let log = err.verifier_log().unwrap_or("").trim().to_owned();
                    error(
                        "cannot upgrade the node programs; the attached ones keep running (will retry)",
                        &[("error", &message), ("verifier_log", &log)],
                    );
                }
                *state = State::Failed {
                    error: message,
                    at: Instant::now(),
                };
            }
        }
    }

    /// Why the node is not ready as far as the upgrade goes.
    pub fn problem(&self) -> Option<String> {
        let state = self.state.lock().ok()?;
        match &*state {
            State::Done => None,
            State::NotYet => Some("the node programs are not upgraded to this version yet".into()),
            State::Failed { error, .. } => Some(format!("program upgrade failed: {error}")),
        }
    }
}
