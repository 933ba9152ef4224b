#!/usr/bin/env bash
# The whole test suite, as CI runs it (as root, on Debian 12):
#
#   sudo scripts/test.sh
#
# Installs what it needs (scripts/deps.sh), checks formatting and lints, then runs
# every test: unit tests, CNI conformance, and the privileged integration tests
# (real kernel, real CNI plugins, real Envoy). Privileged tests fail, never skip,
# when they cannot run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

step() { printf '\n== %s\n' "$*" >&2; }

step "dependencies"
scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

step "format (cargo fmt, clang-format)"
cargo fmt --all --check
clang-format --dry-run --Werror bpf/*.c bpf/*.h tests/tools/*.c tests/tools/*.h

step "lint (clippy -D warnings)"
cargo clippy --all-targets --locked -- -D warnings

step "supply chain (cargo deny check bans licenses sources, deny.toml)"
# Offline: the lock file and the registry's cached manifests only, no advisory
# database (a network fetch would make CI's result depend on the day). The build
# above downloaded only this platform's crates; deny reads every crate's manifest
# in the lock file (Windows ones included), so fetch them all first.
cargo fetch --locked --quiet
"${MESHLANE_TOOLS_DIR:-$REPO/target/tools}/cargo-deny" --offline --locked \
    check bans licenses sources --hide-inclusion-graph

step "python tests (image writer, test images, node-app, containerd import)"
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s scripts/lib -p 'test_*.py'
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tests/tools -p 'test_*.py'

step "tests"
# Each test builds its own node (netns, cgroup, bpffs) and runs real Envoys; two
# at a time keeps the 2-core CI machines from timing out under load.
cargo test --locked -- --test-threads "${MESHLANE_TEST_THREADS:-2}"

step "kernel check on Debian 12's 6.1 kernel under qemu (scripts/kernels.sh --ci)"
# Every program attached (sk_msg on its map: 6.1 has no sk_msg links) and replaced
# in place, Envoy both ways with SO_ORIGINAL_DST, the short path byte-exact,
# nothing left after DEL (tests/kernel_check.rs). The full matrix: scripts/kernels.sh.
kernel_check_start=$SECONDS
scripts/kernels.sh --ci --skip-deps 6.1
echo "kernel check on 6.1: $((SECONDS - kernel_check_start))s" >&2
