//! Which pods are captured. Until Istio's own selection rules land, the plugin
//! configuration and the pod's CNI_ARGS decide; this is the one place that decides.

/// The `capture` key of the plugin configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureMode {
    /// Capture pods whose CNI_ARGS carry `MESHLANE_CAPTURE=true`.
    #[default]
    CniArgs,
    /// Capture every pod, except one whose CNI_ARGS carry `MESHLANE_CAPTURE=false`.
    All,
    /// Capture nothing (the plugin only passes results through).
    None,
}

impl CaptureMode {
    pub const KEY_VALUES: [(&'static str, CaptureMode); 3] = [
        ("cni-args", CaptureMode::CniArgs),
        ("all", CaptureMode::All),
        ("none", CaptureMode::None),
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::KEY_VALUES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, mode)| *mode)
    }
}

/// The CNI_ARGS key that asks for (or refuses) capture of one pod.
pub const CAPTURE_ARG: &str = "MESHLANE_CAPTURE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Capture,
    Skip(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI_ARGS {CAPTURE_ARG}={value:?} is not \"true\" or \"false\"")]
pub struct SelectionError {
    pub value: String,
}

/// Decides whether the pod is captured.
pub fn select(
    mode: CaptureMode,
    cni_args: &[(String, String)],
) -> Result<Selection, SelectionError> {
    let asked = cni_args
        .iter()
        .rev()
        .find(|(key, _)| key == CAPTURE_ARG)
        .map(|(_, value)| match value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(SelectionError {
                value: other.to_owned(),
            }),
        })
        .transpose()?;
    Ok(match (mode, asked) {
        (CaptureMode::None, _) => {
            Selection::Skip("capture is \"none\" in the plugin configuration")
        }
        (_, Some(false)) => Selection::Skip("CNI_ARGS has MESHLANE_CAPTURE=false"),
        (_, Some(true)) | (CaptureMode::All, None) => Selection::Capture,
        (CaptureMode::CniArgs, None) => Selection::Skip("CNI_ARGS does not ask for capture"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    type Case = (CaptureMode, &'static [(&'static str, &'static str)], bool);

    #[test]
    fn the_decision_table() {
        use CaptureMode::*;
        let cases: [Case; 9] = [
            (CniArgs, &[], false),
            (CniArgs, &[("MESHLANE_CAPTURE", "true")], true),
            (CniArgs, &[("MESHLANE_CAPTURE", "false")], false),
            (All, &[], true),
            (All, &[("MESHLANE_CAPTURE", "false")], false),
            (All, &[("MESHLANE_CAPTURE", "true")], true),
            (None, &[("MESHLANE_CAPTURE", "true")], false),
            (None, &[], false),
            (
                CniArgs,
                &[("K8S_POD_NAME", "x"), ("MESHLANE_CAPTURE", "true")],
                true,
            ),
        ];
        for (mode, pairs, captured) in cases {
            let selection = select(mode, &args(pairs)).unwrap();
            assert_eq!(
                selection == Selection::Capture,
                captured,
                "{mode:?} {pairs:?}"
            );
        }
    }

    #[test]
    fn a_bad_value_is_an_error_naming_it() {
        let err = select(CaptureMode::All, &args(&[("MESHLANE_CAPTURE", "yes")])).unwrap_err();
        assert!(err.to_string().contains("MESHLANE_CAPTURE=\"yes\""));
    }

    #[test]
    fn modes_parse_by_name() {
        assert_eq!(CaptureMode::parse("all"), Some(CaptureMode::All));
        assert_eq!(CaptureMode::parse("cni-args"), Some(CaptureMode::CniArgs));
        assert_eq!(CaptureMode::parse("none"), Some(CaptureMode::None));
        assert_eq!(CaptureMode::parse("ALL"), None);
    }
}
