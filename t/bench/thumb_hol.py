#!/usr/bin/env python3
"""What images cost the text messages beside them: how long a plain text
send waits for its ack while other users upload images and attach them.

Starts a stack of its own (t/stack.sh, as the tests do: one chat_worker,
so every partition's records go through it and one record's slow work is
everybody's), then measures one user's text
sends (RATE a second, each waiting for its ack) for DURATION seconds
twice: alone, then while IMAGERS other users each announce, PUT and
attach a SIDE x SIDE PNG (a gradient, well under chat_media_max_bytes,
whose decoding is the slow part) one after the other. Prints, for each
run, the text sends' ack times (median, 90th and 99th percentile, worst),
the images attached and their sends' ack times, and how the workers made
the images' sizes: on the uploaded record ("thumbnail made in" lines of
their logs) or inside a send's batch (the rest).

    flock /tmp/ngx-chat-stack.lock python3 t/bench/thumb_hol.py [--root TREE]

--root names the tree whose t/stack.sh and build run the stack (default:
this one), so that the same measurement runs against another build (a
worktree of main, built). Not a test: it asserts only that every step
worked. DURATION (default 20), RATE (default 20), IMAGERS (default 2),
SIDE (default 3000), THINK_MS (default 0: how long a user waits between
the PUT and the send that attaches the image).
"""

import argparse
import glob
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
T = os.path.dirname(HERE)
sys.path.insert(0, T)

import conftest  # noqa: E402
from chatlib import dm_id, unique  # noqa: E402

DURATION = float(os.environ.get("DURATION", "20"))
RATE = float(os.environ.get("RATE", "20"))
IMAGERS = int(os.environ.get("IMAGERS", "2"))
SIDE = int(os.environ.get("SIDE", "3000"))
THINK = float(os.environ.get("THINK_MS", "0")) / 1000.0
WAIT = 30.0


def gradient_png(side):
    """A side x side RGB PNG whose rows after the first are written with
    the Up filter, each row the one above plus one in two channels: it
    compresses to little, while decoding it is all of its pixels."""
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    first = bytearray(3 * side)
    first[0::3] = bytes(x * 255 // side for x in range(side))
    first[2::3] = bytes(x & 255 for x in range(side))
    up = b"\x02" + b"\x00\x01\x01" * side
    raw = b"\x00" + bytes(first) + up * (side - 1)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def ack_of(c, cmid):
    f = c.recv_until(lambda o: o.get("client_msg_id") == cmid
                     and o.get("type") in ("ack", "error"), WAIT,
                     what="the answer to %s" % cmid)
    assert f["type"] == "ack", f
    return f


def texts(stack, seconds, out):
    """One user's text sends, paced at RATE, each waiting for its ack."""
    a, b = unique("bt"), unique("bu")
    c = stack.connect(a, "phone")
    conv = dm_id(a, b)
    try:
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < seconds:
            due = t0 + n / RATE
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            cmid = "t%d" % n
            sent = time.monotonic()
            c.send_json({"type": "send", "client_msg_id": cmid,
                         "conversation_id": conv, "body": "hello %d" % n})
            ack_of(c, cmid)
            out.append((time.monotonic() - sent) * 1000.0)
            n += 1
    finally:
        c.close()


def images(stack, png, stop, out):
    """One user's images, one after the other until stop: announce, PUT,
    attach; the attaching send's ack time into out."""
    a, b = unique("bi"), unique("bj")
    c = stack.connect(a, "phone")
    conv = dm_id(a, b)
    n = 0
    try:
        while not stop.is_set():
            rid = "u%d" % n
            c.send_json({"type": "upload", "req_id": rid,
                         "conversation_id": conv,
                         "content_type": "image/png", "size": len(png),
                         "name": "big%d.png" % n})
            up = c.recv_until(lambda o: o.get("req_id") == rid, WAIT,
                              what="the upload's answer")
            assert up["type"] == "upload", up
            req = urllib.request.Request(up["url"], data=png, method="PUT",
                                         headers={"Content-Type":
                                                  "image/png"})
            with urllib.request.urlopen(req, timeout=WAIT) as r:
                assert r.status in (201, 204), r.status
            if THINK:
                time.sleep(THINK)
            cmid = "i%d" % n
            sent = time.monotonic()
            c.send_json({"type": "send", "client_msg_id": cmid,
                         "conversation_id": conv, "body": "",
                         "attachments": [up["attachment_id"]]})
            ack_of(c, cmid)
            out.append((time.monotonic() - sent) * 1000.0)
            n += 1
    finally:
        c.close()


def made_on_uploaded(stack):
    n = 0
    for path in glob.glob(os.path.join(stack.dir, "log", "worker*.log")):
        with open(path, errors="replace") as f:
            n += f.read().count("thumbnail made in")
    return n


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def line(label, xs):
    if not xs:
        return "%-22s none" % label
    return ("%-22s n=%-5d median %7.1f  p90 %7.1f  p99 %7.1f  max %7.1f ms"
            % (label, len(xs), statistics.median(xs), pct(xs, 90),
               pct(xs, 99), max(xs)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.dirname(T))
    a = ap.parse_args()
    conftest.STACK_SH = os.path.join(os.path.abspath(a.root), "t",
                                     "stack.sh")

    png = gradient_png(SIDE)
    print("tree %s; a %dx%d PNG of %d bytes, %d users attaching one after"
          " the other, %.0f ms from the PUT to the send; text sends at %.0f/s"
          " for %.0f s" % (a.root, SIDE, SIDE, len(png), IMAGERS,
                           THINK * 1000, RATE, DURATION))

    stack = conftest._start_stack()
    try:
        alone = []
        texts(stack, DURATION, alone)

        busy, sends = [], []
        stop = threading.Event()
        before = made_on_uploaded(stack)
        ths = [threading.Thread(target=images, args=(stack, png, stop, sends))
               for _ in range(IMAGERS)]
        for t in ths:
            t.start()
        time.sleep(1.0)
        try:
            texts(stack, DURATION, busy)
        finally:
            stop.set()
            for t in ths:
                t.join()
        on_uploaded = made_on_uploaded(stack) - before

        print(line("text, alone", alone))
        print(line("text, beside images", busy))
        print(line("image sends", sends))
        print("images' sizes made: %d on the uploaded record, %d in a send's"
              " batch" % (on_uploaded, max(0, len(sends) - on_uploaded)))
    finally:
        subprocess.run(["bash", conftest.STACK_SH, "stop", stack.dir],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)


if __name__ == "__main__":
    main()
