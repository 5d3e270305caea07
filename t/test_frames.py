"""WebSocket framing: fragments, control frames, UTF-8, sizes, close codes,
bad JSON frames, slow consumers."""

import json
import time
import warnings

import pytest

import wsclient
from wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT
from chatlib import Collector, close_all, dm_id, ping, unique, wait_for

MAX = 16384


def _closes_with(c, expected, what, timeout=10):
    try:
        code = c.expect_close(timeout)
    except TimeoutError:
        pytest.fail("%s: expected close %d, the connection stayed open"
                    % (what, expected))
    finally:
        c.abort()
    assert code == expected, "%s: expected close code %d, got %r%s" % (
        what, expected, code,
        " (connection dropped without a close frame)" if code is None else "")


def _wait_op(c, op, timeout=10):
    deadline = time.monotonic() + timeout
    others = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no %s frame within %ss; saw %r"
                               % (wsclient.OPCODE_NAMES.get(op, op), timeout,
                                  others[-5:]))
        o, p = c.recv_frame(remaining)
        if o == op:
            return p
        others.append((o, p[:80]))


def _ping_payload(req_id, size):
    """A JSON ping of exactly `size` bytes (padding field)."""
    base = json.dumps({"type": "ping", "req_id": req_id, "pad": ""},
                      separators=(",", ":"))
    pad = size - len(base)
    assert pad >= 0
    data = json.dumps({"type": "ping", "req_id": req_id, "pad": "x" * pad},
                      separators=(",", ":")).encode()
    assert len(data) == size
    return data


# -- fragmentation -----------------------------------------------------------

def test_fragmented_message_with_ping_between(stack):
    c = stack.connect(unique("frag"))
    try:
        data = json.dumps({"type": "ping", "req_id": "frag"}).encode()
        p1, p2, p3 = data[:7], data[7:19], data[19:]
        c.send_frame(OP_TEXT, p1, fin=False)
        c.send_frame(OP_CONT, p2, fin=False)
        c.send_frame(OP_PING, b"between")
        # the control frame is answered while the message is incomplete
        got = _wait_op(c, OP_PONG, 10)
        assert got == b"between", "pong payload %r" % got
        c.send_frame(OP_CONT, p3, fin=True)
        pong = c.recv_type("pong", 10)
        assert pong.get("req_id") == "frag", (
            "reassembled ping answered with %r" % pong)
        # still usable, and a non-fragmented message works afterwards
        ping(c, "after-frag")
    finally:
        c.close()


def test_frames_cut_across_reads_while_others_are_read(stack):
    """A frame that arrives in pieces keeps its state between reads, while
    other connections' whole frames are parsed in between (the parser of
    an idle connection is the process's, shared)."""
    a = stack.connect(unique("cut"))
    b = stack.connect(unique("cut"))
    try:
        whole = wsclient.build_frame(
            OP_TEXT, json.dumps({"type": "ping", "req_id": "cut"}).encode())
        fragment = wsclient.build_frame(OP_TEXT, b'{"type":"ping",',
                                        fin=False)
        last = wsclient.build_frame(OP_CONT, b'"req_id":"frag"}')
        # cut inside the 2-byte header, inside the mask, inside the payload
        for cut in (1, 2, 4, 6, 9, len(whole) - 1):
            a.send_raw(whole[:cut])
            time.sleep(0.05)
            b.send_json({"type": "ping", "req_id": "b%d" % cut})
            assert b.recv_type("pong", 10)["req_id"] == "b%d" % cut
            a.send_raw(whole[cut:])
            assert a.recv_type("pong", 10)["req_id"] == "cut", (
                "frame cut after %d bytes" % cut)
        # a message whose first fragment came in an earlier read
        a.send_raw(fragment)
        time.sleep(0.05)
        b.send_json({"type": "ping", "req_id": "b-frag"})
        assert b.recv_type("pong", 10)["req_id"] == "b-frag"
        a.send_raw(last[:3])
        time.sleep(0.05)
        a.send_raw(last[3:])
        assert a.recv_type("pong", 10)["req_id"] == "frag"
        ping(a, "after-cuts")
    finally:
        a.close()
        b.close()


def test_many_small_fragments(stack):
    c = stack.connect(unique("frag"))
    try:
        data = _ping_payload("many", 3000)
        chunks = [data[i:i + 10] for i in range(0, len(data), 10)]
        for i, ch in enumerate(chunks):
            c.send_frame(OP_TEXT if i == 0 else OP_CONT, ch,
                         fin=(i == len(chunks) - 1))
        assert c.recv_type("pong", 10)["req_id"] == "many"
    finally:
        c.close()


def test_valid_utf8_split_across_fragments(stack):
    c = stack.connect(unique("u8"))
    try:
        # "\u20ac" (E2 82 AC) split after its second byte
        c.send_frame(OP_TEXT, b'{"type":"ping","req_id":"\xe2\x82', fin=False)
        c.send_frame(OP_CONT, b'\xac"}', fin=True)
        pong = c.recv_type("pong", 10)
        assert pong.get("req_id") == "\u20ac", pong
    finally:
        c.close()


def test_7bit_and_16bit_length_forms(stack):
    c = stack.connect(unique("len"))
    try:
        for rid, size in (("l7", 60), ("l125", 125), ("l126", 126),
                          ("l16", 300), ("l16b", 65535 if MAX >= 65535
                                         else MAX - 1)):
            c.send_frame(OP_TEXT, _ping_payload(rid, size))
            assert c.recv_type("pong", 10)["req_id"] == rid, rid
    finally:
        c.close()


# -- UTF-8 -------------------------------------------------------------------

INVALID_UTF8 = {
    "ff_byte": b'{"type":"ping","req_id":"\xff"}',
    "overlong": b'{"type":"ping","req_id":"\xc0\xaf"}',
    "surrogate": b'{"type":"ping","req_id":"\xed\xa0\x80"}',
    "above_10ffff": b'{"type":"ping","req_id":"\xf4\x90\x80\x80"}',
    "truncated_sequence": b'{"type":"ping","req_id":"\xe2\x82"}',
    "ends_mid_sequence": b'{"type":"ping","req_id":"a"}\xe2\x82',
}


@pytest.mark.parametrize("kind", sorted(INVALID_UTF8))
def test_invalid_utf8_closes_1007(stack, kind):
    c = stack.connect(unique("bad8"))
    c.send_frame(OP_TEXT, INVALID_UTF8[kind])
    _closes_with(c, 1007, "invalid UTF-8 (%s)" % kind)


def test_invalid_utf8_split_across_fragments_closes_1007(stack):
    c = stack.connect(unique("bad8"))
    # E2 82 is a valid start; 28 is not a continuation byte
    c.send_frame(OP_TEXT, b'{"type":"ping","req_id":"\xe2\x82', fin=False)
    c.send_frame(OP_CONT, b'\x28"}', fin=True)
    _closes_with(c, 1007, "UTF-8 invalid across fragments")


def test_message_ending_inside_utf8_sequence_across_fragments(stack):
    c = stack.connect(unique("bad8"))
    c.send_frame(OP_TEXT, b'{"type":"ping","req_id":"x"}', fin=False)
    c.send_frame(OP_CONT, b'\xf0\x9f', fin=True)
    _closes_with(c, 1007, "message ends inside a UTF-8 sequence")


# -- binary, protocol violations ---------------------------------------------

def test_binary_frame_closes_1003(stack):
    c = stack.connect(unique("bin"))
    c.send_frame(OP_BINARY, b'{"type":"ping"}')
    _closes_with(c, 1003, "binary frame")


def test_unmasked_frame_closes_1002(stack):
    c = stack.connect(unique("unm"))
    c.send_frame(OP_TEXT, b'{"type":"ping","req_id":"u"}', mask=False)
    _closes_with(c, 1002, "unmasked client frame")


VIOLATIONS = {
    "rsv1_set": [(OP_TEXT, b'{"type":"ping"}', True, 4)],
    "rsv3_set": [(OP_TEXT, b'{"type":"ping"}', True, 1)],
    "reserved_data_opcode_3": [(0x3, b"x", True, 0)],
    "reserved_control_opcode_b": [(0xB, b"x", True, 0)],
    "continuation_without_start": [(OP_CONT, b'{"type":"ping"}', True, 0)],
    "text_inside_fragmented_message": [(OP_TEXT, b'{"type":', False, 0),
                                       (OP_TEXT, b'"ping"}', True, 0)],
    "fragmented_ping": [(OP_PING, b"abc", False, 0)],
    "ping_payload_126_bytes": [(OP_PING, b"p" * 126, True, 0)],
    "close_with_one_byte_payload": [(OP_CLOSE, b"\x03", True, 0)],
}


@pytest.mark.parametrize("kind", sorted(VIOLATIONS))
def test_protocol_violation_closes_1002(stack, kind):
    c = stack.connect(unique("viol"))
    for op, payload, fin, rsv in VIOLATIONS[kind]:
        c.send_frame(op, payload, fin=fin, rsv=rsv)
    if kind.startswith("close"):
        c.close_sent = False   # we still want to see the server's answer
    _closes_with(c, 1002, kind)


# -- sizes -------------------------------------------------------------------

def test_message_of_exactly_max_bytes_accepted(stack):
    c = stack.connect(unique("max"))
    try:
        assert c.hello["max_message_bytes"] == MAX
        c.send_frame(OP_TEXT, _ping_payload("exact", MAX))
        pong = c.recv_type("pong", 10)
        assert pong.get("req_id") == "exact"
    finally:
        c.close()


def test_fragmented_message_of_exactly_max_bytes_accepted(stack):
    c = stack.connect(unique("max"))
    try:
        data = _ping_payload("exact-frag", MAX)
        q = len(data) // 4
        parts = [data[:q], data[q:2 * q], data[2 * q:3 * q], data[3 * q:]]
        for i, p in enumerate(parts):
            c.send_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == 3))
        assert c.recv_type("pong", 10).get("req_id") == "exact-frag"
    finally:
        c.close()


def test_message_one_byte_over_closes_1009(stack):
    c = stack.connect(unique("over"))
    c.send_frame(OP_TEXT, _ping_payload("over", MAX + 1))
    _closes_with(c, 1009, "message of max+1 bytes")


def test_fragmented_message_one_byte_over_closes_1009(stack):
    c = stack.connect(unique("over"))
    data = _ping_payload("overfrag", MAX + 1)
    c.send_frame(OP_TEXT, data[:MAX // 2], fin=False)
    try:
        c.send_frame(OP_CONT, data[MAX // 2:], fin=True)
    except OSError:
        pass
    _closes_with(c, 1009, "fragments adding up to max+1 bytes")


def test_huge_announced_length_closes_1009_without_payload(stack):
    c = stack.connect(unique("huge"))
    # announce 1 TiB, send only a few bytes: the server must not wait for it
    c.send_raw(wsclient.build_frame(OP_TEXT, b'{"type":', length=1 << 40))
    _closes_with(c, 1009, "frame announcing 2^40 bytes")


# -- bad application frames keep the connection ------------------------------

def _bad_frames(user, peer):
    conv = dm_id(user, peer)
    return {
        "bad_json": ("{not json", {}),
        "json_array": ("[1,2,3]", {}),
        "json_string": ('"ping"', {}),
        "no_type": ('{"req_id":"nt1"}', {"req_id": "nt1"}),
        "unknown_type": (json.dumps({"type": "frobnicate", "req_id": "u1"}),
                         {"req_id": "u1"}),
        "send_missing_body": (json.dumps({"type": "send",
                                          "client_msg_id": "m1",
                                          "to": peer}),
                              {"client_msg_id": "m1"}),
        "send_body_not_string": (json.dumps({"type": "send",
                                             "client_msg_id": "m2",
                                             "to": peer, "body": 5}),
                                 {"client_msg_id": "m2"}),
        "send_empty_body": (json.dumps({"type": "send", "client_msg_id": "m3",
                                        "to": peer, "body": ""}),
                            {"client_msg_id": "m3"}),
        "send_without_target": (json.dumps({"type": "send",
                                            "client_msg_id": "m4",
                                            "body": "x"}),
                                {"client_msg_id": "m4"}),
        "send_cmid_too_long": (json.dumps({"type": "send",
                                           "client_msg_id": "c" * 65,
                                           "to": peer, "body": "x"}),
                               {"client_msg_id": "c" * 65}),
        "send_cmid_not_string": (json.dumps({"type": "send",
                                             "client_msg_id": ["x"],
                                             "to": peer, "body": "x"}), {}),
        "history_limit_string": (json.dumps({"type": "history",
                                             "req_id": "h1",
                                             "conversation_id": conv,
                                             "limit": "10"}),
                                 {"req_id": "h1"}),
        "history_before_and_after": (json.dumps({"type": "history",
                                                 "req_id": "h2",
                                                 "conversation_id": conv,
                                                 "before_seq": 5,
                                                 "after_seq": 1}),
                                     {"req_id": "h2"}),
        "history_missing_conversation": (json.dumps({"type": "history",
                                                     "req_id": "h3"}),
                                         {"req_id": "h3"}),
        "type_not_string": (json.dumps({"type": 7, "req_id": "t7"}),
                            {"req_id": "t7"}),
    }


BAD_FRAME_KINDS = sorted(_bad_frames("x", "y"))
# a field over its own limit may say too_large (PROTOCOL.md, error codes)
CODES = {"send_cmid_too_long": ("bad_request", "too_large")}


@pytest.mark.parametrize("kind", BAD_FRAME_KINDS)
def test_bad_frame_gets_error_and_connection_survives(stack, kind):
    user = unique("badf")
    peer = unique("peer")
    text, tags = _bad_frames(user, peer)[kind]
    codes = CODES.get(kind, ("bad_request",))
    c = stack.connect(user)
    try:
        c.send_text(text)
        err = c.recv_until(lambda o: o.get("type") in ("error", "ack",
                                                       "history", "pong"),
                           10, what="error answering %s" % kind)
        assert err["type"] == "error", "%s answered with %r" % (kind, err)
        assert err.get("code") in codes, (
            "%s: error code %r, expected %s: %r"
            % (kind, err.get("code"), " or ".join(codes), err))
        assert isinstance(err.get("message"), str), (
            "error needs a human readable message: %r" % err)
        for k, v in tags.items():
            assert err.get(k) == v, "%s: error must echo %s=%r: %r" % (
                kind, k, v, err)
        assert ping(c, "still-alive")["type"] == "pong"
    finally:
        c.close()


# -- slow consumer -------------------------------------------------------------

def test_client_that_stops_reading_is_closed_4009(stack):
    """A device that reads nothing while a lot is sent to it is closed with
    4009 once its output exceeds chat_send_buffer (256k)."""
    slow_user = unique("slow")
    sender = unique("flood")
    slow = stack.connect(slow_user, "slow", rcvbuf=4096)
    a = stack.connect(sender, "a")
    col = Collector(a, "flood-acks").start()
    n, size = 160, 8000
    body = "b" * size
    try:
        for i in range(n):
            a.send_json({"type": "send", "client_msg_id": "f%d" % i,
                         "to": slow_user, "body": body})
        done = col.wait(lambda fs: sum(1 for f in fs
                                       if f.get("type") in ("ack", "error"))
                        >= n, 90)
        answers = col.snapshot()
        errors = [f for f in answers if f.get("type") == "error"]
        assert done, "only %d of %d sends answered (errors %r)" % (
            len([f for f in answers if f.get("type") == "ack"]), n,
            errors[:3])
        assert not errors, "sends failed: %r" % errors[:3]
        time.sleep(2)
        # now read what the slow device got
        got_close = None
        problem = None
        try:
            got_close = slow.expect_close(60)
        except wsclient.ProtocolViolation as e:
            problem = "stream broken: %s" % e
        except TimeoutError:
            problem = "still open after reading everything"
        frames = getattr(slow, "frames_before_close", 0)
        if problem:
            pytest.fail("slow consumer: %s (read %d data frames of %d "
                        "messages of %d bytes)" % (problem, frames, n, size))
        if got_close is None:
            assert frames < n, (
                "the connection ended without close frame only after all "
                "%d messages were delivered: no send-buffer bound" % n)
            # the issue accepts a drop as the minimum; say so loudly
            warnings.warn("slow consumer was dropped without a close frame "
                          "(read %d of %d messages first); 4009 expected"
                          % (frames, n))
            return
        assert got_close == 4009, (
            "slow consumer closed with %r after %d of %d messages, "
            "expected 4009" % (got_close, frames, n))
        assert frames < n, "all %d messages arrived, yet closed 4009" % n
        wait_for(lambda: "slow" not in stack.sessions(slow_user), 10,
                 what="slow session removed from Redis")
    finally:
        col.stop()
        slow.abort()
        close_all(a)
