"""Editing, deleting, reacting and replying, against the real servers:
each change is a message of its own (its seq, delivered to every member's
devices, replayed by history and sync), idempotent on client_msg_id,
allowed only to whom the contract allows it, and history and sync show
each message's current state. A deletion erases the text from
PostgreSQL."""

import time

from chatlib import (dm_id, expect_ack, indexed, send_msg, sync, unique,
                     wait_indexed)

T = 15.0

EW_PATH = "/chat-ew"    # the location with a 2 s edit window


# -- reading without losing what comes in between ------------------------------

def want(c, pred, timeout=T, what="a frame"):
    """The first frame (already read or still to come) matching pred; the
    others stay in c.backlog for later waits."""
    backlog = c.__dict__.setdefault("backlog", [])
    for i, f in enumerate(backlog):
        if pred(f):
            return backlog.pop(i)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("%s/%s: no %s within %.0fs; backlog %r"
                                 % (c.user, c.dev, what, timeout,
                                    backlog[-8:]))
        try:
            f = c.recv_json(remaining)
        except TimeoutError:
            continue
        if pred(f):
            return f
        backlog.append(f)


def answer(c, cmid):
    """The ack or error tagged with client_msg_id cmid."""
    return want(c, lambda f: f.get("type") in ("ack", "error")
                and f.get("client_msg_id") == cmid,
                what="answer to %r" % cmid)


def changed(c, kind, target, cmid=None, timeout=T):
    return want(c, lambda f: f.get("type") == "message"
                and f.get("kind") == kind and f.get("target_id") == target
                and (cmid is None or f.get("client_msg_id") == cmid),
                timeout, what="%s of %s" % (kind, target))


def nothing_more(c, pred, duration=1.0, what="frame"):
    backlog = c.__dict__.setdefault("backlog", [])
    frames = backlog + c.drain(duration)
    bad = [f for f in frames if pred(f)]
    assert not bad, "unexpected %s: %r" % (what, bad)
    backlog[:] = frames


def hist(c, conv, req_id, **kw):
    frame = {"type": "history", "req_id": req_id, "conversation_id": conv,
             "limit": 100}
    frame.update(kw)
    c.send_json(frame)
    h = want(c, lambda f: f.get("type") in ("history", "error")
             and f.get("req_id") == req_id, what="history %r" % req_id)
    assert h["type"] == "history", h
    return h["messages"]


def by_id(messages, mid):
    found = [m for m in messages if m["message_id"] == mid]
    assert len(found) == 1, "message %s in %r" % (mid, messages)
    return found[0]


def send(c, cmid, body, **kw):
    send_msg(c, cmid, body, **kw)
    a = answer(c, cmid)
    assert a["type"] == "ack", a
    return a


def change(c, kind, cmid, conv, mid, **fields):
    frame = {"type": kind, "client_msg_id": cmid, "conversation_id": conv,
             "message_id": mid}
    frame.update(fields)
    c.send_json(frame)
    return answer(c, cmid)


def ok(c, kind, cmid, conv, mid, **fields):
    a = change(c, kind, cmid, conv, mid, **fields)
    assert a["type"] == "ack", "%s %s answered %r" % (kind, cmid, a)
    assert a["conversation_id"] == conv and a["client_msg_id"] == cmid
    return a


def refused(c, code, kind, cmid, conv, mid, **fields):
    a = change(c, kind, cmid, conv, mid, **fields)
    assert a["type"] == "error" and a["code"] == code, (
        "%s %s: expected %s, got %r" % (kind, cmid, code, a))
    return a


def group(c, name, members):
    rid = unique("g")
    c.send_json({"type": "create_group", "req_id": rid, "name": name,
                 "members": members})
    g = want(c, lambda f: f.get("type") in ("group", "error")
             and f.get("req_id") == rid, what="group")
    assert g["type"] == "group", g
    return g["conversation_id"]


def stored(stack, sql):
    return stack.psql(sql)


# -- the tests -----------------------------------------------------------------

def test_hello_announces_changes(stack, clients):
    a = clients.add(stack.connect(unique("a")))
    assert a.hello["edit_window_s"] == 900, a.hello
    for op in ("edit", "delete", "react"):
        assert op in a.hello["features"], a.hello
    b = clients.add(stack.connect(unique("b"),
                                  url=stack.url.replace("/chat", EW_PATH)))
    assert b.hello["edit_window_s"] == 2, b.hello


def test_edit_reaches_every_device_once(stack, clients):
    alice, bob = unique("alice"), unique("bob")
    phone = clients.add(stack.connect(alice, "phone"))
    laptop = clients.add(stack.connect(alice, "laptop"))
    b = clients.add(stack.connect(bob))
    conv = dm_id(alice, bob)

    m = send(phone, "m1", "helo", to=bob)
    mid = m["message_id"]
    e = ok(phone, "edit", "e1", conv, mid, body="hello")
    assert e["seq"] == m["seq"] + 1 and e["message_id"] != mid, (m, e)

    for c in (laptop, b):
        f = changed(c, "edit", mid)
        assert f["body"] == "hello" and f["seq"] == e["seq"], f
        assert f["message_id"] == e["message_id"]
        assert f["sender_id"] == alice and f["client_msg_id"] == "e1"
    # the sending device has its ack, not the message
    nothing_more(phone, lambda f: f.get("type") == "message"
                 and f.get("kind") == "edit", 0.5, "edit to its sender")

    # a retry: the same ack, nothing stored or delivered again
    again = ok(phone, "edit", "e1", conv, mid, body="hello")
    assert (again["message_id"], again["seq"]) == (e["message_id"], e["seq"])
    nothing_more(b, lambda f: f.get("type") == "message"
                 and f.get("kind") == "edit", 1.0,
                 "second delivery of a retried edit")
    assert stored(stack, "select count(*) from messages where sender_id = '%s'"
                  " and client_msg_id = 'e1'" % alice) == "1"

    # history: the message as it is now, and the edit in its place
    msgs = hist(b, conv, "h1")
    orig = by_id(msgs, mid)
    assert orig["body"] == "hello" and orig["kind"] == "text", orig
    assert isinstance(orig["edited_at"], int), orig
    assert orig.get("deleted", False) is False
    ev = by_id(msgs, e["message_id"])
    assert ev["kind"] == "edit" and ev["target_id"] == mid, ev
    assert [x["seq"] for x in msgs] == sorted(x["seq"] for x in msgs)


def test_edit_refusals(stack, clients):
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    a = clients.add(stack.connect(alice))
    b = clients.add(stack.connect(bob))
    conv = dm_id(alice, bob)
    mid = send(a, "m1", "mine", to=bob)["message_id"]

    # another user's message
    refused(b, "forbidden", "edit", "x1", conv, mid, body="theirs")
    # not a member of the conversation
    c = clients.add(stack.connect(carol))
    refused(c, "forbidden", "edit", "x2", conv, mid, body="no")
    # no such message in this conversation
    refused(a, "not_found", "edit", "x3", conv, "999999999999", body="no")
    other = send(a, "m2", "elsewhere", to=carol)["message_id"]
    refused(a, "not_found", "edit", "x4", conv, other, body="no")
    # the frame's own faults
    refused(a, "bad_request", "edit", "x5", conv, mid)
    refused(a, "bad_request", "edit", "x6", conv, mid, body="")
    refused(a, "bad_request", "edit", "x7", conv, int(mid), body="n")
    a.send_json({"type": "edit", "conversation_id": conv, "message_id": mid,
                 "body": "n"})
    e = want(a, lambda f: f.get("type") == "error", what="error")
    assert e["code"] == "bad_request", e

    # a system message is nobody's to edit
    g = group(a, "G", [bob])
    first = hist(a, g, "hg")[0]
    assert first["kind"] == "system"
    refused(a, "bad_request", "edit", "x8", g, first["message_id"], body="n")

    # nothing of it was stored, the message is as it was
    assert by_id(hist(a, conv, "h"), mid)["body"] == "mine"
    assert "edited_at" not in by_id(hist(a, conv, "h2"), mid)


def test_edit_window(stack, clients):
    alice, bob = unique("alice"), unique("bob")
    url = stack.url.replace("/chat", EW_PATH)
    a = clients.add(stack.connect(alice, url=url))
    conv = dm_id(alice, bob)
    m1 = send(a, "m1", "one", to=bob)["message_id"]
    ok(a, "edit", "e1", conv, m1, body="one, edited in time")
    m2 = send(a, "m2", "two", to=bob)["message_id"]
    time.sleep(2.6)
    refused(a, "forbidden", "edit", "e2", conv, m2, body="too late")
    msgs = hist(a, conv, "h")
    assert by_id(msgs, m1)["body"] == "one, edited in time"
    assert by_id(msgs, m2)["body"] == "two"


def test_delete_erases_text(stack, clients):
    alice, bob = unique("alice"), unique("bob")
    a = clients.add(stack.connect(alice))
    b = clients.add(stack.connect(bob))
    conv = dm_id(alice, bob)
    mid = send(a, "m1", "secret one", to=bob)["message_id"]
    ok(a, "edit", "e1", conv, mid, body="secret two")
    ok(b, "react", "r1", conv, mid, emoji="\U0001F62E")

    # not the sender's own: refused, even in a direct conversation
    refused(b, "forbidden", "delete", "d0", conv, mid)

    d = ok(a, "delete", "d1", conv, mid)
    f = changed(b, "delete", mid)
    assert f["body"] is None and f["seq"] == d["seq"], f

    # gone from the store of record, the edit's text too
    rows = stored(stack, "select coalesce(body, '<null>') || ' ' || deleted"
                  " from messages where message_id = %s or target_id = %s"
                  " and kind = 'edit' order by seq" % (mid, mid))
    assert rows.split("\n") == ["<null> true", "<null> false"], rows
    assert stored(stack, "select count(*) from messages where"
                  " body like 'secret%%' and sender_id = '%s'"
                  % alice) == "0"
    assert stored(stack, "select count(*) from reactions where"
                  " message_id = %s" % mid) == "0"

    # history: the original deleted, body null, no reactions
    msgs = hist(b, conv, "h")
    orig = by_id(msgs, mid)
    assert orig["deleted"] is True and orig["body"] is None, orig
    assert not orig.get("reactions"), orig
    assert by_id(msgs, d["message_id"])["kind"] == "delete"

    # a deleted message takes no more changes; the retry is still acked
    refused(a, "not_found", "edit", "e2", conv, mid, body="back")
    refused(b, "not_found", "react", "r2", conv, mid, emoji="x")
    again = ok(a, "delete", "d1", conv, mid)
    assert again["message_id"] == d["message_id"]


def test_group_delete_by_admin(stack, clients):
    admin, bob, carol = unique("admin"), unique("bob"), unique("carol")
    a = clients.add(stack.connect(admin))
    b = clients.add(stack.connect(bob))
    c = clients.add(stack.connect(carol))
    g = group(a, "G", [bob, carol])
    by_bob = send(b, "b1", "bob's", conv=g)["message_id"]
    by_admin = send(a, "a1", "admin's", conv=g)["message_id"]

    # a member may not delete another's, an admin may
    refused(c, "forbidden", "delete", "c1", g, by_bob)
    refused(b, "forbidden", "delete", "b2", g, by_admin)
    ok(a, "delete", "a2", g, by_bob)
    for x in (b, c):
        assert changed(x, "delete", by_bob)["sender_id"] == admin
    # an admin may not edit another's; a deleted message is gone
    other = send(b, "b3", "bob again", conv=g)["message_id"]
    refused(a, "forbidden", "edit", "a3", g, other, body="n")
    refused(a, "not_found", "edit", "a4", g, by_bob, body="n")
    assert stored(stack, "select body is null from messages where"
                  " message_id = %s" % by_bob) == "t"


def test_reactions(stack, clients):
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    a = clients.add(stack.connect(alice))
    b = clients.add(stack.connect(bob))
    c = clients.add(stack.connect(carol))
    g = group(a, "G", [bob, carol])
    mid = send(a, "m1", "react to me", conv=g)["message_id"]
    up, heart = "\U0001F44D", "\u2764\ufe0f"

    ok(b, "react", "r1", g, mid, emoji=up)
    f = changed(a, "reaction", mid, "r1")
    assert f["body"] == {"emoji": up} and f["sender_id"] == bob, f
    # a new one replaces the old
    ok(b, "react", "r2", g, mid, emoji=heart)
    ok(a, "react", "r3", g, mid, emoji=up)
    ok(c, "react", "r4", g, mid, emoji=up)
    state = by_id(hist(c, g, "h1"), mid)["reactions"]
    assert state == {heart: [bob], up: sorted([alice, carol])}, state
    assert stored(stack, "select count(*) from reactions where message_id"
                  " = %s and user_id = '%s'" % (mid, bob)) == "1"

    # taken back
    ok(b, "react", "r5", g, mid, emoji=None)
    assert changed(a, "reaction", mid, "r5")["body"] == {"emoji": None}
    ok(c, "react", "r6", g, mid, emoji=None)
    state = by_id(hist(a, g, "h2"), mid)["reactions"]
    assert state == {up: [alice]}, state

    # the frame's faults
    refused(b, "bad_request", "react", "x1", g, mid, emoji="")
    refused(b, "bad_request", "react", "x2", g, mid, emoji="x" * 33)
    ok(b, "react", "x3", g, mid, emoji="\U0001F44D" * 8)  # 32 bytes
    refused(b, "bad_request", "react", "x4", g, mid)
    refused(b, "bad_request", "react", "x5", g, mid, emoji=5)

    # a removed member reacts no more
    rid = unique("rm")
    a.send_json({"type": "remove_members", "req_id": rid,
                 "conversation_id": g, "user_ids": [carol]})
    want(a, lambda f: f.get("type") == "group" and f.get("req_id") == rid)
    refused(c, "forbidden", "react", "x6", g, mid, emoji=up)


def test_reply_to(stack, clients):
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    a = clients.add(stack.connect(alice))
    b = clients.add(stack.connect(bob))
    conv = dm_id(alice, bob)
    q = send(a, "m1", "question?", to=bob)["message_id"]
    r = send(b, "m2", "answer", to=alice, reply_to=q)
    f = want(a, lambda f: f.get("type") == "message"
             and f.get("client_msg_id") == "m2")
    assert f["reply_to"] == q and f["kind"] == "text", f
    assert by_id(hist(a, conv, "h"), r["message_id"])["reply_to"] == q
    assert "reply_to" not in by_id(hist(a, conv, "h2"), q)

    # what it answers must be a message of the same conversation
    elsewhere = send(a, "m3", "to carol", to=carol)["message_id"]
    send_msg(b, "m4", "wrong", to=alice, reply_to=elsewhere)
    e = answer(b, "m4")
    assert e["type"] == "error" and e["code"] == "bad_request", e
    send_msg(b, "m5", "wrong", to=alice, reply_to="12x")
    e = answer(b, "m5")
    assert e["type"] == "error" and e["code"] == "bad_request", e
    assert stored(stack, "select count(*) from messages where sender_id"
                  " = '%s' and client_msg_id in ('m4', 'm5')" % bob) == "0"


def test_sync_carries_state(stack, clients):
    alice, bob = unique("alice"), unique("bob")
    a = clients.add(stack.connect(alice))
    conv = dm_id(alice, bob)
    m1 = send(a, "m1", "to edit", to=bob)["message_id"]
    m2 = send(a, "m2", "to delete", to=bob)["message_id"]
    m3 = send(a, "m3", "to like", to=bob, reply_to=m1)["message_id"]
    ok(a, "edit", "e1", conv, m1, body="edited")
    ok(a, "delete", "d1", conv, m2)
    ok(a, "react", "r1", conv, m3, emoji="ok")

    b = clients.add(stack.connect(bob, "fresh"))
    _, msgs, _ = sync(b, "s1")
    mine = [m for m in msgs if m["conversation_id"] == conv]
    assert [m["seq"] for m in mine] == list(range(1, 7)), mine
    assert [m["kind"] for m in mine] == ["text", "text", "text", "edit",
                                         "delete", "reaction"]
    s1, s2, s3 = mine[0], mine[1], mine[2]
    assert s1["body"] == "edited" and isinstance(s1["edited_at"], int)
    assert s2["deleted"] is True and s2["body"] is None
    assert s3["reactions"] == {"ok": [alice]} and s3["reply_to"] == m1
    assert mine[5]["body"] == {"emoji": "ok"}


# -- blocking ------------------------------------------------------------------

def block(c, kind, user, rid=None):
    rid = rid or unique("b")
    c.send_json({"type": kind, "req_id": rid, "user_id": user})
    f = want(c, lambda f: f.get("type") in ("blocked", "error")
             and f.get("req_id") == rid, what="%s answer" % kind)
    return f


def test_block_direct_sends(stack, clients):
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    a = clients.add(stack.connect(alice))
    b = clients.add(stack.connect(bob))
    send(b, "m0", "before", to=alice)

    f = block(a, "block", bob)
    assert f["type"] == "blocked" and f["user_ids"] == [bob], f
    f = block(a, "block", carol)
    assert f["user_ids"] == sorted([bob, carol]), f
    # twice: the same list
    assert block(a, "block", bob)["user_ids"] == sorted([bob, carol])

    send_msg(b, "m1", "blocked?", to=alice)
    e = answer(b, "m1")
    assert e["type"] == "error" and e["code"] == "forbidden", e
    assert stored(stack, "select count(*) from messages where sender_id ="
                  " '%s' and client_msg_id = 'm1'" % bob) == "0"
    # the one who blocks may still write
    send(a, "m2", "I may", to=bob)

    # groups are not affected
    g = group(a, "G", [bob])
    send(b, "m3", "in the group", conv=g)
    assert want(a, lambda f: f.get("type") == "message"
                and f.get("client_msg_id") == "m3")["body"] == "in the group"

    f = block(a, "unblock", bob)
    assert f["type"] == "blocked" and f["user_ids"] == [carol], f
    send(b, "m4", "again", to=alice)
    assert want(a, lambda f: f.get("type") == "message"
                and f.get("client_msg_id") == "m4")["body"] == "again"


def test_block_bad_frames(stack, clients):
    alice = unique("alice")
    a = clients.add(stack.connect(alice))
    for rid, frame in (("x1", {"user_id": alice}),
                       ("x2", {"user_id": "bad id"}),
                       ("x3", {})):
        frame.update({"type": "block", "req_id": rid})
        a.send_json(frame)
        e = want(a, lambda f: f.get("req_id") == rid)
        assert e["type"] == "error" and e["code"] == "bad_request", e
    a.send_json({"type": "block", "user_id": "bob"})
    e = want(a, lambda f: f.get("type") == "error")
    assert e["code"] == "bad_request", e
    assert block(a, "unblock", "nobody")["user_ids"] == []


# -- search --------------------------------------------------------------------

def search(c, query, rid=None, **kw):
    rid = rid or unique("s")
    frame = {"type": "search", "req_id": rid, "query": query}
    frame.update(kw)
    c.send_json(frame)
    return want(c, lambda f: f.get("type") in ("search", "error")
                and f.get("req_id") == rid, what="search %r" % query)


def test_search_finds_pages_and_highlights(stack, clients):
    alice, bob, dave = unique("alice"), unique("bob"), unique("dave")
    word = unique("w").replace("_", "")     # a word nobody else uses
    a = clients.add(stack.connect(alice))
    conv = dm_id(alice, bob)
    ids = [send(a, "m%d" % i, "the %s number %d" % (word, i),
                to=bob)["message_id"] for i in range(5)]
    other = send(a, "other", "nothing to see", to=bob)["message_id"]
    wait_indexed(stack, ids + [other])

    r = search(a, word)
    assert r["type"] == "search" and r["has_more"] is False, r
    assert [x["message_id"] for x in r["results"]] == ids[::-1]
    top = r["results"][0]
    assert top["conversation_id"] == conv and top["kind"] == "text"
    assert top["body"] == "the %s number 4" % word
    assert "<b>%s</b>" % word in top["highlight"], top

    # paged newest first
    p1 = search(a, word, limit=2)
    assert [x["message_id"] for x in p1["results"]] == ids[:2:-1] \
        and p1["has_more"] is True, p1
    p2 = search(a, word, limit=2,
                before_id=p1["results"][-1]["message_id"])
    assert [x["message_id"] for x in p2["results"]] == [ids[2], ids[1]]
    p3 = search(a, word, limit=2,
                before_id=p2["results"][-1]["message_id"])
    assert [x["message_id"] for x in p3["results"]] == [ids[0]]
    assert p3["has_more"] is False

    # within one conversation; another user finds nothing of it
    assert len(search(a, word, conversation_id=conv)["results"]) == 5
    d = clients.add(stack.connect(dave))
    assert search(d, word)["results"] == []
    e = search(d, word, conversation_id=conv)
    assert e["type"] == "error" and e["code"] == "forbidden", e

    # an edit is found by its new text only; a deletion is gone
    ok(a, "edit", "e1", conv, ids[0], body="renamed entirely")
    ok(a, "delete", "d1", conv, ids[1])
    found = [x["message_id"] for x in search(a, word)["results"]]
    assert found == ids[:1:-1], found
    assert [x["message_id"] for x in search(a, "renamed")["results"]
            if x["conversation_id"] == conv] == [ids[0]]


def test_search_respects_membership(stack, clients):
    admin, carol = unique("admin"), unique("carol")
    word = unique("w").replace("_", "")
    a = clients.add(stack.connect(admin))
    c = clients.add(stack.connect(carol))
    g = group(a, "G", [carol])
    before = send(a, "m1", "%s before" % word, conv=g)["message_id"]
    rid = unique("rm")
    a.send_json({"type": "remove_members", "req_id": rid,
                 "conversation_id": g, "user_ids": [carol]})
    want(a, lambda f: f.get("type") == "group" and f.get("req_id") == rid)
    after = send(a, "m2", "%s after" % word, conv=g)["message_id"]
    wait_indexed(stack, [before, after])

    assert [x["message_id"] for x in search(a, word)["results"]] == \
        [after, before]
    # what it could read until its removal, nothing after
    assert [x["message_id"] for x in search(c, word)["results"]] == [before]
    assert [x["message_id"] for x in
            search(c, word, conversation_id=g)["results"]] == [before]


def test_search_never_shows_what_was_deleted_before_indexing(stack, clients):
    """A message deleted right after its ack, before the index has it, and
    one edited as quickly: once a message sent after them is indexed (so
    that theirs would have been too), the deleted one has no vector and is
    not found, the edited one is found by its new text only."""
    alice, bob = unique("alice"), unique("bob")
    word, old, new = (unique(w).replace("_", "") for w in ("w", "o", "n"))
    a = clients.add(stack.connect(alice))
    conv = dm_id(alice, bob)
    gone = send(a, "g1", "%s to be deleted" % word, to=bob)["message_id"]
    ok(a, "delete", "g1d", conv, gone)
    edited = send(a, "e1", "%s %s" % (word, old), to=bob)["message_id"]
    ok(a, "edit", "e1e", conv, edited, body="%s %s" % (word, new))
    later = send(a, "l1", "%s later" % word, to=bob)["message_id"]
    wait_indexed(stack, [later])

    assert [x["message_id"] for x in search(a, word)["results"]] == \
        [later, edited]
    assert search(a, old)["results"] == []
    assert [x["message_id"] for x in search(a, new)["results"]] == [edited]
    assert indexed(stack, [gone]) == 0
    # an edit writes its vector itself: nothing of the old text is left
    assert stack.psql("SELECT search @@ to_tsquery('simple', '%s')"
                      " FROM message_search WHERE message_id = %s"
                      % (old, edited)) == "f"


def test_search_bad_frames(stack, clients):
    a = clients.add(stack.connect(unique("alice")))
    for kw in ({"query": ""}, {"query": "x" * 257}, {"query": 5},
               {"query": "x", "limit": 0}, {"query": "x", "limit": 51},
               {"query": "x", "before_id": 5},
               {"query": "x", "before_id": "x1"}):
        rid = unique("bad")
        frame = {"type": "search", "req_id": rid}
        frame.update(kw)
        a.send_json(frame)
        e = want(a, lambda f: f.get("req_id") == rid)
        assert e["type"] == "error" and e["code"] == "bad_request", (kw, e)
    # 256 characters (not bytes) are fine
    assert search(a, "\u00e9" * 256)["type"] == "search"
