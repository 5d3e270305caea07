/*
 * worker_answer.h: what the store found -> the frames that answer the
 * requesting session (worker_answer.c). One function per op, named in its
 * row of the table (worker_ops.c).
 */

#ifndef CHAT_WORKER_ANSWER_H
#define CHAT_WORKER_ANSWER_H

#include "worker_item.h"


/* an error to the requesting session, tagged as the request was */
void chat_answer_error(chat_outbox_t *out, const chat_request_t *req,
    const char *code, const char *message);

void chat_answer_send(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_sync(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_conversations(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_receipts(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_search(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_blocked(chat_op_ctx_t *ctx, const chat_item_t *item);

/* a sync's answer into ctx->stream, in this order, as worker_ops.c reads
 * it: the conversations frame (the number of conversations it lists,
 * whose messages follow), each chunk of their messages, sync_done */
size_t chat_answer_sync_list(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_sync_messages(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_sync_done(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_history(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_group(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_receipt(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_typing(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_none(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_repair(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_push(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_upload(chat_op_ctx_t *ctx, const chat_item_t *item);


#endif /* CHAT_WORKER_ANSWER_H */
