"""Helpers shared by the integration tests (no fixtures here)."""

import threading
import time
import uuid

import wsclient


def unique(prefix="u"):
    """A user/device id unique to one test: [A-Za-z0-9_.@-], under 64."""
    return "%s_%s" % (prefix, uuid.uuid4().hex[:12])


def dm_id(a, b):
    """Id of the direct conversation of a and b (byte order)."""
    x, y = sorted([a, b], key=lambda s: s.encode())
    return "dm:%s:%s" % (x, y)


def wait_for(pred, timeout=10.0, interval=0.1, what="condition"):
    """Poll pred() until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s "
                                 "(last value %r)" % (timeout, what, last))
        time.sleep(interval)


def send_msg(c, cmid, body, to=None, conv=None, **extra):
    frame = {"type": "send", "client_msg_id": cmid, "body": body}
    if to is not None:
        frame["to"] = to
    if conv is not None:
        frame["conversation_id"] = conv
    frame.update(extra)
    c.send_json(frame)


def expect_ack(c, cmid, timeout=15.0):
    """Wait for the ack (or error) answering client_msg_id; fails on error."""
    f = c.recv_until(lambda o: o.get("type") in ("ack", "error")
                     and o.get("client_msg_id") == cmid, timeout,
                     what="ack for client_msg_id %r" % cmid)
    assert f["type"] == "ack", "send %r answered with an error: %r" % (cmid, f)
    return f


def expect_message(c, cmid, timeout=15.0):
    return c.recv_until(lambda o: o.get("type") == "message"
                        and o.get("client_msg_id") == cmid, timeout,
                        what="message with client_msg_id %r" % cmid)


def expect_error(c, timeout=10.0, **match):
    f = c.recv_until(lambda o: o.get("type") in ("error", "ack", "history",
                                                 "pong", "conversations",
                                                 "group")
                     and all(o.get(k) == v for k, v in match.items()),
                     timeout, what="error frame %r" % (match,))
    assert f["type"] == "error", "expected an error for %r, got %r" % (match, f)
    return f


def ping(c, req_id="p", timeout=10.0):
    """JSON ping; returns the pong (the connection still works)."""
    c.send_json({"type": "ping", "req_id": req_id})
    return c.recv_type("pong", timeout, req_id=req_id)


def history(c, conv, req_id, timeout=15.0, **kw):
    frame = {"type": "history", "req_id": req_id, "conversation_id": conv}
    frame.update(kw)
    c.send_json(frame)
    return c.recv_until(lambda o: o.get("type") in ("history", "error")
                        and o.get("req_id") == req_id, timeout,
                        what="history answer to req_id %r" % req_id)


def history_all(c, conv, req_prefix="hall", timeout=15.0):
    """Every message of conv by paging forward with after_seq."""
    out = []
    after = 0
    for i in range(10000):
        h = history(c, conv, "%s-%d" % (req_prefix, i), timeout,
                    after_seq=after, limit=100)
        assert h["type"] == "history", "history paging failed: %r" % h
        msgs = h["messages"]
        if not msgs:
            return out
        out.extend(msgs)
        after = msgs[-1]["seq"]
    raise AssertionError("history paging did not end")


def sync(c, req_id, cursors=None, timeout=30.0):
    """Run a sync; returns (conversations_frame, [messages], sync_done,
    [all frames with this req_id or messages in order])."""
    frame = {"type": "sync", "req_id": req_id}
    if cursors is not None:
        frame["cursors"] = cursors
    c.send_json(frame)
    conv = c.recv_until(lambda o: o.get("type") in ("conversations", "error")
                        and o.get("req_id") == req_id, timeout,
                        what="conversations answer to sync %r" % req_id)
    assert conv["type"] == "conversations", "sync failed: %r" % conv
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no sync_done for %r within %.0fs (got %d "
                               "messages)" % (req_id, timeout, len(msgs)))
        f = c.recv_json(remaining)
        if f.get("type") == "sync_done" and f.get("req_id") == req_id:
            return conv, msgs, f
        if f.get("type") == "message":
            msgs.append(f)


class Collector:
    """Reads one client's frames in a thread and keeps them."""

    def __init__(self, client, name="collector"):
        self.client = client
        self.frames = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.closed = None          # ConnectionClosed or other exception
        self.thread = threading.Thread(target=self._run, name=name,
                                       daemon=True)
        self.cond = threading.Condition(self.lock)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                f = self.client.recv_json(0.2)
            except TimeoutError:
                continue
            except Exception as e:      # closed, reset, protocol error
                with self.cond:
                    self.closed = e
                    self.cond.notify_all()
                return
            with self.cond:
                self.frames.append((time.monotonic(), f))
                self.cond.notify_all()

    def stop(self, timeout=5.0):
        self.stop_flag.set()
        self.thread.join(timeout)

    def snapshot(self, ftype=None):
        with self.lock:
            return [f for _, f in self.frames
                    if ftype is None or f.get("type") == ftype]

    def wait(self, pred, timeout, what="frames"):
        """Wait until pred(list of frames) is truthy."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                frames = [f for _, f in self.frames]
                r = pred(frames)
                if r:
                    return r
                if self.closed is not None:
                    return r
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return r
                self.cond.wait(min(remaining, 0.5))


def close_all(*clients):
    for c in clients:
        if c is None:
            continue
        try:
            c.close(timeout=1.0)
        except Exception:
            pass


__all__ = ["wait_for", "send_msg", "expect_ack", "expect_message",
           "expect_error", "ping", "history", "history_all", "sync",
           "Collector", "close_all", "dm_id", "unique", "wsclient"]
