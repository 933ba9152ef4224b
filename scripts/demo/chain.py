#!/usr/bin/env python3
"""A tiny libcni-style chain runner for scripts/demo.sh (python3 standard library).

It does what containerd and CRI-O do (through libcni) when kubelet creates or
removes a pod sandbox, and nothing more:

- ADD runs the plugins of the conflist in order. Each one gets its conflist entry
  on stdin with the list's `name` and `cniVersion` injected and the previous
  plugin's result as `prevResult`; the last result is the pod's result, which the
  runtime caches (here: in the state file).
- DEL runs the plugins in reverse order, each with the cached result as
  `prevResult`.
- Every plugin is exec'd inside the node's network namespace with
  `nsenter --net=<node netns>`: the bridge plugin creates its bridge and veths in
  the netns it runs in. (`ip netns exec` is not used: it remounts /sys, which
  hides the cgroup2 mount that meshlane attaches to.)

  chain.py add --conflist F --cni-path DIR --node-netns P --state F \\
               --container-id ID --netns P --ifname eth0 --args 'K=V;...'
  chain.py del --conflist F --cni-path DIR --node-netns P --state F
  chain.py ip  --state F          the pod's IPv4 address from the cached result

ADD prints one line per plugin, DEL one line in all; a failing plugin stops the
chain and its stdin, stdout (the CNI error object) and stderr are printed, exit
status 1.
"""

import argparse
import json
import os
import subprocess
import sys

PLUGIN_TIMEOUT = 60
# The environment a runtime gives plugins: CNI_* plus a plain PATH (iptables and
# friends are looked up there). Nothing of the caller's environment leaks in.
PLUGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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


def plugin_stdin(conflist, entry, prev_result, capability_args):
    """libcni's buildOneConfig: the entry plus the list's name and version, and
    runtimeConfig holding the runtime's values for the capabilities it declares."""
    conf = dict(entry)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    declared = [name for name, on in entry.get("capabilities", {}).items() if on]
    runtime_config = {name: capability_args[name] for name in declared if name in capability_args}
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def run_plugin(args, command, state, entry, prev_result):
    plugin = entry["type"]
    binary = os.path.join(args.cni_path, plugin)
    env = {
        "PATH": PLUGIN_PATH,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": state["container_id"],
        "CNI_NETNS": state["netns"],
        "CNI_IFNAME": state["ifname"],
        "CNI_ARGS": state["args"],
        "CNI_PATH": args.cni_path,
    }
    # containerd and CRI-O hand the pod's annotations to plugins that declare the
    # io.kubernetes.cri.pod-annotations capability.
    capability_args = {"io.kubernetes.cri.pod-annotations": state.get("annotations", {})}
    stdin = json.dumps(plugin_stdin(args.conflist_json, entry, prev_result, capability_args))
    cmd = ["nsenter", f"--net={args.node_netns}", "--", binary]
    try:
        run = subprocess.run(cmd, input=stdin.encode(), env=env, cwd="/",
                             capture_output=True, timeout=PLUGIN_TIMEOUT, check=False)
        ok, stdout, stderr = run.returncode == 0, run.stdout.decode(), run.stderr.decode()
        outcome = f"exit status {run.returncode}"
    except subprocess.TimeoutExpired:
        ok, stdout, stderr = False, "", ""
        outcome = f"timed out after {PLUGIN_TIMEOUT}s"
    except OSError as err:
        ok, stdout, stderr = False, "", str(err)
        outcome = "could not start"
    result = None
    if stdout.strip():
        try:
            result = json.loads(stdout)
        except ValueError:
            ok = False
            outcome += ", stdout is not JSON"
    if not ok:
        print(f"{plugin:<9} {command} FAILED ({outcome})")
        print(f"  stdin:  {stdin}")
        print(f"  stdout: {stdout.strip() or '(empty)'}")
        print(f"  stderr: {stderr.strip() or '(empty)'}")
    return ok, result


def ipv4_addresses(result):
    return [ip["address"] for ip in (result or {}).get("ips", [])
            if "." in ip.get("address", "")]


def describe_add(prev_result, result):
    """One line saying what this plugin contributed to the result."""
    if prev_result is None:
        addresses = ", ".join(ipv4_addresses(result)) or "no IPv4 address"
        gateways = {ip.get("gateway") for ip in result.get("ips", []) if ip.get("gateway")}
        via = f" via {', '.join(sorted(gateways))}" if gateways else ""
        return f"pod address {addresses}{via} (IPAM: host-local)"
    if result == prev_result:
        return "returned its prevResult unchanged (a chained plugin passes it on)"
    return "CHANGED the result it was given (a chained plugin must pass prevResult on)"


def add(args):
    if os.path.exists(args.state):
        fail(f"{args.state} exists: this pod was added already")
    state = {
        "container_id": args.container_id,
        "netns": args.netns,
        "ifname": args.ifname,
        "args": args.args,
        "annotations": json.loads(args.annotations),
        "result": None,
    }
    # Saved before the first plugin runs: a runtime DELs a pod whose ADD failed
    # half-way too (then without a cached result).
    save_state(args.state, state)
    prev = None
    for entry in args.conflist_json["plugins"]:
        ok, result = run_plugin(args, "ADD", state, entry, prev)
        if not ok:
            sys.exit(1)
        if result is None:
            print(f"{entry['type']:<9} ADD FAILED (no result on stdout)")
            sys.exit(1)
        print(f"{entry['type']:<9} ADD ok: {describe_add(prev, result)}")
        if prev is not None and result != prev:
            sys.exit(1)
        prev = result
    state["result"] = prev
    save_state(args.state, state)


def delete(args):
    state = load_json(args.state, "pod state")
    done = []
    for entry in reversed(args.conflist_json["plugins"]):
        # Without a cached result (a failed ADD) the plugins get no prevResult.
        ok, _ = run_plugin(args, "DEL", state, entry, state["result"])
        if not ok:
            sys.exit(1)
        done.append(f"{entry['type']} DEL ok")
    print(", ".join(done))
    # What a runtime does after a successful DEL: forget the cached result.
    os.remove(args.state)


def show_ip(args):
    addresses = ipv4_addresses(load_json(args.state, "pod state")["result"])
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
    if hasattr(args, "conflist"):
        args.conflist_json = load_json(args.conflist, "conflist")
    args.run(args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group; demo.sh reports it and cleans up.
        sys.exit(130)
