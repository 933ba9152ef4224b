#!/usr/bin/env bash
# Builds the statically linked meshlane the install image ships, and prints its path.
#
#   install/build-static.sh            -> <target>/static/x86_64-unknown-linux-musl/release/meshlane
#
# musl's static CRT plus libbpf-sys's `static` features (libbpf built from the
# vendored source; libelf and zlib built for musl by install/build-musl-libs.sh):
# the result needs no shared library on the node or in the image (distroless
# static / scratch). musl rather than glibc because the binary is also the CNI
# plugin, started once per pod: glibc's static start probes the CPU with 43
# `cpuid` instructions, each a trap to the hypervisor on a VM, and a CNI
# `VERSION` took 0.56 ms with glibc against 0.34 ms with musl
# (bench/analysis.md, "Pod setup at 1,000 pods"). `--target` is explicit so
# that the target's settings reach only the final binary, never build scripts
# or proc-macros.
#
# MESHLANE_STATIC_TARGET=x86_64-unknown-linux-gnu builds the glibc one instead
# (glibc's static CRT, Debian's libelf.a and libz.a), for comparisons.
#
# The image is not position-independent (a fixed load address), for the same
# reason: a static PIE relocates itself at every start (about 5,800 relocations
# on pages that are then copied on write), which costs the CNI ADD 0.03–0.08 ms
# of CPU and 27 page faults. The trade-off, address randomisation of the image
# given up (stack, heap and mappings stay randomised), is argued in
# install/README.md. MESHLANE_PIE=1 builds a static PIE instead.
#
# The build has its own target dir (<CARGO_TARGET_DIR or target>/static): it is
# reused from run to run, and it never fights a debug build for the same lock.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${MESHLANE_STATIC_TARGET:-x86_64-unknown-linux-musl}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}/static"
# libbpf-sys reads the library path of the target it builds for, and the host's
# copy (libbpf-cargo's, for the build script, with the same `static` features)
# links the system's static libraries.
TARGET_VAR="$(echo "$TARGET" | tr -- '-' '_')"
HOST_VAR="$(rustc -vV | sed -n 's/^host: //p' | tr -- '-' '_')"
MULTIARCH="$(cc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
for lib in libelf.a libz.a; do
    if ! [[ -e "/usr/lib/$MULTIARCH/$lib" || -e "/usr/lib/$lib" ]]; then
        echo "install/build-static.sh: $lib is missing (apt-get install libelf-dev zlib1g-dev)" >&2
        exit 1
    fi
done
export "LIBBPF_SYS_LIBRARY_PATH_$HOST_VAR=/usr/lib/$MULTIARCH:/usr/lib"

case "$TARGET" in
*-musl)
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        echo "install/build-static.sh: the Rust target $TARGET is missing (rustup target add $TARGET)" >&2
        exit 1
    fi
    LIBS="$("$REPO/install/build-musl-libs.sh" "$TARGET_DIR/musl-libs")"
    export "LIBBPF_SYS_LIBRARY_PATH_$TARGET_VAR=$LIBS/lib"
    # cc (which builds libbpf) reads the target's CFLAGS: libelf's and zlib's
    # headers, and the kernel's after musl's own.
    export "CFLAGS_$TARGET_VAR=-I$LIBS/include -idirafter $LIBS/kernel-headers"
    export "CC_$TARGET_VAR=${CC_MUSL:-musl-gcc}"
    ;;
*)
    # The glibc build: Debian's static archives (above; Debian keeps them in the
    # multiarch dir, which libbpf-sys does not search on its own).
    export "LIBBPF_SYS_LIBRARY_PATH_$TARGET_VAR=/usr/lib/$MULTIARCH:/usr/lib"
    export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
    ;;
esac

if [[ "${MESHLANE_PIE:-0}" != 1 ]]; then
    export RUSTFLAGS="${RUSTFLAGS:-} -C relocation-model=static"
fi

cd "$REPO"
"${CARGO:-cargo}" build --release --locked --features static \
    --target "$TARGET" --target-dir "$TARGET_DIR" --bin meshlane >&2

echo "$TARGET_DIR/$TARGET/release/meshlane"
