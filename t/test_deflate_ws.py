"""WebSocket compression (permessage-deflate, RFC 7692) against the real
stack: the /chat-z and /echo-z* locations of conf/nginx.conf.in say
`chat_deflate on`, /chat and /echo do not.

A real client library that speaks the extension does the round trips:
Python's `websockets` from PyPI, pinned, installed when missing into
$CHAT_CACHE/python (default ~/.cache/ngx_chat/python), outside the clone
and outside any site-packages. What a library never sends (RSV1 on a
continuation, fragments with pings between them, exact offers, several
extension headers) goes through t/wsclient.py, which inflates the server's
compressed frames and says what came on the wire.
"""

import importlib
import os
import socket
import subprocess
import sys
import time
import zlib

import pytest

import wsclient
from chatlib import unique

WEBSOCKETS_VERSION = "13.1"
CACHE = os.environ.get("CHAT_CACHE") or os.path.join(
    os.environ.get("HOME") or "/root", ".cache", "ngx_chat")
WEBSOCKETS_DIR = os.path.join(CACHE, "python",
                              "websockets-" + WEBSOCKETS_VERSION)

LIMIT = 16384           # chat_max_message_bytes of /chat-z and /echo-z
MIN_SIZE = 64           # chat_deflate_min_size's default
OFFER = "permessage-deflate; client_max_window_bits"
TAIL = b"\x00\x00\xff\xff"


# -- the library -------------------------------------------------------------

def _import_websockets():
    if WEBSOCKETS_DIR not in sys.path:
        sys.path.insert(0, WEBSOCKETS_DIR)
    for name in [m for m in sys.modules if m.split(".")[0] == "websockets"]:
        del sys.modules[name]
    importlib.invalidate_caches()
    try:
        mod = importlib.import_module("websockets")
    except ImportError:
        return None
    return mod if mod.__version__ == WEBSOCKETS_VERSION else None


def _pip_install():
    """pip of this interpreter, else of python3 on PATH (the wheel is for
    CPython 3.11 either way), else Debian's python3-pip first."""
    cmd = ["install", "--disable-pip-version-check", "-q", "--no-deps",
           "--target", WEBSOCKETS_DIR, "websockets==" + WEBSOCKETS_VERSION]
    tried = []
    for py in (sys.executable, "python3", "/usr/bin/python3"):
        p = subprocess.run([py, "-m", "pip"] + cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=300)
        if p.returncode == 0:
            return
        tried.append("%s: %s" % (py, p.stdout.decode(errors="replace")[-500:]))
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "apt-get"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(apt + ["update", "-q"], env=env, check=True, timeout=600,
                   stdout=subprocess.DEVNULL)
    subprocess.run(apt + ["install", "-y", "-q", "--no-install-recommends",
                          "python3-pip"], env=env, check=True, timeout=600,
                   stdout=subprocess.DEVNULL)
    p = subprocess.run(["/usr/bin/python3", "-m", "pip"] + cmd,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=300)
    assert p.returncode == 0, "pip install websockets failed:\n%s\n%s" % (
        "\n".join(tried), p.stdout.decode(errors="replace")[-2000:])


@pytest.fixture(scope="module")
def ws():
    """websockets (pinned), installed into the cache when missing."""
    mod = _import_websockets()
    if mod is None:
        sys.stderr.write("test_deflate_ws: installing websockets %s into %s\n"
                         % (WEBSOCKETS_VERSION, WEBSOCKETS_DIR))
        os.makedirs(WEBSOCKETS_DIR, exist_ok=True)
        _pip_install()
        mod = _import_websockets()
    assert mod is not None, "websockets %s is not in %s" % (
        WEBSOCKETS_VERSION, WEBSOCKETS_DIR)
    importlib.import_module("websockets.sync.client")
    importlib.import_module("websockets.extensions.permessage_deflate")
    return mod


def lib_connect(ws, url, token=None, server_max_window_bits=None,
                compression="deflate", **kw):
    headers = {"Authorization": "Bearer " + token} if token else None
    extensions = None
    if server_max_window_bits is not None:
        pmd = ws.extensions.permessage_deflate
        extensions = [pmd.ClientPerMessageDeflateFactory(
            server_max_window_bits=server_max_window_bits,
            client_max_window_bits=True)]
        compression = None
    return ws.sync.client.connect(url, additional_headers=headers,
                                  extensions=extensions,
                                  compression=compression, open_timeout=10,
                                  close_timeout=5, max_size=4 << 20, **kw)


def lib_extensions(c):
    return c.response.headers.get("Sec-WebSocket-Extensions")


def lib_recv_json(c, timeout=10.0):
    import json
    return json.loads(c.recv(timeout=timeout))


def lib_recv_until(c, pred, timeout=15.0, what="frame"):
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no %s in %r" % (what, seen[-5:]))
        try:
            f = lib_recv_json(c, left)
        except TimeoutError:
            raise AssertionError("no %s in %r" % (what, seen[-5:])) from None
        if pred(f):
            return f
        seen.append(f)


def lib_close_code(ws, c, timeout=10.0):
    """Reads until the server closes; its close code."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            c.recv(timeout=max(0.1, deadline - time.monotonic()))
    except ws.exceptions.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd is not None else None
    raise AssertionError("the server did not close")


# -- raw frames --------------------------------------------------------------

def compress(data, bits=15, level=6):
    """A message payload as a client compresses it: raw DEFLATE, the sync
    flush's tail removed."""
    z = zlib.compressobj(level, zlib.DEFLATED, -bits)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def url_of(stack, path):
    return stack.url.rsplit("/chat", 1)[0] + path


def raw_connect(stack, path, offer=OFFER, **kw):
    headers = {"Sec-WebSocket-Extensions": offer} if offer else None
    return wsclient.connect(url_of(stack, path), headers=headers, **kw)


def raw_handshake(stack, path, header_lines):
    """A handshake with header lines as given (several of one name too):
    the status line and the headers of the answer."""
    port = int(stack.url.split(":")[2].split("/")[0])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n%s\r\n"
               % (path, port, "".join(h + "\r\n" for h in header_lines)))
        s.sendall(req.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], headers


# -- negotiation -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/echo-z", "/chat-z"])
def test_negotiated_without_client_context_by_default(stack, ws, path):
    token = stack.token(unique("z"))
    with lib_connect(ws, url_of(stack, path), token=token) as c:
        ext = lib_extensions(c)
        assert ext is not None, "no extension in the 101"
        params = [p.strip() for p in ext.split(";")]
        assert params[0] == "permessage-deflate", ext
        assert "server_no_context_takeover" in params, ext
        assert "client_no_context_takeover" in params, ext
        if path == "/chat-z":
            assert lib_recv_json(c)["type"] == "hello"


def test_client_context_takeover_when_allowed(stack, ws):
    """/echo-z-takeover leaves the client its context: the library then
    compresses each message against the ones before, and the server keeps
    one inflate stream for the connection."""
    with lib_connect(ws, url_of(stack, "/echo-z-takeover")) as c:
        ext = lib_extensions(c)
        assert ext and "client_no_context_takeover" not in ext, ext
        assert "server_no_context_takeover" in ext, ext
        for i in range(20):
            m = '{"type":"send","body":"the same words again, %d"}' % i
            c.send(m * 3)
            assert c.recv(timeout=10) == m * 3


def test_small_windows(stack, ws):
    """/echo-z-9: 9-bit windows both ways; an offer that leaves the client
    a 15-bit window is declined."""
    with lib_connect(ws, url_of(stack, "/echo-z-9")) as c:
        ext = lib_extensions(c)
        assert ext and "client_max_window_bits=9" in ext, ext
        big = ("%06d lorem ipsum dolor sit amet " % 1) * 400
        c.send(big)
        assert c.recv(timeout=10) == big
    c = raw_connect(stack, "/echo-z-9", offer="permessage-deflate")
    try:
        assert c.headers.get("Sec-WebSocket-Extensions") is None
    finally:
        c.close()


def test_declined_offer_answered_without_extension(stack):
    """server_max_window_bits=8 is refused: the 101 has no extension and
    RSV1 is then a protocol error; the next acceptable offer is taken."""
    c = raw_connect(stack, "/echo-z",
                    offer="permessage-deflate; server_max_window_bits=8")
    try:
        assert c.headers.get("Sec-WebSocket-Extensions") is None
        c.send_frame(wsclient.OP_TEXT, compress(b"hello"), rsv=4)
        assert c.expect_close(5) == 1002
    finally:
        c.abort()

    c = raw_connect(stack, "/echo-z",
                    offer="permessage-deflate; server_max_window_bits=8, "
                          "permessage-deflate; server_max_window_bits=10")
    try:
        ext = c.headers.get("Sec-WebSocket-Extensions")
        assert ext and "server_max_window_bits=10" in ext, ext
    finally:
        c.close()


def test_offers_from_every_header(stack):
    status, h = raw_handshake(stack, "/echo-z", [
        "Sec-WebSocket-Extensions: x-webkit-deflate-frame",
        "Sec-WebSocket-Extensions: permessage-deflate; "
        "server_max_window_bits=8",
        "Sec-WebSocket-Extensions: permessage-deflate; "
        "server_max_window_bits=12; client_max_window_bits"])
    assert status.startswith("HTTP/1.1 101"), status
    ext = h.get("sec-websocket-extensions")
    assert ext and len(ext) == 1, h
    assert "server_max_window_bits=12" in ext[0], ext
    assert "client_max_window_bits=15" in ext[0], ext

    status, h = raw_handshake(stack, "/echo-z", [
        "Sec-WebSocket-Extensions: permessage-deflate; foo=1",
        "Sec-WebSocket-Extensions: permessage-deflate; "
        "client_max_window_bits=16"])
    assert status.startswith("HTTP/1.1 101"), status
    assert "sec-websocket-extensions" not in h, h


@pytest.mark.parametrize("path", ["/echo", "/chat"])
def test_compression_off_where_not_configured(stack, ws, path):
    """No chat_deflate: the offer is ignored and everything works
    uncompressed; RSV1 stays a protocol error."""
    user = unique("off")
    token = stack.token(user)
    with lib_connect(ws, url_of(stack, path), token=token) as c:
        assert lib_extensions(c) is None
        if path == "/chat":
            assert lib_recv_json(c)["type"] == "hello"
            c.send('{"type":"ping","req_id":"p1"}')
            f = lib_recv_until(c, lambda o: o.get("req_id") == "p1")
            assert f["type"] == "pong", f
        else:
            c.send("x" * 5000)
            assert c.recv(timeout=10) == "x" * 5000
    c = raw_connect(stack, "/echo")
    try:
        assert c.headers.get("Sec-WebSocket-Extensions") is None
        c.send_frame(wsclient.OP_TEXT, compress(b"x" * 100), rsv=4)
        assert c.expect_close(5) == 1002
    finally:
        c.abort()


# -- messages ----------------------------------------------------------------

def test_echo_round_trips(stack, ws):
    with lib_connect(ws, url_of(stack, "/echo-z")) as c:
        assert lib_extensions(c)
        for m in ["", "hi", "x" * 63, "x" * 64, "é" * 4000,
                  bytes(range(256)) * 20, os.urandom(3000)]:
            c.send(m)
            assert c.recv(timeout=10) == m


def test_server_compresses_what_is_long_enough(stack):
    c = raw_connect(stack, "/echo-z")
    try:
        long_text = ('{"type":"message","body":"%s"}' % ("hello " * 50))
        c.send_text(long_text)
        op, data = c.recv_frame(5)
        assert (op, data.decode()) == (wsclient.OP_TEXT, long_text)
        assert c.last_rsv == 4, "not compressed"
        assert c.last_wire_len < len(long_text) // 2, c.last_wire_len

        c.send_text("short")
        assert c.recv_frame(5) == (wsclient.OP_TEXT, b"short")
        assert c.last_rsv == 0, "under chat_deflate_min_size, yet compressed"

        noise = os.urandom(200)
        c.send_frame(wsclient.OP_BINARY, noise)
        assert c.recv_frame(5) == (wsclient.OP_BINARY, noise)
        assert c.last_rsv == 0, "compressed though it does not shrink"

        # a compressed client message, inflated by the server
        c.send_frame(wsclient.OP_TEXT, compress(long_text.encode()), rsv=4)
        op, data = c.recv_frame(5)
        assert data.decode() == long_text and c.last_rsv == 4
    finally:
        c.close()


def test_fragments_with_pings_between(stack):
    c = raw_connect(stack, "/echo-z")
    try:
        text = ("fragmented and compressed %d " * 40 % tuple(range(40)))
        z = compress(text.encode())
        a, b = len(z) // 3, 2 * len(z) // 3
        c.send_frame(wsclient.OP_TEXT, z[:a], fin=False, rsv=4)
        c.send_frame(wsclient.OP_PING, b"p1")
        c.send_frame(wsclient.OP_CONT, z[a:b], fin=False)
        c.send_frame(wsclient.OP_PING, b"p2")
        c.send_frame(wsclient.OP_CONT, b"", fin=False)
        c.send_frame(wsclient.OP_CONT, z[b:], fin=True)
        frames = [c.recv_frame(5) for _ in range(3)]
        assert frames[:2] == [(wsclient.OP_PONG, b"p1"),
                              (wsclient.OP_PONG, b"p2")], frames
        assert frames[2] == (wsclient.OP_TEXT, text.encode()), frames[2][:2]
    finally:
        c.close()


def test_rsv1_on_a_continuation_is_1002(stack):
    c = raw_connect(stack, "/echo-z")
    try:
        z = compress(b"a compressed message in two frames " * 10)
        c.send_frame(wsclient.OP_TEXT, z[:10], fin=False, rsv=4)
        c.send_frame(wsclient.OP_CONT, z[10:], fin=True, rsv=4)
        assert c.expect_close(5) == 1002
    finally:
        c.abort()

    c = raw_connect(stack, "/echo-z")
    try:
        c.send_frame(wsclient.OP_PING, b"p", rsv=4)
        assert c.expect_close(5) == 1002
    finally:
        c.abort()


def test_bad_compressed_data_is_1007(stack):
    for payload in [b"\xff\xff\xff", compress("caf\u00e9".encode()[:-1])]:
        c = raw_connect(stack, "/echo-z")
        try:
            c.send_frame(wsclient.OP_TEXT, payload, rsv=4)
            assert c.expect_close(5) == 1007
        finally:
            c.abort()


@pytest.mark.parametrize("path", ["/echo-z", "/chat-z"])
def test_limit_applies_to_the_inflated_size(stack, ws, path):
    """A message of exactly chat_max_message_bytes once inflated passes; one
    byte more is 1009, though it is a few dozen bytes on the wire."""
    token = stack.token(unique("lim"))
    exact = '{"type":"ping","req_id":"exact","pad":"%s"}'
    exact = exact % ("a" * (LIMIT - len(exact) + 2))
    assert len(exact) == LIMIT
    with lib_connect(ws, url_of(stack, path), token=token) as c:
        if path == "/chat-z":
            assert lib_recv_json(c)["type"] == "hello"
        c.send(exact)
        reply = c.recv(timeout=10)
        if path == "/echo-z":
            assert reply == exact
        assert len(compress((exact + "a").encode())) < 200
        c.send(exact + "a")
        assert lib_close_code(ws, c) == 1009


def test_bomb_refused_and_others_served(stack, ws):
    """10 MiB of one byte compress to 10 KiB, under the wire limit: the
    server stops inflating at the message limit and closes with 1009, and
    serves the other connections meanwhile and after."""
    bomb = "a" * (10 << 20)
    assert len(compress(bomb.encode())) < LIMIT
    other = lib_connect(ws, url_of(stack, "/echo-z"))
    try:
        for i in range(3):
            with lib_connect(ws, url_of(stack, "/echo-z")) as c:
                c.send(bomb)
                assert lib_close_code(ws, c) == 1009
            other.send("still here %d" % i)
            assert other.recv(timeout=10) == "still here %d" % i
        with lib_connect(ws, url_of(stack, "/echo-z")) as c:
            c.send("x" * 1000)
            assert c.recv(timeout=10) == "x" * 1000
    finally:
        other.close()


# -- chat --------------------------------------------------------------------

def test_chat_direct_message_compressed(stack, ws):
    a, b = unique("za"), unique("zb")
    url = url_of(stack, "/chat-z")
    with lib_connect(ws, url, token=stack.token(a)) as ca, \
            lib_connect(ws, url, token=stack.token(b)) as cb:
        assert lib_recv_json(ca)["type"] == "hello"
        assert lib_recv_json(cb)["type"] == "hello"
        body = "compressed both ways " * 20
        ca.send('{"type":"send","client_msg_id":"m1","to":"%s",'
                '"body":"%s"}' % (b, body))
        ack = lib_recv_until(ca, lambda o: o.get("client_msg_id") == "m1")
        assert ack["type"] == "ack", ack
        msg = lib_recv_until(cb, lambda o: o.get("type") == "message")
        assert msg["body"] == body and msg["sender_id"] == a, msg


def test_group_fan_out_over_window_sizes(stack, ws):
    """One delivery to members that agreed to different windows, and to
    one without the extension: each gets the same message."""
    url = url_of(stack, "/chat-z")
    owner = unique("zo")
    m10, m12, m15, plain = (unique("z10"), unique("z12"), unique("z15"),
                            unique("zp"))
    c10 = lib_connect(ws, url, token=stack.token(m10),
                      server_max_window_bits=10)
    c15 = lib_connect(ws, url, token=stack.token(m15))
    c12 = raw_connect(stack, "/chat-z",
                      offer="permessage-deflate; server_max_window_bits=12",
                      token=stack.token(m12))
    cp = wsclient.connect(stack.url, token=stack.token(plain))
    co = stack.connect(owner)
    try:
        assert "server_max_window_bits=10" in lib_extensions(c10)
        assert "server_max_window_bits=12" in \
            c12.headers.get("Sec-WebSocket-Extensions")
        for c in (c10, c15):
            assert lib_recv_json(c)["type"] == "hello"
        for c in (c12, cp):
            assert c.recv_json(10)["type"] == "hello"
        co.send_json({"type": "create_group", "req_id": "cg",
                      "name": unique("g"), "members": [m10, m12, m15, plain]})
        g = co.recv_until(lambda o: o.get("req_id") == "cg", 15)
        assert g["type"] == "group", g
        conv = g["conversation_id"]
        body = "b" * 100
        co.send_json({"type": "send", "client_msg_id": "g1",
                      "conversation_id": conv, "body": body})
        for c in (c10, c15):
            f = lib_recv_until(c, lambda o: o.get("type") == "message"
                               and o.get("client_msg_id") == "g1")
            assert f["body"] == body
        for c, rsv in ((c12, 4), (cp, 0)):
            f = c.recv_until(lambda o: o.get("type") == "message"
                             and o.get("client_msg_id") == "g1", 15)
            assert f["body"] == body
            assert c.last_rsv == rsv, (c.last_rsv, rsv)
    finally:
        for c in (c10, c15):
            c.close()
        for c in (c12, cp, co):
            c.close()


# -- configuration -----------------------------------------------------------

CONF = """
events { worker_connections 64; }
http {
    %(http)s
    server {
        listen 127.0.0.1:1;
        %(server)s
        location = /echo { chat_echo; %(location)s }
    }
}
"""


def _no_leak_check():
    """nginx -t exits without freeing its configuration's pools: under
    ASan (make test SANITIZE=1) that is no leak of ours to report, and a
    report file would fail the run. Other sanitizer errors still show."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=0"
    return env


@pytest.mark.parametrize("where,text,error", [
    ("location", "chat_deflate on; chat_deflate_window_bits 9;", None),
    ("server", "chat_deflate on; chat_deflate_client_window_bits 12; "
               "chat_deflate_client_context_takeover on;", None),
    ("http", "chat_deflate_level 9; chat_deflate_mem_level 1; "
             "chat_deflate_min_size 1k;", None),
    ("location", "chat_deflate_window_bits 8;", "between 9 and 15"),
    ("location", "chat_deflate_client_window_bits 16;", "between 9 and 15"),
    ("location", "chat_deflate yes;", "must be \"on\" or \"off\""),
    ("http", "chat_deflate_level 0;", "between 1 and 9"),
    ("http", "chat_deflate_mem_level 10;", "between 1 and 9"),
    ("http", "chat_deflate_min_size big;", "invalid value"),
    ("location", "chat_deflate_level 6;", "not allowed here"),
    ("http", "chat_deflate_level 6; chat_deflate_level 7;", "is duplicate"),
])
def test_nginx_t_checks_the_directives(stack, tmp_path, where, text, error):
    parts = {"http": "", "server": "", "location": ""}
    parts[where] = text
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF % parts)
    (tmp_path / "logs").mkdir()
    p = subprocess.run([stack.env.get("NGINX_BIN") or os.path.join(
                            os.path.dirname(os.path.dirname(__file__)),
                            "build", "nginx", "sbin", "nginx"),
                        "-t", "-p", str(tmp_path), "-c", str(conf),
                        "-e", "stderr"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=_no_leak_check(), timeout=30)
    out = p.stdout.decode(errors="replace")
    if error is None:
        assert p.returncode == 0, out
    else:
        assert p.returncode != 0 and error in out, out
