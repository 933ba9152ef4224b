//! The node's containerd: Debian 12's containerd 1.6 with its built-in CRI
//! plugin and runc, configured as a kubelet node's runtime would be — the
//! cgroupfs driver (these machines run no systemd), the CNI plugins in
//! `/opt/cni/bin` with their config in `/etc/cni/net.d` (the fence's, see
//! `fence.rs`), a locally imported pause image — with its own root, state dir
//! and socket under the node's temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::super::exec::run_ok;
use super::super::timing::poll_until;
use super::client::CriClient;
use super::fence::Fence;

/// The pause image the sandboxes run (tests/tools/images.py builds it).
pub const PAUSE_IMAGE: &str = "meshlane.test/pause:1";
/// How long containerd may take to serve CRI after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Containerd {
    process: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
    config: PathBuf,
}

/// `restrict_oom_score_adj`: runc cannot write a negative oom_score_adj in
/// these VMs ("can't get final child's PID from pipe"), and kubelet asks for
/// one for some pods. The overlayfs snapshotter shares image layers between
/// containers (Envoy's image is 100 MB).
fn config_toml(dir: &Path, socket: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        opt = dir.join("opt").display(),
        socket = socket.display(),
    )
}

impl Containerd {
    /// Starts containerd inside the fence and waits until CRI answers.
    pub fn start(fence: &Fence) -> (Containerd, CriClient) {
        let dir = fence.dir.join("containerd");
        fs::create_dir_all(&dir).unwrap();
        let socket = fence.dir.join("containerd.sock");
        let config = dir.join("config.toml");
        fs::write(&config, config_toml(&dir, &socket)).unwrap();
        let log = dir.join("containerd.log");
        let mut containerd = Containerd {
            process: None,
            socket,
            log,
            config,
        };
        containerd.spawn(fence);
        let client = containerd.wait_for_cri();
        (containerd, client)
    }

    fn spawn(&mut self, fence: &Fence) {
        let log = fs::File::create(&self.log).unwrap();
        let child = fence
            .command("containerd")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        self.process = Some(child);
    }

    fn wait_for_cri(&mut self) -> CriClient {
        poll_until("containerd's CRI did not answer", START_TIMEOUT, || {
            if let Some(status) = self
                .process
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("containerd exited ({status}):\n{}", self.log_tail());
            }
            let client = self
                .socket
                .exists()
                .then(|| CriClient::connect(&self.socket));
            client
                .and_then(Result::ok)
                .filter(|client| client.version().is_ok())
                .ok_or_else(|| format!("\n{}", self.log_tail()))
        })
    }

    /// Imports an OCI archive into the `k8s.io` namespace, the one CRI uses.
    pub fn import(&self, archive: &Path) {
        run_ok(
            Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .args([
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    "--snapshotter",
                    "overlayfs",
                ])
                .arg(archive),
        );
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after a while (its shims stay, as with a real
    /// restart of containerd; the fence kills them at the end).
    pub fn stop(&mut self) {
        let Some(mut child) = self.process.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}
