"""`t/stack.sh run DIR`, what `make run` does: it keeps the stack up and
stops all of it on SIGINT, whatever became of its stdout.

Its stdout is a pipe whose reader goes away once the stack is up, as
`make run 2>&1 | tee log` loses tee on Ctrl-C: nothing written after that
may stop the run. A chat_worker and redis-server killed with SIGKILL come
back, each with a line in DIR/log/stack.log that names it and how it
ended; then SIGINT stops every process of the stack and the run exits 0.

Named "aa" to run before the other tests start the session's stack, so that
two stacks never run at once.
"""

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import STACK_SH, START_TIMEOUT, free_ports, tail_logs


def _stat(pid):
    """(state, ppid, start time) of a process, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return rest[0], int(rest[1]), int(rest[19])


def _alive(pid, start=None):
    st = _stat(pid)
    return (st is not None and st[0] != "Z"
            and (start is None or st[2] == start))


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _pid_file(d, name):
    try:
        with open(os.path.join(d, "run", name + ".pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stack_processes(d, run_pid):
    """Every process of the stack, as {pid: (start time, command line)}:
    the ones named in DIR/run/*.pid, the run itself, and all their
    descendants (nginx workers, PostgreSQL's backends, ...)."""
    roots = {run_pid}
    for name in os.listdir(os.path.join(d, "run")):
        if name.endswith(".pid"):
            pid = _pid_file(d, name[:-4])
            if pid:
                roots.add(pid)
    parents = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            st = _stat(int(e))
            if st is not None:
                parents[int(e)] = st[1]
    found = {}
    for pid in parents:
        p, depth = pid, 0
        while p and depth < 64:
            if p in roots:
                st = _stat(pid)
                if st is not None and st[0] != "Z":
                    found[pid] = (st[2], _cmdline(pid))
                break
            p, depth = parents.get(p), depth + 1
    return found


def _wait(pred, timeout, what, p, d):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if p.poll() is not None:
            pytest.fail("t/stack.sh run exited (%s) while waiting for %s\n%s"
                        % (p.returncode, what, tail_logs(d, 30)),
                        pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail("no %s within %.0f s\n%s"
                        % (what, timeout, tail_logs(d, 30)), pytrace=False)
        time.sleep(0.2)


def _redis_ping(port):
    try:
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port),
                              "ping"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=5).stdout
    except subprocess.TimeoutExpired:
        return False
    return out.strip() == b"PONG"


def _stack_log(d):
    try:
        with open(os.path.join(d, "log", "stack.log")) as f:
            return f.read()
    except OSError:
        return ""


def _read_until_up(p, timeout):
    """The run's output up to its banner, read from the pipe."""
    out = b""
    deadline = time.monotonic() + timeout
    while b"ngx_chat is up." not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, "timeout after %.0f s" % timeout
        r, _, _ = select.select([p.stdout], [], [], min(left, 1.0))
        if r:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                return out, "its output ended (exit %s)" % p.wait(30)
            out += chunk
    return out, None


def _as_from_a_terminal():
    """A shell cannot trap a signal that was ignored when it started, and a
    suite started in the background of a non-interactive shell (nohup, a
    CI runner's `cmd &`) hands SIGINT ignored down to everything it runs.
    The run is started as a terminal would start it: SIGINT at its
    default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_run_restarts_what_dies_and_stops_everything_on_sigint():
    ports = free_ports(6)
    env = os.environ.copy()
    env.update({
        "CHAT_PORT": str(ports[0]),
        "CHAT_TLS_PORT": str(ports[1]),
        "REDIS_PORT": str(ports[2]),
        "PG_PORT": str(ports[3]),
        "KAFKA_PORT": str(ports[4]),
        "KAFKA_CTRL_PORT": str(ports[5]),
        "CHAT_WORKERS": "2",
    })
    env.pop("CHAT_JWT_SECRET", None)
    d = tempfile.mkdtemp(prefix="ngx_chat_run.", dir="/tmp")
    os.chmod(d, 0o755)
    p = subprocess.Popen(["bash", STACK_SH, "run", d], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True,
                         preexec_fn=_as_from_a_terminal)
    ok = False
    try:
        out, why = _read_until_up(p, START_TIMEOUT)
        if why:
            pytest.fail("t/stack.sh run %s: not up (%s):\n%s\n%s"
                        % (d, why, out.decode("utf-8", "replace")[-3000:],
                           tail_logs(d, 30)), pytrace=False)

        # the reader goes: from now on every write of the run fails
        p.stdout.close()

        worker, redis = _pid_file(d, "worker1"), _pid_file(d, "redis")
        assert worker and _alive(worker) and "chat_worker" in _cmdline(worker)
        assert redis and _alive(redis) and "redis-server" in _cmdline(redis)
        os.kill(worker, signal.SIGKILL)
        os.kill(redis, signal.SIGKILL)

        def back(name, old, marker):
            pid = _pid_file(d, name)
            return (pid if pid and pid != old and _alive(pid)
                    and marker in _cmdline(pid) else None)

        _wait(lambda: back("worker1", worker, "chat_worker"), 60,
              "chat_worker 1 restarted", p, d)
        _wait(lambda: back("redis", redis, "redis-server")
              and _redis_ping(ports[2]), 60, "redis-server restarted", p, d)
        log = _stack_log(d)
        for name, pid in (("worker1", worker), ("redis", redis)):
            line = "%s exited (pid %d killed by SIGKILL): restarting" % (
                name, pid)
            assert line in log, (
                "no line %r in DIR/log/stack.log:\n%s" % (line, log[-3000:]))
        _wait(lambda: "workers: 1 started" in _stack_log(d), 30,
              "the restarted worker's ready line", p, d)

        procs = _stack_processes(d, p.pid)
        names = " ".join(c for _, c in procs.values())
        for what in ("postgres", "redis-server", "kafka.Kafka",
                     "chat_worker", "nginx: master", "nginx: worker"):
            assert what in names, (
                "the stack has no %s process: %r" % (what, procs))

        os.kill(p.pid, signal.SIGINT)
        try:
            rc = p.wait(180)
        except subprocess.TimeoutExpired:
            pytest.fail("t/stack.sh run did not end 180 s after SIGINT\n%s"
                        % tail_logs(d, 30), pytrace=False)
        assert rc == 0, "t/stack.sh run exited %d after SIGINT\n%s" % (
            rc, tail_logs(d, 30))

        left = {pid: cmd for pid, (start, cmd) in procs.items()
                if _alive(pid, start)}
        assert not left, "still running after the stop: %r" % left
        mentions = {}
        for e in os.listdir("/proc"):
            if e.isdigit() and int(e) != os.getpid():
                cmd = _cmdline(int(e))
                if d in cmd or re.search(
                        r"127\.0\.0\.1:(%d|%d)\b|--port %d\b"
                        % (ports[4], ports[5], ports[2]), cmd):
                    mentions[int(e)] = cmd
        assert not mentions, "processes of the stack left: %r" % mentions
        log = _stack_log(d)
        assert "SIGINT: stopping" in log and "stopped" in log, log[-2000:]
        ok = True
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(30)
        if not ok:
            subprocess.run(["bash", STACK_SH, "stop", d], env=env,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=180)
        if ok and not os.environ.get("CHAT_KEEP"):
            subprocess.run(["bash", STACK_SH, "destroy", d], env=env,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120)
            shutil.rmtree(d, ignore_errors=True)
