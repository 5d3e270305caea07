/*
 * worker_metrics.h: chat_worker's figures (worker_metrics.c writes them
 * in Prometheus's text format): counters and histograms that the loop's
 * thread raises and the metrics server's thread (worker_httpd.c) reads.
 *
 * Every figure is a 64-bit word raised with a relaxed atomic add, so
 * neither side waits for the other and a scrape costs the batches
 * nothing; a scrape may see a histogram's count one observation ahead of
 * its buckets, which Prometheus tolerates. The functions here are inline
 * and take NULL (no metrics: the unit tests), so that the parts that
 * count need nothing linked.
 */

#ifndef CHAT_WORKER_METRICS_H
#define CHAT_WORKER_METRICS_H

#include <time.h>

#include "worker_util.h"


/*
 * Histogram bounds on a 1-2-5 scale from a base: base, 2 base, 5 base,
 * 10 base ... 10000 base; the durations' base is 1 ms (to 10 s), the
 * batch sizes' one record (to 10000).
 */
#define CHAT_METRICS_BOUNDS      13

typedef enum {
    CHAT_HIST_BATCH_RECORDS = 0,    /* records per batch */
    CHAT_HIST_BATCH,                /* a batch, stored to delivered */
    CHAT_HIST_QUEUED,               /* produced by nginx to picked up */
    CHAT_HIST_PG_COMMIT,            /* a transaction, BEGIN to COMMIT */
    CHAT_HIST_PUBLISH,              /* a batch's delivery to Redis */
    CHAT_HIST_COUNT
} chat_hist_e;

typedef enum {
    CHAT_RETRY_CONFLICT = 0,        /* serialization, deadlock, duplicate */
    CHAT_RETRY_FAILURE,             /* another error, retried a few times */
    CHAT_RETRY_CONNECTION,          /* the connection lost, reconnected */
    CHAT_RETRY_COUNT
} chat_retry_e;

typedef struct {
    uint64_t  buckets[CHAT_METRICS_BOUNDS + 1];     /* the last: +Inf */
    uint64_t  count;
    uint64_t  sum;                  /* us, or records */
} chat_histogram_t;

/* the most partitions whose lag is shown */
#define CHAT_METRICS_PARTITIONS  256

typedef struct {
    int64_t           started_ms;
    uint64_t          records[NGX_CHAT_WIRE_OP_COUNT + 1];  /* last: no op */
    uint64_t          replays;
    uint64_t          retries[CHAT_RETRY_COUNT];
    uint64_t          refused;
    uint64_t          revoked_writes;   /* chat:revoked written whole */
    int64_t           last_batch_ms;
    chat_histogram_t  hist[CHAT_HIST_COUNT];

    /* the consumer group's lag, written by the metrics thread alone */
    int32_t           lag_partitions;   /* -1: not known (yet) */
    int64_t           lag[CHAT_METRICS_PARTITIONS];
} chat_metrics_t;


#define chat_metrics_add(p, v)  __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define chat_metrics_get(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define chat_metrics_set(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELAXED)


static inline unsigned
chat_metrics_bucket(uint64_t v, uint64_t base)
{
    static const unsigned  steps[3] = { 1, 2, 5 };
    unsigned               i;

    for (i = 0; i < CHAT_METRICS_BOUNDS; i++) {
        if (v <= base * steps[i % 3]) {
            return i;
        }

        if (i % 3 == 2) {
            base *= 10;
        }
    }

    return CHAT_METRICS_BOUNDS;
}


/* the base of a histogram's bounds, in its unit (us or records) */
static inline uint64_t
chat_metrics_base(chat_hist_e h)
{
    return h == CHAT_HIST_BATCH_RECORDS ? 1 : 1000;
}


/* v in the histogram's unit: microseconds, or records */
static inline void
chat_metrics_observe(chat_metrics_t *m, chat_hist_e h, int64_t v)
{
    chat_histogram_t  *hist;

    if (m == NULL) {
        return;
    }

    if (v < 0) {
        v = 0;
    }

    hist = &m->hist[h];
    chat_metrics_add(&hist->buckets[chat_metrics_bucket((uint64_t) v,
                                                        chat_metrics_base(h))],
                     1);
    chat_metrics_add(&hist->sum, (uint64_t) v);
    chat_metrics_add(&hist->count, 1);
}


/* a record, by its op; op out of the wire's range: one without an op
 * this worker knows */
static inline void
chat_metrics_record(chat_metrics_t *m, int op)
{
    if (m == NULL) {
        return;
    }

    if (op < 0 || op >= NGX_CHAT_WIRE_OP_COUNT) {
        op = NGX_CHAT_WIRE_OP_COUNT;
    }

    chat_metrics_add(&m->records[op], 1);
}


/* a record stored by this very record before a crash */
static inline void
chat_metrics_replay(chat_metrics_t *m)
{
    if (m != NULL) {
        chat_metrics_add(&m->replays, 1);
    }
}


/* a PostgreSQL transaction tried again */
static inline void
chat_metrics_retry(chat_metrics_t *m, chat_retry_e why)
{
    if (m != NULL) {
        chat_metrics_add(&m->retries[why], 1);
    }
}


/* a record the store refused (answered internal) */
static inline void
chat_metrics_refused(chat_metrics_t *m)
{
    if (m != NULL) {
        chat_metrics_add(&m->refused, 1);
    }
}


/* chat:revoked written whole from the store */
static inline void
chat_metrics_revoked_write(chat_metrics_t *m)
{
    if (m != NULL) {
        chat_metrics_add(&m->revoked_writes, 1);
    }
}


/* a monotonic clock in microseconds, for the durations */
static inline int64_t
chat_metrics_now_us(void)
{
    struct timespec  now;

    clock_gettime(CLOCK_MONOTONIC, &now);

    return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

void chat_metrics_init(chat_metrics_t *m);

/* a batch of n records: picked up at started_us, delivered at done_us;
 * queued_ms how long the oldest of them waited (-1: not known) */
void chat_metrics_batch(chat_metrics_t *m, size_t n, int64_t started_us,
    int64_t done_us, int64_t queued_ms);

/* the whole text of a scrape, into b */
void chat_metrics_text(chat_metrics_t *m, chat_buf_t *b);


#endif /* CHAT_WORKER_METRICS_H */
