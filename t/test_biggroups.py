"""Groups up to 1024 members and their receipts (docs/protocol.md,
"Receipts and typing"; README "Workers").

The default workers hold groups to 256 members. The tests of the large
groups restart the workers with --max-group-members 1024 (the receipt
fan-out limit stays at its default, 256) and put them back as they were
at the end. Of a 1024-member group only a few members connect; the others
are users that never do."""

import os
import subprocess
import time

import pytest

from chatlib import send_msg, unique

STACK_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "stack.sh")
BATCH = 300             # user ids per request: well under the frame limit


def _workers(stack, args):
    """Every worker stopped, then started again with these options."""
    stack.ctl("worker-stop")
    env = dict(stack._proc_env or os.environ)
    env["CHAT_WORKER_ARGS"] = args
    p = subprocess.run(["bash", STACK_SH, "worker-start", stack.dir],
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    assert p.returncode == 0, p.stdout.decode("utf-8", "replace")[-2000:]


@pytest.fixture(scope="module")
def big_workers(stack):
    _workers(stack, "--max-group-members 1024")
    try:
        yield stack
    finally:
        _workers(stack, "")


class Box:
    """One connection and every frame it read, in order."""

    def __init__(self, c):
        self.c = c
        self.frames = []

    def send(self, frame):
        self.c.send_json(frame)

    def pull(self, pred, timeout=30.0, what="a frame"):
        """Reads until pred(frames) holds; returns what it returned."""
        deadline = time.monotonic() + timeout
        while True:
            got = pred(self.frames)
            if got:
                return got
            remaining = deadline - time.monotonic()
            assert remaining > 0, "%s/%s: timed out waiting for %s; last " \
                "frames %r" % (self.c.user, self.c.dev, what,
                               self.frames[-5:])
            try:
                self.frames.append(self.c.recv_json(min(remaining, 0.5)))
            except TimeoutError:
                pass

    def idle(self, secs):
        """Reads whatever comes for secs."""
        deadline = time.monotonic() + secs
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                self.frames.append(self.c.recv_json(remaining))
            except TimeoutError:
                return

    def answer(self, req_id, timeout=30.0):
        return self.pull(lambda fs: next((f for f in fs
                                          if f.get("req_id") == req_id
                                          and f.get("type") != "message"),
                                         None),
                         timeout, "the answer to %r" % req_id)

    def ack(self, cmid, timeout=30.0):
        f = self.pull(lambda fs: next((f for f in fs
                                       if f.get("client_msg_id") == cmid
                                       and f.get("type") in ("ack", "error")),
                                      None),
                      timeout, "the ack of %r" % cmid)
        assert f["type"] == "ack", f
        return f

    def receipts_of(self, conv):
        return [f for f in self.frames if f.get("type") == "receipt"
                and f.get("conversation_id") == conv]

    def close(self):
        try:
            self.c.close(timeout=1.0)
        except Exception:
            pass


def _group(admin, name, members):
    """A group of admin and members, created and filled BATCH ids at a
    time; its id and the last answer."""
    rid = unique("cg")
    admin.send({"type": "create_group", "req_id": rid, "name": name,
                "members": members[:BATCH]})
    g = admin.answer(rid, 60)
    assert g["type"] == "group", g
    for k in range(BATCH, len(members), BATCH):
        rid = unique("am")
        admin.send({"type": "add_members", "req_id": rid,
                    "conversation_id": g["conversation_id"],
                    "user_ids": members[k:k + BATCH]})
        g = admin.answer(rid, 60)
        assert g["type"] == "group", g
    return g["conversation_id"], g


def _receipt(box, conv, seq, state):
    box.send({"type": "receipt", "conversation_id": conv, "seq": seq,
              "state": state})


def _ask_receipts(box, conv):
    rid = unique("rc")
    box.send({"type": "receipts", "req_id": rid, "conversation_id": conv})
    r = box.answer(rid)
    assert r["type"] == "receipts", r
    return {m["user_id"]: (m["delivered_seq"], m["read_seq"])
            for m in r["members"]}


def test_default_limit_is_256(stack, clients):
    """The workers' default: a group holds 256 members, creator included;
    one more is too_large, and the group stays as it was."""
    base = unique("lim")
    admin = Box(clients.add(stack.connect(base + "_a", "p")))
    others = ["%s_%03d" % (base, i) for i in range(255)]
    conv, g = _group(admin, "two hundred fifty-six", others)
    assert len(g["members"]) == 256, len(g["members"])
    rid = unique("am")
    admin.send({"type": "add_members", "req_id": rid, "conversation_id": conv,
                "user_ids": [base + "_more"]})
    e = admin.answer(rid)
    assert e["type"] == "error" and e["code"] == "too_large", e


def test_1024_member_group(big_workers, clients):
    """A 1024-member group: created and filled in batches, a 1025th member
    refused; its messages reach the connected members; history, sync and
    the conversation list know it; receipts reach the reader's devices and
    the senders of what they cover, never a bystander, and the receipts
    request answers the pointers."""
    stack = big_workers
    base = unique("big")
    names = {k: "%s_%s" % (base, k) for k in ("a", "b", "c", "r1", "r2")}
    admin = Box(clients.add(stack.connect(names["a"], "p")))
    sender = Box(clients.add(stack.connect(names["b"], "p")))
    bystander = Box(clients.add(stack.connect(names["c"], "p")))
    r1 = Box(clients.add(stack.connect(names["r1"], "d1")))
    r1b = Box(clients.add(stack.connect(names["r1"], "d2")))
    r2 = Box(clients.add(stack.connect(names["r2"], "d1")))
    boxes = [admin, sender, bystander, r1, r1b, r2]
    silent = ["%s_%04d" % (base, i) for i in range(1024 - len(names))]
    members = [names[k] for k in ("b", "c", "r1", "r2")] + silent

    t0 = time.monotonic()
    conv, g = _group(admin, "a thousand and twenty-four", members)
    t_fill = time.monotonic() - t0
    assert len(g["members"]) == 1024, len(g["members"])
    changes = (len(members) + BATCH - 1) // BATCH
    rid = unique("am")
    admin.send({"type": "add_members", "req_id": rid, "conversation_id": conv,
                "user_ids": [base + "_more"]})
    e = admin.answer(rid)
    assert e["type"] == "error" and e["code"] == "too_large", e

    def seqs(fs):
        return [f["seq"] for f in fs if f.get("type") == "message"
                and f.get("conversation_id") == conv]

    for b in boxes:
        b.pull(lambda fs: len(seqs(fs)) >= changes, 30,
               "the group's %d system messages" % changes)

    # b then a send; everyone connected gets both, once, in order
    send_msg(sender.c, "m1", "from b", conv=conv)
    s1 = sender.ack("m1")["seq"]
    send_msg(admin.c, "m2", "from a", conv=conv)
    s2 = admin.ack("m2")["seq"]
    assert (s1, s2) == (changes + 1, changes + 2), (s1, s2, changes)
    for b in boxes:
        want = list(range(1, changes + 3))
        if b is sender:
            want.remove(s1)
        elif b is admin:
            want.remove(s2)
        b.pull(lambda fs: len(seqs(fs)) >= len(want), 30, "m1 and m2")
    for b in boxes:
        b.idle(0.3)
        want = [s for s in range(1, changes + 3)
                if not (b is sender and s == s1 or b is admin and s == s2)]
        assert seqs(b.frames) == want, (b.c.user, seqs(b.frames))

    # r1 reads both (a's and b's); r2 only b's, in two steps
    _receipt(r1, conv, s1, "delivered")
    _receipt(r1, conv, s2, "delivered")
    _receipt(r1, conv, s2, "read")
    _receipt(r2, conv, s1, "delivered")
    _receipt(r2, conv, s1, "read")

    def last(box, user, state):
        return max([f["seq"] for f in box.receipts_of(conv)
                    if f["user_id"] == user and f["state"] == state] or [0])

    # a's message is covered by r1's read only
    admin.pull(lambda fs: last(admin, names["r1"], "read") == s2, 30,
               "r1's read at the admin")
    sender.pull(lambda fs: last(sender, names["r1"], "read") >= s1
                and last(sender, names["r2"], "read") == s1, 30,
                "r1's and r2's reads at the sender")
    for b in (r1, r1b):
        b.pull(lambda fs: last(b, names["r1"], "read") == s2, 30,
               "r1's read on its devices")
    r2.pull(lambda fs: last(r2, names["r2"], "read") == s1, 30,
            "r2's read on its device")
    for b in boxes:
        b.idle(1.0)

    # nobody hears of what does not concern it; nothing goes backwards
    assert bystander.receipts_of(conv) == [], bystander.receipts_of(conv)
    assert [f for f in admin.receipts_of(conv)
            if f["user_id"] == names["r2"]] == [], admin.receipts_of(conv)
    assert [f for f in r2.receipts_of(conv)
            if f["user_id"] == names["r1"]] == [], r2.receipts_of(conv)
    for b in boxes:
        for user in (names["r1"], names["r2"]):
            for state in ("delivered", "read"):
                got = [f["seq"] for f in b.receipts_of(conv)
                       if f["user_id"] == user and f["state"] == state]
                assert got == sorted(got), (b.c.user, user, state, got)
    # the sender heard at most one frame per receipt sent, fewer when a
    # batch held several of one reader and state
    assert len(sender.receipts_of(conv)) <= 5, sender.receipts_of(conv)

    # the pointers, as every member may ask
    ptrs = _ask_receipts(bystander, conv)
    assert len(ptrs) == 1024, len(ptrs)
    assert ptrs[names["r1"]] == (s2, s2), ptrs[names["r1"]]
    assert ptrs[names["r2"]] == (s1, s1), ptrs[names["r2"]]
    assert ptrs[names["b"]][1] >= s1 and ptrs[names["a"]][1] >= s2, ptrs

    # history and sync of the group as any member reads it
    rid = unique("h")
    bystander.send({"type": "history", "req_id": rid,
                    "conversation_id": conv, "limit": 100})
    h = bystander.answer(rid)
    assert h["type"] == "history", h
    assert [m["seq"] for m in h["messages"]] == list(range(1, s2 + 1)), h
    assert [m.get("client_msg_id") for m in h["messages"][-2:]] == \
        ["m1", "m2"], h["messages"][-2:]
    rid = unique("s")
    r2.send({"type": "sync", "req_id": rid, "cursors": {conv: s1}})
    r2.pull(lambda fs: any(f.get("type") == "sync_done"
                           and f.get("req_id") == rid for f in fs), 60,
            "sync_done")
    cl = [f for f in r2.frames if f.get("type") == "conversations"
          and f.get("req_id") == rid][0]
    it = [i for i in cl["items"] if i["conversation_id"] == conv]
    assert len(it) == 1, cl
    it = it[0]
    assert it["member_count"] == 1024 and it["last_seq"] == s2, it
    assert (it["delivered_seq"], it["read_seq"]) == (s1, s1), it
    synced = [f["seq"] for f in r2.frames[r2.frames.index(cl):]
              if f.get("type") == "message"
              and f.get("conversation_id") == conv]
    assert synced == [s2], synced
    print("1024-member group filled in %d changes in %.2f s"
          % (changes, t_fill))


def test_small_group_receipts_reach_everyone(big_workers, clients):
    """Under the receipt fan-out limit every member hears of a receipt,
    the bystander too, with the same workers."""
    stack = big_workers
    base = unique("sm")
    a = Box(clients.add(stack.connect(base + "_a", "p")))
    b = Box(clients.add(stack.connect(base + "_b", "p")))
    c = Box(clients.add(stack.connect(base + "_c", "p")))
    conv, _ = _group(a, "three", [base + "_b", base + "_c"])
    send_msg(a.c, "s1", "hi", conv=conv)
    seq = a.ack("s1")["seq"]
    b.pull(lambda fs: any(f.get("client_msg_id") == "s1" for f in fs), 30,
           "the message")
    _receipt(b, conv, seq, "read")
    for box in (a, b, c):
        box.pull(lambda fs: any(f.get("type") == "receipt"
                                and f.get("conversation_id") == conv
                                and f["user_id"] == base + "_b"
                                and f["state"] == "read"
                                and f["seq"] == seq for f in fs), 30,
                 "b's read")
