"""Handshake, authentication, hello, session registry, replacement, ping."""

import re
import time

import pytest

import tokens
import wsclient
from chatlib import close_all, ping, unique, wait_for

SID_RE = re.compile(r"^[0-9a-f]{16}$")


def _expect_status(stack, status, token=None, **kw):
    with pytest.raises(wsclient.HandshakeError) as ei:
        c = wsclient.connect(stack.url, token=token, **kw)
        c.abort()
    assert ei.value.status == status, (
        "expected HTTP %d, got %d %s (headers %r, body %r)"
        % (status, ei.value.status, ei.value.reason, ei.value.headers,
           ei.value.body[:200]))
    return ei.value


BAD_TOKENS = {
    "bad_signature": lambda s, u: tokens.make_token(
        s, u, dev="d", sign_secret=s + "x"),
    "flipped_signature": lambda s, u: tokens.make_token(
        s, u, dev="d", bad_signature=True),
    "expired": lambda s, u: tokens.make_token(s, u, dev="d",
                                              exp_delta=-3600),
    "alg_none": lambda s, u: tokens.make_token(s, u, dev="d", alg="none"),
    "alg_None_mixed_case": lambda s, u: tokens.make_token(s, u, dev="d",
                                                          alg="None"),
    # header says none, signature is a valid HS256 one of that input
    "alg_none_with_hs256_signature": lambda s, u: tokens.make_token(
        s, u, dev="d", alg="none", sign="HS256"),
    "alg_HS512": lambda s, u: tokens.make_token(s, u, dev="d", alg="HS512"),
    "missing_exp": lambda s, u: tokens.make_token(s, u, dev="d",
                                                  exp_delta=None),
    "nbf_in_future": lambda s, u: tokens.make_token(
        s, u, dev="d", nbf=int(time.time()) + 3600),
    "garbage": lambda s, u: "not.a.jwt",
    "two_parts": lambda s, u: ".".join(
        tokens.make_token(s, u, dev="d").split(".")[:2]),
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_token_is_401_and_registers_nothing(stack, kind):
    user = unique("bad")
    token = BAD_TOKENS[kind](stack.secret, user)
    _expect_status(stack, 401, token=token)
    # the same token as a query parameter
    _expect_status(stack, 401, token=token, query_token=True)
    time.sleep(0.3)
    assert stack.sessions(user) == {}, (
        "a rejected handshake (%s) registered a session: %r"
        % (kind, stack.sessions(user)))


def test_missing_token_is_401(stack):
    _expect_status(stack, 401, token=None)
    # an empty bearer and an empty query parameter are missing too
    _expect_status(stack, 401, headers={"Authorization": "Bearer "})
    with pytest.raises(wsclient.HandshakeError) as ei:
        wsclient.connect(stack.url + "?access_token=").abort()
    assert ei.value.status == 401, "empty access_token: %r" % ei.value


def test_token_never_in_the_error_log(stack):
    """A refused handshake is logged with its request line: the token in
    its query must not be (nor a good one's, nor one in a later argument)."""
    user = unique("logtok")
    bad = stack.token(user, "d", bad_signature=True)
    expired = stack.token(user, "d", exp_delta=-60)
    for token in (bad, expired):
        with pytest.raises(wsclient.HandshakeError):
            wsclient.connect(stack.url + "?v=1&access_token=" + token
                             + "&x=2").abort()
    # refused for another reason than the token: the token is still hidden
    with pytest.raises(wsclient.HandshakeError):
        wsclient.connect(stack.url + "?access_token=" + bad,
                         headers={"Sec-WebSocket-Version": "8"}).abort()
    time.sleep(0.5)
    log = open(__import__("os").path.join(stack.dir, "nginx", "logs",
                                          "error.log")).read()
    assert "handshake refused" in log
    for token in (bad, expired):
        for part in token.split("."):
            assert part not in log, "a token part is in the error log"
    assert "access_token=***" in log


@pytest.mark.parametrize("sub", ["", "a b", "x" * 65, "caf\u00e9", "a/b"])
def test_bad_sub_is_401(stack, sub):
    token = tokens.make_token(stack.secret, sub, dev="d")
    _expect_status(stack, 401, token=token)


def test_missing_sub_is_401(stack):
    _expect_status(stack, 401,
                   token=tokens.make_token(stack.secret, None, dev="d"))


def test_bad_dev_is_401(stack):
    _expect_status(stack, 401, token=tokens.make_token(
        stack.secret, unique("u"), dev="bad device"))


def test_token_in_authorization_header(stack):
    user = unique("hdr")
    c = wsclient.connect(stack.url, token=stack.token(user, "laptop"))
    try:
        hello = c.recv_json(10)
        assert hello.get("type") == "hello", hello
        assert hello["user_id"] == user and hello["device_id"] == "laptop", \
            hello
    finally:
        c.close()


def test_token_in_query_parameter(stack):
    user = unique("qry")
    c = wsclient.connect(stack.url, token=stack.token(user, "browser"),
                         query_token=True)
    try:
        hello = c.recv_json(10)
        assert hello.get("type") == "hello", hello
        assert hello["user_id"] == user and hello["device_id"] == "browser", \
            hello
        ping(c, "q")
    finally:
        c.close()


def test_sub_with_full_alphabet_accepted(stack):
    user = "A.b-c_d@e" + unique("")[1:]
    c = stack.connect(user, "d-1.x_y@z")
    try:
        assert c.hello["user_id"] == user
        assert c.hello["device_id"] == "d-1.x_y@z"
    finally:
        c.close()


def test_plain_get_is_400(stack):
    r = wsclient.http_request(stack.http_url, token=stack.token(unique("g")))
    assert r.status == 400, "plain GET without Upgrade: expected 400, got %r" % r


def test_wrong_websocket_version_is_426(stack):
    e = _expect_status(stack, 426, token=stack.token(unique("v")),
                       headers={"Sec-WebSocket-Version": "8"})
    assert e.headers.get("Sec-WebSocket-Version") == "13", (
        "426 must carry Sec-WebSocket-Version: 13, headers were %r"
        % e.headers)


def test_tls(stack):
    user = unique("tls")
    c = stack.connect(user, "t", url=stack.wss_url)
    try:
        assert c.hello["user_id"] == user
        assert ping(c, "over-tls")["req_id"] == "over-tls"
    finally:
        c.close()


def test_tls_rejects_bad_token(stack):
    with pytest.raises(wsclient.HandshakeError) as ei:
        wsclient.connect(stack.wss_url, token=tokens.make_token(
            stack.secret, unique("t"), exp_delta=-3600)).abort()
    assert ei.value.status == 401


@pytest.mark.parametrize("offered", [["chat.v1"], ["other.v9", "chat.v1"]])
def test_subprotocol_selected(stack, offered):
    c = stack.connect(unique("sp"), subprotocols=offered)
    try:
        assert c.subprotocol == "chat.v1", (
            "offered %r, server selected %r" % (offered, c.subprotocol))
    finally:
        c.close()


def test_no_subprotocol_when_not_offered(stack):
    c = stack.connect(unique("sp"))
    try:
        assert c.subprotocol is None, (
            "server selected %r without an offer" % c.subprotocol)
    finally:
        c.close()


def test_hello_fields(stack):
    user = unique("hello")
    before = int(time.time() * 1000)
    c = stack.connect(user, "phone")
    after = int(time.time() * 1000)
    try:
        h = c.hello
        for k in ("type", "user_id", "device_id", "session_id", "server_id",
                  "heartbeat_s", "max_message_bytes", "server_ts"):
            assert k in h, "hello lacks %r: %r" % (k, h)
        assert h["type"] == "hello"
        assert h["user_id"] == user
        assert h["device_id"] == "phone"
        assert isinstance(h["session_id"], str) and h["session_id"], h
        assert isinstance(h["server_id"], str) and h["server_id"], h
        assert h["heartbeat_s"] == 30 and type(h["heartbeat_s"]) is int, h
        assert h["max_message_bytes"] == 16384 and \
            type(h["max_message_bytes"]) is int, h
        ts = h["server_ts"]
        assert type(ts) is int, "server_ts must be integer ms: %r" % (ts,)
        assert before - 5000 <= ts <= after + 5000, (
            "server_ts %d not within the connect time [%d, %d]"
            % (ts, before, after))
    finally:
        c.close()


def test_hello_default_device(stack):
    user = unique("nodev")
    c = stack.connect(user, None)
    try:
        assert c.hello["device_id"] == "default", c.hello
    finally:
        c.close()


def test_session_ids_differ(stack):
    user = unique("sids")
    a = stack.connect(user, "a")
    b = stack.connect(user, "b")
    try:
        assert a.hello["session_id"] != b.hello["session_id"]
    finally:
        close_all(a, b)


def _check_registration(stack, c, user, dev):
    sess = wait_for(lambda: stack.sessions(user).get(dev), 5,
                    what="chat:sess:%s field %s" % (user, dev))
    parts = sess.split(" ")
    assert len(parts) == 2, "session value must be '<node> <sid>': %r" % sess
    node, sid = parts
    assert node.startswith(c.hello["server_id"] + ":"), (
        "node %r should be <server_id>:<worker> (server_id %r)"
        % (node, c.hello["server_id"]))
    assert re.match(r"^\d+$", node[len(c.hello["server_id"]) + 1:]), node
    assert SID_RE.match(sid), "sid must be 16 lowercase hex digits: %r" % sid
    assert sid == c.hello["session_id"], (
        "Redis sid %r differs from hello.session_id %r"
        % (sid, c.hello["session_id"]))
    return node, sid


def test_session_registered_then_removed_on_close(stack):
    user = unique("reg")
    c = stack.connect(user, "tablet")
    try:
        _check_registration(stack, c, user, "tablet")
    finally:
        c.close()
    wait_for(lambda: "tablet" not in stack.sessions(user), 10,
             what="session removed from chat:sess:%s after close" % user)


def test_session_removed_on_tcp_drop(stack):
    user = unique("drop")
    c = stack.connect(user, "d")
    _check_registration(stack, c, user, "d")
    c.abort()
    wait_for(lambda: "d" not in stack.sessions(user), 10,
             what="session removed after the TCP connection dropped")


def test_two_devices_both_registered(stack):
    user = unique("twodev")
    a = stack.connect(user, "a")
    b = stack.connect(user, "b")
    try:
        _check_registration(stack, a, user, "a")
        _check_registration(stack, b, user, "b")
        ping(a, "a1")
        ping(b, "b1")
    finally:
        close_all(a, b)


def test_same_device_replaces_older_with_4001(stack):
    user = unique("repl")
    other = stack.connect(user, "other")
    prev = stack.connect(user, "phone")
    try:
        # several rounds so that old and new land on different nginx
        # worker processes at least sometimes
        for i in range(4):
            new = stack.connect(user, "phone")
            code = prev.expect_close(10)
            assert code == 4001, (
                "round %d: the replaced connection closed with %r, "
                "expected 4001" % (i, code))
            assert ping(new, "after-%d" % i)["type"] == "pong"
            time.sleep(0.3)
            val = stack.sessions(user).get("phone")
            assert val and val.split(" ")[-1] == new.hello["session_id"], (
                "round %d: chat:sess still names %r, new session is %r "
                "(the old one's close must not remove the new entry)"
                % (i, val, new.hello["session_id"]))
            prev = new
        # the other device was not touched
        assert ping(other, "other")["type"] == "pong"
        assert "other" in stack.sessions(user)
    finally:
        close_all(prev, other)


def test_json_ping_pong(stack):
    c = stack.connect(unique("ping"))
    try:
        c.send_json({"type": "ping", "req_id": "x"})
        f = c.recv_type("pong", 10)
        assert f.get("req_id") == "x", "pong must echo req_id 'x': %r" % f
        c.send_json({"type": "ping"})
        f = c.recv_type("pong", 10)
        assert f["type"] == "pong"
    finally:
        c.close()


def test_ws_ping_gets_pong(stack):
    c = stack.connect(unique("wsping"))
    try:
        c.send_frame(wsclient.OP_PING, b"hi there")
        deadline = time.monotonic() + 10
        while True:
            op, payload = c.recv_frame(max(0.0, deadline - time.monotonic()))
            if op == wsclient.OP_PONG:
                assert payload == b"hi there", payload
                break
    finally:
        c.close()


def test_client_close_is_echoed(stack):
    c = stack.connect(unique("close"))
    c.send_close(1000)
    code = c.expect_close(10)
    assert code == 1000, "server answered our close 1000 with %r" % code
    c.abort()


HEARTBEAT = 2.0        # chat_heartbeat of the /chat-hb location


def test_heartbeat_ping_and_silent_client_dropped(stack):
    """The server pings every interval; a client that answers nothing is
    closed two intervals after its last byte (the contract), not three."""
    user = unique("hb")
    url = stack.url.replace("/chat", "/chat-hb")
    c = stack.connect(user, "d", url=url, auto_pong=False)
    t0 = time.monotonic()
    try:
        assert c.hello["heartbeat_s"] == HEARTBEAT, c.hello
        while not c.pings:
            c.recv_frame(max(0.1, t0 + 3 * HEARTBEAT - time.monotonic()))
        first = time.monotonic() - t0
        assert first <= HEARTBEAT + 0.5, "first ping after %.1fs" % first
        c.expect_close(4 * HEARTBEAT)
        took = time.monotonic() - t0
        assert 2 * HEARTBEAT - 0.3 <= took <= 2 * HEARTBEAT + 1.5, \
            "silent client closed %.1fs after its last byte" % took
        wait_for(lambda: "d" not in stack.sessions(user), 10,
                 what="session removed after heartbeat timeout")
    finally:
        c.abort()


def test_heartbeat_keeps_a_client_that_answers(stack):
    """Pongs are bytes too: a client that only answers pings stays."""
    c = stack.connect(unique("hbok"), "d",
                      url=stack.url.replace("/chat", "/chat-hb"))
    try:
        c.drain(3 * HEARTBEAT + 0.5)        # reading answers the pings
        c.send_json({"type": "ping", "req_id": 1})
        assert c.recv_type("pong", 5) == {"type": "pong", "req_id": 1}
        assert len(c.pings) >= 3, c.pings
    finally:
        c.close()


def test_heartbeat_counts_from_the_last_byte(stack):
    """A client that talks, then falls silent without answering pings, is
    closed two intervals after it last sent something."""
    c = stack.connect(unique("hblast"), "d",
                      url=stack.url.replace("/chat", "/chat-hb"),
                      auto_pong=False)
    try:
        for i in range(4):
            time.sleep(HEARTBEAT * 0.8)
            c.send_json({"type": "ping", "req_id": i})
        last = time.monotonic()
        c.expect_close(4 * HEARTBEAT)
        took = time.monotonic() - last
        assert 2 * HEARTBEAT - 0.3 <= took <= 2 * HEARTBEAT + 1.5, \
            "closed %.1fs after the last byte" % took
    finally:
        c.abort()


def test_rapid_reconnects_newest_connection_wins(stack):
    """Each new connection of a device replaces the one before (4001), even
    when the older one's registration reaches Redis after the newer one's
    (two nginx workers, each on its own Redis link): the newest must never
    be the one kicked, and it must stay registered."""
    user = "rapid_%d" % int(time.time() * 1000)
    prev = None
    for i in range(1500):
        c = stack.connect(user, "d")
        if prev is not None:
            prev.abort()
        c.send_json({"type": "ping", "req_id": i})
        try:
            f = c.recv_json(5)
        except wsclient.ConnectionClosed as e:
            raise AssertionError("connection %d, the newest, was closed "
                                 "with %r" % (i, e.code))
        assert f == {"type": "pong", "req_id": i}, f
        prev = c
    c = prev
    c.send_json({"type": "ping", "req_id": "last"})
    f = c.recv_json(5)
    assert f == {"type": "pong", "req_id": "last"}, f
    sid = c.hello["session_id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if (stack.sessions(user).get("d") or "").endswith(" " + sid):
            break
        time.sleep(0.1)
    assert (stack.sessions(user).get("d") or "").endswith(" " + sid), \
        "the newest connection is not the registered one: %r" % (
            stack.sessions(user),)
    c.send_json({"type": "ping", "req_id": "still"})
    f = c.recv_json(5)
    assert f == {"type": "pong", "req_id": "still"}, \
        "the newest connection was closed: %r" % (f,)
    c.close()
