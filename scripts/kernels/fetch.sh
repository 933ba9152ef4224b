#!/usr/bin/env bash
# Fetches Debian 12's newest cloud kernel of one series and unpacks it for qemu:
#
#   scripts/kernels/fetch.sh SERIES OUT_DIR     (SERIES: 6.1, 6.12, …)
#
# Prints the kernel's directory, OUT_DIR/<release>/, which then holds:
#   vmlinuz                        the kernel image
#   modules/lib/modules/<release>  its modules, uncompressed, with modules.dep
#   package                        "<package> <version>" as apt knows it
#
# The package is only downloaded (`apt-get download`) and unpacked (`dpkg -x`):
# it is never installed, so the machine's own kernel and /boot are not touched.
set -euo pipefail

series="${1:?usage: fetch.sh SERIES OUT_DIR}"
out="${2:?usage: fetch.sh SERIES OUT_DIR}"
log() { printf '[kernels] %s\n' "$*" >&2; }

# Debian 12 names its cloud kernels linux-image-6.1.0-<abi>-cloud-amd64-unsigned
# and, from bookworm's backports and security updates,
# linux-image-6.12.<n>+deb12-cloud-amd64-unsigned.
pattern="^linux-image-${series//./\\.}[.][0-9]+[^ ]*-cloud-amd64-unsigned\$"

candidates() {
    apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$pattern" | sort -V -r
}

mapfile -t packages < <(candidates)
if ((${#packages[@]} == 0)); then
    log "no package matches $pattern yet: apt-get update"
    apt-get update -qq
    mapfile -t packages < <(candidates)
fi
((${#packages[@]})) || { log "no Debian cloud kernel of series $series in the archive"; exit 1; }

mkdir -p "$out/debs"
chmod 0755 "$out" "$out/debs"
deb=""
for package in "${packages[@]}"; do
    version="$(apt-cache policy "$package" | awk '/Candidate:/ {print $2}')"
    found=("$out"/debs/"${package}"_*.deb)
    if [[ -f "${found[0]}" ]]; then
        deb="${found[0]}"
        break
    fi
    # apt's sandbox user cannot write into a root-owned build dir: download as root,
    # which apt reports with a warning only.
    if (cd "$out/debs" && apt-get download -q "$package=$version" >/dev/null 2>&1); then
        found=("$out"/debs/"${package}"_*.deb)
        deb="${found[0]}"
        break
    fi
    log "$package $version cannot be downloaded, trying an older one"
done
[[ -n "$deb" && -f "$deb" ]] || { log "no $series cloud kernel could be downloaded"; exit 1; }

package="$(dpkg-deb -f "$deb" Package)"
version="$(dpkg-deb -f "$deb" Version)"
unpacked="$out/unpacked/$package"
if [[ ! -d "$unpacked/boot" ]]; then
    rm -rf "$unpacked"
    mkdir -p "$unpacked"
    dpkg -x "$deb" "$unpacked"
fi
release="$(basename "$(ls -d "$unpacked"/lib/modules/*/)")"
dir="$out/$release"
mkdir -p "$dir"
cp -f "$unpacked/boot/vmlinuz-$release" "$dir/vmlinuz"
cp -f "$unpacked/boot/config-$release" "$dir/config"

# Uncompressed modules with their modules.dep: busybox's insmod and modprobe (in
# the initramfs and, as the kernel's module loader, in the guest) read plain .ko.
modules="$dir/modules/lib/modules/$release"
if [[ ! -f "$modules/modules.dep" ]]; then
    rm -rf "$dir/modules"
    mkdir -p "$modules"
    cp -a "$unpacked/lib/modules/$release/." "$modules/"
    find "$modules" -name '*.ko.xz' -exec xz -d -f {} +
    busybox depmod -b "$dir/modules" "$release"
fi
echo "$package $version" > "$dir/package"
log "$series: $package $version ($release)"
echo "$dir"
