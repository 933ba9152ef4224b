//! Putting meshlane's entry into the primary CNI config, and taking it out again.
//!
//! - A `.conflist` primary gets the entry appended to `plugins` once; an entry
//!   already there is replaced in place (duplicates are dropped), and a file that
//!   already says what we want is left alone (no write, so our own writes do not
//!   wake the watcher into a loop).
//! - A `.conf`/`.json` primary is a single plugin: it is wrapped into
//!   `<stem>.conflist` exactly as libcni would (`name` and `cniVersion` of the
//!   plugin, the plugin as the first entry), with meshlane after it and a
//!   `meshlane.io/wrapped-from` key naming the original; the original is removed,
//!   and the plan is checked against the runtime's choice in the resulting dir.
//! - Uninstall removes every meshlane entry from every conflist and turns a
//!   wrapped conflist back into its `.conf`.
//!
//! Everything else keeps its bytes (see `json_text`): unknown keys, key order,
//! other plugins, formatting, `cniVersion`. Pure: the agent applies the plan.

use serde_json::{Map, Value};

use crate::plugin::config::PluginConfig;

use super::error::ConflistError;
use super::json_text::{self, Splice};
use super::netdir::{self, Kind, NetDir, Skipped, WRAPPED_FROM_KEY};

pub const MESHLANE_TYPE: &str = "meshlane";
/// Istio's own CNI plugin in chained mode (`istio-cni` node agent).
pub const ISTIO_CNI_TYPE: &str = "istio-cni";
/// containerd (≥ 1.5) hands the pod's annotations to plugins that declare it.
pub const POD_ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";

/// meshlane's entry: `type`, `capabilities`, then the plugin settings, in that
/// order (the order a reader of the file expects).
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEntry {
    fields: Vec<(String, Value)>,
}

impl ChainEntry {
    /// The entry with these plugin settings (keys of `plugin::config`), checked
    /// with the plugin's own parser: the agent must never write a config the
    /// plugin refuses at the next pod ADD.
    pub fn new(settings: &Map<String, Value>) -> Result<Self, ConflistError> {
        PluginConfig::from_keys(settings)?;
        let mut fields = vec![
            ("type".to_owned(), Value::from(MESHLANE_TYPE)),
            (
                "capabilities".to_owned(),
                serde_json::json!({ POD_ANNOTATIONS_CAPABILITY: true }),
            ),
        ];
        let mut keys: Vec<&String> = settings.keys().collect();
        // A stable, readable order: the order `plugin::config::KEYS` documents.
        keys.sort_by_key(|key| {
            crate::plugin::config::KEYS
                .iter()
                .position(|(known, _)| known == key)
        });
        for key in keys {
            fields.push((key.clone(), settings[key].clone()));
        }
        Ok(ChainEntry { fields })
    }

    pub fn value(&self) -> Value {
        Value::Object(self.fields.iter().cloned().collect())
    }

    fn render(&self, indent: Option<&str>, unit: &str) -> String {
        json_text::render_object(&self.fields, indent, unit)
    }
}

/// One file operation of a plan, applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    Write { file: String, contents: Vec<u8> },
    Remove { file: String },
}

/// What installing does to the primary config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The entry is there exactly as wanted: nothing to write.
    InPlace,
    Appended,
    /// An entry was there with other settings (or more than once).
    Replaced,
    /// A single-plugin config became a conflist.
    Wrapped {
        conflist: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    /// The primary config as found (before wrapping).
    pub primary: String,
    pub action: Action,
    pub changes: Vec<FileChange>,
    /// Invalid configs that sort before the primary (runtimes skip or reject them).
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    /// No valid config (yet): the primary CNI has not written one.
    NoPrimary {
        skipped: Vec<Skipped>,
    },
    Planned(InstallPlan),
}

/// The changes that put `entry` into the primary config of `dir`.
pub fn plan_install(
    dir: &NetDir,
    configured: Option<&str>,
    entry: &ChainEntry,
) -> Result<InstallOutcome, ConflistError> {
    let choice = netdir::choose_primary(dir, configured)?;
    let Some(primary) = choice.primary else {
        return Ok(InstallOutcome::NoPrimary {
            skipped: choice.skipped,
        });
    };
    let text = text_of(dir, &primary.file);
    if chains_istio_cni(text) {
        return Err(ConflistError::IstioCni { file: primary.file });
    }
    let (action, changes) = match primary.kind {
        Kind::ConfList => merge_into_list(&primary.file, text, entry)?,
        Kind::Conf => {
            let (conflist, changes) = wrap_conf(dir, &primary.file, text, entry)?;
            check_runtime_picks(dir, configured, &primary.file, &conflist, &changes)?;
            (Action::Wrapped { conflist }, changes)
        }
    };
    Ok(InstallOutcome::Planned(InstallPlan {
        primary: primary.file,
        action,
        changes,
        skipped: choice.skipped,
    }))
}

/// Whether a config (conflist or single plugin) runs Istio's own CNI plugin.
pub fn chains_istio_cni(text: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let is_istio =
        |plugin: &Value| plugin.get("type").and_then(Value::as_str) == Some(ISTIO_CNI_TYPE);
    match value.get("plugins").and_then(Value::as_array) {
        Some(plugins) => plugins.iter().any(is_istio),
        None => is_istio(&value),
    }
}

/// The primary config's file when it chains istio-cni (for `precheck`).
pub fn istio_cni_primary(dir: &NetDir, configured: Option<&str>) -> Option<String> {
    let primary = netdir::choose_primary(dir, configured).ok()?.primary?;
    chains_istio_cni(text_of(dir, &primary.file)).then_some(primary.file)
}

/// True when the primary config carries `entry` exactly as wanted.
pub fn is_in_place(dir: &NetDir, configured: Option<&str>, entry: &ChainEntry) -> bool {
    matches!(
        plan_install(dir, configured, entry),
        Ok(InstallOutcome::Planned(InstallPlan {
            action: Action::InPlace,
            ..
        }))
    )
}

/// Validated candidates are UTF-8 (they parsed as JSON).
fn text_of<'d>(dir: &'d NetDir, file: &str) -> &'d str {
    std::str::from_utf8(&dir[file]).unwrap_or_default()
}

fn is_meshlane(text: &str, element: &std::ops::Range<usize>) -> bool {
    serde_json::from_str::<Value>(&text[element.clone()])
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(Value::as_str)
                .map(|t| t == MESHLANE_TYPE)
        })
        .unwrap_or(false)
}

/// The `plugins` array of a conflist text: where it starts and its elements.
fn plugins_of(text: &str) -> Option<(usize, Vec<std::ops::Range<usize>>)> {
    let root = json_text::root(text);
    let member = json_text::members(text, root)
        .into_iter()
        .find(|m| m.key == "plugins")?;
    let start = member.value.start;
    Some((start, json_text::elements(text, start)))
}

/// The file's JSON (null when it does not parse), refused when its `cniVersion`
/// predates chaining.
fn parse_chainable(file: &str, text: &str) -> Result<Value, ConflistError> {
    let object: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if object.get("cniVersions").is_some() {
        return Ok(object);
    }
    let version = object
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let numbers: Vec<u32> = version
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect();
    let (major, minor) = (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    );
    if (major, minor) < (0, 3) {
        return Err(ConflistError::Unsupported {
            file: file.to_owned(),
            reason: format!(
                "cniVersion {version:?}: chaining (and meshlane) needs CNI 0.3.0 or later"
            ),
        });
    }
    Ok(object)
}

fn merge_into_list(
    file: &str,
    text: &str,
    entry: &ChainEntry,
) -> Result<(Action, Vec<FileChange>), ConflistError> {
    parse_chainable(file, text)?;
    let (start, items) = plugins_of(text).ok_or_else(|| ConflistError::Unsupported {
        file: file.to_owned(),
        reason: "no plugins list".to_owned(),
    })?;
    let ours: Vec<usize> = (0..items.len())
        .filter(|i| is_meshlane(text, &items[*i]))
        .collect();
    let wanted = entry.value();

    let indent = json_text::indentation(text, items[0].start);
    let unit = json_text::indent_unit(text, start, items[0].start);
    let new_text = match ours.as_slice() {
        [] => json_text::apply(
            text,
            vec![json_text::append_item(
                text,
                start,
                &items,
                &entry.render(indent, &unit),
            )],
        ),
        [only]
            if serde_json::from_str::<Value>(&text[items[*only].clone()]).ok() == Some(wanted) =>
        {
            return Ok((Action::InPlace, Vec::new()));
        }
        [first, ..] => {
            // Replace the first in place, then drop the rest one by one (each
            // removal shifts the spans, so they are found again each time).
            let at = items[*first].clone();
            let element_indent = json_text::indentation(text, at.start);
            let mut edited = json_text::apply(
                text,
                vec![Splice {
                    range: at,
                    with: entry.render(element_indent, &unit),
                }],
            );
            while let Some((_, items)) = plugins_of(&edited) {
                let extra: Vec<usize> = (0..items.len())
                    .filter(|i| is_meshlane(&edited, &items[*i]))
                    .skip(1)
                    .collect();
                let Some(index) = extra.first() else { break };
                edited = json_text::apply(
                    &edited,
                    vec![json_text::remove_item(&edited, &items, *index)],
                );
            }
            edited
        }
    };
    let action = if ours.is_empty() {
        Action::Appended
    } else {
        Action::Replaced
    };
    Ok((
        action,
        vec![FileChange::Write {
            file: file.to_owned(),
            contents: new_text.into_bytes(),
        }],
    ))
}

/// libcni's `ConfListFromConf`, written out: the plugin's `name` and `cniVersion`
/// at the top, the plugin itself first in `plugins`.
fn wrap_conf(
    dir: &NetDir,
    file: &str,
    text: &str,
    entry: &ChainEntry,
) -> Result<(String, Vec<FileChange>), ConflistError> {
    let conf = parse_chainable(file, text)?;
    let conflist = netdir::wrapped_name(file);
    if let Some(existing) = dir.get(&conflist) {
        if netdir::wrapped_from(existing).as_deref() != Some(file) {
            return Err(ConflistError::Unsupported {
                file: file.to_owned(),
                reason: format!(
                    "{conflist} exists and is not meshlane's; wrapping would overwrite it"
                ),
            });
        }
    }
    let unit = "  ";
    let plugin_indent = "    ";
    let mut top = Vec::new();
    if let Some(version) = conf.get("cniVersion") {
        top.push(format!("{unit}\"cniVersion\": {version}"));
    }
    let name = conf.get("name").cloned().unwrap_or(Value::from(""));
    top.push(format!("{unit}\"name\": {name}"));
    top.push(format!(
        "{unit}{}: {}",
        Value::from(WRAPPED_FROM_KEY),
        Value::from(file)
    ));
    let original = json_text::reindent(text.trim(), "", plugin_indent);
    let plugins = format!(
        "{unit}\"plugins\": [\n{plugin_indent}{original},\n{plugin_indent}{}\n{unit}]",
        entry.render(Some(plugin_indent), unit)
    );
    top.push(plugins);
    let contents = format!("{{\n{}\n}}\n", top.join(",\n"));
    Ok((
        conflist.clone(),
        vec![
            FileChange::Write {
                file: conflist,
                contents: contents.into_bytes(),
            },
            FileChange::Remove {
                file: file.to_owned(),
            },
        ],
    ))
}

/// After wrapping, the runtime must pick the new conflist: a valid config that
/// sorts between `10-x.conf` and `10-x.conflist` (say `10-x.conf.json`) would
/// otherwise silently become the pod network.
fn check_runtime_picks(
    dir: &NetDir,
    configured: Option<&str>,
    conf: &str,
    conflist: &str,
    changes: &[FileChange],
) -> Result<(), ConflistError> {
    let after = apply_to(dir, changes);
    let picked = netdir::choose_primary(&after, configured)?
        .primary
        .map(|p| p.file)
        .unwrap_or_default();
    if picked != conflist {
        return Err(ConflistError::WrapNotPicked {
            conf: conf.to_owned(),
            conflist: conflist.to_owned(),
            picked,
        });
    }
    Ok(())
}

/// The dir as it will be once `changes` are applied.
pub fn apply_to(dir: &NetDir, changes: &[FileChange]) -> NetDir {
    let mut after = dir.clone();
    for change in changes {
        match change {
            FileChange::Write { file, contents } => {
                after.insert(file.clone(), contents.clone());
            }
            FileChange::Remove { file } => {
                after.remove(file);
            }
        }
    }
    after
}

/// The changes that remove meshlane from every conflist of `dir`: its entries
/// go, and a conflist meshlane made from a `.conf` becomes that `.conf` again
/// (unless the primary CNI has written a new `.conf` meanwhile: then ours goes).
pub fn plan_uninstall(dir: &NetDir) -> Vec<FileChange> {
    let mut changes = Vec::new();
    for (file, contents) in dir {
        if netdir::kind_of(file) != Some(Kind::ConfList) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(contents) else {
            continue;
        };
        if serde_json::from_str::<Value>(text)
            .map(|v| !v.is_object())
            .unwrap_or(true)
        {
            continue;
        }
        let Some((_, items)) = plugins_of(text) else {
            continue;
        };
        let ours = items.iter().filter(|item| is_meshlane(text, item)).count();
        let wrapped = netdir::wrapped_from(contents);
        if ours == 0 && wrapped.is_none() {
            continue;
        }
        let others: Vec<&std::ops::Range<usize>> = items
            .iter()
            .filter(|item| !is_meshlane(text, item))
            .collect();
        match (&wrapped, others.as_slice()) {
            (Some(conf), [only]) => {
                if !dir.contains_key(conf) {
                    let indent = json_text::indentation(text, only.start).unwrap_or("");
                    let restored = json_text::reindent(&text[(*only).clone()], indent, "");
                    changes.push(FileChange::Write {
                        file: conf.clone(),
                        contents: format!("{restored}\n").into_bytes(),
                    });
                }
                changes.push(FileChange::Remove { file: file.clone() });
            }
            (_, []) => changes.push(FileChange::Remove { file: file.clone() }),
            _ => changes.push(FileChange::Write {
                file: file.clone(),
                contents: without_meshlane(text).into_bytes(),
            }),
        }
    }
    changes
}

/// A conflist text without meshlane's entries and without its wrapped-from key.
fn without_meshlane(text: &str) -> String {
    let mut edited = text.to_owned();
    while let Some((_, items)) = plugins_of(&edited) {
        let Some(index) = (0..items.len()).find(|i| is_meshlane(&edited, &items[*i])) else {
            break;
        };
        edited = json_text::apply(
            &edited,
            vec![json_text::remove_item(&edited, &items, index)],
        );
    }
    let root = json_text::root(&edited);
    let members = json_text::members(&edited, root);
    if let Some(index) = members.iter().position(|m| m.key == WRAPPED_FROM_KEY) {
        let spans: Vec<_> = members.iter().map(|m| m.span.clone()).collect();
        edited = json_text::apply(
            &edited,
            vec![json_text::remove_item(&edited, &spans, index)],
        );
    }
    edited
}

/// Every conflist of `dir` that has a meshlane entry (for status and uninstall).
pub fn files_with_entry(dir: &NetDir) -> Vec<String> {
    dir.iter()
        .filter(|(file, _)| netdir::kind_of(file) == Some(Kind::ConfList))
        .filter(|(_, contents)| {
            std::str::from_utf8(contents)
                .ok()
                .and_then(|text| Some((text, plugins_of(text)?)))
                .is_some_and(|(text, (_, items))| items.iter().any(|item| is_meshlane(text, item)))
        })
        .map(|(file, _)| file.clone())
        .collect()
}
