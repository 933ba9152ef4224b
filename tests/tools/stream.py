#!/usr/bin/env python3
"""Byte-exact streams for the short-path tests (tests/shortpath.rs).

  serve --port P [--host H] [--read recv|small|splice] [--echo] [--echo-after-eof]
        [--start-after-ms MS] [--prefix-of-seed S --prefix-bytes N]
      One thread per connection: waits MS before its first read (a slow reader: the
      sender meets backpressure), then reads to EOF with recv (random sizes up to 64 KiB),
      small (random sizes up to 100 bytes: many partial reads) or splice (socket ->
      pipe -> memory, as HAProxy or Go's io.Copy do). With --echo it writes back
      what it reads as it reads it; with --echo-after-eof it writes it back after
      the peer's FIN (the peer half-closed and still reads). With --prefix-of-seed it
      also reports whether what it got is a prefix of `send --seed S`'s N bytes (a
      connection that ended early). Prints READY, then one JSON line per connection:
      {"bytes", "sha256", "peer", "local", "error", "prefix_ok"}.

  send --to ADDR:PORT [--bytes N] [--connections K] [--chunk random|tiny|N]
       [--write sendall|sendfile] [--expect-echo] [--rst] [--bind ADDR:PORT]
       [--pause-ms MS] [--seed S]
      K connections at once, each sends N random bytes in chunks (random: 1 B to
      256 KiB; tiny: 1-32 B, back to back; with --seed, connection i sends the
      bytes of random.Random(S + i), else os.urandom), then shuts its write side down
      (half-close) and, with --expect-echo, reads the echo to EOF and compares
      SHA-256. --rst closes with SO_LINGER 0 right after sending (an RST). Prints one
      JSON line: {"results": [{"sent", "sent_sha256", "echo_bytes", "echo_sha256",
      "echo_ok", "error", "longest_stall_s", "tcp": {TCP_INFO counters of the client
      socket}}]}. longest_stall_s is the longest time, from connect to the end, in
      which the connection moved no byte either way (a stalled transfer).

Addresses are "ip:port" or "[ip6]:port".
"""

import argparse
import hashlib
import json
import os
import random
import select
import socket
import struct
import sys
import tempfile
import threading
import time

CHUNK_MAX = 256 * 1024
READ_MAX = 64 * 1024
# struct tcp_info (include/uapi/linux/tcp.h): offsets of the counters we report.
TCP_INFO_LEN = 232
TCP_INFO_FIELDS = {
    "bytes_acked": ("Q", 120),
    "bytes_received": ("Q", 128),
    "segs_out": ("I", 136),
    "segs_in": ("I", 140),
    "data_segs_in": ("I", 152),
    "data_segs_out": ("I", 156),
    "bytes_sent": ("Q", 200),
}


def split_host_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def fmt(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tcp_info(sock):
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
    return {name: struct.unpack_from("=" + kind, raw, offset)[0]
            for name, (kind, offset) in TCP_INFO_FIELDS.items() if offset + 8 <= len(raw)}


def read_chunks(conn, how, rng):
    """Yields what the peer sent, chunk by chunk, until EOF."""
    if how == "splice":
        r, w = os.pipe()
        try:
            while True:
                n = os.splice(conn.fileno(), w, READ_MAX)
                if n == 0:
                    return
                while n:
                    data = os.read(r, n)
                    n -= len(data)
                    yield data
        finally:
            os.close(r)
            os.close(w)
    limit = 100 if how == "small" else READ_MAX
    while True:
        data = conn.recv(rng.randint(1, limit))
        if not data:
            return
        yield data


def seeded_payload(seed, size):
    return random.Random(seed).randbytes(size)


def serve_one(conn, args, lock):
    rng = random.Random()
    digest, total, error, kept = hashlib.sha256(), 0, None, []
    expected = (seeded_payload(args.prefix_of_seed, args.prefix_bytes)
                if args.prefix_of_seed is not None else None)
    prefix_ok = None if expected is None else True
    peer = local = None
    try:
        peer, local = fmt(conn.getpeername()), fmt(conn.getsockname())
    except OSError:
        pass  # reset before we looked: what it queued may still be readable
    try:
        if args.start_after_ms:
            time.sleep(args.start_after_ms / 1000)
        for data in read_chunks(conn, args.read, rng):
            if expected is not None:
                prefix_ok = prefix_ok and expected[total:total + len(data)] == data
            digest.update(data)
            total += len(data)
            if args.echo:
                conn.sendall(data)
            elif args.echo_after_eof:
                kept.append(data)
        for data in kept:
            conn.sendall(data)
    except OSError as err:
        error = f"{type(err).__name__}: {err}"
    finally:
        conn.close()
    with lock:
        print(json.dumps({"bytes": total, "sha256": digest.hexdigest(), "peer": peer,
                          "local": local, "error": error, "prefix_ok": prefix_ok}), flush=True)


def serve(args):
    sock = socket.socket(family_of(args.host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((args.host, args.port))
    sock.listen(512)
    lock = threading.Lock()
    print("READY", flush=True)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve_one, args=(conn, args, lock), daemon=True).start()


def chunk_sizes(total, how, rng):
    sent = 0
    while sent < total:
        if how == "random":
            size = rng.randint(1, CHUNK_MAX)
        elif how == "tiny":
            size = rng.randint(1, 32)
        else:
            size = int(how)
        size = min(size, total - sent)
        yield sent, size
        sent += size


class Progress:
    """The longest time a connection went without moving a byte either way."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = time.monotonic()
        self.longest = 0.0

    def tick(self):
        with self.lock:
            now = time.monotonic()
            self.longest = max(self.longest, now - self.last)
            self.last = now

    def restart(self):
        """After a pause of our own, which is no stall."""
        with self.lock:
            self.last = time.monotonic()


def send_one(index, args, results):
    rng = random.Random(index)
    payload = (seeded_payload(args.seed + index, args.bytes) if args.seed is not None
               else os.urandom(args.bytes))
    out = {"sent": 0, "sent_sha256": hashlib.sha256(payload).hexdigest(), "echo_bytes": 0,
           "echo_sha256": None, "echo_ok": None, "error": None, "longest_stall_s": None,
           "tcp": None}
    progress = Progress()
    host, port = split_host_port(args.to)
    echo = {"digest": hashlib.sha256(), "bytes": 0, "error": None}
    sock = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        if args.bind:
            sock.bind(split_host_port(args.bind))
        sock.settimeout(60)
        sock.connect((host, port))
        progress.tick()  # the clock starts at connect

        def read_echo():
            try:
                while True:
                    data = sock.recv(READ_MAX)
                    if not data:
                        return
                    progress.tick()
                    echo["digest"].update(data)
                    echo["bytes"] += len(data)
            except OSError as err:
                echo["error"] = f"{type(err).__name__}: {err}"

        reader = threading.Thread(target=read_echo, daemon=True)
        if args.expect_echo:
            reader.start()
        if args.write == "sendfile":
            with tempfile.TemporaryFile() as spool:
                spool.write(payload)
                spool.flush()
                for offset, size in chunk_sizes(args.bytes, args.chunk, rng):
                    done = 0
                    while done < size:
                        try:
                            done += os.sendfile(sock.fileno(), spool.fileno(), offset + done,
                                                size - done)
                        except BlockingIOError:
                            # The socket has a timeout, so it is non-blocking underneath.
                            select.select([], [sock], [], 60)
                    progress.tick()
                    out["sent"] = offset + size
        else:
            view = memoryview(payload)
            for offset, size in chunk_sizes(args.bytes, args.chunk, rng):
                sock.sendall(view[offset:offset + size])
                progress.tick()
                out["sent"] = offset + size
                if args.pause_ms:
                    time.sleep(args.pause_ms / 1000)
                    progress.restart()
        if args.rst:
            out["tcp"] = tcp_info(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            results[index] = out
            return
        sock.shutdown(socket.SHUT_WR)
        if args.expect_echo:
            reader.join(90)
            out["echo_bytes"] = echo["bytes"]
            out["echo_sha256"] = echo["digest"].hexdigest()
            out["echo_ok"] = out["echo_sha256"] == out["sent_sha256"]
            out["error"] = echo["error"] or ("echo reader hung" if reader.is_alive() else None)
        progress.tick()
        out["longest_stall_s"] = round(progress.longest, 3)
        out["tcp"] = tcp_info(sock)
    except OSError as err:
        out["error"] = f"{type(err).__name__}: {err}"
    finally:
        sock.close()
    results[index] = out


def send(args):
    results = [None] * args.connections
    threads = [threading.Thread(target=send_one, args=(i, args, results))
               for i in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"results": results}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="::")
    p.add_argument("--read", choices=["recv", "small", "splice"], default="recv")
    p.add_argument("--echo", action="store_true")
    p.add_argument("--echo-after-eof", action="store_true")
    p.add_argument("--start-after-ms", type=float, default=0)
    p.add_argument("--prefix-of-seed", type=int)
    p.add_argument("--prefix-bytes", type=int, default=0)
    p.set_defaults(run=serve)
    p = commands.add_parser("send")
    p.add_argument("--to", required=True)
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--chunk", default="random")
    p.add_argument("--write", choices=["sendall", "sendfile"], default="sendall")
    p.add_argument("--expect-echo", action="store_true")
    p.add_argument("--rst", action="store_true")
    p.add_argument("--bind")
    p.add_argument("--pause-ms", type=float, default=0)
    p.add_argument("--seed", type=int)
    p.set_defaults(run=send)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
