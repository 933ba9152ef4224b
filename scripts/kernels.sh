#!/usr/bin/env bash
# The kernel matrix (docs/kernels.md): boots each kernel under qemu with the
# machine's own root filesystem, runs the kernel-dependent test suites inside, and
# prints one table: kernel × suite × pass/fail, test counts and time.
#
#   sudo scripts/kernels.sh [options] [KERNEL...]
#
# KERNEL is a Debian 12 cloud kernel series — 6.1 or 6.12: the newest package of
# the series in the archive, downloaded and unpacked under target/kernels/, never
# installed — or "host": the same suites natively on the machine's running kernel.
# Default: 6.1 6.12 host.
#
#   --suites A,B  suites to run (default: every kernel-dependent suite, below)
#   --script NAME=COMMAND  also run COMMAND (bash, from the repository's root) as
#                 a suite called NAME, passed when it exits 0; repeatable. With
#                 --script and no --suites only the scripts run, e.g. the sockmap
#                 lab's close experiment (docs/kernels.md):
#                 --script lab_close='tests/tools/sockmap_lab.py close --check'
#   --runs N      run each suite N times in a row (the short path's evidence:
#                 --suites shortpath --runs 20 --stop-at-first-failure)
#   --stop-at-first-failure  stop a suite's runs at its first failed one
#   --ci          the CI check: suite kernel_check on 6.1 (unless kernels are given)
#   --timeout S   seconds a suite run may take before it counts as hung
#                 (default 1500 in a TCG guest, 600 otherwise)
#   --accel A     auto (KVM when it boots a kernel here, else TCG), kvm or tcg
#   --out DIR     results (default target/kernels/runs/<date-time>)
#   --skip-deps   do not run scripts/deps.sh first
#
# Guests run under a timeout and are killed by pid; nothing is left running. Run
# the short path's evidence on a quiet machine: a guest starved of CPU pauses its
# transfers longer than the short-path suite allows.
# The test executables come from `cargo test --no-run` (CARGO_TARGET_DIR is
# honoured): keep the build untouched while a long run goes on.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO/scripts/kernels"
cd "$REPO"

# Every suite whose outcome depends on the kernel: they load and attach the
# programs, or push traffic through them. (cni_conformance, kube_api, manifests,
# installer_conflist, static_binary and bench_smoke do not, or only repeat these.)
# parity_iptables depends on the kernel too but takes over an hour in a TCG guest:
# add it with --suites where that fits.
DEFAULT_SUITES="kernel_check,harness_smoke,outbound_capture,inbound_capture,netns_steering,ipv6_in_ipv4_pods,dns_capture,cni_lifecycle,istio_pods,shortpath,upgrade,enroll,installer,demo_smoke,socket_variants,map_capacity"
# Modules the suites need that Debian's cloud kernels build as modules: veth and
# bridge for the test nodes, nf_tables and xtables for Istio's iptables rules
# (parity, harness), conntrack and NAT for REDIRECT.
GUEST_MODULES="veth bridge nf_tables nft_compat nft_chain_nat nf_conntrack nf_nat xt_owner xt_REDIRECT xt_multiport xt_CT xt_tcpudp xt_conntrack ip_tables iptable_nat iptable_raw iptable_filter iptable_mangle ip6_tables ip6table_nat ip6table_raw ip6table_filter ip6table_mangle"
# A TCG guest runs the suites 5-10 times slower than the machine: their waits
# scale (tests/common/timing.rs), their checks do not.
TCG_TIME_SCALE=10

suites="$DEFAULT_SUITES"
suites_given=0
scripts=()
runs=1
stop_first=0
ci=0
timeout=""
accel=auto
out=""
deps=1
kernels=()
while (($#)); do
    case "$1" in
    --suites) suites="$2"; suites_given=1; shift 2 ;;
    --script) scripts+=("$2"); shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --stop-at-first-failure) stop_first=1; shift ;;
    --ci) ci=1; suites="kernel_check"; shift ;;
    --timeout) timeout="$2"; shift 2 ;;
    --accel) accel="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --skip-deps) deps=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) kernels+=("$1"); shift ;;
    esac
done
if ((${#kernels[@]} == 0)); then
    if ((ci)); then kernels=(6.1); else kernels=(6.1 6.12 host); fi
fi
if ((${#scripts[@]})) && ((!suites_given)); then suites=""; fi
for script in "${scripts[@]}"; do
    [[ "$script" =~ ^[A-Za-z0-9_-]+=. ]] || { echo "--script wants NAME=COMMAND" >&2; exit 2; }
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive number" >&2; exit 2; }
case "$accel" in auto | kvm | tcg) ;; *) echo "--accel: auto, kvm or tcg" >&2; exit 2 ;; esac
[[ $EUID -eq 0 ]] || { echo "scripts/kernels.sh boots kernels and runs privileged tests: run it as root" >&2; exit 1; }

log() { printf '[kernels] %s\n' "$*" >&2; }

if ((deps)); then
    scripts/deps.sh
fi
export PATH="$HOME/.cargo/bin:$PATH"

out="${out:-$REPO/target/kernels/runs/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The cargo suites (none when only --script was given).
meshlane_bin=""
: >"$out/suites.tsv"
if [[ -n "$suites" ]]; then
    log "building the test executables (cargo test --no-run)"
    build_json="$out/build.json"
    test_args=()
    for suite in ${suites//,/ }; do
        test_args+=(--test "$suite")
    done
    cargo test --locked --no-run --message-format=json "${test_args[@]}" >"$build_json"
    # name<TAB>executable for each wanted suite, and the meshlane binary the tests use.
    python3 - "$build_json" "$suites" >"$out/suites.tsv" <<'PY'
import json, sys
executables, meshlane = {}, None
for line in open(sys.argv[1]):
    message = json.loads(line)
    if message.get("reason") != "compiler-artifact" or not message.get("executable"):
        continue
    target = message["target"]
    if target["kind"] == ["test"]:
        executables[target["name"]] = message["executable"]
    elif target["kind"] == ["bin"] and target["name"] == "meshlane":
        meshlane = message["executable"]
missing = [s for s in sys.argv[2].split(",") if s not in executables]
if missing or meshlane is None:
    sys.exit(f"no test executable for {missing or 'the meshlane binary'}")
for suite in sys.argv[2].split(","):
    print(f"{suite}\t{executables[suite]}")
print(f"#meshlane\t{meshlane}")
PY
    meshlane_bin="$(awk -F'\t' '$1 == "#meshlane" {print $2}' "$out/suites.tsv")"
    sed -i '/^#meshlane/d' "$out/suites.tsv"
fi
# Scripts: name<TAB>command<TAB>"script" (run-suites.sh runs the command with bash).
for script in "${scripts[@]}"; do
    command="cd $(printf '%q' "$REPO") && ${script#*=}"
    printf '%s\t%s\tscript\n' "${script%%=*}" "$command" >>"$out/suites.tsv"
done

# Writes run.env for run-suites.sh.
write_run_env() { # DIR TIMEOUT TIME_SCALE
    cat >"$1/run.env" <<EOF
RUNS=$runs
SUITE_TIMEOUT=$2
STOP_AT_FIRST_FAILURE=$stop_first
MESHLANE_BIN=$meshlane_bin
MESHLANE_TEST_TIME_SCALE=$3
RUST_BACKTRACE=1
EOF
}

n=0
for kernel in "${kernels[@]}"; do
    n=$((n + 1))
    dir="$out/$n-$kernel"
    mkdir -p "$dir"
    cp "$out/suites.tsv" "$dir/suites.tsv"
    suite_count=$(wc -l <"$dir/suites.tsv")
    started=$SECONDS
    if [[ "$kernel" == host ]]; then
        log "host: $(uname -r), natively"
        printf 'release=%s\npackage=the running kernel\naccel=native\n' "$(uname -r)" >"$dir/info"
        write_run_env "$dir" "${timeout:-600}" 1
        "$HERE/run-suites.sh" "$dir" >&2 || true
        log "host: done in $((SECONDS - started))s"
        continue
    fi
    kdir="$("$HERE/fetch.sh" "$kernel" "$REPO/target/kernels")"
    "$HERE/initramfs.sh" "$kdir" >/dev/null
    release="$(basename "$kdir")"
    guest_accel="$accel"
    if [[ "$guest_accel" == auto ]]; then
        if "$HERE/kvm-probe.sh" "$kdir" 20; then guest_accel=kvm; else guest_accel=tcg; fi
    fi
    if [[ "$guest_accel" == tcg ]]; then scale=$TCG_TIME_SCALE; else scale=1; fi
    suite_timeout="${timeout:-$([[ "$guest_accel" == tcg ]] && echo 1500 || echo 600)}"
    printf 'release=%s\npackage=%s\naccel=%s\n' "$release" "$(cat "$kdir/package")" "$guest_accel" >"$dir/info"
    write_run_env "$dir" "$suite_timeout" "$scale"
    cat >"$dir/guest.env" <<EOF
GUEST_MODULES=$kdir/modules/lib/modules
GUEST_LOAD_MODULES="$GUEST_MODULES"
GUEST_RUN_SUITES=$HERE/run-suites.sh
EOF
    # Every run may take its whole timeout, plus the boot.
    guest_timeout=$((suite_count * runs * (suite_timeout + 15) + 300))
    log "$kernel: $release under qemu ($guest_accel), at most ${guest_timeout}s"
    if ACCEL="$guest_accel" GUEST_TIMEOUT="$guest_timeout" "$HERE/boot.sh" "$kdir" "$dir"; then
        log "$kernel: done in $((SECONDS - started))s"
    else
        why="the guest did not finish (see $dir/console.log)"
        [[ -e "$dir/killed" ]] && why="$(cat "$dir/killed")"
        echo "guest=$why" >>"$dir/info"
        log "$kernel: $why"
    fi
done

echo
echo "kernel matrix: $out"
"$HERE/table.py" "$out"
