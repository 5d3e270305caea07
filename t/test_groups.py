"""Groups, the conversation list, receipts, typing and multi-device sync
(issue #3), written against ../shared/PROTOCOL.md.

Every frame a test reads through the helpers below is kept in the client's
`log`, so that "exactly once" and "in this order" can be checked on all of
them afterwards, not only on those a wait happened to look for.

Measurements (fan-out latency of the 256-member group, which error a
129-character name gets) are printed, not asserted; they show in a plain
`pytest -v` run.
"""

import collections
import json
import resource
import selectors
import subprocess
import time

import wsclient
from chatlib import dm_id, unique

T = 15.0            # how long to wait for an answer or a delivery
QUIET = 1.0         # how long "nothing more arrives" is watched
SYNC_CAP = 100      # the worker's per-conversation cap in sync

MSG_FIELDS = ("message_id", "conversation_id", "seq", "kind", "body",
              "server_ts")
ITEM_FIELDS = ("conversation_id", "kind", "name", "member_count", "last_seq",
               "delivered_seq", "read_seq", "unread", "last_message")


def report(capsys, text):
    """Print past pytest's capture: shows in a normal run."""
    with capsys.disabled():
        print("\n    [test_groups] " + text.replace("\n", "\n    "))


# -- reading with a log -------------------------------------------------------

def log_of(c):
    if getattr(c, "log", None) is None:
        c.log = []
    return c.log


def wait_frame(c, pred, timeout=T, what="a frame"):
    """The first frame in c's log matching pred, reading more (and logging
    them) until one comes."""
    log = log_of(c)
    for f in log:
        if pred(f):
            return f
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                "%s/%s: timed out after %.0fs waiting for %s; last frames: %s"
                % (c.user, c.dev, timeout, what,
                   json.dumps(log[-6:])[:1500]))
        try:
            f = c.recv_json(remaining)
        except TimeoutError:
            continue
        log.append(f)
        if pred(f):
            return f


def settle(c, duration=QUIET):
    """Read (and log) whatever comes within duration; returns the log."""
    log = log_of(c)
    log.extend(c.drain(duration))
    return log


def answer(c, req_id, timeout=T, types=("group", "history", "error",
                                         "pong", "sync_done")):
    return wait_frame(c, lambda f: f.get("type") in types
                      and f.get("req_id") == req_id, timeout,
                      "the answer to req_id %r" % (req_id,))


def msgs(c, conv, kind=None):
    """Message frames of conv in c's log, in arrival order."""
    return [f for f in log_of(c) if f.get("type") == "message"
            and f.get("conversation_id") == conv
            and (kind is None or f.get("kind") == kind)]


def wait_seq(c, conv, seq, timeout=T):
    return wait_frame(c, lambda f: f.get("type") == "message"
                      and f.get("conversation_id") == conv
                      and f.get("seq") == seq, timeout,
                      "message seq %d of %s" % (seq, conv))


def wait_receipt(c, conv, user, state, seq, timeout=T):
    return wait_frame(c, lambda f: f.get("type") == "receipt"
                      and f.get("conversation_id") == conv
                      and f.get("user_id") == user
                      and f.get("state") == state and f.get("seq") == seq,
                      timeout, "receipt %s %s %d" % (user, state, seq))


def send(c, cmid, body, conv=None, to=None):
    frame = {"type": "send", "client_msg_id": cmid, "body": body}
    if conv is not None:
        frame["conversation_id"] = conv
    if to is not None:
        frame["to"] = to
    c.send_json(frame)


def ack(c, cmid, timeout=T):
    f = wait_frame(c, lambda f: f.get("type") in ("ack", "error")
                   and f.get("client_msg_id") == cmid, timeout,
                   "the ack of %r" % cmid)
    assert f["type"] == "ack", "send %r answered %r" % (cmid, f)
    return f


def send_ack(c, cmid, body, conv=None, to=None):
    send(c, cmid, body, conv=conv, to=to)
    return ack(c, cmid)


def create_group(c, name, members, req_id=None, timeout=T):
    req_id = req_id if req_id is not None else unique("cg")
    frame = {"type": "create_group", "req_id": req_id, "name": name}
    if members is not None:
        frame["members"] = members
    c.send_json(frame)
    return answer(c, req_id, timeout)


def new_group(c, name, members):
    g = create_group(c, name, members)
    assert g["type"] == "group", "create_group answered %r" % (g,)
    return g["conversation_id"]


def change(c, op, conv, user_ids, req_id=None):
    req_id = req_id if req_id is not None else unique(op[:3])
    c.send_json({"type": op, "req_id": req_id, "conversation_id": conv,
                 "user_ids": user_ids})
    return answer(c, req_id)


def receipt(c, conv, seq, state, req_id=None):
    frame = {"type": "receipt", "conversation_id": conv, "seq": seq,
             "state": state}
    if req_id is not None:
        frame["req_id"] = req_id
    c.send_json(frame)


def typing(c, conv, state):
    c.send_json({"type": "typing", "conversation_id": conv, "state": state})


def ping(c):
    rid = unique("ping")
    c.send_json({"type": "ping", "req_id": rid})
    assert answer(c, rid)["type"] == "pong"


def hist(c, conv, req_id=None, **kw):
    req_id = req_id if req_id is not None else unique("h")
    frame = {"type": "history", "req_id": req_id, "conversation_id": conv}
    frame.update(kw)
    c.send_json(frame)
    return answer(c, req_id)


def hist_all(c, conv):
    """Every message of conv c may read, paging forward; or the error."""
    out, after = [], 0
    for _ in range(1000):
        h = hist(c, conv, after_seq=after, limit=100)
        if h["type"] != "history":
            return h
        if not h["messages"]:
            return out
        out.extend(h["messages"])
        after = h["messages"][-1]["seq"]
    raise AssertionError("history paging did not end")


def do_sync(c, req_id=None, cursors=None, timeout=30.0):
    """Run a sync; returns (conversations frame, messages between it and
    sync_done)."""
    req_id = req_id if req_id is not None else unique("sync")
    frame = {"type": "sync", "req_id": req_id}
    if cursors is not None:
        frame["cursors"] = cursors
    c.send_json(frame)
    done = wait_frame(c, lambda f: f.get("req_id") == req_id
                      and f.get("type") in ("sync_done", "error"), timeout,
                      "sync_done of %r" % req_id)
    assert done["type"] == "sync_done", "sync answered %r" % (done,)
    log = log_of(c)
    end = next(i for i, f in enumerate(log) if f is done)
    starts = [i for i, f in enumerate(log[:end])
              if f.get("type") == "conversations"
              and f.get("req_id") == req_id]
    assert len(starts) == 1, ("one conversations frame must come before "
                              "sync_done, got %d" % len(starts))
    between = log[starts[0] + 1:end]
    return log[starts[0]], [f for f in between if f.get("type") == "message"]


def item(convs, conv):
    its = [it for it in convs["items"] if it.get("conversation_id") == conv]
    assert len(its) == 1, "conversations must list %s once: %s" % (
        conv, json.dumps(convs["items"])[:1500])
    it = its[0]
    for k in ITEM_FIELDS:
        assert k in it, "conversation item lacks %r: %r" % (k, it)
    return it


def seqs(frames):
    return [f["seq"] for f in frames]


# -- checks -------------------------------------------------------------------

def check_msg(m, conv, seq=None, kind=None):
    for k in MSG_FIELDS:
        assert k in m, "message lacks %r: %r" % (k, m)
    assert isinstance(m["message_id"], str) and m["message_id"], m
    assert m["conversation_id"] == conv, m
    assert type(m["seq"]) is int, m
    assert type(m["server_ts"]) is int, m
    if seq is not None:
        assert m["seq"] == seq, "want seq %d: %r" % (seq, m)
    if kind is not None:
        assert m["kind"] == kind, m


def check_system(m, conv, seq, event, by, user_ids=None):
    check_msg(m, conv, seq, "system")
    body = m["body"]
    assert isinstance(body, dict), (
        "a system message's body is a JSON object, not %s: %r"
        % (type(body).__name__, m))
    assert body.get("event") == event, m
    assert body.get("by") == by, m
    ids = body.get("user_ids")
    assert isinstance(ids, list) and len(ids) == len(set(ids)), (
        "user_ids must be a list without duplicates: %r" % m)
    if user_ids is not None:
        assert sorted(ids) == sorted(user_ids), (
            "%s user_ids %r, want %r" % (event, ids, sorted(user_ids)))
    return body


def check_created(m, conv, creator, members, name):
    """group_created at seq 1; its user_ids are the members (the creator may
    or may not be listed: the contract does not say)."""
    body = check_system(m, conv, 1, "group_created", creator)
    assert body.get("name") == name, m
    assert set(body["user_ids"]) - {creator} == set(members), (
        "group_created user_ids %r, want %r (+ creator)"
        % (body["user_ids"], sorted(members)))
    return body


def roles_of(g):
    roles = {}
    for mem in g["members"]:
        assert "user_id" in mem and "role" in mem, g
        assert mem["user_id"] not in roles, "member listed twice: %r" % g
        roles[mem["user_id"]] = mem["role"]
    return roles


def check_group(g, req_id, conv, name, admins, members):
    assert g["type"] == "group", g
    assert g["req_id"] == req_id, g
    assert isinstance(g["conversation_id"], str) and g["conversation_id"], g
    if conv is not None:
        assert g["conversation_id"] == conv, g
    if name is not None:
        assert g["name"] == name, g
    want = dict((u, "member") for u in members)
    want.update((u, "admin") for u in admins)
    assert roles_of(g) == want, "group members %r, want %r" % (
        g["members"], want)


def is_error(f, code, req_id=None):
    return f["type"] == "error" and f.get("code") == code and (
        req_id is None or f.get("req_id") == req_id)


# -- create_group -------------------------------------------------------------

def test_create_group_answer_and_group_created_everywhere(stack, clients):
    a, b, c, d = (unique(x) for x in ("gca", "gcb", "gcc", "gcd"))
    a1 = clients.add(stack.connect(a, "one"))
    a2 = clients.add(stack.connect(a, "two"))
    b1 = clients.add(stack.connect(b))
    c1 = clients.add(stack.connect(c, "one"))
    c2 = clients.add(stack.connect(c, "two"))
    name = "Team \u00e9\u2713 \"q\" \U0001F600"
    req_id = unique("create")
    g = create_group(a1, name, [b, c, d], req_id=req_id)
    check_group(g, req_id, None, name, [a], [b, c, d])
    conv = g["conversation_id"]
    assert not conv.startswith("dm:"), conv

    # seq 1 to every connected device of every member, the creating one too
    for dev in (a1, a2, b1, c1, c2):
        check_created(wait_seq(dev, conv, 1), conv, a, [b, c, d], name)
    settle(a1, 0.5)
    for dev in (a1, a2, b1, c1, c2):
        settle(dev, 0.1)
        got = msgs(dev, conv)
        assert seqs(got) == [1], "%s/%s: %r" % (dev.user, dev.dev, got)
    assert msgs(a1, conv)[0]["message_id"] == msgs(b1, conv)[0]["message_id"]

    # d was offline: sync and history show it the same
    d1 = clients.add(stack.connect(d))
    convs, got = do_sync(d1)
    it = item(convs, conv)
    assert it["kind"] == "group" and it["name"] == name, it
    assert it["member_count"] == 4 and it["last_seq"] == 1, it
    assert seqs([m for m in got if m["conversation_id"] == conv]) == [1], got
    check_created(got[0], conv, a, [b, c, d], name)
    h = hist(d1, conv)
    assert h["type"] == "history" and seqs(h["messages"]) == [1], h
    check_created(dict(h["messages"][0], conversation_id=conv), conv, a,
                  [b, c, d], name)

    # a member's text goes to all devices but the sending one
    k = send_ack(b1, "hello", "hi all", conv=conv)
    assert k["seq"] == 2 and k["conversation_id"] == conv, k
    for dev in (a1, a2, c1, c2, d1):
        m = wait_seq(dev, conv, 2)
        check_msg(m, conv, 2, "text")
        assert m["body"] == "hi all" and m["sender_id"] == b, m
        assert m["client_msg_id"] == "hello", m
    settle(b1, 0.5)
    assert seqs(msgs(b1, conv)) == [1], (
        "the sending device got its own message")


def test_create_group_folds_duplicates_and_creator(stack, clients):
    a, b, c = unique("fa"), unique("fb"), unique("fc")
    a1 = clients.add(stack.connect(a))
    b1 = clients.add(stack.connect(b))
    rid = unique("fold")
    g = create_group(a1, "fold", [b, b, a, c, c, b, a], req_id=rid)
    check_group(g, rid, None, "fold", [a], [b, c])
    conv = g["conversation_id"]
    check_created(wait_seq(b1, conv, 1), conv, a, [b, c], "fold")

    # a group of the creator alone, members empty or only the creator
    for members in ([], [a, a]):
        rid = unique("solo")
        g = create_group(a1, "solo", members, req_id=rid)
        check_group(g, rid, None, "solo", [a], [])
        check_created(wait_seq(a1, g["conversation_id"], 1),
                      g["conversation_id"], a, [], "solo")


def test_group_name_and_list_limits(stack, clients, capsys):
    a, b = unique("lim"), unique("lim")
    a1 = clients.add(stack.connect(a))
    # 129 characters: too_large or bad_request
    seen = {}
    for name in ("y" * 129, "\u00e9" * 129):
        rid = unique("nm")
        f = create_group(a1, name, [b], req_id=rid)
        assert f["type"] == "error" and f.get("req_id") == rid, f
        assert f.get("code") in ("too_large", "bad_request"), f
        seen[len(name.encode())] = f["code"]
    report(capsys, "create_group with a 129-character name answers: %s"
           % ", ".join("%s (%d bytes)" % (v, k) for k, v in seen.items()))
    for bad in ("", 42, None, ["x"]):
        rid = unique("nm")
        frame = {"type": "create_group", "req_id": rid, "members": [b]}
        if bad is not None:
            frame["name"] = bad
        a1.send_json(frame)
        f = answer(a1, rid)
        assert is_error(f, "bad_request", rid), "name %r: %r" % (bad, f)
    # more than 1000 user ids: too_large
    many = ["m%d%s" % (i, b[-3:]) for i in range(1001)]
    rid = unique("many")
    f = create_group(a1, "many", many, req_id=rid)
    assert is_error(f, "too_large", rid), "create_group, 1001 members: %r" % f
    for bad in (["bad id!"], ["x" * 65], [42], "abc", {"u": 1}):
        rid = unique("ids")
        f = create_group(a1, "bad ids", bad, req_id=rid)
        assert is_error(f, "bad_request", rid), "members %r: %r" % (bad, f)

    # 1 and 128 characters (not bytes) are fine
    for name in ("x", "\u00e9" * 128, "\U0001F600" * 128):
        rid = unique("nm")
        g = create_group(a1, name, [b], req_id=rid)
        assert g["type"] == "group", "name of %d chars (%d bytes): %r" % (
            len(name), len(name.encode()), g)
        assert g["name"] == name, g
    conv = g["conversation_id"]
    for op in ("add_members", "remove_members"):
        rid = unique("many")
        f = change(a1, op, conv, many, req_id=rid)
        assert is_error(f, "too_large", rid), "%s, 1001 ids: %r" % (op, f)
        for bad in ([], ["bad id!"], "abc"):
            rid = unique("ids")
            f = change(a1, op, conv, bad, req_id=rid)
            assert is_error(f, "bad_request", rid), "%s %r: %r" % (op, bad, f)
    # nothing of it happened
    settle(a1, 0.5)
    assert seqs(msgs(a1, conv)) == [1], msgs(a1, conv)
    ping(a1)


# -- membership ---------------------------------------------------------------

def test_membership_permissions(stack, clients):
    a, b, c, d, e = (unique(x) for x in ("pa", "pb", "pc", "pd", "pe"))
    a1 = clients.add(stack.connect(a))
    b1 = clients.add(stack.connect(b))
    c1 = clients.add(stack.connect(c))
    d1 = clients.add(stack.connect(d))
    e1 = clients.add(stack.connect(e))
    conv = new_group(a1, "perm", [b, c])

    # a non-admin may neither add nor remove others; an outsider nothing
    for who, op, ids in ((b1, "add_members", [d]),
                         (b1, "remove_members", [c]),
                         (e1, "add_members", [e]),
                         (e1, "remove_members", [b])):
        rid = unique("no")
        f = change(who, op, conv, ids, req_id=rid)
        assert is_error(f, "forbidden", rid), "%s by %s: %r" % (
            op, who.user, f)
    # an outsider may not read, send or sync it either
    h = hist(e1, conv)
    assert is_error(h, "forbidden"), "outsider's history: %r" % h
    send(e1, "intrude", "let me in", conv=conv)
    f = wait_frame(e1, lambda f: f.get("client_msg_id") == "intrude",
                   what="the answer to an outsider's send")
    assert is_error(f, "forbidden"), f
    convs, pushed = do_sync(e1, cursors={conv: 0})
    assert not [it for it in convs["items"]
                if it.get("conversation_id") == conv], convs
    assert not [m for m in pushed if m["conversation_id"] == conv], pushed
    # a direct conversation has no admin and takes no members
    send_ack(a1, "dm", "hi", to=e)
    rid = unique("dm")
    f = change(a1, "add_members", dm_id(a, e), [d], req_id=rid)
    assert f["type"] == "error" and f.get("req_id") == rid and \
        f.get("code") in ("forbidden", "bad_request"), f
    # a group that does not exist: forbidden too (existence not revealed)
    rid = unique("ghost")
    f = change(a1, "add_members", "g:" + unique("none")[5:], [d], req_id=rid)
    assert is_error(f, "forbidden", rid), f
    settle(c1, 0.3)
    assert seqs(msgs(c1, conv)) == [1], "a refused change left a trace"

    # the admin removes another
    rid = unique("rm")
    g = change(a1, "remove_members", conv, [c], req_id=rid)
    check_group(g, rid, conv, None, [a], [b])
    check_system(wait_seq(c1, conv, 2), conv, 2, "members_removed", a, [c])
    check_system(wait_seq(b1, conv, 2), conv, 2, "members_removed", a, [c])
    # a member removes itself
    rid = unique("self")
    g = change(b1, "remove_members", conv, [b], req_id=rid)
    assert g["type"] == "group", "a member may remove itself: %r" % g
    assert g["req_id"] == rid and g["conversation_id"] == conv, g
    assert b not in roles_of(g), g
    check_system(wait_seq(b1, conv, 3), conv, 3, "members_removed", b, [b])
    check_system(wait_seq(a1, conv, 3), conv, 3, "members_removed", b, [b])
    # the admin adds, duplicates folded; the new member is no admin
    rid = unique("add")
    g = change(a1, "add_members", conv, [d, d], req_id=rid)
    check_group(g, rid, conv, None, [a], [d])
    check_system(wait_seq(d1, conv, 4), conv, 4, "members_added", a, [d])
    rid = unique("no")
    f = change(d1, "add_members", conv, [e], req_id=rid)
    assert is_error(f, "forbidden", rid), f
    # removed members are gone: c may not come back by itself
    rid = unique("no")
    f = change(c1, "add_members", conv, [c], req_id=rid)
    assert is_error(f, "forbidden", rid), f
    settle(a1, 0.5)
    assert seqs(msgs(a1, conv)) == [1, 2, 3, 4], msgs(a1, conv)
    # each saw the stream while a member (and its removal), nothing else
    settle(c1, 0.1)
    settle(d1, 0.1)
    assert seqs(msgs(c1, conv)) == [1, 2], msgs(c1, conv)
    assert seqs(msgs(d1, conv)) == [4], msgs(d1, conv)
    assert seqs(msgs(e1, conv)) == [], msgs(e1, conv)


def membership_scenario(stack, clients):
    """a (admin), b, o (an observer) in a group; c connected, not a member.
    a: text t1; a adds c; b: text t2; a removes b; a: text t3.
    Each step waits for its answer before the next."""
    a, b, c, o = (unique(x) for x in ("ma", "mb", "mc", "mo"))
    s = collections.namedtuple("S", "a b c o a1 b1 c1 o1 conv")(
        a, b, c, o,
        clients.add(stack.connect(a)), clients.add(stack.connect(b)),
        clients.add(stack.connect(c)), clients.add(stack.connect(o)), None)
    conv = new_group(s.a1, "events", [b, o])
    s = s._replace(conv=conv)
    assert send_ack(s.a1, "t1", "before add", conv=conv)["seq"] == 2
    g = change(s.a1, "add_members", conv, [c])
    assert g["type"] == "group", g
    assert send_ack(s.b1, "t2", "between", conv=conv)["seq"] == 4
    g = change(s.a1, "remove_members", conv, [b])
    assert g["type"] == "group", g
    assert send_ack(s.a1, "t3", "after remove", conv=conv)["seq"] == 6
    return s


EXPECTED_STREAM = [(1, "system", "group_created"), (2, "text", "t1"),
                   (3, "system", "members_added"), (4, "text", "t2"),
                   (5, "system", "members_removed"), (6, "text", "t3")]


def stream_of(frames):
    return [(m["seq"], m["kind"], m["body"]["event"] if m["kind"] == "system"
             and isinstance(m["body"], dict) else m.get("client_msg_id"))
            for m in frames]


def test_membership_events_in_seq_stream(stack, clients):
    s = membership_scenario(stack, clients)
    wait_seq(s.o1, s.conv, 6)
    settle(s.o1, 0.5)
    got = msgs(s.o1, s.conv)
    assert stream_of(got) == EXPECTED_STREAM, stream_of(got)
    check_system(got[2], s.conv, 3, "members_added", s.a, [s.c])
    check_system(got[4], s.conv, 5, "members_removed", s.a, [s.b])
    assert len({m["message_id"] for m in got}) == 6
    # history tells the same story
    h = hist_all(s.o1, s.conv)
    assert isinstance(h, list), h
    assert stream_of([dict(m, conversation_id=s.conv) for m in h]) == \
        EXPECTED_STREAM, stream_of(h)
    assert [m["message_id"] for m in h] == [m["message_id"] for m in got]
    # the sync conversation item counts them all
    convs, _ = do_sync(s.o1, cursors={s.conv: 6})
    it = item(convs, s.conv)
    assert it["last_seq"] == 6 and it["member_count"] == 3, it


def test_removed_member_is_cut_off(stack, clients):
    s = membership_scenario(stack, clients)
    conv = s.conv
    wait_seq(s.b1, conv, 5)
    wait_seq(s.o1, conv, 6)
    settle(s.b1, QUIET)
    got = msgs(s.b1, conv)
    # its own t2 came as an ack; members_removed is its last message
    assert stream_of(got) == [EXPECTED_STREAM[i] for i in (0, 1, 2, 4)], (
        "removed member's messages: %r" % stream_of(got))
    check_system(got[-1], conv, 5, "members_removed", s.a, [s.b])

    # it may not send, type or read past its removal
    send(s.b1, "late", "still here?", conv=conv)
    f = wait_frame(s.b1, lambda f: f.get("client_msg_id") == "late",
                   what="the answer to a removed member's send")
    assert is_error(f, "forbidden"), f
    typing(s.b1, conv, "start")
    f = wait_frame(s.b1, lambda f: f.get("type") == "error"
                   and f.get("req_id") is None
                   and f.get("client_msg_id") is None,
                   what="forbidden for a removed member's typing")
    assert f.get("code") == "forbidden", f
    receipt(s.b1, conv, 6, "read", req_id="gone")
    f = answer(s.b1, "gone")
    assert f["type"] == "error" and f.get("code") in (
        "forbidden", "bad_request"), "a removed member's receipt: %r" % f
    for kw in ({"after_seq": 5}, {"after_seq": 0}, {}):
        h = hist(s.b1, conv, limit=100, **kw)
        if h["type"] == "error":
            assert h.get("code") == "forbidden", h
        else:
            beyond = [m["seq"] for m in h["messages"] if m["seq"] > 5]
            assert not beyond, ("history %r shows the removed member seqs "
                                "past its removal: %r" % (kw, beyond))
    convs, pushed = do_sync(s.b1, cursors={conv: 1})
    assert not [m for m in pushed if m["conversation_id"] == conv
                and m["seq"] > 5], pushed
    # if its list still shows the group, it shows nothing past the removal
    for it in convs["items"]:
        if it.get("conversation_id") == conv:
            lm = it.get("last_message") or {}
            assert it["last_seq"] <= 5 and lm.get("seq", 0) <= 5, (
                "the removed member's conversation item leaks: %r" % it)
    # nothing reached it meanwhile, the others got t3 and no "late"
    settle(s.b1, 0.3)
    assert max(seqs(msgs(s.b1, conv))) == 5, msgs(s.b1, conv)
    settle(s.o1, 0.3)
    assert not [m for m in msgs(s.o1, conv) if m["seq"] > 6], msgs(s.o1, conv)
    assert not [f for f in log_of(s.o1) if f.get("type") == "typing"], (
        "a removed member's typing reached the group")
    assert not [f for f in log_of(s.o1) if f.get("type") == "receipt"
                and f.get("user_id") == s.b], (
        "a removed member's receipt reached the group")


def test_added_member_reads_from_joining(stack, clients):
    s = membership_scenario(stack, clients)
    conv = s.conv
    wait_seq(s.c1, conv, 6)
    settle(s.c1, 0.5)
    got = msgs(s.c1, conv)
    assert stream_of(got) == EXPECTED_STREAM[2:], stream_of(got)
    h = hist_all(s.c1, conv)
    assert isinstance(h, list), h
    assert seqs(h) == [3, 4, 5, 6], "added member's history: %r" % seqs(h)
    h = hist(s.c1, conv, limit=50)
    assert h["type"] == "history" and seqs(h["messages"]) == [3, 4, 5, 6], h
    h = hist(s.c1, conv, before_seq=3)
    assert (h["type"] == "history" and h["messages"] == []) or \
        is_error(h, "forbidden"), "before its joining: %r" % h
    c2 = clients.add(stack.connect(s.c, "second"))
    convs, pushed = do_sync(c2)
    assert seqs([m for m in pushed if m["conversation_id"] == conv]) == \
        [3, 4, 5, 6], pushed
    # unread counts what it can read: 3..6 (2 when system messages
    # do not count), never the messages from before it joined
    it = item(convs, conv)
    assert it["last_seq"] == 6 and it["unread"] in (2, 4), it
    _, pushed = do_sync(c2, cursors={conv: 0})
    assert seqs([m for m in pushed if m["conversation_id"] == conv]) == \
        [3, 4, 5, 6], pushed


def test_membership_change_amid_traffic(stack, clients):
    """An add and a remove land among pipelined sends (likely in the same
    worker batch): who gets what follows the seq of each change exactly."""
    a, b, c, o = (unique(x) for x in ("ba", "bb", "bc", "bo"))
    a1 = clients.add(stack.connect(a, "one"))
    a2 = clients.add(stack.connect(a, "two"))
    b1 = clients.add(stack.connect(b))
    c1 = clients.add(stack.connect(c))
    o1 = clients.add(stack.connect(o))
    conv = new_group(a1, "busy", [b, o])
    n = 40
    for i in range(n):
        send(a1, "x%02d" % i, "busy %d" % i, conv=conv)
        if i == 12:
            a2.send_json({"type": "add_members", "req_id": "add",
                          "conversation_id": conv, "user_ids": [c]})
        if i == 25:
            a2.send_json({"type": "remove_members", "req_id": "rm",
                          "conversation_id": conv, "user_ids": [b]})
    for i in range(n):
        ack(a1, "x%02d" % i, 30)
    for rid in ("add", "rm"):
        g = answer(a2, rid)
        assert g["type"] == "group", g
    last = n + 3
    for dev in (o1, a2, c1):
        wait_seq(dev, conv, last, 30)
    for dev in (o1, a2, b1, c1):
        settle(dev, 0.3)
    got = msgs(o1, conv)
    assert seqs(got) == list(range(1, last + 1)), seqs(got)
    added = [m["seq"] for m in got if m["kind"] == "system"
             and m["body"].get("event") == "members_added"]
    removed = [m["seq"] for m in got if m["kind"] == "system"
               and m["body"].get("event") == "members_removed"]
    assert len(added) == 1 and len(removed) == 1, stream_of(got)
    A, R = added[0], removed[0]
    assert seqs(msgs(a2, conv)) == list(range(1, last + 1)), (
        "the admin's other device: %r" % seqs(msgs(a2, conv)))
    assert seqs(msgs(b1, conv)) == list(range(1, R + 1)), (
        "removed at seq %d, got %r" % (R, seqs(msgs(b1, conv))))
    assert seqs(msgs(c1, conv)) == list(range(A, last + 1)), (
        "added at seq %d, got %r" % (A, seqs(msgs(c1, conv))))
    h = hist_all(c1, conv)
    assert isinstance(h, list) and seqs(h) == list(range(A, last + 1)), (
        "added at seq %d, history %r" % (A, h if not isinstance(h, list)
                                         else seqs(h)))


def test_readded_member_sees_nothing_of_its_absence(stack, clients):
    a, b = unique("ra"), unique("rb")
    a1 = clients.add(stack.connect(a))
    b1 = clients.add(stack.connect(b))
    conv = new_group(a1, "back", [b])
    assert change(a1, "remove_members", conv, [b])["type"] == "group"
    assert send_ack(a1, "away", "while b is out", conv=conv)["seq"] == 3
    assert change(a1, "add_members", conv, [b])["type"] == "group"
    assert send_ack(a1, "back", "b is back", conv=conv)["seq"] == 5
    wait_seq(b1, conv, 5)
    settle(b1, 0.5)
    assert seqs(msgs(b1, conv)) == [1, 2, 4, 5], msgs(b1, conv)
    h = hist_all(b1, conv)
    assert isinstance(h, list), h
    assert 3 not in seqs(h) and {4, 5} <= set(seqs(h)), seqs(h)


# -- conversation list --------------------------------------------------------

def test_conversation_list_order_and_unread(stack, clients):
    me, p, q, r = unique("me"), unique("p"), unique("q"), unique("r")
    cm = clients.add(stack.connect(me, "phone"))
    cp = clients.add(stack.connect(p))
    cq = clients.add(stack.connect(q))
    cr = clients.add(stack.connect(r))
    dm = dm_id(me, p)

    send_ack(cp, "p1", "hello me", to=me)
    wait_seq(cm, dm, 1)
    conv = new_group(cq, "Trio", [me, r])
    wait_seq(cm, conv, 1)
    send_ack(cr, "r1", "one", conv=conv)
    send_ack(cr, "r2", "two", conv=conv)
    wait_seq(cm, conv, 3)

    convs, _ = do_sync(cm)
    assert [it["conversation_id"] for it in convs["items"]] == [conv, dm], (
        "newest activity first: %r" % convs["items"])
    d = item(convs, dm)
    assert d["kind"] == "direct" and d["member_count"] == 2, d
    assert (d["last_seq"], d["delivered_seq"], d["read_seq"], d["unread"]) \
        == (1, 0, 0, 1), "direct item (delivered is never assumed): %r" % d
    assert d["last_message"]["seq"] == 1, d
    assert d["last_message"]["body"] == "hello me", d
    g = item(convs, conv)
    assert g["kind"] == "group" and g["name"] == "Trio", g
    assert g["member_count"] == 3 and g["last_seq"] == 3, g
    assert (g["delivered_seq"], g["read_seq"]) == (0, 0), g
    # two texts from r; the system message from q may count or not
    assert g["unread"] in (2, 3), g
    assert g["last_message"]["seq"] == 3, g
    assert g["last_message"]["body"] == "two", g

    # my reply moves the direct conversation up and my pointers to it
    assert send_ack(cm, "m1", "hi p", to=p)["seq"] == 2
    # I read the group up to 2 (r sees my receipt: it is stored)
    receipt(cm, conv, 2, "read")
    wait_receipt(cr, conv, me, "read", 2)
    convs, _ = do_sync(cm)
    assert [it["conversation_id"] for it in convs["items"]] == [dm, conv], (
        convs["items"])
    d = item(convs, dm)
    assert (d["last_seq"], d["delivered_seq"], d["read_seq"], d["unread"]) \
        == (2, 2, 2, 0), d
    assert d["last_message"]["seq"] == 2, d
    g = item(convs, conv)
    assert (g["last_seq"], g["delivered_seq"], g["read_seq"], g["unread"]) \
        == (3, 2, 2, 1), g

    # new group traffic moves the group up again
    send_ack(cr, "r3", "three", conv=conv)
    wait_seq(cm, conv, 4)
    convs, _ = do_sync(cm)
    assert [it["conversation_id"] for it in convs["items"]] == [conv, dm], (
        convs["items"])
    g = item(convs, conv)
    assert (g["last_seq"], g["read_seq"], g["unread"]) == (4, 2, 2), g
    assert g["last_message"]["seq"] == 4, g

    # the others' views: own messages are read
    convs, _ = do_sync(cr)
    g = item(convs, conv)
    assert (g["last_seq"], g["delivered_seq"], g["read_seq"], g["unread"]) \
        == (4, 4, 4, 0), g
    convs, _ = do_sync(cp)
    d = item(convs, dm)
    assert (d["last_seq"], d["read_seq"], d["unread"]) == (2, 1, 1), d


# -- receipts -----------------------------------------------------------------

def test_receipts(stack, clients, capsys):
    a, b, c, e = unique("ra"), unique("rb"), unique("rc"), unique("re")
    a1 = clients.add(stack.connect(a, "one"))
    a2 = clients.add(stack.connect(a, "two"))
    b1 = clients.add(stack.connect(b, "one"))
    b2 = clients.add(stack.connect(b, "two"))
    c1 = clients.add(stack.connect(c))
    e1 = clients.add(stack.connect(e))
    conv = new_group(a1, "receipts", [b, c])
    for i in range(3):
        send_ack(a1, "a%d" % i, "text %d" % i, conv=conv)
    for dev in (a2, b1, b2, c1):
        wait_seq(dev, conv, 4)

    # sending moved the sender's own pointers to its message
    convs, _ = do_sync(a2)
    it = item(convs, conv)
    assert (it["last_seq"], it["delivered_seq"], it["read_seq"],
            it["unread"]) == (4, 4, 4, 0), it

    # delivered 3 from b's first device: to the members and b's other device
    receipt(b1, conv, 3, "delivered")
    for dev in (a1, a2, c1, b2):
        f = wait_receipt(dev, conv, b, "delivered", 3)
        for k in ("conversation_id", "user_id", "state", "seq", "server_ts"):
            assert k in f, "receipt lacks %r: %r" % (k, f)
        assert type(f["server_ts"]) is int, f
    # read 2: read moves, delivered stays at 3
    receipt(b1, conv, 2, "read")
    for dev in (a1, b2):
        wait_receipt(dev, conv, b, "read", 2)
    # older pointers are ignored; a fresh one behind them is the barrier
    receipt(b1, conv, 2, "delivered")
    receipt(b1, conv, 1, "read")
    receipt(b1, conv, 3, "read")
    for dev in (a1, b2, c1):
        wait_receipt(dev, conv, b, "read", 3)
        stale = [f for f in log_of(dev) if f.get("type") == "receipt"
                 and f.get("user_id") == b
                 and (f.get("state"), f.get("seq")) in (("delivered", 2),
                                                        ("read", 1))]
        assert not stale, "%s/%s: ignored pointers were sent on: %r" % (
            dev.user, dev.dev, stale)
    convs, _ = do_sync(b2)
    it = item(convs, conv)
    assert (it["delivered_seq"], it["read_seq"], it["unread"]) == (3, 3, 1), (
        "b's pointers after delivered 3, read 2, delivered 2, read 1, "
        "read 3: %r" % it)

    # read 4 implies delivered 4
    receipt(b1, conv, 4, "read")
    for dev in (a1, a2, b2, c1):
        wait_receipt(dev, conv, b, "read", 4)
    convs, _ = do_sync(b2)
    it = item(convs, conv)
    assert (it["delivered_seq"], it["read_seq"], it["unread"]) == (4, 4, 0), it

    # beyond the last seq: bad_request, with and without req_id
    receipt(b1, conv, 5, "read", req_id="beyond")
    f = answer(b1, "beyond")
    assert is_error(f, "bad_request", "beyond"), f
    receipt(b1, conv, 99, "delivered")
    f = wait_frame(b1, lambda f: f.get("type") == "error"
                   and f.get("req_id") is None,
                   what="error for a receipt past the last seq (no req_id)")
    assert f.get("code") == "bad_request", f
    # an outsider's receipt: forbidden
    receipt(e1, conv, 1, "read", req_id="outsider")
    assert is_error(answer(e1, "outsider"), "forbidden", "outsider")
    convs, _ = do_sync(b2)
    it = item(convs, conv)
    assert (it["last_seq"], it["delivered_seq"], it["read_seq"]) == \
        (4, 4, 4), "a refused receipt moved something: %r" % it

    # "read by N of M", counted by the sender from receipt frames
    def read_by(dev, seq):
        return {f["user_id"] for f in log_of(dev)
                if f.get("type") == "receipt" and f.get("conversation_id")
                == conv and f.get("state") == "read" and f["seq"] >= seq
                and f["user_id"] != a}

    m = it["member_count"] - 1
    assert (len(read_by(a1, 4)), m) == (1, 2), read_by(a1, 4)
    receipt(c1, conv, 4, "read")
    for dev in (a1, a2, b1, b2):
        wait_receipt(dev, conv, c, "read", 4)
    assert read_by(a1, 4) == {b, c} and read_by(a2, 4) == {b, c}
    report(capsys, "receipts: message seq 4 read by %d of %d"
           % (len(read_by(a1, 4)), m))
    convs, _ = do_sync(c1)
    it = item(convs, conv)
    assert (it["delivered_seq"], it["read_seq"]) == (4, 4), (
        "read implies delivered: %r" % it)
    # nothing of it went to the outsider
    settle(e1, 0.3)
    assert not [f for f in log_of(e1) if f.get("type") == "receipt"], \
        log_of(e1)

    # direct conversations too
    dm = dm_id(a, e)
    k = send_ack(a1, "toe", "for e", to=e)
    wait_seq(e1, dm, k["seq"])
    receipt(e1, dm, k["seq"], "read")
    wait_receipt(a1, dm, e, "read", k["seq"])
    wait_receipt(a2, dm, e, "read", k["seq"])


# -- sync ---------------------------------------------------------------------

def test_sync_stale_cursor_pushes_exactly_missing(stack, clients):
    a, b = unique("sa"), unique("sb")
    a1 = clients.add(stack.connect(a))
    bp = stack.connect(b, "phone")
    bt = clients.add(stack.connect(b, "tablet"))
    conv = new_group(a1, "stale", [b])
    dm = dm_id(a, b)
    for i in range(2, 6):
        send_ack(a1, "s%d" % i, "seq %d" % i, conv=conv)
    wait_seq(bp, conv, 5)
    settle(bp, 0.3)
    assert seqs(msgs(bp, conv)) == [1, 2, 3, 4, 5]
    bp.close()
    for i in range(6, 12):
        send_ack(a1, "s%d" % i, "seq %d" % i, conv=conv)
    for i in range(1, 4):
        send_ack(a1, "d%d" % i, "dm %d" % i, to=b)
    wait_seq(bt, conv, 11)
    wait_seq(bt, dm, 3)
    live = {(m["conversation_id"], m["seq"]): m for m in msgs(bt, conv)
            + msgs(bt, dm)}

    bp = clients.add(stack.connect(b, "phone"))
    convs, pushed = do_sync(bp, cursors={conv: 5, dm: 2})
    assert [(m["conversation_id"], m["seq"]) for m in pushed
            if m["conversation_id"] == conv] == \
        [(conv, s) for s in range(6, 12)], seqs(pushed)
    assert [(m["conversation_id"], m["seq"]) for m in pushed
            if m["conversation_id"] != conv] == [(dm, 3)], pushed
    for m in pushed:
        want = live[(m["conversation_id"], m["seq"])]
        assert (m["message_id"], m["body"], m["sender_id"]) == \
            (want["message_id"], want["body"], want["sender_id"]), (m, want)
    assert (item(convs, conv)["last_seq"], item(convs, dm)["last_seq"]) == \
        (11, 3)
    # nothing when the cursors are current
    _, pushed = do_sync(bp, cursors={conv: 11, dm: 3})
    assert pushed == [], pushed
    # from zero: everything, the system message included
    _, pushed = do_sync(bp, cursors={conv: 0, dm: 1})
    assert seqs([m for m in pushed if m["conversation_id"] == conv]) == \
        list(range(1, 12))
    assert seqs([m for m in pushed if m["conversation_id"] == dm]) == [2, 3]
    check_created([m for m in pushed if m["conversation_id"] == conv][0],
                  conv, a, [b], "stale")
    # the device online all along got no copy of what the phone synced
    settle(bt, 0.3)
    assert seqs(msgs(bt, conv)) == list(range(1, 12)), seqs(msgs(bt, conv))


def test_sync_cap_truncated_then_history(stack, clients):
    a, b = unique("ca"), unique("cb")
    a1 = clients.add(stack.connect(a))
    conv = new_group(a1, "cap", [b])
    n = SYNC_CAP + 30
    for i in range(n):
        send(a1, "c%03d" % i, "capped %d" % i, conv=conv)
    acks = [ack(a1, "c%03d" % i, 60) for i in range(n)]
    assert [k["seq"] for k in acks] == list(range(2, n + 2))
    last = n + 1
    dm = dm_id(a, b)
    send_ack(a1, "one", "uncapped", to=b)

    b1 = clients.add(stack.connect(b))
    cursor = 1
    convs, pushed = do_sync(b1, cursors={conv: cursor, dm: 0})
    it = item(convs, conv)
    assert it.get("truncated") is True, it
    assert it["last_seq"] == last, it
    assert item(convs, dm).get("truncated") in (None, False), \
        item(convs, dm)
    got = [m for m in pushed if m["conversation_id"] == conv]
    assert seqs(got) == list(range(last - SYNC_CAP + 1, last + 1)), (
        "the newest %d, in order: got %d, %r..%r" % (
            SYNC_CAP, len(got), seqs(got)[:3], seqs(got)[-3:]))
    assert seqs([m for m in pushed if m["conversation_id"] == dm]) == [1]

    # page the rest backwards until an empty page
    count = collections.Counter(seqs(got))
    before, pages = got[0]["seq"], 0
    while True:
        h = hist(b1, conv, before_seq=before, limit=30)
        assert h["type"] == "history", h
        page = seqs(h["messages"])
        assert page == sorted(page) and all(s < before for s in page), page
        if not page:
            break
        pages += 1
        assert pages < 20, "history paging does not end"
        count.update(s for s in page if s > cursor)
        before = page[0]
    dup = [s for s, k in count.items() if k > 1]
    assert not dup, "seqs given twice: %r" % dup
    assert sorted(count) == list(range(cursor + 1, last + 1)), (
        "missing: %r" % sorted(set(range(cursor + 1, last + 1)) - set(count)))


# -- typing -------------------------------------------------------------------

def test_typing_reaches_others_and_is_never_stored(stack, clients):
    a, b, c, e = unique("ta"), unique("tb"), unique("tc"), unique("te")
    a1 = clients.add(stack.connect(a, "one"))
    a2 = clients.add(stack.connect(a, "two"))
    b1 = clients.add(stack.connect(b, "one"))
    b2 = clients.add(stack.connect(b, "two"))
    c1 = clients.add(stack.connect(c))
    e1 = clients.add(stack.connect(e))
    conv = new_group(a1, "typing", [b, c])
    for dev in (a1, a2, b1, b2, c1):
        wait_seq(dev, conv, 1)

    def typed(dev, user, state):
        return [f for f in log_of(dev) if f.get("type") == "typing"
                and f.get("conversation_id") == conv
                and f.get("user_id") == user and f.get("state") == state]

    typing(a1, conv, "start")
    for dev in (b1, b2, c1):
        f = wait_frame(dev, lambda f: f.get("type") == "typing"
                       and f.get("user_id") == a, what="a's typing")
        assert (f.get("conversation_id"), f.get("state")) == (conv, "start"), f
    typing(b2, conv, "stop")
    for dev in (a1, a2, c1):
        wait_frame(dev, lambda f: f.get("type") == "typing"
                   and f.get("user_id") == b and f.get("state") == "stop",
                   what="b's typing stop")
    for dev in (a1, a2, b1, b2, c1):
        settle(dev, 0.5)
    assert not typed(a1, a, "start") and not typed(a2, a, "start"), (
        "typing went to the typer's devices: %r" % log_of(a2))
    assert not typed(b1, b, "stop") and not typed(b2, b, "stop"), (
        "typing went to the typer's devices: %r" % log_of(b1))
    for dev in (b1, b2, c1):
        assert len(typed(dev, a, "start")) == 1, log_of(dev)

    # an outsider may not; a bad state is a bad request
    typing(e1, conv, "start")
    f = wait_frame(e1, lambda f: f.get("type") == "error",
                   what="forbidden for an outsider's typing")
    assert f.get("code") == "forbidden", f
    typing(c1, conv, "maybe")
    f = wait_frame(c1, lambda f: f.get("type") == "error",
                   what="bad_request for a bad typing state")
    assert f.get("code") == "bad_request", f

    # never stored: no message, no seq, no history
    h = hist(b1, conv)
    assert h["type"] == "history" and seqs(h["messages"]) == [1], h
    for dev in (a1, a2, b1, b2, c1):
        settle(dev, 0.2)
        assert seqs(msgs(dev, conv)) == [1], log_of(dev)
    assert not [f for f in log_of(e1) if f.get("type") == "typing"]
    convs, pushed = do_sync(c1, cursors={conv: 1})
    assert item(convs, conv)["last_seq"] == 1 and pushed == [], pushed

    # a direct conversation (begun): the peer's devices
    k = send_ack(a1, "dm1", "hi c", to=c)
    wait_seq(c1, dm_id(a, c), k["seq"])
    typing(c1, dm_id(a, c), "start")
    for dev in (a1, a2):
        wait_frame(dev, lambda f: f.get("type") == "typing"
                   and f.get("conversation_id") == dm_id(a, c)
                   and f.get("user_id") == c, what="typing in a dm")


# -- a 256-member group -------------------------------------------------------

BIG = 256
TWO_DEVICES = 20        # members 0..19 have devices d0 and d1
SENDERS = ((0, "d0"), (7, "d1"), (150, "d0"))     # member 0 is the creator
PER_SENDER = 5
TIMED = (200, "d0")


class Fleet:
    """Many connections read from one thread through a selector; every frame
    is kept in c.inbox as (monotonic arrival time, frame)."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.conns = []

    def add(self, c):
        c.inbox = []
        c.counts = collections.Counter()
        c.partial = None
        c.dropped = None
        self.sel.register(c.sock, selectors.EVENT_READ, c)
        self.conns.append(c)
        return c

    def _drop(self, c, why):
        c.dropped = why
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass

    def _read(self, c):
        timeout = 2.0           # the socket is readable: a frame is coming
        while True:
            try:
                op, payload = c.recv_frame(timeout)
            except TimeoutError:
                return          # (only a partial frame is buffered)
            except (wsclient.WSError, OSError) as e:
                self._drop(c, repr(e))
                return
            timeout = 0         # then whatever is complete in the buffer
            now = time.monotonic()
            if op == wsclient.OP_CLOSE:
                self._drop(c, "close %r" % c.close_code)
                return
            if op == wsclient.OP_TEXT:
                c.partial = bytearray(payload)
            elif op == wsclient.OP_CONT and c.partial is not None:
                c.partial += payload
            else:
                continue
            if c.last_fin:
                f = json.loads(bytes(c.partial).decode("utf-8"))
                c.partial = None
                c.inbox.append((now, f))
                c.counts[f.get("type")] += 1

    def pump(self, until=None, timeout=1.0, what="frames"):
        deadline = time.monotonic() + timeout
        while True:
            if until is not None and until():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if until is None:
                    return
                raise AssertionError("timed out after %.0fs waiting for %s"
                                     % (timeout, what))
            for key, _ in self.sel.select(min(remaining, 0.2)):
                self._read(key.data)

    def close(self):
        for c in self.conns:
            try:
                c.send_close(1000)
            except (OSError, wsclient.WSError):
                pass
        for c in self.conns:
            c.abort()
        self.sel.close()


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        new = n if hard == resource.RLIM_INFINITY else min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def registered(stack, pairs):
    """How many of the (user, device) pairs have a session in Redis (one
    redis-cli run for all); None when Redis cannot be asked."""
    script = "".join("HEXISTS chat:sess:%s %s\n" % p for p in pairs)
    try:
        p = subprocess.run(["redis-cli", "-h", "127.0.0.1",
                            "-p", str(stack.redis_port)],
                           input=script.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0 or b"Could not connect" in p.stdout + p.stderr:
        return None
    return sum(1 for line in p.stdout.split() if line.strip() == b"1")


def test_256_member_group_every_device_once_in_order(stack, capsys):
    raise_nofile(4096)
    base = unique("big")
    users = ["%s_%03d" % (base, i) for i in range(BIG)]
    fleet = Fleet()
    dev = {}
    try:
        t0 = time.monotonic()
        for i, u in enumerate(users):
            for d in (("d0", "d1") if i < TWO_DEVICES else ("d0",)):
                dev[(i, d)] = fleet.add(stack.connect(u, d))
        t_conn = time.monotonic() - t0
        pairs = [(users[i], d) for i, d in dev]
        deadline = time.monotonic() + 15
        while True:
            n = registered(stack, pairs)
            if n is None or n == len(pairs):
                break
            assert time.monotonic() < deadline, (
                "%d of %d sessions in Redis" % (n, len(pairs)))
            time.sleep(0.2)
        ndev = len(dev)
        creator = dev[(0, "d0")]

        # the group: creator + 255, seq 1 to all 276 devices
        rid = unique("big")
        creator.send_json({"type": "create_group", "req_id": rid,
                           "name": "two hundred fifty-six",
                           "members": users[1:]})

        def answered():
            return [f for _, f in creator.inbox if f.get("req_id") == rid]

        t0 = time.monotonic()
        fleet.pump(lambda: answered() and (
            answered()[0]["type"] != "group"
            or all(c.counts["message"] >= 1 for c in dev.values())),
            timeout=60, what="group_created on every device")
        t_create = time.monotonic() - t0
        g = answered()[0]
        check_group(g, rid, None, "two hundred fifty-six", [users[0]],
                    users[1:])
        conv = g["conversation_id"]

        # 3 members send 5 each, interleaved and pipelined
        cmids = {}
        for k in range(PER_SENDER):
            for i, d in SENDERS:
                cmid = "m%d-%d" % (i, k)
                cmids[cmid] = (i, d)
                send(dev[(i, d)], cmid, "from %d, #%d" % (i, k), conv=conv)
        want = len(cmids)

        def own(key):
            return sum(1 for v in cmids.values() if v == key)

        def done():
            for key, c in dev.items():
                if c.counts["message"] < 1 + want - own(key):
                    return False
                if own(key) and c.counts["ack"] + c.counts["error"] < own(key):
                    return False
            return True

        fleet.pump(done, timeout=60, what="%d messages on every device"
                   % want)
        fleet.pump(timeout=QUIET)       # anything extra would show now

        # the timed one: send to first and last delivery
        ti, td = TIMED
        sender = dev[(ti, td)]
        t_send = time.monotonic()
        send(sender, "timed", "how fast", conv=conv)

        def timed_in(c):
            return [t for t, f in c.inbox if f.get("type") == "message"
                    and f.get("client_msg_id") == "timed"]

        others = [c for key, c in dev.items() if key != (ti, td)]
        fleet.pump(lambda: all(timed_in(c) for c in others)
                   and any(f.get("client_msg_id") == "timed"
                           for _, f in sender.inbox),
                   timeout=30, what="the timed message on every device")
        fleet.pump(timeout=0.5)
        t_ack = [t for t, f in sender.inbox
                 if f.get("client_msg_id") == "timed"][0] - t_send
        arrivals = sorted(timed_in(c)[0] - t_send for c in others)

        # every device: seq 1, then each message once, in seq order
        problems = []
        for (i, d), c in sorted(dev.items()):
            if c.dropped:
                problems.append("%d/%s dropped: %s" % (i, d, c.dropped))
            frames = [f for _, f in c.inbox]
            ms = [f for f in frames if f.get("type") == "message"
                  and f.get("conversation_id") == conv]
            errs = [f for f in frames if f.get("type") == "error"]
            if errs:
                problems.append("%d/%s errors: %r" % (i, d, errs[:2]))
            if not ms or ms[0]["seq"] != 1 or ms[0]["kind"] != "system" \
                    or not isinstance(ms[0]["body"], dict) \
                    or ms[0]["body"].get("event") != "group_created":
                problems.append("%d/%s first message is not group_created "
                                "seq 1: %r" % (i, d, ms[:1]))
                continue
            rest = ms[1:]
            got = [m["client_msg_id"] for m in rest]
            mine = [x for x, v in cmids.items() if v == (i, d)]
            expect = sorted(set(cmids) - set(mine)) + (
                ["timed"] if (i, d) != TIMED else [])
            if sorted(got) != sorted(expect):
                extra = collections.Counter(got) - collections.Counter(expect)
                miss = collections.Counter(expect) - collections.Counter(got)
                problems.append("%d/%s: extra/duplicate %r, missing %r"
                                % (i, d, sorted(extra.elements()),
                                   sorted(miss.elements())))
            s = seqs(rest)
            if any(y <= x for x, y in zip(s, s[1:])):
                problems.append("%d/%s out of order: %r" % (i, d, s))
            acks = [f for f in frames if f.get("type") == "ack"]
            allseq = sorted(s + [k["seq"] for k in acks])
            if allseq != list(range(2, want + 3)):
                problems.append("%d/%s seqs with its acks are not 2..%d: %r"
                                % (i, d, want + 2, allseq))
            for m in rest:
                if m["kind"] != "text" or m["sender_id"] != \
                        users[(cmids.get(m["client_msg_id"]) or TIMED)[0]]:
                    problems.append("%d/%s bad message %r" % (i, d, m))
                    break
            if mine:
                by_sender = {k["client_msg_id"]: k["seq"] for k in acks}
                order = [by_sender.get(x) for x in
                         ["m%d-%d" % (i, k) for k in range(PER_SENDER)]]
                if None in order or order != sorted(order):
                    problems.append("%d/%s own sends not in send order: %r"
                                    % (i, d, order))
        report(capsys,
               "256-member group, %d devices: connected in %.1fs, "
               "group_created on all in %.2fs; one message from member %d: "
               "ack %.1f ms, first delivery %.1f ms, median %.1f ms, "
               "last %.1f ms (over %d devices)"
               % (ndev, t_conn, t_create, ti, t_ack * 1000,
                  arrivals[0] * 1000, arrivals[len(arrivals) // 2] * 1000,
                  arrivals[-1] * 1000, len(arrivals)))
        assert not problems, "%d problems, first ones:\n%s" % (
            len(problems), "\n".join(problems[:15]))
    finally:
        fleet.close()
