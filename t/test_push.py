"""Push to offline devices: push_register / push_unregister, the push
topic's records (chat_worker produces one per message and offline
device, read here with kcat), and chat_pusher's POSTs to a gateway (a
small HTTP receiver in this test): one per message to an offline device,
none to an online one, retried after failures and delivered once, none
after unregistering, none twice across a restart of the pusher or a
record produced again, bodies left out when configured; endpoints the
server does not allow are refused."""

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chatlib import (dm_id, expect_ack, expect_error, send_msg, unique,
                     wait_for)

T = 15.0
PUSH_TOPIC = "chat.push"


class Receiver:
    """A push gateway: records every POST; the path says how it answers:
    /ok/NAME (200), /fail/N/NAME (500 for the first N, then 200),
    /hang/NAME (answers nothing for 4 s), /gone/NAME (410)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.posts = []                     # (path, payload, status)
        self.counts = {}
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = {"_raw": raw.decode("latin-1")}
                parts = self.path.strip("/").split("/")
                with rec.lock:
                    seen = rec.counts.get(self.path, 0)
                    rec.counts[self.path] = seen + 1
                status = 200
                if parts[0] == "fail" and seen < int(parts[1]):
                    status = 500
                elif parts[0] == "gone":
                    status = 410
                elif parts[0] == "hang":
                    time.sleep(4)
                    status = 200
                with rec.lock:
                    rec.posts.append((self.path, payload, status,
                                      self.headers.get("Content-Type")))
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d/%s" % (self.port, path)

    def got(self, path, status=None):
        with self.lock:
            return [p for (pa, p, s, _) in self.posts
                    if pa == "/" + path and (status is None or s == status)]

    def content_types(self):
        with self.lock:
            return {ct for (_, _, _, ct) in self.posts}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rx():
    r = Receiver()
    yield r
    r.close()


def register(c, endpoint, token, req_id="reg"):
    c.send_json({"type": "push_register", "req_id": req_id,
                 "endpoint": endpoint, "token": token})
    return c.recv_until(lambda o: o.get("req_id") == req_id
                        and o.get("type") in ("push_registered", "error"),
                        T, what="answer to push_register %r" % req_id)


def unregister(c, req_id="unreg"):
    c.send_json({"type": "push_unregister", "req_id": req_id})
    return c.recv_until(lambda o: o.get("req_id") == req_id
                        and o.get("type") in ("push_registered", "error"),
                        T, what="answer to push_unregister %r" % req_id)


def offline_device(stack, user, dev, endpoint, token):
    """Registers user/dev for push, then takes the device offline."""
    c = stack.connect(user, dev)
    r = register(c, endpoint, token)
    assert r == {"type": "push_registered", "req_id": "reg"}, r
    c.close()
    wait_for(lambda: stack.redis_cli("HEXISTS", "chat:sess:" + user,
                                     dev).strip() == "0",
             T, what="the session of %s/%s gone" % (user, dev))


def topic_records(stack):
    """Every record of the push topic as (key, message_id, user, device,
    ts), read from the beginning; what is not a push record is left out."""
    p = subprocess.run(["kcat", "-b", "127.0.0.1:%d" % stack.kafka_port,
                        "-C", "-t", PUSH_TOPIC, "-o", "beginning", "-e",
                        "-q", "-f", "%k %s\\n"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    out = []
    for line in p.stdout.decode().splitlines():
        f = line.split(" ")
        # the malformed record a test produces is no push record
        if len(f) == 5 and f[1].isdigit() and f[4].isdigit():
            out.append((f[0], f[1], f[2], f[3], int(f[4])))
    return out


def records_of(stack, user):
    return [r for r in topic_records(stack) if r[0] == user]


def outbox(stack, message_id):
    rows = stack.psql("select device_id, state, attempts from push_outbox"
                      " where message_id = %d order by device_id"
                      % int(message_id))
    return [tuple(r.split("|")) for r in rows.splitlines() if r]


# -- registration ----------------------------------------------------------

def test_register_and_unregister_answer_and_store(stack, rx):
    u = unique("pr")
    c = stack.connect(u, "phone")
    try:
        assert "push_register" in c.hello.get("features", []), c.hello
        r = register(c, rx.url("ok/" + u), "tok-" + u, req_id={"n": 1})
        assert r == {"type": "push_registered", "req_id": {"n": 1}}, r
        assert stack.psql("select endpoint || ' ' || token from push_devices"
                          " where user_id = '%s' and device_id = 'phone'"
                          % u) == "%s tok-%s" % (rx.url("ok/" + u), u)
        # a second registration replaces the first
        r = register(c, rx.url("ok/" + u + "b"), "tok2", req_id=7)
        assert r["type"] == "push_registered" and r["req_id"] == 7, r
        assert stack.psql("select count(*) || ' ' || max(token) from"
                          " push_devices where user_id = '%s'" % u) \
            == "1 tok2"
        r = unregister(c, req_id="u1")
        assert r == {"type": "push_registered", "req_id": "u1"}, r
        assert stack.psql("select count(*) from push_devices where"
                          " user_id = '%s'" % u) == "0"
    finally:
        c.close()


@pytest.mark.parametrize("frame,code", [
    ({"endpoint": "http://example.com/push", "token": "t"}, "bad_request"),
    ({"endpoint": "https://127.0.0.2/x", "token": "t"}, "bad_request"),
    ({"endpoint": "ftp://127.0.0.1:21/x", "token": "t"}, "bad_request"),
    ({"endpoint": "http://127.0.0.1:1/a b", "token": "t"}, "bad_request"),
    ({"endpoint": 5, "token": "t"}, "bad_request"),
    ({"endpoint": "http://127.0.0.1:1/x"}, "bad_request"),
    ({"endpoint": "http://127.0.0.1:1/x", "token": ""}, "bad_request"),
    ({"endpoint": "http://127.0.0.1:1/x", "token": "t" * 4097}, "too_large"),
    ({"endpoint": "http://127.0.0.1:1/" + "x" * 2048, "token": "t"},
     "too_large"),
])
def test_refused_endpoints(stack, frame, code):
    u = unique("pbad")
    c = stack.connect(u, "phone")
    try:
        f = dict(frame, type="push_register", req_id="bad")
        c.send_json(f)
        e = expect_error(c, T, req_id="bad")
        assert e["code"] == code, e
        # the connection stays usable and nothing was stored
        c.send_json({"type": "push_register", "req_id": "nr"})
        assert expect_error(c, T, req_id="nr")["code"] == "bad_request"
        assert stack.psql("select count(*) from push_devices where"
                          " user_id = '%s'" % u) == "0"
    finally:
        c.close()


def test_register_needs_req_id(stack):
    c = stack.connect(unique("pnr"), "phone")
    try:
        c.send_json({"type": "push_register", "endpoint":
                     "http://127.0.0.1:1/x", "token": "t"})
        e = c.recv_type("error", T)
        assert e["code"] == "bad_request", e
    finally:
        c.close()


# -- pushes ----------------------------------------------------------------

def test_offline_device_one_post_per_message_online_none(stack, rx):
    a, b = unique("pa"), unique("pb")
    conv = dm_id(a, b)
    offline_device(stack, b, "tablet", rx.url("ok/" + b + "/tablet"),
                   "tab-" + b)
    # the sender's own offline device hears nothing of its own messages
    offline_device(stack, a, "laptop", rx.url("ok/" + a + "/laptop"),
                   "lap-" + a)
    phone = stack.connect(b, "phone")
    ca = stack.connect(a, "web")
    try:
        r = register(phone, rx.url("ok/" + b + "/phone"), "ph-" + b)
        assert r["type"] == "push_registered", r
        acks = []
        for i in range(3):
            send_msg(ca, "m%d" % i, "hello %d" % i, to=b)
            acks.append(expect_ack(ca, "m%d" % i))
        got = wait_for(lambda: len(rx.got("ok/" + b + "/tablet")) >= 3 and
                       rx.got("ok/" + b + "/tablet"), T,
                       what="3 pushes to the offline tablet")
        time.sleep(1.5)      # a second POST of any of them would come now
        got = rx.got("ok/" + b + "/tablet")
        assert len(got) == 3, got
        by_id = {p["message_id"]: p for p in got}
        assert set(by_id) == {x["message_id"] for x in acks}, (got, acks)
        for i, ack in enumerate(acks):
            p = by_id[ack["message_id"]]
            assert p == {"token": "tab-" + b, "conversation_id": conv,
                         "message_id": ack["message_id"], "sender_id": a,
                         "seq": ack["seq"], "unread": p["unread"],
                         "body": "hello %d" % i}, p
            assert isinstance(p["unread"], int) and 1 <= p["unread"] <= 3, p
        assert max(p["unread"] for p in got) == 3, got
        assert rx.got("ok/" + b + "/phone") == [], "online device was pushed"
        assert rx.got("ok/" + a + "/laptop") == [], \
            "the sender's device was pushed"
        assert "application/json" in rx.content_types()
        # the online phone never got a record, so no outbox row either
        for ack in acks:
            assert outbox(stack, ack["message_id"]) == [
                ("tablet", "sent", "1")], outbox(stack, ack["message_id"])
        recs = records_of(stack, b)
        assert sorted(r[1] for r in recs) == sorted(
            x["message_id"] for x in acks), recs
        assert {r[3] for r in recs} == {"tablet"}, recs
        assert records_of(stack, a) == [], "the sender's device has records"
    finally:
        phone.close()
        ca.close()


def test_unread_follows_read_pointer(stack, rx):
    a, b = unique("pa"), unique("pb")
    conv = dm_id(a, b)
    offline_device(stack, b, "tablet", rx.url("ok/" + b), "t-" + b)
    ca = stack.connect(a, "web")
    try:
        for i in range(2):
            send_msg(ca, "r%d" % i, "x", to=b)
            expect_ack(ca, "r%d" % i)
        wait_for(lambda: len(rx.got("ok/" + b)) == 2, T, what="2 pushes")
        # b reads everything on another device; the next push counts 1
        cb = stack.connect(b, "web")
        cb.send_json({"type": "receipt", "conversation_id": conv, "seq": 2,
                      "state": "read"})
        wait_for(lambda: stack.psql(
            "select read_seq from members where conversation_id = '%s' and"
            " user_id = '%s'" % (conv, b)) == "2", T, what="read pointer")
        cb.close()
        send_msg(ca, "r2", "third", to=b)
        ack = expect_ack(ca, "r2")
        p = wait_for(lambda: [x for x in rx.got("ok/" + b)
                              if x["message_id"] == ack["message_id"]],
                     T, what="the third push")
        assert p[0]["unread"] == 1, p
    finally:
        ca.close()


def test_failing_gateway_retried_then_delivered_once(stack, rx):
    a, b = unique("pa"), unique("pb")
    path = "fail/2/" + b
    offline_device(stack, b, "tablet", rx.url(path), "t-" + b)
    ca = stack.connect(a, "web")
    try:
        send_msg(ca, "f1", "retry me", to=b)
        ack = expect_ack(ca, "f1")
        wait_for(lambda: rx.got(path, 200), T, what="the push after two 500s")
        time.sleep(1.5)
        assert len(rx.got(path, 500)) == 2, rx.got(path)
        ok = rx.got(path, 200)
        assert len(ok) == 1, ok
        assert ok[0]["message_id"] == ack["message_id"], ok
        assert outbox(stack, ack["message_id"]) == [("tablet", "sent", "3")]
    finally:
        ca.close()


def test_gateway_that_never_answers_is_retried(stack, rx):
    a, b = unique("pa"), unique("pb")
    path = "hang/" + b
    offline_device(stack, b, "tablet", rx.url(path), "t-" + b)
    ca = stack.connect(a, "web")
    try:
        send_msg(ca, "h1", "anyone?", to=b)
        ack = expect_ack(ca, "h1")
        # each POST gives up after the pusher's timeout (1.5 s) and is
        # tried again after the backoff
        wait_for(lambda: rx.counts.get("/" + path, 0) >= 2, T,
                 what="a second attempt at a gateway that hangs")
        rows = outbox(stack, ack["message_id"])
        assert rows and rows[0][0] == "tablet" and int(rows[0][2]) >= 2, rows
        assert rows[0][1] in ("pending", "sending"), rows
    finally:
        ca.close()


def test_gone_token_not_retried(stack, rx):
    a, b = unique("pa"), unique("pb")
    path = "gone/" + b
    offline_device(stack, b, "tablet", rx.url(path), "t-" + b)
    ca = stack.connect(a, "web")
    try:
        send_msg(ca, "g1", "x", to=b)
        ack = expect_ack(ca, "g1")
        wait_for(lambda: outbox(stack, ack["message_id"])
                 == [("tablet", "failed", "1")], T, what="failed for good")
        time.sleep(1.0)
        assert len(rx.got(path)) == 1
    finally:
        ca.close()


def test_unregister_stops_pushes(stack, rx):
    a, b = unique("pa"), unique("pb")
    path = "ok/" + b
    offline_device(stack, b, "tablet", rx.url(path), "t-" + b)
    ca = stack.connect(a, "web")
    try:
        send_msg(ca, "u1", "one", to=b)
        expect_ack(ca, "u1")
        wait_for(lambda: len(rx.got(path)) == 1, T, what="the first push")
        cb = stack.connect(b, "tablet")
        assert unregister(cb)["type"] == "push_registered"
        cb.close()
        wait_for(lambda: stack.redis_cli("HEXISTS", "chat:sess:" + b,
                                         "tablet").strip() == "0", T,
                 what="tablet offline")
        send_msg(ca, "u2", "two", to=b)
        ack = expect_ack(ca, "u2")
        time.sleep(2.0)
        assert len(rx.got(path)) == 1, rx.got(path)
        assert outbox(stack, ack["message_id"]) == []
    finally:
        ca.close()


def test_group_members_offline_devices(stack, rx):
    a, b, c_ = unique("pa"), unique("pb"), unique("pc")
    offline_device(stack, b, "tablet", rx.url("ok/" + b), "t-" + b)
    offline_device(stack, c_, "tablet", rx.url("ok/" + c_), "t-" + c_)
    ca = stack.connect(a, "web")
    try:
        ca.send_json({"type": "create_group", "req_id": "g", "name": "G",
                      "members": [b, c_]})
        g = ca.recv_type("group", T, req_id="g")
        conv = g["conversation_id"]
        send_msg(ca, "gm", "to the group", conv=conv)
        ack = expect_ack(ca, "gm")
        for u in (b, c_):
            p = wait_for(lambda: rx.got("ok/" + u), T, what="push to " + u)
            assert len(p) == 1, p
            assert p[0]["conversation_id"] == conv, p
            assert p[0]["message_id"] == ack["message_id"], p
            assert p[0]["sender_id"] == a and p[0]["body"] == "to the group"
    finally:
        ca.close()


# -- the push topic and the pusher's restarts --------------------------------

def test_offline_device_record_on_push_topic(stack, rx):
    """The record chat_worker leaves for an offline device: keyed by the
    user, the message's id and server_ts, no text."""
    a, b = unique("pa"), unique("pb")
    offline_device(stack, b, "tablet", rx.url("ok/" + b), "t-" + b)
    ca = stack.connect(a, "web")
    try:
        t0 = int(time.time() * 1000)
        send_msg(ca, "k1", "secret text", to=b)
        ack = expect_ack(ca, "k1")
        recs = wait_for(lambda: records_of(stack, b), T,
                        what="the push record of " + b)
        assert len(recs) == 1, recs
        key, mid, user, dev, ts = recs[0]
        assert (key, mid, user, dev) == (b, ack["message_id"], b,
                                         "tablet"), recs
        assert t0 - 5000 <= ts <= int(time.time() * 1000), (t0, ts)
        assert str(ts) == stack.psql(
            "select server_ts from messages where message_id = %d"
            % int(mid))
        wait_for(lambda: rx.got("ok/" + b), T, what="its push")
    finally:
        ca.close()


def produce_record(stack, key, value):
    p = subprocess.run(["kcat", "-b", "127.0.0.1:%d" % stack.kafka_port,
                        "-P", "-t", PUSH_TOPIC, "-K", "\t"],
                       input=("%s\t%s\n" % (key, value)).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def test_pusher_restarted_midway_sends_nothing_twice(stack, rx):
    """Pushes sent, the pusher stopped, more messages (their records wait
    on the topic), a record of a message already pushed produced again
    (as a chat_worker's replay does) and a malformed one: after the
    restart every message is pushed once, the first ones not again."""
    a, b = unique("pa"), unique("pb")
    path = "ok/" + b
    offline_device(stack, b, "tablet", rx.url(path), "t-" + b)
    ca = stack.connect(a, "web")
    acks = []
    try:
        for i in range(3):
            send_msg(ca, "s%d" % i, "before %d" % i, to=b)
            acks.append(expect_ack(ca, "s%d" % i))
        wait_for(lambda: len(rx.got(path)) == 3, T, what="the first pushes")
        stack.ctl("pusher-stop")
        try:
            for i in range(3, 6):
                send_msg(ca, "s%d" % i, "while away %d" % i, to=b)
                acks.append(expect_ack(ca, "s%d" % i))
            wait_for(lambda: len(records_of(stack, b)) == 6, T,
                     what="6 records on the topic")
            first = [r for r in records_of(stack, b)
                     if r[1] == acks[0]["message_id"]][0]
            produce_record(stack, b, " ".join(map(str, first[1:])))
            produce_record(stack, b, "not a push record")
            time.sleep(0.5)
            assert len(rx.got(path)) == 3, rx.got(path)
        finally:
            stack.ctl("pusher-start")
        wait_for(lambda: len(rx.got(path)) >= 6, T,
                 what="the pushes of the messages sent meanwhile")
        time.sleep(2.0)     # a second POST of any of them would come now
        got = rx.got(path)
        assert sorted(p["message_id"] for p in got) == sorted(
            x["message_id"] for x in acks), got
        for ack in acks:
            assert outbox(stack, ack["message_id"]) == [
                ("tablet", "sent", "1")], outbox(stack, ack["message_id"])
    finally:
        ca.close()


def test_bodies_left_out(stack, rx):
    """chat_pusher --no-body: the payload without the message's text,
    everything else as before. The stack's pusher is stopped meanwhile
    and this test's own runs in its group."""
    env = stack.env
    log = os.path.join(stack.dir, "log", "pusher-nobody.log")
    a, b = unique("pa"), unique("pb")
    path = "ok/" + b
    offline_device(stack, b, "tablet", rx.url(path), "t-" + b)
    stack.ctl("pusher-stop")
    proc = None
    try:
        with open(log, "ab") as f:
            proc = subprocess.Popen(
                [env["CHAT_PUSHER_BIN"],
                 "--brokers", "127.0.0.1:%d" % stack.kafka_port,
                 "--group", "chat-pushers",
                 "--redis", "127.0.0.1:%d" % stack.redis_port,
                 "--pg", "host=127.0.0.1 port=%d dbname=chat user=chat"
                 % stack.pg_port]
                + env.get("CHAT_PUSHER_ARGS", "").split() + ["--no-body"],
                stdout=f, stderr=f)
        wait_for(lambda: '"msg":"ready"' in open(log).read(), T,
                 what="the --no-body pusher ready")
        ca = stack.connect(a, "web")
        try:
            send_msg(ca, "n1", "not for the gateway", to=b)
            ack = expect_ack(ca, "n1")
            got = wait_for(lambda: rx.got(path), T, what="the push")
        finally:
            ca.close()
        assert len(got) == 1, got
        assert got[0] == {"token": "t-" + b,
                          "conversation_id": dm_id(a, b),
                          "message_id": ack["message_id"], "sender_id": a,
                          "seq": ack["seq"], "unread": 1}, got
        assert "starting" in open(log).read()
        assert "left out" in open(log).read()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
        stack.ctl("pusher-start")
