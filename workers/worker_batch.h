/*
 * worker_batch.h: one batch of records, from bytes to delivered answers
 * (worker_batch.c).
 */

#ifndef CHAT_WORKER_BATCH_H
#define CHAT_WORKER_BATCH_H

#include "worker_control.h"
#include "worker_chain.h"
#include "worker_index.h"
#include "ngx_chat_media_sign.h"
#include "worker_images.h"
#include "worker_kafka.h"
#include "worker_media.h"
#include "worker_members.h"
#include "worker_pushes.h"
#include "worker_redis.h"
#include "worker_store.h"
#include "worker_stream.h"


/* where a partition's records wait for a later batch: from offset on */
typedef struct {
    int32_t                partition;
    int64_t                offset;
    int64_t                since;       /* ms: first cut there */
    char                   id[NGX_CHAT_MEDIA_ID_LEN + 1];  /* the image */
    bool                   paused;      /* chat_worker's: not consumed
                                         * until the image is made */
} chat_batch_cut_t;

/* partitions cut in one batch at most */
#define CHAT_BATCH_CUTS_MAX  64

/* how long a send may wait in Kafka for its image (ms): then it is made
 * in the send's batch */
#define CHAT_BATCH_CUT_MAX_MS  2000

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
    chat_index_t          *index;       /* the search index's to-do list */

    /* out: the partitions whose records from an offset on the batch left
     * for a later one (a send whose image the images' thread is making,
     * and what follows it there): neither committed nor answered, to be
     * consumed again (chat_kafka_defer) */
    chat_batch_cut_t       cuts[CHAT_BATCH_CUTS_MAX];
    size_t                 ncuts;
    /* in: the cuts of earlier batches, for how long their sends waited */
    const chat_batch_cut_t *waiting;
    size_t                 nwaiting;
} chat_batch_ctx_t;

/* processes one batch to the end: stored, answered, delivered, and its
 * push records acknowledged by Kafka; false when a wait for PostgreSQL,
 * Redis or Kafka was given up (stop, or the partitions taken meanwhile):
 * then commit nothing. The records of a
 * partition found fenced are left out (worker_redis.h). */
bool chat_batch_process(chat_batch_ctx_t *ctx, const chat_record_t *records,
    size_t n);


#endif /* CHAT_WORKER_BATCH_H */
