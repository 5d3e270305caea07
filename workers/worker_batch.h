/*
 * worker_batch.h: one batch of records, from bytes to delivered answers
 * (worker_batch.c).
 */

#ifndef CHAT_WORKER_BATCH_H
#define CHAT_WORKER_BATCH_H

#include "worker_control.h"
#include "worker_chain.h"
#include "worker_images.h"
#include "worker_kafka.h"
#include "worker_media.h"
#include "worker_members.h"
#include "worker_pushes.h"
#include "worker_redis.h"
#include "worker_store.h"
#include "worker_stream.h"


typedef struct {
    chat_store_t          *store;
    chat_redis_t          *redis;
    chat_stop_t           *stop;
    chat_members_cache_t  *members;
    chat_chain_t          *chain;       /* the partitions' marks */
    size_t                 max_group_members;
    size_t                 receipt_fanout_max;  /* chat_op_ctx_t's */
    const char            *push_endpoints;  /* chat_op_ctx_t's */
    const chat_media_t    *media;
    chat_images_t         *images;      /* chat_op_ctx_t's */
    chat_control_t        *control;
    chat_metrics_t        *metrics;
    chat_stream_t         *stream;      /* for the answers too large to
                                         * publish */
    chat_pushes_t         *pushes;      /* the push topic's producer */
} chat_batch_ctx_t;

/* processes one batch to the end: stored, answered, delivered, and its
 * push records acknowledged by Kafka; false when a wait for PostgreSQL,
 * Redis or Kafka was given up (stop, or the partitions taken meanwhile):
 * then commit nothing. The records of a
 * partition found fenced are left out (worker_redis.h). */
bool chat_batch_process(chat_batch_ctx_t *ctx, const chat_record_t *records,
    size_t n);


#endif /* CHAT_WORKER_BATCH_H */
