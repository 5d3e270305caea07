"""Per-connection limits: the frame rate token bucket (chat_rate,
chat_burst, chat_rate_strikes at their defaults 200/s, 1000, 20)."""

import time

from chatlib import unique


def test_rate_limited_then_closed_4008(stack, clients):
    flood = clients.add(stack.connect(unique("flood")))
    calm = clients.add(stack.connect(unique("calm")))

    # far over the burst, without waiting for any answer
    for i in range(1400):
        flood.send_json({"type": "ping", "req_id": i})

    pongs, limited, code = 0, [], None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            f = flood.recv_json(5)
        except Exception as e:          # the close ends the stream
            code = getattr(e, "code", None)
            break
        if f.get("type") == "pong":
            pongs += 1
        elif f.get("type") == "error":
            assert f["code"] == "rate_limited", f
            assert isinstance(f.get("retry_after_ms"), int), f
            assert f["retry_after_ms"] >= 1, f
            assert "req_id" in f, "rate_limited is tagged: %r" % f
            limited.append(f)

    assert pongs >= 1000, "the burst passes: %d pongs" % pongs
    assert limited, "frames over the bucket get rate_limited"
    assert code == 4008, "a client that ignores rate_limited is closed " \
        "with 4008, got %r after %d pongs, %d rate_limited" % (
            code, pongs, len(limited))

    # everyone else is still served
    calm.send_json({"type": "ping", "req_id": "still"})
    assert calm.recv_json(5) == {"type": "pong", "req_id": "still"}


def test_rate_limited_client_that_waits_is_served(stack, clients):
    c = clients.add(stack.connect(unique("patient")))
    for i in range(1015):
        c.send_json({"type": "ping", "req_id": i})
    retry, answered = None, 0
    while answered < 1015:
        f = c.recv_json(10)
        answered += 1
        if f.get("type") == "error":
            assert f["code"] == "rate_limited", f
            retry = f["retry_after_ms"]
    assert retry is not None, "1015 frames at once pass a burst of 1000?"
    time.sleep(retry / 1000.0 + 0.05)
    c.send_json({"type": "ping", "req_id": "after"})
    assert c.recv_json(5) == {"type": "pong", "req_id": "after"}


def _raw(stack):
    import socket
    s = socket.create_connection(("127.0.0.1", int(stack.env["CHAT_PORT"])),
                                 timeout=20)
    return s


def test_handshake_timeout(stack):
    """A client that never completes its upgrade request is dropped
    (client_header_timeout 10s in conf/nginx.conf.in)."""
    s = _raw(stack)
    try:
        s.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        data = s.recv(4096)
        waited = time.monotonic() - t0
    finally:
        s.close()
    assert waited < 15, "still open after %.1f s" % waited
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80]


def test_oversized_headers_refused(stack):
    """Request headers beyond large_client_header_buffers get 400, and no
    session is made."""
    s = _raw(stack)
    try:
        s.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000
                  + b"\r\n\r\n")
        data = s.recv(4096)
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 400"), data[:80]


def test_too_many_fragments_closes_1009(stack, clients):
    """chat_max_frames (message limit / 16 = 1024 for /chat): a message in
    more fragments than that is refused even when they are empty."""
    c = stack.connect(unique("frag"))
    c.send_frame(1, b"{", fin=False)
    for _ in range(1100):
        c.send_frame(0, b"", fin=False)
    assert c.expect_close(10) == 1009


def test_fragments_under_the_limit_pass(stack, clients):
    c = clients.add(stack.connect(unique("frag")))
    text = b'{"type":"ping","req_id":"f"}'
    for i, byte in enumerate(text):
        c.send_frame(1 if i == 0 else 0, bytes([byte]),
                     fin=(i == len(text) - 1))
    assert c.recv_json(5) == {"type": "pong", "req_id": "f"}
