//! Strategies for JSON documents: any value, and values of a chosen wrong type.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Short strings, often with the characters parsers trip on.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./:_-]{0,12}",
        any::<String>(),
        Just(String::new()),
        "[0-9.:/]{1,20}",
    ]
}

/// Any JSON value, a few levels deep.
pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON value that is not a string (for keys that must hold one).
pub fn not_string() -> impl Strategy<Value = Value> {
    value().prop_filter("not a string", |v| !v.is_string())
}

/// A JSON value that is not an object.
pub fn not_object() -> impl Strategy<Value = Value> {
    value().prop_filter("not an object", |v| !v.is_object() && !v.is_null())
}

/// A JSON value that is not a boolean.
pub fn not_bool() -> impl Strategy<Value = Value> {
    value().prop_filter("not a boolean", |v| !v.is_boolean() && !v.is_null())
}
