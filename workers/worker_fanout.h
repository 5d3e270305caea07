/*
 * worker_fanout.h: what the store found -> the frames for everyone but
 * the requesting session (worker_fanout.c). One function per op that
 * others hear of, named in its row of the table (worker_ops.c).
 */

#ifndef CHAT_WORKER_FANOUT_H
#define CHAT_WORKER_FANOUT_H

#include "worker_item.h"


void chat_fanout_send(chat_op_ctx_t *ctx, const chat_item_t *item);
/* send: a push for each device of the recipients registered for push */
void chat_fanout_push(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_fanout_group(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_fanout_repair(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_fanout_receipt(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_fanout_typing(chat_op_ctx_t *ctx, const chat_item_t *item);
/* block, unblock: the blocker's set of blocked users in Redis */
void chat_fanout_block(chat_op_ctx_t *ctx, const chat_item_t *item);
void chat_fanout_redact(chat_op_ctx_t *ctx, const chat_item_t *item);


#endif /* CHAT_WORKER_FANOUT_H */
