"""The web client (clients/web on clients/js) as nginx serves it, end to end
in Debian's Chromium driven by playwright-core (t/web/e2e.mjs).

What it needs is installed when missing: Debian's `chromium` (and `npm`)
with apt-get, as the Makefile's `pkgs` does, and playwright-core from npm
into $CHAT_CACHE/node (default ~/.cache/ngx_chat/node), outside the clone.
No browser is downloaded: Playwright drives /usr/bin/chromium.

Screenshots go to build/web-artifacts/ (CHAT_WEB_ARTIFACTS to change it),
printed at the end of the run and kept.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from chatlib import send_msg

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
E2E = os.path.join(HERE, "web", "e2e.mjs")

CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT_VERSION = "1.65.1"
CACHE = os.environ.get("CHAT_CACHE") or os.path.join(
    os.environ.get("HOME") or "/root", ".cache", "ngx_chat")
NODE_DIR = os.path.join(CACHE, "node")
ARTIFACTS = (os.environ.get("CHAT_WEB_ARTIFACTS")
             or os.path.join(ROOT, "build", "web-artifacts"))


def _run(cmd, timeout, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, env=env)
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError("%s failed (rc=%d):\n%s"
                             % (" ".join(cmd), p.returncode, out[-3000:]))
    return out


def _apt_install(*pkgs):
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "apt-get"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(apt + ["update", "-q"], 600, env)
    _run(apt + ["install", "-y", "-q", "--no-install-recommends"] + list(pkgs),
         1200, env)


def _playwright_installed():
    try:
        with open(os.path.join(NODE_DIR, "node_modules", "playwright-core",
                               "package.json")) as f:
            return json.load(f).get("version") == PLAYWRIGHT_VERSION
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def browser_deps():
    """Chromium and playwright-core, installed when missing."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append("chromium")
    if not shutil.which("node"):
        missing.append("nodejs")
    if not shutil.which("npm") and not _playwright_installed():
        missing.append("npm")
    if missing:
        sys.stderr.write("test_web: installing %s\n" % " ".join(missing))
        _apt_install(*missing)
    if not _playwright_installed():
        os.makedirs(NODE_DIR, exist_ok=True)
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        _run(["npm", "install", "--prefix", NODE_DIR, "--no-audit", "--no-fund",
              "--no-save", "playwright-core@" + PLAYWRIGHT_VERSION], 600, env)
    assert _playwright_installed(), "playwright-core is not in %s" % NODE_DIR


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def _prefill(stack, sender, to, n):
    """sender sends `to` n messages "history 1".."history n", all acked."""
    c = stack.connect(sender, dev="bulk")
    try:
        for i in range(1, n + 1):
            send_msg(c, "bulk-%d" % i, "history %d" % i, to=to)
        acked = set()
        while len(acked) < n:
            f = c.recv_json(30)
            assert f.get("type") != "error", "prefill send failed: %r" % f
            if f.get("type") == "ack":
                acked.add(f["client_msg_id"])
    finally:
        c.close(timeout=1.0)


def _base(stack):
    return stack.http_url.rsplit("/chat", 1)[0]


def test_page_and_library_served(stack):
    """nginx serves the page, the library and the styles, with the types a
    browser needs for a module script."""
    base = _base(stack)
    status, ctype, body = _get(base + "/app/web/")
    assert status == 200, "GET /app/web/: %s" % status
    assert ctype.startswith("text/html"), ctype
    assert b'<script type="module" src="app.js">' in body
    for path, want in (("/app/web/app.js", "text/javascript"),
                       ("/app/js/chat.js", "text/javascript"),
                       ("/app/web/style.css", "text/css")):
        status, ctype, body = _get(base + path)
        assert status == 200, "GET %s: %s" % (path, status)
        assert ctype.startswith(want), "%s: %s" % (path, ctype)
        assert body, path
    status, _, _ = _get(base + "/app/web/nothing-here.js")
    assert status == 404


def test_library_in_node(stack, uname):
    """clients/js/chat.js in Node against the stack (t/web/node_client.mjs)."""
    if not shutil.which("node"):
        _apt_install("nodejs")
    users = {}
    for who in ("alice", "bob"):
        uid = uname(who)
        users[who] = {"id": uid, "token": stack.token(uid, dev="node")}
    has_ws = subprocess.run(
        ["node", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"]
    ).returncode == 0
    cmd = ["node"] + ([] if has_ws else ["--experimental-websocket"])
    env = dict(os.environ, E2E_URL=stack.url, E2E_USERS=json.dumps(users))
    p = subprocess.run(cmd + [os.path.join(HERE, "web", "node_client.mjs")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120, env=env)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "t/web/node_client.mjs failed:\n%s" % out[-4000:]
    assert "node client: all" in out, out


def test_web_client_in_chromium(stack, uname, browser_deps, capsys):
    """alice and bob in two browser contexts (carol in a third): history
    paged in by scrolling up; a direct chat with live delivery, delivered and read ticks, typing, presence;
    a group of three with a message, read by both, a member removed and
    added back; a reload that syncs."""
    users = {}
    for who in ("alice", "bob", "carol"):
        uid = uname(who)
        users[who] = {"id": uid, "token": stack.token(uid, dev="web")}
    # more than a sync brings (100 per conversation): the rest is paged in
    # with history when alice scrolls up
    dave = uname("dave")
    _prefill(stack, dave, users["alice"]["id"], 130)
    os.makedirs(ARTIFACTS, exist_ok=True)
    for old in glob.glob(os.path.join(ARTIFACTS, "*.png")):
        os.unlink(old)   # only this run's screenshots
    env = dict(os.environ,
               E2E_BASE=_base(stack),
               E2E_USERS=json.dumps(users),
               E2E_HISTORY=json.dumps({"peer": dave, "count": 130}),
               E2E_ARTIFACTS=ARTIFACTS,
               PLAYWRIGHT_DIR=NODE_DIR,
               CHROMIUM=CHROMIUM)
    try:
        p = subprocess.run(["node", E2E], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=300, env=env)
        rc, out = p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", (e.stdout or b"").decode("utf-8", "replace")
    with open(os.path.join(ARTIFACTS, "e2e.log"), "w") as f:
        f.write(out)
    shots = sorted(glob.glob(os.path.join(ARTIFACTS, "*.png")))
    with capsys.disabled():
        sys.stdout.write("\ntest_web: %d screenshots in %s\n"
                         % (len(shots), ARTIFACTS)
                         + "test_web: the run's log is %s\n"
                         % os.path.join(ARTIFACTS, "e2e.log"))
    assert rc == 0, "t/web/e2e.mjs failed (%s):\n%s\n--- stack logs ---\n%s" % (
        rc, out[-6000:], stack.logs(20))
    assert "e2e: all" in out, out[-3000:]
    assert len(shots) >= 10, "only %d screenshots in %s" % (len(shots), ARTIFACTS)
