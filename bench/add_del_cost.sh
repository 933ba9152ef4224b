#!/bin/bash
# ADD and DEL of meshlane alone, timed, on a private node: its own bpffs, its own
# child cgroup (never the root cgroup), N+1 netns with a veth each. Optionally
# fills the original-destination map with records of other netns first, as a
# busy node holds them (docs/reliability.md, "DEL without the scan").
#
#   sudo bench/add_del_cost.sh MESHLANE_BINARY [N] [CONN_RECORDS]
#
# Prints "ADD i <µs>" and "DEL i <µs>" (wall time of the plugin process, from
# fork to exit) and "FLOOR i <µs>" (/bin/true timed the same way); pod 0's
# ADD loads the node's programs. FIRST_STRACE="strace -f -T -e trace=bpf -o FILE"
# traces that first ADD; TRACE_AT=i TRACE_OUT=FILE runs the ADD and the DEL of pod i
# under "strace -f -c" (summaries in FILE.ADD, FILE.DEL). With N >= 200 a summary:
# ADD and DEL p50/p99 over pods 1-100 and over the last 100 (pod setup at N pods,
# docs/benchmarks.md); CPU=1 adds the plugin's CPU time (perf stat task-clock),
# which a busy shared machine disturbs less than the wall time. ANNOTATIONS=JSON
# replaces the pods' annotations (default: Istio-injected), e.g. '{}' for pods
# that are not captured. Everything is removed on exit.
set -u
BIN=$(realpath "$1")
N=${2:-20}
FILL=${3:-0}
CGROUP2=/sys/fs/cgroup/unified
W=$(mktemp -d /tmp/meshlane-add-del.XXXX)
CG=$CGROUP2/meshlane-add-del-$$
NS=mad$$
STATUS='{\"initContainers\":[\"istio-validation\"],\"containers\":[\"istio-proxy\"]}'
ANNOTATIONS=${ANNOTATIONS:-"{\"sidecar.istio.io/status\":\"$STATUS\"}"}

cleanup() {
  for i in $(seq 0 "$N"); do ip netns del "$NS-$i" 2>/dev/null; done
  umount "$W/bpffs" 2>/dev/null
  rmdir "$CG" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/bpffs" "$W/cni" && mount -t bpf bpf "$W/bpffs" && mkdir "$CG" || exit 1
cp "$BIN" "$W/cni/meshlane"

# Microseconds between two $EPOCHREALTIME readings (seconds.micros).
micros() { echo $(((${2/./} - ${1/./}))); }

# The floor of any plugin run: /bin/true started and waited for the same way.
floor() {
  local start end
  start=$EPOCHREALTIME
  /bin/true <<< "$conf_floor" > "$W/out"
  end=$EPOCHREALTIME
  echo "FLOOR $1 $(micros "$start" "$end")" | tee -a "$W/times"
}
conf_floor='{"cniVersion":"1.0.0"}'

ip_of() { echo "10.99.$(($1 / 200)).$(($1 % 200 + 2))"; }

run() { # COMMAND i
  local i=$2 ns=$NS-$2 trace="" cpu=""
  [ "${CPU:-0}" = 1 ] && cpu="perf stat -x, -e task-clock -o $W/cpu.$1.$i"
  [ "$i" = 0 ] && [ "$1" = ADD ] && trace=${FIRST_STRACE:-}
  [ "$i" = "${TRACE_AT:-x}" ] && trace="strace -f -c -o ${TRACE_OUT:-/dev/null}.$1"
  local conf="{\"cniVersion\":\"1.0.0\",\"name\":\"cost\",\"type\":\"meshlane\",\
\"bpffsRoot\":\"$W/bpffs/meshlane\",\"cgroupPath\":\"$CG\",\"logFile\":\"$W/log\",\
\"prevResult\":{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/run/netns/$ns\"}],\
\"ips\":[{\"address\":\"$(ip_of "$i")/16\",\"interface\":0}]},\
\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":$ANNOTATIONS}}"
  local start end
  # $EPOCHREALTIME is read by bash itself: the time is the plugin's fork, exec and
  # run, with no `date` process started around it (FLOOR below is /bin/true timed
  # the same way).
  start=$EPOCHREALTIME
  CNI_COMMAND=$1 CNI_CONTAINERID=cost$$x$i CNI_NETNS=/run/netns/$ns \
    CNI_IFNAME=eth0 CNI_PATH=$W/cni CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=cost;K8S_POD_NAME=p$i" \
    ${TIMER:-} $cpu $trace "$W/cni/meshlane" <<< "$conf" > "$W/out" 2>> "$W/err" || cat "$W/out"
  end=$EPOCHREALTIME
  echo "$1 $i $(micros "$start" "$end")" | tee -a "$W/times"
  [ -n "$cpu" ] && awk -F, -v op="$1" -v i="$i" '/task-clock/ {printf "CPU%s %d %d\n", op, i, $1 * 1000}' \
    "$W/cpu.$1.$i" | tee -a "$W/times"
}

for i in $(seq 0 "$N"); do
  ip netns add "$NS-$i"
  ip -n "$NS-$i" link add eth0 type veth peer name eth0p
  ip -n "$NS-$i" addr add "$(ip_of "$i")/16" dev eth0
  ip -n "$NS-$i" link set eth0 up
  ip -n "$NS-$i" link set lo up
done
for i in $(seq 0 "$N"); do run ADD "$i"; floor "$i"; done
if [ "$FILL" -gt 0 ]; then
  map=$W/bpffs/meshlane/maps/ml_conn_orig_dst
  python3 - "$map" "$FILL" > "$W/batch" <<'PY'
import struct, sys
path, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    # struct ml_conn_key of a netns that is none of these pods', and ml_orig_dst
    key = struct.pack("<Q16s16sHHI", 10**12 + i, bytes(16), bytes(16), i & 0xFFFF, 15001, 0)
    value = struct.pack("<16sHBB", bytes(16), 80, 1, 0)
    hexed = lambda b: " ".join("%02x" % x for x in b)
    print("map update pinned %s key hex %s value hex %s" % (path, hexed(key), hexed(value)))
PY
  bpftool batch file "$W/batch" > /dev/null && echo "FILLED $FILL"
fi
for i in $(seq 0 "$N"); do run DEL "$i"; done
if [ "$N" -ge 200 ]; then
  python3 - "$W/times" "$N" <<'PY'
import sys
n = int(sys.argv[2])
times = {}
for line in open(sys.argv[1]):
    op, i, us = line.split()
    times.setdefault(op, {})[int(i)] = int(us)
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]
for op in [op for op in ("ADD", "DEL", "FLOOR", "CPUADD", "CPUDEL") if op in times]:
    for name, lo, hi in (("first100", 1, 100), ("last100", n - 99, n)):
        v = [times[op][i] for i in range(lo, hi + 1)]
        print("SUMMARY %s %s p50 %d p99 %d us" % (op, name, pct(v, 50), pct(v, 99)))
PY
fi
