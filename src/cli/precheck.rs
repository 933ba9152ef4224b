//! `meshlane precheck`: whether this node can run meshlane, check by check —
//! the node (kernel, BTF, cgroup, bpffs, features, other programs on the
//! hooks), the CNI chain (no istio-cni), Cilium's socket LB, and the API.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;

use crate::install::agent::resolve_cgroup;
use crate::install::cilium::{self, ConfigRead};
use crate::install::flags::{ApiFlags, CgroupFlag, ConfDirFlag, ConfNameFlag, PinRootFlag};
use crate::install::precheck::{self, check, Check, Verdict};
use crate::install::settings::{api_server, non_empty};
use crate::install::{files, InstallError};
use crate::kube::{config_map_data, server_version, FetchPolicy, KubeAccess};

use super::install::settings_error;
use super::output::{print_json, Output, OutputFlag};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub pin_root: PinRootFlag,
    #[command(flatten)]
    pub cgroup: CgroupFlag,
    #[command(flatten)]
    pub conf_dir: ConfDirFlag,
    #[command(flatten)]
    pub conf_name: ConfNameFlag,
    #[command(flatten)]
    pub api: ApiFlags,
    /// Reach the API with this kubeconfig instead of the pod's service account
    #[arg(long = "kubeconfig", value_name = "FILE", value_parser = crate::install::flags::absolute_path)]
    pub kubeconfig: Option<PathBuf>,
    /// Cilium's ConfigMap, read for its socket LB mode (namespace/name)
    #[arg(long, value_name = "NS/NAME", default_value = cilium::DEFAULT_CONFIG_MAP)]
    pub cilium_config: String,
    #[command(flatten)]
    pub output: OutputFlag,
}

/// The API access precheck uses, or why there is none.
fn api_access(args: &Args) -> Result<Option<KubeAccess>, String> {
    if let Some(path) = &args.kubeconfig {
        return KubeAccess::from_kubeconfig(path)
            .map(Some)
            .map_err(|err| err.to_string());
    }
    match api_server(&args.api) {
        Ok(Some(server)) => KubeAccess::in_cluster(&server, &args.api.service_account_dir)
            .map(Some)
            .map_err(|err| err.to_string()),
        Ok(None) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

fn api_check(access: &Result<Option<KubeAccess>, String>) -> Option<Check> {
    const NAME: &str = "Kubernetes API";
    const FIX: &str = "check the kubeconfig's server, CA and credentials, and that the node reaches the server (README, troubleshooting)";
    match access {
        Ok(None) => None,
        Err(err) => Some(check(NAME, Verdict::Warn, err.clone(), Some(FIX))),
        Ok(Some(access)) => Some(match server_version(access, &FetchPolicy::default()) {
            Ok(version) => check(
                NAME,
                Verdict::Ok,
                format!("{} answers (Kubernetes {version})", access.server()),
                None,
            ),
            Err(err) => check(NAME, Verdict::Warn, err.to_string(), Some(FIX)),
        }),
    }
}

fn cilium_config(args: &Args, access: &Result<Option<KubeAccess>, String>) -> Result<ConfigRead> {
    let (namespace, name) = args.cilium_config.split_once('/').ok_or_else(|| {
        settings_error(InstallError::Setting {
            setting: "cilium-config",
            problem: format!("{:?} is not namespace/name", args.cilium_config),
        })
    })?;
    Ok(match access {
        Ok(None) => ConfigRead::Unreadable(
            "no API access: run precheck in the agent's pod, or pass --kubeconfig".to_owned(),
        ),
        Err(err) => ConfigRead::Unreadable(err.clone()),
        Ok(Some(access)) => match config_map_data(access, namespace, name, &FetchPolicy::default())
        {
            Ok(Some(data)) => ConfigRead::Data(data),
            Ok(None) => ConfigRead::NotFound,
            Err(err) => ConfigRead::Unreadable(err.to_string()),
        },
    })
}

pub fn run(args: &Args) -> Result<i32> {
    let cgroup = resolve_cgroup(non_empty(&args.cgroup.cgroup).map(Path::new))
        .map_err(|err| err.to_string());
    let conf_name = non_empty(&args.conf_name.cni_conf_name);
    let dir = files::read_net_dir(&args.conf_dir.cni_conf_dir).map_err(|err| err.to_string());
    let access = api_access(args);
    let config = cilium_config(args, &access)?;
    let host_only =
        matches!(&config, ConfigRead::Data(data) if cilium::socket_lb_in_pods(data) == Some(false));

    let (mut checks, conflicts) = precheck::run_all(&args.pin_root.bpffs_root, cgroup, host_only);
    checks.push(precheck::chain_check(
        dir.as_ref().map_err(Clone::clone),
        conf_name,
    ));
    checks.extend(conflicts.checks);
    let in_chain = dir
        .as_ref()
        .is_ok_and(|dir| precheck::cilium_in_chain(dir, conf_name));
    checks.extend(cilium::socket_lb_check(
        in_chain,
        conflicts.cilium_seen,
        &args.cilium_config,
        &config,
    ));
    checks.extend(api_check(&access));

    let worst = precheck::worst(&checks);
    let code = if worst == Verdict::Fail { 1 } else { 0 };
    if args.output.output == Output::Json {
        print_json(&json!({ "checks": checks, "verdict": worst }))?;
        return Ok(code);
    }
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in &checks {
        println!(
            "{:<4}  {:<width$}  {}",
            check.verdict.to_string(),
            check.name,
            check.detail
        );
        if check.verdict != Verdict::Ok {
            if let Some(fix) = &check.fix {
                println!("      {:<width$}  fix: {fix}", "");
            }
        }
    }
    println!("\nverdict: {worst}");
    Ok(code)
}
