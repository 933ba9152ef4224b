#!/bin/sh
# The fence of a containerd test node. Runs as the first process of a new mount
# and network namespace (`unshare --mount --net --propagation private`) and makes
# every host path the node's containerd, its CNI plugins and its containers
# touch belong to the test:
#
#   /etc, /opt, /var/lib, /var/log  overlays on the host's (writes land in DIR/overlay)
#   /run                            an empty tmpfs (containerd's /run/netns/cni-*)
#   /sys/fs/bpf                     a fresh bpffs
#   every cgroup mount              the test's own child cgroup of that hierarchy
#                                   (cgroup2, and each v1 one on hybrid hosts)
#
# so that the DaemonSet's host paths and the plugin's defaults are used
# unchanged and nothing reaches the machine's own dirs or root cgroup. The
# namespace is private: nothing mounted here propagates to the machine, and all
# of it goes away with the last process inside. Then it prints READY and holds
# the namespaces until it is killed.
#
#   cri_node_fence.sh DIR MOUNT_POINT=CHILD_CGROUP...
set -eu

dir="$1"
shift

ip link set lo up

for path in etc opt var/lib var/log; do
    name="$(echo "$path" | tr / _)"
    mkdir -p "$dir/overlay/$name/upper" "$dir/overlay/$name/work"
    mount -t overlay "overlay-$name" \
        -o "lowerdir=/$path,upperdir=$dir/overlay/$name/upper,workdir=$dir/overlay/$name/work" \
        "/$path"
done
# A node's CNI dirs (inside the overlays: the machine's own stay untouched).
mkdir -p /etc/cni/net.d /opt/cni/bin
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t bpf bpffs /sys/fs/bpf
# Shared within the fence: the DaemonSet mounts it with Bidirectional
# propagation, which containerd allows only on a shared mount.
mount --make-shared /sys/fs/bpf

# Deepest mount points last: on a pure cgroup2 host the one pair binds a child
# over /sys/fs/cgroup itself; on a hybrid host each hierarchy has its own.
for pair in "$@"; do
    mount --bind "${pair#*=}" "${pair%%=*}"
done

echo READY
exec sleep infinity
