"""make install into a scratch directory (DESTDIR): the tree it leaves,
`nginx -t` of the installed example configuration (with a test secret,
ports and certificate), the installed chatctl migrating a fresh database
of the stack's PostgreSQL with the installed sql/, and chat_worker
--help."""

import filecmp
import json
import os
import re
import shutil
import subprocess

import pytest

from chatlib import unique
from conftest import ROOT, free_ports

# nginx -V and -t exit without freeing their pools: under ASan (make test
# SANITIZE=1) that is no leak of ours, and a report file would fail the run
NO_LEAK_CHECK = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")

PREFIX = "/opt/ngx_chat_test"


def make_install(destdir):
    env = dict(os.environ)
    p = subprocess.run(["make", "-C", ROOT, "install", "PREFIX=" + PREFIX,
                        "DESTDIR=" + destdir], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=3600)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "make install failed:\n" + out[-4000:]
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("install"))
    out = make_install(d)
    yield d, d + PREFIX, out
    shutil.rmtree(d, ignore_errors=True)


def test_the_tree(installed):
    destdir, root, out = installed
    for path, mode in (("sbin/nginx", 0o755), ("bin/chat_worker", 0o755),
                       ("bin/chat_pusher", 0o755), ("bin/chatctl", 0o755)):
        st = os.stat(os.path.join(root, path))
        assert st.st_mode & 0o777 == mode, (path, oct(st.st_mode))

    sql = sorted(f for f in os.listdir(os.path.join(ROOT, "sql"))
                 if f.endswith(".sql"))
    assert sorted(os.listdir(os.path.join(root, "share/ngx_chat/sql"))) == sql
    for f in sql:
        assert filecmp.cmp(os.path.join(ROOT, "sql", f),
                           os.path.join(root, "share/ngx_chat/sql", f), False)
    for f in ("web/index.html", "web/app.js", "js/chat.js"):
        assert filecmp.cmp(os.path.join(ROOT, "clients", f),
                           os.path.join(root, "share/ngx_chat/clients", f),
                           False), f

    assert filecmp.cmp(os.path.join(ROOT, "conf/nginx.conf.example"),
                       os.path.join(root, "conf/nginx.conf"), False)
    assert os.path.exists(os.path.join(root, "conf/mime.types"))
    for f in ("chat_worker.env", "chat_worker.env.example"):
        assert filecmp.cmp(os.path.join(ROOT, "conf/chat_worker.env.example"),
                           os.path.join(root, "etc", f), False)

    units = os.path.join(root, "lib/systemd/system")
    assert sorted(os.listdir(units)) == ["chat-pusher.service",
                                         "chat-worker@.service",
                                         "ngx-chat-nginx.service"]
    for u in os.listdir(units):
        text = open(os.path.join(units, u)).read()
        assert not re.search(r"@[A-Z_]+@", text), (u, text)
        # the paths are the installed ones, without DESTDIR
        assert destdir not in text
    worker = open(os.path.join(units, "chat-worker@.service")).read()
    assert "ExecStart=%s/bin/chat_worker " % PREFIX in worker
    assert "EnvironmentFile=%s/etc/chat_worker.env" % PREFIX in worker
    pusher = open(os.path.join(units, "chat-pusher.service")).read()
    assert "ExecStart=%s/bin/chat_pusher " % PREFIX in pusher
    assert "EnvironmentFile=%s/etc/chat_worker.env" % PREFIX in pusher
    nginx = open(os.path.join(units, "ngx-chat-nginx.service")).read()
    assert "ExecStart=%s/sbin/nginx" % PREFIX in nginx
    assert "PIDFile=%s/logs/nginx.pid" % PREFIX in nginx

    # the compiled-in prefix is PREFIX, not the scratch directory
    p = subprocess.run([os.path.join(root, "sbin/nginx"), "-V"],
                       env=NO_LEAK_CHECK, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert ("--prefix=%s " % PREFIX) in p.stdout.decode(), p.stdout


def test_an_edited_nginx_conf_is_kept(installed):
    destdir, root, _ = installed
    conf = os.path.join(root, "conf/nginx.conf")
    with open(conf, "a") as f:
        f.write("# edited by the operator\n")
    out = make_install(destdir)
    assert "from conf/nginx.conf.example" not in out
    assert open(conf).read().endswith("# edited by the operator\n")


def test_nginx_t_of_the_installed_example(installed, tmp_path):
    _, root, _ = installed
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", cert], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port, = free_ports(1)
    text = open(os.path.join(ROOT, "conf/nginx.conf.example")).read()
    for old, new in (("CHANGE-ME-to-at-least-32-random-bytes",
                      "a-test-secret-of-enough-bytes-0123456789"),
                     ("listen  443 ssl", "listen  127.0.0.1:%d ssl" % port),
                     ("/etc/ssl/chat/fullchain.pem", cert),
                     ("/etc/ssl/chat/privkey.pem", key)):
        assert old in text, old
        text = text.replace(old, new)
    test_conf = os.path.join(root, "conf/test.conf")
    with open(test_conf, "w") as f:
        f.write(text)
    p = subprocess.run([os.path.join(root, "sbin/nginx"), "-t",
                        "-p", root + "/", "-c", "conf/test.conf",
                        "-e", "stderr"], env=NO_LEAK_CHECK,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode()
    assert p.returncode == 0, out
    assert "test is successful" in out, out

    # and it refuses the example's placeholder secret as it is
    with open(test_conf, "w") as f:
        f.write(text.replace("a-test-secret-of-enough-bytes-0123456789",
                             "short"))
    p = subprocess.run([os.path.join(root, "sbin/nginx"), "-t",
                        "-p", root + "/", "-c", "conf/test.conf",
                        "-e", "stderr"], env=NO_LEAK_CHECK,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode != 0, p.stdout


def psql_admin(stack, sql, db="postgres"):
    p = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(stack.pg_port),
                        "-U", "postgres", "-d", db, "-X", "-At",
                        "-v", "ON_ERROR_STOP=1", "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode().strip()


def test_installed_chatctl_migrates_a_fresh_database(installed, stack):
    _, root, _ = installed
    db = "inst_" + unique("db").replace("-", "_").lower()
    psql_admin(stack, "CREATE DATABASE %s OWNER chat" % db)
    try:
        env = {k: v for k, v in os.environ.items() if k != "CHAT_SQL_DIR"}
        p = subprocess.run([os.path.join(root, "bin/chatctl"), "migrate",
                            "--json", "--pg",
                            "host=127.0.0.1 port=%d dbname=%s user=chat"
                            % (stack.pg_port, db)],
                           cwd="/", env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        doc = json.loads(p.stdout)
        assert os.path.realpath(doc["dir"]) == \
            os.path.realpath(os.path.join(root, "share/ngx_chat/sql"))
        versions = sorted(f.split("_", 1)[0]
                          for f in os.listdir(os.path.join(ROOT, "sql"))
                          if f.endswith(".sql"))
        assert [a["version"] for a in doc["applied"]] == versions
        assert psql_admin(stack, "SELECT count(*) FROM schema_migrations",
                          db) == str(len(versions))
        assert psql_admin(stack, "SELECT to_regclass('messages') IS NOT NULL"
                                 " AND to_regclass('revocations') IS NOT"
                                 " NULL", db) == "t"
    finally:
        psql_admin(stack, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


def test_installed_chat_worker_help(installed):
    _, root, _ = installed
    p = subprocess.run([os.path.join(root, "bin/chat_worker"), "--help"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode()
    assert p.returncode == 0, out
    for opt in ("--brokers", "--pg", "--redis", "--metrics", "--group"):
        assert opt in out, (opt, out)
    p = subprocess.run([os.path.join(root, "bin/chatctl"), "--help"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0 and b"migrate" in p.stdout
