//! Which file of a CNI config dir (`/etc/cni/net.d`) the runtime uses, decided
//! the way libcni-based runtimes do it:
//!
//! - candidates are the files whose extension (the text from the last dot) is
//!   `.conf`, `.conflist` or `.json` — libcni's `ConfFiles`;
//! - they are tried in lexicographic (byte) order — Go's `sort.Strings`;
//! - a `.conflist` must have a string `name` and a non-empty `plugins` list of
//!   objects with a `type`; a `.conf`/`.json` is a single plugin and must have
//!   a `type` (a conflist saved as `.conf` has none) — libcni's loaders;
//! - the first valid file is the default network.
//!
//! CRI-O (ocicni) skips an invalid file with a warning and goes on, which is what
//! this module does; containerd (go-cni) instead refuses the whole dir while an
//! invalid file sorts first. Either way the *first valid* file is the one that
//! carries the pod network, so that is where meshlane's entry belongs; skipped
//! files are reported with their reason so the agent can log them.
//!
//! Pure: the caller reads the directory (regular files only) into a map.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::ConflistError;

/// The files of a net.d dir: name → contents.
pub type NetDir = BTreeMap<String, Vec<u8>>;

/// The top-level key meshlane adds to a conflist it made from a single `.conf`,
/// naming that file, so uninstall can put it back.
pub const WRAPPED_FROM_KEY: &str = "meshlane.io/wrapped-from";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `.conflist`: a chain.
    ConfList,
    /// `.conf` or `.json`: one plugin, which runtimes wrap into a chain of one.
    Conf,
}

/// libcni's extension test: the text after the last dot, as Go's `filepath.Ext`.
pub fn kind_of(file: &str) -> Option<Kind> {
    let ext = &file[file.rfind('.')?..];
    match ext {
        ".conflist" => Some(Kind::ConfList),
        ".conf" | ".json" => Some(Kind::Conf),
        _ => None,
    }
}

/// A candidate that the runtime would pass over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    pub file: String,
    pub kind: Kind,
}

/// What `choose_primary` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// `None`: no valid config yet (the primary CNI has not written its file).
    pub primary: Option<Primary>,
    /// Invalid candidates that sort before the primary (or all, without one).
    pub skipped: Vec<Skipped>,
}

/// Checks one candidate the way libcni loads it; the reason says what is wrong.
pub fn validate(file: &str, contents: &[u8]) -> Result<Kind, String> {
    let kind = kind_of(file).ok_or_else(|| "not a .conf, .conflist or .json file".to_owned())?;
    let value: Value =
        serde_json::from_slice(contents).map_err(|err| format!("not valid JSON: {err}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "not a JSON object".to_owned())?;
    let optional_string = |key: &str| match object.get(key) {
        None | Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!("\"{key}\" is {other}, not a string")),
    };
    optional_string("cniVersion")?;
    match kind {
        Kind::Conf => {
            optional_string("name")?;
            match object.get("type") {
                Some(Value::String(t)) if !t.is_empty() => Ok(kind),
                Some(Value::String(_)) | None if object.contains_key("plugins") => {
                    Err("no \"type\": a plugin list needs the .conflist extension".to_owned())
                }
                _ => Err("no plugin \"type\"".to_owned()),
            }
        }
        Kind::ConfList => {
            match object.get("name") {
                Some(Value::String(_)) => {}
                Some(other) => return Err(format!("\"name\" is {other}, not a string")),
                None => return Err("no \"name\"".to_owned()),
            }
            if let Some(versions) = object.get("cniVersions") {
                let strings = versions
                    .as_array()
                    .is_some_and(|list| list.iter().all(Value::is_string));
                if !strings {
                    return Err("\"cniVersions\" is not a list of strings".to_owned());
                }
            }
            for flag in ["disableCheck", "disableGC", "loadOnlyInlinedPlugins"] {
                match object.get(flag) {
                    None | Some(Value::Bool(_)) => {}
                    Some(Value::String(s))
                        if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {}
                    Some(other) => return Err(format!("\"{flag}\" is {other}, not a boolean")),
                }
            }
            let plugins = match object.get("plugins") {
                Some(Value::Array(plugins)) => plugins,
                Some(other) => return Err(format!("\"plugins\" is {other}, not a list")),
                // libcni would look for plugin files in a `<name>/` sub-directory;
                // meshlane cannot chain into that layout.
                None => {
                    return Err(
                        "no \"plugins\" list (plugins in a sub-directory are not supported)"
                            .to_owned(),
                    )
                }
            };
            if plugins.is_empty() {
                return Err("\"plugins\" is empty".to_owned());
            }
            for (index, plugin) in plugins.iter().enumerate() {
                match plugin.get("type") {
                    Some(Value::String(t)) if !t.is_empty() => {}
                    _ => return Err(format!("plugin {index} has no \"type\"")),
                }
            }
            Ok(kind)
        }
    }
}

/// The file a runtime uses, or — with a configured name — that file. A
/// configured `.conf` that meshlane already wrapped is found as the `.conflist`
/// that names it.
pub fn choose_primary(dir: &NetDir, configured: Option<&str>) -> Result<Choice, ConflistError> {
    if let Some(name) = configured {
        return choose_configured(dir, name);
    }
    let mut skipped = Vec::new();
    // BTreeMap<String> iterates in byte order, as Go's sort.Strings sorts.
    for (file, contents) in dir.iter().filter(|(file, _)| kind_of(file).is_some()) {
        match validate(file, contents) {
            Ok(kind) => {
                return Ok(Choice {
                    primary: Some(Primary {
                        file: file.clone(),
                        kind,
                    }),
                    skipped,
                })
            }
            Err(reason) => skipped.push(Skipped {
                file: file.clone(),
                reason,
            }),
        }
    }
    Ok(Choice {
        primary: None,
        skipped,
    })
}

fn choose_configured(dir: &NetDir, name: &str) -> Result<Choice, ConflistError> {
    let found = |file: &str, kind| Choice {
        primary: Some(Primary {
            file: file.to_owned(),
            kind,
        }),
        skipped: Vec::new(),
    };
    if let Some(contents) = dir.get(name) {
        return match validate(name, contents) {
            Ok(kind) => Ok(found(name, kind)),
            Err(reason) => Err(ConflistError::ConfiguredInvalid {
                file: name.to_owned(),
                reason,
            }),
        };
    }
    if kind_of(name) == Some(Kind::Conf) {
        let wrapped = wrapped_name(name);
        if let Some(contents) = dir.get(&wrapped) {
            if wrapped_from(contents).as_deref() == Some(name)
                && validate(&wrapped, contents).is_ok()
            {
                return Ok(found(&wrapped, Kind::ConfList));
            }
        }
    }
    Ok(Choice {
        primary: None,
        skipped: Vec::new(),
    })
}

/// `10-bridge.conf` → `10-bridge.conflist`: the same stem sorts right where the
/// `.conf` was (the caller still checks that the runtime would pick it).
pub fn wrapped_name(conf_file: &str) -> String {
    let stem = conf_file
        .rfind('.')
        .map_or(conf_file, |dot| &conf_file[..dot]);
    format!("{stem}.conflist")
}

/// The `.conf` a conflist was made from by meshlane, if it was.
pub fn wrapped_from(contents: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(contents).ok()?;
    value.get(WRAPPED_FROM_KEY)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> NetDir {
        files
            .iter()
            .map(|(name, text)| (name.to_string(), text.as_bytes().to_vec()))
            .collect()
    }

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#;
    const CONF: &str = r#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#;

    #[test]
    fn extensions_follow_filepath_ext() {
        assert_eq!(kind_of("10-calico.conflist"), Some(Kind::ConfList));
        assert_eq!(kind_of("10-bridge.conf"), Some(Kind::Conf));
        assert_eq!(kind_of("99-x.json"), Some(Kind::Conf));
        assert_eq!(kind_of("10-calico.conflist.bak"), None);
        assert_eq!(kind_of("calico-kubeconfig"), None);
        assert_eq!(kind_of(".conf"), Some(Kind::Conf));
    }

    #[test]
    fn the_first_valid_file_in_byte_order_wins() {
        let files = dir(&[
            ("20-b.conflist", LIST),
            ("10-a.conf", CONF),
            ("05-broken.conflist", "{"),
            ("00-notes.txt", "hello"),
            ("Z-upper.conflist", LIST), // byte order: digits < uppercase < lowercase
        ]);
        let choice = choose_primary(&files, None).unwrap();
        assert_eq!(
            choice.primary,
            Some(Primary {
                file: "10-a.conf".into(),
                kind: Kind::Conf
            })
        );
        assert_eq!(choice.skipped.len(), 1);
        assert_eq!(choice.skipped[0].file, "05-broken.conflist");
        assert!(choice.skipped[0].reason.contains("not valid JSON"));
    }

    #[test]
    fn conf_sorts_before_conflist_of_the_same_stem() {
        let files = dir(&[("10-a.conflist", LIST), ("10-a.conf", CONF)]);
        let choice = choose_primary(&files, None).unwrap();
        assert_eq!(choice.primary.unwrap().file, "10-a.conf");
    }

    #[test]
    fn invalid_shapes_have_reasons() {
        let cases = [
            ("a.conflist", r#"{"plugins":[{"type":"x"}]}"#, "no \"name\""),
            (
                "a.conflist",
                r#"{"name":1,"plugins":[{"type":"x"}]}"#,
                "not a string",
            ),
            ("a.conflist", r#"{"name":"n","plugins":[]}"#, "empty"),
            (
                "a.conflist",
                r#"{"name":"n","plugins":[{"a":1}]}"#,
                "plugin 0 has no",
            ),
            ("a.conflist", r#"{"name":"n"}"#, "sub-directory"),
            ("a.conflist", r#"{"name":"n","plugins":{}}"#, "not a list"),
            (
                "a.conflist",
                r#"{"name":"n","cniVersion":1,"plugins":[{"type":"x"}]}"#,
                "cniVersion",
            ),
            (
                "a.conflist",
                r#"{"name":"n","disableCheck":"maybe","plugins":[{"type":"x"}]}"#,
                "disableCheck",
            ),
            ("a.conflist", "[]", "not a JSON object"),
            (
                "a.conf",
                r#"{"name":"n","plugins":[{"type":"x"}]}"#,
                ".conflist extension",
            ),
            ("a.conf", r#"{"name":"n"}"#, "no plugin \"type\""),
            ("a.json", r#"{"name":"n","type":""}"#, "no plugin \"type\""),
            ("a.conf", "", "not valid JSON"),
        ];
        for (file, text, mention) in cases {
            let reason = validate(file, text.as_bytes()).unwrap_err();
            assert!(reason.contains(mention), "{file} {text}: {reason}");
        }
        assert_eq!(
            validate(
                "a.conflist",
                br#"{"name":"n","disableCheck":"TRUE","plugins":[{"type":"x"}]}"#
            ),
            Ok(Kind::ConfList)
        );
    }

    #[test]
    fn nothing_valid_means_no_primary() {
        let files = dir(&[("10-a.conflist", "{}"), ("README", "x")]);
        let choice = choose_primary(&files, None).unwrap();
        assert_eq!(choice.primary, None);
        assert_eq!(choice.skipped.len(), 1);
        assert_eq!(choose_primary(&NetDir::new(), None).unwrap().primary, None);
    }

    #[test]
    fn a_configured_name_is_used_even_when_not_first() {
        let files = dir(&[("10-a.conflist", LIST), ("20-b.conflist", LIST)]);
        let choice = choose_primary(&files, Some("20-b.conflist")).unwrap();
        assert_eq!(choice.primary.unwrap().file, "20-b.conflist");
        assert_eq!(
            choose_primary(&files, Some("30-c.conflist"))
                .unwrap()
                .primary,
            None
        );
        let broken = dir(&[("20-b.conflist", "{")]);
        assert!(matches!(
            choose_primary(&broken, Some("20-b.conflist")),
            Err(ConflistError::ConfiguredInvalid { .. })
        ));
    }

    #[test]
    fn a_configured_conf_is_found_after_wrapping() {
        let wrapped =
            r#"{"name":"n","meshlane.io/wrapped-from":"10-a.conf","plugins":[{"type":"bridge"}]}"#;
        let files = dir(&[("10-a.conflist", wrapped)]);
        let choice = choose_primary(&files, Some("10-a.conf")).unwrap();
        assert_eq!(choice.primary.unwrap().file, "10-a.conflist");
        assert_eq!(wrapped_name("10-a.conf"), "10-a.conflist");
        assert_eq!(wrapped_name("10-a.json"), "10-a.conflist");
    }
}
