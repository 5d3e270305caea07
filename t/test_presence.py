"""Presence: online / away / offline with last seen, only to subscribers."""

import time

from chatlib import unique


def presence(c, user, timeout=10):
    return c.recv_until(lambda f: f.get("type") == "presence"
                        and f.get("user_id") == user, timeout,
                        what="presence of %s" % user)


def test_presence_lifecycle(stack, clients):
    w_id, a_id, never = unique("pw"), unique("pa"), unique("pn")
    w = clients.add(stack.connect(w_id))
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
    late.send_json({"type": "presence_subscribe", "req_id": 1,
                    "user_ids": [a_id]})
    assert presence(late, a_id) == off


def test_presence_only_to_subscribers(stack, clients):
    a_id = unique("pq")
    sub = clients.add(stack.connect(unique("ps")))
    other = clients.add(stack.connect(unique("po")))
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
