//! Which of a captured pod's sockets may take the short path (sockmap redirection
//! between local sockets, docs/shortpath.md): the node-wide switch (`shortPath` in
//! the plugin configuration) and the pod's own annotation.

use std::collections::BTreeMap;

use super::annotations::{parse_go_bool, AnnotationError};

/// The pod's annotation:
/// - `"false"`: none of the pod's sockets take the short path, and other pods'
///   sockets do not pair with them;
/// - `"true"` (the default): its proxy's sockets, with other pods' proxies on the
///   node (sidecar to sidecar);
/// - `"app"`: also the app's own sends to a proxy (its sidecar over loopback,
///   another pod's sidecar). Opt-in: only for apps that never block in `recv` on
///   one thread while another thread writes the same socket, and do not send TCP
///   urgent data (docs/shortpath.md, "Apps on the short path").
///
/// The annotation cannot turn the short path on where the node-wide `shortPath` is
/// false.
pub const SHORT_PATH_ANNOTATION: &str = "meshlane.io/short-path";

/// The value of [`SHORT_PATH_ANNOTATION`] that lets the app's sockets in.
pub const SHORT_PATH_WITH_APP: &str = "app";

/// A pod's short path setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortPath {
    Off,
    /// Between the pod's proxy and other pods' proxies.
    Proxy,
    /// The proxy's connections, and the app's sends to a proxy.
    ProxyAndApp,
}

impl ShortPath {
    pub fn is_on(self) -> bool {
        self != ShortPath::Off
    }
}

/// The pod's setting from the node-wide switch and its annotation. A value that is
/// neither a boolean nor `"app"` is an error naming the annotation.
pub fn pod_short_path(
    node_wide: bool,
    annotations: &BTreeMap<String, String>,
) -> Result<ShortPath, AnnotationError> {
    let wanted = match annotations.get(SHORT_PATH_ANNOTATION) {
        None => ShortPath::Proxy,
        Some(value) if value.trim() == SHORT_PATH_WITH_APP => ShortPath::ProxyAndApp,
        Some(value) => match parse_go_bool(value.trim()) {
            Some(true) => ShortPath::Proxy,
            Some(false) => ShortPath::Off,
            None => {
                return Err(AnnotationError {
                    annotation: SHORT_PATH_ANNOTATION,
                    value: value.clone(),
                    problem: format!("is not true, false or {SHORT_PATH_WITH_APP:?}"),
                })
            }
        },
    };
    Ok(if node_wide { wanted } else { ShortPath::Off })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(SHORT_PATH_ANNOTATION.to_string(), value.to_string())])
    }

    #[test]
    fn the_node_wide_switch_sets_the_default() {
        assert_eq!(
            pod_short_path(true, &BTreeMap::new()).unwrap(),
            ShortPath::Proxy
        );
        assert_eq!(
            pod_short_path(false, &BTreeMap::new()).unwrap(),
            ShortPath::Off
        );
    }

    #[test]
    fn a_pod_opts_out_or_lets_its_app_in_but_never_against_the_node() {
        use ShortPath::*;
        for (node, value, expected) in [
            (true, "false", Off),
            (true, "False", Off),
            (true, "0", Off),
            (true, "true", Proxy),
            (true, " true ", Proxy),
            (true, "app", ProxyAndApp),
            (false, "true", Off),
            (false, "app", Off),
            (false, "false", Off),
        ] {
            assert_eq!(
                pod_short_path(node, &annotated(value)).unwrap(),
                expected,
                "node {node}, annotation {value:?}"
            );
        }
    }

    #[test]
    fn a_bad_value_names_the_annotation() {
        let err = pod_short_path(true, &annotated("off")).unwrap_err();
        assert_eq!(err.annotation, SHORT_PATH_ANNOTATION);
        assert!(err.to_string().contains("\"off\""), "{err}");
        assert!(pod_short_path(true, &annotated("App")).is_err());
    }
}
