#!/bin/bash
# Boots a fetched kernel under qemu with the machine's root filesystem and runs
# the guest script (guest.sh), which writes its results into RESULTS_DIR:
#
#   scripts/kernels/boot.sh KERNEL_DIR RESULTS_DIR
#
# Environment: ACCEL (tcg, the default, or kvm: scripts/kernels/kvm-probe.sh says
# whether KVM boots here), GUEST_TIMEOUT (seconds for the whole guest, then it is
# killed), GUEST_CPUS, GUEST_MEMORY (MiB). Writes RESULTS_DIR/console.log (the
# guest's serial console); exits 0 when the guest finished its work.
#
# The root is shared read-only through virtiofs (the cloud kernels have no 9p);
# the guest writes into a tmpfs overlay. qemu and both virtiofsd run as children
# of this script, are killed by pid when it ends, and leave nothing behind.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kernel_dir="${1:?usage: boot.sh KERNEL_DIR RESULTS_DIR}"
results="${2:?usage: boot.sh KERNEL_DIR RESULTS_DIR}"
ACCEL="${ACCEL:-tcg}"
GUEST_TIMEOUT="${GUEST_TIMEOUT:-3600}"
GUEST_CPUS="${GUEST_CPUS:-2}"
GUEST_MEMORY="${GUEST_MEMORY:-4096}"
# Nested KVM on the development VMs refuses IA32_ARCH_CAPABILITIES (MSR 0x10a) for a
# plain "host" CPU; the same default is in kvm-probe.sh.
KVM_CPU="${KVM_CPU:-host,-arch-capabilities}"
VIRTIOFSD="${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}"
log() { printf '[kernels] %s\n' "$*" >&2; }

sockets="$(mktemp -d /tmp/meshlane-vm.XXXXXX)"
pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
trap 'stop_all; rm -rf "$sockets"' EXIT
trap 'exit 130' INT TERM

start_virtiofsd() { # TAG DIR CACHE
    "$VIRTIOFSD" --socket-path="$sockets/$1.sock" -o source="$2" -o cache="$3" \
        -o sandbox=chroot >>"$results/virtiofsd-$1.log" 2>&1 &
    pids+=($!)
}

wait_for_socket() {
    local i
    for i in $(seq 1 100); do
        [[ -S "$sockets/$1.sock" ]] && return 0
        sleep 0.05
    done
    log "virtiofsd for $1 did not start (see $results/virtiofsd-$1.log)"
    return 1
}

# Returns 0 when the guest finished (RESULTS_DIR/done).
run_guest() { # ACCEL
    local accel="$1" cpu qemu_pid deadline
    rm -f "$results/booted" "$results/done" "$sockets"/*.sock
    start_virtiofsd hostroot / always
    start_virtiofsd results "$results" none
    wait_for_socket hostroot && wait_for_socket results || return 1
    if [[ "$accel" == kvm ]]; then cpu="$KVM_CPU"; else cpu=max; fi
    qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -smp "$GUEST_CPUS" -m "$GUEST_MEMORY" \
        -object memory-backend-memfd,id=mem,size="${GUEST_MEMORY}M",share=on \
        -numa node,memdev=mem \
        -chardev socket,id=hostroot,path="$sockets/hostroot.sock" \
        -device vhost-user-fs-pci,chardev=hostroot,tag=hostroot \
        -chardev socket,id=results,path="$sockets/results.sock" \
        -device vhost-user-fs-pci,chardev=results,tag=results \
        -kernel "$kernel_dir/vmlinuz" -initrd "$kernel_dir/initramfs.cpio.gz" \
        -append "console=ttyS0 panic=-1 oops=panic random.trust_cpu=on ml.guest=$HERE/guest.sh ml.results=$results" \
        -nic none -display none -monitor none -serial "file:$results/console.log" \
        -no-reboot </dev/null >>"$results/qemu.log" 2>&1 &
    qemu_pid=$!
    pids+=("$qemu_pid")
    deadline=$((SECONDS + GUEST_TIMEOUT))
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            log "guest still running after ${GUEST_TIMEOUT}s: killed"
            echo "guest killed after ${GUEST_TIMEOUT}s" >"$results/killed"
            stop_all
            return 1
        fi
        sleep 1
    done
    stop_all
    [[ -e "$results/done" ]]
}

case "$ACCEL" in
kvm | tcg) run_guest "$ACCEL" ;;
*)
    log "ACCEL must be kvm or tcg (got $ACCEL)"
    exit 1
    ;;
esac
