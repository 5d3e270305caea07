/*
 * pusher_metrics.h: chat_pusher's figures (pusher_metrics.c writes them
 * in Prometheus's text format, and /health's text): counters the loop
 * raises, gauges the metrics thread's look (pusher_watch.c) sets, all
 * read by the metrics server's thread (worker_httpd.c). Relaxed atomics,
 * as in worker_metrics.h: neither side waits for the other.
 */

#ifndef CHAT_PUSHER_METRICS_H
#define CHAT_PUSHER_METRICS_H

#include "pusher.h"
#include "worker_metrics.h"


/* a push's outcome as counted: chat_push_outcome_t with the skips split,
 * and the claims that lapsed */
typedef enum {
    CHAT_PUSHED_DELIVERED = 0,
    CHAT_PUSHED_RETRY,
    CHAT_PUSHED_GIVEN_UP,
    CHAT_PUSHED_ONLINE,
    CHAT_PUSHED_UNREGISTERED,
    CHAT_PUSHED_UNKNOWN,
    CHAT_PUSHED_COUNT
} chat_pushed_e;

/* an answer's class: none (no answer), 1xx ... 5xx */
#define CHAT_PUSHER_CLASSES  6

typedef struct {
    int64_t           started_ms;
    uint64_t          records;          /* taken from the push topic */
    uint64_t          malformed;        /* of them, not push records */
    uint64_t          entered_new;
    uint64_t          entered_known;    /* already in the outbox */
    uint64_t          pushed[CHAT_PUSHED_COUNT];
    uint64_t          answers[CHAT_PUSHER_CLASSES];
    int64_t           last_record_ms;   /* 0: none yet */
    chat_histogram_t  post;             /* a POST's whole time, us */

    /* the watch's, every few seconds (pusher_watch.c) */
    int64_t           pending;          /* -1: not known */
    int64_t           sending;
    int32_t           pg_up;
    int32_t           kafka_up;
    int32_t           lag_partitions;   /* -1: not known */
    int64_t           lag[CHAT_METRICS_PARTITIONS];
} chat_pusher_metrics_t;


static inline void
chat_pusher_metrics_post(chat_pusher_metrics_t *m, long status,
    int64_t elapsed_us)
{
    unsigned  c = status >= 100 && status <= 599 ? (unsigned) status / 100 : 0;

    chat_metrics_add(&m->answers[c], 1);

    if (elapsed_us < 0) {
        elapsed_us = 0;
    }

    chat_metrics_add(&m->post.buckets[chat_metrics_bucket(
                         (uint64_t) elapsed_us, 1000)], 1);
    chat_metrics_add(&m->post.sum, (uint64_t) elapsed_us);
    chat_metrics_add(&m->post.count, 1);
}


void chat_pusher_metrics_init(chat_pusher_metrics_t *m);
/* the whole text of a scrape, into b */
void chat_pusher_metrics_text(chat_pusher_metrics_t *m, chat_buf_t *b);
/* /health's text into b; true when Kafka and PostgreSQL answered */
bool chat_pusher_metrics_health(chat_pusher_metrics_t *m, chat_buf_t *b);


#endif /* CHAT_PUSHER_METRICS_H */
