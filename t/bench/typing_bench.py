#!/usr/bin/env python3
"""Typing's two ways, side by side: nginx's Redis script (the normal one)
and Kafka with a worker (the fallback while Redis's sets of members are
rewritten, which is the way every typing frame went before the script).

Starts a stack of its own (t/stack.sh, as the tests do), makes a group of
MEMBERS users with one connection each, and has one of them send FRAMES
typing frames (start and stop in turn: a stop lets the next start through
the 2 s throttle) at RATE a second, while every other member reads them.
The same run is made twice: by the script, then with the member sets'
mark taken away and the rewrite held off (so the fallback is taken).
For each it prints the Kafka records the workers took per frame, the
typer-to-member latency (median and 99th percentile), the CPU seconds per
1000 frames of the nginx worker processes, chat_worker and the Kafka
broker, and Redis's own time in the script (INFO commandstats).

    flock /tmp/ngx-chat-stack.lock python3 t/bench/typing_bench.py

FRAMES (default 2000), RATE (default 150, below chat_rate's 200),
MEMBERS (default 10).
"""

import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
T = os.path.dirname(HERE)
sys.path.insert(0, T)

import conftest  # noqa: E402
from chatlib import unique, wait_for  # noqa: E402

FRAMES = int(os.environ.get("FRAMES", "2000"))
RATE = float(os.environ.get("RATE", "150"))
MEMBERS = int(os.environ.get("MEMBERS", "10"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pids(stack):
    run = os.path.join(stack.dir, "run")

    def read(name):
        with open(os.path.join(run, name)) as f:
            return int(f.read().split()[0])

    master = read("nginx.pid")
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)],
                         stdout=subprocess.PIPE).stdout.decode().split()
    workers = [read(n) for n in os.listdir(run)
               if n.startswith("worker") and n.endswith(".pid")]
    return {"nginx": [int(p) for p in out], "chat_worker": workers,
            "kafka": [read("kafka.pid")]}


def cpu_of(procs):
    out = {}
    for name, ps in procs.items():
        total = 0.0
        for p in ps:
            try:
                total += cpu(p)
            except OSError:
                pass
        out[name] = total
    return out


def worker_records(stack):
    total = 0
    for port in stack.env["CHAT_WORKER_METRICS_PORTS"].split(",")[
            :int(stack.env["CHAT_WORKERS"])]:
        with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port,
                                    timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('chat_worker_records_total{op="typing"}'):
                    total += float(line.split()[-1])
    return total


def evalsha(stack):
    """(calls, usec) of EVALSHA in Redis's commandstats."""
    for line in stack.redis_cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_evalsha:"):
            kv = dict(x.split("=") for x in line.split(":", 1)[1].split(","))
            return int(kv["calls"]), int(kv["usec"])
    return 0, 0


def run(stack, typer, readers, conv, label):
    got = {}                    # (reader index, n) -> monotonic time
    lock = threading.Lock()
    stop = threading.Event()

    def read(i, c):
        while not stop.is_set():
            try:
                f = c.recv_json(0.5)
            except TimeoutError:
                continue
            except Exception:
                return
            if f.get("type") == "typing" and f.get("conversation_id") == conv:
                with lock:
                    got.setdefault((i, read.count[i]), time.monotonic())
                    read.count[i] += 1

    read.count = [0] * len(readers)
    threads = [threading.Thread(target=read, args=(i, c), daemon=True)
               for i, c in enumerate(readers)]
    for t in threads:
        t.start()

    procs = pids(stack)
    cpu0, rec0, ev0 = cpu_of(procs), worker_records(stack), evalsha(stack)
    sent = []
    t0 = time.monotonic()
    for n in range(FRAMES):
        due = t0 + n / RATE
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent.append(time.monotonic())
        typer.send_json({"type": "typing", "conversation_id": conv,
                         "state": "start" if n % 2 == 0 else "stop"})
    want = FRAMES * len(readers)
    try:
        wait_for(lambda: len(got) >= want, 60, what="every frame read")
    finally:
        stop.set()
        for t in threads:
            t.join(2)
    time.sleep(1.0)     # the worker's metrics catch up
    cpu1, rec1, ev1 = cpu_of(procs), worker_records(stack), evalsha(stack)

    lat = sorted((got[(i, n)] - sent[n]) * 1000
                 for i in range(len(readers)) for n in range(FRAMES)
                 if (i, n) in got)
    per_k = 1000.0 / FRAMES
    calls = ev1[0] - ev0[0]
    print("%-8s records/frame %.2f  latency ms p50 %.2f p99 %.2f  "
          "CPU s/1000 frames: nginx %.3f chat_worker %.3f kafka %.3f  "
          "redis EVALSHA calls %d, %.1f us/call"
          % (label, (rec1 - rec0) / FRAMES, statistics.median(lat),
             lat[int(len(lat) * 0.99) - 1],
             (cpu1["nginx"] - cpu0["nginx"]) * per_k,
             (cpu1["chat_worker"] - cpu0["chat_worker"]) * per_k,
             (cpu1["kafka"] - cpu0["kafka"]) * per_k,
             calls, (ev1[1] - ev0[1]) / calls if calls else 0.0))
    sys.stdout.flush()


def main():
    stack = conftest._start_stack()
    clients = []
    try:
        users = [unique("tb") for _ in range(MEMBERS)]
        clients = [stack.connect(u) for u in users]
        rid = unique("cg")
        clients[0].send_json({"type": "create_group", "req_id": rid,
                              "name": "typing bench",
                              "members": users[1:]})
        g = clients[0].recv_until(lambda f: f.get("req_id") == rid, 15)
        conv = g["conversation_id"]
        for c in clients[1:]:
            c.recv_until(lambda f: f.get("type") == "message"
                         and f.get("conversation_id") == conv, 15)
        print("typing frames: %d at %.0f/s from one member of %d; each "
              "read by the %d others" % (FRAMES, RATE, MEMBERS, MEMBERS - 1))
        run(stack, clients[0], clients[1:], conv, "script")
        stack.redis_cli("SET", "chat:convs-writer", "typing_bench", "EX",
                        "600")
        stack.redis_cli("DEL", "chat:members")
        try:
            run(stack, clients[0], clients[1:], conv, "kafka")
        finally:
            stack.redis_cli("DEL", "chat:convs-writer")
    finally:
        for c in clients:
            try:
                c.close(timeout=1)
            except Exception:
                pass
        subprocess.run(["bash", conftest.STACK_SH, "stop", stack.dir],
                       env=stack._proc_env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=180)


if __name__ == "__main__":
    main()
