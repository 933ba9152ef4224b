//! Captures what libbpf (and, through it, the verifier) prints while an object
//! loads, so that a load error carries the log instead of spilling it on stderr.

use std::sync::Mutex;

use libbpf_rs::PrintLevel;

static CAPTURED: Mutex<String> = Mutex::new(String::new());

fn capture(_level: PrintLevel, message: String) {
    if let Ok(mut log) = CAPTURED.lock() {
        log.push_str(&message);
    }
}

/// Runs `load` with libbpf's output captured; returns its result and the log.
pub fn capture_during<T>(load: impl FnOnce() -> T) -> (T, String) {
    if let Ok(mut log) = CAPTURED.lock() {
        log.clear();
    }
    let previous = libbpf_rs::set_print(Some((PrintLevel::Info, capture)));
    let result = load();
    libbpf_rs::set_print(previous);
    let log = CAPTURED
        .lock()
        .map(|mut log| std::mem::take(&mut *log))
        .unwrap_or_default();
    (result, log)
}
