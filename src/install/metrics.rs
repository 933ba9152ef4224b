//! The agent's `/metrics`, in the Prometheus text exposition format (0.0.4).
//! Rendering is pure; the agent gathers a [`Snapshot`] per scrape from the
//! pinned maps, the pin layout and the plugin's log.

use std::fmt::Write;

use crate::datapath::abi::ml_counter;
use crate::datapath::counters::{value_of, CounterValue};

use super::process_metrics::{self, ProcessStats};

/// ADD and DEL failures seen in the plugin's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CniErrors {
    pub add: u64,
    pub del: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The datapath's per-CPU counters, summed (empty when the maps are missing).
    pub counters: Vec<CounterValue>,
    /// Pod records in the maps; `None` when they cannot be read.
    pub enrolled_pods: Option<u64>,
    pub cni_errors: CniErrors,
    pub chain_in_place: bool,
    pub programs_attached: u64,
    pub programs_expected: u64,
    /// The agent's own process (`None`: /proc unreadable).
    pub process: Option<ProcessStats>,
}

/// Captured connections, from the counter that counts each.
const CAPTURED: [(ml_counter, &str); 2] = [
    (ml_counter::ML_CNT_OUTBOUND_REDIRECTED, "outbound"),
    (ml_counter::ML_CNT_INBOUND_STEERED, "inbound"),
];

/// The short path's traffic (docs/shortpath.md): metric, counter, help.
const SHORT_PATH: [(&str, ml_counter, &str); 2] = [
    (
        "meshlane_short_path_messages_total",
        ml_counter::ML_CNT_SHORT_REDIRECTED_MSGS,
        "Messages handed from socket to socket on the node (sk_msg), skipping TCP/IP.",
    ),
    (
        "meshlane_short_path_bytes_total",
        ml_counter::ML_CNT_SHORT_REDIRECTED_BYTES,
        "Bytes handed from socket to socket on the node (sk_msg), skipping TCP/IP.",
    ),
];

/// Bypasses by direction and reason: the outbound ones are the counters named
/// `bypass_<reason>` in `COUNTERS` (datapath/counters.rs).
fn bypass_labels(read: &CounterValue) -> Option<(&'static str, &'static str)> {
    if read.counter == ml_counter::ML_CNT_INBOUND_BYPASS_PORT {
        return Some(("inbound", "excluded_port"));
    }
    read.name
        .strip_prefix("bypass_")
        .map(|reason| ("outbound", reason))
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

    let value = |counter: ml_counter| value_of(&snapshot.counters, counter);
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
    for read in &snapshot.counters {
        if let Some((direction, reason)) = bypass_labels(read) {
            let _ = writeln!(
                out,
                "meshlane_bypassed_connections_total{{direction=\"{direction}\",reason=\"{}\"}} {}",
                escape(reason),
                read.value
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
    for read in &snapshot.counters {
        let _ = writeln!(
            out,
            "meshlane_datapath_events_total{{event=\"{}\"}} {}",
            escape(read.name),
            read.value
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
        "Failed CNI calls of the plugin on this node, counted from its log records.",
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
    if let Some(process) = &snapshot.process {
        process_metrics::render(&mut out, process);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::counters::COUNTERS;

    /// A counter as `read_counters` returns it.
    fn read(counter: ml_counter, value: u64) -> CounterValue {
        let name = COUNTERS
            .iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, name)| *name)
            .unwrap();
        CounterValue {
            counter,
            name,
            value,
        }
    }

    #[test]
    fn renders_every_family_with_help_and_type() {
        let text = render(&Snapshot {
            counters: vec![
                read(ml_counter::ML_CNT_OUTBOUND_REDIRECTED, 7),
                read(ml_counter::ML_CNT_INBOUND_STEERED, 3),
                read(ml_counter::ML_CNT_BYPASS_EXCLUDED_PORT, 2),
                read(ml_counter::ML_CNT_INBOUND_BYPASS_PORT, 1),
                read(ml_counter::ML_CNT_ORIG_DST_ANSWERED, 5),
                read(ml_counter::ML_CNT_SHORT_REDIRECTED_MSGS, 9),
                read(ml_counter::ML_CNT_SHORT_REDIRECTED_BYTES, 9000),
            ],
            enrolled_pods: Some(4),
            cni_errors: CniErrors { add: 1, del: 0 },
            chain_in_place: true,
            programs_attached: 6,
            programs_expected: 6,
            process: process_metrics::read_self(),
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
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_start_time_seconds gauge",
            "# TYPE process_open_fds gauge",
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
