/*
 * pusher.h: what the parts of chat_pusher share, and only that.
 *
 * chat_pusher sends one HTTP POST per (message, device) to the device's
 * push gateway. chat_worker produces a record to the push topic
 * (ngx_chat_wire.h) for each device of a text message's recipients that
 * had no live session when the message was delivered; chat_pusher's
 * consumer group enters the records in the push outbox (sql/040_push.sql)
 * and commits their offsets after that, and the outbox is the retry
 * schedule and the once-only guard. Its parts, each calling only those
 * after it:
 *
 *   chat_pusher.c      the command line, the signals and the loop
 *   pusher_jobs.c      PostgreSQL: records entered, due rows claimed,
 *                      outcomes recorded
 *   pusher_online.c    Redis: which claimed devices have a live session
 *                      (again: one may have come back since)
 *   pusher_http.c      libcurl's multi interface: a batch of POSTs at once
 *   pusher_watch.c     the metrics thread's look every few seconds: the
 *                      outbox's rows to push, PostgreSQL and Kafka up
 *   pusher_metrics.c   the figures, /metrics' and /health's text
 *
 * and under them chat_worker's worker_kafka.c (the consumer group, offset
 * commits), worker_httpd.c (--metrics: the thread serving /metrics and
 * /health), worker_lag.c (the group's lag), worker_topic.c, worker_pg.c (the connection, statements,
 * retried transactions), worker_redis_link.c (a Redis connection from the
 * --redis address) and worker_util.c (log, clock, sleeps, buffers).
 *
 * A row is claimed (state 'sending', committed) before its POST and its
 * outcome is recorded after: a pusher that dies between the two leaves
 * rows that are never sent again (state 'unknown'), so a device never
 * gets one message twice. A failed POST is retried with backoff.
 */

#ifndef CHAT_PUSHER_H
#define CHAT_PUSHER_H

#include <stdbool.h>
#include <stdint.h>

#include "worker.h"


/* one claimed row and what its POST needs */
typedef struct {
    int64_t      message_id;
    char        *user;
    char        *device;
    int          attempts;      /* this one included */
    bool         registered;    /* the device still has a registration */
    char        *endpoint;
    char        *token;
    char        *conv;
    char        *sender;
    int64_t      seq;
    char        *body;
    int64_t      unread;

    /* the outcome */
    bool         online;        /* a live session: no push needed */
    long         status;        /* HTTP status, 0: none (no answer) */
    int64_t      elapsed_us;    /* the POST's whole time */
    char         error[128];
} chat_push_job_t;

typedef enum {
    CHAT_PUSH_SENT,
    CHAT_PUSH_SKIPPED,          /* online, or unregistered */
    CHAT_PUSH_RETRY,
    CHAT_PUSH_FAILED            /* refused for good, or attempts spent */
} chat_push_outcome_t;


#endif /* CHAT_PUSHER_H */
