/*
 * worker_events.h: a batch's group changes, receipts and typing, from
 * requests to frames in the outbox (worker_events.c).
 */

#ifndef CHAT_WORKER_EVENTS_H
#define CHAT_WORKER_EVENTS_H

#include "worker_batch.h"


/* each false when stop interrupted a wait for the store */
bool chat_events_group_op(chat_batch_ctx_t *ctx, chat_request_t *req,
    chat_outbox_t *out, chat_arena_t *arena);
bool chat_events_receipts(chat_batch_ctx_t *ctx, chat_request_t **reqs,
    size_t n, chat_outbox_t *out, chat_arena_t *arena);
bool chat_events_typing(chat_batch_ctx_t *ctx, chat_request_t **reqs,
    size_t n, chat_outbox_t *out, chat_arena_t *arena);


#endif /* CHAT_WORKER_EVENTS_H */
