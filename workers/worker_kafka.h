/*
 * worker_kafka.h: the consumer of the requests topic (worker_kafka.c):
 * batches of records in, offsets committed after the batch is answered.
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

chat_kafka_t *chat_kafka_open(const char *brokers, const char *topic,
    const char *group, int partitions, chat_stop_t *stop);
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


#endif /* CHAT_WORKER_KAFKA_H */
