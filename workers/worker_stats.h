/*
 * worker_stats.h: what the batches of one interval did and where their
 * time went, logged every CHAT_STATS_INTERVAL_MS (worker_stats.c).
 */

#ifndef CHAT_WORKER_STATS_H
#define CHAT_WORKER_STATS_H

#include "worker_kafka.h"


#define CHAT_STATS_INTERVAL_MS  10000


typedef struct {
    int64_t   since;        /* when the interval began */
    uint64_t  records;
    uint64_t  batches;
    int64_t   queued_sum;
    int64_t   queued_max;
    uint64_t  queued_n;
    int64_t   batch_sum;
    int64_t   batch_max;
} chat_stats_t;

void chat_stats_start(chat_stats_t *s, int64_t now);
/* a batch of these records, picked up at started and delivered at done */
void chat_stats_batch(chat_stats_t *s, const chat_record_t *records,
    size_t n, int64_t started, int64_t done);
/* how long the oldest of these records waited for pickup at started (ms),
 * -1 when none says when it was produced */
int64_t chat_stats_queued(const chat_record_t *records, size_t n,
    int64_t started);
/* at the end of an interval, logs its line and starts the next */
void chat_stats_tick(chat_stats_t *s, int64_t now);


#endif /* CHAT_WORKER_STATS_H */
