"""Operating it: nginx's metrics in the Prometheus text format (read by
Prometheus's own parser, and scraped and queried by a real Prometheus),
and the health locations."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import wsclient
from chatlib import expect_ack, expect_message, send_msg, unique, wait_for
from conftest import free_ports

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:         # Debian's python3-prometheus-client
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families


def http_get(stack, path):
    url = "http://127.0.0.1:%s%s" % (stack.env["CHAT_PORT"], path)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def metrics(stack):
    status, headers, body = http_get(stack, "/metrics")
    assert status == 200, (status, body)
    assert headers["Content-Type"].startswith("text/plain"), headers
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return families, body


def sample(families, name, **labels):
    for fam in families.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v
                                      for k, v in labels.items()):
                return s.value
    raise AssertionError("no sample %s%r" % (name, labels))


def test_metrics_count_what_happens(stack, clients):
    before, _ = metrics(stack)
    a_id, b_id = unique("ma"), unique("mb")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    for i in range(5):
        send_msg(a, "m%d" % i, "hello", to=b_id)
        expect_ack(a, "m%d" % i)
        expect_message(b, "m%d" % i)
    a.send_json({"type": "nonsense", "req_id": 1})
    a.recv_type("error", 5)
    with pytest.raises(wsclient.HandshakeError):
        wsclient.connect(stack.url, token="bad").abort()
    after, body = metrics(stack)

    # names and types by Prometheus's conventions
    assert after["chat_handshakes"].type == "counter"
    assert after["chat_connections"].type == "gauge"
    assert after["chat_send_ack_seconds"].type == "histogram"
    for name in body.split("\n"):
        if name.startswith("# TYPE") and name.endswith("counter"):
            assert name.split()[2].endswith("_total"), name

    assert sample(after, "chat_connections", location="/chat") >= 2
    assert (sample(after, "chat_handshakes_total", status="101")
            - sample(before, "chat_handshakes_total", status="101")) >= 2
    assert (sample(after, "chat_handshakes_total", status="401")
            - sample(before, "chat_handshakes_total", status="401")) >= 1
    assert (sample(after, "chat_messages_sent_total")
            - sample(before, "chat_messages_sent_total")) >= 5
    # each of the five acks came back as an ack record with its send's time
    assert (sample(after, "chat_send_ack_seconds_count")
            - sample(before, "chat_send_ack_seconds_count")) >= 5
    assert (sample(after, "chat_errors_total", code="bad_request")
            - sample(before, "chat_errors_total", code="bad_request")) >= 1
    assert sample(after, "chat_received_bytes_total") > 0
    assert sample(after, "chat_redis_up", link="commands") >= 1
    assert sample(after, "chat_nginx_processes") >= 1


def test_health(stack):
    status, _, body = http_get(stack, "/health")
    assert status == 200 and body == "alive\n", (status, body)
    wait_for(lambda: http_get(stack, "/ready")[0] == 200, 10,
             what="ready")
    assert http_get(stack, "/ready")[2] == "ready\n"


def test_ready_is_503_without_redis(stack):
    stack.ctl("redis-stop")
    try:
        status, _, body = wait_for(
            lambda: (lambda r: r if r[0] == 503 else None)(
                http_get(stack, "/ready")), 15, what="503 without Redis")
        assert "redis down" in body, body
        assert http_get(stack, "/health")[0] == 200     # still alive
    finally:
        stack.ctl("redis-start")
    wait_for(lambda: http_get(stack, "/ready")[0] == 200, 30,
             what="ready again with Redis")


def worker_metrics_ports(stack):
    """The metrics ports of the workers that run (stack.env lists one for
    each worker the stack may start)."""
    ports = stack.env["CHAT_WORKER_METRICS_PORTS"].split(",")
    return ports[:int(stack.env["CHAT_WORKERS"])]


def worker_metrics(port):
    url = "http://127.0.0.1:%s/metrics" % port
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain"), r.headers
        body = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(body)}, body


def test_worker_metrics(stack, clients):
    """A worker's figures, read by Prometheus's own parser: named as
    nginx's are, and counting what the worker did."""
    port = worker_metrics_ports(stack)[0]
    before, _ = worker_metrics(port)
    a_id, b_id = unique("wa"), unique("wb")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    for i in range(5):
        send_msg(a, "w%d" % i, "hello", to=b_id)
        expect_ack(a, "w%d" % i)
        expect_message(b, "w%d" % i)

    def grown():
        after, body = worker_metrics(port)
        done = (sample(after, "chat_worker_records_total", op="send")
                - sample(before, "chat_worker_records_total", op="send"))
        return (after, body) if done >= 5 else None

    after, body = wait_for(grown, 10, what="the sends counted")

    for name, kind in (("chat_worker_records", "counter"),
                       ("chat_worker_batch_records", "histogram"),
                       ("chat_worker_batch_duration_seconds", "histogram"),
                       ("chat_worker_queue_wait_seconds", "histogram"),
                       ("chat_worker_pg_commit_duration_seconds",
                        "histogram"),
                       ("chat_worker_publish_duration_seconds", "histogram"),
                       ("chat_worker_replays", "counter"),
                       ("chat_worker_pg_retries", "counter"),
                       ("chat_worker_last_batch_time_seconds", "gauge")):
        assert after[name].type == kind, (name, after[name].type)
    for line in body.split("\n"):
        if line.startswith("# TYPE") and line.endswith("counter"):
            assert line.split()[2].endswith("_total"), line

    assert (sample(after, "chat_worker_batch_duration_seconds_count")
            > sample(before, "chat_worker_batch_duration_seconds_count"))
    assert (sample(after, "chat_worker_pg_commit_duration_seconds_count")
            - sample(before, "chat_worker_pg_commit_duration_seconds_count")
            >= 1)
    assert (sample(after, "chat_worker_publish_duration_seconds_bucket",
                   le="+Inf")
            == sample(after, "chat_worker_publish_duration_seconds_count"))
    assert sample(after, "chat_worker_last_batch_time_seconds") \
        > time.time() - 60

    # the group's lag, once the metrics thread has asked Kafka
    def lag():
        fams, _ = worker_metrics(port)
        fam = fams.get("chat_worker_kafka_lag_records")
        return fam if fam and fam.samples else None

    fam = wait_for(lag, 15, what="the lag per partition")
    assert sorted(int(s.labels["partition"]) for s in fam.samples) == \
        list(range(int(stack.env["CHAT_PARTITIONS"])))
    assert all(s.value >= 0 for s in fam.samples)

    # anything but GET /metrics
    for path, code in (("/", 404), ("/metricsx", 404)):
        try:
            urllib.request.urlopen("http://127.0.0.1:%s%s" % (port, path),
                                   timeout=10)
            raise AssertionError("%s answered" % path)
        except urllib.error.HTTPError as e:
            assert e.code == code, (path, e.code)


def test_prometheus_scrapes_and_answers(stack, clients, capsys):
    """Debian's Prometheus scrapes the stack's nginx and its workers and
    answers a query over what it scraped of each."""
    prom = shutil.which("prometheus")
    assert prom, "Debian's prometheus package is missing (make pkgs)"
    port, = free_ports(1)
    d = tempfile.mkdtemp(prefix="prom.", dir=stack.dir)
    with open(os.path.join(d, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n"
                "scrape_configs:\n"
                "  - job_name: ngx_chat\n"
                "    static_configs:\n"
                "      - targets: ['127.0.0.1:%s']\n"
                "  - job_name: chat_worker\n"
                "    static_configs:\n"
                "      - targets: [%s]\n"
                % (stack.env["CHAT_PORT"],
                   ", ".join("'127.0.0.1:%s'" % p
                             for p in worker_metrics_ports(stack))))
    log = open(os.path.join(d, "prometheus.log"), "w")
    p = subprocess.Popen([prom, "--config.file", d + "/prometheus.yml",
                          "--storage.tsdb.path", d + "/data",
                          "--web.listen-address", "127.0.0.1:%d" % port],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        c = clients.add(stack.connect(unique("prom")))

        def query():
            url = ("http://127.0.0.1:%d/api/v1/query?query="
                   "chat_connections%%7Blocation%%3D%%22/chat%%22%%7D" % port)
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    out = json.loads(r.read())
            except OSError:
                return None
            res = out.get("data", {}).get("result", [])
            return res if res and float(res[0]["value"][1]) >= 1 else None

        res = wait_for(query, 60, interval=1, what="Prometheus's answer")
        assert res[0]["metric"]["job"] == "ngx_chat", res

        def query_workers():
            url = ("http://127.0.0.1:%d/api/v1/query?query=" % port
                   + urllib.parse.quote('sum by (job) (chat_worker_records_'
                                        'total{job="chat_worker"})'))
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    out = json.loads(r.read())
            except OSError:
                return None
            res = out.get("data", {}).get("result", [])
            return res if res and float(res[0]["value"][1]) >= 1 else None

        res = wait_for(query_workers, 60, interval=1,
                       what="Prometheus's answer about the workers")
        assert res[0]["metric"]["job"] == "chat_worker", res

        def targets_up():
            url = ("http://127.0.0.1:%d/api/v1/query?query=" % port
                   + urllib.parse.quote('up{job="chat_worker"}'))
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    out = json.loads(r.read())
            except OSError:
                return None
            res = out.get("data", {}).get("result", [])
            return res if len(res) == len(worker_metrics_ports(stack)) \
                and all(float(x["value"][1]) == 1 for x in res) else None

        wait_for(targets_up, 60, interval=1, what="every worker up")
        c.close()

        # what an operator sees: the queries' answers and a few lines of
        # each endpoint
        _, _, ngx = http_get(stack, "/metrics")
        port0 = worker_metrics_ports(stack)[0]
        with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port0,
                                    timeout=10) as r:
            wrk = r.read().decode()
        with capsys.disabled():
            print("\n    [test_metrics] Prometheus: %s" % json.dumps(res))
            for name, text in (("nginx", ngx), ("worker", wrk)):
                lines = [x for x in text.splitlines()
                         if x and not x.startswith("#")][:12]
                print("    [test_metrics] %s /metrics:\n      %s"
                      % (name, "\n      ".join(lines)))
    finally:
        p.terminate()
        p.wait(20)
        log.close()
