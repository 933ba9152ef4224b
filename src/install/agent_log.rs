//! The agent's own log: one `key=value` line per event on stderr, which the
//! container runtime keeps (`kubectl logs`). stdout carries the plugin's log
//! lines, copied from its file (see `log_tail`).
//!
//! `ts=2026-11-21T10:41:00.123Z level=info msg="chain entry restored" file=10-calico.conflist`

use std::fmt::Write as _;
use std::io::Write;
use std::time::SystemTime;

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

/// RFC 3339 UTC with milliseconds (the plugin's log uses the same form; its
/// formatter is private to `crate::log`).
fn timestamp(now: SystemTime) -> String {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
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

    #[test]
    fn timestamps_are_rfc3339() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_257_660_123);
        assert_eq!(timestamp(at), "2026-11-21T10:41:00.123Z");
    }
}
