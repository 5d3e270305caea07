"""Faults: worker SIGKILL, Redis restart, Kafka stop, while clients stream.

These run last (file name) and put the stack back as they found it.
Each prints a report (run pytest with -s or -rA to see it on success).
"""

import collections
import os
import subprocess
import threading
import time

import pytest

import wsclient
from chatlib import dm_id, history, indexed, sync, unique, wait_for
from conftest import STACK_SH


class Peer:
    """A connection kept open (reconnecting if it drops) with a reader
    thread that hands every frame to `on_frame`."""

    def __init__(self, stack, user, dev, on_frame, log):
        self.stack, self.user, self.dev = stack, user, dev
        self.on_frame = on_frame
        self.log = log
        self.lock = threading.Lock()
        self.client = stack.connect(user, dev)
        self.session_ids = [self.client.hello["session_id"]]
        self.drops = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="peer-%s" % user)
        self.thread.start()

    def send_json(self, obj):
        try:
            with self.lock:
                c = self.client
            c.send_json(obj)
            return True
        except (OSError, wsclient.WSError):
            return False

    def _run(self):
        while not self.stop_flag.is_set():
            with self.lock:
                c = self.client
            try:
                f = c.recv_json(0.2)
            except TimeoutError:
                continue
            except Exception as e:
                if self.stop_flag.is_set():
                    return
                self.drops.append((time.monotonic(), repr(e)))
                self.log("%s/%s connection lost: %r; reconnecting"
                         % (self.user, self.dev, e))
                c.abort()
                self._reconnect()
                continue
            self.on_frame(f)

    def _reconnect(self):
        deadline = time.monotonic() + 60
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            try:
                c = self.stack.connect(self.user, self.dev, timeout=5)
            except Exception as e:
                self.log("reconnect of %s failed: %r" % (self.user, e))
                time.sleep(1)
                continue
            with self.lock:
                self.client = c
            self.session_ids.append(c.hello["session_id"])
            return
        self.log("gave up reconnecting %s" % self.user)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(5)
        with self.lock:
            c = self.client
        c.close(timeout=1.0)


class Stream:
    """One sender streaming n messages to one recipient at a steady pace,
    resending every unacked message (same client_msg_id) until acked."""

    def __init__(self, stack, n, pace=0.005, resend_after=3.0,
                 resend_cap=10.0, prefix="m"):
        self.stack = stack
        self.n = n
        self.pace = pace
        self.resend_after = resend_after
        self.resend_cap = resend_cap
        self.sender_id = unique("fs")
        self.recipient_id = unique("fr")
        self.conv = dm_id(self.sender_id, self.recipient_id)
        self.cmids = ["%s%05d" % (prefix, i) for i in range(n)]
        self.body = {c: "body of %s" % c for c in self.cmids}
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.events = []
        self.first_sent = {}            # cmid -> time
        self.last_sent = {}
        self.attempts = collections.Counter()
        self.acks = {}                  # cmid -> (message_id, seq)
        self.ack_time = {}
        self.ack_conflicts = []
        self.errors = collections.Counter()
        self.error_frames = collections.defaultdict(list)   # cmid -> frames
        self.hold_until = 0.0           # rate_limited pause
        self.no_retry = set()
        self.live = []                  # (time, frame) at the recipient
        self.sent_count = 0
        self.stop_flag = threading.Event()
        self.sender = Peer(stack, self.sender_id, "s", self._on_sender,
                           self.log)
        self.recipient = Peer(stack, self.recipient_id, "r",
                              self._on_recipient, self.log)

    # -- bookkeeping ---------------------------------------------------------

    def now(self):
        return time.monotonic() - self.t0

    def log(self, msg):
        with self.lock:
            self.events.append("%7.2fs %s" % (self.now(), msg))

    def _on_sender(self, f):
        t = f.get("type")
        cmid = f.get("client_msg_id")
        with self.lock:
            if t == "ack":
                key = (f.get("message_id"), f.get("seq"))
                if cmid in self.acks and self.acks[cmid] != key:
                    self.ack_conflicts.append((cmid, self.acks[cmid], key))
                self.acks.setdefault(cmid, key)
                self.ack_time.setdefault(cmid, self.now())
            elif t == "error":
                self.errors[f.get("code")] += 1
                self.error_frames[cmid].append((self.now(), f))
                if f.get("code") == "rate_limited":
                    ra = f.get("retry_after_ms") or 500
                    self.hold_until = max(self.hold_until,
                                          time.monotonic() + ra / 1000.0)
                    self.last_sent[cmid] = 0.0    # resend once allowed

    def _on_recipient(self, f):
        if f.get("type") == "message" and \
                f.get("conversation_id") == self.conv:
            with self.lock:
                self.live.append((self.now(), f))

    def _send(self, cmid):
        ok = self.sender.send_json({"type": "send", "client_msg_id": cmid,
                                    "to": self.recipient_id,
                                    "body": self.body[cmid]})
        with self.lock:
            now = time.monotonic()
            self.first_sent.setdefault(cmid, now)
            self.last_sent[cmid] = now
            self.attempts[cmid] += 1
        return ok

    # -- threads ---------------------------------------------------------------

    def _pacer(self):
        nxt = time.monotonic()
        for cmid in self.cmids:
            if self.stop_flag.is_set():
                return
            while time.monotonic() < self.hold_until:
                time.sleep(0.05)
            self._send(cmid)
            with self.lock:
                self.sent_count += 1
            nxt += self.pace
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.log("all %d sent once" % self.n)

    def _retrier(self):
        while not self.stop_flag.is_set():
            time.sleep(0.5)
            if time.monotonic() < self.hold_until:
                continue
            now = time.monotonic()
            with self.lock:
                due = []
                for cmid, last in self.last_sent.items():
                    if cmid in self.acks or cmid in self.no_retry:
                        continue
                    k = self.attempts[cmid]
                    wait = min(self.resend_cap,
                               self.resend_after * (1.5 ** (k - 1)))
                    if now - last >= wait:
                        due.append(cmid)
            if due:
                self.log("resending %d unacked (first %s)" % (len(due),
                                                              due[0]))
            for cmid in due:
                self._send(cmid)

    def start(self):
        self.threads = [threading.Thread(target=self._pacer, daemon=True),
                        threading.Thread(target=self._retrier, daemon=True)]
        for t in self.threads:
            t.start()

    def wait_sent(self, k, timeout=60):
        wait_for(lambda: self.sent_count >= k, timeout, 0.01,
                 what="%d messages sent" % k)

    def all_acked(self):
        with self.lock:
            return all(c in self.acks for c in self.cmids)

    def wait_all_acked(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_acked():
                self.log("all %d acked" % self.n)
                return True
            time.sleep(0.2)
        return self.all_acked()

    def wait_live(self, timeout):
        """Wait until the recipient holds every acked seq live (or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                want = {s for _, s in self.acks.values()}
                have = {f["seq"] for _, f in self.live}
            if want and want <= have:
                return True
            time.sleep(0.2)
        return False

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(5)
        self.sender.stop()
        self.recipient.stop()

    # -- verification ----------------------------------------------------------

    def stored_rows(self):
        """(client_msg_id, seq) of every stored message of the sender."""
        out = self.stack.psql(
            "select client_msg_id, seq from messages where sender_id='%s' "
            "order by seq" % self.sender_id)
        rows = []
        for line in out.splitlines():
            if line.strip():
                cmid, seq = line.split("|")
                rows.append((cmid, int(seq)))
        return rows

    def recover_missing(self, missing_seqs):
        """Fetch the given seqs with a fresh device of the recipient: a
        sync (cursor just before the first missing seq), then history for
        what the sync did not return. Returns (by_sync, by_history)."""
        self.sync_truncated = None
        if not missing_seqs:
            return {}, {}
        c = self.stack.connect(self.recipient_id, "recovery")
        try:
            first = min(missing_seqs)
            convs, msgs, _ = sync(c, "final-sync",
                                  cursors={self.conv: first - 1}, timeout=60)
            self.sync_truncated = any(
                it.get("truncated") for it in convs.get("items", [])
                if it.get("conversation_id") == self.conv)
            by_sync = {m["seq"]: m for m in msgs
                       if m["conversation_id"] == self.conv
                       and m["seq"] in missing_seqs}
            by_hist = {}
            rest = sorted(set(missing_seqs) - set(by_sync))
            i = 0
            while rest:
                h = history(c, self.conv, "rec-%d" % i, after_seq=rest[0] - 1,
                            limit=100, timeout=30)
                i += 1
                assert h["type"] == "history", h
                if not h["messages"]:
                    break
                for m in h["messages"]:
                    if m["seq"] in missing_seqs and m["seq"] not in by_sync:
                        by_hist[m["seq"]] = m
                top = h["messages"][-1]["seq"]
                rest = [s for s in rest if s > top]
            return by_sync, by_hist
        finally:
            c.close()

    def verify(self, strict_order=True, extra_report=None, extra_stored=None,
               extra_problems=()):
        """Check everything; returns the report text. Fails with it.
        extra_stored: cmid -> seq of messages legitimately stored without
        an ack seen (they take seqs in the conversation too)."""
        problems = list(extra_problems)
        extra_stored = extra_stored or {}
        with self.lock:
            acks = dict(self.acks)
            live = list(self.live)
            errors = dict(self.errors)
            resends = sum(self.attempts.values()) - len(self.attempts)
        missing_acks = [c for c in self.cmids if c not in acks]
        if missing_acks:
            problems.append("%d messages never acked (first %r)"
                            % (len(missing_acks), missing_acks[:5]))
        if self.ack_conflicts:
            problems.append("retries acked with a different message_id/seq: "
                            "%r" % self.ack_conflicts[:5])
        seqs = sorted([s for _, s in acks.values()]
                      + list(extra_stored.values()))
        if seqs != list(range(1, len(seqs) + 1)):
            dups = [s for s, k in collections.Counter(seqs).items() if k > 1]
            problems.append("acked seqs are not gap-free 1..%d (dups %r, "
                            "range %r..%r)" % (len(seqs), dups[:5],
                                               seqs[:1], seqs[-1:]))
        mids = [m for m, _ in acks.values()]
        if len(set(mids)) != len(mids):
            problems.append("two client_msg_ids got the same message_id")
        if strict_order:
            order = [acks[c][1] for c in self.cmids if c in acks]
            if order != sorted(order):
                bad = next(i for i in range(1, len(order))
                           if order[i] < order[i - 1])
                problems.append("seqs do not follow the send order (at "
                                "index %d: %r)" % (bad, order[bad - 1:bad + 1]))

        rows = self.stored_rows()
        stored_c = collections.Counter(c for c, _ in rows)
        unknown = [c for c in stored_c
                   if c not in self.body and c not in extra_stored]
        if unknown:
            problems.append("PostgreSQL holds messages never sent: %r"
                            % unknown[:5])
        dup_rows = [c for c, k in stored_c.items() if k > 1]
        if dup_rows:
            problems.append("PostgreSQL stores %d messages more than once "
                            "(%r)" % (len(dup_rows), dup_rows[:5]))
        not_stored = [c for c in acks if c not in stored_c]
        if not_stored:
            problems.append("%d ACKED messages are not in PostgreSQL (%r)"
                            % (len(not_stored), not_stored[:5]))
        row_seqs = [s for _, s in rows]
        if row_seqs != list(range(1, len(rows) + 1)):
            problems.append("stored seqs are not gap-free 1..%d: %r..."
                            % (len(rows), row_seqs[:10]))
        mismatch = [(c, s, acks[c][1]) for c, s in rows
                    if c in acks and acks[c][1] != s]
        if mismatch:
            problems.append("ack seq differs from stored seq: %r"
                            % mismatch[:5])

        # what the recipient saw live
        live_mids = collections.Counter(f["message_id"] for _, f in live)
        live_dups = [m for m, k in live_mids.items() if k > 1]
        if live_dups:
            problems.append("recipient got %d messages more than once live "
                            "(e.g. %r)" % (len(live_dups), live_dups[:3]))
        live_seqs = [f["seq"] for _, f in live]
        firsts = []
        seen = set()
        for q in live_seqs:
            if q not in seen:
                seen.add(q)
                firsts.append(q)
        if live_dups:
            redelivered = [(i, live_seqs[i]) for i in range(1, len(live_seqs))
                           if live_seqs[i] <= live_seqs[i - 1]]
            problems.append("  (redelivery began after seq %r with seq %r)"
                            % (live_seqs[redelivered[0][0] - 1],
                               redelivered[0][1]) if redelivered
                            else "  (duplicates adjacent)")
        inversions = [(firsts[i - 1], firsts[i]) for i in range(1, len(firsts))
                      if firsts[i] < firsts[i - 1]]
        if inversions:
            problems.append("recipient got messages out of seq order live "
                            "(first deliveries): %r" % inversions[:5])
        for _, f in live:
            c = f.get("client_msg_id")
            if c in acks and (f["message_id"], f["seq"]) != acks[c]:
                problems.append("live message %r disagrees with its ack %r"
                                % (f, acks[c]))
                break
        live_set = set(live_seqs)
        missing_live = sorted(set(seqs) - live_set)
        gaps = []
        prev = 0
        for s in sorted(live_set):
            if s != prev + 1:
                gaps.append((prev + 1, s - 1))
            prev = s
        by_sync, by_hist = self.recover_missing(missing_live)
        unrecovered = [s for s in missing_live
                       if s not in by_sync and s not in by_hist]
        if unrecovered:
            problems.append("%d messages neither delivered live nor found by "
                            "sync/history: seqs %r" % (len(unrecovered),
                                                       unrecovered[:10]))
        if by_hist and not self.sync_truncated:
            problems.append("%d missed messages were not in the final sync, "
                            "whose item did not say truncated (only history "
                            "had them: seqs %r...)"
                            % (len(by_hist), sorted(by_hist)[:10]))

        lat = sorted(self.ack_time[c] - (self.first_sent[c] - self.t0)
                     for c in acks if c in self.first_sent)
        report = [
            "messages: %d, acked: %d, resends: %d, errors by code: %r"
            % (self.n, len(acks), resends, errors),
            "stored rows: %d (distinct %d)" % (len(rows), len(stored_c)),
            "received live: %d (distinct %d), missing live: %d, gaps %r"
            % (len(live), len(live_mids), len(missing_live), gaps[:10]),
            "recovered by final sync: %d, by history: %d (sync item "
            "truncated: %r)" % (len(by_sync), len(by_hist),
                                self.sync_truncated),
            "ack latency: median %.3fs, max %.2fs"
            % (lat[len(lat) // 2] if lat else -1, lat[-1] if lat else -1),
            "connection drops: sender %r, recipient %r"
            % (self.sender.drops, self.recipient.drops),
        ]
        if missing_live and not self.recipient.drops:
            report.append("NOTE: %d messages missed live on a connection that "
                          "never dropped (PROTOCOL.md: a gap can only follow "
                          "a reconnect)" % len(missing_live))
        if extra_report:
            report.extend(extra_report)
        report.append("events:")
        report.extend("  " + e for e in self.events[-40:])
        text = "\n".join(report)
        print("\n" + text)
        if problems:
            pytest.fail("\n".join(problems) + "\n--- report ---\n" + text
                        + "\n--- logs ---\n" + self.stack.logs(25),
                        pytrace=False)
        return text


def _restore(stack, action):
    try:
        stack.ctl(action, check=False)
    except Exception as e:
        print("restoring with %s failed: %r" % (action, e))


def _stack_healthy(stack, timeout=90):
    """The stack answers a round trip again (used after a fault test)."""
    a_id, b_id = unique("hc"), unique("hc")
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            a = stack.connect(a_id, "h", timeout=5)
            try:
                cmid = "hc-%d" % int(time.monotonic() * 1000)
                a.send_json({"type": "send", "client_msg_id": cmid,
                             "to": b_id, "body": "health"})
                f = a.recv_until(lambda o: o.get("client_msg_id") == cmid, 10)
                if f.get("type") == "ack":
                    return True
                last = f
            finally:
                a.close(timeout=1)
        except Exception as e:
            last = e
        time.sleep(1)
    print("stack not healthy after the fault test: %r" % (last,))
    return False


# -----------------------------------------------------------------------------

def test_worker_sigkill_mid_stream(stack):
    s = Stream(stack, n=2000, pace=0.005, prefix="k")
    restarted = False
    try:
        s.start()
        s.wait_sent(500)
        s.log("worker-kill")
        stack.ctl("worker-kill")
        s.log("worker killed")
        time.sleep(1.5)
        s.log("worker-start")
        stack.ctl("worker-start")
        restarted = True
        s.log("worker started")
        acked = s.wait_all_acked(110)
        s.log("ack wait over (all acked: %s)" % acked)
        s.wait_live(20)
    finally:
        if not restarted:
            _restore(stack, "worker-start")
        s.stop()
    s.verify(strict_order=True)
    assert _stack_healthy(stack), "stack not usable after the worker restart"


def test_redis_restart_mid_stream(stack):
    s = Stream(stack, n=2000, pace=0.005, prefix="r")
    done = False
    extra = []
    try:
        s.start()
        s.wait_sent(500)
        s.log("redis-restart")
        stack.ctl("redis-restart")
        done = True
        s.log("redis restarted")
        acked = s.wait_all_acked(110)
        s.log("ack wait over (all acked: %s)" % acked)
        s.wait_live(20)

        # sessions registered again, with the live connections' sids
        for peer, dev in ((s.sender, "s"), (s.recipient, "r")):
            want = peer.session_ids[-1]
            try:
                wait_for(lambda: (stack.sessions(peer.user).get(dev) or "")
                         .endswith(" " + want), 20,
                         what="chat:sess:%s %s re-registered" % (peer.user,
                                                                  dev))
            except AssertionError as e:
                extra.append("NOT RE-REGISTERED: %s" % e)
        # new messages are delivered live again
        probes = ["rp%d" % i for i in range(5)]
        for cmid in probes:
            s.body[cmid] = "after restart " + cmid
            s.sender.send_json({"type": "send", "client_msg_id": cmid,
                                "to": s.recipient_id, "body": s.body[cmid]})
        s.cmids.extend(probes)
        try:
            wait_for(lambda: all(any(f.get("client_msg_id") == c
                                     for _, f in s.live) for c in probes),
                     20, what="live delivery of new messages after the "
                     "restart")
            extra.append("new messages after the restart delivered live")
        except AssertionError as e:
            extra.append("NOT LIVE: %s" % e)
        s.n += len(probes)
        s.wait_all_acked(20)
    except AssertionError as e:
        extra.append("FAILED: %s" % e)
    finally:
        if not done:
            _restore(stack, "redis-start")
        s.stop()
    s.verify(strict_order=True, extra_report=extra,
             extra_problems=[e for e in extra
                             if e.startswith(("NOT", "FAILED"))])
    assert _stack_healthy(stack), "stack not usable after the Redis restart"


def test_kafka_stopped_then_started(stack):
    s = Stream(stack, n=300, pace=0.01, prefix="f")
    started = True
    extra = []
    try:
        s.start()
        s.wait_sent(100)
        s.log("kafka-stop")
        started = False
        stack.ctl("kafka-stop")
        t_stopped = time.monotonic()
        s.log("kafka stopped")
        # probes sent during the outage and never retried: an `unavailable`
        # answer promises that nothing was stored
        time.sleep(1.0)
        probes = ["q%d" % i for i in range(3)]
        with s.lock:
            s.no_retry.update(probes)
        for cmid in probes:
            s.body[cmid] = "probe " + cmid
            s._send(cmid)
        time.sleep(14)
        t_restart = time.monotonic()
        with s.lock:
            outage_acks = [c for c in s.acks
                           if c in s.first_sent
                           and s.first_sent[c] > t_stopped + 0.5
                           and s.t0 + s.ack_time[c] < t_restart]
            outage_errors = {c: fs for c, fs in s.error_frames.items()}
        s.log("kafka-start")
        stack.ctl("kafka-start")
        started = True
        s.log("kafka started")
        acked = s.wait_all_acked(100)
        s.log("ack wait over (all acked: %s)" % acked)
        s.wait_live(20)
    finally:
        if not started:
            _restore(stack, "kafka-start")
        s.stop()

    # "timeout": Kafka may have taken it (the retry is deduplicated)
    wrong_codes = [(c, f) for c, fs in outage_errors.items() for _, f in fs
                   if f.get("code") not in ("unavailable", "timeout",
                                            "rate_limited")]
    untagged = [f for c, fs in outage_errors.items() for _, f in fs
                if c is None]
    probe_report = []
    probe_problems = []
    stored_probes = {}
    for cmid in probes:
        answers = [f for _, f in s.error_frames.get(cmid, [])]
        out = stack.psql("select seq from messages where sender_id='%s' and "
                         "client_msg_id='%s'" % (s.sender_id, cmid))
        seqs = [int(x) for x in out.split()]
        probe_report.append("probe %s: errors %r, acked %s, stored seqs %r"
                            % (cmid, [f.get("code") for f in answers],
                               cmid in s.acks, seqs))
        if any(f.get("code") == "unavailable" for f in answers) and seqs:
            probe_problems.append(
                "%s was answered `unavailable` (promising nothing was "
                "stored) but PostgreSQL holds it" % cmid)
        if len(seqs) > 1:
            probe_problems.append("%s stored %d times" % (cmid, len(seqs)))
        if seqs and cmid not in s.acks:
            stored_probes[cmid] = seqs[0]
    n_unavail = sum(1 for fs in outage_errors.values() for _, f in fs
                    if f.get("code") == "unavailable")
    extra = extra + probe_report + [
        "during the outage: %d `unavailable` errors, acks for messages "
        "first sent during it: %d" % (n_unavail, len(outage_acks))]
    outage_problems = list(probe_problems)
    if outage_acks:
        outage_problems.append(
            "acks arrived during the Kafka outage for messages sent during "
            "it (acked before being durable?): %r" % outage_acks[:5])
    if wrong_codes:
        outage_problems.append("errors other than unavailable during the "
                               "outage: %r" % wrong_codes[:5])
    if untagged:
        outage_problems.append("errors without their client_msg_id: %r"
                               % untagged[:3])
    s.verify(strict_order=False, extra_report=extra,
             extra_stored=stored_probes, extra_problems=outage_problems)
    assert _stack_healthy(stack), "stack not usable after Kafka restarted"


def test_redis_hang_detected_and_recovered(stack):
    """A Redis that stops answering without closing its sockets (SIGSTOP):
    hiredis has no timeouts, so the module's own ping must notice, drop the
    links and reconnect; deliveries then flow again with no client action."""
    import os
    import signal

    from chatlib import dm_id, expect_ack, expect_message, send_msg, unique

    a_id, b_id = unique("hang"), unique("hang")
    a = stack.connect(a_id, "p")
    b = stack.connect(b_id, "p")
    try:
        with open(os.path.join(stack.dir, "run", "redis.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(12)      # two ping intervals of the module
        finally:
            os.kill(pid, signal.SIGCONT)

        with open(os.path.join(stack.dir, "nginx", "logs", "error.log")) as f:
            log = f.read()
        assert "did not answer a ping" in log, "the hang went unnoticed"

        # registered again and delivered live again, without reconnecting
        wait_for(lambda: stack.sessions(b_id).get("p"), 20,
                 what="chat:sess:%s registered again" % b_id)
        send_msg(a, "after-hang", "hello again", to=b_id)
        ack = expect_ack(a, "after-hang", 30)
        msg = expect_message(b, "after-hang", 30)
        assert msg["seq"] == ack["seq"]
        assert msg["conversation_id"] == dm_id(a_id, b_id)
    finally:
        a.close()
        b.close()


def _workers_with(stack, args):
    """Every worker (running or not) stopped, then started with args."""
    stack.ctl("worker-stop")
    env = dict(stack._proc_env or os.environ)
    env["CHAT_WORKER_ARGS"] = args
    p = subprocess.run(["bash", STACK_SH, "worker-start", stack.dir],
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    assert p.returncode == 0, p.stdout.decode("utf-8", "replace")[-2000:]


def _search(c, query, rid):
    c.send_json({"type": "search", "req_id": rid, "query": query})
    r = c.recv_until(lambda f: f.get("req_id") == rid, 15)
    assert r["type"] == "search", r
    return [x["message_id"] for x in r["results"]]


def test_search_indexes_what_a_killed_worker_left(stack):
    """A message acknowledged, then every worker SIGKILLed before it was
    indexed (the workers wait ten minutes to index a send): the workers
    started after them index it when they take its partition, and search
    finds it."""
    slow = "--search-index-ms 600000"
    a_id, b_id = unique("si"), unique("si")
    word = unique("k").replace("_", "")
    _workers_with(stack, slow)
    try:
        a = stack.connect(a_id, "p")
        try:
            # the first send's batch comes after the partition's taking
            # and its look-over: nothing indexes the second one after it
            for cmid, body in (("w1", "warming up"), ("k1", word)):
                a.send_json({"type": "send", "client_msg_id": cmid,
                             "to": b_id, "body": body})
                ack = a.recv_until(lambda f: f.get("client_msg_id") == cmid,
                                   30)
                assert ack["type"] == "ack", ack
                time.sleep(0.5)
            mid = ack["message_id"]
            time.sleep(1.0)
            assert indexed(stack, [mid]) == 0, "indexed before the kill"
        finally:
            a.close(timeout=1)

        stack.ctl("worker-kill")
        _workers_with(stack, slow)

        a = stack.connect(a_id, "p")
        try:
            n = [0]

            def found():
                n[0] += 1
                return mid in _search(a, word, "s%d" % n[0])
            wait_for(found, 90, interval=0.5, what="the message found")
        finally:
            a.close(timeout=1)
        logs = "".join(open(os.path.join(stack.dir, "log", f),
                            errors="replace").read()
                       for f in os.listdir(os.path.join(stack.dir, "log"))
                       if f.startswith("worker"))
        assert "indexed late" in logs
    finally:
        _workers_with(stack, "")
