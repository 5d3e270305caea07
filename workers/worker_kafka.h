/*
 * worker_kafka.h: the consumer of the requests topic (worker_kafka.c):
 * batches of records in, offsets committed after the batch is answered.
 * chat_pusher consumes the push topic with it too.
 */

#ifndef CHAT_WORKER_KAFKA_H
#define CHAT_WORKER_KAFKA_H

#include "worker.h"


/* one record as the consumer hands it over; valid until the release */
typedef struct {
    const char  *payload;
    size_t       len;
    int32_t      partition;
    int64_t      offset;
    int64_t      timestamp;     /* ms, when produced; -1: unknown */
} chat_record_t;

typedef struct chat_kafka_s  chat_kafka_t;

/* what may be tuned from the command line; 0: the default */
typedef struct {
    int          max_poll_interval_ms;  /* Kafka's max.poll.interval.ms */
    int          commit_every_ms;       /* offset commits at most this
                                         * often */
    const char  *client_id;             /* NULL: chat_worker */
    int          fetch_wait_ms;         /* Kafka's fetch.wait.max.ms */
} chat_kafka_tuning_t;

/* a partition assigned to this worker or taken from it, in order */
typedef struct {
    int32_t  partition;
    bool     assigned;
} chat_kafka_event_t;

chat_kafka_t *chat_kafka_open(const char *brokers, const char *topic,
    const char *group, int partitions, const chat_kafka_tuning_t *tuning,
    chat_stop_t *stop);
/* collects up to max records (waiting a moment for more after the first);
 * they stay valid until chat_kafka_commit or chat_kafka_release */
size_t chat_kafka_collect(chat_kafka_t *k, chat_record_t *records,
    size_t max);
/* commits the offsets after the collected records, then releases them */
void chat_kafka_commit(chat_kafka_t *k);
void chat_kafka_release(chat_kafka_t *k);
void chat_kafka_close(chat_kafka_t *k);
/* counts the rebalances: partitions this worker cached may have moved */
unsigned chat_kafka_rebalances(chat_kafka_t *k);
/* the assignments and revocations since the last call, oldest first, at
 * most max into ev; returns how many (call again until 0) */
size_t chat_kafka_events(chat_kafka_t *k, chat_kafka_event_t *ev,
    size_t max);

/*
 * While the batch in hand waits for PostgreSQL or Redis: the assignment is
 * paused and the consumer polled, so that the worker stays in its group
 * however long the outage (max.poll.interval.ms). false when a partition
 * of the batch was revoked meanwhile (or stop was requested): give the
 * batch up.
 */
bool chat_kafka_hold(chat_kafka_t *k);
/* the paused partitions consumed again (after a hold) */
void chat_kafka_resume(chat_kafka_t *k);
/* gives the batch in hand up: nothing committed, the partitions still
 * held consumed again from its first record */
void chat_kafka_abandon(chat_kafka_t *k);
/* the batch in hand left this partition's records from offset on for a
 * later one: the commit stops before them, and the partition is read
 * again from there once chat_kafka_undefer says so */
void chat_kafka_defer(chat_kafka_t *k, int32_t partition, int64_t offset);
/* the batch's commit left it paused: consumed again (from the cut) */
void chat_kafka_undefer(chat_kafka_t *k, int32_t partition);
/* how long a poll with nothing in hand waits (ms; 0: the default) */
void chat_kafka_set_idle(chat_kafka_t *k, int ms);
/* a newer owner fenced this partition: its records in hand are not
 * committed, and it is not consumed until it is assigned again */
void chat_kafka_fence(chat_kafka_t *k, int32_t partition);


#endif /* CHAT_WORKER_KAFKA_H */
