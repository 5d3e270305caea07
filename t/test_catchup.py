"""Catch-up at any size, against the real servers: a sync streamed in
pieces as the client reads (ngx_chat_wire.h, the S and E records), the
conversations request (paging), the receipts request and the others'
pointers on conversation items (../shared/PROTOCOL.md, "Lists, catch-up
and receipts of others").

The large accounts are loaded with one SQL statement per table, in the
shape the worker writes (gap-free seqs, message ids from the sequence,
the members' pointers, a sender's own pointers at its last message), and
then read only through the real path. The measurements (the large sync's
time and the worker's peak RSS) are printed.
"""

import json
import os
import time

import pytest

import wsclient
from chatlib import dm_id, unique

T = 20.0
SYNC_CAP = 100          # NGX_CHAT_WIRE_SYNC_CAP
SYNC_LIST = 200         # NGX_CHAT_WIRE_SYNC_LIST
LIST_MAX = 200          # NGX_CHAT_WIRE_LIST_MAX
PIECE = 65536           # NGX_CHAT_WIRE_STREAM_PIECE


def report(capsys, text):
    with capsys.disabled():
        print("\n    [test_catchup] " + text.replace("\n", "\n    "))


# -- reading ------------------------------------------------------------------

def answer(c, req_id, types, timeout=T):
    """The frame of one of types answering req_id (or its error); frames
    in between are kept in c.skipped."""
    seen = getattr(c, "skipped", None)
    if seen is None:
        seen = c.skipped = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no answer to %r within %.0fs" % (req_id,
                                                                   timeout))
        f = c.recv_json(remaining)
        if f.get("req_id") == req_id and f.get("type") in types + ("error",):
            return f
        seen.append(f)


def full_sync(c, req_id, cursors=None, timeout=120.0):
    """A whole sync answer: (conversations frame, messages, sync_done).
    Live frames that may come meanwhile (receipts, presence) are skipped;
    another answer or an error fails; a close (4009) raises."""
    frame = {"type": "sync", "req_id": req_id}
    if cursors is not None:
        frame["cursors"] = cursors
    c.send_json(frame)
    convs = answer(c, req_id, ("conversations",), timeout)
    assert convs["type"] == "conversations", "sync answered %r" % convs
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no sync_done within %.0fs (%d messages)" % (
            timeout, len(msgs))
        f = c.recv_json(remaining)
        if f.get("type") == "message":
            msgs.append(f)
        elif f.get("type") == "sync_done" and f.get("req_id") == req_id:
            return convs, msgs, f
        elif f.get("type") not in ("receipt", "typing", "presence"):
            raise AssertionError("unexpected frame inside a sync: %r" % f)


def page(c, req_id=None, **fields):
    req_id = req_id if req_id is not None else unique("cv")
    frame = {"type": "conversations", "req_id": req_id}
    frame.update(fields)
    c.send_json(frame)
    return answer(c, req_id, ("conversations",))


def all_pages(c, limit=None, first=None, use_id=False, max_pages=100):
    """Every item, paging with the last item's activity (and message id
    when use_id) until has_more is false; the pages' sizes too."""
    items, sizes = [], []
    cur = first
    for _ in range(max_pages):
        kw = {}
        if limit is not None:
            kw["limit"] = limit
        if cur is not None:
            last = cur["items"][-1]["last_message"]
            kw["before_ts"] = last["server_ts"]
            if use_id:
                kw["before_message_id"] = last["message_id"]
        p = page(c, **kw)
        assert p["type"] == "conversations", "conversations answered %r" % p
        assert isinstance(p.get("has_more"), bool), p
        items.extend(p["items"])
        sizes.append(len(p["items"]))
        if not p["has_more"]:
            return items, sizes
        assert p["items"], "an empty page that says has_more: %r" % p
        cur = p
    raise AssertionError("paging did not end")


def receipts(c, conv, req_id=None):
    req_id = req_id if req_id is not None else unique("rc")
    c.send_json({"type": "receipts", "req_id": req_id,
                 "conversation_id": conv})
    return answer(c, req_id, ("receipts",))


def item_of(frame, conv):
    its = [it for it in frame["items"] if it["conversation_id"] == conv]
    assert len(its) == 1, "%s listed %d times" % (conv, len(its))
    return its[0]


# -- the worker ---------------------------------------------------------------

def worker_pid(stack):
    with open(os.path.join(stack.dir, "run", "worker1.pid")) as f:
        return int(f.read().strip())


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def reset_peak(pid):
    """The peak RSS starts again from the current RSS (Linux's
    clear_refs 5), so that what follows is measured alone."""
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")
    assert proc_kb(pid, "VmHWM") <= proc_kb(pid, "VmRSS") + 1024


# -- loading accounts ---------------------------------------------------------

def load_direct_account(stack, me, peers_prefix, n, count_sql, body_sql,
                        ts_sql, mine_sql="false"):
    """n direct conversations of me with <peers_prefix>_<i> (i from 0), as
    the worker would have stored them: conversation i has count_sql
    messages (seq 1..), each of body body_sql (both SQL of i and seq),
    the last one at ts_sql (of i), one ms apart before it. Where mine_sql
    (of i) holds, the last two messages are me's (my pointers at the end,
    the peer's delivered at n - 1 and read at n - 2); otherwise all are
    the peer's and I have read nothing."""
    spec = ("SELECT i, p, n, mine, ts,"
            " CASE WHEN m COLLATE \"C\" < p COLLATE \"C\""
            "  THEN 'dm:' || m || ':' || p ELSE 'dm:' || p || ':' || m END"
            "  AS conv"
            " FROM (SELECT i, '%(me)s' AS m,"
            "  '%(pp)s_' || lpad(i::text, 4, '0') AS p,"
            "  (%(count)s)::bigint AS n, (%(mine)s) AS mine,"
            "  (%(ts)s)::bigint AS ts"
            "  FROM generate_series(0, %(last)d) AS i) AS s"
            % {"me": me, "pp": peers_prefix, "count": count_sql,
               "mine": mine_sql, "ts": ts_sql, "last": n - 1})
    sql = (
        "CREATE TEMP TABLE spec AS " + spec + ";"
        "INSERT INTO conversations (id, kind, last_seq, last_activity,"
        " created_at) SELECT conv, 'direct', n, ts, ts - n FROM spec;"
        "INSERT INTO messages (conversation_id, seq, sender_id, device_id,"
        " client_msg_id, kind, body, server_ts)"
        " SELECT conv, seq,"
        "  CASE WHEN mine AND seq > n - 2 THEN '%(me)s' ELSE p END,"
        "  'bulk', 'bulk-' || conv || '-' || seq, 'text', %(body)s,"
        "  ts - (n - seq)"
        " FROM spec, generate_series(1, n) AS seq ORDER BY i, seq;"
        "INSERT INTO members (conversation_id, user_id, delivered_seq,"
        " read_seq)"
        " SELECT conv, '%(me)s', CASE WHEN mine THEN n ELSE 0 END,"
        "  CASE WHEN mine THEN n ELSE 0 END FROM spec"
        " UNION ALL"
        " SELECT conv, p, CASE WHEN mine THEN n - 1 ELSE n END,"
        "  CASE WHEN mine THEN n - 2 ELSE n END FROM spec;"
        % {"me": me, "body": body_sql})
    stack.psql(sql, timeout=600)


def check_sync(convs, msgs, expect_n, expect_mine):
    """What a sync without cursors must hold for the listed conversations:
    each one's newest messages (at most the cap), ascending, and
    truncated when it has more; the others' pointers."""
    by_conv = {}
    for m in msgs:
        by_conv.setdefault(m["conversation_id"], []).append(m["seq"])
    listed = [it["conversation_id"] for it in convs["items"]]
    assert set(by_conv) <= set(listed), "messages of unlisted conversations"
    for it in convs["items"]:
        conv = it["conversation_id"]
        n = expect_n[conv]
        assert it["last_seq"] == n, it
        want = list(range(max(0, n - SYNC_CAP) + 1, n + 1))
        assert by_conv.get(conv, []) == want, (
            "%s: got seqs %s..%s (%d), want %d..%d" % (
                conv, (by_conv.get(conv) or [None])[0],
                (by_conv.get(conv) or [None])[-1],
                len(by_conv.get(conv, [])), want[0], want[-1]))
        assert bool(it.get("truncated")) == (n > SYNC_CAP), it
        if expect_mine[conv]:
            assert (it["delivered_seq"], it["read_seq"], it["unread"]) == (
                n, n, 0), it
            assert (it["others_delivered_seq"], it["others_read_seq"]) == (
                n - 1, n - 2), it
        else:
            assert (it["delivered_seq"], it["read_seq"], it["unread"]) == (
                0, 0, n), it
            assert (it["others_delivered_seq"], it["others_read_seq"]) == (
                n, n), it


# -- the large account --------------------------------------------------------

def test_large_account_sync_streams_and_pages(stack, clients, capsys):
    """1,000 direct conversations and 100,000 messages. The first sync on
    a new device completes on a client that reads, however large its
    answer (here about 24 MB: the listed conversations' messages are of
    2 KB, their last ones short); the worker's memory does not follow the
    answer's size; every conversation is reached by paging."""
    me, pp = unique("big"), unique("bp")
    n_convs, base = 1000, 1_700_000_000_000

    # conversations 0..99 have 150 messages (truncated), 100..199 have 50,
    # the others 100: 100,000 in all; conversation 0 is the newest
    count_sql = "CASE WHEN i < 100 THEN 150 WHEN i < 200 THEN 50 ELSE 100 END"
    body_sql = ("CASE WHEN i < 150 AND seq < n"
                " THEN repeat('x', 2000) || ' ' || i || ':' || seq"
                " ELSE 'm ' || i || ':' || seq END")
    ts_sql = "%d + (%d - i) * 1000" % (base, n_convs)
    mine_sql = "i % 7 = 0"
    t0 = time.monotonic()
    load_direct_account(stack, me, pp, n_convs, count_sql, body_sql, ts_sql,
                        mine_sql)
    loaded = time.monotonic() - t0
    total = int(stack.psql("SELECT count(*) FROM messages m JOIN members b"
                           " ON b.conversation_id = m.conversation_id"
                           " WHERE b.user_id = '%s'" % me))
    assert total == 100_000, total

    def n_of(i):
        return 150 if i < 100 else 50 if i < 200 else 100

    peers = ["%s_%04d" % (pp, i) for i in range(n_convs)]
    order = [dm_id(me, p) for p in peers]
    expect_n = {order[i]: n_of(i) for i in range(n_convs)}
    expect_mine = {order[i]: i % 7 == 0 for i in range(n_convs)}

    c = clients.add(stack.connect(me, "new-device"))
    pid = worker_pid(stack)
    reset_peak(pid)
    rss0 = proc_kb(pid, "VmRSS")
    t0 = time.monotonic()
    convs, msgs, _ = full_sync(c, "big-sync")
    took = time.monotonic() - t0
    peak = proc_kb(pid, "VmHWM")
    size = sum(len(json.dumps(m)) for m in msgs)

    listed = [it["conversation_id"] for it in convs["items"]]
    assert 0 < len(listed) <= SYNC_LIST, len(listed)
    assert listed == order[:len(listed)], "newest activity first"
    assert convs["has_more"] is True, "1000 conversations: more to page"
    check_sync(convs, msgs, expect_n, expect_mine)
    assert len(msgs) == sum(min(SYNC_CAP, expect_n[x]) for x in listed)
    assert size > 100 * PIECE, "the answer is not large: %d" % size

    report(capsys, "large account: loaded 100,000 messages in %.1fs; first "
           "sync %.2fs: %d conversations listed, %d messages, %.1f MB; "
           "worker RSS %d kB before, peak %d kB (+%d kB)"
           % (loaded, took, len(listed), len(msgs), size / 1e6, rss0, peak,
              peak - rss0))
    # rows and frames of the whole answer would be twice its size; under
    # AddressSanitizer (make test SANITIZE=1) freed memory waits in its
    # quarantine, so the peak says nothing about what the worker holds
    sanitized = os.path.basename(
        os.environ.get("CHAT_BUILD_DIR", "").rstrip("/")) == "build-san"
    assert sanitized or peak - rss0 < 16 * 1024, (
        "the worker's peak grew by %d kB for a %.1f MB answer" % (
            peak - rss0, size / 1e6))

    # the connection is still usable, the answer's list is gone
    c.send_json({"type": "ping", "req_id": "after"})
    assert answer(c, "after", ("pong",))["type"] == "pong"
    keys = stack.redis_cli("KEYS", "chat:stream:*").split()
    assert not [k for k in keys if c.hello["session_id"] in k], keys

    # every conversation through paging, newest first, each once
    t0 = time.monotonic()
    items, sizes = all_pages(c, limit=LIST_MAX, first=convs)
    paged = time.monotonic() - t0
    got = listed + [it["conversation_id"] for it in items]
    assert got == order, "paging: %d items, %d distinct, first wrong at %r" % (
        len(got), len(set(got)),
        next((i for i, (a, b) in enumerate(zip(got, order)) if a != b),
             None))
    assert all(0 < s <= LIST_MAX for s in sizes), sizes
    for it in items:
        conv = it["conversation_id"]
        assert "truncated" not in it, it
        assert it["last_seq"] == expect_n[conv], it
        want = ((expect_n[conv] - 1, expect_n[conv] - 2)
                if expect_mine[conv] else (expect_n[conv],) * 2)
        assert (it["others_delivered_seq"], it["others_read_seq"]) == want
    report(capsys, "paged %d more conversations in %d pages in %.2fs (pages "
           "of %s)" % (len(items), len(sizes), paged, sizes))

    # the default page is 50
    p = page(c)
    assert len(p["items"]) == 50 and p["has_more"] is True, len(p["items"])
    assert [it["conversation_id"] for it in p["items"]] == order[:50]

    # with cursors at the end of any the list can hold: nothing but the
    # list (which now holds a few more: no "truncated" takes room)
    cursors = {x: expect_n[x] for x in order[:SYNC_LIST]}
    convs2, msgs2, _ = full_sync(c, "big-again", cursors=cursors)
    assert len(convs2["items"]) >= len(listed)
    assert msgs2 == [], "with every cursor at the end: %d messages" % len(
        msgs2)
    assert not [it for it in convs2["items"] if it.get("truncated")]

    # the store the bulk load made is the worker's: a send goes on from it
    c.send_json({"type": "send", "client_msg_id": "after-bulk",
                 "to": peers[3], "body": "hello"})
    f = c.recv_until(lambda o: o.get("type") in ("ack", "error")
                     and o.get("client_msg_id") == "after-bulk", T)
    assert f["type"] == "ack" and f["seq"] == expect_n[order[3]] + 1, f


def test_sync_of_60_conversations_of_1kb_messages(stack, clients):
    """60 direct conversations of 100 messages of 1 KB: a new device used
    to be closed with 4009 after 150 messages. Now its sync completes and
    the conversations not in its first page come through paging."""
    me, pp = unique("sixty"), unique("sp")
    load_direct_account(stack, me, pp, 60, "100",
                        "repeat('k', 1000) || ' ' || i || ':' || seq",
                        "1700000000000 + (60 - i) * 1000")
    peers = ["%s_%04d" % (pp, i) for i in range(60)]
    order = [dm_id(me, p) for p in peers]

    c = clients.add(stack.connect(me, "phone2"))
    convs, msgs, _ = full_sync(c, "sixty")
    listed = [it["conversation_id"] for it in convs["items"]]
    assert listed == order[:len(listed)], listed
    check_sync(convs, msgs, {x: 100 for x in order},
               {x: False for x in order})
    # the conversations frame stays within one piece of the stream
    assert len(json.dumps(convs, separators=(",", ":"))) <= PIECE
    if len(listed) < 60:
        assert convs["has_more"] is True
        items, _ = all_pages(c, first=convs)
        listed += [it["conversation_id"] for it in items]
    assert listed == order


def test_sync_to_a_client_that_stops_reading_is_closed_4009(stack, clients):
    """A streamed answer is popped only as the client reads: one that
    reads nothing holds at most the send buffer in nginx, and is closed
    with 4009 once more is sent to it than that."""
    me, pp = unique("stall"), unique("st")
    load_direct_account(stack, me, pp, 60, "100",
                        "repeat('s', 1000) || ' ' || i || ':' || seq",
                        "1700000000000 + (60 - i) * 1000")
    slow = stack.connect(me, "slow", rcvbuf=4096)
    friend = clients.add(stack.connect(unique("fr")))
    try:
        slow.send_json({"type": "sync", "req_id": "never-read"})
        time.sleep(3)
        # the live messages on top of a stalled answer overflow the buffer
        for i in range(60):
            friend.send_json({"type": "send", "client_msg_id": "l%d" % i,
                              "to": me, "body": "z" * 8000})
        acks = 0
        deadline = time.monotonic() + 60
        while acks < 60 and time.monotonic() < deadline:
            f = friend.recv_json(deadline - time.monotonic())
            if f.get("type") == "ack":
                acks += 1
            assert f.get("type") != "error", f
        assert acks == 60
        code = slow.expect_close(60)
        frames = getattr(slow, "frames_before_close", 0)
        assert code == 4009, "closed with %r after %d frames" % (code,
                                                                 frames)
        # far from the 6,000 messages of the answer and the 60 live ones
        assert frames < 6000, frames
    finally:
        slow.abort()


# -- the conversations request ------------------------------------------------

def test_conversations_paging_limits_and_ties(stack, clients):
    me, pp = unique("pager"), unique("pg")
    # 12 conversations; 2..9 share one last activity (one ms)
    load_direct_account(stack, me, pp, 12, "3", "'b ' || i || ':' || seq",
                        "CASE WHEN i BETWEEN 2 AND 9 THEN 1700000050000"
                        " WHEN i < 2 THEN 1700000100000 - i * 1000"
                        " ELSE 1700000030000 - i * 1000 END")
    c = clients.add(stack.connect(me))
    newest = [dm_id(me, "%s_%04d" % (pp, i)) for i in (0, 1)]

    # bad input: bad_request, the connection stays
    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "5"},
                {"limit": 2.5}, {"before_ts": -1}, {"before_ts": "x"},
                {"before_message_id": "12"},
                {"before_ts": 5, "before_message_id": 12},
                {"before_ts": 5, "before_message_id": "1x"}):
        p = page(c, **bad)
        assert p["type"] == "error" and p["code"] == "bad_request", (bad, p)
    c.send_json({"type": "conversations", "limit": 3})
    e = c.recv_json(T)
    assert e["type"] == "error" and e["code"] == "bad_request", e

    # a page of 1, 2, the whole list
    p = page(c, limit=1)
    assert [it["conversation_id"] for it in p["items"]] == newest[:1]
    assert p["has_more"] is True
    whole = page(c, limit=200)
    assert len(whole["items"]) == 12 and whole["has_more"] is False
    ids = [it["conversation_id"] for it in whole["items"]]
    assert ids[:2] == newest and len(set(ids)) == 12

    # a page never ends inside a run of one activity unless the run is the
    # whole page: limit 4 gives the two newest alone
    p = page(c, limit=4)
    assert [it["conversation_id"] for it in p["items"]] == newest, p
    assert p["has_more"] is True

    # with before_message_id every conversation is reached, at any limit
    for limit in (1, 3, 4, 5):
        items, sizes = all_pages(c, limit=limit, use_id=True)
        assert [it["conversation_id"] for it in items] == ids, (limit, sizes)
        assert all(s <= limit for s in sizes), sizes

    # before_ts alone reaches them where no page is a run of one ms
    items, _ = all_pages(c, limit=10)
    assert [it["conversation_id"] for it in items] == ids

    # older than everything: an empty last page
    p = page(c, before_ts=1)
    assert p["items"] == [] and p["has_more"] is False

    # nobody else's conversations, a user without any
    lone = clients.add(stack.connect(unique("lone")))
    p = page(lone)
    assert p["items"] == [] and p["has_more"] is False


def test_hello_features(stack, clients):
    c = clients.add(stack.connect(unique("feat")))
    assert {"conversations", "receipts"} <= set(c.hello["features"]), (
        c.hello)


# -- receipts and the others' pointers ---------------------------------------

def wait_ack(c, cmid):
    f = c.recv_until(lambda o: o.get("type") in ("ack", "error")
                     and o.get("client_msg_id") == cmid, T)
    assert f["type"] == "ack", f
    return f


def group_answer(c, frame):
    c.send_json(frame)
    g = answer(c, frame["req_id"], ("group",))
    assert g["type"] == "group", g
    return g


def wait_receipts(c, conv, *want):
    """Reads until every (user, state, seq) receipt of conv has come."""
    missing = set(want)
    deadline = time.monotonic() + T
    while missing:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "receipts that never came: %r" % missing
        f = c.recv_json(remaining)
        if f.get("type") == "receipt" and f.get("conversation_id") == conv:
            missing.discard((f["user_id"], f["state"], f["seq"]))


def test_receipts_and_others_pointers(stack, clients):
    a, b, c_, d = (unique(x) for x in ("ra", "rb", "rc", "rd"))
    ca = clients.add(stack.connect(a))
    cb = clients.add(stack.connect(b))
    cc = clients.add(stack.connect(c_))
    cd = clients.add(stack.connect(d))

    conv = group_answer(ca, {"type": "create_group", "req_id": "g",
                             "name": "Ticks", "members": [b, c_]})[
                                 "conversation_id"]
    for i in range(1, 5):                       # seqs 2..5
        ca.send_json({"type": "send", "client_msg_id": "t%d" % i,
                      "conversation_id": conv, "body": "tick %d" % i})
        wait_ack(ca, "t%d" % i)

    # b has 5, read 4; c has 3, read 2
    cb.send_json({"type": "receipt", "conversation_id": conv, "seq": 5,
                  "state": "delivered"})
    cb.send_json({"type": "receipt", "conversation_id": conv, "seq": 4,
                  "state": "read"})
    cc.send_json({"type": "receipt", "conversation_id": conv, "seq": 3,
                  "state": "delivered"})
    cc.send_json({"type": "receipt", "conversation_id": conv, "seq": 2,
                  "state": "read"})
    wait_receipts(ca, conv, (b, "delivered", 5), (b, "read", 4),
                  (c_, "delivered", 3), (c_, "read", 2))

    r = receipts(ca, conv, req_id={"any": ["json", 1]})
    assert r["type"] == "receipts", r
    assert r["req_id"] == {"any": ["json", 1]} and r["conversation_id"] == conv
    assert sorted((m["user_id"], m["delivered_seq"], m["read_seq"])
                  for m in r["members"]) == sorted(
        [(a, 5, 5), (b, 5, 4), (c_, 3, 2)]), r
    # a member asks as well
    assert receipts(cb, conv)["type"] == "receipts"

    convs, _, _ = full_sync(ca, "ticks")
    it = item_of(convs, conv)
    assert (it["others_delivered_seq"], it["others_read_seq"]) == (3, 2), it
    it = item_of(page(ca), conv)
    assert (it["others_delivered_seq"], it["others_read_seq"]) == (3, 2), it
    it = item_of(page(cb), conv)        # a's pointers are at its last send
    assert (it["others_delivered_seq"], it["others_read_seq"]) == (3, 2), it

    # a member added later counts as having what came before its joining
    group_answer(ca, {"type": "add_members", "req_id": "add",
                      "conversation_id": conv, "user_ids": [d]})   # seq 6
    it = item_of(page(ca), conv)
    assert (it["others_delivered_seq"], it["others_read_seq"]) == (3, 2), it
    r = receipts(ca, conv)
    assert (d, 5, 5) in [(m["user_id"], m["delivered_seq"], m["read_seq"])
                         for m in r["members"]], r

    # c is removed (seq 7): its pointers no longer hold the others back;
    # it is refused the receipts from then on, and its item stays as of
    # its removal
    group_answer(ca, {"type": "remove_members", "req_id": "rm",
                      "conversation_id": conv, "user_ids": [c_]})
    cb.send_json({"type": "receipt", "conversation_id": conv, "seq": 7,
                  "state": "read"})
    cd.send_json({"type": "receipt", "conversation_id": conv, "seq": 7,
                  "state": "read"})
    wait_receipts(ca, conv, (b, "read", 7), (d, "read", 7))
    it = item_of(page(ca), conv)
    assert (it["others_delivered_seq"], it["others_read_seq"]) == (7, 7), it
    assert sorted(m["user_id"] for m in receipts(ca, conv)["members"]) == \
        sorted([a, b, d]), "the current members only"
    e = receipts(cc, conv)
    assert e["type"] == "error" and e["code"] == "forbidden", e
    it = item_of(page(cc), conv)
    assert it["last_seq"] == 7, it
    assert it["others_delivered_seq"] <= 7 and it["others_read_seq"] <= 7

    # not a member, no such group: forbidden
    e = receipts(cd, "g:nosuchgroup")
    assert e["type"] == "error" and e["code"] == "forbidden", e
    outsider = clients.add(stack.connect(unique("ro")))
    e = receipts(outsider, conv)
    assert e["type"] == "error" and e["code"] == "forbidden", e
    e = receipts(outsider, dm_id(a, b))
    assert e["type"] == "error" and e["code"] == "forbidden", e

    # bad input
    outsider.send_json({"type": "receipts", "req_id": "x"})
    e = answer(outsider, "x", ())
    assert e["type"] == "error" and e["code"] == "bad_request", e
    outsider.send_json({"type": "receipts", "conversation_id": conv})
    e = outsider.recv_json(T)
    assert e["type"] == "error" and e["code"] == "bad_request", e
    e = receipts(outsider, "g:" + "x" * 200)
    assert e["type"] == "error" and e["code"] in ("too_large",
                                                  "bad_request"), e


def test_direct_ticks_after_a_reconnect(stack, clients):
    """The sender's device that comes back learns how far the other has
    received and read its messages, from its sync and from receipts."""
    a, b = unique("da"), unique("db")
    ca = clients.add(stack.connect(a))
    cb = clients.add(stack.connect(b))
    conv = dm_id(a, b)

    # a direct conversation not begun: no pointers, not forbidden
    r = receipts(ca, conv)
    assert r["type"] == "receipts" and r["members"] == [], r

    for i in range(3):
        ca.send_json({"type": "send", "client_msg_id": "d%d" % i, "to": b,
                      "body": "x"})
        wait_ack(ca, "d%d" % i)
    cb.send_json({"type": "receipt", "conversation_id": conv, "seq": 3,
                  "state": "delivered"})
    cb.send_json({"type": "receipt", "conversation_id": conv, "seq": 2,
                  "state": "read"})
    wait_receipts(ca, conv, (b, "read", 2))
    ca.close()

    again = clients.add(stack.connect(a, "laptop"))
    convs, _, _ = full_sync(again, "back")
    it = item_of(convs, conv)
    assert (it["others_delivered_seq"], it["others_read_seq"]) == (3, 2), it
    r = receipts(again, conv)
    assert sorted((m["user_id"], m["delivered_seq"], m["read_seq"])
                  for m in r["members"]) == sorted([(a, 3, 3), (b, 3, 2)])
    convs, _, _ = full_sync(cb, "other-side")
    it = item_of(convs, conv)
    assert (it["others_delivered_seq"], it["others_read_seq"]) == (3, 3), it


def test_small_sync_stays_inline(stack, clients):
    """An answer that fits one piece goes with the batch's records: no
    list is made for it."""
    a, b = unique("ia"), unique("ib")
    ca = clients.add(stack.connect(a))
    ca.send_json({"type": "send", "client_msg_id": "i1", "to": b,
                  "body": "x"})
    wait_ack(ca, "i1")
    before = stack.redis_cli("INFO", "commandstats")
    convs, msgs, _ = full_sync(ca, "tiny")
    after = stack.redis_cli("INFO", "commandstats")

    def rpush(text):
        for line in text.splitlines():
            if line.startswith("cmdstat_rpush:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    assert [m["seq"] for m in msgs] == [1]
    assert convs["has_more"] is False
    assert rpush(after) == rpush(before), "a small sync was streamed"
