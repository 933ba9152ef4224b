#!/bin/bash
# PID 1 of a test guest, after the initramfs switched to the machine's root
# (scripts/kernels/init): sets up what a Debian machine has after boot and the
# test suites expect, runs the suites (run-suites.sh), and powers off.
#
# Kernel command line: ml.results=DIR, a directory of the machine that the host
# shares as virtiofs tag "results" and that the guest mounts at the same path.
# DIR/guest.env (written by boot.sh) says what to run; results are written there.
set -uo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

say() { echo "meshlane-guest: $*" >/dev/console; }
power_off() {
    sync
    echo o >/proc/sysrq-trigger
    sleep 30
}
fail() {
    say "FAILED: $*"
    power_off
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# A fresh /run: the machine's netns files are not the guest's. /var/run is a link
# to /run on Debian. /tmp stays the overlay's (writes land in the guest's memory):
# the checkout under test, and with it the test executables, may live there (a CI
# clone in /tmp), and a tmpfs would hide it.
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns /run/lock
# cgroup v2 only (the tests find it in /proc/self/mountinfo), bpffs, debugfs-free.
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
mount -t bpf bpf /sys/fs/bpf || fail "mount bpffs"
ip link set lo up || fail "loopback up"
hostname meshlane-guest

results=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    ml.results=*) results="${arg#ml.results=}" ;;
    esac
done
[[ -n "$results" ]] || fail "no ml.results= on the kernel command line"
mkdir -p "$results"
mount -t virtiofs results "$results" || fail "mount the virtiofs share results at $results"
say "booted $(uname -r)"
echo "booted $(uname -r)" >"$results/booted"

# The kernel's modules, from the unpacked package (scripts/kernels/fetch.sh), where
# modprobe and the kernel's module autoloader look for them. The machine has no
# kmod: busybox's modprobe reads busybox depmod's modules.dep.
release="$(uname -r)"
# shellcheck source=/dev/null
source "$results/guest.env" || fail "read $results/guest.env"
mkdir -p /lib/modules
mount --bind "$GUEST_MODULES" /lib/modules || fail "bind $GUEST_MODULES on /lib/modules"
mkdir -p /run/meshlane-guest
ln -sf "$(command -v busybox)" /run/meshlane-guest/modprobe
echo /run/meshlane-guest/modprobe >/proc/sys/kernel/modprobe
for module in $GUEST_LOAD_MODULES; do
    if ! grep -q "/$module.ko\$" "/lib/modules/$release/modules.builtin"; then
        /run/meshlane-guest/modprobe "$module" || fail "modprobe $module"
    fi
done

"$GUEST_RUN_SUITES" "$results" >"$results/run-suites.log" 2>&1
echo "$?" >"$results/done"
say "done"
power_off
