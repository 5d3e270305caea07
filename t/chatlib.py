"""Helpers shared by the integration tests (no fixtures here)."""

import os
import re
import signal
import subprocess
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


def indexed(stack, message_ids):
    """How many of these messages the search index has."""
    ids = ",".join(str(int(m)) for m in message_ids)
    return int(stack.psql("SELECT count(*) FROM message_search"
                          " WHERE message_id IN (%s)" % ids))


def wait_indexed(stack, message_ids, timeout=10.0):
    """Until the search index has every one of these messages: the
    workers write it after the sends' acks, within --search-index-ms."""
    ids = sorted(set(message_ids))
    wait_for(lambda: indexed(stack, ids) == len(ids), timeout,
             what="messages %r in the search index" % ids)


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


def befriend(c, other, timeout=15.0):
    """c's user and other become contacts (who see each other's presence):
    c sends other a direct message and waits for its ack."""
    cmid = unique("friend")
    send_msg(c, cmid, "hello", to=other)
    return expect_ack(c, cmid, timeout)


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


__all__ = ["wait_for", "send_msg", "expect_ack", "befriend", "expect_message",
           "expect_error", "ping", "history", "history_all", "sync",
           "Collector", "close_all", "dm_id", "unique", "wsclient"]


class ExtraServer:
    """Another nginx server of the stack (its own chat_server_id, ports and
    logs) on the same Redis and Kafka, from the stack's own nginx.conf;
    edit(conf) may change the configuration first. daemon=True lets nginx
    daemonize as it does in production (a binary upgrade needs that: a new
    binary started by a master whose parent still runs ignores USR2)."""

    def __init__(self, stack, server_id, ports, edit=None, daemon=False):
        self.stack = stack
        self.daemon = daemon
        self.prefix = os.path.join(stack.dir, "nginx-" + server_id)
        os.makedirs(os.path.join(self.prefix, "logs"), exist_ok=True)
        with open(os.path.join(stack.dir, "nginx", "nginx.conf")) as f:
            conf = f.read()
        first = os.path.join(stack.dir, "nginx")
        port, tls_port = ports
        conf = conf.replace(first + "/logs", self.prefix + "/logs")
        conf = re.sub(r"chat_server_id\s+\S+;",
                      "chat_server_id %s;" % server_id, conf)
        for old, new in ((stack.env["CHAT_PORT"], port),
                         (stack.env["CHAT_TLS_PORT"], tls_port)):
            conf = conf.replace(":%s " % old, ":%d " % new)
            conf = conf.replace(":%s;" % old, ":%d;" % new)
        if edit:
            conf = edit(conf)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.pidfile = os.path.join(self.prefix, "logs", "nginx.pid")
        self.url = "ws://127.0.0.1:%d/chat" % port
        self.master = None

    def start(self):
        argv = [self.stack.env["NGINX_BIN"], "-p", self.prefix + "/",
                "-c", self.conf]
        if self.daemon:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self.master = wait_for(lambda: read_pid(self.pidfile), 10,
                                   what="nginx's pid file")
        else:
            self._proc = subprocess.Popen(argv + ["-g", "daemon off;"],
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
            self.master = self._proc.pid
        deadline = time.monotonic() + 10
        while True:
            try:
                c = self.stack.connect(unique("probe"), url=self.url)
                c.close()
                return self
            except Exception:
                if time.monotonic() > deadline or not alive(self.master):
                    self.kill()
                    raise
                time.sleep(0.2)

    def workers(self, master=None):
        """The worker processes of a master (this server's by default)."""
        out = subprocess.run(["pgrep", "-P", str(master or self.master)],
                             stdout=subprocess.PIPE).stdout.decode()
        return [int(p) for p in out.split()]

    def kill(self):
        """SIGKILL of the master and its workers, as a host crash would."""
        pids = [self.master] + self.workers()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap()

    def stop(self):
        if self.master and alive(self.master):
            os.kill(self.master, signal.SIGTERM)
            try:
                wait_for(lambda: not alive(self.master), 20,
                         what="nginx gone")
            except AssertionError:
                self.kill()
        self._reap()

    def _reap(self):
        proc = getattr(self, "_proc", None)
        if proc is not None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
