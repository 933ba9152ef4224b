#!/usr/bin/env bash
# meshlane's local demo: a little Kubernetes-like node on this machine, three pods
# wired up by a real CNI chain (bridge + host-local, then meshlane), a real Envoy
# sidecar, and an app whose outbound connections go through that sidecar without a
# single iptables rule.
#
#   sudo scripts/demo.sh            install what is needed, build, run the demo, clean up
#   sudo scripts/demo.sh --keep     ... and leave the node running to explore
#   sudo scripts/demo.sh --clean    remove a node left by --keep (or by a crashed run)
#
# Options for tests and repeated runs:
#   --no-deps          do not run scripts/deps.sh (check the tools are there instead)
#   --no-build         do not run cargo build (use the binary given or the default)
#   --meshlane PATH    the meshlane binary (default: $CARGO_TARGET_DIR or target/,
#                      then release/meshlane); MESHLANE_ENVOY=PATH picks the Envoy
#
# Everything it creates carries the name meshlane-demo and is removed on exit, also
# after Ctrl-C or a failure: the netns meshlane-demo-*, the cgroup meshlane-demo
# under the cgroup2 mount, a private bpffs and the temp dir /tmp/meshlane-demo.*.
# It attaches BPF programs only to its own child cgroup, never to the root cgroup,
# and sends traffic only between namespaces it created. It exits non-zero, with a
# clear message, when capture does not work.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELPERS="$REPO/scripts/demo"

# Fixed names: one demo at a time (a lock enforces it), and a later run or --clean
# finds the leftovers of a crashed one by these names and touches nothing else.
readonly NAME="meshlane-demo"
readonly NETNS_DIR="/run/netns"
readonly NODE_NETNS="$NAME-node"
readonly TMP_GLOB="/tmp/$NAME.*"
readonly BRIDGE="mldemo0"
# Lives only inside the node netns (bridge) and the pods: it never meets the host's
# own networks, so any private range does.
readonly SUBNET="10.123.0.0/24"
readonly WEB_PORT=8080
readonly OUTBOUND_PORT=15001
readonly ENVOY_ADMIN="127.0.0.1:15000"
# Istio runs the sidecar as 1337:1337; meshlane leaves that user's sockets alone.
readonly PROXY_ID=1337
# An ordinary application user.
readonly APP_ID=1000
readonly PODS=(app web legacy)
# What demo processes get as PATH; nothing else of our environment leaks into them.
readonly CHILD_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The system interpreter: a per-user one (pyenv, under /root) is unreadable for
# UID 1000 and 1337.
readonly PYTHON="/usr/bin/python3"

run_deps=1
run_build=1
keep=0
meshlane=""
envoy="${MESHLANE_ENVOY:-${MESHLANE_TOOLS_DIR:-$REPO/target/tools}/envoy}"

# Set once the node exists; the exit trap tears down whatever is there.
tmp=""
cgroup=""
interrupted=0
died=0

# --- output -----------------------------------------------------------------------

if [[ -t 1 ]]; then
    BOLD=$'\e[1m' GREEN=$'\e[32m' RED=$'\e[31m' YELLOW=$'\e[33m' RESET=$'\e[0m'
else
    BOLD="" GREEN="" RED="" YELLOW="" RESET=""
fi

step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
say() { printf '    %s\n' "$*"; }
good() { printf '    %sOK%s %s\n' "$GREEN" "$RESET" "$*"; }
indent() { sed 's/^/      /'; }
indent_say() { sed 's/^/    /'; }

# Fails the demo: says what did not work and why it matters, then exits non-zero
# (the exit trap still cleans up). A demo that goes on after a broken step would
# show success while capture is broken.
die() {
    died=1
    printf '\n%sDEMO FAILED:%s %s\n' "$RED$BOLD" "$RESET" "$1" >&2
    shift
    local line
    for line in "$@"; do
        printf '  %s\n' "$line" >&2
    done
    exit 1
}

# shellcheck source=scripts/lib/usage.sh
source "$REPO/scripts/lib/usage.sh"

# --- names and paths --------------------------------------------------------------

pod_netns() { printf '%s/%s-%s' "$NETNS_DIR" "$NAME" "$1"; }

# The cgroup2 mount from /proc/self/mountinfo (on hybrid hosts it is
# /sys/fs/cgroup/unified, not /sys/fs/cgroup); empty if there is none.
cgroup2_mount() { "$PYTHON" "$REPO/scripts/lib/mountinfo.py" cgroup2; }

# Mount points below the demo's temp dirs, deepest first (the order umount needs).
demo_mounts() { "$PYTHON" "$REPO/scripts/lib/mountinfo.py" below "/tmp/$NAME."; }

demo_tmp_dirs() {
    local dir
    for dir in $TMP_GLOB; do
        # Only what mktemp made: /tmp/meshlane-demo.XXXXXX, a real directory.
        [[ -d $dir && ! -L $dir && $dir =~ ^/tmp/$NAME\.[A-Za-z0-9]{6}$ ]] && printf '%s\n' "$dir"
    done
    return 0
}

demo_netns() {
    local path
    for path in "$NETNS_DIR/$NAME"-*; do
        [[ -e $path ]] && basename "$path"
    done
    return 0
}

# --- the processes of the demo ----------------------------------------------------

# Sets POD_CMD to the prefix that runs a command the way a container runs: inside
# the demo cgroup (where meshlane's programs are attached), inside the pod's netns,
# as user:group <id>, with a clean environment. The order matters: moving into the
# cgroup and entering the netns need root, so the user is dropped last.
pod_cmd() {
    local pod=$1 id=$2
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner sh
    POD_CMD=(sh -c 'echo $$ > "$1" && shift && exec "$@"' demo-enter "$cgroup/cgroup.procs"
        nsenter --net="$(pod_netns "$pod")" --
        setpriv --reuid="$id" --regid="$id" --clear-groups --
        env -i PATH="$CHILD_PATH")
}

# Runs a command in a pod to completion (at most 30 s).
in_pod() {
    local pod=$1 id=$2
    shift 2
    pod_cmd "$pod" "$id"
    # --foreground: Ctrl-C must reach the command too, not only this script.
    timeout --foreground 30 "${POD_CMD[@]}" "$@"
}

# Starts a command in a pod in the background; its output goes to <log>. fd 9 (the
# demo lock) is not passed on: a sidecar left by --keep must not hold it.
start_in_pod() {
    local pod=$1 id=$2 log=$3
    shift 3
    pod_cmd "$pod" "$id"
    "${POD_CMD[@]}" "$@" >"$log" 2>&1 </dev/null 9<&- &
    LAST_PID=$!
    # cgroup.kill ends it at cleanup; bash need not report that as a failed job.
    disown "$LAST_PID"
}

# A look into a pod's netns from outside the demo cgroup: meshlane's programs are
# not attached there, so these checks are never captured themselves.
peek() {
    local pod=$1
    shift
    nsenter --net="$(pod_netns "$pod")" -- "$@"
}

# A named netns (/run/netns/<name>, what CNI_NETNS carries) with its loopback up,
# as a runtime makes it for a pod; CNI sets up the rest.
add_netns() {
    ip netns add "$1" || return 1
    ip -n "$1" link set lo up
}

# The chain runner, deaf to Ctrl-C: a runtime does not cut a CNI operation off
# half-way either. The cleanup runs as soon as it is done (a few hundred ms).
run_chain() {
    (
        trap '' INT TERM
        exec "$PYTHON" "$HELPERS/chain.py" "$@"
    )
}

# --- teardown ---------------------------------------------------------------------

# SIGKILLs every process in the cgroup and waits until it is empty. cgroup.kill
# (Linux 5.14+) kills the subtree at once; otherwise kill the members one by one.
kill_cgroup() {
    local dir=$1 i pid
    [[ -d $dir ]] || return 0
    if [[ -w $dir/cgroup.kill ]]; then
        echo 1 >"$dir/cgroup.kill" || true
    fi
    for ((i = 0; i < 100; i++)); do
        grep -qx 'populated 0' "$dir/cgroup.events" && return 0
        if [[ ! -e $dir/cgroup.kill ]]; then
            while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$dir/cgroup.procs"
        fi
        sleep 0.1
    done
    echo "processes are still alive in $dir" >&2
    return 1
}

remove_cgroup() {
    local dir=$1 i
    [[ -d $dir ]] || return 0
    kill_cgroup "$dir" || return 1
    # rmdir can say EBUSY for a moment after the last process left.
    for ((i = 0; i < 50; i++)); do
        rmdir "$dir" 2>/dev/null && return 0
        sleep 0.1
    done
    rmdir "$dir"
}

# CNI DEL of every pod still added, through the chain in reverse order, as the
# runtime would when the pods are removed; then shows that meshlane forgot them.
del_pods() {
    local state pod failed=0
    for pod in "${PODS[@]}"; do
        state="$tmp/pods/$pod.json"
        [[ -f $state ]] || continue
        if ! run_chain del --conflist "$tmp/demo.conflist" \
            --cni-path "$tmp/bin" --node-netns "$NETNS_DIR/$NODE_NETNS" --state "$state" |
            sed "s/^/CNI DEL $pod: /" | indent_say; then
            printf '    %sCNI DEL of %s failed: the runtime would retry it%s\n' "$RED" "$pod" "$RESET" >&2
            failed=1
        fi
    done
    [[ -d $tmp/bpffs/meshlane/maps ]] || return "$failed"
    local pods
    pods="$("$tmp/bin/meshlane" pods --bpffs-root "$tmp/bpffs/meshlane" 2>&1)" || failed=1
    say "meshlane pods --bpffs-root $tmp/bpffs/meshlane"
    printf '%s\n' "$pods" | indent
    if [[ $pods == "no captured pods" ]]; then
        say "meshlane's DEL removed app's records: nothing is captured any more."
    else
        printf '    %smeshlane still has pod records after DEL%s\n' "$RED" "$RESET" >&2
        failed=1
    fi
    return "$failed"
}

# Removes everything demo-named: processes, netns, bpffs mounts, the cgroup, temp
# dirs. Used at exit, by --clean and before a run (leftovers of a crashed one).
# Returns non-zero when something could not be removed.
remove_demo_things() {
    local problems=0 root item
    root="$(cgroup2_mount)"
    if [[ -n $root && -d $root/$NAME ]]; then
        kill_cgroup "$root/$NAME" || problems=1
    fi
    for item in $(demo_netns); do
        ip netns del "$item" || problems=1
    done
    # Unmounting the bpffs drops meshlane's pinned maps and links, which detaches
    # its programs from the cgroup.
    for item in $(demo_mounts); do
        umount "$item" || problems=1
    done
    if [[ -n $root && -d $root/$NAME ]]; then
        remove_cgroup "$root/$NAME" || problems=1
    fi
    restore_run_netns
    for item in $(demo_tmp_dirs); do
        if demo_mounts | grep -q "^$item/"; then
            echo "not removing $item: something is still mounted below it" >&2
            problems=1
            continue
        fi
        rm -rf --one-file-system -- "$item" || problems=1
    done
    return "$problems"
}

# Undoes what the demo's first `ip netns add` did to /run/netns on a machine that
# had no named netns before, once no netns at all is left there. Best effort: if
# anyone else made a netns meanwhile, /run/netns stays as it is.
restore_run_netns() {
    local dir was
    for dir in $(demo_tmp_dirs); do
        [[ -f $dir/run-netns-was ]] || continue
        was="$(<"$dir/run-netns-was")"
        [[ -z "$(ls -A "$NETNS_DIR" 2>/dev/null)" ]] || return 0
        if mountpoint -q "$NETNS_DIR"; then
            umount "$NETNS_DIR" 2>/dev/null || return 0
        fi
        [[ $was == absent ]] && rmdir "$NETNS_DIR" 2>/dev/null
        return 0
    done
}

# Everything left over from an earlier run, named: empty when there is none.
leftovers() {
    local root
    root="$(cgroup2_mount)"
    [[ -n $root && -d $root/$NAME ]] && echo "cgroup $root/$NAME"
    demo_netns | sed 's/^/netns /'
    demo_mounts | sed 's/^/mount /'
    demo_tmp_dirs | sed 's/^/dir /'
    return 0
}

# The node of this run, torn down the way a node drains: the processes stop, the
# runtime runs CNI DEL for each pod, then the node's pieces go.
teardown() {
    local problems=0
    step "Cleanup"
    if [[ -n $cgroup ]]; then
        say "stopping the demo's processes (cgroup.kill)"
        kill_cgroup "$cgroup" || problems=1
    fi
    if [[ -n $tmp && -e $NETNS_DIR/$NODE_NETNS ]]; then
        del_pods || problems=1
    fi
    remove_demo_things || problems=1
    if [[ -n "$(leftovers)" ]]; then
        printf '    %sleft behind (remove with: sudo scripts/demo.sh --clean):%s\n' "$RED" "$RESET" >&2
        leftovers | indent >&2
        problems=1
    else
        good "removed the pods' netns, the node netns, the bpffs, the cgroup and $tmp"
    fi
    return "$problems"
}

on_exit() {
    local status=$?
    # Cleanup must run to the end, even when Ctrl-C is pressed again.
    trap '' INT TERM
    set +e
    # set -e stopped the demo at a command that failed without a die() message:
    # still say loudly that the demo did not complete.
    if ((status != 0 && !died && !interrupted)); then
        printf '\n%sDEMO FAILED:%s stopped by an unexpected error (exit status %s, see above)\n' \
            "$RED$BOLD" "$RESET" "$status" >&2
    fi
    if [[ -z $tmp && -z $cgroup ]]; then
        exit "$status"
    fi
    if ((keep && !interrupted)); then
        step "Kept the node (--keep)"
        keep_hints
        exit "$status"
    fi
    if ! teardown; then
        printf '\n%sDEMO FAILED:%s the cleanup did not go as it should (see above)\n' "$RED$BOLD" "$RESET" >&2
        ((status == 0)) && status=1
    fi
    ((interrupted)) && printf '%sinterrupted; the demo node is gone%s\n' "$YELLOW" "$RESET" >&2
    exit "$status"
}

on_signal() {
    interrupted=1
    exit "$1"
}

keep_hints() {
    local root="$tmp/bpffs/meshlane"
    say "Everything is still running. Try:"
    say "  sudo $tmp/bin/meshlane status --bpffs-root $root"
    say "  sudo $tmp/bin/meshlane pods --bpffs-root $root"
    say "  sudo bpftool cgroup show $cgroup"
    say "  cat $tmp/envoy/access.log"
    say "  ${POD_CMD_HINT:-}"
    say "Clean up with:  sudo scripts/demo.sh --clean"
}

# --- preparation ------------------------------------------------------------------

parse_args() {
    while (($#)); do
        case $1 in
        --keep) keep=1 ;;
        --clean) clean_only=1 ;;
        --no-deps) run_deps=0 ;;
        --no-build) run_build=0 ;;
        --meshlane)
            (($# >= 2)) || die "--meshlane needs a path"
            meshlane=$2
            shift
            ;;
        --meshlane=*) meshlane=${1#--meshlane=} ;;
        -h | --help) usage ;;
        *) die "unknown option $1" "Run scripts/demo.sh --help for the options." ;;
        esac
        shift
    done
}

# Only one demo at a time: the names are fixed and a run sweeps what it finds. The
# lock is on this script's own file, so nothing is left behind for it.
take_lock() {
    exec 9<"${BASH_SOURCE[0]}"
    flock -n 9 || die "another scripts/demo.sh is running on this machine" \
        "Wait for it to finish (or stop it); only one demo runs at a time."
}

require_root() {
    ((EUID == 0)) || die "the demo needs root: it creates network namespaces, a cgroup and a bpffs" \
        "Run it as: sudo scripts/demo.sh"
}

install_and_build() {
    step "1. Install what the demo needs, build meshlane"
    if ((run_deps)); then
        say "scripts/deps.sh (apt packages, Rust, Envoy in target/tools; keeps what is there)"
        "$REPO/scripts/deps.sh" 2>&1 | indent ||
            die "scripts/deps.sh failed (see its output above)"
    else
        say "skipping scripts/deps.sh (--no-deps)"
    fi
    # Where rustup (and so scripts/deps.sh) installs cargo for root.
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
    if [[ -z $meshlane ]]; then
        meshlane="${CARGO_TARGET_DIR:-$REPO/target}/release/meshlane"
    fi
    if ((run_build)); then
        say "cargo build --release (the first build takes a few minutes)"
        (cd "$REPO" && cargo build --release --quiet 2>&1) | indent ||
            die "cargo build --release failed (see its output above)"
    else
        say "skipping cargo build (--no-build)"
    fi
    meshlane="$(realpath -e "$meshlane" 2>/dev/null)" ||
        die "no meshlane binary at ${meshlane}" "Build it (cargo build --release) or pass --meshlane PATH."
    say "meshlane: $meshlane ($("$meshlane" version))"
}

check_tools() {
    local missing=() tool
    for tool in ip nsenter setpriv curl flock mount umount mountpoint timeout ss awk; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [[ -x $PYTHON ]] || missing+=("$PYTHON")
    for tool in bridge host-local; do
        [[ -x /usr/lib/cni/$tool ]] || missing+=("/usr/lib/cni/$tool (containernetworking-plugins)")
    done
    [[ -x $envoy ]] || missing+=("Envoy at $envoy")
    [[ -n "$(cgroup2_mount)" ]] || missing+=("a cgroup2 mount (none in /proc/self/mountinfo)")
    ((${#missing[@]} == 0)) || die "missing: ${missing[*]}" \
        "Install the dependencies with: sudo scripts/deps.sh (or run the demo without --no-deps)."
}

# --- the node ---------------------------------------------------------------------

sweep_leftovers() {
    local found
    found="$(leftovers)"
    [[ -n $found ]] || return 0
    say "removing what an earlier demo run left behind:"
    printf '%s\n' "$found" | indent
    remove_demo_things || die "could not remove the leftovers of an earlier demo run" \
        "$(leftovers | tr '\n' ' ')"
}

write_conflist() {
    # Every meshlane key points inside the demo: without them meshlane would pin
    # under /sys/fs/bpf, attach to the machine's cgroup2 root and log to /var/log.
    cat >"$tmp/demo.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$tmp/ipam",
        "ranges": [[{ "subnet": "$SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    {
      "type": "meshlane",
      "capabilities": { "io.kubernetes.cri.pod-annotations": true },
      "bpffsRoot": "$tmp/bpffs/meshlane",
      "cgroupPath": "$cgroup",
      "logFile": "$tmp/meshlane-cni.log"
    }
  ]
}
EOF
}

build_node() {
    step "2. A demo node on this machine (removed again at the end)"
    sweep_leftovers
    local root
    root="$(cgroup2_mount)"
    tmp="$(mktemp -d "/tmp/$NAME.XXXXXX")"
    # The sidecar (1337) and the apps (1000) read their files in here.
    chmod 0755 "$tmp"
    mkdir -p "$tmp/bpffs" "$tmp/bin" "$tmp/ipam" "$tmp/pods" "$tmp/www" "$tmp/envoy"

    # A private bpffs: meshlane pins its maps and links here, and unmounting it at
    # the end drops them all (which detaches the programs).
    mount -t bpf bpf "$tmp/bpffs" || die "cannot mount a bpffs at $tmp/bpffs"
    # A child cgroup: meshlane attaches its programs here and every demo process
    # runs here. The machine's root cgroup and its other processes are untouched.
    cgroup="$root/$NAME"
    mkdir "$cgroup" || die "cannot create the cgroup $cgroup"
    # The first `ip netns add` on a machine makes /run/netns a mount point (and may
    # create it); note that, so the cleanup can undo it.
    if [[ ! -d $NETNS_DIR ]]; then
        echo absent >"$tmp/run-netns-was"
    elif ! mountpoint -q "$NETNS_DIR"; then
        echo unmounted >"$tmp/run-netns-was"
    fi
    # The node netns: the CNI plugins run here (bridge creates its bridge and veths
    # in the netns it runs in), so the host's own network is untouched.
    add_netns "$NODE_NETNS" || die "cannot create the network namespace $NODE_NETNS"

    # CNI_PATH: Debian's reference plugins and the meshlane under test.
    ln -s /usr/lib/cni/bridge /usr/lib/cni/host-local "$tmp/bin/"
    ln -s "$meshlane" "$tmp/bin/meshlane"
    write_conflist
    # The sidecar and Istio's check run as 1337, which may not be able to read the
    # checkout (under /root or a 0700 home): give them copies in the temp dir.
    install -m 0644 "$REPO/tests/tools/probe.py" "$tmp/probe.py"
    if ! setpriv --reuid="$PROXY_ID" --regid="$PROXY_ID" --clear-groups -- test -x "$envoy"; then
        say "copying Envoy to $tmp (UID $PROXY_ID cannot reach $envoy)"
        install -m 0755 "$envoy" "$tmp/envoy-bin"
        envoy="$tmp/envoy-bin"
    fi

    say "node netns  $NODE_NETNS      the CNI plugins run in here"
    say "bpffs       $tmp/bpffs   meshlane pins its maps and links under .../meshlane"
    say "cgroup      $cgroup   meshlane attaches here; every demo process runs in it"
    say "conflist    $tmp/demo.conflist (Debian's bridge + host-local, then meshlane):"
    indent <"$tmp/demo.conflist"
}

# What Istio's injector writes on a pod it gave a sidecar (with the CNI plugin
# doing the capture, it adds istio-validation instead of istio-init).
INJECTED_STATUS='{"initContainers":["istio-validation"],"containers":["istio-proxy"],"templates":["sidecar"]}'

# CNI ADD of one pod through the chain, as containerd/CRI-O do for kubelet.
add_pod() {
    local pod=$1 injected=$2 args annotations log_lines container_id
    add_netns "$NAME-$pod" || die "cannot create the network namespace $NAME-$pod"
    # What a Kubernetes runtime passes (IgnoreUnknown lets host-local accept keys it
    # does not know).
    args="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$pod"
    # meshlane decides as Istio does: a pod the injector gave a sidecar (its
    # sidecar.istio.io/status annotation, which the runtime passes in runtimeConfig)
    # is captured; the others are left alone.
    annotations='{}'
    if [[ $injected == true ]]; then
        annotations="$(python3 -c 'import json,sys; print(json.dumps({"sidecar.istio.io/status": sys.argv[1]}))' "$INJECTED_STATUS")"
    fi
    say "$pod: CNI_ARGS=$args"
    say "$pod: annotations $annotations"
    log_lines=0
    [[ -f $tmp/meshlane-cni.log ]] && log_lines=$(wc -l <"$tmp/meshlane-cni.log")
    # 64 hex digits, like a sandbox ID from containerd.
    container_id="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    run_chain add --conflist "$tmp/demo.conflist" --cni-path "$tmp/bin" \
        --node-netns "$NETNS_DIR/$NODE_NETNS" --state "$tmp/pods/$pod.json" \
        --container-id "$container_id" --netns "$NETNS_DIR/$NAME-$pod" --ifname eth0 --args "$args" \
        --annotations "$annotations" | indent ||
        die "CNI ADD of pod $pod failed (the failing plugin's output is above)" \
            "meshlane's log: $tmp/meshlane-cni.log"
    # meshlane's own account of this ADD (its logfmt records, without the
    # timestamp and the long container id).
    tail -n +"$((log_lines + 1))" "$tmp/meshlane-cni.log" |
        sed -E 's/^ts=[^ ]+ /meshlane log: /; s/ container_id=[^ ]+//' | indent
}

pod_ip() { run_chain ip --state "$tmp/pods/$1.json"; }

add_pods() {
    step "3. Three pods, each added through the chain bridge -> meshlane (CNI ADD)"
    say "Each plugin runs like containerd runs it: CNI_* in the environment, its conflist"
    say "entry on stdin with the previous plugin's result as prevResult."
    add_pod app true
    add_pod web false
    add_pod legacy false
    # One command substitution per command: bash 5.2 can fail to run the Ctrl-C
    # trap when it arrives while a command expands several of them.
    app_ip="$(pod_ip app)"
    web_ip="$(pod_ip web)"
    legacy_ip="$(pod_ip legacy)"
    say "pod IPs (from the chain's result):"
    say "  app     $app_ip   captured: has a sidecar"
    say "  web     $web_ip   not captured: runs the web server"
    say "  legacy  $legacy_ip   not captured: no sidecar, plain networking"
}

# meshlane's own records must say: app captured, web and legacy not.
check_records() {
    local pods
    pods="$("$meshlane" pods --bpffs-root "$tmp/bpffs/meshlane" 2>&1)" || true
    grep -q "pod demo/app\$" <<<"$pods" ||
        die "meshlane did not capture app: it has no record of the pod after its ADD" \
            "meshlane pods: $pods" "meshlane's log: $tmp/meshlane-cni.log"
    ! grep -qE "pod demo/(web|legacy)\$" <<<"$pods" ||
        die "meshlane captured web or legacy, which did not ask for it" "$pods"
}

# --- the demo steps ---------------------------------------------------------------

istio_validation() {
    step "4. Istio's start-up check in app (istio-validation, as UID $PROXY_ID)"
    say "Before the sidecar starts, Istio's init container connects to 127.0.0.6:15002 and"
    say "expects that connection to land on its own listener (15001 or 15006) with"
    say "SO_ORIGINAL_DST = :15002. It passes only if capture works."
    local out
    out="$(in_pod app "$PROXY_ID" "$PYTHON" "$tmp/probe.py" istio-validation 2>&1)" || true
    say "app:    $out"
    [[ $out == *'"ok": true'* ]] ||
        die "Istio's istio-validation check failed in app: meshlane does not capture its connections" \
            "A real Istio pod would not start. meshlane's log: $tmp/meshlane-cni.log"
    good "istio-validation passed in app"
    out="$(in_pod legacy "$PROXY_ID" "$PYTHON" "$tmp/probe.py" istio-validation 2>&1)" || true
    say "legacy: $out"
    [[ $out == *'"ok": false'* ]] ||
        die "istio-validation passed in legacy, which is not captured: capture leaks into other pods"
    say "legacy is not captured, so the same check fails there, as it should."
}

start_workloads() {
    step "5. Start the sidecar in app and a web server in web"
    sed "s|@ACCESS_LOG@|$tmp/envoy/access.log|" "$HELPERS/envoy.yaml" >"$tmp/envoy/bootstrap.yaml"
    : >"$tmp/envoy/access.log"
    chown -R "$PROXY_ID:$PROXY_ID" "$tmp/envoy"
    start_in_pod app "$PROXY_ID" "$tmp/envoy/envoy.out" "$envoy" -c "$tmp/envoy/bootstrap.yaml" \
        --disable-hot-restart --concurrency 1 --log-level warn \
        --file-flush-interval-msec 100
    envoy_pid=$LAST_PID
    printf 'hello from web\n' >"$tmp/www/index.html"
    start_in_pod web "$APP_ID" "$tmp/web.log" "$PYTHON" -m http.server "$WEB_PORT" \
        --bind 0.0.0.0 --directory "$tmp/www"
    web_pid=$LAST_PID

    local i ready=""
    for ((i = 0; i < 300; i++)); do
        kill -0 "$envoy_pid" 2>/dev/null || die "Envoy exited during start-up" \
            "$(tail -n 20 "$tmp/envoy/envoy.out")"
        ready="$(peek app curl -s -m 1 "http://$ENVOY_ADMIN/ready" 2>/dev/null)" || true
        [[ $ready == LIVE* ]] && break
        sleep 0.1
    done
    [[ $ready == LIVE* ]] || die "Envoy is not ready after 30 s" "$(tail -n 20 "$tmp/envoy/envoy.out")"
    say "Envoy (pid $envoy_pid, UID $PROXY_ID) listens on 0.0.0.0:$OUTBOUND_PORT (virtualOutbound)"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$web_pid" 2>/dev/null || die "the web server exited" "$(tail -n 20 "$tmp/web.log")"
        [[ -n "$(peek web ss -Hltn "sport = :$WEB_PORT")" ]] && break
        sleep 0.1
    done
    [[ -n "$(peek web ss -Hltn "sport = :$WEB_PORT")" ]] || die "the web server does not listen on :$WEB_PORT"
    say "web server (pid $web_pid, UID $APP_ID) serves 'hello from web' on $web_ip:$WEB_PORT"
    POD_CMD_HINT="sudo sh -c 'echo \$\$ > $cgroup/cgroup.procs; exec nsenter --net=$(pod_netns app) setpriv --reuid=$APP_ID --regid=$APP_ID --clear-groups curl -s http://$web_ip:$WEB_PORT/'"
}

access_log_lines() { grep -c . "$tmp/envoy/access.log" || true; }

# Waits up to 5 s for the access log to have <n> lines (a TCP connection is logged
# when it closes, and the file is flushed every 100 ms).
wait_access_log() {
    local want=$1 i
    for ((i = 0; i < 50; i++)); do
        (($(access_log_lines) >= want)) && return 0
        sleep 0.1
    done
    return 1
}

envoy_stat() {
    peek app curl -s -m 2 "http://$ENVOY_ADMIN/stats?filter=^$1\$" | awk -F': ' '{print $2}'
}

curl_from() {
    local pod=$1
    in_pod "$pod" "$APP_ID" curl -sS --max-time 5 \
        -w '(HTTP %{http_code}; curl'\''s socket reports its peer as %{remote_ip}:%{remote_port})\n' \
        "http://$web_ip:$WEB_PORT/" 2>&1
}

curl_through_envoy() {
    step "6. curl from app (UID $APP_ID) to http://$web_ip:$WEB_PORT/"
    say "meshlane's connect hook sends app's connect to 127.0.0.1:$OUTBOUND_PORT (Envoy);"
    say "Envoy asks the socket for SO_ORIGINAL_DST, meshlane answers $web_ip:$WEB_PORT,"
    say "and Envoy connects there. No iptables rule is involved."
    local out line
    out="$(curl_from app)" || die "curl from app to web failed: $out" \
        "Envoy's log: $tmp/envoy/envoy.out; meshlane's log: $tmp/meshlane-cni.log"
    printf '%s\n' "$out" | indent
    [[ $out == *"hello from web"* ]] || die "curl from app did not get web's page: $out"
    wait_access_log 1 || die "the page arrived, but NOT through Envoy: its access log is empty" \
        "meshlane did not redirect app's connect to the sidecar, so capture is broken."
    line="$(tail -n 1 "$tmp/envoy/access.log")"
    say "The app still sees web's address as its peer (meshlane's getpeername hook),"
    say "just as behind iptables' NAT."
    say "Envoy's access log ($tmp/envoy/access.log):"
    printf '%s\n' "$line" | indent
    say "app= the app's socket, connected to Envoy over loopback; original_dst= what"
    say "Envoy read with SO_ORIGINAL_DST; upstream= where it connected; from= its own socket."
    [[ $line == *"app=127.0.0.1:"* && $line == *"original_dst=$web_ip:$WEB_PORT "* &&
        $line == *"upstream=$web_ip:$WEB_PORT "* ]] ||
        die "Envoy's access log line does not show app -> Envoy -> $web_ip:$WEB_PORT" "$line"
    good "app -> Envoy on 127.0.0.1:$OUTBOUND_PORT -> web $web_ip:$WEB_PORT (original_dst from SO_ORIGINAL_DST)"
    line="$(grep '"GET / ' "$tmp/web.log" | tail -n 1)"
    say "web's server log: $line"
    [[ $line == "$app_ip "* ]] || die "web did not see the request come from app's address $app_ip" "$line"
}

curl_directly() {
    step "7. The same curl from legacy (not captured)"
    local before out line
    before=$(access_log_lines)
    out="$(curl_from legacy)" || die "curl from legacy to web failed: $out"
    printf '%s\n' "$out" | indent
    [[ $out == *"hello from web"* ]] || die "curl from legacy did not get web's page: $out"
    # Give Envoy's log the time it would need to show the connection (100 ms flush).
    sleep 0.5
    (($(access_log_lines) == before)) ||
        die "legacy's connection went through app's Envoy: capture leaks into other pods" \
            "$(tail -n 1 "$tmp/envoy/access.log")"
    good "arrived directly: Envoy's access log still has $before line(s)"
    line="$(grep '"GET / ' "$tmp/web.log" | tail -n 1)"
    say "web's server log: $line"
    [[ $line == "$legacy_ip "* ]] || die "web did not see the request come from legacy's address $legacy_ip" "$line"
    local total
    total="$(envoy_stat cluster.PassthroughCluster.upstream_cx_total)"
    say "Envoy's stats: cluster.PassthroughCluster.upstream_cx_total = ${total:-?}"
    [[ $total == 1 ]] || die "Envoy made ${total:-an unknown number of} upstream connections, expected exactly 1 (app's)"
}

show_meshlane() {
    step "8. What meshlane loaded (meshlane status, meshlane pods)"
    local root="$tmp/bpffs/meshlane" status id
    say "meshlane status --bpffs-root $root"
    status="$("$meshlane" status --bpffs-root "$root" 2>&1)" ||
        die "meshlane status reports a problem" "$status"
    # Zero counters say little here; hide them to keep the output short.
    printf '%s\n' "$status" | grep -v -e '^$' -e ' 0$' | indent
    say "(counters that are 0 are not shown)"
    # A cgroup's ID is its inode number on the cgroup2 filesystem.
    id="$(stat -c %i "$cgroup")"
    if [[ "$(grep -o 'cgroup id [0-9]*' <<<"$status" | sort -u)" != "cgroup id $id" ]]; then
        die "meshlane's programs are not all attached to the demo cgroup (id $id)" "$status"
    fi
    say "Every program is attached to the demo cgroup (id $id), not to the machine's root cgroup."
    say "meshlane pods --bpffs-root $root"
    "$meshlane" pods --bpffs-root "$root" 2>&1 | indent
    if command -v bpftool >/dev/null 2>&1; then
        say "bpftool cgroup show $cgroup"
        bpftool cgroup show "$cgroup" 2>&1 | indent
    fi
}

main() {
    clean_only=0
    parse_args "$@"
    require_root
    take_lock
    if ((clean_only)); then
        clean_kept_node
        exit 0
    fi
    trap on_exit EXIT
    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM

    printf '%smeshlane demo:%s an app'\''s outbound connections go to its Envoy sidecar,\n' "$BOLD" "$RESET"
    printf 'steered by eBPF programs in the kernel instead of iptables rules.\n'
    install_and_build
    check_tools
    build_node
    add_pods
    check_records
    istio_validation
    start_workloads
    curl_through_envoy
    curl_directly
    show_meshlane
    step "Done"
    good "meshlane captured app's connection for its sidecar and left legacy's alone."
}

# --clean: the node of a --keep run (DEL its pods through the chain first, as a
# runtime would) or of a crashed run.
clean_kept_node() {
    local dirs
    dirs="$(demo_tmp_dirs)"
    if [[ -z "$(leftovers)" ]]; then
        say "nothing to clean: no demo node on this machine"
        return 0
    fi
    tmp="$(head -n 1 <<<"$dirs")"
    cgroup=""
    if [[ -n $tmp && -f $tmp/demo.conflist ]]; then
        cgroup="$(cgroup2_mount)/$NAME"
    fi
    teardown || die "cleanup was incomplete" "$(leftovers | tr '\n' ' ')"
}

main "$@"
