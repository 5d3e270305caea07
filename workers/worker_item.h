/*
 * worker_item.h: what one record becomes on its way through chat_worker's
 * layers, and what the functions of an op's row are given.
 *
 * An item is a parsed request, the row of its op (worker_ops.c) and what
 * the store found for it: the store's results go in, the answer and the
 * fan-out read them and write frames into the outbox. Nothing here is
 * PostgreSQL's or Redis's: the answer and the fan-out are pure code.
 */

#ifndef CHAT_WORKER_ITEM_H
#define CHAT_WORKER_ITEM_H

#include "worker_control.h"
#include "worker_index.h"
#include "worker_images.h"
#include "worker_media.h"
#include "worker_members.h"
#include "worker_outbox.h"
#include "worker_request.h"
#include "worker_store.h"
#include "worker_stream.h"


typedef struct chat_op_s  chat_op_t;

typedef struct {
    const chat_request_t  *req;
    const chat_op_t       *op;         /* the row of req->op */

    bool                   failed;     /* the store refused it: internal */
    bool                   replay;     /* stored by this very record before
                                        * a crash (the store says) */
    bool                   answered;   /* a replay whose answers went out
                                        * before the crash: say nothing */

    chat_streamed_t        streamed;   /* sync: where its answer went */

    /* what the store found, by the op's kind */
    union {
        chat_send_t        send;
        chat_read_t        read;
        chat_group_op_t    group;
        chat_receipt_t     receipt;
        chat_redact_t      redact;
        chat_repair_t      repair;
        chat_push_op_t     push;
        chat_upload_op_t   upload;
        chat_block_t       block;
        struct {
            bool           allowed;    /* typing: a member may type */
            bool           hidden;     /* one of a direct pair blocks
                                          the other: shown to nobody */
        }                  typing;
    } u;
} chat_item_t;

/* what a row's functions work with: the store and the cache for the
 * store step, the outbox for the answer and the fan-out, the stream for
 * the answers too large for the outbox, and the batch's arena for
 * everything that lives as long as the batch; the revocations' Redis for
 * their store step, the figures for anyone, and the search index's to-do
 * list for the sends' store step */
typedef struct {
    chat_store_t          *store;
    chat_members_cache_t  *members;
    size_t                 max_group_members;
    size_t                 receipt_fanout_max;  /* groups of more members
                                                 * coalesce receipts; 0:
                                                 * none */
    const char            *push_endpoints;  /* allowed URL prefixes, comma
                                             * separated; NULL: any */
    const chat_media_t    *media;           /* attachments' files */
    chat_images_t         *images;          /* their thread, or NULL:
                                             * made on this one */
    chat_outbox_t         *out;
    chat_stream_t         *stream;
    chat_arena_t          *arena;
    chat_control_t        *control;    /* revocations into Redis */
    chat_metrics_t        *metrics;    /* or NULL */
    chat_index_t          *index;      /* the sends' messages to index, or
                                        * NULL */
} chat_op_ctx_t;


#endif /* CHAT_WORKER_ITEM_H */
