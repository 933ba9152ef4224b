#!/usr/bin/env python3
"""DNS stand-ins for meshlane's DNS capture tests (python3 standard library only).

  serve --host ADDR --port P --answer IP [--name NAME]
      A DNS server on UDP and TCP: every A question gets one A record with IP,
      AAAA questions get an empty answer. Prints READY once listening, then one
      JSON line per query: {"name", "qname", "transport", "peer"}.
  query --server ADDR[:PORT] --qname NAME --mode udp-connected|udp-sendto|tcp
      One A query; prints {"ok", "answer", "reply_from", "peer", "error"}:
      reply_from is the source recvfrom reported (unconnected UDP), peer what
      getpeername says (connected sockets).

Addresses print as "ip:port" or "[ip6]:port".
"""

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import threading

A, AAAA = 1, 28


def emit(obj):
    print(json.dumps(obj), flush=True)


def fmt(sockaddr):
    ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return f"[{ip}]:{sockaddr[1]}" if ip.version == 6 else f"{ip}:{sockaddr[1]}"


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def decode_question(packet):
    """(id, qname, qtype, end offset of the question)."""
    qid = struct.unpack("!H", packet[:2])[0]
    offset, labels = 12, []
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1:offset + 1 + length].decode())
        offset += 1 + length
    qtype = struct.unpack("!H", packet[offset + 1:offset + 3])[0]
    return qid, ".".join(labels), qtype, offset + 5


def answer(packet, address):
    qid, qname, qtype, end = decode_question(packet)
    question = packet[12:end]
    records = b""
    count = 0
    if qtype == A:
        records = b"\xc0\x0c" + struct.pack("!HHIH", A, 1, 60, 4) + socket.inet_aton(address)
        count = 1
    header = struct.pack("!HHHHHH", qid, 0x8180, 1, count, 0, 0)
    return header + question + records, qname


def serve(args):
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    dual_stack = args.host == "::"  # one server for IPv4 and IPv6
    udp = socket.socket(family, socket.SOCK_DGRAM)
    if dual_stack:
        udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    udp.bind((args.host, args.port))
    tcp = socket.create_server((args.host, args.port), family=family, backlog=64,
                               dualstack_ipv6=dual_stack)
    lock = threading.Lock()

    def log(qname, transport, peer):
        with lock:
            emit({"name": args.name, "qname": qname, "transport": transport, "peer": fmt(peer)})

    def udp_loop():
        while True:
            packet, peer = udp.recvfrom(4096)
            reply, qname = answer(packet, args.answer)
            udp.sendto(reply, peer)
            log(qname, "udp", peer)

    def tcp_conn(conn, peer):
        with conn:
            length = struct.unpack("!H", recv_exact(conn, 2))[0]
            reply, qname = answer(recv_exact(conn, length), args.answer)
            conn.sendall(struct.pack("!H", len(reply)) + reply)
            log(qname, "tcp", peer)

    threading.Thread(target=udp_loop, daemon=True).start()
    print("READY", flush=True)
    while True:
        conn, peer = tcp.accept()
        threading.Thread(target=tcp_conn, args=(conn, peer), daemon=True).start()


def recv_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed early")
        data += chunk
    return data


def parse_answer(reply):
    qid, _, _, end = decode_question(reply)
    count = struct.unpack("!H", reply[6:8])[0]
    if count == 0:
        return None
    rdata = reply[end + 12:end + 16]
    return socket.inet_ntoa(rdata)


def query(args):
    if args.server.startswith("["):  # [ip6]:port
        host, _, port = args.server[1:].partition("]:")
    elif args.server.count(":") == 1:  # ip4:port
        host, _, port = args.server.partition(":")
    else:  # a bare address
        host, port = args.server, "53"
    port = int(port or 53)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    packet = struct.pack("!HHHHHH", random.randint(1, 65535), 0x0100, 1, 0, 0, 0)
    packet += encode_name(args.qname) + struct.pack("!HH", A, 1)
    out = {"ok": False, "answer": None, "reply_from": None, "peer": None, "error": None}
    try:
        if args.mode == "tcp":
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(args.timeout)
            sock.connect((host, port))
            out["peer"] = fmt(sock.getpeername())
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            length = struct.unpack("!H", recv_exact(sock, 2))[0]
            reply = recv_exact(sock, length)
        else:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.settimeout(args.timeout)
            if args.mode == "udp-connected":
                sock.connect((host, port))
                out["peer"] = fmt(sock.getpeername())
                sock.send(packet)
            else:
                sock.sendto(packet, (host, port))
            reply, source = sock.recvfrom(4096)
            out["reply_from"] = fmt(source)
        out["answer"] = parse_answer(reply)
        out["ok"] = out["answer"] is not None
    except OSError as err:
        out["error"] = "timeout" if isinstance(err, socket.timeout) else str(err)
    emit(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--answer", required=True)
    p.add_argument("--name", default="dns")
    p.set_defaults(run=serve)
    p = commands.add_parser("query")
    p.add_argument("--server", required=True)
    p.add_argument("--qname", required=True)
    p.add_argument("--mode", choices=["udp-connected", "udp-sendto", "tcp"], required=True)
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(run=query)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
