#!/usr/bin/env bash
# Builds the C libraries libbpf needs, libelf and zlib, for musl, and prints the
# prefix that holds them (lib/libelf.a, lib/libz.a, include/).
#
#   install/build-musl-libs.sh PREFIX
#
# Debian ships libelf.a and libz.a built against glibc only; the static binary
# links musl (install/build-static.sh says why). The sources are the ones
# libbpf-sys vendors (its crate in cargo's registry, the version Cargo.lock
# pins): they are copied under PREFIX and built there, so the registry's copy is
# never written to. elfutils' configure insists on argp, fts and obstack, which
# only its tools use (musl has none of them): they are declared present, and only
# lib/libelf is built. A PREFIX that holds both libraries of this libbpf-sys
# version is reused as it is.
set -euo pipefail

PREFIX="$1"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CC_MUSL="${CC_MUSL:-musl-gcc}"

die() {
    echo "install/build-musl-libs.sh: $*" >&2
    exit 1
}

for tool in "$CC_MUSL" autoreconf autopoint flex bison gawk make; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is missing (scripts/deps.sh installs it: musl-tools, autoconf, automake, autopoint, flex, bison, gawk)"
done

# libbpf-sys's source directory, as Cargo.lock pins it.
manifest="$(cd "$REPO" && "${CARGO:-cargo}" metadata --locked --format-version 1 2>/dev/null |
    grep -o '"manifest_path":"[^"]*/libbpf-sys-[^"/]*/Cargo.toml"' | head -n 1 | cut -d'"' -f4)"
[[ -n "$manifest" ]] || die "cargo metadata names no libbpf-sys (run cargo fetch --locked)"
SRC="$(dirname "$manifest")"
VERSION="$(basename "$SRC")"
[[ -d "$SRC/elfutils/libelf" && -f "$SRC/zlib/configure" ]] ||
    die "$SRC lacks the vendored elfutils or zlib"

if [[ -f "$PREFIX/$VERSION" && -f "$PREFIX/lib/libelf.a" && -f "$PREFIX/lib/libz.a" ]]; then
    echo "$PREFIX"
    exit 0
fi
rm -rf "$PREFIX"
mkdir -p "$PREFIX/src" "$PREFIX/lib" "$PREFIX/include"
cp -r "$SRC/zlib" "$SRC/elfutils" "$PREFIX/src/"
LOG="$PREFIX/build.log"
echo "install/build-musl-libs.sh: building zlib and libelf for musl from $SRC (log: $LOG)" >&2

(
    cd "$PREFIX/src/zlib"
    CC="$CC_MUSL" CFLAGS="-O2 -fPIC" ./configure --static --prefix="$PREFIX"
    make -j"$(nproc)" install
) >>"$LOG" 2>&1 || die "zlib failed (see $LOG)"

(
    cd "$PREFIX/src/elfutils"
    autoreconf --install --force
    ac_cv_search_argp_parse='none required' \
        ac_cv_search_fts_close='none required' \
        ac_cv_search__obstack_free='none required' \
        CC="$CC_MUSL" CFLAGS="-O2 -fPIC -I$PREFIX/include" LDFLAGS="-L$PREFIX/lib" \
        ./configure --enable-maintainer-mode --host=x86_64-linux-musl \
        --disable-debuginfod --disable-libdebuginfod --disable-demangler --disable-nls \
        --without-zstd --without-bzlib --without-lzma
    make -C libelf -j"$(nproc)" libelf.a
    cp libelf/libelf.a "$PREFIX/lib/"
    cp libelf/libelf.h libelf/gelf.h libelf/nlist.h "$PREFIX/include/"
) >>"$LOG" 2>&1 || die "libelf failed (see $LOG)"

# libbpf's sources include the kernel's UAPI headers, which musl's include
# directory lacks: the host's, which do not depend on the C library.
mkdir -p "$PREFIX/kernel-headers"
MULTIARCH="$(cc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
ln -sfn /usr/include/linux "$PREFIX/kernel-headers/linux"
ln -sfn "/usr/include/$MULTIARCH/asm" "$PREFIX/kernel-headers/asm"
ln -sfn /usr/include/asm-generic "$PREFIX/kernel-headers/asm-generic"

rm -rf "$PREFIX/src"
touch "$PREFIX/$VERSION"
echo "$PREFIX"
