"""Typing off the durable path (ngx_chat_module/ngx_chat_typing.c): the
module's Redis script checks the membership and passes typing straight to
the nodes of the other members' sessions, so neither Kafka nor a worker
sees it; while Redis's sets of members are not whole (it lost its data and
a worker writes them again) it goes through Kafka and a worker as before.

Each test checks what users see (members see it, outsiders and removed
members neither see it nor may type, blocked pairs see nothing of each
other) and, from the metrics, which way typing went.
"""

import time

import test_groups as g
import test_metrics as m
import test_zz_faults as faults
from chatlib import dm_id, unique, wait_for

QUIET = 1.0
THROTTLE = 2.1      # a second start within 2 s is not passed on


# -- helpers ------------------------------------------------------------------

def typing_count(stack, path):
    fams, _ = m.metrics(stack)
    return m.sample(fams, "chat_typing_total", path=path)


def worker_typing_records(stack):
    """The typing records the workers took from Kafka."""
    total = 0
    for port in m.worker_metrics_ports(stack):
        fams, _ = m.worker_metrics(port)
        total += m.sample(fams, "chat_worker_records_total", op="typing")
    return total


def fresh(*devs):
    """What came so far is read and forgotten."""
    for d in devs:
        g.settle(d, 0.2)
        d.log = []


def is_typing(conv, user, state):
    return lambda f: (f.get("type") == "typing"
                      and f.get("conversation_id") == conv
                      and f.get("user_id") == user
                      and f.get("state") == state)


def typings(dev, conv=None):
    return [f for f in g.log_of(dev) if f.get("type") == "typing"
            and (conv is None or f.get("conversation_id") == conv)]


def sees(devs, conv, user, state, what):
    for d in devs:
        g.wait_frame(d, is_typing(conv, user, state), what=what)


def sees_nothing(devs, conv=None):
    for d in devs:
        g.settle(d, QUIET)
        assert not typings(d, conv), (
            "%s/%s got typing it should not: %r" % (d.user, d.dev,
                                                    typings(d, conv)))


def forbidden(dev, conv, state="start"):
    g.typing(dev, conv, state)
    f = g.wait_frame(dev, lambda f: f.get("type") == "error",
                     what="forbidden for %s's typing" % dev.user)
    assert f.get("code") == "forbidden", f
    dev.log.remove(f)


def group(stack, clients, n, prefix):
    users = [unique(prefix) for _ in range(n)]
    devs = [clients.add(stack.connect(u)) for u in users]
    conv = g.new_group(devs[0], "typing " + prefix, users[1:])
    for d in devs:
        g.wait_seq(d, conv, 1)
    fresh(*devs)
    return users, devs, conv


def check_members_and_outsider(users, devs, conv, outsider, what):
    """a's start reaches b and c, c's stop reaches a and b, the outsider
    is refused and sees none of it."""
    (a, b, c), (a1, b1, c1) = users, devs
    g.typing(a1, conv, "start")
    sees((b1, c1), conv, a, "start", "a's start " + what)
    g.typing(c1, conv, "stop")
    sees((a1, b1), conv, c, "stop", "c's stop " + what)
    forbidden(outsider, conv)
    sees_nothing([outsider])
    g.settle(a1, 0.2)
    g.settle(c1, 0.2)
    assert not [f for f in typings(a1) if f["user_id"] == a], a1.log
    assert not [f for f in typings(c1) if f["user_id"] == c], c1.log
    fresh(*devs)


# -- the script's way -----------------------------------------------------------

def test_typing_goes_through_redis_alone(stack, clients, capsys):
    users, devs, conv = group(stack, clients, 3, "tr")
    (a, b, c), (a1, b1, c1) = users, devs
    e1 = clients.add(stack.connect(unique("tre")))
    before = (typing_count(stack, "redis"), typing_count(stack, "kafka"),
              worker_typing_records(stack))

    check_members_and_outsider(users, devs, conv, e1, "by redis")

    # a direct conversation not begun yet: its other member's devices
    b2 = clients.add(stack.connect(b, "two"))
    g.typing(a1, dm_id(a, b), "start")
    sees((b1, b2), dm_id(a, b), a, "start", "typing in a new dm")
    # one's own direct conversation has nobody else in it
    g.typing(a1, dm_id(a, a), "start")
    sees_nothing([a1], dm_id(a, a))
    # a direct id without the typer is refused before Redis
    forbidden(e1, dm_id(a, b))

    time.sleep(0.5)         # a record would have reached the worker
    after = (typing_count(stack, "redis"), typing_count(stack, "kafka"),
             worker_typing_records(stack))
    frames = after[0] - before[0]
    records = after[2] - before[2]
    g.report(capsys, "typing: %d frames by the Redis script, %d by Kafka;"
             " %d Kafka records for them" % (frames, after[1] - before[1],
                                             records))
    # a start, a stop, the outsider's refusal, two direct ones
    assert frames == 5, (before, after)
    assert after[1] == before[1] and records == 0, (before, after)


def test_typing_throttled_per_conversation(stack, clients):
    users, devs, conv = group(stack, clients, 2, "tt")
    (a, b), (a1, b1) = users, devs
    # a second start within 2 s is not passed on; a stop always is, and
    # lets the next start through at once
    g.typing(a1, conv, "start")
    g.typing(a1, conv, "start")
    g.wait_frame(b1, is_typing(conv, a, "start"), what="the first start")
    g.settle(b1, QUIET)
    assert len(typings(b1, conv)) == 1, typings(b1, conv)
    g.typing(a1, conv, "stop")
    g.typing(a1, conv, "start")
    g.wait_frame(b1, is_typing(conv, a, "stop"), what="the stop")
    g.wait_frame(b1, lambda f: len([x for x in typings(b1, conv)
                                    if x["state"] == "start"]) == 2,
                 what="the start after the stop")
    assert [f["state"] for f in typings(b1, conv)] == [
        "start", "stop", "start"], typings(b1, conv)


def test_removed_member_neither_types_nor_sees_typing(stack, clients):
    users, devs, conv = group(stack, clients, 3, "tm")
    (a, b, c), (a1, b1, c1) = users, devs
    f = g.change(a1, "remove_members", conv, [c])
    assert f["type"] == "group", f
    for d in devs:
        g.wait_seq(d, conv, 2)
    fresh(*devs)
    forbidden(c1, conv)
    g.typing(a1, conv, "start")
    sees((b1,), conv, a, "start", "a's start after c left")
    g.typing(b1, conv, "stop")
    sees((a1,), conv, b, "stop", "b's stop after c left")
    sees_nothing([c1])
    assert not [f for f in typings(a1) if f["user_id"] == c]
    assert not [f for f in typings(b1) if f["user_id"] == c]

    # added back: it types and sees again
    f = g.change(a1, "add_members", conv, [c])
    assert f["type"] == "group", f
    for d in devs:
        g.wait_seq(d, conv, 3)
    fresh(*devs)
    time.sleep(THROTTLE)
    g.typing(c1, conv, "start")
    sees((a1, b1), conv, c, "start", "c's start once back")
    g.typing(a1, conv, "stop")
    sees((c1,), conv, a, "stop", "a's stop to c once back")


def block(c, op, other):
    rid = unique("bk")
    c.send_json({"type": op, "req_id": rid, "user_id": other})
    f = g.answer(c, rid, types=("blocked", "error"))
    assert f["type"] == "blocked", f


def test_blocked_pair_sees_no_typing_of_each_other(stack, clients):
    a, b = unique("tba"), unique("tbb")
    a1 = clients.add(stack.connect(a))
    b1 = clients.add(stack.connect(b))
    dm = dm_id(a, b)
    g.send_ack(a1, "tb1", "hello", to=b)
    g.wait_frame(b1, lambda f: f.get("type") == "message"
                 and f.get("conversation_id") == dm, what="a's message")
    fresh(a1, b1)
    block(a1, "block", b)
    # neither way, and without an error that tells the blocked one
    g.typing(b1, dm, "start")
    g.typing(a1, dm, "start")
    sees_nothing([a1, b1], dm)
    assert not [f for f in g.log_of(b1) if f.get("type") == "error"], b1.log
    block(a1, "unblock", b)
    fresh(a1, b1)
    g.typing(b1, dm, "stop")
    sees((a1,), dm, b, "stop", "b's typing once unblocked")
    g.typing(a1, dm, "stop")
    sees((b1,), dm, a, "stop", "a's typing once unblocked")


# -- outages ------------------------------------------------------------------

def test_typing_while_kafka_is_stopped(stack, clients):
    users, devs, conv = group(stack, clients, 3, "tk")
    (a, b, c), (a1, b1, c1) = users, devs
    e1 = clients.add(stack.connect(unique("tke")))
    before = typing_count(stack, "redis")
    stack.ctl("kafka-stop")
    try:
        check_members_and_outsider(users, devs, conv, e1,
                                   "while Kafka is stopped")
        g.typing(b1, dm_id(a, b), "start")
        sees((a1,), dm_id(a, b), b, "start", "dm typing without Kafka")
        assert typing_count(stack, "redis") - before == 4
    finally:
        faults._restore(stack, "kafka-start")
    assert faults._stack_healthy(stack), "stack not usable after Kafka"


def hold_the_rewrite(stack):
    """The member sets' mark gone and the job of writing them again held
    by someone else: the script says it does not know."""
    stack.redis_cli("SET", "chat:convs-writer", "test_typing", "EX", "60")
    stack.redis_cli("DEL", "chat:members")


def let_the_rewrite_go(stack):
    stack.redis_cli("DEL", "chat:convs-writer")
    wait_for(lambda: stack.redis_cli("EXISTS", "chat:members").strip()
             == "1", 30, what="the member sets whole again")


def test_typing_through_kafka_while_the_sets_are_not_whole(stack, clients):
    users, devs, conv = group(stack, clients, 3, "tf")
    (a, b, c), (a1, b1, c1) = users, devs
    e1 = clients.add(stack.connect(unique("tfe")))
    kafka = typing_count(stack, "kafka")
    records = worker_typing_records(stack)
    hold_the_rewrite(stack)
    try:
        check_members_and_outsider(users, devs, conv, e1,
                                   "through Kafka")
        g.typing(b1, dm_id(a, b), "start")
        sees((a1,), dm_id(a, b), b, "start", "dm typing through Kafka")
        assert typing_count(stack, "kafka") - kafka == 4
        wait_for(lambda: worker_typing_records(stack) - records >= 4, 10,
                 what="the worker took the typing records")
    finally:
        let_the_rewrite_go(stack)
    time.sleep(THROTTLE)
    redis = typing_count(stack, "redis")
    check_members_and_outsider(users, devs, conv, e1, "by redis again")
    assert typing_count(stack, "redis") - redis == 3


def test_blocked_pair_sees_no_typing_through_kafka(stack, clients):
    """The worker's way hides a blocked pair's typing as the script does:
    neither sees the other's, and the blocked one is told nothing."""
    a, b = unique("tkba"), unique("tkbb")
    a1 = clients.add(stack.connect(a))
    b1 = clients.add(stack.connect(b))
    dm = dm_id(a, b)
    g.send_ack(a1, "tkb1", "hello", to=b)
    g.wait_frame(b1, lambda f: f.get("type") == "message"
                 and f.get("conversation_id") == dm, what="a's message")
    block(a1, "block", b)
    fresh(a1, b1)
    records = worker_typing_records(stack)
    hold_the_rewrite(stack)
    try:
        g.typing(b1, dm, "start")
        g.typing(a1, dm, "start")
        wait_for(lambda: worker_typing_records(stack) - records >= 2, 10,
                 what="the worker took both typing records")
        sees_nothing([a1, b1], dm)
        assert not [f for f in g.log_of(b1)
                    if f.get("type") == "error"], b1.log
        block(a1, "unblock", b)
        fresh(a1, b1)
        g.typing(b1, dm, "stop")
        sees((a1,), dm, b, "stop", "b's typing through Kafka once unblocked")
        wait_for(lambda: worker_typing_records(stack) - records >= 3, 10,
                 what="the worker took the third typing record")
    finally:
        let_the_rewrite_go(stack)


def test_typing_after_redis_lost_its_data(stack, clients):
    users, devs, conv = group(stack, clients, 3, "tl")
    (a, b, c), (a1, b1, c1) = users, devs
    gone = clients.add(stack.connect(unique("tlg")))
    f = g.change(a1, "add_members", conv, [gone.user])
    assert f["type"] == "group", f
    f = g.change(a1, "remove_members", conv, [gone.user])
    assert f["type"] == "group", f
    for d in devs:
        g.wait_seq(d, conv, 3)
    fresh(*devs)

    stack.redis_cli("FLUSHALL")
    wait_for(lambda: all(stack.sessions(u) for u in users), 20,
             what="the sessions registered again")
    # through Kafka until the sets are whole, by the script after: the
    # members see it either way
    g.typing(a1, conv, "start")
    sees((b1, c1), conv, a, "start", "a's start after FLUSHALL")
    wait_for(lambda: stack.redis_cli("EXISTS", "chat:members").strip()
             == "1", 30, what="the member sets whole again")
    assert sorted(stack.redis_cli("SMEMBERS", "chat:members:" + conv)
                  .split()) == sorted(users)
    fresh(*devs)
    time.sleep(THROTTLE)
    check_members_and_outsider(users, devs, conv, gone,
                               "once the sets are written again")
