#!/usr/bin/env bash
# Builds the statically linked meshlane the install image ships, and prints its path.
#
#   install/build-static.sh            -> <target>/static/x86_64-unknown-linux-gnu/release/meshlane
#
# glibc's static CRT (-C target-feature=+crt-static) plus libbpf-sys's `static`
# features (libbpf built from the vendored source, Debian's libelf.a and libz.a):
# the result needs no shared library on the node or in the image (distroless
# static / scratch). `--target` is explicit so that RUSTFLAGS reach only the
# final binary, never build scripts or proc-macros (those cannot be static).
#
# The build has its own target dir (<CARGO_TARGET_DIR or target>/static): it is
# reused from run to run, and it never fights a debug build for the same lock.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${MESHLANE_STATIC_TARGET:-x86_64-unknown-linux-gnu}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}/static"

# Debian keeps the static archives in the multiarch dir, which libbpf-sys does not
# search on its own (it only names the libraries).
MULTIARCH="$(cc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
LIBDIRS="/usr/lib/$MULTIARCH:/usr/lib"
for lib in libelf.a libz.a; do
    if ! [[ -e "/usr/lib/$MULTIARCH/$lib" || -e "/usr/lib/$lib" ]]; then
        echo "install/build-static.sh: $lib is missing (apt-get install libelf-dev zlib1g-dev)" >&2
        exit 1
    fi
done
export LIBBPF_SYS_LIBRARY_PATH="${LIBBPF_SYS_LIBRARY_PATH:-$LIBDIRS}"

cd "$REPO"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    "${CARGO:-cargo}" build --release --locked --features static \
    --target "$TARGET" --target-dir "$TARGET_DIR" --bin meshlane >&2

echo "$TARGET_DIR/$TARGET/release/meshlane"
