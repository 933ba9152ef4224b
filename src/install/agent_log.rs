//! The agent's own log: one `key=value` line per event on stderr, which the
//! container runtime keeps (`kubectl logs`). stdout carries the plugin's log
//! lines, copied from its file (see `log_tail`).
//!
//! `ts=2026-11-21T10:41:00.123Z level=info msg="chain entry restored" file=10-calico.conflist`

use std::fmt::Write as _;
use std::io::Write;
use std::time::SystemTime;

use crate::log::timestamp;

/// A value as logfmt wants it: bare when it is a plain token, quoted otherwise.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/:@+,".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

/// Formats one line (without the newline).
pub fn format_line(
    ts: &str,
    level: &str,
    msg: &str,
    fields: &[(&str, &dyn std::fmt::Display)],
) -> String {
    let mut line = format!("ts={ts} level={level} msg={}", quote(msg));
    for (key, value) in fields {
        let _ = write!(line, " {key}={}", quote(&value.to_string()));
    }
    line
}

pub fn log(level: &str, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    let ts = timestamp(SystemTime::now());
    let line = format_line(&ts, level, msg, fields);
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

pub fn info(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    log("info", msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    log("warn", msg, fields);
}

pub fn error(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    log("error", msg, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_logfmt() {
        let line = format_line(
            "2026-11-21T10:41:00.123Z",
            "info",
            "chain entry restored",
            &[
                ("file", &"10-calico.conflist"),
                ("count", &3),
                ("why", &"a \"b\""),
            ],
        );
        assert_eq!(
            line,
            "ts=2026-11-21T10:41:00.123Z level=info msg=\"chain entry restored\" \
             file=10-calico.conflist count=3 why=\"a \\\"b\\\"\""
        );
        assert_eq!(quote(""), "\"\"");
    }
}
