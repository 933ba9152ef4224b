//! One log record as a line, in either format, and back.
//!
//! logfmt (the default): `ts=… level=info msg="chain entry added" file=10-calico.conflist`
//! JSON (`logFormat: json`): `{"ts":"…","level":"info","msg":"chain entry added","file":"10-calico.conflist"}`
//!
//! `ts`, `level` and `msg` come first, then the fields in the order given. The
//! agent reads the plugin's lines back (`parse`) to count failed CNI calls by
//! their fields, so whatever `render` writes, `parse` must read.

use std::fmt::Write as _;

use super::Level;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Logfmt,
    Json,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "logfmt" => Some(Format::Logfmt),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Logfmt => "logfmt",
            Format::Json => "json",
        }
    }
}

/// A line's fields, in order (`ts`, `level` and `msg` included).
pub type Fields = Vec<(String, String)>;

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

/// The line for one record, without the newline.
pub fn render(
    format: Format,
    ts: &str,
    level: Level,
    msg: &str,
    fields: &[(&str, String)],
) -> String {
    let all = [("ts", ts), ("level", level.name()), ("msg", msg)]
        .into_iter()
        .chain(fields.iter().map(|(k, v)| (*k, v.as_str())));
    let mut line = String::new();
    match format {
        Format::Logfmt => {
            for (key, value) in all {
                if !line.is_empty() {
                    line.push(' ');
                }
                let _ = write!(line, "{key}={}", quote(value));
            }
        }
        Format::Json => {
            line.push('{');
            for (key, value) in all {
                if line.len() > 1 {
                    line.push(',');
                }
                let _ = write!(line, "{}:{}", json_string(key), json_string(value));
            }
            line.push('}');
        }
    }
    line
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The fields of a line in either format; `None` for a line that is neither
/// (an older meshlane's, or a stray one). A logfmt line's fields keep their
/// order; a JSON line's come sorted by key (readers look fields up by key).
pub fn parse(line: &str) -> Option<Fields> {
    let line = line.trim_end();
    if line.starts_with('{') {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
        return Some(
            object
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect(),
        );
    }
    parse_logfmt(line)
}

fn parse_logfmt(line: &str) -> Option<Fields> {
    let mut fields = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        if key.is_empty() || key.contains([' ', '"']) {
            return None;
        }
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            unquote(quoted)?
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        fields.push((key.to_owned(), value));
        rest = after.trim_start();
    }
    fields.iter().any(|(k, _)| k == "level").then_some(fields)
}

/// Reads a string quoted by `{:?}` (Rust's escapes) up to its closing quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    let (_, open) = chars.next()?;
                    if open != '{' {
                        return None;
                    }
                    let mut hex = String::new();
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                        hex.push(c);
                    }
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The value of `key` in `fields`.
pub fn field<'f>(fields: &'f Fields, key: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(format: Format) -> String {
        render(
            format,
            "2026-11-21T10:41:00.123Z",
            Level::Info,
            "chain entry restored",
            &[
                ("file", "10-calico.conflist".to_owned()),
                ("count", 3.to_string()),
                ("why", "a \"b\"\nc → d\t\\".to_owned()),
                ("empty", String::new()),
            ],
        )
    }

    #[test]
    fn logfmt_lines() {
        assert_eq!(
            sample(Format::Logfmt),
            "ts=2026-11-21T10:41:00.123Z level=info msg=\"chain entry restored\" \
             file=10-calico.conflist count=3 why=\"a \\\"b\\\"\\nc → d\\t\\\\\" empty=\"\""
        );
    }

    #[test]
    fn json_lines() {
        let line = sample(Format::Json);
        assert!(line.starts_with(
            "{\"ts\":\"2026-11-21T10:41:00.123Z\",\"level\":\"info\",\"msg\":\"chain entry restored\","
        ));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["why"], "a \"b\"\nc → d\t\\");
    }

    #[test]
    fn both_formats_read_back_to_the_same_fields() {
        let mut logfmt = parse(&sample(Format::Logfmt)).unwrap();
        let mut json = parse(&sample(Format::Json)).unwrap();
        let keys: Vec<&str> = logfmt.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["ts", "level", "msg", "file", "count", "why", "empty"]
        );
        logfmt.sort();
        json.sort();
        assert_eq!(logfmt, json);
        assert_eq!(field(&logfmt, "why"), Some("a \"b\"\nc → d\t\\"));
        assert_eq!(field(&logfmt, "empty"), Some(""));
        assert_eq!(field(&logfmt, "level"), Some("info"));
        let control = render(Format::Logfmt, "t", Level::Warn, "\u{1b}x", &[]);
        assert_eq!(field(&parse(&control).unwrap(), "msg"), Some("\u{1b}x"));
    }

    #[test]
    fn other_lines_are_not_records() {
        for line in [
            "2026-11-21T10:41:00.123Z ERROR [ADD 1a2b/eth0] failed with code 7: x",
            "plain text",
            "msg=\"unterminated",
            "",
        ] {
            assert_eq!(parse(line), None, "{line}");
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("logfmt"), Some(Format::Logfmt));
        assert_eq!(Format::parse("text"), None);
    }
}
