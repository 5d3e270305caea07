/*
 * worker_stats.c: the event chat_worker logs every 10 s about its
 * batches:
 *
 *   {"time":...,"level":"info","event":"stats","pid":1234,
 *    "records":50003,"batches":1482,"records_per_s":4998,
 *    "queued_ms_avg":11.7,"queued_ms_max":38,"batch_ms_avg":4.7,
 *    "batch_ms_max":23,"interval_ms":10004}
 *
 * "queued" is from nginx producing a record to this worker picking it up
 * (the producer's linger, Kafka and this worker's previous batches);
 * "batch" is storing, answering and delivering one batch. An idle
 * interval logs nothing.
 */

#include <string.h>

#include "worker_stats.h"
#include "worker_util.h"


void
chat_stats_start(chat_stats_t *s, int64_t now)
{
    memset(s, 0, sizeof(*s));
    s->since = now;
}


static int64_t
chat_stats_oldest(const chat_record_t *records, size_t n)
{
    int64_t  oldest = -1;
    size_t   i;

    for (i = 0; i < n; i++) {
        if (records[i].timestamp >= 0
            && (oldest < 0 || records[i].timestamp < oldest))
        {
            oldest = records[i].timestamp;
        }
    }

    return oldest;
}


int64_t
chat_stats_queued(const chat_record_t *records, size_t n, int64_t started)
{
    int64_t  oldest = chat_stats_oldest(records, n);

    return oldest >= 0 ? started - oldest : -1;
}


void
chat_stats_batch(chat_stats_t *s, const chat_record_t *records, size_t n,
    int64_t started, int64_t done)
{
    int64_t  oldest, queued, batch;

    oldest = chat_stats_oldest(records, n);
    queued = oldest >= 0 ? started - oldest : -1;
    batch = done - started;

    s->records += n;
    s->batches++;

    if (queued >= 0) {
        s->queued_sum += queued;
        s->queued_n++;
        if (queued > s->queued_max) {
            s->queued_max = queued;
        }
    }

    s->batch_sum += batch;
    if (batch > s->batch_max) {
        s->batch_max = batch;
    }
}


void
chat_stats_tick(chat_stats_t *s, int64_t now)
{
    if (now - s->since < CHAT_STATS_INTERVAL_MS) {
        return;
    }

    if (s->batches) {
        chat_log_line_t  l;

        chat_log_begin(&l, "info", "stats");
        chat_log_int(&l, "records", (int64_t) s->records);
        chat_log_int(&l, "batches", (int64_t) s->batches);
        chat_log_int(&l, "records_per_s",
                     (int64_t) ((double) s->records * 1000.0
                                / (double) (now - s->since) + 0.5));
        chat_log_ms(&l, "queued_ms_avg",
                    s->queued_n ? (double) s->queued_sum
                                  / (double) s->queued_n
                                : 0.0);
        chat_log_ms(&l, "queued_ms_max", (double) s->queued_max);
        chat_log_ms(&l, "batch_ms_avg",
                    (double) s->batch_sum / (double) s->batches);
        chat_log_ms(&l, "batch_ms_max", (double) s->batch_max);
        chat_log_int(&l, "interval_ms", now - s->since);
        chat_log_end(&l);
    }

    chat_stats_start(s, now);
}
