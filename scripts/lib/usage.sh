# shellcheck shell=bash
# Sourced by scripts/bench.sh and scripts/demo.sh: a script's help is its header
# comment, so the two cannot drift apart.

# Prints the running script's header comment (from line 2 up to `set -euo`)
# without the leading "# ", and exits 0: the answer to --help.
usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[-1]}"
    exit 0
}
