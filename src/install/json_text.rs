//! Edits a JSON document as text, so everything meshlane does not change keeps
//! its bytes: the primary CNI's key order, formatting, number spelling and
//! unknown keys. Only the spans of values are located here; what a value means
//! is read with serde_json. Inputs are checked with serde_json first, so this
//! scanner may assume well-formed JSON.

use std::ops::Range;

use serde_json::Value;

/// A member of an object: its key and the byte ranges of the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    /// From the opening quote of the key to the end of the value.
    pub span: Range<usize>,
    pub value: Range<usize>,
}

/// Where one value ends, starting at its first byte.
fn value_end(text: &[u8], start: usize) -> usize {
    match text[start] {
        b'"' => string_end(text, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < text.len() {
                match text[i] {
                    b'"' => {
                        i = string_end(text, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            text.len()
        }
        _ => {
            // Numbers and literals end at a delimiter.
            let mut i = start;
            while i < text.len()
                && !matches!(text[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            i
        }
    }
}

/// The index just past the closing quote of the string starting at `start`.
fn string_end(text: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && matches!(text[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The first non-whitespace byte: where the top-level value starts.
pub fn root(text: &str) -> usize {
    skip_ws(text.as_bytes(), 0)
}

/// The members of the object starting at `start` (`{`), in document order.
pub fn members(text: &str, start: usize) -> Vec<Member> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = skip_ws(bytes, start + 1);
    while i < bytes.len() && bytes[i] == b'"' {
        let key_end = string_end(bytes, i);
        let key = serde_json::from_str::<String>(&text[i..key_end]).unwrap_or_default();
        let colon = skip_ws(bytes, key_end);
        let value_start = skip_ws(bytes, colon + 1);
        let end = value_end(bytes, value_start);
        out.push(Member {
            key,
            span: i..end,
            value: value_start..end,
        });
        i = skip_ws(bytes, end);
        if i < bytes.len() && bytes[i] == b',' {
            i = skip_ws(bytes, i + 1);
        }
    }
    out
}

/// The elements of the array starting at `start` (`[`), in document order.
pub fn elements(text: &str, start: usize) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = skip_ws(bytes, start + 1);
    while i < bytes.len() && bytes[i] != b']' {
        let end = value_end(bytes, i);
        out.push(i..end);
        i = skip_ws(bytes, end);
        if i < bytes.len() && bytes[i] == b',' {
            i = skip_ws(bytes, i + 1);
        }
    }
    out
}

/// The end of the container (object or array) starting at `start`.
pub fn container_end(text: &str, start: usize) -> usize {
    value_end(text.as_bytes(), start)
}

/// The whitespace that precedes the item at `at` on its line (its indentation),
/// or `None` when the item does not start a line (a compact document).
pub fn indentation(text: &str, at: usize) -> Option<&str> {
    let line_start = text[..at].rfind('\n')? + 1;
    let indent = &text[line_start..at];
    indent
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
        .then_some(indent)
}

/// The leading whitespace of the line that holds byte `at`.
pub fn line_indent(text: &str, at: usize) -> &str {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let width = line
        .bytes()
        .take_while(|b| *b == b' ' || *b == b'\t')
        .count();
    &line[..width]
}

/// One indentation step as the document uses it: the difference between an
/// item's indentation and its container's line, else two spaces.
pub fn indent_unit(text: &str, container_start: usize, item: usize) -> String {
    let outer = line_indent(text, container_start);
    match indentation(text, item) {
        Some(inner) if inner.len() > outer.len() && inner.starts_with(outer) => {
            inner[outer.len()..].to_owned()
        }
        _ => "  ".to_owned(),
    }
}

/// Renders an object with its keys in the given order (serde_json's own map
/// sorts keys): pretty with `indent` as the line prefix and `unit` per level, or
/// on one line when `indent` is `None`.
pub fn render_object(entries: &[(String, Value)], indent: Option<&str>, unit: &str) -> String {
    let key = |k: &str| Value::from(k).to_string();
    match indent {
        None => {
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", key(k), v))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Some(indent) => {
            let inner = format!("{indent}{unit}");
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{inner}{}: {}", key(k), render_value(v, &inner, unit)))
                .collect();
            format!("{{\n{}\n{indent}}}", body.join(",\n"))
        }
    }
}

/// A value pretty-printed with the document's indentation, nested under `indent`.
fn render_value(value: &Value, indent: &str, unit: &str) -> String {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let entries: Vec<(String, Value)> =
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            render_object(&entries, Some(indent), unit)
        }
        Value::Array(items) if !items.is_empty() => {
            let inner = format!("{indent}{unit}");
            let body: Vec<String> = items
                .iter()
                .map(|v| format!("{inner}{}", render_value(v, &inner, unit)))
                .collect();
            format!("[\n{}\n{indent}]", body.join(",\n"))
        }
        other => other.to_string(),
    }
}

/// Re-indents a multi-line value taken from one place (`from` was its
/// indentation) for another (`to`).
pub fn reindent(value_text: &str, from: &str, to: &str) -> String {
    let mut lines = value_text.split('\n');
    let mut out = String::from(lines.next().unwrap_or_default());
    for line in lines {
        out.push('\n');
        out.push_str(to);
        out.push_str(line.strip_prefix(from).unwrap_or(line.trim_start()));
    }
    out
}

/// A text edit: replace `range` with `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub range: Range<usize>,
    pub with: String,
}

/// Applies non-overlapping splices (any order).
pub fn apply(text: &str, mut splices: Vec<Splice>) -> String {
    splices.sort_by_key(|s| std::cmp::Reverse(s.range.start));
    let mut out = text.to_owned();
    for splice in splices {
        out.replace_range(splice.range, &splice.with);
    }
    out
}

/// The splice that removes item `index` of `items` (elements or member spans of
/// one container) together with one separating comma and its whitespace.
pub fn remove_item(text: &str, items: &[Range<usize>], index: usize) -> Splice {
    let item = &items[index];
    let range = if index > 0 {
        // From the end of the previous item: ",<ws>item".
        items[index - 1].end..item.end
    } else if let Some(next) = items.get(1) {
        // The first of several: "item,<ws>" up to the next one.
        item.start..next.start
    } else {
        // The only item: also drop the whitespace before the closing bracket.
        let bytes = text.as_bytes();
        item.start..skip_ws(bytes, item.end)
    };
    Splice {
        range,
        with: String::new(),
    }
}

/// The splice that appends `rendered` after the last of `items`, separated the
/// way the last two items are (or, for a single item, the way the container
/// opens), so the document keeps its layout.
pub fn append_item(
    text: &str,
    container_start: usize,
    items: &[Range<usize>],
    rendered: &str,
) -> Splice {
    let last = items.last().expect("appending needs an existing item");
    let separator = match items.len() {
        1 => {
            let opening_ws = &text[container_start + 1..last.start];
            format!(",{opening_ws}")
        }
        n => text[items[n - 2].end..items[n - 1].start].to_owned(),
    };
    Splice {
        range: last.end..last.end,
        with: format!("{separator}{rendered}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOC: &str = "{\n  \"name\": \"k8s\",\n  \"plugins\": [\n    {\"type\": \"a\", \"s\": \"x]}\\\"\"},\n    {\"type\": \"b\"}\n  ],\n  \"n\": 1.50\n}\n";

    #[test]
    fn finds_members_and_elements() {
        let root = root(DOC);
        let members = members(DOC, root);
        let keys: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["name", "plugins", "n"]);
        assert_eq!(&DOC[members[2].value.clone()], "1.50");
        let plugins = elements(DOC, members[1].value.start);
        assert_eq!(plugins.len(), 2);
        assert_eq!(&DOC[plugins[1].clone()], "{\"type\": \"b\"}");
        assert_eq!(container_end(DOC, root), DOC.trim_end().len());
    }

    #[test]
    fn removes_and_appends_keeping_layout() {
        let plugins_at = members(DOC, root(DOC))[1].value.start;
        let items = elements(DOC, plugins_at);
        let removed = apply(DOC, vec![remove_item(DOC, &items, 1)]);
        let value: Value = serde_json::from_str(&removed).unwrap();
        assert_eq!(value["plugins"].as_array().unwrap().len(), 1);
        assert!(removed.contains("x]}\\\"\"}\n  ],"));

        let appended = apply(
            DOC,
            vec![append_item(DOC, plugins_at, &items, "{\"type\": \"c\"}")],
        );
        assert!(appended.contains("{\"type\": \"b\"},\n    {\"type\": \"c\"}\n  ]"));

        let first = apply(DOC, vec![remove_item(DOC, &items, 0)]);
        let value: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(value["plugins"], json!([{"type": "b"}]));
    }

    #[test]
    fn renders_in_the_documents_style() {
        let entries = vec![
            ("type".to_owned(), json!("meshlane")),
            ("capabilities".to_owned(), json!({"x": true})),
        ];
        assert_eq!(
            render_object(&entries, None, "  "),
            "{\"type\":\"meshlane\",\"capabilities\":{\"x\":true}}"
        );
        assert_eq!(
            render_object(&entries, Some("    "), "  "),
            "{\n      \"type\": \"meshlane\",\n      \"capabilities\": {\n        \"x\": true\n      }\n    }"
        );
        let plugins_at = members(DOC, root(DOC))[1].value.start;
        let items = elements(DOC, plugins_at);
        assert_eq!(indentation(DOC, items[0].start), Some("    "));
        assert_eq!(indent_unit(DOC, plugins_at, items[0].start), "  ");
    }

    #[test]
    fn reindents_multiline_values() {
        assert_eq!(
            reindent("{\n    \"a\": 1\n  }", "  ", "    "),
            "{\n      \"a\": 1\n    }"
        );
    }
}
