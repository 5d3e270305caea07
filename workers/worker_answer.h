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
void chat_answer_history(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_group(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_receipt(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_typing(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_answer_none(chat_op_ctx_t *ctx, const chat_item_t *item);


#endif /* CHAT_WORKER_ANSWER_H */
