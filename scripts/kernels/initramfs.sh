#!/usr/bin/env bash
# Builds the initramfs that boots a fetched kernel (scripts/kernels/fetch.sh) into
# the machine's own root filesystem:
#
#   scripts/kernels/initramfs.sh KERNEL_DIR     → KERNEL_DIR/initramfs.cpio.gz
#
# It holds a static busybox, the init script (scripts/kernels/init) and the
# modules that script needs before the root is reachable (virtio, virtiofs,
# overlay), in the order modules.dep says they load. Modules built into the kernel
# (modules.builtin) are left out.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:?usage: initramfs.sh KERNEL_DIR}"
release="$(basename "$(ls -d "$dir"/modules/lib/modules/*/)")"
modules="$dir/modules/lib/modules/$release"
BOOT_MODULES=(virtio_pci fuse virtiofs overlay)

# Prints the modules.dep paths of $1 and of everything it needs, dependencies first.
resolve() {
    local name="$1" line path dep
    grep -q "/$name.ko\$" "$modules/modules.builtin" && return
    line="$(grep -E "(^|/)$name\.ko:" "$modules/modules.dep" | head -1)" \
        || { echo "module $name is neither built in nor in modules.dep ($release)" >&2; exit 1; }
    path="${line%%:*}"
    for dep in ${line#*:}; do
        dep="$(basename "$dep" .ko)"
        resolve "$dep"
    done
    echo "$path"
}

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging"/{bin,dev,proc,sys,lower,upper,newroot,modules}
cp /bin/busybox "$staging/bin/busybox"
ln -s busybox "$staging/bin/sh"
install -m 0755 "$HERE/init" "$staging/init"

order=()
for name in "${BOOT_MODULES[@]}"; do
    while read -r path; do
        [[ " ${order[*]} " == *" $path "* ]] || order+=("$path")
    done < <(resolve "$name")
done
n=0
for path in "${order[@]}"; do
    n=$((n + 1))
    cp "$modules/$path" "$staging/modules/$(printf '%02d' "$n")-$(basename "$path")"
done

(cd "$staging" && find . | cpio -o -H newc --quiet | gzip -1) > "$dir/initramfs.cpio.gz.new"
mv -f "$dir/initramfs.cpio.gz.new" "$dir/initramfs.cpio.gz"
echo "$dir/initramfs.cpio.gz"
