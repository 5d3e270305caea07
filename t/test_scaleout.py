"""Scale-out: a second nginx server (its own chat_server_id) on the same
Redis and Kafka just works: deliveries cross servers, one device's newer
connection on one server replaces its older one on the other (4001), and
presence crosses servers too."""

import pytest

from chatlib import (ExtraServer, befriend, dm_id, expect_ack, expect_message,
                     send_msg, unique)
from conftest import free_ports


@pytest.fixture(scope="module")
def second_server(stack):
    server = ExtraServer(stack, "s2", free_ports(2)).start()
    yield server.url
    server.stop()


def test_delivery_across_servers(stack, clients, second_server):
    a_id, b_id = unique("x1"), unique("x2")
    a = clients.add(stack.connect(a_id, "p"))
    b = clients.add(stack.connect(b_id, "p", url=second_server))
    b2 = clients.add(stack.connect(b_id, "t"))
    assert a.hello["server_id"] != b.hello["server_id"]

    send_msg(a, "c1", "from s1", to=b_id)
    ack = expect_ack(a, "c1")
    for dev in (b, b2):
        m = expect_message(dev, "c1")
        assert m["seq"] == ack["seq"]
        assert m["conversation_id"] == dm_id(a_id, b_id)

    send_msg(b, "c2", "from s2", to=a_id)
    expect_ack(b, "c2")
    expect_message(a, "c2")
    expect_message(b2, "c2")


def test_replaced_across_servers(stack, clients, second_server):
    u = unique("x3")
    old = clients.add(stack.connect(u, "phone"))
    clients.add(stack.connect(u, "phone", url=second_server))
    assert old.expect_close(10) == 4001


def test_presence_across_servers(stack, clients, second_server):
    u = unique("x4")
    w = clients.add(stack.connect(unique("x5"), url=second_server))
    befriend(w, u)
    w.send_json({"type": "presence_subscribe", "req_id": 1,
                 "user_ids": [u]})
    f = w.recv_until(lambda f: f.get("type") == "presence", 10,
                     what="presence")
    assert f["status"] == "offline"
    clients.add(stack.connect(u))
    f = w.recv_until(lambda f: f.get("type") == "presence", 10,
                     what="presence")
    assert f["status"] == "online"
