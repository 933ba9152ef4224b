//! meshlane's one log stream. The agent (`meshlane install`) and the plugin
//! (every CNI call) write the same records — `ts`, `level`, `msg`, then fields —
//! in the same format, logfmt by default or JSON (`line.rs`):
//!
//! `ts=2026-11-21T10:41:00.123Z level=warn msg="…" command=ADD container_id=1a2b… ifname=eth0 pod=default/web-0`
//!
//! The plugin writes to its file on the node (stdout belongs to the CNI
//! protocol), rotated by size (`file.rs`), and warnings and errors to stderr
//! too, which runtimes keep; its records carry the command, the container id,
//! the interface and the pod as fields. The agent writes to stderr (`kubectl
//! logs`) and copies the plugin's lines to stdout. Records of the `log` crate
//! (rustls, ureq, netlink) join the stream (`bridge.rs`).

mod bridge;
pub mod file;
pub mod line;
pub mod time;

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

pub use line::Format;
pub use time::timestamp;

use file::LogFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }

    /// As it appears in the `level` field.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where records go.
pub struct Sinks {
    /// The plugin's file (`None`: none).
    pub file: Option<(std::path::PathBuf, u64)>,
    /// Records at or above this level also go to stderr.
    pub stderr_from: Level,
}

struct Logger {
    level: Level,
    format: Format,
    /// Fields every record carries (the plugin's command, container, pod).
    context: Vec<(&'static str, String)>,
    file: Option<Mutex<LogFile>>,
    stderr_from: Level,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up the process's log once; later calls are ignored. A log file that
/// cannot be opened is reported on stderr and skipped: logging never fails a
/// CNI operation.
pub fn init(level: Level, format: Format, sinks: Sinks, context: Vec<(&'static str, String)>) {
    let file = sinks
        .file
        .and_then(|(path, max_bytes)| match LogFile::open(&path, max_bytes) {
            Ok(file) => Some(Mutex::new(file)),
            Err(err) => {
                eprintln!("meshlane: cannot open log file {}: {err}", path.display());
                None
            }
        });
    let set = LOGGER.set(Logger {
        level,
        format,
        context,
        file,
        stderr_from: sinks.stderr_from,
    });
    if set.is_ok() {
        bridge::install(level);
    }
}

/// The plugin's log: its file, warnings and errors on stderr too.
pub fn init_plugin(
    file: Option<&Path>,
    max_bytes: u64,
    level: Level,
    format: Format,
    context: Vec<(&'static str, String)>,
) {
    let sinks = Sinks {
        file: file.map(|path| (path.to_path_buf(), max_bytes)),
        stderr_from: Level::Warn,
    };
    init(level, format, sinks, context);
}

/// The agent's log: everything on stderr.
pub fn init_agent(level: Level, format: Format) {
    let sinks = Sinks {
        file: None,
        stderr_from: Level::Debug,
    };
    init(level, format, sinks, Vec::new());
}

/// Whether a record at `level` would be written.
pub fn enabled(level: Level) -> bool {
    match LOGGER.get() {
        Some(logger) => level >= logger.level,
        // Before `init` (the CLI's commands): warnings and errors, on stderr.
        None => level >= Level::Warn,
    }
}

/// Writes one record: `msg` and the fields, after the context's.
pub fn emit(level: Level, msg: &str, fields: &[(&str, &dyn fmt::Display)]) {
    if !enabled(level) {
        return;
    }
    let ts = timestamp(SystemTime::now());
    let Some(logger) = LOGGER.get() else {
        let own: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let line = line::render(Format::Logfmt, &ts, level, msg, &own);
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        return;
    };
    let all: Vec<(&str, String)> = logger
        .context
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .chain(fields.iter().map(|(k, v)| (*k, v.to_string())))
        .collect();
    let mut text = line::render(logger.format, &ts, level, msg, &all);
    text.push('\n');
    if let Some(file) = &logger.file {
        if let Ok(mut file) = file.lock() {
            let _ = file.write_line(&text);
        }
    }
    if level >= logger.stderr_from {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

pub fn debug(msg: &str, fields: &[(&str, &dyn fmt::Display)]) {
    emit(Level::Debug, msg, fields);
}

pub fn info(msg: &str, fields: &[(&str, &dyn fmt::Display)]) {
    emit(Level::Info, msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &dyn fmt::Display)]) {
    emit(Level::Warn, msg, fields);
}

pub fn error(msg: &str, fields: &[(&str, &dyn fmt::Display)]) {
    emit(Level::Error, msg, fields);
}

/// For the macros: a formatted message without fields.
pub fn write(level: Level, message: fmt::Arguments<'_>) {
    if enabled(level) {
        emit(level, &message.to_string(), &[]);
    }
}

#[macro_export]
macro_rules! log_debug { ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) } }
#[macro_export]
macro_rules! log_info { ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) } }
#[macro_export]
macro_rules! log_warn { ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) } }
#[macro_export]
macro_rules! log_error { ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) } }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse("warn"), Some(Level::Warn));
        assert_eq!(Level::parse("WARN"), None);
        assert!(Level::Debug < Level::Error);
        assert_eq!(Level::Error.to_string(), "error");
    }
}
