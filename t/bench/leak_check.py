#!/usr/bin/env python3
"""leak_check.py: does nginx worker memory grow over many connect / send /
close cycles?  (issue #7: "nginx worker memory does not grow over 100,000
connect / send / close cycles (measured)").

Against a running stack (t/stack.sh start DIR writes DIR/stack.env), it runs
--cycles cycles, each:

    open a WebSocket (token in the Authorization header), read `hello`,
    send one `send` to a partner and read its `ack` (or, with --ping-only,
    one `ping` and its `pong`), close politely (close frame, echo, socket).

The cycles run in --procs processes of --threads threads each; every thread
is its own user (and sends to its own partner, who is never connected), so a
thread's connections follow one another and never replace each other.

The run is cut into --samples equal phases.  After each phase (all
connections of the phase closed, --settle seconds of quiet) it reads, for
every nginx worker process, VmRSS from /proc/PID/status and Pss from
/proc/PID/smaps_rollup.  It prints one row per sample and the growth from the
first phase mark (10% by default: the first phase is the warm-up, which fills
pools and caches) to the end, per 10,000 cycles.  Exit status:

    0  growth of the workers' summed VmRSS and Pss within --max-growth-kib
       per 10,000 cycles, and few enough failed cycles
    1  growth over the threshold
    2  too many failed cycles (--max-error-rate), or a worker process
       was replaced during the run (its memory would hide a leak)
    3  could not start (no stack, no nginx workers)

Usage:
    python3 t/bench/leak_check.py /tmp/leakstack     # DIR or DIR/stack.env
    python3 t/bench/leak_check.py /tmp/leakstack --cycles 20000 --ping-only
    python3 t/bench/leak_check.py --cycles 20000     # a stack of its own

Each thread reconnects the same (user, device) right after closing it, as
a phone on a flaky network would; a new connection closed 4001 ("replaced")
by its own previous, already closed one counts as a failed cycle.

Only the Python standard library is used (and t/wsclient.py,
t/stackenv.py, and t/tokens.py, which mints the tokens with chatctl).
"""

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))          # t/
STACK_SH = os.path.join(os.path.dirname(HERE), "stack.sh")

import tokens  # noqa: E402
import wsclient  # noqa: E402
from stackenv import read_env_file  # noqa: E402


# -- the stack ----------------------------------------------------------------

def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def nginx_master(env):
    prefix = env.get("NGINX_PREFIX")
    if prefix:
        data = _read(os.path.join(prefix, "logs", "nginx.pid"))
        if data and data.strip().isdigit():
            pid = int(data.strip())
            if os.path.exists("/proc/%d" % pid):
                return pid
    return None


def _ppid(pid):
    stat = _read("/proc/%d/stat" % pid)
    if not stat:
        return None
    # "pid (comm) S ppid ...": comm may hold spaces and parentheses
    rest = stat[stat.rfind(b")") + 2:].split()
    return int(rest[1]) if len(rest) > 1 else None


def _cmdline(pid):
    data = _read("/proc/%d/cmdline" % pid) or b""
    return data.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def nginx_workers(env):
    """Pids of the "nginx: worker process" children of this stack's master
    (without a pid file: every such process whose parent is an nginx
    master running this stack's prefix or conf)."""
    master = nginx_master(env)
    masters = {master} if master else set()
    if not masters:
        prefix = env.get("NGINX_PREFIX", "")
        for d in os.listdir("/proc"):
            if d.isdigit():
                cl = _cmdline(int(d))
                if cl.startswith("nginx: master process") and prefix \
                        and prefix in cl:
                    masters.add(int(d))
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if _ppid(pid) in masters and \
                _cmdline(pid).startswith("nginx: worker process"):
            out.append(pid)
    return sorted(out)


def mem_of(pid):
    """(VmRSS KiB, Pss KiB) of a process; None where unreadable."""
    rss = pss = None
    st = _read("/proc/%d/status" % pid)
    if st:
        for line in st.decode().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    sr = _read("/proc/%d/smaps_rollup" % pid)
    if sr:
        for line in sr.decode().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


# -- the load -----------------------------------------------------------------

class Counts:
    def __init__(self):
        self.ok = 0
        self.failed = 0
        self.errors = {}           # kind -> count
        self.lock = threading.Lock()

    def fail(self, kind):
        with self.lock:
            self.failed += 1
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def good(self):
        with self.lock:
            self.ok += 1


def one_cycle(url, token, partner, cmid, ping_only, timeout):
    """One connect / send / answer / close; returns None or a failure kind."""
    try:
        c = wsclient.connect(url, token=token, timeout=timeout)
    except wsclient.HandshakeError as e:
        return "handshake HTTP %s" % e.status
    except (OSError, wsclient.WSError, TimeoutError) as e:
        return "connect: %s" % type(e).__name__
    step = "hello"
    try:
        hello = c.recv_json(timeout)
        if hello.get("type") != "hello":
            return "first frame %r" % hello.get("type")
        step = "answer"
        if ping_only:
            c.send_json({"type": "ping", "req_id": cmid})
            want, key = "pong", "req_id"
        else:
            c.send_json({"type": "send", "client_msg_id": cmid,
                         "to": partner, "body": "leak check " + cmid})
            want, key = "ack", "client_msg_id"
        while True:
            f = c.recv_json(timeout)
            if f.get(key) == cmid and f.get("type") in (want, "error"):
                break
        if f["type"] != want:
            return "error %s" % f.get("code")
        return None
    except TimeoutError:
        return "timeout waiting for the %s" % step
    except wsclient.ConnectionClosed as e:
        return "closed (%s, code %s) before the %s" % (e.how, e.code, step)
    except (OSError, wsclient.WSError) as e:
        return "%s before the %s" % (type(e).__name__, step)
    finally:
        c.close(timeout=timeout)


def run_chunk(args):
    """In a client process: counts_per_user[i] cycles for users[i], one
    thread each."""
    (url, secret, chatctl, users, counts_per_user, phase, ping_only,
     timeout) = args
    counts = Counts()

    def thread_main(user, partner, n):
        token = tokens.make_token(secret, user, dev="leak",
                                  exp_delta=24 * 3600, chatctl=chatctl)
        for i in range(n):
            cmid = "p%d-%d" % (phase, i)
            err = one_cycle(url, token, partner, cmid, ping_only, timeout)
            if err is None:
                counts.good()
            else:
                counts.fail(err)

    threads = [threading.Thread(target=thread_main, args=(u, p, n),
                                daemon=True)
               for (u, p), n in zip(users, counts_per_user)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts.ok, counts.failed, counts.errors


# -- main ---------------------------------------------------------------------

def sample(pids):
    row = {}
    for pid in pids:
        row[pid] = mem_of(pid)
    return row


def fmt_kib(v):
    return "-" if v is None else "%d" % v


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_own_stack():
    """t/stack.sh start in a scratch directory on spare ports; its DIR."""
    d = tempfile.mkdtemp(prefix="ngx_chat_leak.", dir="/tmp")
    os.chmod(d, 0o755)
    names = ("CHAT_PORT", "CHAT_TLS_PORT", "REDIS_PORT", "PG_PORT",
             "KAFKA_PORT", "KAFKA_CTRL_PORT")
    env = dict(os.environ, **dict(zip(names, map(str, free_ports(6)))))
    print("leak_check: starting a stack in %s" % d)
    sys.stdout.flush()
    p = subprocess.run(["bash", STACK_SH, "start", d], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        sys.stdout.write(p.stdout.decode("utf-8", "replace")[-3000:])
        stop_own_stack(d)
        return None
    return d


def stop_own_stack(d):
    subprocess.run(["bash", STACK_SH, "destroy", d], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main():
    own = None
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        if "-h" not in sys.argv and "--help" not in sys.argv:
            own = start_own_stack()
            if own is None:
                print("leak_check: could not start a stack", file=sys.stderr)
                return 3
            sys.argv.insert(1, own)
    try:
        return run(sys.argv[1:])
    finally:
        if own:
            stop_own_stack(own)


def run(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stack", nargs="?",
                    help="stack DIR or its stack.env (none: start a stack "
                    "of its own on spare ports, destroyed at the end)")
    ap.add_argument("--cycles", type=int, default=100000)
    ap.add_argument("--procs", type=int, default=4,
                    help="client processes (default 4)")
    ap.add_argument("--threads", type=int, default=8,
                    help="threads per process (default 8)")
    ap.add_argument("--samples", type=int, default=10,
                    help="phases, one memory sample after each (default 10)")
    ap.add_argument("--ping-only", action="store_true",
                    help="ping/pong instead of send/ack (no Kafka, no store)")
    ap.add_argument("--max-growth-kib", type=float, default=512.0,
                    help="allowed growth per 10,000 cycles (default 512)")
    ap.add_argument("--max-error-rate", type=float, default=0.001,
                    help="allowed fraction of failed cycles (default 0.001)")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="quiet seconds before each sample (default 1)")
    ap.add_argument("--timeout", type=float, default=15.0,
                    help="per-step timeout in a cycle (default 15 s)")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)

    try:
        env = read_env_file(a.stack)
    except OSError as e:
        print("leak_check: cannot read the stack env: %s" % e, file=sys.stderr)
        return 3
    url = env.get("CHAT_URL") or "ws://127.0.0.1:%s/chat" % env["CHAT_PORT"]
    secret = env["CHAT_JWT_SECRET"]
    pids = nginx_workers(env)
    if not pids:
        print("leak_check: no nginx worker processes found (NGINX_PREFIX=%s)"
              % env.get("NGINX_PREFIX"), file=sys.stderr)
        return 3

    nthreads = a.procs * a.threads
    total = a.cycles
    if total < a.samples or a.samples < 2:
        print("leak_check: need --samples >= 2 and --cycles >= --samples",
              file=sys.stderr)
        return 3
    # phase k ends at cycle total*k/samples; its cycles are spread over the
    # threads as evenly as they go
    marks = [total * k // a.samples for k in range(a.samples + 1)]

    def split(n):
        return [n // nthreads + (1 if i < n % nthreads else 0)
                for i in range(nthreads)]
    tag = "%x" % (int(time.time() * 1000) & 0xffffffffff)
    users = [("leak%s_%d" % (tag, i), "leakp%s_%d" % (tag, i))
             for i in range(nthreads)]
    groups = [users[p * a.threads:(p + 1) * a.threads]
              for p in range(a.procs)]

    print("leak_check: %s, %d cycles (%s) in %d phases, %d procs x %d "
          "threads, nginx workers %s"
          % (url, total, "ping/pong" if a.ping_only else "send/ack",
             a.samples, a.procs, a.threads, " ".join(map(str, pids))))
    sys.stdout.flush()

    rows = [(0, 0.0, sample(pids))]
    ok = failed = 0
    errors = {}
    t0 = time.monotonic()
    replaced = False
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(a.procs) as pool:
        for phase in range(1, a.samples + 1):
            n = split(marks[phase] - marks[phase - 1])
            res = pool.map(run_chunk, [
                (url, secret, env.get("CHATCTL_BIN"), groups[p],
                 n[p * a.threads:(p + 1) * a.threads], phase, a.ping_only,
                 a.timeout) for p in range(a.procs)])
            for o, f, e in res:
                ok += o
                failed += f
                for k, v in e.items():
                    errors[k] = errors.get(k, 0) + v
            time.sleep(a.settle)
            now = nginx_workers(env)
            if now != pids:
                replaced = True
                print("leak_check: nginx workers changed from %s to %s "
                      "(a worker died?)" % (pids, now))
            rows.append((marks[phase], time.monotonic() - t0,
                         sample(pids)))
            r = rows[-1][2]
            print("  %3d%%  %7d cycles  %6.1fs  rss %s KiB  pss %s KiB  "
                  "failed %d"
                  % (phase * 100 // a.samples, rows[-1][0], rows[-1][1],
                     "+".join(fmt_kib(r[p][0]) for p in pids),
                     "+".join(fmt_kib(r[p][1]) for p in pids), failed))
            sys.stdout.flush()
    took = time.monotonic() - t0

    def tot(row, i):
        vals = [row[p][i] for p in pids]
        return None if any(v is None for v in vals) else sum(vals)

    print()
    hdr = "%-8s %8s %8s" % ("mark", "cycles", "secs")
    for p in pids:
        hdr += " %12s %12s" % ("rss[%d]" % p, "pss[%d]" % p)
    hdr += " %12s %12s" % ("rss total", "pss total")
    print(hdr)
    for n, secs, row in rows:
        line = "%-8s %8d %8.1f" % ("%d%%" % (100 * n // total), n, secs)
        for p in pids:
            line += " %12s %12s" % (fmt_kib(row[p][0]), fmt_kib(row[p][1]))
        line += " %12s %12s" % (fmt_kib(tot(row, 0)), fmt_kib(tot(row, 1)))
        print(line)

    base_n, _, base = rows[1]
    end_n, _, end = rows[-1]
    span = (end_n - base_n) / 10000.0
    result = {"url": url, "cycles": total, "ok": ok, "failed": failed,
              "errors": errors, "seconds": round(took, 1),
              "cycles_per_s": round(total / took, 1) if took else None,
              "mode": "ping" if a.ping_only else "send",
              "workers": pids, "max_growth_kib": a.max_growth_kib,
              "samples": [{"cycles": n, "secs": round(s, 1),
                           "rss_kib": {str(p): r[p][0] for p in pids},
                           "pss_kib": {str(p): r[p][1] for p in pids}}
                          for n, s, r in rows]}
    status = 0
    print()
    print("%d cycles in %.1fs (%.0f/s), %d ok, %d failed%s"
          % (total, took, total / took if took else 0, ok, failed,
             (": " + json.dumps(errors)) if errors else ""))
    for i, name in ((0, "VmRSS"), (1, "Pss")):
        b, e = tot(base, i), tot(end, i)
        if b is None or e is None or span <= 0:
            print("%s growth: not measurable" % name)
            continue
        per10k = (e - b) / span
        result[name.lower() + "_growth_kib_per_10k"] = round(per10k, 1)
        verdict = "ok" if per10k <= a.max_growth_kib else "OVER"
        print("%s of the nginx workers: %d KiB at %d cycles, %d KiB at %d: "
              "%+d KiB, %+.1f KiB per 10k cycles (limit %g): %s"
              % (name, b, base_n, e, end_n, e - b, per10k, a.max_growth_kib,
                 verdict))
        if per10k > a.max_growth_kib:
            status = 1
    if failed > a.max_error_rate * total:
        print("too many failed cycles: %d of %d (limit %g)"
              % (failed, total, a.max_error_rate))
        status = max(status, 2)
    if replaced:
        status = max(status, 2)
    result["status"] = status
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
