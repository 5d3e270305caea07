/*
 * worker_stats.c: the line chat_worker logs every 10 s about its batches:
 *
 *   50003 records in 1482 batches, 4998 records/s; ms queued avg 11.7
 *   max 38, batch avg 4.7 max 23
 *
 * "queued" is from nginx producing a record to this worker picking it up
 * (the producer's linger, Kafka and this worker's previous batches);
 * "batch" is storing, answering and delivering one batch. An idle
 * interval logs nothing.
 */

#include <inttypes.h>
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
        log_info("%" PRIu64 " records in %" PRIu64 " batches,"
                 " %.0f records/s; ms queued avg %.1f max %" PRId64
                 ", batch avg %.1f max %" PRId64, s->records, s->batches,
                 (double) s->records * 1000.0 / (double) (now - s->since),
                 s->queued_n ? (double) s->queued_sum / (double) s->queued_n
                             : 0.0,
                 s->queued_max,
                 (double) s->batch_sum / (double) s->batches, s->batch_max);
    }

    chat_stats_start(s, now);
}
