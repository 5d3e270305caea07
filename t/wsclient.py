"""A small RFC 6455 WebSocket client for the integration tests.

It speaks raw bytes over a socket (plain or TLS without certificate checks) so
that the tests have full control: hand-made frames (unmasked, reserved bits,
fragments, bad UTF-8), handshakes with chosen headers, and a view of every
frame the server sends, control frames included.

When the server's 101 agrees to permessage-deflate (a test offered it in its
headers), the server's compressed frames (RSV1) are inflated as they are
read; last_rsv and last_wire_len tell what came on the wire. What the client
sends stays the test's own bytes.

Only the Python standard library is used.
"""

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import zlib

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

OPCODE_NAMES = {
    OP_CONT: "cont", OP_TEXT: "text", OP_BINARY: "binary",
    OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong",
}


class WSError(Exception):
    """Base class of the client's errors."""


class HandshakeError(WSError):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers          # Headers (case-insensitive)
        self.body = body
        super().__init__("handshake failed: HTTP %s %s; body=%r"
                         % (status, reason, body[:200]))


class ConnectionClosed(WSError):
    """The connection ended: a close frame (code set) or EOF/reset."""

    def __init__(self, code=None, reason="", how="close frame"):
        self.code = code
        self.reason = reason
        self.how = how
        super().__init__("connection closed (%s): code=%r reason=%r"
                         % (how, code, reason))


class ProtocolViolation(WSError):
    """The server sent something RFC 6455 forbids."""


class Headers:
    """Case-insensitive view of HTTP response headers, keeping the order."""

    def __init__(self, items):
        self.items = list(items)

    def get(self, name, default=None):
        values = self.get_all(name)
        if not values:
            return default
        return ", ".join(values)

    def get_all(self, name):
        name = name.lower()
        return [v for k, v in self.items if k.lower() == name]

    def __contains__(self, name):
        return bool(self.get_all(name))

    def __getitem__(self, name):
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __repr__(self):
        return "Headers(%r)" % (self.items,)


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def __repr__(self):
        return "Response(%s %s, %r, body=%r)" % (
            self.status, self.reason, self.headers, self.body[:200])


# ---------------------------------------------------------------------------
# frames

def mask_bytes(key, data):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(
        n, "big")


def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0,
                mask_key=None, length=None):
    """Encode one frame. `length` overrides the announced payload length."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        return head + key + mask_bytes(key, payload)
    return head + payload


def _parse_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("ws", "wss", "http", "https"):
        raise ValueError("bad url scheme: %r" % url)
    tls = u.scheme in ("wss", "https")
    host = u.hostname or "127.0.0.1"
    port = u.port or (443 if tls else 80)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return tls, host, port, path


def _open_socket(tls, host, port, timeout, rcvbuf=None, sndbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(timeout)
    sock.connect((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=host)
    return sock


def _read_http_head(sock, buf, deadline):
    """Read until the end of the HTTP head; returns (status, reason,
    Headers, rest-of-buffer)."""
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete HTTP response head; got %r"
                               % bytes(buf[:300]))
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionClosed(how="EOF before the HTTP response head "
                                   "(got %r)" % bytes(buf[:300]))
        buf += chunk
        if len(buf) > 65536:
            raise ProtocolViolation("HTTP head too long")
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ProtocolViolation("bad status line %r" % lines[0])
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    items = []
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            items.append((k.strip(), v.strip()))
    return status, reason, Headers(items), bytearray(rest)


def _read_http_body(sock, headers, buf, deadline, limit=1 << 20):
    clen = headers.get("Content-Length")
    chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
    try:
        while True:
            if clen is not None and len(buf) >= int(clen):
                return bytes(buf[:int(clen)])
            if chunked and b"0\r\n\r\n" in buf:
                return bytes(buf)
            if len(buf) > limit:
                return bytes(buf)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(buf)
            sock.settimeout(min(remaining, 2.0))
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(buf)
            buf += chunk
    except (socket.timeout, OSError):
        return bytes(buf)


def _request_lines(method, path, host, port, headers):
    lines = ["%s %s HTTP/1.1" % (method, path)]
    for k, v in headers.items():
        if v is None:
            continue
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _merge_headers(defaults, overrides):
    """Case-insensitive merge; an override of None removes the header."""
    out = dict(defaults)
    for k, v in (overrides or {}).items():
        for dk in list(out):
            if dk.lower() == k.lower():
                del out[dk]
        out[k] = v
    return out


def _add_query_token(path, token):
    sep = "&" if "?" in path else "?"
    return path + sep + "access_token=" + urllib.parse.quote(token, safe="")


def http_request(url, method="GET", headers=None, token=None,
                 query_token=False, timeout=10.0):
    """One plain HTTP/1.1 request on its own connection; returns Response."""
    tls, host, port, path = _parse_url(url)
    if token is not None and query_token:
        path = _add_query_token(path, token)
    defaults = {"Host": "%s:%d" % (host, port), "Connection": "close",
                "User-Agent": "ngx_chat-tests"}
    if token is not None and not query_token:
        defaults["Authorization"] = "Bearer " + token
    hdrs = _merge_headers(defaults, headers)
    deadline = time.monotonic() + timeout
    sock = _open_socket(tls, host, port, timeout)
    try:
        sock.sendall(_request_lines(method, path, host, port, hdrs))
        status, reason, rh, rest = _read_http_head(sock, bytearray(), deadline)
        body = b"" if method == "HEAD" else _read_http_body(
            sock, rh, rest, deadline)
        return Response(status, reason, rh, body)
    finally:
        try:
            sock.close()
        except OSError:
            pass


def connect(url, token=None, headers=None, query_token=False,
            subprotocols=None, timeout=10.0, rcvbuf=None, sndbuf=None,
            auto_pong=True, check_accept=True):
    """Open a WebSocket. Raises HandshakeError (with .status, .headers,
    .body) when the server does not answer 101."""
    tls, host, port, path = _parse_url(url)
    if token is not None and query_token:
        path = _add_query_token(path, token)
    key = base64.b64encode(os.urandom(16)).decode()
    defaults = {
        "Host": "%s:%d" % (host, port),
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "User-Agent": "ngx_chat-tests",
    }
    if token is not None and not query_token:
        defaults["Authorization"] = "Bearer " + token
    if subprotocols:
        defaults["Sec-WebSocket-Protocol"] = ", ".join(subprotocols)
    hdrs = _merge_headers(defaults, headers)
    deadline = time.monotonic() + timeout
    sock = _open_socket(tls, host, port, timeout, rcvbuf=rcvbuf, sndbuf=sndbuf)
    try:
        sock.sendall(_request_lines("GET", path, host, port, hdrs))
        status, reason, rh, rest = _read_http_head(sock, bytearray(), deadline)
        if status != 101:
            body = _read_http_body(sock, rh, rest, min(deadline,
                                   time.monotonic() + 3))
            raise HandshakeError(status, reason, rh, body)
        if check_accept:
            sent_key = hdrs.get("Sec-WebSocket-Key", key)
            want = base64.b64encode(hashlib.sha1(
                (sent_key + WS_GUID).encode()).digest()).decode()
            got = rh.get("Sec-WebSocket-Accept")
            if got != want:
                raise ProtocolViolation(
                    "bad Sec-WebSocket-Accept %r (want %r)" % (got, want))
            if (rh.get("Upgrade") or "").lower() != "websocket":
                raise ProtocolViolation("101 without Upgrade: websocket: %r"
                                        % rh)
            if "upgrade" not in (rh.get("Connection") or "").lower():
                raise ProtocolViolation("101 without Connection: Upgrade: %r"
                                        % rh)
    except BaseException:
        try:
            sock.close()
        except OSError:
            pass
        raise
    return WSClient(sock, rh, rest, auto_pong=auto_pong, url=url)


class WSClient:
    """One open WebSocket connection (client side)."""

    def __init__(self, sock, headers, initial=b"", auto_pong=True, url=None):
        self.sock = sock
        self.headers = headers
        self.url = url
        self.subprotocol = headers.get("Sec-WebSocket-Protocol")
        self.auto_pong = auto_pong
        self.auto_close_reply = True
        self._buf = bytearray(initial)
        self._wlock = threading.Lock()
        self._rlock = threading.RLock()
        self._frag_op = None
        self._frag = bytearray()
        self.close_code = None          # from the server's close frame
        self.close_reason = None
        self.close_sent = False
        self.eof = False
        self.pings = []                 # payloads of server pings seen
        self.pongs = []                 # payloads of pongs seen
        self.seen = []                  # recent frames skipped by helpers
        self.last_fin = True
        self.hello = None
        self.frames_before_close = 0
        ext = (headers.get("Sec-WebSocket-Extensions") or "").lower()
        self.deflate = "permessage-deflate" in ext
        self.last_rsv = 0               # RSV bits of the last frame read
        self.last_wire_len = 0          # its size on the wire, header too

    # -- writing -----------------------------------------------------------

    def send_raw(self, data):
        with self._wlock:
            self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0,
                   **kw):
        if opcode == OP_CLOSE:
            self.close_sent = True
        self.send_raw(build_frame(opcode, payload, fin=fin, mask=mask,
                                  rsv=rsv, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode("utf-8"))

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":"),
                                  ensure_ascii=False))

    def send_close(self, code=1000, reason=b""):
        payload = b"" if code is None else struct.pack("!H", code) + reason
        self.send_frame(OP_CLOSE, payload)

    # -- reading -----------------------------------------------------------

    def _fill(self, n, deadline):
        while len(self._buf) < n:
            if self.eof:
                raise ConnectionClosed(self.close_code, self.close_reason or "",
                                       how="EOF")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out waiting for data from the "
                                   "server")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buf)))
            except socket.timeout:
                raise TimeoutError("timed out waiting for data from the "
                                   "server") from None
            except ssl.SSLError as e:
                if "timed out" in str(e):
                    raise TimeoutError("timed out (tls)") from None
                self.eof = True
                raise ConnectionClosed(self.close_code, str(e),
                                       how="TLS error") from None
            except (ConnectionResetError, BrokenPipeError) as e:
                self.eof = True
                raise ConnectionClosed(self.close_code, str(e),
                                       how="reset") from None
            if not chunk:
                self.eof = True
                raise ConnectionClosed(self.close_code, self.close_reason or "",
                                       how="EOF")
            self._buf += chunk

    def _take(self, n):
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def recv_frame(self, timeout=10.0):
        """Read one frame; returns (opcode, payload). Answers pings (unless
        auto_pong is off) and replies to a close frame."""
        deadline = time.monotonic() + timeout
        with self._rlock:
            self._fill(2, deadline)
            b0, b1 = self._buf[0], self._buf[1]
            n = b1 & 0x7F
            hl = 2
            if n == 126:
                hl = 4
            elif n == 127:
                hl = 10
            masked = bool(b1 & 0x80)
            if masked:
                hl += 4
            self._fill(hl, deadline)
            if n == 126:
                n = struct.unpack("!H", bytes(self._buf[2:4]))[0]
            elif n == 127:
                n = struct.unpack("!Q", bytes(self._buf[2:10]))[0]
            self._fill(hl + n, deadline)
            head = self._take(hl)
            payload = self._take(n)
            if masked:
                raise ProtocolViolation("server sent a masked frame")
            fin = bool(b0 & 0x80)
            rsv = (b0 >> 4) & 7
            op = b0 & 0xF
            if rsv and not (rsv == 4 and self.deflate and fin
                            and op in (OP_TEXT, OP_BINARY)):
                raise ProtocolViolation("server frame with RSV bits %d (op %d)"
                                        % (rsv, op))
            if rsv:
                # each message on its own (server_no_context_takeover)
                z = zlib.decompressobj(-15)
                try:
                    payload = z.decompress(payload + b"\x00\x00\xff\xff")
                except zlib.error as e:
                    raise ProtocolViolation("bad compressed frame: %s" % e)
            self.last_fin = fin
            self.last_rsv = rsv
            self.last_wire_len = len(head) + n
            del head
        if op == OP_PING:
            self.pings.append(payload)
            if self.auto_pong and not self.close_sent:
                try:
                    self.send_frame(OP_PONG, payload)
                except OSError:
                    pass
        elif op == OP_PONG:
            self.pongs.append(payload)
        elif op == OP_CLOSE:
            if len(payload) >= 2:
                self.close_code = struct.unpack("!H", payload[:2])[0]
                self.close_reason = payload[2:].decode("utf-8", "replace")
            else:
                self.close_code = 1005
                self.close_reason = ""
            if self.auto_close_reply and not self.close_sent:
                try:
                    self.send_frame(OP_CLOSE, payload[:2])
                except OSError:
                    pass
        return op, payload

    def recv_message(self, timeout=10.0):
        """Read one data message (reassembling fragments); returns
        (opcode, bytes). Raises ConnectionClosed on a close frame."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if op == OP_CLOSE:
                raise ConnectionClosed(self.close_code, self.close_reason)
            if op in (OP_PING, OP_PONG):
                continue
            if op in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise ProtocolViolation("new data frame inside a "
                                            "fragmented message")
                if self.last_fin:
                    return op, payload
                self._frag_op = op
                self._frag = bytearray(payload)
                continue
            if op == OP_CONT:
                if self._frag_op is None:
                    raise ProtocolViolation("continuation without a start")
                self._frag += payload
                if self.last_fin:
                    op, data = self._frag_op, bytes(self._frag)
                    self._frag_op = None
                    self._frag = bytearray()
                    return op, data
                continue
            raise ProtocolViolation("server sent opcode %#x" % op)

    def recv_json(self, timeout=10.0):
        """Next text message as a parsed JSON object (binary is skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            op, data = self.recv_message(max(0.0, deadline - time.monotonic()))
            if op != OP_TEXT:
                self._remember(("binary", data[:100]))
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation("server sent invalid UTF-8: %r"
                                        % data[:200]) from None
            try:
                return json.loads(text)
            except ValueError:
                raise ProtocolViolation("server sent a text frame that is "
                                        "not JSON: %r" % text[:300]) from None

    def _remember(self, item):
        self.seen.append(item)
        if len(self.seen) > 50:
            del self.seen[:-50]

    def recv_until(self, pred, timeout=10.0, what=None):
        """Read JSON frames until pred(obj) is true; returns that object.
        Frames skipped on the way are kept (last 50) in self.seen."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out after %.1fs waiting for %s; "
                                   "recent frames: %r" % (
                                       timeout, what or "a matching frame",
                                       self.seen[-8:]))
            try:
                obj = self.recv_json(remaining)
            except TimeoutError:
                raise TimeoutError("timed out after %.1fs waiting for %s; "
                                   "recent frames: %r" % (
                                       timeout, what or "a matching frame",
                                       self.seen[-8:])) from None
            if pred(obj):
                return obj
            self._remember(obj)

    def recv_type(self, ftype, timeout=10.0, **match):
        """Next frame of the given type whose fields equal `match`."""
        def pred(o):
            if not isinstance(o, dict) or o.get("type") != ftype:
                return False
            return all(k in o and o[k] == v and type(o[k]) is type(v)
                       for k, v in match.items())
        what = "%s frame %r" % (ftype, match) if match else "%s frame" % ftype
        return self.recv_until(pred, timeout, what=what)

    def drain(self, duration=0.5):
        """Read JSON frames for `duration` seconds; returns them."""
        out = []
        deadline = time.monotonic() + duration
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            try:
                out.append(self.recv_json(remaining))
            except TimeoutError:
                return out

    def expect_close(self, timeout=10.0):
        """Read until the server's close frame; returns its code (1005 when
        the frame has none), or None when the connection ended without a
        close frame. Data frames read on the way are counted in
        self.frames_before_close."""
        deadline = time.monotonic() + timeout
        self.frames_before_close = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no close from the server within %.1fs "
                                   "(read %d frames meanwhile)"
                                   % (timeout, self.frames_before_close))
            try:
                op, payload = self.recv_frame(remaining)
            except ConnectionClosed:
                return self.close_code
            except TimeoutError:
                raise TimeoutError("no close from the server within %.1fs "
                                   "(read %d frames meanwhile)"
                                   % (timeout, self.frames_before_close)
                                   ) from None
            if op == OP_CLOSE:
                # wait (briefly) for the server to close the TCP connection
                self._wait_eof(min(2.0, max(0.0, deadline - time.monotonic())))
                return self.close_code
            if op in (OP_TEXT, OP_BINARY, OP_CONT):
                self.frames_before_close += 1

    def _wait_eof(self, timeout):
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                self.sock.settimeout(max(0.01, end - time.monotonic()))
                if not self.sock.recv(65536):
                    self.eof = True
                    return True
        except (OSError, ssl.SSLError):
            self.eof = True
            return True
        return False

    def is_open(self):
        return not self.eof and self.close_code is None

    def close(self, code=1000, timeout=3.0):
        """Close politely (close frame, wait for the echo), then the socket."""
        try:
            if not self.close_sent and not self.eof:
                self.send_close(code)
            if self.close_code is None and not self.eof:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    op, _ = self.recv_frame(deadline - time.monotonic())
                    if op == OP_CLOSE:
                        break
        except (WSError, OSError, TimeoutError):
            pass
        self.abort()

    def abort(self):
        """Drop the TCP connection without a close frame."""
        try:
            self.sock.close()
        except OSError:
            pass
        self.eof = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
