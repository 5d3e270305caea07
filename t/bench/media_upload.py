#!/usr/bin/env python3
"""Upload throughput against a running stack: each of THREADS clients
announces FILES uploads of SIZE bytes over its WebSocket, PUTs each to
its signed URL and attaches it to a message; prints uploads/s and MB/s
of the PUTs and the announce-to-ack time of the whole round.

    t/bench/media_upload.py DIR [--threads 4] [--files 25] [--size 1000000]

DIR is a started stack (t/stack.sh start DIR); run it under the stack
lock like any stack. Not a test: it asserts only that every step worked.
"""

import argparse
import os
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import tokens      # noqa: E402
import wsclient    # noqa: E402
from stackenv import read_env_file   # noqa: E402


def one_client(env, n, files, size, out):
    user = "bench_up_%d_%d" % (os.getpid(), n)
    peer = "bench_peer_%d" % os.getpid()
    conv = "dm:%s:%s" % tuple(sorted([user, peer]))
    c = wsclient.connect(env["CHAT_URL"], token=tokens.make_token(
        env["CHAT_JWT_SECRET"], user, dev="b", chatctl=env.get("CHATCTL_BIN")))
    c.recv_json(10)
    data = os.urandom(size)
    put_s = 0.0
    t0 = time.monotonic()
    for i in range(files):
        c.send_json({"type": "upload", "req_id": i, "conversation_id": conv,
                     "content_type": "application/pdf", "size": size,
                     "name": "f%d.pdf" % i})
        up = c.recv_until(lambda o: o.get("req_id") == i, 15)
        assert up["type"] == "upload", up
        t1 = time.monotonic()
        req = urllib.request.Request(up["url"], data=data, method="PUT")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status in (201, 204), r.status
        put_s += time.monotonic() - t1
        c.send_json({"type": "send", "client_msg_id": "m%d" % i,
                     "conversation_id": conv, "body": "",
                     "attachments": [up["attachment_id"]]})
        ack = c.recv_until(lambda o: o.get("client_msg_id") == "m%d" % i,
                           15)
        assert ack["type"] == "ack", ack
    out[n] = (time.monotonic() - t0, put_s)
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--files", type=int, default=25)
    ap.add_argument("--size", type=int, default=1000000)
    a = ap.parse_args()
    env = read_env_file(a.dir)
    out = {}
    t0 = time.monotonic()
    ths = [threading.Thread(target=one_client,
                            args=(env, n, a.files, a.size, out))
           for n in range(a.threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.monotonic() - t0
    assert len(out) == a.threads, "a client failed"
    total = a.threads * a.files
    put = sum(p for _, p in out.values())
    print("%d uploads of %d bytes by %d clients in %.2f s: %.1f uploads/s,"
          " %.1f MB/s end to end (announce, PUT, attach); PUT alone"
          " %.1f MB/s per client" % (total, a.size, a.threads, wall,
                                     total / wall,
                                     total * a.size / wall / 1e6,
                                     a.files * a.size * a.threads / put
                                     / 1e6))


if __name__ == "__main__":
    main()
