"""Presence: online / away / offline with last seen, only to subscribers."""

import time

from chatlib import ExtraServer, befriend, unique, wait_for
from conftest import free_ports


def presence(c, user, timeout=10):
    return c.recv_until(lambda f: f.get("type") == "presence"
                        and f.get("user_id") == user, timeout,
                        what="presence of %s" % user)


def test_presence_lifecycle(stack, clients):
    w_id, a_id, never = unique("pw"), unique("pa"), unique("pn")
    w = clients.add(stack.connect(w_id))
    befriend(w, a_id)
    w.send_json({"type": "presence_subscribe", "req_id": "s",
                 "user_ids": [a_id, never]})
    assert presence(w, a_id) == {"type": "presence", "user_id": a_id,
                                 "status": "offline", "last_seen": None}
    assert presence(w, never)["last_seen"] is None

    a1 = stack.connect(a_id, "phone")
    assert presence(w, a_id)["status"] == "online"
    a2 = stack.connect(a_id, "laptop")      # a second device: no event

    a1.send_json({"type": "presence_set", "status": "away"})
    assert presence(w, a_id)["status"] == "away"
    a1.send_json({"type": "presence_set", "status": "online"})
    assert presence(w, a_id)["status"] == "online"

    a1.close()
    t0 = time.time() * 1000
    a2.close()
    off = presence(w, a_id)
    assert off["status"] == "offline", off
    assert isinstance(off["last_seen"], int), off
    assert abs(off["last_seen"] - t0) < 10000, off

    # a later subscriber gets the stored last_seen
    late = clients.add(stack.connect(unique("pl")))
    befriend(late, a_id)
    late.send_json({"type": "presence_subscribe", "req_id": 1,
                    "user_ids": [a_id]})
    assert presence(late, a_id) == off


def test_presence_only_to_subscribers(stack, clients):
    a_id = unique("pq")
    sub = clients.add(stack.connect(unique("ps")))
    other = clients.add(stack.connect(unique("po")))
    befriend(sub, a_id)
    befriend(other, a_id)
    sub.send_json({"type": "presence_subscribe", "req_id": 1,
                   "user_ids": [a_id]})
    presence(sub, a_id)
    sub.send_json({"type": "presence_unsubscribe", "req_id": 2,
                   "user_ids": [a_id]})
    sub.send_json({"type": "ping", "req_id": "sync-point"})
    sub.recv_until(lambda f: f.get("type") == "pong", 5, what="pong")

    a = clients.add(stack.connect(a_id))
    for c in (sub, other):
        c.send_json({"type": "ping", "req_id": "after"})
        f = c.recv_until(lambda f: f.get("type") in ("pong", "presence"), 5,
                         what="pong")
        assert f["type"] == "pong", "presence reached a non-subscriber: %r" \
            % f
    a.close()


def quiet(c, what):
    """Nothing about presence reaches c before the answer to a ping."""
    c.send_json({"type": "ping", "req_id": "quiet"})
    f = c.recv_until(lambda f: f.get("type") in ("pong", "presence"), 10,
                     what="pong")
    assert f["type"] == "pong", "%s: %r" % (what, f)


def test_presence_only_for_contacts(stack, clients):
    a_id = unique("pc")
    stranger_id = unique("pst")
    stranger = clients.add(stack.connect(stranger_id))
    friend = clients.add(stack.connect(unique("pfr")))
    befriend(friend, a_id)

    a = clients.add(stack.connect(a_id))
    for c in (stranger, friend):
        c.send_json({"type": "presence_subscribe", "req_id": 1,
                     "user_ids": [a_id]})
    assert presence(friend, a_id)["status"] == "online"
    # a stranger is told offline, never seen; and nothing follows
    assert presence(stranger, a_id) == {"type": "presence", "user_id": a_id,
                                        "status": "offline",
                                        "last_seen": None}
    a.send_json({"type": "presence_set", "status": "away"})
    assert presence(friend, a_id)["status"] == "away"
    quiet(stranger, "presence reached a stranger")

    # one's own presence is one's own to see
    stranger.send_json({"type": "presence_subscribe", "req_id": 2,
                        "user_ids": [stranger_id]})
    assert presence(stranger, stranger_id)["status"] == "online"


def test_presence_follows_group_membership(stack, clients):
    admin_id, member_id = unique("pga"), unique("pgm")
    admin = clients.add(stack.connect(admin_id))
    member = clients.add(stack.connect(member_id))
    admin.send_json({"type": "create_group", "req_id": "c", "name": "P",
                     "members": [member_id]})
    conv = admin.recv_until(lambda f: f.get("type") == "group", 15,
                            what="group")["conversation_id"]

    member.send_json({"type": "presence_subscribe", "req_id": 1,
                      "user_ids": [admin_id]})
    assert presence(member, admin_id)["status"] == "online"

    admin.send_json({"type": "remove_members", "req_id": "r",
                     "conversation_id": conv, "user_ids": [member_id]})
    admin.recv_until(lambda f: f.get("type") == "group", 15, what="group")
    member.recv_until(lambda f: f.get("type") == "message"
                      and f.get("kind") == "system", 15, what="removal")
    # no longer a contact: a new subscription finds the admin hidden
    member.send_json({"type": "presence_subscribe", "req_id": 2,
                      "user_ids": [admin_id]})
    assert presence(member, admin_id)["last_seen"] is None
    admin.send_json({"type": "presence_set", "status": "away"})
    quiet(member, "presence reached a removed member")


def block(c, req_id, other, op="block"):
    c.send_json({"type": op, "req_id": req_id, "user_id": other})
    return c.recv_until(lambda f: f.get("req_id") == req_id, 15,
                        what="%s answered" % op)


def test_blocked_user_sees_the_blocker_offline(stack, clients):
    a_id, b_id = unique("pbk"), unique("pbd")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    befriend(b, a_id)
    b.send_json({"type": "presence_subscribe", "req_id": 1,
                 "user_ids": [a_id]})
    assert presence(b, a_id)["status"] == "online"

    assert block(a, "k1", b_id)["type"] == "blocked"
    b.send_json({"type": "presence_subscribe", "req_id": 2,
                 "user_ids": [a_id]})
    assert presence(b, a_id) == {"type": "presence", "user_id": a_id,
                                 "status": "offline", "last_seen": None}
    a.send_json({"type": "presence_set", "status": "away"})
    quiet(b, "presence reached a blocked user")

    # the blocker still sees the one it blocks
    a.send_json({"type": "presence_subscribe", "req_id": 3,
                 "user_ids": [b_id]})
    assert presence(a, b_id)["status"] == "online"

    assert block(a, "k2", b_id, "unblock")["type"] == "blocked"
    b.send_json({"type": "presence_subscribe", "req_id": 4,
                 "user_ids": [a_id]})
    assert presence(b, a_id)["status"] == "away"


def test_contacts_written_again_after_redis_lost_them(stack, clients):
    a_id = unique("pfl")
    w = clients.add(stack.connect(unique("pfw")))
    befriend(w, a_id)
    a = clients.add(stack.connect(a_id))
    blocked_id = unique("pfb")
    blocked = clients.add(stack.connect(blocked_id))
    befriend(blocked, a_id)
    assert block(a, "k", blocked_id)["type"] == "blocked"
    stack.redis_cli("FLUSHALL")
    # a worker writes every membership again, then the mark
    wait_for(lambda: stack.redis_cli("EXISTS", "chat:convs").strip() == "1",
             20, what="the conversation sets whole again")
    wait_for(lambda: a_id in stack.redis_cli("KEYS", "chat:sess:*"), 15,
             what="sessions registered again")
    w.send_json({"type": "presence_subscribe", "req_id": 1,
                 "user_ids": [a_id]})
    assert presence(w, a_id)["status"] == "online"
    # the blocks are written again too
    blocked.send_json({"type": "presence_subscribe", "req_id": 1,
                       "user_ids": [a_id]})
    assert presence(blocked, a_id)["last_seen"] is None


def test_presence_shared_with_everyone_when_configured(stack, clients):
    def share(conf):
        return conf.replace("http {", "http {\n    chat_presence_share"
                            " everyone;", 1)

    a_id = unique("pev")
    srv = ExtraServer(stack, "s-everyone", free_ports(2), edit=share).start()
    try:
        stranger = clients.add(stack.connect(unique("pes"), url=srv.url))
        clients.add(stack.connect(a_id))
        stranger.send_json({"type": "presence_subscribe", "req_id": 1,
                            "user_ids": [a_id]})
        assert presence(stranger, a_id)["status"] == "online"
    finally:
        srv.stop()


def test_presence_bad_input(stack, clients):
    c = clients.add(stack.connect(unique("pb")))
    c.send_json({"type": "presence_set", "status": "busy", "req_id": 3})
    e = c.recv_until(lambda f: f.get("type") == "error", 5, what="error")
    assert e["code"] == "bad_request" and e["req_id"] == 3
    c.send_json({"type": "presence_subscribe", "req_id": 4,
                 "user_ids": ["u%d" % i for i in range(1001)]})
    e = c.recv_until(lambda f: f.get("type") == "error", 5, what="error")
    assert e["code"] == "too_large" and e["req_id"] == 4
    c.send_json({"type": "presence_subscribe", "req_id": 5,
                 "user_ids": "nope"})
    e = c.recv_until(lambda f: f.get("type") == "error", 5, what="error")
    assert e["code"] == "bad_request" and e["req_id"] == 5
