#!/usr/bin/env bash
# A real Kubernetes-style node on this machine: Debian's containerd 1.6 and runc,
# driven through the CRI API the way kubelet drives them; meshlane installed from
# its DaemonSet (manifests/, rendered with kustomize, from the install image that
# scripts/image.sh builds); an Istio-injected pod with a real Envoy sidecar
# captured; then everything removed.
#
#   sudo scripts/node.sh              install what is needed, build, walk through, clean up
#   sudo scripts/node.sh --bench [N]  RunPodSandbox time with and without meshlane
#                                     (N pods per case, default 50)
#   --no-deps                         do not run scripts/deps.sh
#
# containerd runs with its own config, root, state dir and socket, in a private
# mount and network namespace where /etc/cni/net.d, /opt/cni/bin, /var/lib,
# /var/log, /run, /sys/fs/bpf and the cgroup mounts belong to it (overlays, a
# fresh bpffs, this run's own child cgroups): the machine's own CNI dirs,
# containerd and root cgroup are never touched. On exit (also after a failure or
# Ctrl-C) the sandboxes are removed, containerd stopped, its shims and pause
# processes killed, and the namespaces with their mounts, bridge and pod netns
# go with them. The Kubernetes API is the one stand-in: a local HTTPS server that
# the agent talks to (no cluster is needed).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

run_deps=1
mode=()
while (($#)); do
    case "$1" in
        --no-deps) run_deps=0 ;;
        --bench)
            mode=(bench)
            if [[ "${2:-}" =~ ^[0-9]+$ ]]; then
                mode+=("$2")
                shift
            fi
            ;;
        -h | --help)
            sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "scripts/node.sh: unknown argument $1 (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done

if [[ $EUID -ne 0 ]]; then
    echo "scripts/node.sh runs containerd and loads BPF programs: run it as root" >&2
    exit 1
fi
if ((run_deps)); then
    scripts/deps.sh
fi
export PATH="$HOME/.cargo/bin:$PATH"

# The agent's image holds the static binary (install/build-static.sh); the
# images are built on first use and reused while their inputs are unchanged.
echo "[node] building (cargo build --example node)" >&2
cargo build --locked --quiet --bin meshlane --example node
node="${CARGO_TARGET_DIR:-$REPO/target}/debug/examples/node"
# Interrupted (Ctrl-C kills the walk-through before it tears down), the node's
# cgroups still hold containerd's shims and pause processes: the sweep kills
# them by cgroup and removes what is left, which takes the namespaces and
# their mounts with it.
trap '"$node" sweep' EXIT
"$node" "${mode[@]}"
