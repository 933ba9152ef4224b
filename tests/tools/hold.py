#!/usr/bin/env python3
"""One TCP connection held open across an event, for tests/upgrade.rs.

  hold.py --to ADDR:PORT --bytes N --rounds R --go DIR
      Connects and prints {"connected": true, "local", "peer"}. Then, round by
      round, waits until the file DIR/go-<i> exists (round 0 starts at once),
      sends N fresh random bytes in random chunks while reading their echo, and
      prints {"round": i, "sent", "echoed", "echo_ok", "error"}. After the last
      round it half-closes, reads to EOF and exits. The peer must echo what it
      reads (stream.py serve --echo), so each round's echo is exactly its bytes.

Addresses are "ip:port" or "[ip6]:port".
"""

import argparse
import hashlib
import json
import os
import random
import socket
import sys
import threading
import time

CHUNK_MAX = 64 * 1024
GO_TIMEOUT_S = 120


def emit(obj):
    print(json.dumps(obj), flush=True)


def fmt(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_for(path):
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {GO_TIMEOUT_S} s")
        time.sleep(0.02)


def one_round(sock, size, rng):
    payload = os.urandom(size)
    echo = {"digest": hashlib.sha256(), "bytes": 0, "error": None}

    def read_echo():
        try:
            while echo["bytes"] < size:
                data = sock.recv(min(CHUNK_MAX, size - echo["bytes"]))
                if not data:
                    echo["error"] = "EOF before the whole echo"
                    return
                echo["digest"].update(data)
                echo["bytes"] += len(data)
        except OSError as err:
            echo["error"] = f"{type(err).__name__}: {err}"

    reader = threading.Thread(target=read_echo, daemon=True)
    reader.start()
    sent, error = 0, None
    try:
        view = memoryview(payload)
        while sent < size:
            chunk = min(rng.randint(1, CHUNK_MAX), size - sent)
            sock.sendall(view[sent:sent + chunk])
            sent += chunk
    except OSError as err:
        error = f"{type(err).__name__}: {err}"
    reader.join(90)
    if reader.is_alive():
        error = error or "echo reader hung"
    return {
        "sent": sent,
        "echoed": echo["bytes"],
        "echo_ok": echo["digest"].hexdigest() == hashlib.sha256(payload).hexdigest(),
        "error": error or echo["error"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", required=True)
    parser.add_argument("--bytes", type=int, default=1 << 20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--go", required=True)
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect((host, int(port)))
    emit({"connected": True, "local": fmt(sock.getsockname()), "peer": fmt(sock.getpeername())})
    rng = random.Random()
    for i in range(args.rounds):
        if i > 0:
            wait_for(os.path.join(args.go, f"go-{i}"))
        emit({"round": i, **one_round(sock, args.bytes, rng)})
    sock.shutdown(socket.SHUT_WR)
    rest = sock.recv(1)
    emit({"done": True, "eof": rest == b""})
    sock.close()


if __name__ == "__main__":
    sys.exit(main())
