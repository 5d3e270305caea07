"""chat_pusher --metrics: /metrics counts what became of the pushes (a
push delivered once: delivered, a 2xx answer and a POST time, one new
outbox row; a gateway failing twice first: two retries, two 5xx, then
delivered), the outbox gauge comes back to 0 once they are done, and
/health says ok, and not ok (503, PostgreSQL unreachable) while
PostgreSQL is stopped, ok again after."""

import re
import time
import urllib.error
import urllib.request

import pytest

from chatlib import expect_ack, send_msg, unique, wait_for
from test_push import Receiver, offline_device
import test_zz_faults as faults

T = 15.0


@pytest.fixture(scope="module")
def rx():
    r = Receiver()
    yield r
    r.close()


def url(stack, path):
    return "http://127.0.0.1:%s%s" % (stack.env["CHAT_PUSHER_METRICS_PORT"],
                                      path)


def get(stack, path):
    """(status, text) of a GET, a 503 included."""
    try:
        with urllib.request.urlopen(url(stack, path), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(stack):
    """{"name{labels}": value} of every sample of /metrics."""
    status, text = get(stack, "/metrics")
    assert status == 200, (status, text)
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+) (\S+)$", line)
        assert m, "not a sample line: %r" % line
        out[m.group(1)] = float(m.group(2))
    return out


def idle(stack):
    """Waits for an outbox with nothing to push (earlier tests' retries
    done); the figures then."""
    def done():
        m = scrape(stack)
        return (m.get('chat_pusher_outbox_rows{state="pending"}') == 0
                and m.get('chat_pusher_outbox_rows{state="sending"}') == 0
                and m)
    return wait_for(done, 40, what="the pusher's outbox gauge at 0")


def moved(before, after, name):
    return after.get(name, 0) - before.get(name, 0)


DELIVERED = 'chat_pusher_pushes_total{outcome="delivered"}'
RETRY = 'chat_pusher_pushes_total{outcome="retry"}'
GIVEN_UP = 'chat_pusher_pushes_total{outcome="given_up"}'
C2XX = 'chat_pusher_http_responses_total{class="2xx"}'
C5XX = 'chat_pusher_http_responses_total{class="5xx"}'
NEW = 'chat_pusher_outbox_entered_total{result="new"}'


def test_metrics_text_and_names(stack):
    status, text = get(stack, "/metrics")
    assert status == 200, text
    for name in ("chat_pusher_records_total", "chat_pusher_pushes_total",
                 "chat_pusher_http_responses_total",
                 "chat_pusher_post_seconds", "chat_pusher_outbox_rows",
                 "chat_pusher_outbox_entered_total", "chat_pusher_up"):
        assert "# TYPE %s " % name in text, name
    m = scrape(stack)
    assert m['chat_pusher_up{server="postgresql"}'] == 1, m
    assert m['chat_pusher_post_seconds_bucket{le="+Inf"}'] == \
        m["chat_pusher_post_seconds_count"], m
    assert get(stack, "/nothing")[0] == 404


def test_delivered_once_counted_once(stack, rx):
    a, b = unique("ma"), unique("mb")
    path = "ok/" + b
    offline_device(stack, b, "tablet", rx.url(path), "t-" + b)
    before = idle(stack)
    ca = stack.connect(a, "web")
    try:
        send_msg(ca, "d1", "count me", to=b)
        expect_ack(ca, "d1")
        wait_for(lambda: rx.got(path, 200), T, what="the push")
        after = wait_for(lambda: (lambda m: moved(before, m, DELIVERED) >= 1
                                  and m)(scrape(stack)),
                         T, what="the delivered counter moved")
        time.sleep(1.0)
        after = idle(stack)
        assert moved(before, after, DELIVERED) == 1, (before, after)
        assert moved(before, after, C2XX) == 1, (before, after)
        assert moved(before, after, RETRY) == 0, (before, after)
        assert moved(before, after, GIVEN_UP) == 0, (before, after)
        assert moved(before, after, "chat_pusher_post_seconds_count") == 1
        assert moved(before, after, NEW) == 1, (before, after)
        assert moved(before, after, "chat_pusher_records_total") == 1
        assert after["chat_pusher_last_record_time_seconds"] > 0
    finally:
        ca.close()


def test_failing_gateway_retries_then_delivered_counted(stack, rx):
    a, b = unique("ma"), unique("mb")
    path = "fail/2/" + b
    offline_device(stack, b, "tablet", rx.url(path), "t-" + b)
    before = idle(stack)
    ca = stack.connect(a, "web")
    try:
        send_msg(ca, "f1", "retry me", to=b)
        expect_ack(ca, "f1")
        wait_for(lambda: rx.got(path, 200), T, what="the push after 500s")
        after = wait_for(lambda: (lambda m: moved(before, m, DELIVERED) >= 1
                                  and m)(scrape(stack)),
                         T, what="the delivered counter moved")
        after = idle(stack)
        assert moved(before, after, RETRY) == 2, (before, after)
        assert moved(before, after, C5XX) == 2, (before, after)
        assert moved(before, after, DELIVERED) == 1, (before, after)
        assert moved(before, after, C2XX) == 1, (before, after)
        assert moved(before, after, "chat_pusher_post_seconds_count") == 3
    finally:
        ca.close()


def test_health_follows_postgresql(stack):
    status, text = get(stack, "/health")
    assert status == 200 and text.startswith("ok\n"), (status, text)
    assert "postgresql: ok" in text and "kafka: ok" in text, text
    stack.ctl("pg-stop")
    try:
        got = wait_for(lambda: (lambda r: r[0] == 503 and r)(
            get(stack, "/health")), T, what="/health not ok without PG")
        assert "postgresql: unreachable" in got[1], got
        assert "kafka: ok" in got[1], got
        m = scrape(stack)
        assert m['chat_pusher_up{server="postgresql"}'] == 0, m
        assert 'chat_pusher_outbox_rows{state="pending"}' not in m, m
    finally:
        faults._restore(stack, "pg-start")
    wait_for(lambda: get(stack, "/health")[0] == 200, 30,
             what="/health ok again with PG back")
    faults._stack_healthy(stack)
