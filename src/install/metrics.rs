//! The agent's `/metrics`, in the Prometheus text exposition format (0.0.4).
//! Rendering is pure; the agent gathers a [`Snapshot`] per scrape from the
//! pinned maps, the pin layout and the plugin's log.

use std::fmt::Write;

/// ADD and DEL failures seen in the plugin's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CniErrors {
    pub add: u64,
    pub del: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The datapath's per-CPU counters, summed (empty when the maps are missing).
    pub counters: Vec<(&'static str, u64)>,
    /// Pod records in the maps; `None` when they cannot be read.
    pub enrolled_pods: Option<u64>,
    pub cni_errors: CniErrors,
    pub chain_in_place: bool,
    pub programs_attached: u64,
    pub programs_expected: u64,
}

/// Captured connections, from the counter that counts each.
const CAPTURED: [(&str, &str); 2] = [
    ("outbound_redirected", "outbound"),
    ("inbound_steered", "inbound"),
];

/// The short path's traffic (docs/shortpath.md): metric, counter, help.
const SHORT_PATH: [(&str, &str, &str); 2] = [
    (
        "meshlane_short_path_messages_total",
        "short_path_redirected_messages",
        "Messages handed from socket to socket on the node (sk_msg), skipping TCP/IP.",
    ),
    (
        "meshlane_short_path_bytes_total",
        "short_path_redirected_bytes",
        "Bytes handed from socket to socket on the node (sk_msg), skipping TCP/IP.",
    ),
];

/// Bypasses by direction and reason: outbound ones are the `bypass_*` counters.
fn bypass_labels(counter: &str) -> Option<(&'static str, &str)> {
    if let Some(reason) = counter.strip_prefix("bypass_") {
        return Some(("outbound", reason));
    }
    match counter {
        "inbound_bypass_port" => Some(("inbound", "excluded_port")),
        _ => None,
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "meshlane_build_info",
        "gauge",
        "meshlane's version.",
    );
    let _ = writeln!(
        out,
        "meshlane_build_info{{version=\"{}\"}} 1",
        escape(env!("CARGO_PKG_VERSION"))
    );

    family(
        &mut out,
        "meshlane_chain_entry_present",
        "gauge",
        "1 when meshlane's entry is in the primary CNI config.",
    );
    let _ = writeln!(
        out,
        "meshlane_chain_entry_present {}",
        u8::from(snapshot.chain_in_place)
    );
    family(
        &mut out,
        "meshlane_node_programs_attached",
        "gauge",
        "Node-wide programs attached through pinned links (of meshlane_node_programs_expected).",
    );
    let _ = writeln!(
        out,
        "meshlane_node_programs_attached {}",
        snapshot.programs_attached
    );
    family(
        &mut out,
        "meshlane_node_programs_expected",
        "gauge",
        "Node-wide programs meshlane attaches.",
    );
    let _ = writeln!(
        out,
        "meshlane_node_programs_expected {}",
        snapshot.programs_expected
    );

    let value = |name: &str| {
        snapshot
            .counters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    };
    family(
        &mut out,
        "meshlane_captured_connections_total",
        "counter",
        "Connections steered to the sidecar, by direction.",
    );
    for (counter, direction) in CAPTURED {
        if let Some(v) = value(counter) {
            let _ = writeln!(
                out,
                "meshlane_captured_connections_total{{direction=\"{direction}\"}} {v}"
            );
        }
    }
    family(
        &mut out,
        "meshlane_bypassed_connections_total",
        "counter",
        "Connections of captured pods left alone, by direction and reason.",
    );
    for (counter, v) in &snapshot.counters {
        if let Some((direction, reason)) = bypass_labels(counter) {
            let _ = writeln!(
                out,
                "meshlane_bypassed_connections_total{{direction=\"{direction}\",reason=\"{}\"}} {v}",
                escape(reason)
            );
        }
    }
    for (name, counter, help) in SHORT_PATH {
        if let Some(v) = value(counter) {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    family(
        &mut out,
        "meshlane_datapath_events_total",
        "counter",
        "Every per-CPU event counter of the BPF programs, summed over CPUs.",
    );
    for (counter, v) in &snapshot.counters {
        let _ = writeln!(
            out,
            "meshlane_datapath_events_total{{event=\"{}\"}} {v}",
            escape(counter)
        );
    }

    family(
        &mut out,
        "meshlane_enrolled_pods",
        "gauge",
        "Pods with a capture record on this node.",
    );
    if let Some(pods) = snapshot.enrolled_pods {
        let _ = writeln!(out, "meshlane_enrolled_pods {pods}");
    }
    family(
        &mut out,
        "meshlane_cni_errors_total",
        "counter",
        "Failed CNI calls of the plugin on this node, from its log.",
    );
    let _ = writeln!(
        out,
        "meshlane_cni_errors_total{{command=\"ADD\"}} {}",
        snapshot.cni_errors.add
    );
    let _ = writeln!(
        out,
        "meshlane_cni_errors_total{{command=\"DEL\"}} {}",
        snapshot.cni_errors.del
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let text = render(&Snapshot {
            counters: vec![
                ("outbound_redirected", 7),
                ("inbound_steered", 3),
                ("bypass_excluded_port", 2),
                ("inbound_bypass_port", 1),
                ("orig_dst_answered", 5),
                ("short_path_redirected_messages", 9),
                ("short_path_redirected_bytes", 9000),
            ],
            enrolled_pods: Some(4),
            cni_errors: CniErrors { add: 1, del: 0 },
            chain_in_place: true,
            programs_attached: 6,
            programs_expected: 6,
        });
        for line in [
            "meshlane_captured_connections_total{direction=\"outbound\"} 7",
            "meshlane_captured_connections_total{direction=\"inbound\"} 3",
            "meshlane_bypassed_connections_total{direction=\"outbound\",reason=\"excluded_port\"} 2",
            "meshlane_bypassed_connections_total{direction=\"inbound\",reason=\"excluded_port\"} 1",
            "meshlane_datapath_events_total{event=\"orig_dst_answered\"} 5",
            "meshlane_enrolled_pods 4",
            "meshlane_short_path_messages_total 9",
            "meshlane_short_path_bytes_total 9000",
            "meshlane_cni_errors_total{command=\"ADD\"} 1",
            "meshlane_chain_entry_present 1",
            "meshlane_node_programs_attached 6",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every sample belongs to a family announced just before it.
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{name} has no TYPE line");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
