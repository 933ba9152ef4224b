#!/usr/bin/env bash
# meshlane's benchmark (issues 5, 16): on this machine, in one run, alternating, with
# medians over repetitions:
#   1 no mesh (pod to pod)            2 Envoy sidecars + Istio's iptables (REDIRECT)
#   3 Envoy + meshlane, no short path 4 Envoy + meshlane + short path (sockmap)
#   5 the same Envoys, no capture (the apps connect to their Envoy explicitly: the floor)
# qperf tcp_lat / tcp_bw at 1 B..64 KiB, connection setup rate, CPU per request,
# pod setup cost (meshlane ADD vs iptables-restore), the BPF programs' run time, and
# the cost of meshlane's hooks for processes outside mesh pods.
#
#   sudo scripts/bench.sh            the full benchmark (about 18 minutes): results in
#                                    bench/results/, report in docs/benchmarks.md and
#                                    docs/benchmarks.png
#   sudo scripts/bench.sh --smoke    one short repetition (under a minute), results in
#                                    target/bench-smoke/ (what CI runs: tests/bench_smoke.rs)
#
# Options:
#   --no-deps          do not run scripts/deps.sh (check the tools are there instead)
#   --no-build         do not build meshlane (install/build-static.sh)
#   --meshlane PATH    the meshlane binary (default: the static binary the install
#                      image ships, from install/build-static.sh: $CARGO_TARGET_DIR or
#                      target/, then static/x86_64-unknown-linux-musl/release/meshlane);
#                      MESHLANE_ENVOY=PATH picks the Envoy
#   --out DIR          where the results go (JSON, CSV, Markdown, PNG)
#   --no-docs          a full run without rewriting docs/benchmarks.{md,png}
#   --reps N           repetitions (full: 9, smoke: 1)
#   --setup-pods N     pods for the pod setup cost (full: 1000, smoke: 10)
#   --case4-annotation KEY=VALUE
#                      an annotation on case 4's pods, e.g. meshlane's per-pod
#                      short-path setting (meshlane.io/short-path=app)
#   --tools-dir DIR    where the connection-rate tool is built (default:
#                      $CARGO_TARGET_DIR or target/, then bench/)
#   --report-only FILE no measurement: rewrite the report of a results JSON (and, for
#                      a full run's, docs/benchmarks.{md,png}) after a change of the
#                      report or of bench/analysis.md
#
# Everything it creates carries the name meshlane-bench and is removed on exit, also
# after Ctrl-C or a failure: the netns meshlane-bench-*, the cgroup meshlane-bench
# under the cgroup2 mount (never the root cgroup), a private bpffs and the temp dir
# /tmp/meshlane-bench.*. Traffic stays inside the namespaces it created.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${MESHLANE_TOOLS_DIR:-$REPO/target/tools}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
# The system interpreter: the benchmark needs only its standard library. No
# __pycache__ in the checkout.
PYTHON=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1

die() {
    printf 'scripts/bench.sh: %s\n' "$1" >&2
    exit 1
}

# shellcheck source=scripts/lib/usage.sh
source "$REPO/scripts/lib/usage.sh"

smoke=0
run_deps=1
run_build=1
docs=1
meshlane=""
out=""
tools_dir="$TARGET/bench"
pass=()
original_args=("$@")

if [[ ${1:-} == --report-only ]]; then
    (($# == 2)) || die "--report-only takes exactly one results file"
    plot_python="$TOOLS/venv/bin/python"
    "$plot_python" -c 'import matplotlib' 2>/dev/null ||
        die "no matplotlib in $TOOLS/venv (for the plot): run sudo scripts/deps.sh"
    results="$(realpath -e "$2")" || die "no results file $2"
    mode="$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mode"])' "$results")"
    docs_arg=()
    [[ $mode == full ]] && docs_arg=(--docs "$REPO/docs")
    exec /usr/bin/python3 "$REPO/bench/run.py" --report-only "$results" \
        --out-dir "$(dirname "$results")" --plot-python "$plot_python" "${docs_arg[@]}"
fi

while (($#)); do
    case $1 in
    --smoke) smoke=1 ;;
    --no-deps) run_deps=0 ;;
    --no-build) run_build=0 ;;
    --no-docs) docs=0 ;;
    --meshlane | --out | --reps | --setup-pods | --tools-dir | --case4-annotation)
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
        --meshlane) meshlane=$2 ;;
        --out) out=$2 ;;
        --tools-dir) tools_dir=$2 ;;
        *) pass+=("$1" "$2") ;;
        esac
        shift
        ;;
    -h | --help) usage ;;
    *) die "unknown option $1 (see scripts/bench.sh --help)" ;;
    esac
    shift
done


((EUID == 0)) || die "the benchmark needs root (network namespaces, cgroups, bpffs): sudo scripts/bench.sh"

if ((run_deps)); then
    "$REPO/scripts/deps.sh"
fi
# Where rustup (and so scripts/deps.sh) installs cargo for root.
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

# The binary the DaemonSet installs: static, release profile (docs/benchmarks.md
# says why its start-up matters for the pod setup figure).
if ((run_build)) && [[ -z $meshlane ]]; then
    echo "==> install/build-static.sh" >&2
    meshlane="$("$REPO/install/build-static.sh")" || die "install/build-static.sh failed"
fi
if [[ -z $meshlane ]]; then
    meshlane="$TARGET/static/${MESHLANE_STATIC_TARGET:-x86_64-unknown-linux-musl}/release/meshlane"
fi
meshlane="$(realpath -e "$meshlane" 2>/dev/null)" ||
    die "no meshlane binary at $meshlane: build it (install/build-static.sh) or pass --meshlane PATH"

envoy="${MESHLANE_ENVOY:-$TOOLS/envoy}"
[[ -x $envoy ]] || die "no Envoy at $envoy: run sudo scripts/deps.sh"
plot_python="$TOOLS/venv/bin/python"
"$plot_python" -c 'import matplotlib' 2>/dev/null ||
    die "no matplotlib in $TOOLS/venv (for the plot): run sudo scripts/deps.sh"
[[ -x $PYTHON ]] || PYTHON="$(command -v python3)" || die "no python3"
command -v rustc >/dev/null 2>&1 || die "no rustc (for bench/tools/connrate.rs): run sudo scripts/deps.sh"

# The connection-rate tool: one std-only Rust file, no Cargo project of its own.
connrate="$tools_dir/connrate"
src="$REPO/bench/tools/connrate.rs"
if [[ ! -x $connrate || $src -nt $connrate ]]; then
    mkdir -p "$tools_dir"
    rustc --edition 2021 -O "$src" -o "$connrate.new"
    mv -f "$connrate.new" "$connrate"
fi

args=(--meshlane "$meshlane" --envoy "$envoy" --connrate "$connrate" --plot-python "$plot_python")
if ((smoke)); then
    args+=(--smoke --out-dir "${out:-$TARGET/bench-smoke}")
else
    args+=(--out-dir "${out:-$REPO/bench/results}")
    ((docs)) && args+=(--docs "$REPO/docs")
fi
command_line="sudo scripts/bench.sh${original_args[*]:+ ${original_args[*]}}"
exec "$PYTHON" "$REPO/bench/run.py" "${args[@]}" "${pass[@]}" --command "$command_line"
