/*
 * test_pusher_metrics.c: unit tests of chat_pusher's figures in
 * Prometheus's text format and of /health's text (pusher_metrics.c).
 *
 * The pusher's files are included, not linked. Prints "N passed, N
 * failed" and exits 1 on a failure.
 */

#include <stdlib.h>

#include "../../workers/worker_util.c"
#include "../../workers/pusher_metrics.c"

static int  passed, failed;

#define check(cond)                                                        \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                  \
    } while (0)


/* the text has this whole line */
static bool
has_line(const char *text, const char *line)
{
    size_t       n = strlen(line);
    const char  *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') {
            return true;
        }
        p += n;
    }

    return false;
}


static void
test_text(void)
{
    chat_pusher_metrics_t  m;
    chat_buf_t             b = { 0 };
    const char            *t;

    chat_pusher_metrics_init(&m);
    chat_pusher_metrics_text(&m, &b);
    t = chat_buf_cstr(&b);

    check(has_line(t, "chat_pusher_records_total 0"));
    check(has_line(t, "chat_pusher_pushes_total{outcome=\"delivered\"} 0"));
    check(has_line(t, "chat_pusher_pushes_total{outcome=\"unknown\"} 0"));
    check(has_line(t, "chat_pusher_up{server=\"postgresql\"} 0"));
    /* not looked yet: no gauge rather than a 0 that means empty */
    check(strstr(t, "chat_pusher_outbox_rows") == NULL);
    check(strstr(t, "chat_pusher_consumer_lag") == NULL);
    check(has_line(t, "chat_pusher_post_seconds_count 0"));
    chat_buf_free(&b);

    chat_metrics_add(&m.records, 3);
    chat_metrics_add(&m.entered_new, 2);
    chat_metrics_add(&m.entered_known, 1);
    chat_metrics_add(&m.pushed[CHAT_PUSHED_DELIVERED], 1);
    chat_metrics_add(&m.pushed[CHAT_PUSHED_RETRY], 2);
    chat_pusher_metrics_post(&m, 500, 1500);        /* 1.5 ms: le 0.002 */
    chat_pusher_metrics_post(&m, 503, 900);         /* le 0.001 */
    chat_pusher_metrics_post(&m, 204, 20000000);    /* 20 s: +Inf only */
    chat_pusher_metrics_post(&m, 0, 5000000);       /* no answer, 5 s */
    chat_pusher_metrics_post(&m, 999, -4);          /* not a status */
    chat_metrics_set(&m.pending, 7);
    chat_metrics_set(&m.sending, 1);
    chat_metrics_set(&m.pg_up, 1);
    m.lag[0] = 4;
    m.lag[1] = 0;
    chat_metrics_set(&m.lag_partitions, 2);

    chat_pusher_metrics_text(&m, &b);
    t = chat_buf_cstr(&b);

    check(has_line(t, "chat_pusher_records_total 3"));
    check(has_line(t, "chat_pusher_outbox_entered_total{result=\"new\"} 2"));
    check(has_line(t,
                   "chat_pusher_outbox_entered_total{result=\"known\"} 1"));
    check(has_line(t, "chat_pusher_pushes_total{outcome=\"delivered\"} 1"));
    check(has_line(t, "chat_pusher_pushes_total{outcome=\"retry\"} 2"));
    check(has_line(t, "chat_pusher_http_responses_total{class=\"5xx\"} 2"));
    check(has_line(t, "chat_pusher_http_responses_total{class=\"2xx\"} 1"));
    check(has_line(t, "chat_pusher_http_responses_total{class=\"none\"} 2"));
    check(has_line(t, "chat_pusher_post_seconds_bucket{le=\"0.001\"} 2"));
    check(has_line(t, "chat_pusher_post_seconds_bucket{le=\"0.002\"} 3"));
    check(has_line(t, "chat_pusher_post_seconds_bucket{le=\"5\"} 4"));
    check(has_line(t, "chat_pusher_post_seconds_bucket{le=\"10\"} 4"));
    check(has_line(t, "chat_pusher_post_seconds_bucket{le=\"+Inf\"} 5"));
    check(has_line(t, "chat_pusher_post_seconds_count 5"));
    check(has_line(t, "chat_pusher_post_seconds_sum 25.002400"));
    check(has_line(t, "chat_pusher_outbox_rows{state=\"pending\"} 7"));
    check(has_line(t, "chat_pusher_outbox_rows{state=\"sending\"} 1"));
    check(has_line(t, "chat_pusher_up{server=\"postgresql\"} 1"));
    check(has_line(t, "chat_pusher_up{server=\"kafka\"} 0"));
    check(has_line(t, "chat_pusher_consumer_lag{partition=\"0\"} 4"));
    check(has_line(t, "chat_pusher_consumer_lag{partition=\"1\"} 0"));
    check(strstr(t, "partition=\"2\"") == NULL);
    chat_buf_free(&b);
}


static void
test_health(void)
{
    chat_pusher_metrics_t  m;
    chat_buf_t             b = { 0 };

    chat_pusher_metrics_init(&m);
    check(!chat_pusher_metrics_health(&m, &b));
    check(strcmp(chat_buf_cstr(&b), "unavailable\npostgresql: unreachable\n"
                 "kafka: unreachable\n") == 0);
    chat_buf_free(&b);

    m.kafka_up = 1;
    check(!chat_pusher_metrics_health(&m, &b));
    check(strcmp(chat_buf_cstr(&b), "unavailable\npostgresql: unreachable\n"
                 "kafka: ok\n") == 0);
    chat_buf_free(&b);

    m.pg_up = 1;
    check(chat_pusher_metrics_health(&m, &b));
    check(strcmp(chat_buf_cstr(&b), "ok\npostgresql: ok\nkafka: ok\n") == 0);
    chat_buf_free(&b);
}


int
main(void)
{
    test_text();
    test_health();

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
