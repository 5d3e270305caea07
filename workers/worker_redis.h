/*
 * worker_redis.h: chat_worker's Redis connection (worker_redis.c): the
 * delivery of a batch's outbox, in one MULTI/EXEC with the batch's
 * delivered marks, and the reading of those marks.
 */

#ifndef CHAT_WORKER_REDIS_H
#define CHAT_WORKER_REDIS_H

#include "worker_payload.h"


typedef struct chat_redis_s  chat_redis_t;

/* the last offset of a partition that a batch answered */
typedef struct {
    int32_t  partition;
    int64_t  offset;
} chat_position_t;

chat_redis_t *chat_redis_open(const char *addr, const char *delivered_key,
    chat_stop_t *stop);
/* delivers everything in the outbox and records the batch's positions, in
 * one transaction; retries until it worked (true) or stop was requested
 * (false) */
bool chat_redis_deliver(chat_redis_t *r, chat_outbox_t *out,
    chat_arena_t *arena, const chat_position_t *done, size_t ndone);
/* the recorded positions of the partitions (-1: none); false on stop */
bool chat_redis_delivered(chat_redis_t *r, const int32_t *partitions,
    size_t n, int64_t *offsets);
void chat_redis_close(chat_redis_t *r);


#endif /* CHAT_WORKER_REDIS_H */
