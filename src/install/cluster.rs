//! What the agent does with the Kubernetes API, at start and then on each of the
//! loop's periodic re-checks: keep the plugin's kubeconfig (and its copy of the
//! agent's rotating token) current, enroll pods that run uncaptured, and take
//! the startup taint off the node once the agent is ready.
//!
//! Both are optional: outside a cluster (no KUBERNETES_SERVICE_HOST), without
//! NODE_NAME or without a `kubeconfig` setting, the agent says once what it
//! does not do and why, and goes on with the chain and the programs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::kube::KubeAccess;
use crate::plugin::config::PluginConfig;

use super::enroll::Enroller;
use super::plugin_kubeconfig;
use super::settings::{ClusterSettings, InstallSettings, KubeconfigFiles};
use super::startup_taint::StartupTaint;
use crate::log::{error, info, warn};

/// After a failed round (API server unreachable, maps not loaded yet), the
/// next one comes this much later rather than at the next re-check: each try
/// may hold the loop for seconds.
const RETRY_AFTER: Duration = Duration::from_secs(30);

pub struct Cluster {
    server: Option<String>,
    account_dir: PathBuf,
    kubeconfig: Option<KubeconfigFiles>,
    enroller: Option<Enroller>,
    enroll_every: Option<Duration>,
    /// When the next enrollment round is due (`None`: none will come).
    next_round: Option<Instant>,
    /// The last kubeconfig problem, logged once until it changes.
    kubeconfig_problem: Option<String>,
    taint: Option<StartupTaint>,
    /// Why enrollment waits, logged once until it changes.
    enroll_blocked: Option<String>,
}

impl Cluster {
    pub fn new(settings: &InstallSettings) -> Cluster {
        let ClusterSettings {
            node_name,
            api_server,
            service_account_dir,
            host_proc,
            kubeconfig,
            enroll_every,
            startup_taint,
        } = settings.cluster.clone();
        if api_server.is_none() {
            info(
                "not in a Kubernetes pod (no KUBERNETES_SERVICE_HOST): running pods are not \
                 enrolled and no kubeconfig is written for the plugin",
                &[],
            );
        }
        let taint = match (&api_server, &node_name, startup_taint) {
            (Some(_), Some(node), Some(key)) => Some(StartupTaint::new(key, node.clone())),
            (_, _, None) => None,
            (_, _, Some(key)) => {
                warn(
                    "outside a cluster or without NODE_NAME: the startup taint is not removed",
                    &[("taint", &key)],
                );
                None
            }
        };
        let enroller = match (&api_server, node_name) {
            (Some(_), None) => {
                warn(
                    "NODE_NAME is not set: pods that already run are not enrolled",
                    &[],
                );
                None
            }
            (Some(_), Some(node)) => match PluginConfig::from_keys(&settings.plugin) {
                Ok(config) => Some(Enroller::new(config, node, host_proc)),
                Err(err) => {
                    error("cannot enroll running pods", &[("error", &err)]);
                    None
                }
            },
            (None, _) => None,
        };
        let kubeconfig = kubeconfig.filter(|_| api_server.is_some());
        Cluster {
            next_round: enroller.as_ref().map(|_| Instant::now()),
            server: api_server,
            account_dir: service_account_dir,
            kubeconfig,
            enroller,
            enroll_every,
            kubeconfig_problem: None,
            taint,
            enroll_blocked: None,
        }
    }

    /// Refreshes the kubeconfig, runs an enrollment round when one is due, and
    /// once the agent is `ready`, removes the node's startup taint. While
    /// `enroll_blocked` says why (istio-cni in the chain: its pods are
    /// captured by its iptables rules already), no pod is enrolled; the round
    /// runs once that is gone.
    pub fn tick(&mut self, ready: bool, enroll_blocked: Option<&str>) {
        let Some(server) = self.server.clone() else {
            return;
        };
        if let Some(files) = self.kubeconfig.clone() {
            self.refresh_kubeconfig(&server, files);
        }
        if let Some(taint) = self.taint.as_mut() {
            let account_dir = &self.account_dir;
            taint.tick(ready, || KubeAccess::in_cluster(&server, account_dir));
        }
        let due = self.next_round.is_some_and(|due| Instant::now() >= due);
        match enroll_blocked {
            Some(why) if due => {
                if self.enroll_blocked.as_deref() != Some(why) {
                    warn(
                        "not enrolling running pods: they would be captured twice",
                        &[("why", &why)],
                    );
                    self.enroll_blocked = Some(why.to_owned());
                }
            }
            _ => {
                self.enroll_blocked = None;
                if due {
                    self.enroll_round(&server);
                }
            }
        }
    }

    /// Whether a startup taint is still to be removed.
    pub fn taint_pending(&self) -> bool {
        self.taint.as_ref().is_some_and(|taint| !taint.done())
    }

    fn refresh_kubeconfig(&mut self, server: &str, files: KubeconfigFiles) {
        match plugin_kubeconfig::refresh(&files, server, &self.account_dir) {
            Ok(refreshed) => {
                if refreshed.kubeconfig {
                    info(
                        "wrote the plugin's kubeconfig",
                        &[
                            ("file", &files.write_path.display()),
                            ("token_file", &files.token_host_path().display()),
                        ],
                    );
                } else if refreshed.token {
                    info(
                        "copied the rotated service account token for the plugin",
                        &[("file", &files.token_write_path().display())],
                    );
                }
                self.kubeconfig_problem = None;
            }
            Err(err) => {
                let problem = err.to_string();
                if self.kubeconfig_problem.as_ref() != Some(&problem) {
                    error(
                        "cannot write the plugin's kubeconfig (will retry)",
                        &[("error", &problem)],
                    );
                    self.kubeconfig_problem = Some(problem);
                }
            }
        }
    }

    fn enroll_round(&mut self, server: &str) {
        let Some(enroller) = self.enroller.as_mut() else {
            return;
        };
        let result = KubeAccess::in_cluster(server, &self.account_dir)
            .map_err(|err| err.to_string())
            .and_then(|access| enroller.round(&access).map_err(|err| err.to_string()));
        match result {
            Ok(report) => {
                info(
                    "enrollment round done",
                    &[
                        ("enrolled", &report.enrolled),
                        ("already_captured", &report.already),
                        ("skipped", &report.skipped),
                        ("failed", &report.failed),
                    ],
                );
                self.next_round = self.enroll_every.map(|every| Instant::now() + every);
            }
            Err(problem) => {
                error(
                    "cannot enroll running pods (will retry)",
                    &[
                        ("error", &problem),
                        ("retry_in", &format!("{RETRY_AFTER:?}")),
                    ],
                );
                self.next_round = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }
}
