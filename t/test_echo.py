"""The chat_echo location (/echo in conf/nginx.conf.in): the same
handshake checks, frame layer and limits as /chat, no token, no backend;
and frames that arrive in the same packet as the upgrade request."""

import base64
import json
import os
import socket

import pytest

import wsclient


def echo_url(stack):
    return stack.url.replace("/chat", "/echo")


def test_text_and_binary_echoed(stack):
    c = wsclient.connect(echo_url(stack))
    try:
        c.send_text("hello")
        assert c.recv_frame(5) == (1, b"hello")
        blob = os.urandom(65536)
        c.send_frame(2, blob)
        assert c.recv_frame(10) == (2, blob)
        big = "é" * 32768                       # 64 KiB of UTF-8
        c.send_text(big)
        op, data = c.recv_frame(10)
        assert op == 1 and data.decode() == big
    finally:
        c.close()


def test_fragments_with_pings_reassembled(stack):
    c = wsclient.connect(echo_url(stack))
    try:
        c.send_frame(1, b"ab", fin=False)
        c.send_frame(9, b"p1")
        c.send_frame(0, b"cd", fin=False)
        c.send_frame(9, b"p2")
        c.send_frame(0, b"ef", fin=True)
        frames = [c.recv_frame(5) for _ in range(3)]
        assert frames == [(10, b"p1"), (10, b"p2"), (1, b"abcdef")], frames
    finally:
        c.close()


def test_invalid_utf8_closes_1007(stack):
    c = wsclient.connect(echo_url(stack))
    c.send_frame(1, b"ok \xc3", fin=False)
    c.send_frame(0, b"\x28", fin=True)
    assert c.expect_close(5) == 1007


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
def test_close_code_echoed(stack, code):
    c = wsclient.connect(echo_url(stack))
    c.send_close(code, b"bye")
    assert c.expect_close(5) == code


def test_no_token_needed_and_no_hello(stack):
    c = wsclient.connect(echo_url(stack))
    try:
        c.send_text("first")
        assert c.recv_frame(5) == (1, b"first")
    finally:
        c.close()


def _upgrade_request(path, token=None):
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: x", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
             "Sec-WebSocket-Version: 13"]
    if token:
        lines.append("Authorization: Bearer " + token)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_until_frames(sock, n_frames):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "closed during the handshake"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    frames = []
    while len(frames) < n_frames:
        while True:
            if len(rest) >= 2:
                n = rest[1] & 0x7F
                off = 2
                if n == 126:
                    n = int.from_bytes(rest[2:4], "big") if len(rest) >= 4 \
                        else None
                    off = 4
                if n is not None and len(rest) >= off + n:
                    frames.append((rest[0] & 0x0F, rest[off:off + n]))
                    rest = rest[off + n:]
                    break
            chunk = sock.recv(65536)
            assert chunk, "closed before %d frames" % n_frames
            rest += chunk
    return frames


def test_frames_sent_with_the_handshake_are_not_lost(stack):
    """The first frames in the very packet of the upgrade request."""
    s = socket.create_connection(("127.0.0.1", int(stack.env["CHAT_PORT"])),
                                 timeout=10)
    try:
        token = stack.token("early", "p")
        ping = wsclient.build_frame(1, json.dumps(
            {"type": "ping", "req_id": "early"}).encode())
        wsping = wsclient.build_frame(9, b"hi")
        s.sendall(_upgrade_request("/chat", token) + ping + wsping)
        frames = _read_until_frames(s, 3)
        assert json.loads(frames[0][1])["type"] == "hello"
        rest = sorted(frames[1:])
        assert (1, b'{"type":"pong","req_id":"early"}') in rest, rest
        assert (10, b"hi") in rest, rest
    finally:
        s.close()
