/*
 * worker_metrics.c: chat_worker's figures in Prometheus's text format
 * (version 0.0.4), named as nginx's are (ngx_chat_metrics.c): the prefix
 * chat_worker_, base units (seconds), _total on counters, a label per
 * dimension (op, partition, reason).
 *
 * Pure code over the atomics of worker_metrics.h: the unit tests include
 * this file and read what it writes with a parser of their own.
 */

#include <inttypes.h>

#include "worker_metrics.h"


void
chat_metrics_init(chat_metrics_t *m)
{
    memset(m, 0, sizeof(*m));
    m->started_ms = chat_now_ms();
    m->lag_partitions = -1;
}


void
chat_metrics_batch(chat_metrics_t *m, size_t n, int64_t started_us,
    int64_t done_us, int64_t queued_ms)
{
    if (m == NULL) {
        return;
    }

    chat_metrics_observe(m, CHAT_HIST_BATCH_RECORDS, (int64_t) n);
    chat_metrics_observe(m, CHAT_HIST_BATCH, done_us - started_us);

    if (queued_ms >= 0) {
        chat_metrics_observe(m, CHAT_HIST_QUEUED, queued_ms * 1000);
    }

    chat_metrics_set(&m->last_batch_ms, chat_now_ms());
}


static void
chat_metrics_help(chat_buf_t *b, const char *name, const char *type,
    const char *help)
{
    chat_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                    type);
}


/* a bound in the histogram's unit, as Prometheus reads an "le" */
static void
chat_metrics_bound(chat_buf_t *b, chat_hist_e h, unsigned i)
{
    static const unsigned  steps[3] = { 1, 2, 5 };
    uint64_t               bound;
    unsigned               k;

    bound = chat_metrics_base(h) * steps[i % 3];

    for (k = 0; k < i / 3; k++) {
        bound *= 10;
    }

    if (h == CHAT_HIST_BATCH_RECORDS) {
        chat_buf_printf(b, "%" PRIu64, bound);
    } else {
        chat_buf_printf(b, "%g", (double) bound / 1e6);
    }
}


static void
chat_metrics_histogram(chat_buf_t *b, chat_metrics_t *m, chat_hist_e h,
    const char *name, const char *help)
{
    chat_histogram_t  *hist = &m->hist[h];
    uint64_t           cumulative = 0, sum;
    unsigned           i;

    chat_metrics_help(b, name, "histogram", help);

    for (i = 0; i <= CHAT_METRICS_BOUNDS; i++) {
        cumulative += chat_metrics_get(&hist->buckets[i]);

        chat_buf_printf(b, "%s_bucket{le=\"", name);

        if (i < CHAT_METRICS_BOUNDS) {
            chat_metrics_bound(b, h, i);
        } else {
            chat_buf_adds(b, "+Inf");
        }

        chat_buf_printf(b, "\"} %" PRIu64 "\n", cumulative);
    }

    sum = chat_metrics_get(&hist->sum);

    if (h == CHAT_HIST_BATCH_RECORDS) {
        chat_buf_printf(b, "%s_sum %" PRIu64 "\n", name, sum);
    } else {
        chat_buf_printf(b, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name,
                        sum / 1000000, sum % 1000000);
    }

    /* the +Inf bucket is the count: one reading, so that they agree */
    chat_buf_printf(b, "%s_count %" PRIu64 "\n", name, cumulative);
}


void
chat_metrics_text(chat_metrics_t *m, chat_buf_t *b)
{
    static const char  *retries[CHAT_RETRY_COUNT] = {
        "conflict", "failure", "connection"
    };

    int64_t   last;
    int32_t   nparts, i;
    unsigned  op;

    chat_metrics_help(b, "chat_worker_start_time_seconds", "gauge",
                      "when this worker started, seconds since the epoch");
    chat_buf_printf(b, "chat_worker_start_time_seconds %" PRId64 ".%03d\n",
                    m->started_ms / 1000, (int) (m->started_ms % 1000));

    chat_metrics_help(b, "chat_worker_records_total", "counter",
                      "Kafka records taken, by op (none: no op this worker"
                      " knows)");
    for (op = 0; op <= NGX_CHAT_WIRE_OP_COUNT; op++) {
        chat_buf_printf(b, "chat_worker_records_total{op=\"%s\"} %" PRIu64
                        "\n",
                        op < NGX_CHAT_WIRE_OP_COUNT
                        ? ngx_chat_wire_op_name((ngx_chat_wire_op_t) op)
                        : "none",
                        chat_metrics_get(&m->records[op]));
    }

    chat_metrics_histogram(b, m, CHAT_HIST_BATCH_RECORDS,
                           "chat_worker_batch_records",
                           "records per batch");
    chat_metrics_histogram(b, m, CHAT_HIST_BATCH,
                           "chat_worker_batch_duration_seconds",
                           "a batch from taken to delivered and committed");
    chat_metrics_histogram(b, m, CHAT_HIST_QUEUED,
                           "chat_worker_queue_wait_seconds",
                           "from nginx producing a batch's oldest record to"
                           " this worker taking it");
    chat_metrics_histogram(b, m, CHAT_HIST_PG_COMMIT,
                           "chat_worker_pg_commit_duration_seconds",
                           "a PostgreSQL transaction, BEGIN to COMMIT");
    chat_metrics_histogram(b, m, CHAT_HIST_PUBLISH,
                           "chat_worker_publish_duration_seconds",
                           "a batch's delivery to Redis, waits for it"
                           " included");

    chat_metrics_help(b, "chat_worker_replays_total", "counter",
                      "records found stored by themselves before a crash");
    chat_buf_printf(b, "chat_worker_replays_total %" PRIu64 "\n",
                    chat_metrics_get(&m->replays));

    chat_metrics_help(b, "chat_worker_pg_retries_total", "counter",
                      "PostgreSQL transactions tried again, by reason");
    for (i = 0; i < CHAT_RETRY_COUNT; i++) {
        chat_buf_printf(b, "chat_worker_pg_retries_total{reason=\"%s\"} %"
                        PRIu64 "\n", retries[i],
                        chat_metrics_get(&m->retries[i]));
    }

    chat_metrics_help(b, "chat_worker_refused_total", "counter",
                      "records the store refused (answered internal)");
    chat_buf_printf(b, "chat_worker_refused_total %" PRIu64 "\n",
                    chat_metrics_get(&m->refused));

    chat_metrics_help(b, "chat_worker_revoked_writes_total", "counter",
                      "times chat:revoked was written whole from"
                      " PostgreSQL");
    chat_buf_printf(b, "chat_worker_revoked_writes_total %" PRIu64 "\n",
                    chat_metrics_get(&m->revoked_writes));

    last = chat_metrics_get(&m->last_batch_ms);

    chat_metrics_help(b, "chat_worker_last_batch_time_seconds", "gauge",
                      "when this worker last delivered a batch, seconds"
                      " since the epoch (0: never)");
    chat_buf_printf(b, "chat_worker_last_batch_time_seconds %" PRId64
                    ".%03d\n", last / 1000, (int) (last % 1000));

    nparts = chat_metrics_get(&m->lag_partitions);

    if (nparts >= 0) {
        chat_metrics_help(b, "chat_worker_kafka_lag_records", "gauge",
                          "records of the requests topic not yet committed"
                          " by the consumer group, by partition");
        for (i = 0; i < nparts; i++) {
            chat_buf_printf(b, "chat_worker_kafka_lag_records{partition="
                            "\"%d\"} %" PRId64 "\n", (int) i,
                            chat_metrics_get(&m->lag[i]));
        }
    }
}
