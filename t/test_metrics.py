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


def test_prometheus_scrapes_and_answers(stack, clients):
    """Debian's Prometheus scrapes the stack's nginx and answers a query
    over what it scraped."""
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
                % stack.env["CHAT_PORT"])
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
        c.close()
    finally:
        p.terminate()
        p.wait(20)
        log.close()
