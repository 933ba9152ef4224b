#!/usr/bin/env python3
"""The CNI chain for scripts/demo.sh: what containerd and CRI-O do (through
libcni) when kubelet creates or removes a pod sandbox, and nothing more. The chain
itself runs in scripts/lib/cni_chain.py, which the benchmark uses too; this adds
the demo's state file (the runtime's cache) and its output.

  chain.py add --conflist F --cni-path DIR --node-netns P --state F \\
               --container-id ID --netns P --ifname eth0 --args 'K=V;...' \\
               --annotations JSON
  chain.py del --conflist F --cni-path DIR --node-netns P --state F
  chain.py ip  --state F          the pod's IPv4 address from the cached result

ADD prints one line per plugin, DEL one line in all; a failing plugin stops the
chain and its stdin, stdout (the CNI error object) and stderr are printed, exit
status 1. A chained plugin must return its prevResult unchanged: one that changes
it stops the ADD too.
"""

import argparse
import json
import os
import sys

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))
import cni_chain  # noqa: E402  (scripts/lib)


def fail(message):
    print(f"chain.py: {message}", file=sys.stderr)
    sys.exit(1)


def load_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        fail(f"cannot read {what} {path}: {err}")
        raise  # unreachable; keeps linters quiet


def save_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, path)


def chain_of(args):
    return cni_chain.Chain(load_json(args.conflist, "conflist"), args.cni_path, args.node_netns)


def describe_add(prev_result, result):
    """One line saying what this plugin contributed to the result."""
    if prev_result is None:
        addresses = ", ".join(cni_chain.ipv4_addresses(result)) or "no IPv4 address"
        gateways = {ip.get("gateway") for ip in result.get("ips", []) if ip.get("gateway")}
        via = f" via {', '.join(sorted(gateways))}" if gateways else ""
        return f"pod address {addresses}{via} (IPAM: host-local)"
    if result == prev_result:
        return "returned its prevResult unchanged (a chained plugin passes it on)"
    return "CHANGED the result it was given (a chained plugin must pass prevResult on)"


def add(args):
    if os.path.exists(args.state):
        fail(f"{args.state} exists: this pod was added already")
    chain = chain_of(args)
    state = {
        "runtime": cni_chain.runtime_conf(args.container_id, args.netns, args.ifname,
                                          args.args, json.loads(args.annotations)),
        "result": None,
    }
    # Saved before the first plugin runs: a runtime DELs a pod whose ADD failed
    # half-way too (then without a cached result).
    save_state(args.state, state)

    def report(entry, prev_result, run):
        print(f"{entry['type']:<9} ADD ok: {describe_add(prev_result, run.result)}")
        return prev_result is None or run.result == prev_result

    result, runs = chain.add(state["runtime"], each=report)
    if result is None:
        last = runs[-1]
        if not last.ok:
            print(last.describe())
        elif last.result is None:
            print(f"{last.plugin:<9} ADD FAILED (no result on stdout)")
        sys.exit(1)
    state["result"] = result
    save_state(args.state, state)


def delete(args):
    state = load_json(args.state, "pod state")
    # Without a cached result (a failed ADD) the plugins get no prevResult.
    runs = chain_of(args).delete(state["runtime"], state["result"])
    if not runs[-1].ok:
        print(runs[-1].describe())
        sys.exit(1)
    print(", ".join(f"{run.plugin} DEL ok" for run in runs))
    # What a runtime does after a successful DEL: forget the cached result.
    os.remove(args.state)


def show_ip(args):
    addresses = cni_chain.ipv4_addresses(load_json(args.state, "pod state")["result"])
    if not addresses:
        fail(f"no IPv4 address in the cached result in {args.state}")
    print(addresses[0].split("/")[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, run in (("add", add), ("del", delete)):
        p = commands.add_parser(name)
        p.add_argument("--conflist", required=True)
        p.add_argument("--cni-path", required=True)
        p.add_argument("--node-netns", required=True)
        p.add_argument("--state", required=True)
        if name == "add":
            p.add_argument("--container-id", required=True)
            p.add_argument("--netns", required=True)
            p.add_argument("--ifname", default="eth0")
            p.add_argument("--args", default="")
            p.add_argument("--annotations", default="{}",
                           help="the pod's annotations, a JSON object")
        p.set_defaults(run=run)
    p = commands.add_parser("ip")
    p.add_argument("--state", required=True)
    p.set_defaults(run=show_ip)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group; demo.sh reports it and cleans up.
        sys.exit(130)
