#!/usr/bin/env python3
"""Socket probe for meshlane's integration tests (python3 standard library only).

The harness runs it inside a pod's network namespace and the hooked cgroup, as a
chosen user, and parses the single JSON line each command prints.

  serve --port P [--host ADDR] [--name NAME] [--original-dst] [--answer-after S]
      TCP server. For each connection: read one line, reply with one JSON line
      {"name", "peer", "local", "got"}. Prints READY once listening; runs until killed.
      --host :: (the default) accepts IPv4 and IPv6. --original-dst adds
      "original_dst" (SO_ORIGINAL_DST of the accepted socket, as a proxy reads it);
      --answer-after waits S seconds after reading the line before answering;
      --reuseport sets SO_REUSEPORT (several servers share the port, as Envoy's
      workers do).
  connect --to ADDR:PORT --send TEXT [--bind ADDR] [--family 4|6|mapped] [--timeout S]
          [--hold S]
      One connection; prints {"ok", "reply", "local", "peer", "error"}.
      mapped: an AF_INET6 socket with IPV6_V6ONLY off, to ::ffff:a.b.c.d.
      --hold keeps the connection open S seconds after the reply.
  istio-validation [--ipv6]
      Istio's istio-validation init container check: listen on 127.0.0.1:15001 and
      :15006, connect from 127.0.0.1 to 127.0.0.6:15002, accept on whichever listener
      gets it, read SO_ORIGINAL_DST; prints {"ok", "listener", "original_dst", "error"}.
      --listen-ports P,P and --to-port P change the ports: Kuma's kuma-validation
      listens on its inbound port only and connects to 127.0.0.6:<20000-29999>
      (docs/meshes.md).
  linkerd-network-validator --listen ADDR:PORT --connect ADDR:PORT
      Linkerd's linkerd-network-validator check: a server on --listen writes a
      random token to whoever connects; a client connects to --connect (an address
      nothing answers on) and must read that token back, i.e. the capture sent the
      connection to the listener; prints {"ok", "error"}.
  getsockopt-passthrough
      Unrelated getsockopt calls must behave normally inside the hooked cgroup:
      TCP_INFO (normal and with an oversized buffer), SO_RCVBUF, the legacy iptables
      IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES, and iptables-legacy-save as a subprocess.
  landing-serve --name NAME [--tcp P,P] [--udp P,P] [--original-dst]
      Servers on many ports at once, each on 0.0.0.0 and [::] (IPv6-only socket).
      TCP: read a line, answer {"name", "proto", "port", "local", "peer"} (plus
      "original_dst" with --original-dst). UDP: answer each datagram the same way
      (plus "got"), from the address it was sent to. Prints READY; runs until killed.
  landing-ops
      Reads a JSON list of operations on stdin, runs them one after the other, each
      in a forked child as its own user, and prints {"results": [...]}. An operation:
      {"proto": "tcp"|"udp", "udp": "connected"|"sendto", "to": ADDR:PORT,
       "family": "4"|"6"|"mapped", "bind": ADDR, "uid", "gid", "timeout"}.
      A result: {"ok", "error", "reply", "peer" (getpeername), "from" (UDP reply
      source)}; addresses keep their IPv4-mapped form.

Addresses are printed as "ip:port" or "[ip6]:port"; IPv4-mapped IPv6 addresses are
printed as plain IPv4 ("peer"), the raw form is in "peer_raw" / "local_raw".
"""

import argparse
import ctypes
import ctypes.util
import errno
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

SO_ORIGINAL_DST = 80  # SOL_IP and SOL_IPV6 (IP6T_SO_ORIGINAL_DST)
IPT_SO_GET_INFO = 64
IPT_SO_GET_ENTRIES = 65
IPT_TABLE_MAXNAMELEN = 32
# struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size
IPT_GETINFO = struct.Struct("=32sI5I5III")
# sizeof(struct ipt_get_entries): name[32], size, then padding to the 8-byte alignment
# of the entries that follow (the kernel insists on exactly header + size).
IPT_GET_ENTRIES_HEADER_SIZE = 40
TCP_INFO_LEN = 232  # what iproute2/ss ask for; the kernel returns min(len, its size)
LARGE_OPTLEN = 8192  # more than a page: the kernel hands BPF only the first page


def emit(obj):
    print(json.dumps(obj), flush=True)


def format_addr(sockaddr, unmap=True):
    host, port = sockaddr[0], sockaddr[1]
    ip = ipaddress.ip_address(host.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        # The dotted form, as the kernel and other tools print it.
        return f"{ip.ipv4_mapped}:{port}" if unmap else f"[::ffff:{ip.ipv4_mapped}]:{port}"
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def addr_fields(prefix, sockaddr):
    return {prefix: format_addr(sockaddr), prefix + "_raw": format_addr(sockaddr, unmap=False)}


def split_host_port(text):
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


# --- serve -------------------------------------------------------------------------


def listening_socket(host, port, reuse_port=False):
    if host in ("::", ""):
        try:
            return socket.create_server(("::", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True, backlog=128,
                                        reuse_port=reuse_port)
        except OSError:  # IPv6 disabled in this netns
            return socket.create_server(("0.0.0.0", port), backlog=128,
                                        reuse_port=reuse_port)
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128,
                                reuse_port=reuse_port)


def original_dst_of(conn):
    """SO_ORIGINAL_DST as Envoy asks it: by the accepted socket's family."""
    ipv6 = conn.family == socket.AF_INET6
    try:
        if ipv6:
            raw = conn.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
        else:
            raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        return parse_original_dst(raw, ipv6)[0]
    except OSError as err:
        return "error: " + describe_error(err)


def answer(conn, args):
    with conn:
        conn.settimeout(10 + args.answer_after)
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if args.answer_after:
                time.sleep(args.answer_after)
            reply = {"name": args.name, "got": data.decode(errors="replace").rstrip("\n")}
            if args.original_dst:
                reply["original_dst"] = original_dst_of(conn)
            reply.update(addr_fields("peer", conn.getpeername()))
            reply.update(addr_fields("local", conn.getsockname()))
            # Also on stdout: a client that closed at once never reads the reply.
            print("ANSWER " + json.dumps(reply), flush=True)
            conn.sendall((json.dumps(reply) + "\n").encode())
        except OSError as err:
            print(f"connection error: {err}", file=sys.stderr, flush=True)


def serve(args):
    server = listening_socket(args.host, args.port, args.reuseport)
    print("READY", flush=True)
    # A busy proxy: connections complete in the backlog before it accepts them.
    time.sleep(args.accept_after)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=answer, args=(conn, args), daemon=True).start()


# --- connect -----------------------------------------------------------------------


def client_socket(family, host):
    if family == "mapped":
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        return sock, f"::ffff:{ipaddress.ip_address(host)}"
    if family == "6" or (family is None and ipaddress.ip_address(host).version == 6):
        return socket.socket(socket.AF_INET6, socket.SOCK_STREAM), host
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM), host


def socket_address(sock, host, port):
    """(host, port), or for a scoped IPv6 address (fe80::1%eth0) the 4-tuple with
    the interface's index, which a link-local destination needs."""
    if sock.family == socket.AF_INET6 and "%" in host:
        return socket.getaddrinfo(host, port, socket.AF_INET6, socket.SOCK_STREAM,
                                  0, socket.AI_NUMERICHOST)[0][4]
    return host, port


def bind_address(text, family):
    """ADDR, IPv4:PORT or [IPv6]:PORT; an IPv4 address is mapped for --family mapped."""
    if text.startswith("[") or text.count(":") == 1:
        host, port = split_host_port(text)
    else:
        host, port = text, 0
    if family == "mapped" and ipaddress.ip_address(host).version == 4:
        host = f"::ffff:{host}"
    return host, port


def connect(args):
    host, port = split_host_port(args.to)
    out = {"ok": False, "reply": None, "local": None, "peer": None, "error": None}
    try:
        sock, target = client_socket(args.family, host)
        with sock:
            sock.settimeout(args.timeout)
            if args.bind:
                sock.bind(bind_address(args.bind, args.family))
            sock.connect(socket_address(sock, target, port))
            out.update(addr_fields("local", sock.getsockname()))
            out.update(addr_fields("peer", sock.getpeername()))
            sock.sendall((args.send + "\n").encode())
            if args.close_at_once:
                # Fire and forget: close() orphans the socket with its FIN queued.
                out["ok"] = True
                emit(out)
                return
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            text = data.decode(errors="replace").strip()
            try:
                out["reply"] = json.loads(text) if text else None
            except ValueError:
                out["reply"] = None
                out["error"] = f"reply is not JSON: {text!r}"
            out["ok"] = out["reply"] is not None
            if out["reply"] is None and out["error"] is None:
                out["error"] = "connection closed without a reply"
            if args.hold:
                time.sleep(args.hold)
    except OSError as err:
        out["error"] = describe_error(err)
    emit(out)


def describe_error(err):
    if isinstance(err, socket.timeout):
        return "timeout"
    if err.errno is not None:
        return f"{errno.errorcode.get(err.errno, err.errno)}: {err.strerror}"
    return str(err)


# --- istio-validation --------------------------------------------------------------


def parse_original_dst(raw, ipv6):
    if ipv6:  # struct sockaddr_in6
        port = struct.unpack("!H", raw[2:4])[0]
        return f"[{ipaddress.IPv6Address(raw[8:24])}]:{port}", port
    port = struct.unpack("!H", raw[2:4])[0]  # struct sockaddr_in
    return f"{ipaddress.IPv4Address(raw[4:8])}:{port}", port


class NotAccepted(Exception):
    """The client connected, but neither capture listener saw the connection."""


def istio_validation(args):
    listen_ip, server_ip = ("::1", "::6") if args.ipv6 else ("127.0.0.1", "127.0.0.6")
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET
    out = {"ok": False, "listener": None, "original_dst": None, "error": None}
    listeners = {}
    client = None
    try:
        for port in (int(p) for p in args.listen_ports.split(",")):
            listeners[port] = socket.create_server((listen_ip, port), family=family)
        client = socket.socket(family, socket.SOCK_STREAM)
        client.settimeout(args.timeout)
        client.bind((listen_ip, 0))
        client.connect((server_ip, args.to_port))
        ready, _, _ = select.select(list(listeners.values()), [], [], args.timeout)
        if not ready:
            raise NotAccepted(f"connected, but none of {args.listen_ports} got the connection")
        port = next(p for p, s in listeners.items() if s is ready[0])
        conn, _ = ready[0].accept()
        with conn:
            out["listener"] = port
            level = socket.IPPROTO_IPV6 if args.ipv6 else socket.SOL_IP
            raw = conn.getsockopt(level, SO_ORIGINAL_DST, 28 if args.ipv6 else 16)
            out["original_dst"], original_port = parse_original_dst(raw, args.ipv6)
            out["ok"] = original_port == args.to_port
    except OSError as err:
        out["error"] = describe_error(err)
    except NotAccepted as err:
        out["error"] = str(err)
    finally:
        for sock in listeners.values():
            sock.close()
        if client is not None:
            client.close()
    emit(out)


# --- linkerd-network-validator -----------------------------------------------------


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def linkerd_network_validator(args):
    out = {"ok": False, "error": None}
    listen_host, listen_port = parse_addr(args.listen)
    connect_host, connect_port = parse_addr(args.connect)
    token = os.urandom(32).hex().encode()
    family = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
    server = socket.create_server((listen_host, listen_port), family=family)

    def serve():
        try:
            conn, _ = server.accept()
            with conn:
                conn.sendall(token)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        family = socket.AF_INET6 if ":" in connect_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as client:
            client.settimeout(args.timeout)
            client.connect((connect_host, connect_port))
            got = b""
            while len(got) < len(token):
                chunk = client.recv(len(token) - len(got))
                if not chunk:
                    break
                got += chunk
            out["ok"] = got == token
            if not out["ok"]:
                out["error"] = f"read {got!r}, not the listener's token"
    except OSError as err:
        out["error"] = describe_error(err)
    finally:
        server.close()
    emit(out)


# --- getsockopt-passthrough --------------------------------------------------------


def libc():
    lib = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    lib.getsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    return lib


def raw_getsockopt(lib, fd, level, name, buf):
    """getsockopt with a caller-filled buffer (Python's own cannot pass input)."""
    length = ctypes.c_uint32(len(buf))
    rc = lib.getsockopt(fd, level, name, buf, ctypes.byref(length))
    return (None if rc == 0 else errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()),
            length.value)


def check_tcp_info():
    lib = libc()
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                info = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
                # Python caps buflen at 1024: go through libc for the oversized call.
                large = ctypes.create_string_buffer(LARGE_OPTLEN)
                err, large_len = raw_getsockopt(lib, client.fileno(), socket.IPPROTO_TCP,
                                                socket.TCP_INFO, large)
                rcvbuf = client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # tcpi_state is the first byte; 1 = TCP_ESTABLISHED.
    return {
        "tcp_info": {"ok": len(info) > 0 and info[0] == 1, "len": len(info), "state": info[0]},
        "tcp_info_large": {"ok": err is None and 0 < large_len <= LARGE_OPTLEN
                           and large.raw[0] == 1,
                           "error": err, "requested": LARGE_OPTLEN, "len": large_len},
        "so_rcvbuf": {"ok": rcvbuf > 0, "value": rcvbuf},
    }


def check_iptables_getsockopt():
    """What iptables-legacy does: GET_INFO for the table size, then GET_ENTRIES with a
    buffer of exactly that size (often larger than a page on real nodes)."""
    lib = libc()
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        info = ctypes.create_string_buffer(
            IPT_GETINFO.pack(b"filter", 0, *([0] * 10), 0, 0), IPT_GETINFO.size)
        err, length = raw_getsockopt(lib, sock.fileno(), socket.SOL_IP, IPT_SO_GET_INFO, info)
        fields = IPT_GETINFO.unpack(info.raw)
        size, num_entries = fields[-1], fields[-2]
        out["ipt_get_info"] = {"ok": err is None and length == IPT_GETINFO.size,
                               "error": err, "len": length,
                               "num_entries": num_entries, "size": size}
        if err is not None:
            return out
        total = IPT_GET_ENTRIES_HEADER_SIZE + size
        entries = ctypes.create_string_buffer(total)
        struct.pack_into("=32sI", entries, 0, b"filter", size)
        err, length = raw_getsockopt(lib, sock.fileno(), socket.SOL_IP, IPT_SO_GET_ENTRIES,
                                     entries)
        out["ipt_get_entries"] = {"ok": err is None and length == total,
                                  "error": err, "len": length, "requested": total}
    return out


def check_iptables_legacy_save():
    try:
        run = subprocess.run(["iptables-legacy-save"], capture_output=True, timeout=30)
        return {"ok": run.returncode == 0 and b"*filter" in run.stdout,
                "status": run.returncode, "bytes": len(run.stdout),
                "stderr": run.stderr.decode(errors="replace").strip()}
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"ok": False, "status": None, "bytes": 0, "stderr": str(err)}


def getsockopt_passthrough(_args):
    out = {"ok": False, "error": None}
    try:
        out.update(check_tcp_info())
        out.update(check_iptables_getsockopt())
        out["iptables_legacy_save"] = check_iptables_legacy_save()
        checks = [v for v in out.values() if isinstance(v, dict)]
        out["ok"] = all(check.get("ok") for check in checks)
    except OSError as err:
        out["error"] = describe_error(err)
    emit(out)


# --- landing-serve / landing-ops (the iptables parity test) ------------------------

IP_PKTINFO = 8  # not exported by Python's socket module
IN_PKTINFO = struct.Struct("=i4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
IN6_PKTINFO = struct.Struct("=16si")  # ipi6_addr, ipi6_ifindex
LANDING_LINE_LIMIT = 4096


def port_list(text):
    return [int(p) for p in text.split(",") if p.strip()] if text else []


def family_sockets(kind, port):
    """One socket per family on the wildcard address: IPv4 on 0.0.0.0, IPv6 on [::]
    with IPV6_V6ONLY (no IPv6 in the netns: IPv4 only)."""
    socks = []
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, kind)
        except OSError:
            continue
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            if family == socket.AF_INET6:
                continue  # IPv6 disabled or no ::1 yet
            raise
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        elif family == socket.AF_INET:
            sock.setsockopt(socket.SOL_IP, IP_PKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        socks.append(sock)
    return socks


def landing_tcp_answer(conn, port, args):
    with conn:
        conn.settimeout(5)
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < LANDING_LINE_LIMIT:
                chunk = conn.recv(LANDING_LINE_LIMIT)
                if not chunk:
                    break
                data += chunk
            reply = {"name": args.name, "proto": "tcp", "port": port,
                     "local": format_addr(conn.getsockname(), unmap=False),
                     "peer": format_addr(conn.getpeername(), unmap=False)}
            if args.original_dst:
                reply["original_dst"] = original_dst_of(conn)
            conn.sendall((json.dumps(reply) + "\n").encode())
        except OSError as err:
            print(f"connection error on {port}: {err}", file=sys.stderr, flush=True)


def landing_udp_answer(sock, port, args):
    """Answers from the address the datagram was sent to (IP_PKTINFO), so that a
    connected client accepts the reply."""
    try:
        data, ancdata, _flags, peer = sock.recvmsg(LANDING_LINE_LIMIT, 256)
    except OSError as err:
        print(f"udp error on {port}: {err}", file=sys.stderr, flush=True)
        return
    local_ip, cmsg = None, []
    for level, kind, payload in ancdata:
        if level == socket.SOL_IP and kind == IP_PKTINFO:
            _ifindex, _spec, addr = IN_PKTINFO.unpack(payload[:IN_PKTINFO.size])
            local_ip = socket.inet_ntop(socket.AF_INET, addr)
            cmsg = [(socket.SOL_IP, IP_PKTINFO, IN_PKTINFO.pack(0, addr, b"\0" * 4))]
        elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            addr, _ifindex = IN6_PKTINFO.unpack(payload[:IN6_PKTINFO.size])
            local_ip = socket.inet_ntop(socket.AF_INET6, addr)
            cmsg = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, IN6_PKTINFO.pack(addr, 0))]
    local = None if local_ip is None else format_addr((local_ip, port), unmap=False)
    reply = {"name": args.name, "proto": "udp", "port": port, "local": local,
             "peer": format_addr(peer, unmap=False),
             "got": data.decode(errors="replace").rstrip("\n")}
    try:
        sock.sendmsg([(json.dumps(reply) + "\n").encode()], cmsg, 0, peer)
    except OSError as err:
        print(f"udp reply error on {port}: {err}", file=sys.stderr, flush=True)


def landing_serve(args):
    import selectors
    selector = selectors.DefaultSelector()
    for port in port_list(args.tcp):
        for sock in family_sockets(socket.SOCK_STREAM, port):
            selector.register(sock, selectors.EVENT_READ, ("tcp", port))
    for port in port_list(args.udp):
        for sock in family_sockets(socket.SOCK_DGRAM, port):
            selector.register(sock, selectors.EVENT_READ, ("udp", port))
    print("READY", flush=True)
    while True:
        for key, _ in selector.select():
            proto, port = key.data
            if proto == "udp":
                landing_udp_answer(key.fileobj, port, args)
                continue
            try:
                conn, _ = key.fileobj.accept()
            except OSError:
                continue
            threading.Thread(target=landing_tcp_answer, args=(conn, port, args),
                             daemon=True).start()


def landing_socket(op, kind):
    host, port = split_host_port(op["to"])
    family = op.get("family")
    if family == "mapped":
        sock = socket.socket(socket.AF_INET6, kind)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        return sock, (f"::ffff:{ipaddress.ip_address(host)}", port)
    if ipaddress.ip_address(host).version == 6:
        sock = socket.socket(socket.AF_INET6, kind)
        return sock, socket_address(sock, host, port)
    return socket.socket(socket.AF_INET, kind), (host, port)


def landing_reply(data):
    text = data.decode(errors="replace").strip()
    try:
        return json.loads(text) if text else None
    except ValueError:
        return {"unparsed": text}


def landing_op(op):
    """One socket operation; returns what the caller saw."""
    out = {"ok": False, "error": None, "reply": None, "peer": None, "from": None}
    kind = socket.SOCK_STREAM if op["proto"] == "tcp" else socket.SOCK_DGRAM
    try:
        sock, target = landing_socket(op, kind)
        with sock:
            sock.settimeout(op.get("timeout", 2.0))
            if op.get("bind"):
                sock.bind(bind_address(op["bind"], op.get("family")))
            payload = (op.get("send", "probe") + "\n").encode()
            if kind == socket.SOCK_STREAM:
                sock.connect(target)
                out["peer"] = format_addr(sock.getpeername(), unmap=False)
                sock.sendall(payload)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(LANDING_LINE_LIMIT)
                    if not chunk:
                        break
                    data += chunk
            else:
                if op.get("udp") == "connected":
                    sock.connect(target)
                    out["peer"] = format_addr(sock.getpeername(), unmap=False)
                    sock.send(payload)
                else:
                    sock.sendto(payload, target)
                data, source = sock.recvfrom(LANDING_LINE_LIMIT)
                out["from"] = format_addr(source, unmap=False)
            out["reply"] = landing_reply(data)
            out["ok"] = out["reply"] is not None
            if not out["ok"]:
                out["error"] = "closed without a reply"
    except OSError as err:
        out["error"] = describe_error(err)
    return out


def landing_child(op, write_fd):
    """In a forked child: become the op's user, run it, write the result, exit."""
    code = 0
    try:
        os.setgroups([op["gid"]])
        os.setgid(op["gid"])
        os.setuid(op["uid"])
        result = landing_op(op)
    except BaseException as err:  # report anything, never fall back into the parent
        result = {"ok": False, "error": f"probe: {err!r}", "reply": None,
                  "peer": None, "from": None}
        code = 1
    try:
        os.write(write_fd, json.dumps(result).encode())
    finally:
        os._exit(code)


def landing_run(op):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        landing_child(op, write_fd)
    os.close(write_fd)
    deadline = time.monotonic() + op.get("timeout", 2.0) + 5
    data = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([pipe], [], [], max(left, 0))
            if not ready:
                os.kill(pid, 9)
                break
            chunk = pipe.read(65536)
            if not chunk:
                break
            data += chunk
    os.waitpid(pid, 0)
    try:
        return json.loads(data)
    except ValueError:
        return {"ok": False, "error": "probe: no result (hung or crashed)", "reply": None,
                "peer": None, "from": None}


def landing_ops(_args):
    ops = json.load(sys.stdin)
    emit({"results": [landing_run(op) for op in ops]})


# --- main --------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    # The commands that connect give up after --timeout seconds, 5 unless told.
    timeout = argparse.ArgumentParser(add_help=False)
    timeout.add_argument("--timeout", type=float, default=5.0)

    p = commands.add_parser("serve")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="::")
    p.add_argument("--name", default="probe")
    p.add_argument("--original-dst", action="store_true")
    p.add_argument("--reuseport", action="store_true")
    p.add_argument("--answer-after", type=float, default=0.0)
    p.add_argument("--accept-after", type=float, default=0.0)
    p.set_defaults(run=serve)

    p = commands.add_parser("connect", parents=[timeout])
    p.add_argument("--to", required=True)
    p.add_argument("--send", default="hello")
    p.add_argument("--bind")
    p.add_argument("--family", choices=["4", "6", "mapped"])
    p.add_argument("--hold", type=float, default=0.0)
    p.add_argument("--close-at-once", action="store_true")
    p.set_defaults(run=connect)

    p = commands.add_parser("istio-validation", parents=[timeout])
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--listen-ports", default="15001,15006")
    p.add_argument("--to-port", type=int, default=15002)
    p.set_defaults(run=istio_validation)

    p = commands.add_parser("linkerd-network-validator", parents=[timeout])
    p.add_argument("--listen", required=True)
    p.add_argument("--connect", required=True)
    p.set_defaults(run=linkerd_network_validator)

    p = commands.add_parser("getsockopt-passthrough")
    p.set_defaults(run=getsockopt_passthrough)

    p = commands.add_parser("landing-serve")
    p.add_argument("--name", required=True)
    p.add_argument("--tcp", default="")
    p.add_argument("--udp", default="")
    p.add_argument("--original-dst", action="store_true")
    p.set_defaults(run=landing_serve)

    p = commands.add_parser("landing-ops")
    p.set_defaults(run=landing_ops)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
