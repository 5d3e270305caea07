/*
 * pusher_metrics.c: chat_pusher's figures in Prometheus's text format
 * (version 0.0.4), named as chat_worker's are (worker_metrics.c): the
 * prefix chat_pusher_, base units (seconds), _total on counters, a label
 * per dimension (outcome, class, partition). And /health's few lines.
 *
 * Pure code over the atomics of pusher_metrics.h.
 */

#include <inttypes.h>
#include <string.h>

#include "pusher_metrics.h"


void
chat_pusher_metrics_init(chat_pusher_metrics_t *m)
{
    memset(m, 0, sizeof(*m));
    m->started_ms = chat_now_ms();
    m->pending = -1;
    m->sending = -1;
    m->lag_partitions = -1;
}


static void
chat_pusher_help(chat_buf_t *b, const char *name, const char *type,
    const char *help)
{
    chat_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                    type);
}


static void
chat_pusher_counter(chat_buf_t *b, const char *name, const char *help,
    uint64_t *v)
{
    chat_pusher_help(b, name, "counter", help);
    chat_buf_printf(b, "%s %" PRIu64 "\n", name, chat_metrics_get(v));
}


/* a POST's time: 1 ms to 10 s on the 1-2-5 scale of worker_metrics.h */
static void
chat_pusher_histogram(chat_buf_t *b, chat_histogram_t *h, const char *name,
    const char *help)
{
    static const unsigned  steps[3] = { 1, 2, 5 };
    uint64_t               cumulative = 0, bound, sum;
    unsigned               i, k;

    chat_pusher_help(b, name, "histogram", help);

    for (i = 0; i <= CHAT_METRICS_BOUNDS; i++) {
        cumulative += chat_metrics_get(&h->buckets[i]);

        if (i < CHAT_METRICS_BOUNDS) {
            bound = 1000 * steps[i % 3];
            for (k = 0; k < i / 3; k++) {
                bound *= 10;
            }

            chat_buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                            (double) bound / 1e6, cumulative);
        } else {
            chat_buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name,
                            cumulative);
        }
    }

    sum = chat_metrics_get(&h->sum);
    chat_buf_printf(b, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name,
                    sum / 1000000, sum % 1000000);
    /* the +Inf bucket is the count: one reading, so that they agree */
    chat_buf_printf(b, "%s_count %" PRIu64 "\n", name, cumulative);
}


void
chat_pusher_metrics_text(chat_pusher_metrics_t *m, chat_buf_t *b)
{
    static const char  *outcomes[CHAT_PUSHED_COUNT] = {
        "delivered", "retry", "given_up", "online", "unregistered",
        "unknown"
    };

    static const char  *classes[CHAT_PUSHER_CLASSES] = {
        "none", "1xx", "2xx", "3xx", "4xx", "5xx"
    };

    int64_t   v;
    int32_t   parts;
    unsigned  i;

    chat_pusher_help(b, "chat_pusher_start_time_seconds", "gauge",
                     "When this pusher started (Unix time).");
    chat_buf_printf(b, "chat_pusher_start_time_seconds %" PRId64 "\n",
                    m->started_ms / 1000);

    chat_pusher_counter(b, "chat_pusher_records_total",
                        "Records taken from the push topic.", &m->records);
    chat_pusher_counter(b, "chat_pusher_records_malformed_total",
                        "Records of the push topic that were not push"
                        " records (skipped).", &m->malformed);

    chat_pusher_help(b, "chat_pusher_outbox_entered_total", "counter",
                     "Push records entered in the outbox: new rows, or"
                     " rows already there (a replay).");
    chat_buf_printf(b, "chat_pusher_outbox_entered_total{result=\"new\"} %"
                    PRIu64 "\n", chat_metrics_get(&m->entered_new));
    chat_buf_printf(b, "chat_pusher_outbox_entered_total{result=\"known\"} %"
                    PRIu64 "\n", chat_metrics_get(&m->entered_known));

    chat_pusher_help(b, "chat_pusher_pushes_total", "counter",
                     "Claimed outbox rows by what became of them.");
    for (i = 0; i < CHAT_PUSHED_COUNT; i++) {
        chat_buf_printf(b, "chat_pusher_pushes_total{outcome=\"%s\"} %"
                        PRIu64 "\n", outcomes[i],
                        chat_metrics_get(&m->pushed[i]));
    }

    chat_pusher_help(b, "chat_pusher_http_responses_total", "counter",
                     "POSTs by the class of their answer (none: no"
                     " answer, a timeout or a connection refused).");
    for (i = 0; i < CHAT_PUSHER_CLASSES; i++) {
        chat_buf_printf(b, "chat_pusher_http_responses_total{class=\"%s\"} %"
                        PRIu64 "\n", classes[i],
                        chat_metrics_get(&m->answers[i]));
    }

    chat_pusher_histogram(b, &m->post, "chat_pusher_post_seconds",
                          "A POST's whole time, connect included.");

    v = chat_metrics_get(&m->last_record_ms);
    chat_pusher_help(b, "chat_pusher_last_record_time_seconds", "gauge",
                     "When the last push record was taken (Unix time;"
                     " 0: none yet).");
    chat_buf_printf(b, "chat_pusher_last_record_time_seconds %" PRId64
                    ".%03" PRId64 "\n", v / 1000, v % 1000);

    v = chat_metrics_get(&m->pending);
    if (v >= 0) {
        chat_pusher_help(b, "chat_pusher_outbox_rows", "gauge",
                         "Outbox rows still to push: pending (waiting or"
                         " due) and sending (claimed), a few seconds old.");
        chat_buf_printf(b, "chat_pusher_outbox_rows{state=\"pending\"} %"
                        PRId64 "\n", v);
        chat_buf_printf(b, "chat_pusher_outbox_rows{state=\"sending\"} %"
                        PRId64 "\n", chat_metrics_get(&m->sending));
    }

    chat_pusher_help(b, "chat_pusher_up", "gauge",
                     "Whether the last look found the server answering.");
    chat_buf_printf(b, "chat_pusher_up{server=\"postgresql\"} %d\n",
                    (int) chat_metrics_get(&m->pg_up));
    chat_buf_printf(b, "chat_pusher_up{server=\"kafka\"} %d\n",
                    (int) chat_metrics_get(&m->kafka_up));

    parts = chat_metrics_get(&m->lag_partitions);
    if (parts > 0) {
        chat_pusher_help(b, "chat_pusher_consumer_lag", "gauge",
                         "Push records not yet committed by the group,"
                         " per partition.");
        for (i = 0; i < (unsigned) parts; i++) {
            chat_buf_printf(b, "chat_pusher_consumer_lag{partition=\"%u\"} %"
                            PRId64 "\n", i, chat_metrics_get(&m->lag[i]));
        }
    }
}


bool
chat_pusher_metrics_health(chat_pusher_metrics_t *m, chat_buf_t *b)
{
    bool  pg, kafka;

    pg = chat_metrics_get(&m->pg_up) != 0;
    kafka = chat_metrics_get(&m->kafka_up) != 0;

    chat_buf_printf(b, "%s\npostgresql: %s\nkafka: %s\n",
                    pg && kafka ? "ok" : "unavailable",
                    pg ? "ok" : "unreachable", kafka ? "ok" : "unreachable");

    return pg && kafka;
}
