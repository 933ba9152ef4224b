//! Release-once for what a test creates (a netns, a cgroup, a bpffs mount, a temp
//! dir): released explicitly, where the test can see the error, or else on drop,
//! where the error can only be printed. A failed release leaves it held, so drop
//! tries again.

#[derive(Debug)]
pub struct Held(bool);

impl Held {
    pub fn new() -> Self {
        Held(true)
    }

    pub fn is_held(&self) -> bool {
        self.0
    }

    /// Runs `release` unless it already succeeded once.
    pub fn release(&mut self, release: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        if self.0 {
            release()?;
            self.0 = false;
        }
        Ok(())
    }
}

/// For `Drop`: prints a failed release of `what` (a panic there would abort).
pub fn report_drop(what: &str, result: Result<(), String>) {
    if let Err(err) = result {
        eprintln!("[harness] {what} cleanup: {err}");
    }
}
