//! The fence around a containerd test node: a private mount and network
//! namespace (held by one process, `tests/tools/cri_node_fence.sh`) in which the
//! host paths a node uses — `/etc/cni/net.d`, `/opt/cni/bin`, `/var/lib/cni`,
//! `/var/log`, `/run`, `/sys/fs/bpf` and every cgroup mount — belong to the test.
//!
//! Every process of the node (containerd, shims, pause and container processes,
//! CNI plugins) is started inside the namespaces and inside the test's own
//! child cgroups, so meshlane's programs attach to the test's cgroup and the
//! machine's root cgroup and dirs are never touched. Everything is removed on
//! drop: processes killed through their cgroup, namespaces (with their mounts,
//! bridge and pod netns bind mounts) gone with their last process, cgroups and
//! the temp dir removed.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::super::cgroup::{self, TestCgroup};
use super::super::mountinfo;
use super::super::names::{InstanceId, TMP_ROOT};
use super::super::prereq::CHILD_PATH;
use super::super::tmpdir::TempDir;

/// Shell that moves the shell itself into every cgroup in `$CGROUPS`.
const JOIN_CGROUPS: &str =
    "IFS=:; for cg in $CGROUPS; do echo 0 > \"$cg/cgroup.procs\" || exit 1; done; unset IFS;";

const FENCE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/cri_node_fence.sh");

/// The fenced namespaces, their cgroups and temp dir.
pub struct Fence {
    pub id: InstanceId,
    /// `/tmp/meshlane-test-<pid>-<n>`, visible at the same path inside.
    pub dir: PathBuf,
    /// The test's child of the cgroup2 mount: `/sys/fs/cgroup/unified` inside.
    pub cgroup2: PathBuf,
    holder: Option<Child>,
    // Dropped in field order after `Drop::drop`: cgroups (killing what is left)
    // before the temp dir.
    cgroup2_guard: TestCgroup,
    v1_children: Vec<PathBuf>,
    temp_dir: TempDir,
}

impl Fence {
    pub fn create() -> Fence {
        let id = InstanceId::next();
        let temp_dir = TempDir::create(PathBuf::from(TMP_ROOT).join(id.dir_name()))
            .unwrap_or_else(|err| panic!("creating the node's temp dir: {err}"));
        let dir = temp_dir.path().to_path_buf();
        let mut pairs = Vec::new();
        let mut v1_children = Vec::new();
        let mut cgroup2 = None;
        for mount in mountinfo::cgroup_mounts() {
            let child = mount.mount_point.join(id.dir_name());
            if mount.fstype == "cgroup2" {
                cgroup2 = Some(child.clone());
                pairs.push(format!(
                    "{}={}",
                    mount.mount_point.display(),
                    child.display()
                ));
                continue;
            }
            if fs::create_dir(&child).is_err() {
                continue;
            }
            if mount.mount_point.join("cpuset.cpus").exists() {
                // A v1 cpuset child starts empty; runc copies from its parent,
                // which inside the fence is this child.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value =
                        fs::read_to_string(mount.mount_point.join(file)).unwrap_or_default();
                    let _ = fs::write(child.join(file), value.trim());
                }
            }
            pairs.push(format!(
                "{}={}",
                mount.mount_point.display(),
                child.display()
            ));
            v1_children.push(child);
        }
        let cgroup2 = cgroup2.expect("no cgroup2 mount: the node needs cgroup v2");
        let cgroup2_guard = TestCgroup::create(cgroup2.clone())
            .unwrap_or_else(|err| panic!("creating {}: {err}", cgroup2.display()));
        let mut fence = Fence {
            id,
            dir,
            cgroup2,
            holder: None,
            cgroup2_guard,
            v1_children,
            temp_dir,
        };
        fence.start_holder(&pairs);
        fence
    }

    fn start_holder(&mut self, pairs: &[String]) {
        // The holder joins the test's child of every hierarchy, then unshares
        // a cgroup namespace rooted there: inside, /proc/<pid>/cgroup reads
        // `/kubepods/<qos>/pod<uid>/<id>` as on a kubelet node, and runc's
        // cgroup paths (mount point + that path) meet the bind mounts.
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "{JOIN_CGROUPS} exec unshare --mount --net --cgroup --propagation private -- /bin/sh \"$@\""
            ))
            .arg("fence")
            .arg(FENCE_SCRIPT)
            .arg(&self.dir)
            .args(pairs)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("CGROUPS", self.cgroup_list())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the fence");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        if read.is_err() || line.trim() != "READY" {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the node's fence did not come up: {line}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        self.holder = Some(child);
    }

    /// The PID whose namespaces are the node's.
    pub fn pid(&self) -> u32 {
        self.holder.as_ref().expect("the fence runs").id()
    }

    /// The node's network namespace, as a path any process can open.
    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// `path` as the node sees it (through the holder's mount namespace).
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let relative = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(relative)
    }

    /// A command run inside the node's namespaces and cgroups.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(format!(
                "{JOIN_CGROUPS} pid=\"$1\"; shift; exec nsenter -t \"$pid\" -m -n -C -- \"$@\""
            ))
            .arg("enter")
            .arg(self.pid().to_string())
            .arg(program)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("CGROUPS", self.cgroup_list());
        command
    }

    /// The test's child cgroups, colon-separated, for [`JOIN_CGROUPS`].
    fn cgroup_list(&self) -> String {
        std::iter::once(&self.cgroup2)
            .chain(&self.v1_children)
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Runs a command inside and panics with its output if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("{program}: {err}"));
        assert!(
            output.status.success(),
            "{program} {args:?} in the node failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// PIDs of every process of the node (all live below its cgroup2 child).
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        collect_pids(&self.cgroup2, &mut pids);
        pids
    }
}

fn collect_pids(cgroup: &Path, out: &mut Vec<i32>) {
    out.extend(
        fs::read_to_string(cgroup.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse::<i32>().ok()),
    );
    if let Ok(entries) = fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&entry.path(), out);
            }
        }
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        // Every process of the node, by pid, through the cgroup: containerd,
        // shims, pause and container processes, and the holder itself. With the
        // last one the namespaces go, and with them every mount inside.
        if let Err(err) = self.cgroup2_guard.kill_all() {
            eprintln!("[harness] node cleanup: {err}");
        }
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        if let Err(err) = self.cgroup2_guard.remove() {
            eprintln!("[harness] node cleanup: {err}");
        }
        for child in &self.v1_children {
            if let Err(err) = remove_v1_tree(child) {
                eprintln!("[harness] node cleanup: {err}");
            }
        }
        // The namespace's mounts are gone with its processes; the overlays'
        // upper dirs hold files of container users, removed as root here.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(err) = self.temp_dir.remove() {
            if Instant::now() > deadline {
                eprintln!("[harness] node cleanup: {err}");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Removes a v1 cgroup tree, deepest first (its processes are dead by now).
pub fn remove_v1_tree(root: &Path) -> Result<(), String> {
    cgroup::remove_dirs_deepest_first(root)
}
