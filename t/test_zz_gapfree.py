"""No silent gaps on a live connection (the gap-free delivery).

Whatever happens between the workers' publish and the module's subscriber
(Redis SIGKILLed, the subscription killed or dropped for being slow, a
worker fenced or killed between its publish and its offset commit), a
connection that stays up gets every message acked meanwhile, live, in seq
order, each once, within 10 s of Redis being reachable again; Kafka and
PostgreSQL outages neither duplicate nor cost the worker its group.

These run after test_zz_faults (file name) and put the stack back as they
found it. Each prints a report (pytest -s or -rA shows it on success); the
repair times nginx logs ("partition N repaired after ... in M ms") are in
it.
"""

import collections
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

import test_media as media
import test_zz_faults as faults
from chatlib import (Collector, close_all, dm_id, expect_ack, history_all,
                     unique, wait_for)
from conftest import STACK_SH

REPAIR_RE = re.compile(r"partition (\d+) repaired after (-?\d+) up to (\d+) "
                       r"in (\d+) ms")
LIVE_WITHIN = 10.0      # s after Redis is reachable again


# ----------------------------------------------------------------- helpers

def nginx_log(stack):
    path = os.path.join(stack.dir, "nginx", "logs", "error.log")
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def worker_log(stack, n=1):
    try:
        with open(os.path.join(stack.dir, "log", "worker%d.log" % n),
                  errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def pid(stack, name):
    with open(os.path.join(stack.dir, "run", name + ".pid")) as f:
        return int(f.read().strip())


def ctl_env(stack, action, *args, **env):
    """t/stack.sh ACTION DIR [ARGS] with more environment."""
    e = dict(stack._proc_env or os.environ)
    e.update(env)
    p = subprocess.run(["bash", STACK_SH, action, stack.dir] + list(args),
                       env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "t/stack.sh %s: %s" % (action, out[-2000:])
    return out


def repairs_since(stack, offset):
    """(partition, after, upto, ms) of the repairs nginx logged after
    offset bytes of its log."""
    return [tuple(int(x) for x in m.groups())
            for m in REPAIR_RE.finditer(nginx_log(stack)[offset:])]


def live_problems(s, t_up):
    """What the gap-free promise says of a stream: every acked message
    live at the recipient, none twice, in order, within LIVE_WITHIN s of
    max(its ack, t_up); and the connections stayed up."""
    problems = []
    with s.lock:
        acks = dict(s.acks)
        ack_time = dict(s.ack_time)
        live = list(s.live)
    first = {}
    for t, f in live:
        first.setdefault(f["seq"], t)
    late = []
    for cmid, (_, seq) in acks.items():
        if seq not in first:
            continue
        due = max(ack_time[cmid], t_up - s.t0)
        if first[seq] - due > LIVE_WITHIN:
            late.append((seq, round(first[seq] - due, 2)))
    missing = sorted({q for _, q in acks.values()} - set(first))
    if missing:
        problems.append("%d acked messages never reached the live "
                        "connection (seqs %r...)" % (len(missing),
                                                     missing[:10]))
    if late:
        problems.append("%d messages reached it more than %.0f s after "
                        "Redis was back (or their ack): %r"
                        % (len(late), LIVE_WITHIN, sorted(late)[:10]))
    if s.recipient.drops or s.sender.drops:
        problems.append("a connection dropped: sender %r, recipient %r"
                        % (s.sender.drops, s.recipient.drops))
    return problems


def stream_report(s, stack, log_from, t_up):
    reps = repairs_since(stack, log_from)
    lines = ["gap repairs nginx logged: %d%s" % (
        len(reps), (", in ms: %s (max %d)"
                    % (sorted(r[3] for r in reps), max(r[3] for r in reps))
                    if reps else ""))]
    with s.lock:
        live = list(s.live)
    if live and t_up:
        after = [t for t, _ in live if t >= t_up - s.t0]
        if after:
            lines.append("first live delivery %.2f s after Redis was back"
                         % (after[0] - (t_up - s.t0)))
    return lines, reps


def run_stream(stack, fault, n=2000, pace=0.005, prefix="g", bodies=None,
               strict_order=True):
    """A stream of n messages between two connections that stay up, with
    fault(s) called after 500 were sent; fault returns the time Redis was
    reachable again (or the fault's time). Checks it all and returns the
    report lines and the repairs."""
    log_from = len(nginx_log(stack))
    s = faults.Stream(stack, n=n, pace=pace, prefix=prefix)
    if bodies:
        bodies(s)
    t_up = None
    extra = []
    try:
        s.start()
        s.wait_sent(500)
        s.log("fault")
        t_up = fault(s)
        s.log("fault over")
        acked = s.wait_all_acked(110)
        s.log("ack wait over (all acked: %s)" % acked)
        s.wait_live(LIVE_WITHIN + 5)
    finally:
        s.stop()
    lines, reps = stream_report(s, stack, log_from, t_up)
    extra.extend(lines)
    # the live order is checked either way; strict_order: the seqs follow
    # the order the one sender sent in
    s.verify(strict_order=strict_order, extra_report=extra,
             extra_problems=live_problems(s, t_up))
    return extra, reps


# ------------------------------------------------------------------- tests

def test_publish_script_fences(stack):
    """lua/publish.lua against the real Redis: a missing epoch is taken,
    a newer one wins, an older one is fenced (nothing done, the fenced
    partitions named); marks only rise; heads are written with a TTL."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "workers", "lua",
                           "publish.lua")) as f:
        script = f.read()
    tag = unique("fence")
    marks, epochs, chain = ("%s:marks" % tag, "%s:epochs" % tag,
                            "%s:chain" % tag)

    def call(*parts, heads=(), payloads=()):
        args = [str(len(parts))]
        for p, epoch, mark in parts:
            args += [str(p), str(epoch), str(mark)]
        args.append(str(len(heads)))
        for p, head in heads:
            args += ["-3", str(p), str(head)]    # KEYS[3], and its TTL
        for ch, payload in payloads:
            args += [ch, payload]
        return stack.redis_cli("EVAL", script, "3", marks, epochs, chain,
                               *args).split()

    # missing: taken; the mark raised, the head written, kept a day
    assert call((0, 100, 10), (1, 100, 5), heads=[(0, 10)]) == []
    assert stack.redis_cli("HGET", epochs, "0").strip() == "100"
    assert stack.redis_cli("HGET", marks, "0").strip() == "10"
    assert stack.redis_cli("HGET", chain, "0").strip() == "10"
    assert 0 < int(stack.redis_cli("TTL", chain)) <= 86400
    # a newer epoch wins
    assert call((0, 200, 12)) == []
    assert stack.redis_cli("HGET", epochs, "0").strip() == "200"
    # the older one is fenced: nothing at all is done, not even for the
    # partition it still holds
    assert call((0, 100, 30), (1, 100, 30), heads=[(0, 30)],
                payloads=[("%s:ch" % tag, "x")]) == ["0"]
    assert stack.redis_cli("HGET", marks, "0").strip() == "12"
    assert stack.redis_cli("HGET", marks, "1").strip() == "5"
    assert stack.redis_cli("HGET", chain, "0").strip() == "10"
    # a mark never goes back; -1 is none
    assert call((1, 100, 3), (0, 200, -1)) == []
    assert stack.redis_cli("HGET", marks, "1").strip() == "5"
    assert stack.redis_cli("HGET", marks, "0").strip() == "12"
    stack.redis_cli("DEL", marks, epochs, chain)


def test_redis_sigkill_no_gap(stack):
    """Redis SIGKILLed and started again while 2,000 messages stream."""
    def fault(s):
        os.kill(pid(stack, "redis"), signal.SIGKILL)
        s.log("redis SIGKILLed")
        time.sleep(0.3)
        stack.ctl("redis-start")
        s.log("redis started")
        return time.monotonic()

    try:
        extra, reps = run_stream(stack, fault, prefix="K")
    finally:
        faults._restore(stack, "redis-start")
    print("\n".join(extra))
    assert faults._stack_healthy(stack)


def test_pubsub_killed_no_gap(stack):
    """The subscribers' connections killed from Redis (CLIENT KILL TYPE
    pubsub), twice, while 2,000 messages stream."""
    def fault(s):
        t = None
        for _ in range(2):
            out = stack.redis_cli("CLIENT", "KILL", "TYPE", "pubsub")
            s.log("CLIENT KILL TYPE pubsub: %s" % out.strip())
            t = time.monotonic()
            time.sleep(1.0)
        return t

    extra, reps = run_stream(stack, fault, prefix="P")
    print("\n".join(extra))
    assert reps, "the killed subscriptions left no gap to repair?"


def test_slow_subscriber_dropped_no_gap(stack):
    """A subscriber too slow for a burst is dropped by Redis
    (client-output-buffer-limit pubsub set low): what it missed comes by
    repair."""
    old = stack.redis_cli("CONFIG", "GET",
                          "client-output-buffer-limit").split("\n")[1]
    pubsub = re.search(r"pubsub (\d+) (\d+) (\d+)", old)
    restore = "pubsub %s %s %s" % pubsub.groups()

    def fault(s):
        log_from = len(nginx_log(stack))
        stack.redis_cli("CONFIG", "SET", "client-output-buffer-limit",
                        "pubsub 1 1 0")
        s.log("pubsub output limit 1 byte")
        t_burst = time.monotonic()
        # bursts of three 9 KB messages back to back: a payload of two is
        # more than the 16 KB Redis keeps for a client beyond that limit;
        # the limit goes back as soon as Redis dropped a subscriber
        try:
            for k in range(10):
                burst = ["S-b%d-%d" % (k, i) for i in range(3)]
                for cmid in burst:
                    s.body[cmid] = cmid * (9000 // len(cmid))
                with s.lock:
                    s.cmids.extend(burst)
                    s.n += len(burst)
                for cmid in burst:
                    s._send(cmid)
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline:
                    if "redis subscription connection lost" \
                            in nginx_log(stack)[log_from:]:
                        return t_burst
                    time.sleep(0.005)
        finally:
            stack.redis_cli("CONFIG", "SET", "client-output-buffer-limit",
                            restore)
            s.log("pubsub output limit back to %s" % restore)
        return t_burst

    log_from = len(nginx_log(stack))
    try:
        # (the bursts go beside the paced stream, not in its order)
        extra, reps = run_stream(stack, fault, prefix="S",
                                 strict_order=False)
    finally:
        stack.redis_cli("CONFIG", "SET", "client-output-buffer-limit",
                        restore)
    dropped = nginx_log(stack)[log_from:].count(
        "redis subscription connection lost")
    extra.append("subscriptions dropped by Redis: %d" % dropped)
    print("\n".join(extra))
    assert dropped > 0, "Redis never dropped a subscriber: no test"


def _without_urls(frame):
    """A message as a frame shows it, but for what a fresh signature
    changes (the GET URLs) and the frame's type."""
    f = {k: v for k, v in frame.items() if k != "type"}
    if "attachments" in f:
        f["attachments"] = [{k: v for k, v in e.items()
                             if k not in ("url", "thumbnail_url")}
                            for e in f["attachments"]]
    return f


def test_repaired_messages_are_live_frames(stack):
    """Messages that reach a connection by repair (its subscription dropped
    by Redis for being slow) are the frames it would have had live: their
    attachments with GET URLs signed afresh, reply_to, as history shows
    them; not their bare text."""
    old = stack.redis_cli("CONFIG", "GET",
                          "client-output-buffer-limit").split("\n")[1]
    restore = "pubsub %s %s %s" % re.search(r"pubsub (\d+) (\d+) (\d+)",
                                            old).groups()
    a_id, b_id = unique("ra"), unique("rb")
    conv = dm_id(a_id, b_id)
    a = b = got = None
    log_from = len(nginx_log(stack))
    try:
        a = stack.connect(a_id, "p")
        b = stack.connect(b_id, "p")
        a.send_json({"type": "send", "client_msg_id": "r0",
                     "conversation_id": conv, "body": "the first"})
        first = expect_ack(a, "r0")["message_id"]
        files = [b"file number %d\n" % i for i in range(30)]
        ids = [media.put_file(stack, a, conv, data, ctype="text/plain",
                              name="notes-%d.txt" % i, req_id="up%d" % i)
               for i, data in enumerate(files)]
        got = Collector(b, "repaired").start()

        frames = {}
        dropped = False
        stack.redis_cli("CONFIG", "SET", "client-output-buffer-limit",
                        "pubsub 1 1 0")
        try:
            # bursts of three 9 KB messages, as in the test above, until
            # Redis drops a subscriber
            for k in range(10):
                for i in range(3 * k, 3 * k + 3):
                    cmid = "r%d" % (i + 1)
                    frames[cmid] = {"type": "send", "client_msg_id": cmid,
                                    "conversation_id": conv,
                                    "body": cmid * (9000 // len(cmid)),
                                    "attachments": [ids[i]],
                                    "reply_to": first}
                    a.send_json(frames[cmid])
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline and not dropped:
                    dropped = "redis subscription connection lost" \
                        in nginx_log(stack)[log_from:]
                    time.sleep(0.005)
                if dropped:
                    break
        finally:
            stack.redis_cli("CONFIG", "SET", "client-output-buffer-limit",
                            restore)
        assert dropped, "Redis never dropped a subscriber: no test"

        # every send acked (an ack the drop lost: the send again)
        acked = {}
        deadline = time.monotonic() + 60
        while len(acked) < len(frames) and time.monotonic() < deadline:
            try:
                f = a.recv_json(3.0)
            except TimeoutError:
                for cmid, frame in frames.items():
                    if cmid not in acked:
                        a.send_json(frame)
                continue
            if f.get("type") == "ack":
                acked[f["client_msg_id"]] = f["message_id"]
            elif f.get("type") == "error":
                raise AssertionError("a send refused: %r" % f)
        assert len(acked) == len(frames), sorted(set(frames) - set(acked))

        # all of them at the recipient, live or repaired
        def arrived(fs):
            return {f.get("client_msg_id") for f in fs
                    if f.get("type") == "message"} >= set(frames)
        assert got.wait(arrived, 30), "the recipient misses %r" % sorted(
            set(frames) - {f.get("client_msg_id")
                           for f in got.snapshot("message")})
        got.stop()
        reps = repairs_since(stack, log_from)
        assert reps, "nothing was repaired: no test"

        stored = {m["client_msg_id"]: m for m in history_all(b, conv)}
        n = 0
        for f in got.snapshot("message"):
            if f.get("client_msg_id") not in frames:
                continue
            n += 1
            want = stored[f["client_msg_id"]]
            assert _without_urls(f) == _without_urls(want), (f, want)
            assert f["reply_to"] == first, f
            i = int(f["client_msg_id"][1:]) - 1
            media.check_entry(stack, f["attachments"][0], ids[i], files[i],
                              "text/plain", "notes-%d.txt" % i)
        print("\n%d messages at the recipient, %d repairs: %r"
              % (n, len(reps), reps))
    finally:
        stack.redis_cli("CONFIG", "SET", "client-output-buffer-limit",
                        restore)
        if got:
            got.stop()
        close_all(a, b)


def test_kafka_restart_first_ack_fast(stack):
    """The broker stopped and started mid-stream: the first ack within
    10 s of the broker answering metadata again."""
    s = faults.Stream(stack, n=400, pace=0.01, prefix="A", resend_after=1.0,
                      resend_cap=2.0)
    t_meta = None
    try:
        s.start()
        s.wait_sent(100)
        stack.ctl("kafka-stop")
        s.log("kafka stopped")
        time.sleep(float(os.environ.get("CHAT_TEST_KAFKA_OUTAGE_S", "10")))
        starter = threading.Thread(target=stack.ctl, args=("kafka-start",),
                                   daemon=True)
        starter.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            p = subprocess.run(["kcat", "-b", "127.0.0.1:%d"
                                % stack.kafka_port, "-L", "-m", "1"],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
            if p.returncode == 0 and b"broker" in p.stdout:
                t_meta = time.monotonic()
                break
            time.sleep(0.1)
        s.log("the broker answers metadata")
        starter.join(120)
        assert t_meta, "the broker never answered metadata"
        s.wait_all_acked(100)
        s.wait_live(20)
    finally:
        faults._restore(stack, "kafka-start")
        s.stop()
    with s.lock:
        after = sorted(t for t in s.ack_time.values()
                       if t >= t_meta - s.t0)
    first = after[0] - (t_meta - s.t0) if after else None
    extra = ["first ack %.2f s after the broker answered metadata" % first
             if first is not None else "no ack after the broker came back"]
    s.verify(strict_order=False, extra_report=extra)
    print("\n".join(extra))
    assert first is not None and first < 10.0, extra[0]


def _restart_worker(stack, **env):
    stack.ctl("worker-stop")
    ctl_env(stack, "worker-start", "1", **env)


def test_pg_outage_longer_than_poll_interval(stack):
    """PostgreSQL stopped for longer than max.poll.interval.ms: the worker
    holds its batch with its partitions paused, stays in its group, and
    nothing is delivered twice afterwards."""
    _restart_worker(stack, CHAT_WORKER_ARGS="--max-poll-interval-ms 10000")
    try:
        log_from = len(worker_log(stack))
        s = faults.Stream(stack, n=600, pace=0.01, prefix="G")
        try:
            s.start()
            s.wait_sent(200)
            stack.ctl("pg-stop")
            s.log("pg stopped")
            time.sleep(16)
            stack.ctl("pg-start")
            s.log("pg started")
            s.wait_all_acked(90)
            s.wait_live(20)
        finally:
            faults._restore(stack, "pg-start")
            s.stop()
        log = worker_log(stack)[log_from:]
        extra = ["worker: %d pauses, %d rebalances during the test"
                 % (log.count("consumption paused"),
                    log.count("kafka: assigned partitions"))]
        s.verify(strict_order=True, extra_report=extra)
        print("\n".join(extra))
        assert "consumption paused" in log, "the batch was never held"
        assert "kafka: revoked" not in log, \
            "the worker lost its partitions during the outage:\n" + log[-3000:]
        assert "max.poll" not in log.lower() and "MAXPOLL" not in log, \
            log[-3000:]
    finally:
        _restart_worker(stack)


def _group_frames(c, conv, seen):
    """Every system message of conv with that event c got so far."""
    while True:
        try:
            f = c.recv_json(0.05)
        except TimeoutError:
            return seen
        if f.get("type") == "message" and f.get("conversation_id") == conv \
                and f.get("kind") == "system":
            seen[(f["body"].get("event"), f["seq"])] += 1
        elif f.get("type") == "message" and f.get("conversation_id") == conv:
            seen[("text", f["seq"])] += 1


def test_worker_killed_after_group_change_published(stack):
    """A worker SIGKILLed after publishing a membership change, before
    committing its offsets: its successor replays the change, and no
    member gets the system message twice."""
    # commits held back for a minute: the change is surely not committed
    _restart_worker(stack, CHAT_WORKER_ARGS="--commit-every-ms 60000")
    log_from = len(worker_log(stack))
    a_id, b_id, c_id = unique("ka"), unique("kb"), unique("kc")
    a = b = c = None
    try:
        a = stack.connect(a_id, "p")
        b = stack.connect(b_id, "p")
        c = stack.connect(c_id, "p")
        a.send_json({"type": "create_group", "req_id": "cg", "name": "K",
                     "members": [b_id]})
        g = a.recv_until(lambda f: f.get("req_id") == "cg", 20)
        assert g["type"] == "group", g
        conv = g["conversation_id"]
        # a send commits at once (the last commit is long ago); the change
        # right after it waits for the next commit, a minute away
        a.send_json({"type": "send", "client_msg_id": "k1",
                     "conversation_id": conv, "body": "one"})
        a.recv_until(lambda f: f.get("client_msg_id") == "k1", 20)
        a.send_json({"type": "add_members", "req_id": "am",
                     "conversation_id": conv, "user_ids": [c_id]})
        seen = {x: collections.Counter() for x in "abc"}
        wait_for(lambda: any(e == "members_added" for (e, _) in
                             _group_frames(c, conv, seen["c"])),
                 20, what="the system message at the new member")
        stack.ctl("worker-kill")
        ctl_env(stack, "worker-start", "1")
        # a message after the change: once it arrives, the replay is over
        a.send_json({"type": "send", "client_msg_id": "k2",
                     "conversation_id": conv, "body": "two"})

        def got_two():
            for x, cl in (("a", a), ("b", b), ("c", c)):
                _group_frames(cl, conv, seen[x])
            return all(any(e == "text" and q == 4 for (e, q) in seen[x])
                       for x in "bc")
        wait_for(got_two, 60, what="the message after the restart")
        time.sleep(1.0)
        for x, cl in (("a", a), ("b", b), ("c", c)):
            _group_frames(cl, conv, seen[x])
        print("\nframes per member: %r" % {x: dict(v)
                                          for x, v in seen.items()})
        for x in "abc":
            twice = {k: n for k, n in seen[x].items() if n > 1}
            assert not twice, "%s got these twice: %r" % (x, twice)
        assert seen["b"][("members_added", 3)] == 1
        assert seen["c"][("members_added", 3)] == 1
        # the successor did replay: it found its predecessor's marks
        assert "answers went out up to offset" in \
            worker_log(stack)[log_from:]
    finally:
        close_all(a, b, c)
        faults._restore(stack, "worker-start")
        _restart_worker(stack)


def _owner(stack, partition):
    """The number of the worker whose newest assignment has partition."""
    best = None
    for n in (1, 2):
        for line in worker_log(stack, n).splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            m = re.search(r"kafka: assigned partitions \[([\d,]*)\]",
                          str(rec.get("msg", "")))
            if m and str(partition) in m.group(1).split(","):
                if best is None or rec["time"] > best[0]:
                    best = (rec["time"], n)
    return best and best[1]


def test_fenced_worker_publishes_nothing_twice(stack):
    """Two workers; the one that owns a conversation's partition is
    frozen (SIGSTOP) in the middle of a batch (waiting for a row lock the
    test holds) past its session timeout, then thawed after the other took
    the partition over: it finds itself fenced and publishes nothing of
    it, the other answers the batch, and every frame arrives once."""
    ctl_env(stack, "worker-start", "2")
    a_id, b_id = unique("fa"), unique("fb")
    conv = "dm:%s:%s" % tuple(sorted((a_id, b_id)))
    a = b = lock = None
    frozen = None
    try:
        a = stack.connect(a_id, "p")
        b = stack.connect(b_id, "p")
        time.sleep(2)           # the second worker in, partitions split
        a.send_json({"type": "send", "client_msg_id": "f1", "to": b_id,
                     "body": "one"})
        a.recv_until(lambda f: f.get("client_msg_id") == "f1", 20)
        partition = int(stack.psql(
            "select kafka_partition from messages where conversation_id="
            "'%s'" % conv))
        owner = _owner(stack, partition)
        assert owner, "no worker holds partition %d" % partition
        log_from = len(worker_log(stack, owner))

        # the owner's next batch waits for the conversation's row
        lock = subprocess.Popen(
            ["psql", "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U",
             "chat", "-d", "chat", "-X", "-q"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lock.stdin.write(("BEGIN; SELECT 1 FROM conversations WHERE id = "
                          "'%s' FOR UPDATE;\n" % conv).encode())
        lock.stdin.flush()
        time.sleep(1)
        a.send_json({"type": "send", "client_msg_id": "f2", "to": b_id,
                     "body": "two"})
        time.sleep(1.5)
        frozen = pid(stack, "worker%d" % owner)
        os.kill(frozen, signal.SIGSTOP)
        time.sleep(9)           # past the session timeout (6 s)
        a.send_json({"type": "send", "client_msg_id": "f3", "to": b_id,
                     "body": "three"})
        time.sleep(2)           # the other one takes over, waits too
        lock.stdin.write(b"COMMIT;\n")
        lock.stdin.close()
        lock.wait(10)
        lock = None
        time.sleep(1)
        os.kill(frozen, signal.SIGCONT)
        frozen = None

        got = collections.Counter()
        order = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (got["f2"] and got["f3"]):
            try:
                f = b.recv_json(0.5)
            except TimeoutError:
                continue
            if f.get("type") == "message":
                got[f["client_msg_id"]] += 1
                order.append(f["seq"])
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                f = b.recv_json(0.2)
            except TimeoutError:
                continue
            if f.get("type") == "message":
                got[f["client_msg_id"]] += 1
                order.append(f["seq"])
        log = worker_log(stack, owner)[log_from:]
        print("\nworker%d (partition %d) after its thaw: %s; the recipient"
              " got %r in the order %r" % (
                  owner, partition,
                  "fenced" if ": fenced:" in log else "NOT fenced",
                  dict(got), order))
        assert got["f1"] + got["f2"] + got["f3"] == 3 and \
            got["f2"] == 1 and got["f3"] == 1, dict(got)
        assert order == sorted(order), order
        assert ": fenced:" in log, \
            "the frozen worker was not fenced:\n" + log[-3000:]
    finally:
        if frozen:
            os.kill(frozen, signal.SIGCONT)
        if lock:
            lock.kill()
        close_all(a, b)
        stack.ctl("worker-stop")
        ctl_env(stack, "worker-start", "1")
