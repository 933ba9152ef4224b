//! The bootstrap of the test sidecar: Istio's capture listeners reduced to what the
//! datapath needs — `virtualOutbound` (15001) and optionally `virtualInbound`
//! (15006), each with the `original_dst` listener filter and a `tcp_proxy` to an
//! ORIGINAL_DST cluster, plus a blackhole chain for connections made straight to
//! the listener port (Istio's loop guard).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::process::Identity;

pub const ADMIN_PORT: u16 = 15000;
pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15006;
/// Envoy binds these as the source when it passes inbound traffic to the app, so
/// the capture can tell the proxy's hand-off from a real inbound connection.
pub const INBOUND_PASSTHROUGH_SOURCE_V4: &str = "127.0.0.6";
pub const INBOUND_PASSTHROUGH_SOURCE_V6: &str = "::6";

/// Access log line fields, space separated, after the listener name.
const ACCESS_LOG_FIELDS: &str = "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% \
     %UPSTREAM_HOST% %UPSTREAM_LOCAL_ADDRESS% %BYTES_RECEIVED% %BYTES_SENT% \
     %UPSTREAM_CLUSTER% %RESPONSE_FLAGS%";

/// What the sidecar listens on and how it runs.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Istio runs the proxy as 1337:1337.
    pub identity: Identity,
    /// `virtualOutbound` on 0.0.0.0:15001.
    pub outbound: bool,
    /// `virtualInbound` on 0.0.0.0:15006 → `InboundPassthroughClusterIpv4` (source 127.0.0.6).
    pub inbound: bool,
    /// The same listeners on [::] too (IPv6-only sockets); the IPv6 inbound cluster
    /// binds ::6, which must be an address of the pod's `lo`.
    pub ipv6: bool,
    /// Listeners and clusters added verbatim (Envoy v3 JSON), for what the options
    /// above do not cover.
    pub extra_listeners: Vec<Value>,
    pub extra_clusters: Vec<Value>,
    pub log_level: String,
    pub ready_timeout: Duration,
    /// Worker threads; each opens its own SO_REUSEPORT socket per listener.
    pub concurrency: u32,
    /// The capture listeners' ports: Istio's (and Kuma's) 15001 and 15006 unless
    /// changed (Linkerd's are 4140 and 4143).
    pub outbound_port: u16,
    pub inbound_port: u16,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            identity: Identity::PROXY,
            outbound: true,
            inbound: false,
            ipv6: true,
            extra_listeners: Vec::new(),
            extra_clusters: Vec::new(),
            log_level: "info".to_string(),
            ready_timeout: Duration::from_secs(30),
            concurrency: 1,
            outbound_port: OUTBOUND_PORT,
            inbound_port: INBOUND_PORT,
        }
    }
}

impl EnvoyOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    pub fn with_inbound(mut self) -> Self {
        self.inbound = true;
        self
    }

    pub fn without_outbound(mut self) -> Self {
        self.outbound = false;
        self
    }

    pub fn ipv4_only(mut self) -> Self {
        self.ipv6 = false;
        self
    }

    /// Listens on another mesh's outbound and inbound ports.
    pub fn ports(mut self, outbound: u16, inbound: u16) -> Self {
        self.outbound_port = outbound;
        self.inbound_port = inbound;
        self
    }

    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    pub fn listener(mut self, listener: Value) -> Self {
        self.extra_listeners.push(listener);
        self
    }

    pub fn cluster(mut self, cluster: Value) -> Self {
        self.extra_clusters.push(cluster);
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }
}

/// The bootstrap config (JSON, which Envoy reads as YAML too).
pub fn bootstrap(options: &EnvoyOptions, node_id: &str, access_log: &Path) -> Value {
    let access_log = access_log.to_string_lossy();
    let mut listeners = Vec::new();
    let mut clusters = vec![
        json!({
            "name": "PassthroughCluster",
            "type": "ORIGINAL_DST",
            "lb_policy": "CLUSTER_PROVIDED",
            "connect_timeout": "5s",
        }),
        // No endpoints: connections routed here are closed at once.
        json!({ "name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s" }),
    ];
    let mut families = vec![("0.0.0.0", "")];
    if options.ipv6 {
        families.push(("::", "Ipv6"));
    }
    for (address, suffix) in &families {
        if options.outbound {
            listeners.push(capture_listener(
                &format!("virtualOutbound{suffix}"),
                address,
                options.outbound_port,
                "PassthroughCluster",
                &access_log,
            ));
        }
        if options.inbound {
            listeners.push(capture_listener(
                &format!("virtualInbound{suffix}"),
                address,
                options.inbound_port,
                &format!(
                    "InboundPassthroughCluster{}",
                    if suffix.is_empty() { "Ipv4" } else { suffix }
                ),
                &access_log,
            ));
        }
    }
    if options.inbound {
        clusters.push(inbound_passthrough_cluster(
            "Ipv4",
            INBOUND_PASSTHROUGH_SOURCE_V4,
        ));
        if options.ipv6 {
            clusters.push(inbound_passthrough_cluster(
                "Ipv6",
                INBOUND_PASSTHROUGH_SOURCE_V6,
            ));
        }
    }
    listeners.extend(options.extra_listeners.iter().cloned());
    clusters.extend(options.extra_clusters.iter().cloned());
    json!({
        "node": { "id": node_id, "cluster": "meshlane-test" },
        "admin": {
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": ADMIN_PORT } },
        },
        "static_resources": { "listeners": listeners, "clusters": clusters },
    })
}

/// A listener that reads the original destination and forwards there; direct
/// connections to its own port go to the blackhole instead of looping.
fn capture_listener(
    name: &str,
    address: &str,
    port: u16,
    cluster: &str,
    access_log: &str,
) -> Value {
    json!({
        "name": name,
        "address": { "socket_address": { "address": address, "port_value": port } },
        "listener_filters": [{
            "name": "envoy.filters.listener.original_dst",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
            },
        }],
        "filter_chains": [
            {
                "name": format!("{name}-blackhole"),
                "filter_chain_match": { "destination_port": port },
                "filters": [tcp_proxy(&format!("{name}-blackhole"), "BlackHoleCluster", name, access_log)],
            },
            {
                "name": format!("{name}-passthrough"),
                "filters": [tcp_proxy(cluster, cluster, name, access_log)],
            },
        ],
    })
}

fn tcp_proxy(stat_prefix: &str, cluster: &str, listener: &str, access_log: &str) -> Value {
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": stat_prefix,
            "cluster": cluster,
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": access_log,
                    "log_format": {
                        "text_format_source": { "inline_string": format!("{listener} {ACCESS_LOG_FIELDS}\n") }
                    },
                },
            }],
        },
    })
}

/// Istio's inbound hand-off cluster: to the original destination, from 127.0.0.6 / ::6.
fn inbound_passthrough_cluster(suffix: &str, source: &str) -> Value {
    json!({
        "name": format!("InboundPassthroughCluster{suffix}"),
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "5s",
        "upstream_bind_config": { "source_address": { "address": source, "port_value": 0 } },
    })
}

/// One access log line, split into its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    pub listener: String,
    pub downstream_remote: String,
    /// The original destination once `original_dst` restored it.
    pub downstream_local: String,
    /// "-" when no upstream was chosen.
    pub upstream_host: String,
    pub upstream_local: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub cluster: String,
    pub flags: String,
}

impl AccessLogEntry {
    pub fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 9 {
            return None;
        }
        Some(AccessLogEntry {
            listener: f[0].to_string(),
            downstream_remote: f[1].to_string(),
            downstream_local: f[2].to_string(),
            upstream_host: f[3].to_string(),
            upstream_local: f[4].to_string(),
            bytes_received: f[5].parse().ok()?,
            bytes_sent: f[6].parse().ok()?,
            cluster: f[7].to_string(),
            flags: f[8].to_string(),
        })
    }
}
