//! How long the harness waits. Everything here runs on real kernels and real
//! Envoys, and some machines are much slower than a developer's: a TCG guest of
//! `scripts/kernels.sh` runs 5-20 times slower. `MESHLANE_TEST_TIME_SCALE`
//! multiplies every timeout and every deliberate delay a test relies on; what is
//! checked (bytes, counters, verdicts) stays the same.

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The environment variable; a number ≥ 1 (default 1).
pub const TIME_SCALE_ENV: &str = "MESHLANE_TEST_TIME_SCALE";

/// The factor, read once; a malformed value fails the test loudly.
pub fn scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| match std::env::var(TIME_SCALE_ENV) {
        Err(_) => 1.0,
        Ok(text) => match text.trim().parse::<f64>() {
            Ok(factor) if factor.is_finite() && factor >= 1.0 => factor,
            _ => panic!("{TIME_SCALE_ENV}={text:?} is not a number of at least 1"),
        },
    })
}

/// `wait` on this machine.
pub fn scaled(wait: Duration) -> Duration {
    wait.mul_f64(scale())
}

/// `scaled(Duration::from_millis(ms))` in milliseconds, for tools that take them.
pub fn scaled_ms(ms: u64) -> u64 {
    scaled(Duration::from_millis(ms)).as_millis() as u64
}

/// Tries `attempt` every `every` until it gives a value; after `timeout`, what it
/// last said was missing (its `Err`). `timeout` is taken as given: the caller
/// passes it through [`scaled`] where a slow machine must get longer.
pub fn poll<T, E>(
    timeout: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    loop {
        let result = attempt();
        if result.is_ok() || Instant::now() >= deadline {
            return result;
        }
        thread::sleep(every);
    }
}

/// [`poll`] every 100 ms; after `timeout` it panics: "`what` after `timeout`: "
/// and what `attempt` last said was missing.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    attempt: impl FnMut() -> Result<T, String>,
) -> T {
    poll(timeout, Duration::from_millis(100), attempt)
        .unwrap_or_else(|missing| panic!("{what} after {timeout:?}: {missing}"))
}

/// [`poll`] for a condition: whether `done` came true within `timeout`, tried
/// every `every`; the caller's assertion says what it waited for.
pub fn wait_until(timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    poll(timeout, every, || if done() { Ok(()) } else { Err(()) }).is_ok()
}
