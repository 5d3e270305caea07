"""Connections over their whole life: tokens renewed in band, presence that
a dead server cannot leave behind, reconnects that flip nobody offline,
presence events only where someone watches, the registry after Redis lost
its data, and the drain of a reload or a binary upgrade (reconnect hints,
closes spread over chat_drain, nothing acked lost)."""

import os
import selectors
import signal
import time

import wsclient
from chatlib import (ExtraServer, alive, befriend, expect_ack, expect_message, ping,
                     read_pid, send_msg, unique, wait_for)
from conftest import free_ports

HEARTBEAT = 2.0         # chat_heartbeat of /chat-hb
GRACE = 5.0             # chat_presence_grace (the default)
DRAIN = 8.0             # chat_drain of the test configuration


def presence_of(c, user, timeout):
    return c.recv_until(lambda f: f.get("type") == "presence"
                        and f.get("user_id") == user, timeout,
                        what="presence of %s" % user)


def watch(stack, watcher, user):
    """watcher, made user's contact, subscribes to user's presence;
    returns the first answer."""
    befriend(watcher, user)
    watcher.send_json({"type": "presence_subscribe", "req_id": "w",
                       "user_ids": [user]})
    return presence_of(watcher, user, 10)


# ---------------------------------------------------------------- tokens

def test_auth_renews_the_token(stack, clients):
    user = unique("auth")
    url = stack.url.replace("/chat", "/chat-hb")
    c = clients.add(wsclient.connect(url, token=stack.token(user, "d",
                                                            exp_delta=3)))
    assert c.recv_json(5)["type"] == "hello"
    fresh = stack.token(user, "d", exp_delta=120)
    c.send_json({"type": "auth", "req_id": "r1", "token": fresh})
    ok = c.recv_type("auth_ok", 5)
    assert ok["req_id"] == "r1"
    assert abs(ok["expires_at"] / 1000 - (time.time() + 120)) < 10, ok
    c.drain(3 * HEARTBEAT + 1)      # past the first token's exp, answering
    assert ping(c, "alive")["type"] == "pong"

    # without the renewal the same connection ends with 1008
    other = clients.add(wsclient.connect(url, token=stack.token(
        unique("noauth"), "d", exp_delta=2)))
    assert other.recv_json(5)["type"] == "hello"
    t0 = time.monotonic()
    while True:
        try:
            other.recv_frame(max(0.1, t0 + 10 - time.monotonic()))
        except wsclient.ConnectionClosed as e:
            assert e.code == 1008, e
            break


def test_auth_refuses_bad_tokens(stack, clients):
    user = unique("authbad")
    c = clients.add(stack.connect(user, "d"))
    cases = [
        ("bad", stack.token(user, "d", bad_signature=True), "bad_request"),
        ("expired", stack.token(user, "d", exp_delta=-10), "bad_request"),
        ("garbage", "not.a.token", "bad_request"),
        ("user", stack.token(unique("other"), "d"), "forbidden"),
        ("device", stack.token(user, "other"), "forbidden"),
    ]
    for req_id, token, code in cases:
        c.send_json({"type": "auth", "req_id": req_id, "token": token})
        f = c.recv_until(lambda o: o.get("req_id") == req_id, 5,
                         what="answer to auth %s" % req_id)
        assert f["type"] == "error" and f["code"] == code, (req_id, f)
    c.send_json({"type": "auth", "req_id": "none"})
    f = c.recv_until(lambda o: o.get("req_id") == "none", 5, what="answer")
    assert f["type"] == "error" and f["code"] == "bad_request", f
    c.send_json({"type": "auth", "token": stack.token(user, "d")})
    f = c.recv_type("error", 5)
    assert f["code"] == "bad_request", f
    assert ping(c)["type"] == "pong"        # the connection is as it was


# -------------------------------------------------------------- presence

def test_crashed_server_users_go_offline(stack, clients):
    """A server killed as a host crash would (no close seen anywhere):
    its users are offline, with last_seen, to their watchers within
    2 x heartbeat + 10 s, and their sessions are gone from Redis."""
    server = ExtraServer(stack, "crash", free_ports(2)).start()
    try:
        u, w = unique("ghost"), unique("ghostw")
        clients.add(stack.connect(u, "phone", url=server.url))
        watcher = clients.add(stack.connect(w))
        assert watch(stack, watcher, u)["status"] == "online"
        server.kill()
        killed = time.time()
        t0 = time.monotonic()
        f = presence_of(watcher, u, 40)
        took = time.monotonic() - t0
        assert f["status"] == "offline", f
        assert took <= 2 * 2 + 10 + 3, "offline after %.1fs" % took
        assert isinstance(f["last_seen"], int), f
        assert abs(f["last_seen"] / 1000 - killed) < 15, (f, killed)
        wait_for(lambda: stack.sessions(u) == {}, 10,
                 what="the dead server's session removed")
    finally:
        server.stop()


def test_flapping_is_coalesced(stack, clients):
    """A device reconnecting every half second flips nobody: its watcher
    sees it online once, and offline once, after it stopped for good."""
    u, w = unique("flap"), unique("flapw")
    watcher = clients.add(stack.connect(w))
    first = watch(stack, watcher, u)
    assert first["status"] == "offline" and first["last_seen"] is None
    for _ in range(8):
        c = stack.connect(u, "phone")
        time.sleep(0.25)
        c.close()
        time.sleep(0.25)
    seen = []
    deadline = time.monotonic() + GRACE + 6
    while time.monotonic() < deadline:
        try:
            seen.append(presence_of(watcher, u,
                                    max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        except AssertionError:
            break
    statuses = [f["status"] for f in seen]
    assert statuses == ["online", "offline"], seen
    assert isinstance(seen[-1]["last_seen"], int), seen


def test_presence_goes_only_where_watched(stack, clients):
    """A user's presence channel has subscribers only while someone
    watches it: no other nginx process hears its events."""
    u, w = unique("reach"), unique("reachw")
    channel = "chat:pc:%s" % u

    def subscribers():
        out = stack.redis_cli("PUBSUB", "NUMSUB", channel).split()
        return int(out[-1])

    assert subscribers() == 0
    watcher = clients.add(stack.connect(w))
    watch(stack, watcher, u)
    assert subscribers() == 1
    watcher.send_json({"type": "presence_unsubscribe", "user_ids": [u]})
    wait_for(lambda: subscribers() == 0, 5, what="unsubscribed")


def test_redis_losing_its_data_gets_the_sessions_back(stack, clients):
    a, b = unique("flush"), unique("flushb")
    ca = clients.add(stack.connect(a, "phone"))
    cb = clients.add(stack.connect(b, "phone"))
    wait_for(lambda: stack.sessions(a) and stack.sessions(b), 5,
             what="registered")
    stack.redis_cli("FLUSHALL")
    assert stack.sessions(a) == {}
    wait_for(lambda: "phone" in stack.sessions(a)
             and "phone" in stack.sessions(b), 10,
             what="sessions registered again after FLUSHALL")
    send_msg(ca, "f1", "after the flush", to=b)
    expect_ack(ca, "f1")
    expect_message(cb, "f1")


# ----------------------------------------------------------------- drain

class Fleet:
    """Many connections read together: who got a reconnect hint, and when
    each was closed and with what."""

    def __init__(self, stack, url, users):
        self.stack, self.url = stack, url
        self.conns = {}
        self.hint, self.closed = {}, {}
        self.sel = selectors.DefaultSelector()
        for u in users:
            c = stack.connect(u, "d", url=url)
            self.conns[u] = c
            self.sel.register(c.sock, selectors.EVENT_READ, u)

    def run(self, until, timeout):
        """Reads what arrives (never waiting on one connection) until
        until() or the timeout: each event is seen when it comes."""
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            for key, _ in self.sel.select(0.2):
                u = key.data
                c = self.conns[u]
                try:
                    data = c.sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    c._buf += data
                try:
                    while True:
                        f = c.recv_json(0)
                        if f.get("type") == "reconnect":
                            self.hint[u] = (time.monotonic(),
                                            f.get("retry_after_ms"))
                except TimeoutError:
                    if data:
                        continue
                    self.closed[u] = (time.monotonic(), c.close_code)
                except wsclient.ConnectionClosed as e:
                    self.closed[u] = (time.monotonic(), e.code)
                self.sel.unregister(c.sock)
                c.abort()


def spread_ok(times, window):
    """The closes spread over the window: the busiest second has at most
    a third of them, and they take at least half of the window."""
    times = sorted(times)
    span = times[-1] - times[0]
    busiest = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    return span >= window / 2 and busiest <= len(times) / 3, (span, busiest)


def test_reload_drains_without_losing_anything(stack):
    """nginx -s reload under 1,000 connections with messages flowing: each
    old connection gets a reconnect hint and a 1001, the closes spread over
    chat_drain, and after the clients came back every acked message is
    there."""
    n = 500
    senders = [unique("rs%d" % i) for i in range(n)]
    receivers = [unique("rr%d" % i) for i in range(n)]
    fleet = Fleet(stack, stack.url, senders + receivers)
    acked = {}

    # messages in flight while the reload starts
    for i, u in enumerate(senders):
        send_msg(fleet.conns[u], "m%d" % i, "before %d" % i,
                 to=receivers[i])
    stack.ctl("nginx-reload")
    t0 = time.monotonic()
    fleet.run(lambda: len(fleet.closed) == 2 * n, DRAIN + 20)

    assert len(fleet.closed) == 2 * n, \
        "%d of %d connections closed" % (len(fleet.closed), 2 * n)
    codes = {code for _, code in fleet.closed.values()}
    assert codes == {1001}, codes
    missing = [u for u in fleet.conns if u not in fleet.hint]
    assert not missing, "%d got no reconnect hint" % len(missing)
    assert all(h[1] and h[1] > 0 for h in fleet.hint.values())
    ok, why = spread_ok([t for t, _ in fleet.closed.values()], DRAIN)
    assert ok, "closes not spread over %.0fs: span, busiest %r" % (DRAIN, why)
    assert max(t for t, _ in fleet.closed.values()) - t0 <= DRAIN + 5

    # back on the new worker processes: each sender's message is there,
    # acked now if it was not before, and another one goes through
    for i, u in enumerate(senders):
        c = stack.connect(u, "d")
        send_msg(c, "m%d" % i, "before %d" % i, to=receivers[i])
        acked[i] = expect_ack(c, "m%d" % i)["seq"]
        send_msg(c, "n%d" % i, "after %d" % i, to=receivers[i])
        expect_ack(c, "n%d" % i)
        c.close()
    for i, r in enumerate(receivers[:50]):
        c = stack.connect(r, "d")
        c.send_json({"type": "sync", "req_id": "s"})
        got = set()
        while True:
            f = c.recv_until(lambda o: o.get("type") in ("message",
                                                         "sync_done"), 15,
                             what="sync of %s" % r)
            if f["type"] == "sync_done":
                break
            got.add(f["client_msg_id"])
        assert {"m%d" % i, "n%d" % i} <= got, (r, got)
        c.close()


def test_binary_upgrade_drains(stack):
    """USR2, then WINCH and QUIT to the old master: the old workers drain
    as on a reload, the new binary serves the reconnects."""
    server = ExtraServer(stack, "upg", free_ports(2), daemon=True,
                         edit=lambda conf: conf.replace(
                             "chat_drain", "chat_drain 3s; #")).start()
    try:
        users = [unique("up%d" % i) for i in range(100)]
        fleet = Fleet(stack, server.url, users)
        old = server.master
        os.kill(old, signal.SIGUSR2)
        wait_for(lambda: os.path.exists(server.pidfile + ".oldbin")
                 and read_pid(server.pidfile) not in (None, old), 10,
                 what="the new master")
        new = read_pid(server.pidfile)
        wait_for(lambda: len(server.workers(new)) >= 1, 10,
                 what="the new binary's workers")
        os.kill(old, signal.SIGWINCH)
        fleet.run(lambda: len(fleet.closed) == len(users), 20)
        assert len(fleet.closed) == len(users)
        assert {code for _, code in fleet.closed.values()} == {1001}
        assert len(fleet.hint) == len(users)
        c = stack.connect(users[0], "d", url=server.url)
        assert ping(c)["type"] == "pong"
        c.close()
        os.kill(old, signal.SIGQUIT)
        wait_for(lambda: not alive(old), 20, what="the old master gone")
        server.master = new
    finally:
        server.stop()
