//! What kubelet makes of a Pod: the CRI sandbox and container configs for a Pod
//! object (JSON, as the API server holds it), the way kubelet 1.2x fills them
//! for containerd with the cgroupfs driver. Only what our pods use is
//! translated — and anything else in a pod spec fails the test, so that a
//! manifest change can never be silently ignored here.
//!
//! Kubelet's additions are made here too: the projected service-account
//! token and CA, `KUBERNETES_SERVICE_HOST/PORT`, `fieldRef` values, the
//! `io.kubernetes.*` labels, the `kubepods/<qos>/pod<uid>` cgroup parent and
//! hostPath `DirectoryOrCreate` directories.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, MountPropagation, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
};
use serde_json::{Map, Value};

/// What kubelet knows besides the Pod: its node and cluster.
pub struct KubeletContext<'a> {
    pub node_name: &'a str,
    /// ConfigMap name → data, for `envFrom` and `valueFrom.configMapKeyRef`.
    pub config_maps: &'a HashMap<String, Map<String, Value>>,
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` (kubelet sets them in every container).
    pub api_host: &'a str,
    pub api_port: u16,
    /// A directory with `token`, `ca.crt` and `namespace`: the projected volume.
    pub service_account_dir: &'a Path,
    /// Where sandboxes keep their logs (`<dir>/<ns>_<name>_<uid>`).
    pub log_root: &'a Path,
}

/// One container of the pod, ready for CreateContainer.
pub struct ContainerPlan {
    pub name: String,
    pub config: ContainerConfig,
    /// `terminationGracePeriodSeconds`, the StopContainer timeout.
    pub stop_timeout: i64,
}

/// The whole pod: the sandbox, its init containers (run to completion, in
/// order) and its containers.
pub struct PodPlan {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox: PodSandboxConfig,
    pub init_containers: Vec<ContainerPlan>,
    pub containers: Vec<ContainerPlan>,
    /// hostPath directories kubelet creates (`DirectoryOrCreate`) and those
    /// that must exist (`Directory`): (path, create).
    pub host_dirs: Vec<(PathBuf, bool)>,
}

/// Pod-level keys this translation handles; anything else fails loudly.
const POD_SPEC_KEYS: &[&str] = &[
    "containers",
    "initContainers",
    "volumes",
    "hostNetwork",
    "hostPID",
    "serviceAccountName",
    "dnsPolicy",
    "priorityClassName",
    "terminationGracePeriodSeconds",
    "nodeSelector",
    "nodeName",
    "tolerations",
    "restartPolicy",
    "securityContext",
];
const CONTAINER_KEYS: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "envFrom",
    "ports",
    "readinessProbe",
    "livenessProbe",
    "resources",
    "securityContext",
    "volumeMounts",
    "workingDir",
];

pub fn plan(pod: &Value, kubelet: &KubeletContext) -> PodPlan {
    let metadata = &pod["metadata"];
    let spec = &pod["spec"];
    for key in spec.as_object().expect("a pod spec").keys() {
        assert!(
            POD_SPEC_KEYS.contains(&key.as_str()),
            "the test's kubelet does not translate pod spec key {key:?}: add it to \
             tests/common/cri_node/kubelet.rs"
        );
    }
    let namespace = text(metadata, "namespace").unwrap_or("default").to_owned();
    let name = text(metadata, "name").expect("metadata.name").to_owned();
    let uid = text(metadata, "uid").expect("metadata.uid").to_owned();
    let host_network = spec["hostNetwork"].as_bool().unwrap_or(false);
    let host_pid = spec["hostPID"].as_bool().unwrap_or(false);
    let all_containers = || {
        spec["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(spec["containers"].as_array().into_iter().flatten())
    };
    let privileged = all_containers().any(|c| c["securityContext"]["privileged"] == true);
    let has_resources = all_containers().any(|c| {
        c["resources"]
            .as_object()
            .is_some_and(|resources| !resources.is_empty())
    });
    // Kubelet's QoS classes: a pod with no requests or limits is BestEffort;
    // ours with some are Burstable (none sets requests == limits everywhere).
    let qos = if has_resources {
        "burstable"
    } else {
        "besteffort"
    };
    let namespaces = NamespaceOption {
        network: if host_network {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        } as i32,
        pid: if host_pid {
            NamespaceMode::Node
        } else {
            NamespaceMode::Container
        } as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let mut labels = HashMap::new();
    labels.insert("io.kubernetes.pod.name".to_owned(), name.clone());
    labels.insert("io.kubernetes.pod.namespace".to_owned(), namespace.clone());
    labels.insert("io.kubernetes.pod.uid".to_owned(), uid.clone());
    for (key, value) in metadata["labels"].as_object().into_iter().flatten() {
        labels.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
    }
    let annotations: HashMap<String, String> = metadata["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    let log_directory = kubelet.log_root.join(format!("{namespace}_{name}_{uid}"));
    std::fs::create_dir_all(&log_directory).unwrap();
    let sandbox = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt: 0,
        }),
        hostname: if host_network {
            String::new()
        } else {
            name.clone()
        },
        log_directory: log_directory.display().to_string(),
        labels,
        annotations,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/{qos}/pod{uid}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let volumes = volumes(spec);
    let mut host_dirs = Vec::new();
    for volume in volumes.values() {
        host_dirs.push((volume.path.clone(), volume.create));
    }
    let grace = spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    let containers_of = |key: &str| -> Vec<ContainerPlan> {
        spec[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|container| ContainerPlan {
                name: text(container, "name").expect("container name").to_owned(),
                config: container_config(container, &namespaces, &volumes, kubelet, pod),
                stop_timeout: grace,
            })
            .collect()
    };
    PodPlan {
        init_containers: containers_of("initContainers"),
        containers: containers_of("containers"),
        namespace,
        name,
        uid,
        sandbox,
        host_dirs,
    }
}

/// A hostPath volume (the only kind translated): its path and whether kubelet
/// creates it (`DirectoryOrCreate`).
struct Volume {
    path: PathBuf,
    create: bool,
}

fn volumes(spec: &Value) -> HashMap<String, Volume> {
    spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|volume| {
            let name = text(volume, "name").expect("volume name").to_owned();
            let host_path = volume
                .get("hostPath")
                .unwrap_or_else(|| panic!("volume {name}: only hostPath volumes are translated"));
            let path = PathBuf::from(text(host_path, "path").expect("hostPath.path"));
            let create = match text(host_path, "type").unwrap_or("") {
                "DirectoryOrCreate" => true,
                "Directory" | "" => false,
                other => panic!("volume {name}: hostPath type {other} is not translated"),
            };
            (name, Volume { path, create })
        })
        .collect()
}

fn container_config(
    container: &Value,
    namespaces: &NamespaceOption,
    volumes: &HashMap<String, Volume>,
    kubelet: &KubeletContext,
    pod: &Value,
) -> ContainerConfig {
    let name = text(container, "name").expect("container name").to_owned();
    for key in container.as_object().expect("a container").keys() {
        assert!(
            CONTAINER_KEYS.contains(&key.as_str()),
            "the test's kubelet does not translate container key {key:?} (container {name})"
        );
    }
    let strings = |key: &str| -> Vec<String> {
        container[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| item.as_str().expect("a string").to_owned())
            .collect()
    };
    let security = &container["securityContext"];
    let pod_security = &pod["spec"]["securityContext"];
    let id = |key: &str| -> Option<Int64Value> {
        security[key]
            .as_i64()
            .or_else(|| pod_security[key].as_i64())
            .map(|value| Int64Value { value })
    };
    let mut mounts: Vec<Mount> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|mount| {
            let volume = text(mount, "name").expect("volumeMount name");
            let Some(Volume { path, .. }) = volumes.get(volume) else {
                panic!("container {name}: volume {volume} is not defined");
            };
            let propagation = match text(mount, "mountPropagation").unwrap_or("None") {
                "Bidirectional" => MountPropagation::PropagationBidirectional,
                "HostToContainer" => MountPropagation::PropagationHostToContainer,
                _ => MountPropagation::PropagationPrivate,
            };
            Mount {
                container_path: text(mount, "mountPath").expect("mountPath").to_owned(),
                host_path: path.display().to_string(),
                readonly: mount["readOnly"].as_bool().unwrap_or(false),
                propagation: propagation as i32,
                ..Default::default()
            }
        })
        .collect();
    // The projected service-account volume every pod gets.
    mounts.push(Mount {
        container_path: "/var/run/secrets/kubernetes.io/serviceaccount".to_owned(),
        host_path: kubelet.service_account_dir.display().to_string(),
        readonly: true,
        ..Default::default()
    });
    let mut resources = LinuxContainerResources {
        cpu_period: 100_000,
        // Kubelet's floor for containers without a CPU request.
        cpu_shares: 2,
        ..Default::default()
    };
    if let Some(cpu) = text(&container["resources"]["requests"], "cpu") {
        resources.cpu_shares = (millicores(cpu) * 1024 / 1000).max(2);
    }
    if let Some(memory) = text(&container["resources"]["limits"], "memory") {
        resources.memory_limit_in_bytes = bytes(memory);
    }
    let capabilities = Capability {
        add_capabilities: strings_at(&security["capabilities"]["add"]),
        drop_capabilities: strings_at(&security["capabilities"]["drop"]),
        ..Default::default()
    };
    let pod_name = text(&pod["metadata"], "name").unwrap_or_default();
    let mut labels = HashMap::new();
    labels.insert("io.kubernetes.container.name".to_owned(), name.clone());
    labels.insert("io.kubernetes.pod.name".to_owned(), pod_name.to_owned());
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.clone(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: text(container, "image").expect("image").to_owned(),
            ..Default::default()
        }),
        command: strings("command"),
        args: strings("args"),
        working_dir: text(container, "workingDir").unwrap_or_default().to_owned(),
        envs: environment(container, kubelet, pod)
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect(),
        mounts,
        labels,
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(capabilities),
                privileged: security["privileged"].as_bool().unwrap_or(false),
                namespace_options: Some(namespaces.clone()),
                run_as_user: id("runAsUser"),
                run_as_group: id("runAsGroup"),
                readonly_rootfs: security["readOnlyRootFilesystem"]
                    .as_bool()
                    .unwrap_or(false),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// `env`, `envFrom` and kubelet's own variables, in kubelet's order (envFrom,
/// then env, then the service variables).
fn environment(container: &Value, kubelet: &KubeletContext, pod: &Value) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: String, value: String| {
        env.retain(|(existing, _)| *existing != key);
        env.push((key, value));
    };
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let map = text(&source["configMapRef"], "name")
            .unwrap_or_else(|| panic!("envFrom: only configMapRef is translated: {source}"));
        let data = kubelet
            .config_maps
            .get(map)
            .unwrap_or_else(|| panic!("envFrom: ConfigMap {map} is not among the manifests"));
        for (key, value) in data {
            set(key.clone(), value.as_str().unwrap_or_default().to_owned());
        }
    }
    for variable in container["env"].as_array().into_iter().flatten() {
        let key = text(variable, "name").expect("env name").to_owned();
        let value = if let Some(value) = variable.get("value") {
            value.as_str().unwrap_or_default().to_owned()
        } else if let Some(field) = text(&variable["valueFrom"]["fieldRef"], "fieldPath") {
            match field {
                "spec.nodeName" => kubelet.node_name.to_owned(),
                "metadata.name" => text(&pod["metadata"], "name").unwrap().to_owned(),
                "metadata.namespace" => text(&pod["metadata"], "namespace").unwrap().to_owned(),
                other => panic!("env {key}: fieldRef {other} is not translated"),
            }
        } else {
            panic!("env {key}: {variable} is not translated");
        };
        set(key, value);
    }
    set(
        "KUBERNETES_SERVICE_HOST".to_owned(),
        kubelet.api_host.to_owned(),
    );
    set(
        "KUBERNETES_SERVICE_PORT".to_owned(),
        kubelet.api_port.to_string(),
    );
    env
}

fn text<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

fn strings_at(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// "10m" → 10, "1" → 1000.
fn millicores(quantity: &str) -> i64 {
    match quantity.strip_suffix('m') {
        Some(milli) => milli.parse().expect("a CPU quantity"),
        None => (quantity.parse::<f64>().expect("a CPU quantity") * 1000.0) as i64,
    }
}

/// "128Mi" → 134217728.
fn bytes(quantity: &str) -> i64 {
    const UNITS: [(&str, i64); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in UNITS {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<i64>().expect("a memory quantity") * factor;
        }
    }
    quantity.parse().expect("a memory quantity")
}
