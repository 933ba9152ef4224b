#!/bin/bash
# Does KVM boot this kernel here? Boots it with no root and no initramfs and
# waits for its first line ("Linux version"): KVM prints it at once, a hanging
# KVM (as on some nested hypervisors) never does. Exit 0 when KVM works.
#
#   scripts/kernels/kvm-probe.sh KERNEL_DIR [SECONDS]
set -uo pipefail

kernel_dir="${1:?usage: kvm-probe.sh KERNEL_DIR [SECONDS]}"
wait_s="${2:-20}"
# As boot.sh: nested KVM here refuses MSR 0x10a for a plain "host" CPU.
KVM_CPU="${KVM_CPU:-host,-arch-capabilities}"
[[ -w /dev/kvm ]] || exit 1

console="$(mktemp)"
trap 'rm -f "$console"' EXIT
qemu-system-x86_64 -accel kvm -cpu "$KVM_CPU" -smp 1 -m 512 -kernel "$kernel_dir/vmlinuz" \
    -append "console=ttyS0 panic=-1" -nic none -display none -monitor none \
    -serial "file:$console" -no-reboot </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 $((wait_s * 10))); do
    if grep -q "Linux version" "$console" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 1
