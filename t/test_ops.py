"""Operating it: every chatctl command against the real stack (its --json
parsed), revocations (PostgreSQL, chat:revoked, chat:control, and the
hash written again after a flush and a worker restart; nginx closing the
revoked sessions with 4003 and refusing their tokens with 401, at the
handshake and in an auth renewal), set_role from
clients and from chatctl, redactions, and the workers' JSON log lines.
"""

import json
import os
import selectors
import subprocess
import time

import pytest

import wsclient
from chatlib import (ExtraServer, dm_id, indexed, unique, wait_for,
                     wait_indexed)
from conftest import free_ports

T = 15.0

COMMANDS = ("token", "migrate", "sessions", "kick", "revoke", "groups",
            "message", "stats")


# -- chatctl ------------------------------------------------------------------

def ctl_env(stack):
    env = dict(os.environ)
    env.update({
        "CHAT_PG": "host=127.0.0.1 port=%d dbname=chat user=chat"
                   % stack.pg_port,
        "CHAT_REDIS": "127.0.0.1:%d" % stack.redis_port,
        "CHAT_BROKERS": "127.0.0.1:%d" % stack.kafka_port,
        "CHAT_TOPIC": stack.env.get("CHAT_TOPIC", "chat.requests"),
        "CHATCTL_ADMIN": "ops.tester",
    })
    return env


def chatctl(stack, *args, rc=0, timeout=60):
    """chatctl ARGS --json: the parsed document (None when it printed
    nothing); asserts the exit status."""
    p = subprocess.run([stack.env["CHATCTL_BIN"]] + list(args) + ["--json"],
                       env=ctl_env(stack), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    out, err = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == rc, ("chatctl %s: exit %d, not %d\nstdout: %s\n"
                                "stderr: %s" % (" ".join(args), p.returncode,
                                                rc, out, err))
    return json.loads(out) if out.strip() else None


def chatctl_text(stack, *args):
    p = subprocess.run([stack.env["CHATCTL_BIN"]] + list(args),
                       env=ctl_env(stack), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


# -- clients ------------------------------------------------------------------

def frame_of(c, pred, timeout=T, what="a frame"):
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("%s/%s: no %s within %.0fs"
                                 % (c.user, c.dev, what, timeout))
        try:
            f = c.recv_json(remaining)
        except TimeoutError:
            continue
        if pred(f):
            return f


def answer(c, req_id, timeout=T):
    return frame_of(c, lambda f: f.get("req_id") == req_id
                    and f.get("type") in ("group", "error", "pong"),
                    timeout, "answer to %r" % (req_id,))


def system_event(c, conv, event, timeout=T):
    return frame_of(c, lambda f: f.get("type") == "message"
                    and f.get("conversation_id") == conv
                    and f.get("kind") == "system"
                    and isinstance(f.get("body"), dict)
                    and f["body"].get("event") == event,
                    timeout, "%s in %s" % (event, conv))


def new_group(c, name, members):
    rid = unique("cg")
    c.send_json({"type": "create_group", "req_id": rid, "name": name,
                 "members": members})
    g = answer(c, rid)
    assert g["type"] == "group", g
    return g["conversation_id"]


def set_role(c, conv, user, role):
    rid = unique("sr")
    c.send_json({"type": "set_role", "req_id": rid, "conversation_id": conv,
                 "user_id": user, "role": role})
    return answer(c, rid)


def roles(group_frame):
    return {m["user_id"]: m["role"] for m in group_frame["members"]}


def ping(c):
    rid = unique("p")
    c.send_json({"type": "ping", "req_id": rid})
    assert answer(c, rid)["type"] == "pong"


def closed_with(c, timeout=T):
    """The close code the server ends c with."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c.recv_json(deadline - time.monotonic())
        except TimeoutError:
            continue
        except wsclient.ConnectionClosed as e:
            return e.code
    raise AssertionError("%s/%s was not closed within %.0fs"
                         % (c.user, c.dev, timeout))


class Subscriber:
    """redis-cli SUBSCRIBE to a channel: the messages published on it."""

    def __init__(self, stack, channel):
        self.p = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p",
                                   str(stack.redis_port), "--csv",
                                   "SUBSCRIBE", channel],
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)
        self.buf = b""
        # subscribed once redis-cli says so
        self.wait(lambda line: line.startswith('"subscribe"'), 10)

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.decode()
                if pred(line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("nothing matching on the channel")
            if self.sel.select(remaining):
                data = os.read(self.p.stdout.fileno(), 65536)
                if not data:
                    raise AssertionError("redis-cli ended")
                self.buf += data

    def close(self):
        self.p.terminate()
        self.p.wait(10)


# -- the manual and the command line -----------------------------------------

def test_every_command_has_a_manual(stack):
    rc, out, _ = chatctl_text(stack, "--help")
    assert rc == 0
    for name in COMMANDS:
        assert "    %s " % name in out, out
    for name in COMMANDS:
        rc, page, err = chatctl_text(stack, name, "--help")
        assert rc == 0, (name, err)
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                        "EXAMPLES", "EXIT STATUS"):
            assert "\n%s\n" % section in "\n" + page, (name, section, page)
        assert "chatctl %s" % name in page
        assert "--json" in page
    # a usage error is 2, with a pointer to the manual
    rc, _, err = chatctl_text(stack, "sessions")
    assert rc == 2 and "--help" in err, err
    rc, _, err = chatctl_text(stack, "nonsense")
    assert rc == 2
    rc, _, err = chatctl_text(stack, "sessions", "a b")
    assert rc == 2
    rc, _, err = chatctl_text(stack, "sessions", "alice", "--device", "x")
    assert rc == 2, "sessions takes no --device"


def test_token_json_connects(stack, clients):
    user = unique("tok")
    doc = chatctl(stack, "token", user, "--device", "tab", "--ttl", "600",
                  "--secret", stack.secret)
    assert doc["user"] == user and doc["device"] == "tab"
    assert 599000 <= doc["expires_at"] - doc["issued_at"] <= 600000
    c = clients.add(wsclient.connect(stack.url, token=doc["token"]))
    hello = c.recv_json(10)
    assert hello["type"] == "hello" and hello["user_id"] == user
    assert hello["device_id"] == "tab"
    assert "set_role" in hello.get("features", [])


# -- migrate ------------------------------------------------------------------

def psql_admin(stack, sql, db="postgres"):
    p = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(stack.pg_port),
                        "-U", "postgres", "-d", db, "-X", "-At",
                        "-v", "ON_ERROR_STOP=1", "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode().strip()


def sql_versions(root):
    return sorted(f.split("_", 1)[0] for f in os.listdir(root)
                  if f.endswith(".sql") and f.split("_", 1)[0].isdigit())


def test_migrate_status_of_the_stack(stack):
    root = os.path.join(stack.env["CHAT_ROOT"], "sql")
    doc = chatctl(stack, "migrate", "status", "--dir", root)
    assert doc["pending"] == [] and doc["applied"] == []
    assert doc["current"] == sql_versions(root)


def test_migrate_a_fresh_database(stack, tmp_path):
    root = os.path.join(stack.env["CHAT_ROOT"], "sql")
    db = "mig_" + unique("db").replace("-", "_").lower()
    psql_admin(stack, "CREATE DATABASE %s OWNER chat" % db)
    pg = "host=127.0.0.1 port=%d dbname=%s user=chat" % (stack.pg_port, db)
    try:
        doc = chatctl(stack, "migrate", "--pg", pg, "--dir", root)
        assert [a["version"] for a in doc["applied"]] == sql_versions(root)
        assert all(a["file"].startswith(a["version"] + "_")
                   for a in doc["applied"])
        rows = psql_admin(stack, "SELECT version FROM schema_migrations"
                                 " ORDER BY version", db)
        assert rows.split("\n") == sql_versions(root)
        assert psql_admin(stack, "SELECT count(*) FROM revocations", db) == "0"

        # again: nothing to do
        doc = chatctl(stack, "migrate", "--pg", pg, "--dir", root)
        assert doc["applied"] == [] and doc["current"] == sql_versions(root)

        # a migration that fails leaves nothing, and stops the ones after
        bad = tmp_path / "sql"
        bad.mkdir()
        for f in os.listdir(root):
            (bad / f).write_bytes(open(os.path.join(root, f), "rb").read())
        (bad / "900_good.sql").write_text("CREATE TABLE t900 (x int);\n")
        (bad / "901_bad.sql").write_text(
            "CREATE TABLE t901 (x int);\nSELECT * FROM no_such_table;\n")
        (bad / "902_after.sql").write_text("CREATE TABLE t902 (x int);\n")
        p = subprocess.run([stack.env["CHATCTL_BIN"], "migrate", "--pg", pg,
                            "--dir", str(bad)], env=ctl_env(stack),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        assert p.returncode == 1, p
        assert b"901_bad.sql" in p.stderr, p.stderr
        assert psql_admin(stack, "SELECT string_agg(version, ',' ORDER BY"
                                 " version) FROM schema_migrations WHERE"
                                 " version >= '900'", db) == "900"
        assert psql_admin(stack, "SELECT count(*) FROM pg_tables WHERE"
                                 " tablename IN ('t900','t901','t902')",
                          db) == "1"
        doc = chatctl(stack, "migrate", "status", "--pg", pg, "--dir",
                      str(bad))
        assert doc["pending"] == ["901_bad.sql", "902_after.sql"]
    finally:
        psql_admin(stack, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


# -- sessions, kick -----------------------------------------------------------

def test_sessions_and_kick(stack, clients):
    user = unique("sk")
    phone = clients.add(stack.connect(user, "phone"))
    laptop = clients.add(stack.connect(user, "laptop"))

    doc = chatctl(stack, "sessions", user)
    assert doc["user"] == user
    got = {s["device"]: s for s in doc["sessions"]}
    assert set(got) == {"phone", "laptop"}, doc
    registry = stack.sessions(user)
    for dev, c in (("phone", phone), ("laptop", laptop)):
        s = got[dev]
        assert registry[dev] == "%s %s" % (s["node"], s["session_id"])
        assert s["session_id"] == c.hello["session_id"]
        assert s["node"].startswith(c.hello["server_id"] + ":")
        assert s["node_alive"] is True
        assert abs(s["since"] - time.time() * 1000) < 120000

    # one device: closed with 4001, the other one stays
    doc = chatctl(stack, "kick", user, "--device", "phone")
    assert [k["device"] for k in doc["kicked"]] == ["phone"]
    assert doc["kicked"][0]["receivers"] >= 1
    assert closed_with(phone) == 4001
    ping(laptop)
    wait_for(lambda: set(stack.sessions(user)) == {"laptop"}, 10,
             what="the phone's session gone from the registry")

    # all of them
    doc = chatctl(stack, "kick", user)
    assert [k["device"] for k in doc["kicked"]] == ["laptop"]
    assert closed_with(laptop) == 4001

    wait_for(lambda: chatctl(stack, "sessions", user)["sessions"] == [], 10,
             what="no sessions left")
    assert chatctl(stack, "kick", user, rc=3)["kicked"] == []
    assert chatctl(stack, "sessions", unique("nobody"))["sessions"] == []


# -- revoke -------------------------------------------------------------------

def revoked(stack, field):
    v = stack.redis_cli("HGET", "chat:revoked", field).strip()
    return int(v) if v else None


def test_revoke(stack):
    user = unique("rv")
    sub = Subscriber(stack, "chat:control")
    try:
        before = int(time.time() * 1000)
        doc = chatctl(stack, "revoke", user)
        assert doc["user"] == user and doc["device"] is None
        assert doc["stored"] is True and doc["admin"] == "ops.tester"
        ms = doc["revoked_at"]
        assert before <= ms <= int(time.time() * 1000)

        # the store of record
        row = stack.psql("SELECT device_id, revoked_at, admin FROM"
                         " revocations WHERE user_id = '%s'" % user)
        assert row == "|%d|ops.tester" % ms, row

        # the copy for nginx, and the message to every nginx process
        assert wait_for(lambda: revoked(stack, user), 10,
                        what="chat:revoked %s" % user) == ms
        line = sub.wait(lambda l: user in l, 10)
        assert line == '"message","chat:control","revoke %s - %d"' \
            % (user, ms), line

        # one device
        doc = chatctl(stack, "revoke", user, "--device", "phone")
        dms = doc["revoked_at"]
        assert doc["device"] == "phone" and dms >= ms
        assert wait_for(lambda: revoked(stack, user + " phone"), 10) == dms
        line = sub.wait(lambda l: user + " phone" in l, 10)
        assert line.endswith('"revoke %s phone %d"' % (user, dms)), line
        assert stack.psql("SELECT count(*) FROM revocations WHERE"
                          " user_id = '%s'" % user) == "2"
    finally:
        sub.close()

    # the hash deleted under a running worker: written again from
    # PostgreSQL within a few seconds
    stack.redis_cli("DEL", "chat:revoked")
    assert wait_for(lambda: revoked(stack, user), 10,
                    what="chat:revoked written again") == ms

    # everything flushed while the workers are down: written again at
    # their start, from PostgreSQL
    stack.ctl("worker-stop")
    try:
        stack.redis_cli("FLUSHALL")
        assert revoked(stack, user) is None
    finally:
        stack.ctl("worker-start")
    assert wait_for(lambda: revoked(stack, user), 20,
                    what="chat:revoked after the restart") == ms
    assert revoked(stack, user + " phone") == dms

    # a bad device id never leaves chatctl
    rc, _, err = chatctl_text(stack, "revoke", user, "--device", "-")
    assert rc == 2, err


# -- revocations on the nginx side -------------------------------------------

def connect_fresh(stack, user, dev):
    """A connection with a token minted now (iat: this second), never a
    cached one; the token is returned with it."""
    tok = stack.token(user, dev, jti=unique("j"))
    c = wsclient.connect(stack.url, token=tok, timeout=10)
    hello = c.recv_json(10)
    assert hello.get("type") == "hello", hello
    c.user, c.dev = user, dev
    return c, tok


def refused_401(stack, tok):
    with pytest.raises(wsclient.HandshakeError) as ei:
        c = wsclient.connect(stack.url, token=tok, timeout=10)
        c.abort()
    assert ei.value.status == 401, ei.value


def after_second_of(ms):
    """Sleeps into the second after ms: a token minted then has an iat
    after the revocation."""
    time.sleep(max(0.0, (ms // 1000 + 1) - time.time()) + 0.05)


def auth(c, tok):
    rid = unique("au")
    c.send_json({"type": "auth", "req_id": rid, "token": tok})
    return frame_of(c, lambda f: f.get("req_id") == rid, T,
                    "answer to auth %s" % rid)


def test_revoked_device_closed_4003_and_refused(stack):
    user, other = unique("rd"), unique("rdo")
    conns = []
    try:
        phone, phone_tok = connect_fresh(stack, user, "phone")
        laptop, laptop_tok = connect_fresh(stack, user, "laptop")
        o, _ = connect_fresh(stack, other, "phone")
        conns += [phone, laptop, o]

        doc = chatctl(stack, "revoke", user, "--device", "phone")
        ms = doc["revoked_at"]
        assert closed_with(phone) == 4003

        # the user's other device and other users are untouched
        ping(laptop)
        ping(o)

        # the device's old token is refused at the handshake; the other
        # device's is not
        refused_401(stack, phone_tok)
        laptop2 = wsclient.connect(stack.url, token=laptop_tok, timeout=10)
        conns.append(laptop2)
        assert laptop2.recv_json(10)["type"] == "hello"

        # a token issued after the revocation is taken
        after_second_of(ms)
        phone2, _ = connect_fresh(stack, user, "phone")
        conns.append(phone2)
        ping(phone2)

        # Redis flushed while the workers are down, then the workers
        # write chat:revoked again from PostgreSQL: still refused
        stack.ctl("worker-stop")
        try:
            stack.redis_cli("FLUSHALL")
            assert revoked(stack, user + " phone") is None
        finally:
            stack.ctl("worker-start")
        assert wait_for(lambda: revoked(stack, user + " phone"), 20,
                        what="chat:revoked after the restart") == ms
        refused_401(stack, phone_tok)
        # the new connection outlived the replayed revocation
        ping(phone2)
    finally:
        for c in conns:
            c.abort()


def test_revoked_user_every_device_closed_and_auth_refused(stack):
    user, other = unique("ru"), unique("ruo")
    conns = []
    try:
        a, a_tok = connect_fresh(stack, user, "a")
        b, _ = connect_fresh(stack, user, "b")
        o, _ = connect_fresh(stack, other, "a")
        conns += [a, b, o]
        old_b_tok = stack.token(user, "b", jti=unique("j"))

        # a good renewal first: the check answers auth_ok
        f = auth(a, stack.token(user, "a", jti=unique("j")))
        assert f["type"] == "auth_ok", f

        doc = chatctl(stack, "revoke", user)
        ms = doc["revoked_at"]
        assert closed_with(a) == 4003
        assert closed_with(b) == 4003
        ping(o)
        refused_401(stack, a_tok)
        refused_401(stack, old_b_tok)
        # every device of the user, even one never connected
        refused_401(stack, stack.token(user, "tablet", iat=False,
                                       jti=unique("j")))

        after_second_of(ms)
        b2, _ = connect_fresh(stack, user, "b")
        conns.append(b2)

        # an auth renewal with a token from before the revocation is
        # refused, and the connection stays as it was
        f = auth(b2, old_b_tok)
        assert f["type"] == "error" and f["code"] == "bad_request", f
        ping(b2)
        f = auth(b2, stack.token(user, "b", jti=unique("j")))
        assert f["type"] == "auth_ok", f
        ping(b2)
    finally:
        for c in conns:
            c.abort()


# -- set_role -----------------------------------------------------------------

def test_set_role_protocol(stack, clients):
    a_id, b_id, c_id = unique("ra"), unique("rb"), unique("rc")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    c = clients.add(stack.connect(c_id))
    conv = new_group(a, "roles", [b_id, c_id])
    for x in (a, b, c):
        system_event(x, conv, "group_created")

    # a plain member may not
    e = set_role(b, conv, c_id, "admin")
    assert e["type"] == "error" and e["code"] == "forbidden", e

    # an admin may: the group frame, and the event in the seq stream
    g = set_role(a, conv, b_id, "admin")
    assert g["type"] == "group" and g["conversation_id"] == conv, g
    assert roles(g) == {a_id: "admin", b_id: "admin", c_id: "member"}
    for x in (a, b, c):
        ev = system_event(x, conv, "role_changed")
        assert ev["body"] == {"event": "role_changed", "user_id": b_id,
                              "role": "admin", "by": a_id}, ev
        assert ev["seq"] == 2 and ev["sender_id"] == a_id
    assert stack.psql("SELECT role FROM members WHERE conversation_id = '%s'"
                      " AND user_id = '%s'" % (conv, b_id)) == "admin"

    # now b may; the same role again changes nothing and says nothing
    g = set_role(b, conv, c_id, "admin")
    assert roles(g)[c_id] == "admin"
    ev = system_event(a, conv, "role_changed")
    assert ev["body"]["user_id"] == c_id and ev["body"]["by"] == b_id
    g = set_role(a, conv, c_id, "admin")
    assert g["type"] == "group" and roles(g)[c_id] == "admin"

    # admins may step down while another admin remains; the last may not
    assert roles(set_role(b, conv, b_id, "member"))[b_id] == "member"
    assert roles(set_role(a, conv, c_id, "member"))[c_id] == "member"
    e = set_role(a, conv, a_id, "member")
    assert e["type"] == "error" and e["code"] == "forbidden", e

    # a stranger's role: nothing to change, the members as they are
    g = set_role(a, conv, unique("stranger"), "admin")
    assert g["type"] == "group" and len(g["members"]) == 3

    # the stream holds every change once, in order
    rid = unique("h")
    a.send_json({"type": "history", "req_id": rid, "conversation_id": conv})
    h = frame_of(a, lambda f: f.get("req_id") == rid)
    changes = [(m["body"]["user_id"], m["body"]["role"])
               for m in h["messages"] if m["kind"] == "system"
               and m["body"]["event"] == "role_changed"]
    assert changes == [(b_id, "admin"), (c_id, "admin"), (b_id, "member"),
                       (c_id, "member")], changes
    seqs = [m["seq"] for m in h["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))

    # the module's checks; a direct conversation has no roles (as it has
    # no members to add: bad_request)
    e = set_role(a, conv, b_id, "owner")
    assert e["type"] == "error" and e["code"] == "bad_request"
    e = set_role(a, dm_id(a_id, b_id), b_id, "admin")
    assert e["type"] == "error" and e["code"] == "bad_request", e
    e = set_role(b, "g:" + unique("none"), a_id, "admin")
    assert e["type"] == "error" and e["code"] == "forbidden"


def test_groups_chatctl(stack, clients):
    a_id, b_id = unique("ga"), unique("gb")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    conv = new_group(a, "ops group", [b_id])
    system_event(b, conv, "group_created")

    doc = chatctl(stack, "groups", "list", "--user", a_id)
    assert [g["conversation_id"] for g in doc["groups"]] == [conv]
    g = doc["groups"][0]
    assert g["name"] == "ops group" and g["members"] == 2
    assert g["role"] == "admin" and g["last_seq"] == 1
    assert chatctl(stack, "groups", "list", "--user", b_id)["groups"][0][
        "role"] == "member"
    assert any(x["conversation_id"] == conv for x in
               chatctl(stack, "groups", "list", "--limit", "1000")["groups"])

    doc = chatctl(stack, "groups", "show", conv)
    assert doc["conversation_id"] == conv and doc["admins"] == [a_id]
    doc = chatctl(stack, "groups", "members", conv)
    assert [(m["user_id"], m["role"]) for m in doc["members"]] == \
        sorted([(a_id, "admin"), (b_id, "member")])

    # an operator's promote: through Kafka, the event to every member
    doc = chatctl(stack, "groups", "promote", conv, b_id)
    assert doc == {"conversation_id": conv, "user_id": b_id,
                   "role": "admin", "changed": True}
    for x in (a, b):
        ev = system_event(x, conv, "role_changed")
        assert ev["body"] == {"event": "role_changed", "user_id": b_id,
                              "role": "admin", "by": "ops.tester",
                              "operator": True}, ev
        assert ev["sender_id"] == "ops.tester"
    assert sorted(chatctl(stack, "groups", "show", conv)["admins"]) == \
        sorted([a_id, b_id])
    assert chatctl(stack, "groups", "promote", conv, b_id)["changed"] is False

    # an operator may leave a group without an admin
    chatctl(stack, "groups", "demote", conv, a_id)
    chatctl(stack, "groups", "demote", conv, b_id)
    assert chatctl(stack, "groups", "show", conv)["admins"] == []

    # a removed member shows with --all only
    chatctl(stack, "groups", "promote", conv, a_id)
    rid = unique("rm")
    a.send_json({"type": "remove_members", "req_id": rid,
                 "conversation_id": conv, "user_ids": [b_id]})
    assert answer(a, rid)["type"] == "group"
    assert [m["user_id"] for m in
            chatctl(stack, "groups", "members", conv)["members"]] == [a_id]
    everyone = chatctl(stack, "groups", "members", conv, "--all")["members"]
    assert {m["user_id"]: m["removed_seq"] is not None
            for m in everyone} == {a_id: False, b_id: True}

    # what is not there
    chatctl(stack, "groups", "show", "g:" + unique("no"), rc=3)
    chatctl(stack, "groups", "members", "g:" + unique("no"), rc=3)
    chatctl(stack, "groups", "promote", conv, b_id, rc=3)
    chatctl(stack, "groups", "promote", conv, unique("x"), rc=3)
    rc, _, _ = chatctl_text(stack, "groups", "promote", conv)
    assert rc == 2


# -- message ------------------------------------------------------------------

SECRET_BODY = "a secret that must go " + unique("s")


def test_message_show_and_redact(stack, clients):
    a_id, b_id = unique("ma"), unique("mb")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    a.send_json({"type": "send", "client_msg_id": "m1", "to": b_id,
                 "body": SECRET_BODY})
    ack = frame_of(a, lambda f: f.get("type") == "ack")
    conv, mid = ack["conversation_id"], ack["message_id"]
    frame_of(b, lambda f: f.get("type") == "message"
             and f.get("message_id") == mid)

    doc = chatctl(stack, "message", "show", mid)
    assert doc["message_id"] == mid and doc["conversation_id"] == conv
    assert doc["body"] == SECRET_BODY and doc["sender_id"] == a_id
    assert doc["seq"] == ack["seq"] and doc["kind"] == "text"
    assert doc["redacted"] is False and doc["redacted_at"] is None

    wait_indexed(stack, [mid])
    doc = chatctl(stack, "message", "redact", mid)
    assert doc["message_id"] == mid and doc["redacted"] is True
    assert doc["body"] == "" and doc["redacted_by"] == "ops.tester"
    # its search vector went with the text
    assert indexed(stack, [mid]) == 0
    assert stack.psql("SELECT body = '' AND redacted_at IS NOT NULL FROM"
                      " messages WHERE message_id = %s" % mid) == "t"
    assert stack.psql("SELECT count(*) FROM messages WHERE body LIKE '%%%s%%'"
                      % SECRET_BODY) == "0"

    # the members' devices are told, in the conversation's seq stream
    for x in (a, b):
        ev = system_event(x, conv, "message_redacted")
        assert ev["body"] == {"event": "message_redacted",
                              "message_id": mid, "by": "ops.tester",
                              "operator": True}, ev
        assert ev["seq"] == ack["seq"] + 1
    rid = unique("h")
    b.send_json({"type": "history", "req_id": rid, "conversation_id": conv})
    h = frame_of(b, lambda f: f.get("req_id") == rid)
    kept = [m for m in h["messages"] if m["message_id"] == mid]
    assert kept and kept[0]["body"] == "", h
    assert SECRET_BODY not in json.dumps(h)

    # again: nothing more happens
    doc = chatctl(stack, "message", "redact", mid)
    assert doc["redacted"] is True
    time.sleep(1)
    assert stack.psql("SELECT count(*) FROM messages WHERE conversation_id"
                      " = '%s' AND kind = 'system'" % conv) == "1"

    # what is not there, or not a text
    chatctl(stack, "message", "show", "999999999999", rc=3)
    chatctl(stack, "message", "redact", "999999999999", rc=3)
    ev_id = ev["message_id"]
    chatctl(stack, "message", "redact", ev_id, rc=3)
    rc, _, _ = chatctl_text(stack, "message", "show", "12x")
    assert rc == 2


# -- stats --------------------------------------------------------------------

def test_stats(stack, clients):
    users = [unique("st") for _ in range(3)]
    for u in users:
        clients.add(stack.connect(u))
    doc = chatctl(stack, "stats")
    pg, redis, kafka = doc["postgresql"], doc["redis"], doc["kafka"]
    assert pg["conversations"]["direct"] >= 1
    assert pg["conversations"]["group"] >= 1
    assert pg["messages"] >= 1 and pg["messages_exact"] is True
    assert pg["messages"] == int(stack.psql("SELECT count(*) FROM messages"))
    assert pg["revocations"] == int(stack.psql("SELECT count(*) FROM"
                                               " revocations"))
    assert redis["nodes"] >= 1
    assert redis["sessions"] >= 3 and redis["users_online"] >= 3
    parts = kafka["partitions"]
    assert len(parts) == int(stack.env["CHAT_PARTITIONS"])
    assert [p["partition"] for p in parts] == list(range(len(parts)))
    assert sum(p["high"] for p in parts) > 0
    assert kafka["lag"] == sum(p["lag"] for p in parts) >= 0
    assert kafka["group"] == "chat-workers"

    rc, out, _ = chatctl_text(stack, "stats")
    assert rc == 0 and "postgresql:" in out and "kafka:" in out

    # a part that is away: its error, and exit 1
    env = ctl_env(stack)
    env["CHAT_REDIS"] = "127.0.0.1:1"
    p = subprocess.run([stack.env["CHATCTL_BIN"], "stats", "--json"],
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 1
    assert "error" in json.loads(p.stdout)["redis"]


# -- the workers' log ---------------------------------------------------------

def test_worker_log_is_json_lines(stack):
    """Every line of every worker's log is one JSON object with a time, a
    level and an event; no message body or token ever shows."""
    logs = [os.path.join(stack.env["CHAT_LOG_DIR"], f)
            for f in sorted(os.listdir(stack.env["CHAT_LOG_DIR"]))
            if f.startswith("worker") and f.endswith(".log")]
    assert logs
    events = set()
    n = 0
    for path in logs:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                assert line.endswith("\n"), (path, number)
                obj = json.loads(line)
                assert isinstance(obj, dict), (path, number, line)
                assert obj["level"] in ("error", "warn", "info"), line
                assert obj["time"].endswith("Z") and "T" in obj["time"]
                assert isinstance(obj["event"], str) and obj["event"]
                assert isinstance(obj["pid"], int)
                events.add(obj["event"])
                assert SECRET_BODY not in line
                assert "eyJ" not in line, "a token in the log: " + line
                n += 1
    assert n > 0
    # what the tests above made the workers do is there
    assert {"starting", "revoked", "revoked_written", "operator_op",
            "stopping"} <= events, events


def test_revocation_reaches_every_server(stack):
    """A revocation closes the user's devices on each server of the stack,
    and each refuses the old tokens."""
    user = unique("r2")
    server = ExtraServer(stack, "rev2", free_ports(2)).start()
    conns = []
    try:
        here, here_tok = connect_fresh(stack, user, "here")
        tok = stack.token(user, "there", jti=unique("j"))
        there = wsclient.connect(server.url, token=tok, timeout=10)
        assert there.recv_json(10)["type"] == "hello"
        conns += [here, there]

        chatctl(stack, "revoke", user)
        assert closed_with(here) == 4003
        assert closed_with(there) == 4003

        refused_401(stack, here_tok)
        with pytest.raises(wsclient.HandshakeError) as ei:
            wsclient.connect(server.url, token=tok, timeout=10).abort()
        assert ei.value.status == 401, ei.value
    finally:
        for c in conns:
            c.abort()
        server.stop()
