"""pytest fixtures: one real stack (PostgreSQL, Redis, Kafka, chat_worker,
nginx) per test session, started by t/stack.sh on spare ports.

Set CHAT_STACK_DIR to the scratch directory of a stack that is already
running (one with DIR/stack.env) to run the tests against it instead; then
the tests neither start nor stop it. Set CHAT_KEEP=1 to keep the scratch
directory after a successful run (it is always kept after a failure).
"""

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import tokens  # noqa: E402
import wsclient  # noqa: E402
from chatlib import unique  # noqa: E402
from stackenv import read_env_file  # noqa: E402

STACK_SH = os.path.join(HERE, "stack.sh")
START_TIMEOUT = float(os.environ.get("CHAT_STACK_START_TIMEOUT", "180"))
CTL_TIMEOUT = 120


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "slow: long-running test (runs with CHAT_SLOW=1)")


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (bound together, released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail_logs(d, lines=60):
    out = []
    paths = sorted(glob.glob(os.path.join(d, "log", "*.log"))
                   + glob.glob(os.path.join(d, "log", "*", "*.log")))
    paths += glob.glob(os.path.join(d, "nginx", "logs", "error.log"))
    for path in paths:
        n = min(lines, 15) if os.path.basename(path) == "kafka.log" else lines
        try:
            with open(path, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except OSError as e:
            out.append("== %s: %s" % (path, e))
            continue
        out.append("== %s (last %d of %d lines)" % (path, min(n, len(data)),
                                                   len(data)))
        out.extend(data[-n:])
    return "\n".join(out) if out else "(no logs under %s/log)" % d


class Stack:
    """What the tests know about the running stack."""

    def __init__(self, d, env):
        self.dir = d
        self.env = env
        self.port = int(env["CHAT_PORT"])
        self.tls_port = int(env["CHAT_TLS_PORT"])
        self.redis_port = int(env["REDIS_PORT"])
        self.pg_port = int(env["PG_PORT"])
        self.kafka_port = int(env["KAFKA_PORT"])
        self.kafka_ctrl_port = int(env.get("KAFKA_CTRL_PORT", "0"))
        self.secret = env["CHAT_JWT_SECRET"]
        self.url = env.get("CHAT_URL") or "ws://127.0.0.1:%d/chat" % self.port
        self.wss_url = (env.get("CHAT_WSS_URL")
                        or "wss://127.0.0.1:%d/chat" % self.tls_port)
        self.http_url = self.url.replace("ws://", "http://", 1)
        self.https_url = self.wss_url.replace("wss://", "https://", 1)
        self._proc_env = None

    # -- tokens and connections -------------------------------------------

    def token(self, user, dev=None, **kw):
        kw.setdefault("chatctl", self.env.get("CHATCTL_BIN"))
        return tokens.make_token(self.secret, user, dev=dev, **kw)

    def connect(self, user, dev=None, url=None, timeout=10.0, **kw):
        """Connect as user/dev and read the hello (kept in client.hello)."""
        c = wsclient.connect(url or self.url, token=self.token(user, dev),
                             timeout=timeout, **kw)
        try:
            hello = c.recv_json(timeout)
        except BaseException:
            c.abort()
            raise
        assert isinstance(hello, dict) and hello.get("type") == "hello", \
            "first frame after the upgrade must be hello, got %r" % (hello,)
        c.hello = hello
        c.user = user
        c.dev = dev if dev is not None else "default"
        return c

    # -- processes ---------------------------------------------------------

    def ctl(self, action, timeout=CTL_TIMEOUT, check=True):
        """Run `t/stack.sh ACTION DIR`."""
        p = subprocess.run(["bash", STACK_SH, action, self.dir],
                           env=self._proc_env or os.environ.copy(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        out = p.stdout.decode("utf-8", "replace")
        if check and p.returncode != 0:
            raise AssertionError("t/stack.sh %s failed (rc=%d):\n%s\n%s"
                                 % (action, p.returncode, out[-3000:],
                                    tail_logs(self.dir, 30)))
        return out

    def redis_cli(self, *args, timeout=15):
        p = subprocess.run(["redis-cli", "-h", "127.0.0.1",
                            "-p", str(self.redis_port)] + [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("redis-cli %s failed: %s"
                                 % (" ".join(map(str, args)),
                                    p.stderr.decode(errors="replace")))
        return p.stdout.decode("utf-8", "replace")

    def sessions(self, user):
        """chat:sess:<user> as a dict device -> '<node> <sid>'."""
        out = self.redis_cli("HGETALL", "chat:sess:%s" % user)
        if not out.strip():
            return {}
        lines = out.rstrip("\n").split("\n")
        if len(lines) % 2:
            raise AssertionError("odd HGETALL output: %r" % out)
        return {lines[i]: lines[i + 1] for i in range(0, len(lines), 2)}

    def psql(self, sql, timeout=30):
        env = dict(os.environ, PGCONNECT_TIMEOUT="5")
        env.pop("PGPASSWORD", None)
        p = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port),
                            "-U", "chat", "-d", "chat", "-X", "-At",
                            "-v", "ON_ERROR_STOP=1", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("psql failed on %r: %s"
                                 % (sql, p.stderr.decode(errors="replace")))
        return p.stdout.decode("utf-8", "replace").strip()

    def logs(self, lines=60):
        return tail_logs(self.dir, lines)


def _start_stack():
    ports = free_ports(6)
    env = os.environ.copy()
    env.update({
        "CHAT_PORT": str(ports[0]),
        "CHAT_TLS_PORT": str(ports[1]),
        "REDIS_PORT": str(ports[2]),
        "PG_PORT": str(ports[3]),
        "KAFKA_PORT": str(ports[4]),
        "KAFKA_CTRL_PORT": str(ports[5]),
        "CHAT_JWT_SECRET": secrets.token_hex(24),
        "CHAT_WORKERS": "1",
        # push gateways: the tests' own receivers on this host only, and
        # retries fast enough to watch
        "CHAT_PUSH_ENDPOINTS": "http://127.0.0.1:",
        "CHAT_PUSHER_ARGS": "--poll-ms 50 --retry-ms 300 --retry-max-ms 1500"
                            " --timeout-ms 1500 --max-attempts 6",
        # uploads never attached go after 8 s (test_media watches it)
        "CHAT_MEDIA_KEEP_MS": "8000",
    })
    d = tempfile.mkdtemp(prefix="ngx_chat_t.", dir="/tmp")
    os.chmod(d, 0o755)
    if not os.path.exists(STACK_SH):
        pytest.fail("t/stack.sh does not exist: the integration tests need "
                    "it to start the servers", pytrace=False)
    t0 = time.monotonic()
    try:
        p = subprocess.run(["bash", STACK_SH, "start", d], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=START_TIMEOUT)
        rc, out = p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc = "timeout after %.0fs" % START_TIMEOUT
        out = (e.stdout or b"").decode("utf-8", "replace")
    if rc != 0:
        msg = ("t/stack.sh start %s failed (%s):\n%s\n--- logs ---\n%s"
               % (d, rc, out[-4000:], tail_logs(d)))
        subprocess.run(["bash", STACK_SH, "stop", d], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
        pytest.fail(msg, pytrace=False)
    sys.stderr.write("stack started in %.1fs in %s\n"
                     % (time.monotonic() - t0, d))
    file_env = {}
    ef = os.path.join(d, "stack.env")
    if os.path.exists(ef):
        file_env = read_env_file(ef)
    merged = {k: env[k] for k in ("CHAT_PORT", "CHAT_TLS_PORT", "REDIS_PORT",
                                  "PG_PORT", "KAFKA_PORT", "KAFKA_CTRL_PORT",
                                  "CHAT_JWT_SECRET")}
    merged.update(file_env)
    st = Stack(d, merged)
    st._proc_env = env
    return st


@pytest.fixture(scope="session")
def stack(request):
    external = os.environ.get("CHAT_STACK_DIR")
    if external:
        st = Stack(external, read_env_file(os.path.join(external,
                                                        "stack.env")))
        yield st
        return
    st = _start_stack()
    try:
        yield st
    finally:
        failed = request.session.testsfailed
        if failed:
            sys.stderr.write("\n%d test(s) failed; logs of the stack in %s:\n%s\n"
                             % (failed, st.dir, tail_logs(st.dir, 40)))
        try:
            subprocess.run(["bash", STACK_SH, "stop", st.dir],
                           env=st._proc_env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=180)
        except subprocess.TimeoutExpired:
            sys.stderr.write("t/stack.sh stop %s timed out\n" % st.dir)
        if not failed and not os.environ.get("CHAT_KEEP"):
            shutil.rmtree(st.dir, ignore_errors=True)


@pytest.fixture
def uname():
    """Factory of unique user ids: uname('alice') -> 'alice_3f2a...'."""
    return unique


@pytest.fixture
def clients():
    """Collects clients opened by a test and closes them at its end."""
    class Opened(list):
        def add(self, c):
            self.append(c)
            return c

    opened = Opened()
    yield opened
    for c in opened:
        try:
            c.close(timeout=1.0)
        except Exception:
            pass
