//! A short name for a JSON value's type, for the messages of the parsers of
//! untrusted JSON (CNI config and prevResult, Pod JSON): "expected an array,
//! found a string".

use serde_json::Value;

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
