#!/usr/bin/env python3
"""Bytes on the wire per chat frame with and without permessage-deflate,
against the real stack: a sender on /chat sends messages of a chosen body
size to a receiver on /chat (no compression) and to one on /chat-z
(compression agreed), and the frames each receiver reads are counted as
they came (header and payload), with the uncompressed JSON beside them.

    python3 t/bench/deflate_wire.py [--body 100] [--messages 50] [DIR]

DIR is a stack started by t/stack.sh (DIR/stack.env); without it the
script starts a stack of its own on spare ports and stops it at the end.
`make bench-deflate-wire` runs it. A measurement, not a test: it prints
figures and fails only when something does not arrive.
"""

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
T = os.path.dirname(HERE)
sys.path.insert(0, T)

import tokens  # noqa: E402
import wsclient  # noqa: E402
from stackenv import read_env_file  # noqa: E402

WORDS = ("hello the meeting is at noon see you there thanks ok tomorrow "
         "lunch great sure sounds good let me know when you are free").split()


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_stack():
    d = tempfile.mkdtemp(prefix="ngx_chat_wire.", dir="/tmp")
    os.chmod(d, 0o755)
    p = free_ports(6)
    env = dict(os.environ, CHAT_PORT=str(p[0]), CHAT_TLS_PORT=str(p[1]),
               REDIS_PORT=str(p[2]), PG_PORT=str(p[3]), KAFKA_PORT=str(p[4]),
               KAFKA_CTRL_PORT=str(p[5]), CHAT_WORKERS="1")
    r = subprocess.run(["bash", os.path.join(T, "stack.sh"), "start", d],
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300)
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace")[-3000:])
        stop_stack(d)
        raise SystemExit("deflate_wire: the stack did not start")
    return d


def stop_stack(d):
    subprocess.run(["bash", os.path.join(T, "stack.sh"), "stop", d],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=180)
    shutil.rmtree(d, ignore_errors=True)


def body_of(rng, n):
    out = ""
    while len(out) < n:
        out += rng.choice(WORDS) + " "
    return out[:n]


def frames_of(c, want, what, timeout=20.0):
    """Reads until `want` frames pass `what`; their (wire, json) sizes."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit("deflate_wire: %d of %d frames came"
                             % (len(got), want))
        op, data = c.recv_frame(left)
        if op != wsclient.OP_TEXT:
            continue
        f = json.loads(data)
        if what(f):
            got.append((c.last_wire_len, len(data), c.last_rsv))
    return got


def run(env, body, n):
    url = env["CHAT_URL"]
    secret = env["CHAT_JWT_SECRET"]
    chatctl = env.get("CHATCTL_BIN")
    tag = "%06x" % random.randrange(1 << 24)
    sender, plain, comp = ("wire_s_" + tag, "wire_p_" + tag,
                           "wire_z_" + tag)

    def tok(u):
        return tokens.make_token(secret, u, chatctl=chatctl)

    cs = wsclient.connect(url, token=tok(sender))
    cp = wsclient.connect(url, token=tok(plain))
    cz = wsclient.connect(url + "-z", token=tok(comp), headers={
        "Sec-WebSocket-Extensions": "permessage-deflate; "
                                    "client_max_window_bits"})
    try:
        if not cz.deflate:
            raise SystemExit("deflate_wire: %s-z did not agree to "
                             "permessage-deflate" % url)
        hello = {}
        for name, c in (("plain", cp), ("deflate", cz)):
            hello[name] = frames_of(c, 1, lambda f: f["type"] == "hello")[0]
        cs.recv_json(10)

        rng = random.Random(7)
        for i in range(n):
            b = body_of(rng, body)
            for to in (plain, comp):
                cs.send_json({"type": "send", "client_msg_id":
                              "w%d-%s" % (i, to[-8:]), "to": to, "body": b})
        acks = frames_of(cs, 2 * n, lambda f: f["type"] == "ack")
        res = {}
        for name, c in (("plain", cp), ("deflate", cz)):
            res[name] = frames_of(c, n, lambda f: f["type"] == "message")
    finally:
        for c in (cs, cp, cz):
            c.close()

    def avg(rows, k):
        return sum(r[k] for r in rows) / len(rows)

    print("message frames with a %d-byte body, %d of each "
          "(target %s):" % (body, n, url))
    print("  %-26s %10s %10s %12s" % ("", "JSON bytes", "wire bytes",
                                      "compressed"))
    for name in ("plain", "deflate"):
        rows = res[name]
        print("  %-26s %10.1f %10.1f %9d/%d" % (
            "message, " + name, avg(rows, 1), avg(rows, 0),
            sum(1 for r in rows if r[2]), len(rows)))
    for name in ("plain", "deflate"):
        w, j, z = hello[name]
        print("  %-26s %10d %10d %12s" % ("hello, " + name, j, w,
                                          "yes" if z else "no"))
    print("  %-26s %10.1f %10.1f %12s" % ("ack (sender, plain)",
                                          avg(acks, 1), avg(acks, 0), "no"))
    saved = 1 - avg(res["deflate"], 0) / avg(res["plain"], 0)
    print("  deflate saves %.0f%% of a message frame's bytes"
          % (100 * saved))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", help="a running stack's directory")
    ap.add_argument("--body", type=int, default=100)
    ap.add_argument("--messages", type=int, default=50)
    a = ap.parse_args()
    own = None
    d = a.dir
    if d is None:
        own = d = start_stack()
    try:
        run(read_env_file(os.path.join(d, "stack.env")), a.body, a.messages)
    finally:
        if own:
            stop_stack(own)


if __name__ == "__main__":
    main()
