"""Direct conversations: delivery, acks, durability, sync, idempotency,
order, history, authorization, req_id echo."""

import time

import pytest

from chatlib import (Collector, dm_id, expect_ack, expect_message, history,
                     ping, send_msg, sync, unique)

ACK_FIELDS = ("client_msg_id", "message_id", "conversation_id", "seq",
              "server_ts")
MSG_FIELDS = ("message_id", "conversation_id", "seq", "sender_id",
              "client_msg_id", "kind", "body", "server_ts")


def stored(stack, sender, cmid):
    return int(stack.psql(
        "select count(*) from messages where sender_id='%s' and "
        "client_msg_id='%s'" % (sender, cmid.replace("'", "''"))))


def no_message(c, pred, duration, what):
    """Assert that no frame matching pred arrives within duration."""
    frames = c.drain(duration)
    bad = [f for f in frames if pred(f)]
    assert not bad, "%s: %r" % (what, bad)
    return frames


def check_ack(ack, cmid, conv):
    for k in ACK_FIELDS:
        assert k in ack, "ack lacks %r: %r" % (k, ack)
    assert ack["client_msg_id"] == cmid
    assert isinstance(ack["message_id"], str) and ack["message_id"], (
        "message_id must be a non-empty string: %r" % ack)
    assert ack["conversation_id"] == conv, ack
    assert type(ack["seq"]) is int and ack["seq"] >= 1, ack
    assert type(ack["server_ts"]) is int, ack
    assert abs(ack["server_ts"] - time.time() * 1000) < 60000, (
        "ack server_ts %r is not now" % ack["server_ts"])


def check_message(m, ack, sender, cmid, body, conv):
    for k in MSG_FIELDS:
        assert k in m, "message lacks %r: %r" % (k, m)
    assert m["type"] == "message"
    assert isinstance(m["message_id"], str)
    assert m["message_id"] == ack["message_id"], (m, ack)
    assert m["conversation_id"] == conv, m
    assert type(m["seq"]) is int and m["seq"] == ack["seq"], (m, ack)
    assert m["sender_id"] == sender, m
    assert m["client_msg_id"] == cmid, m
    assert m["kind"] == "text", m
    assert m["body"] == body, "body changed in transit: %r != %r" % (
        m["body"], body)
    assert type(m["server_ts"]) is int, m


# -- delivery ----------------------------------------------------------------

def test_online_delivery_every_field(stack, clients):
    a_id, b_id = unique("alice"), unique("bob")
    a = clients.add(stack.connect(a_id, "phone"))
    b = clients.add(stack.connect(b_id, "phone"))
    conv = dm_id(a_id, b_id)
    body = "h\u00e9llo \U0001F44B \"quoted\" back\\slash\nnew line\t</script>"
    send_msg(a, "c1", body, to=b_id)
    ack = expect_ack(a, "c1")
    check_ack(ack, "c1", conv)
    assert ack["seq"] == 1, "first message of a new conversation: %r" % ack
    m = expect_message(b, "c1")
    check_message(m, ack, a_id, "c1", body, conv)
    # and the other way round, seq 2
    send_msg(b, "r1", "reply", to=a_id)
    ack2 = expect_ack(b, "r1")
    assert ack2["seq"] == 2 and ack2["conversation_id"] == conv, ack2
    check_message(expect_message(a, "r1"), ack2, b_id, "r1", "reply", conv)


def test_conversation_id_order_is_byte_order(stack, clients):
    # upper case sorts before lower case in byte order
    base = unique("")[1:]
    a_id, b_id = "zed" + base, "Zed" + base
    a = clients.add(stack.connect(a_id))
    clients.add(stack.connect(b_id))
    send_msg(a, "o1", "x", to=b_id)
    ack = expect_ack(a, "o1")
    assert ack["conversation_id"] == "dm:%s:%s" % (b_id, a_id), ack


def test_ack_only_after_durable_storage(stack, clients):
    a_id, b_id = unique("dur"), unique("dur")
    a = clients.add(stack.connect(a_id))
    for i in range(5):
        cmid = "d%d" % i
        send_msg(a, cmid, "durable %d" % i, to=b_id)
        expect_ack(a, cmid)
        n = stored(stack, a_id, cmid)
        assert n == 1, ("ack for %s arrived but PostgreSQL holds %d rows "
                        "for it" % (cmid, n))


def test_send_by_conversation_id(stack, clients):
    a_id, b_id = unique("cv"), unique("cv")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    conv = dm_id(a_id, b_id)
    send_msg(a, "first", "by to", to=b_id)
    expect_ack(a, "first")
    expect_message(b, "first")
    send_msg(a, "second", "by conversation_id", conv=conv)
    ack = expect_ack(a, "second")
    check_ack(ack, "second", conv)
    assert ack["seq"] == 2, ack
    check_message(expect_message(b, "second"), ack, a_id, "second",
                  "by conversation_id", conv)


def test_every_device_of_recipient_and_senders_other_device(stack, clients):
    a_id, b_id = unique("multi"), unique("multi")
    a1 = clients.add(stack.connect(a_id, "one"))
    a2 = clients.add(stack.connect(a_id, "two"))
    b1 = clients.add(stack.connect(b_id, "one"))
    b2 = clients.add(stack.connect(b_id, "two"))
    conv = dm_id(a_id, b_id)
    send_msg(a1, "m1", "to all", to=b_id)
    ack = expect_ack(a1, "m1")
    for who, c in (("sender's other device", a2), ("recipient device 1", b1),
                   ("recipient device 2", b2)):
        try:
            m = expect_message(c, "m1", 10)
        except TimeoutError as e:
            pytest.fail("%s did not get the message: %s" % (who, e))
        check_message(m, ack, a_id, "m1", "to all", conv)
    no_message(a1, lambda f: f.get("type") == "message", 1.5,
               "the sending device must not get its own message")
    # exactly once per device
    for c in (a2, b1, b2):
        no_message(c, lambda f: f.get("type") == "message"
                   and f.get("client_msg_id") == "m1", 0.5,
                   "delivered twice")


# -- sync ----------------------------------------------------------------------

def test_offline_recipient_gets_messages_through_sync(stack, clients):
    a_id, b_id = unique("off"), unique("off")
    a = clients.add(stack.connect(a_id))
    conv = dm_id(a_id, b_id)
    acks = []
    for i in range(3):
        send_msg(a, "o%d" % i, "offline %d" % i, to=b_id)
        acks.append(expect_ack(a, "o%d" % i))
    b = clients.add(stack.connect(b_id, "phone"))
    req = "sync-" + unique("r")
    b.send_json({"type": "sync", "req_id": req})
    order = []
    convs = msgs = done = None
    msgs = []
    deadline = time.monotonic() + 30
    while done is None:
        f = b.recv_json(max(0.1, deadline - time.monotonic()))
        if f.get("type") == "conversations" and f.get("req_id") == req:
            convs = f
            order.append("conversations")
        elif f.get("type") == "message" and f.get("conversation_id") == conv:
            msgs.append(f)
            order.append("message")
        elif f.get("type") == "sync_done" and f.get("req_id") == req:
            done = f
            order.append("sync_done")
        elif f.get("type") == "error":
            pytest.fail("sync answered with %r" % f)
    assert order == ["conversations", "message", "message", "message",
                     "sync_done"], "frame order of the sync: %r" % order
    items = [it for it in convs["items"] if it.get("conversation_id") == conv]
    assert len(items) == 1, "conversations must list %s once: %r" % (
        conv, convs["items"])
    it = items[0]
    for k in ("conversation_id", "kind", "name", "member_count", "last_seq",
              "delivered_seq", "read_seq", "unread", "last_message"):
        assert k in it, "conversation item lacks %r: %r" % (k, it)
    assert it["kind"] == "direct", it
    assert it["member_count"] == 2, it
    assert it["last_seq"] == 3, it
    assert type(it["delivered_seq"]) is int and it["delivered_seq"] <= 3, it
    assert type(it["read_seq"]) is int and it["read_seq"] == 0, it
    assert it["unread"] == 3, it
    assert isinstance(it["last_message"], dict) and \
        it["last_message"].get("seq") == 3, it
    for i, (m, ack) in enumerate(zip(msgs, acks)):
        check_message(m, ack, a_id, "o%d" % i, "offline %d" % i, conv)
    assert done == {"type": "sync_done", "req_id": req} or \
        done.get("req_id") == req

    # with a cursor: only what is after it
    conv_f, msgs2, _ = sync(b, "s2", cursors={conv: 2})
    got = [m["seq"] for m in msgs2 if m["conversation_id"] == conv]
    assert got == [3], "sync with cursor 2 must give seq 3 only: %r" % got
    # with a cursor at the end: nothing
    _, msgs3, _ = sync(b, "s3", cursors={conv: 3})
    assert [m for m in msgs3 if m["conversation_id"] == conv] == [], msgs3


def test_sync_lists_newest_activity_first(stack, clients):
    me = unique("me")
    p1, p2 = unique("p"), unique("p")
    m = clients.add(stack.connect(me))
    send_msg(m, "to1", "x", to=p1)
    expect_ack(m, "to1")
    send_msg(m, "to2", "y", to=p2)
    expect_ack(m, "to2")
    convs, _, _ = sync(m, "order")
    ids = [it["conversation_id"] for it in convs["items"]]
    assert ids.index(dm_id(me, p2)) < ids.index(dm_id(me, p1)), (
        "newest activity first: %r" % ids)
    # own messages are not unread
    for it in convs["items"]:
        assert it["unread"] == 0, "own messages counted unread: %r" % it


# -- idempotency ---------------------------------------------------------------

def test_same_client_msg_id_twice_is_one_message(stack, clients):
    a_id, b_id = unique("idem"), unique("idem")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    send_msg(a, "dup", "once", to=b_id)
    send_msg(a, "dup", "once", to=b_id)
    ack1 = expect_ack(a, "dup")
    ack2 = expect_ack(a, "dup")
    assert (ack1["message_id"], ack1["seq"]) == \
        (ack2["message_id"], ack2["seq"]), (ack1, ack2)
    expect_message(b, "dup")
    no_message(b, lambda f: f.get("client_msg_id") == "dup", 2.0,
               "a retried send was delivered twice")
    assert stored(stack, a_id, "dup") == 1
    # a later message gets the next seq: the duplicate used none
    send_msg(a, "next", "after", to=b_id)
    assert expect_ack(a, "next")["seq"] == ack1["seq"] + 1


def test_same_client_msg_id_across_reconnect_and_devices(stack, clients):
    a_id, b_id = unique("idr"), unique("idr")
    b = clients.add(stack.connect(b_id))
    a = stack.connect(a_id, "phone")
    send_msg(a, "retry-me", "body", to=b_id)
    ack1 = expect_ack(a, "retry-me")
    a.close()
    a = clients.add(stack.connect(a_id, "phone"))
    send_msg(a, "retry-me", "body", to=b_id)
    ack2 = expect_ack(a, "retry-me")
    assert (ack2["message_id"], ack2["seq"]) == \
        (ack1["message_id"], ack1["seq"]), (ack1, ack2)
    # the same user on another device: still the same message
    a2 = clients.add(stack.connect(a_id, "laptop"))
    send_msg(a2, "retry-me", "body", to=b_id)
    ack3 = expect_ack(a2, "retry-me")
    assert (ack3["message_id"], ack3["seq"]) == \
        (ack1["message_id"], ack1["seq"]), (ack1, ack3)
    frames = b.drain(2.0)
    got = [f for f in frames if f.get("type") == "message"
           and f.get("client_msg_id") == "retry-me"]
    assert len(got) == 1, "recipient got %d deliveries: %r" % (len(got), got)
    assert stored(stack, a_id, "retry-me") == 1


def test_same_client_msg_id_other_user_is_other_message(stack, clients):
    a_id, c_id, b_id = unique("x"), unique("y"), unique("z")
    a = clients.add(stack.connect(a_id))
    c = clients.add(stack.connect(c_id))
    send_msg(a, "same", "from a", to=b_id)
    send_msg(c, "same", "from c", to=b_id)
    ka, kc = expect_ack(a, "same"), expect_ack(c, "same")
    assert ka["message_id"] != kc["message_id"], (ka, kc)


# -- order -------------------------------------------------------------------

def test_500_pipelined_sends_in_order(stack, clients):
    a_id, b_id = unique("pipe"), unique("pipe")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    conv = dm_id(a_id, b_id)
    ca = Collector(a, "acks").start()
    cb = Collector(b, "msgs").start()
    n = 500
    try:
        t0 = time.monotonic()
        for i in range(n):
            send_msg(a, "p%03d" % i, "message %d" % i, to=b_id)
        sent = time.monotonic() - t0

        def answers(fs):
            return sum(1 for f in fs if f.get("type") in ("ack", "error")) >= n

        def delivered(fs):
            return sum(1 for f in fs if f.get("type") == "message") >= n
        ca.wait(answers, 60)
        cb.wait(delivered, 60)
        took = time.monotonic() - t0
    finally:
        ca.stop()
        cb.stop()
    errors = ca.snapshot("error")
    acks = ca.snapshot("ack")
    msgs = [m for m in cb.snapshot("message") if m["conversation_id"] == conv]
    assert not errors, "%d sends failed, first %r" % (len(errors), errors[:3])
    assert len(acks) == n, "%d of %d acks in %.1fs (sent in %.1fs)" % (
        len(acks), n, took, sent)
    by_cmid = {k["client_msg_id"]: k for k in acks}
    assert len(by_cmid) == n, "duplicate acks"
    seqs = [by_cmid["p%03d" % i]["seq"] for i in range(n)]
    assert seqs == list(range(1, n + 1)), (
        "seqs must follow the send order without gaps; first deviation at "
        "%r" % next(((i, s) for i, s in enumerate(seqs) if s != i + 1), None))
    got = [m["seq"] for m in msgs]
    assert len(got) == n, "recipient got %d of %d messages" % (len(got), n)
    assert got == list(range(1, n + 1)), (
        "recipient order not 1..%d; first deviation %r" % (
            n, next(((i, s) for i, s in enumerate(got) if s != i + 1), None)))
    assert [m["client_msg_id"] for m in msgs] == \
        ["p%03d" % i for i in range(n)]


# -- history -------------------------------------------------------------------

def _seqs(h):
    return [m["seq"] for m in h["messages"]]


def test_history_pages(stack, clients):
    a_id, b_id = unique("hist"), unique("hist")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    conv = dm_id(a_id, b_id)
    for i in range(1, 26):
        send_msg(a, "h%02d" % i, "history %d" % i, to=b_id)
    for i in range(1, 26):
        expect_ack(a, "h%02d" % i, 30)

    h = history(b, conv, "newest", limit=10)
    assert h["type"] == "history", h
    assert h["req_id"] == "newest" and h["conversation_id"] == conv, h
    assert _seqs(h) == list(range(16, 26)), "newest page: %r" % _seqs(h)
    assert h["has_more"] is True, h["has_more"]
    m = h["messages"][-1]
    for k in ("message_id", "seq", "sender_id", "client_msg_id", "kind",
              "body", "server_ts"):
        assert k in m, "history message lacks %r: %r" % (k, m)
    assert m["body"] == "history 25" and m["sender_id"] == a_id
    assert m["client_msg_id"] == "h25" and m["kind"] == "text"
    assert isinstance(m["message_id"], str)

    h = history(b, conv, "b16", limit=10, before_seq=16)
    assert _seqs(h) == list(range(6, 16)), "before 16: %r" % _seqs(h)
    assert h["has_more"] is True
    h = history(b, conv, "b6", limit=10, before_seq=6)
    assert _seqs(h) == [1, 2, 3, 4, 5], "before 6: %r" % _seqs(h)
    assert h["has_more"] is False
    h = history(b, conv, "b1", limit=10, before_seq=1)
    assert _seqs(h) == [] and h["has_more"] is False, h

    h = history(b, conv, "a0", limit=10, after_seq=0)
    assert _seqs(h) == list(range(1, 11)), "after 0: %r" % _seqs(h)
    assert h["has_more"] is True
    h = history(b, conv, "a10", limit=10, after_seq=10)
    assert _seqs(h) == list(range(11, 21)), "after 10: %r" % _seqs(h)
    assert h["has_more"] is True
    h = history(b, conv, "a20", limit=10, after_seq=20)
    assert _seqs(h) == list(range(21, 26)), "after 20: %r" % _seqs(h)
    assert h["has_more"] is False
    h = history(b, conv, "a25", limit=10, after_seq=25)
    assert _seqs(h) == [] and h["has_more"] is False, h

    h = history(a, conv, "dflt")
    assert _seqs(h) == list(range(1, 26)), "default limit 50: %r" % _seqs(h)
    assert h["has_more"] is False
    h = history(a, conv, "l100", limit=100)
    assert _seqs(h) == list(range(1, 26))
    h = history(a, conv, "l1", limit=1)
    assert _seqs(h) == [25] and h["has_more"] is True, h


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_history_limit_out_of_range(stack, clients, limit):
    a_id, b_id = unique("lim"), unique("lim")
    a = clients.add(stack.connect(a_id))
    h = history(a, dm_id(a_id, b_id), "lim-%d" % limit, limit=limit)
    assert h["type"] == "error" and h.get("code") == "bad_request", (
        "limit %d: %r" % (limit, h))
    assert h.get("req_id") == "lim-%d" % limit, h
    ping(a, "alive")


def test_history_of_conversation_not_begun_is_empty(stack, clients):
    a_id, b_id = unique("nb"), unique("nb")
    a = clients.add(stack.connect(a_id))
    h = history(a, dm_id(a_id, b_id), "empty")
    assert h["type"] == "history", (
        "a member's read of a direct conversation not yet begun must be "
        "empty, got %r" % h)
    assert h["messages"] == [] and h["has_more"] is False, h


# -- authorization -----------------------------------------------------------

def test_outsider_is_forbidden(stack, clients):
    a_id, b_id, c_id = unique("in"), unique("in"), unique("out")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    c = clients.add(stack.connect(c_id))
    conv = dm_id(a_id, b_id)
    send_msg(a, "secret", "for b only", to=b_id)
    expect_ack(a, "secret")
    expect_message(b, "secret")

    send_msg(c, "intrude", "hi", conv=conv)
    f = c.recv_until(lambda o: o.get("client_msg_id") == "intrude", 15,
                     what="answer to the outsider's send")
    assert f["type"] == "error" and f.get("code") == "forbidden", f
    h = history(c, conv, "peek")
    assert h["type"] == "error" and h.get("code") == "forbidden", h
    assert h.get("req_id") == "peek"
    for nid in ("dm:%s:%s" % (unique("q"), unique("r")),
                "grp_" + unique("none")):
        h = history(c, nid, "ghost")
        assert h["type"] == "error" and h.get("code") == "forbidden", (
            "history of %s (does not exist): %r" % (nid, h))
        send_msg(c, "ghost-" + nid[-6:], "x", conv=nid)
        f = c.recv_until(lambda o: o.get("client_msg_id") ==
                         "ghost-" + nid[-6:], 15, what="send answer")
        assert f["type"] == "error" and f.get("code") == "forbidden", (
            "send to %s (does not exist): %r" % (nid, f))
    _, msgs, _ = sync(c, "outsider-sync")
    assert not [m for m in msgs if m.get("conversation_id") == conv]
    # nothing of the intrusion reached a or b, nothing was stored
    assert stored(stack, c_id, "intrude") == 0
    no_message(b, lambda f: f.get("type") == "message"
               and f.get("sender_id") == c_id, 1.0,
               "a forbidden send was delivered")
    ping(c, "still")


# -- req_id echo ---------------------------------------------------------------

# strings and numbers (PROTOCOL.md: echoed exactly as sent); objects and
# arrays because README.md says the req_id is "any JSON value, echoed"
REQ_IDS = ["x", "r\u00e9q \"1\" \\ /", "", 42, 0, -7, 2.5,
           9007199254740993, {"k": [1, "x", None]}, [1, 2]]


@pytest.mark.parametrize("req_id", REQ_IDS, ids=[repr(r) for r in REQ_IDS])
def test_req_id_echoed_exactly(stack, clients, req_id):
    a_id, b_id = unique("rid"), unique("rid")
    a = clients.add(stack.connect(a_id))

    def same(o):
        return "req_id" in o and o["req_id"] == req_id and \
            type(o["req_id"]) is type(req_id)

    a.send_json({"type": "ping", "req_id": req_id})
    p = a.recv_until(lambda o: o.get("type") == "pong", 10, what="pong")
    assert same(p), "ping req_id %r came back as %r" % (req_id, p)
    h = history(a, dm_id(a_id, b_id), req_id)
    assert h["type"] == "history" and same(h), (
        "history req_id %r came back as %r" % (req_id, h))
    a.send_json({"type": "history", "req_id": req_id,
                 "conversation_id": dm_id(a_id, b_id), "limit": 0})
    e = a.recv_until(lambda o: o.get("type") == "error", 10, what="error")
    assert same(e), "error req_id %r came back as %r" % (req_id, e)
    _, _, done = sync(a, req_id)
    assert same(done), "sync_done req_id %r came back as %r" % (req_id, done)


def test_client_msg_id_echoed_exactly(stack, clients):
    a_id, b_id = unique("cm"), unique("cm")
    a = clients.add(stack.connect(a_id))
    for cmid in ("A-b_c.d:e/f \u00e9", "x" * 64, "1"):
        send_msg(a, cmid, "b", to=b_id)
        assert expect_ack(a, cmid)["client_msg_id"] == cmid


def test_large_body_delivered(stack, clients):
    a_id, b_id = unique("lb"), unique("lb")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    body = ("\u00e9" * 3000) + ("z" * 9000)
    send_msg(a, "big", body, to=b_id)
    expect_ack(a, "big")
    assert expect_message(b, "big")["body"] == body
