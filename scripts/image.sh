#!/usr/bin/env bash
# Builds the install DaemonSet's image as an OCI archive, with no Docker and no
# registry: the static meshlane from install/build-static.sh, laid out as
# install/Dockerfile describes (/meshlane, ENTRYPOINT ["/meshlane"], CMD
# ["install"], root), written by scripts/lib/install_image.py.
#
#   scripts/image.sh [--out FILE] [--name NAME] [--tag TAG] [--binary PATH] [--json]
#
#   --out     default target/images/meshlane-<tag>.oci.tar
#   --name    default ghcr.io/meshlane/meshlane
#   --tag     default the version in Cargo.toml
#   --binary  a static meshlane already built (skips install/build-static.sh)
#   --json    print one JSON line {"archive", "ref", "digest", ...} instead
#
# Prints the archive's path and the image reference, one per line. The same inputs
# give the same archive, byte for byte; an unchanged archive is kept. Needs the
# build dependencies (sudo scripts/deps.sh installs them), not root.
#
# Then, e.g.:
#   skopeo copy oci-archive:target/images/meshlane-0.1.0.oci.tar docker://registry.example/meshlane:0.1.0
#   ctr -n k8s.io images import target/images/meshlane-0.1.0.oci.tar
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

out="" name="" tag="" binary="" json=0
while (($#)); do
    case "$1" in
        --out | --name | --tag | --binary)
            (($# >= 2)) || { echo "scripts/image.sh: $1 needs a value" >&2; usage; }
            declare "${1#--}=$2"
            shift 2
            ;;
        --json) json=1; shift ;;
        -h | --help) usage 0 ;;
        *) echo "scripts/image.sh: unknown argument $1" >&2; usage ;;
    esac
done

if [[ -z "$binary" ]]; then
    # As scripts/test.sh: rustup's cargo is not on root's PATH under sudo.
    export PATH="$HOME/.cargo/bin:$PATH"
    binary="$("$REPO/install/build-static.sh")"
fi

args=(--binary "$binary")
[[ -n "$out" ]] && args+=(--out "$out")
[[ -n "$name" ]] && args+=(--name "$name")
[[ -n "$tag" ]] && args+=(--tag "$tag")
result="$(python3 "$REPO/scripts/lib/install_image.py" "${args[@]}")"

if ((json)); then
    echo "$result"
else
    python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print(r["archive"]); print(r["ref"])' "$result"
fi
