/*
 * worker_answer.c: what the store found, as the frames that answer the
 * requesting session: acks, the read answers, the group frame, and the
 * errors, tagged as the request was (its client_msg_id or its req_id). A
 * sync's frames go to a stream (worker_stream.c) as they are made, and
 * its answer to the outbox is where they went.
 * Who else hears of what is worker_fanout.c's. Pure code: the unit tests
 * include this file.
 */

#include <stdlib.h>
#include <string.h>

#include "worker_answer.h"
#include "worker_frame.h"


static void
chat_answer_frame(chat_outbox_t *out, const chat_request_t *req,
    json_t *frame)
{
    if (req->node == NULL) {
        /* an operator's record: nobody to answer (chatctl reads the
         * store to see what came of it) */
        json_decref(frame);
        return;
    }

    chat_outbox_to_session(out, chat_outbox_frame(out, frame), req->node,
                           req->sid);
}


void
chat_answer_error(chat_outbox_t *out, const chat_request_t *req,
    const char *code, const char *message)
{
    if (req->sid == NULL) {
        return;     /* a node's record (repair): no session to tell */
    }

    chat_answer_frame(out, req, chat_frame_error_for(req, code, message));
}


static void
chat_answer_not_member(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    chat_answer_error(ctx->out, item->req, "forbidden",
                      "not a member of this conversation");
}


void
chat_answer_send(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_send_t  *s = &item->u.send;
    char               *bytes;
    size_t              len;

    switch (s->state) {

    case CHAT_SEND_FORBIDDEN:
        chat_answer_not_member(ctx, item);
        return;

    case CHAT_SEND_BAD:
        chat_answer_error(ctx->out, item->req, "bad_request",
                          "an attachment is not this user's complete upload "
                          "in this conversation");
        return;

    case CHAT_SEND_REFUSED:
        chat_answer_error(ctx->out, item->req, s->error_code,
                          s->error_message);
        return;

    case CHAT_SEND_NEW:
    case CHAT_SEND_REPLAY:
    case CHAT_SEND_RETRY:
        bytes = chat_frame_ack_text(&s->msg, &len);
        chat_outbox_ack(ctx->out, chat_outbox_bytes(ctx->out, bytes, len),
                        item->req->node, item->req->sid, item->req->ts);
        return;

    case CHAT_SEND_PENDING:
        break;
    }

    /* the store left it undecided: cannot happen */
    chat_answer_error(ctx->out, item->req, "internal",
                      "the message could not be stored");
}


void
chat_answer_history(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t  *req = item->req;

    if (item->u.read.history.forbidden) {
        chat_answer_not_member(ctx, item);
        return;
    }

    chat_answer_frame(ctx->out, req,
                      chat_frame_history(req->req_id, req->conv,
                                         &item->u.read.history));
}


/* what a frame of a streamed answer may take: its record in one piece */
#define CHAT_ANSWER_FRAME_MAX                                               \
    (NGX_CHAT_WIRE_STREAM_PIECE - (2 + NGX_CHAT_WIRE_SID_LEN + 1 + 20 + 1))


static void
chat_answer_stream_frame(chat_op_ctx_t *ctx, json_t *frame)
{
    char    *bytes;
    size_t   len;

    bytes = chat_frame_dump(frame, &len);
    chat_stream_frame(ctx->stream, bytes, len);
    free(bytes);
}


/*
 * A sync's answer, written into ctx->stream as worker_ops.c reads it: the
 * conversations frame first (returns how many it lists: their messages
 * follow), then each chunk of messages, then sync_done.
 */
size_t
chat_answer_sync_list(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    char    *bytes;
    size_t   len, listed;

    bytes = chat_frame_conversations_text(item->req->req_id,
                                          &item->u.read.sync, true,
                                          CHAT_ANSWER_FRAME_MAX, &listed,
                                          &len);
    chat_stream_frame(ctx->stream, bytes, len);
    free(bytes);

    return listed;
}


void
chat_answer_sync_messages(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_sync_rows_t  *s = &item->u.read.sync;
    char                    *bytes;
    size_t                   i, len;

    for (i = 0; i < s->nmessages; i++) {
        bytes = chat_frame_message_text(&s->messages[i], &len);
        chat_stream_frame(ctx->stream, bytes, len);
        free(bytes);
    }
}


void
chat_answer_sync_done(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    chat_answer_stream_frame(ctx, chat_frame_sync_done(item->req->req_id));
}


/* the written answer to its session: the list's key, or its frames */
void
chat_answer_sync(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_streamed_t   *a = &item->streamed;
    const char              *p, *end;
    char                    *bytes;
    ngx_chat_wire_record_t   rec;

    if (a->key) {
        chat_outbox_stream(ctx->out, a->key, a->key_len, item->req->node,
                           item->req->sid);
        return;
    }

    p = a->piece;
    end = p + a->piece_len;

    while (ngx_chat_wire_record_next(&p, end, &rec) == 1) {
        bytes = chat_alloc(rec.body_len + 1);
        memcpy(bytes, rec.body, rec.body_len);
        bytes[rec.body_len] = '\0';

        chat_outbox_to_session(ctx->out,
                               chat_outbox_bytes(ctx->out, bytes,
                                                 rec.body_len),
                               item->req->node, item->req->sid);
    }
}


/* a page of the list: one frame, small enough to go inline */
void
chat_answer_conversations(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    char    *bytes;
    size_t   len, listed;

    bytes = chat_frame_conversations_text(item->req->req_id,
                                          &item->u.read.sync, false,
                                          CHAT_ANSWER_FRAME_MAX, &listed,
                                          &len);
    chat_outbox_to_session(ctx->out, chat_outbox_bytes(ctx->out, bytes, len),
                           item->req->node, item->req->sid);
}


void
chat_answer_receipts(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t  *req = item->req;

    if (item->u.read.receipts.forbidden) {
        chat_answer_not_member(ctx, item);
        return;
    }

    chat_answer_frame(ctx->out, req,
                      chat_frame_receipts(req->req_id, req->conv,
                                          &item->u.read.receipts));
}


void
chat_answer_search(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t  *req = item->req;

    if (item->u.read.search.forbidden) {
        chat_answer_not_member(ctx, item);
        return;
    }

    chat_answer_frame(ctx->out, req,
                      chat_frame_search(req->req_id, &item->u.read.search));
}


void
chat_answer_blocked(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_block_t  *b = &item->u.block;

    chat_answer_frame(ctx->out, item->req,
                      chat_frame_blocked(item->req->req_id, b->blocked,
                                         b->n));
}


/* the members after the change, or why there was none */
void
chat_answer_group(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_group_op_t  *op = &item->u.group;
    const chat_request_t   *req = item->req;

    switch (op->rc) {

    case CHAT_GROUP_FORBIDDEN:
        chat_answer_error(ctx->out, req, "forbidden",
                          "not a member or not an admin of this group");
        return;

    case CHAT_GROUP_TOO_LARGE:
        chat_answer_error(ctx->out, req, "too_large",
                          "the group would have too many members");
        return;

    case CHAT_GROUP_DONE:
        break;
    }

    chat_answer_frame(ctx->out, req,
                      chat_frame_group(req->req_id, req->conv, op->name,
                                       op->members, op->nmembers));
}


/* a receipt is answered only when it is refused */
void
chat_answer_receipt(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    switch (item->u.receipt.rc) {

    case CHAT_RECEIPT_FORBIDDEN:
        chat_answer_not_member(ctx, item);
        return;

    case CHAT_RECEIPT_BEYOND:
        chat_answer_error(ctx->out, item->req, "bad_request",
                          "seq is beyond the conversation's last");
        return;

    case CHAT_RECEIPT_IGNORED:
    case CHAT_RECEIPT_MOVED:
        return;
    }
}


/* the R record to the node that asked; the fan-out fills it. A gap too
 * large to send is not answered: the node gives up on it, and its
 * sessions reconnect and sync */
void
chat_answer_repair(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t  *req = item->req;

    if (item->u.repair.too_large) {
        log_warn("partition %d offset %lld: the repair of (%lld, %lld] for"
                 " %s holds more than %d messages: not answered",
                 (int) req->partition, (long long) req->offset,
                 (long long) req->repair.after, (long long) req->repair.upto,
                 req->node, CHAT_REPAIR_ROWS_MAX);
        return;
    }

    chat_outbox_repair(ctx->out, req->node, (int32_t) req->repair.partition,
                       req->repair.after, req->repair.upto);
}


void
chat_answer_typing(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    if (!item->u.typing.allowed) {
        chat_answer_not_member(ctx, item);
    }
}


/* push_register, push_unregister: push_registered, or the endpoint is
 * not one this server pushes to */
void
chat_answer_push(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    if (item->u.push.refused) {
        chat_answer_error(ctx->out, item->req, "bad_request",
                          "this server does not push to that endpoint");
        return;
    }

    chat_answer_frame(ctx->out, item->req,
                      chat_frame_push_registered(item->req->req_id));
}


/* upload: the signed PUT URL the module made, once recorded */
void
chat_answer_upload(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t  *req = item->req;

    if (!item->u.upload.allowed) {
        chat_answer_not_member(ctx, item);
        return;
    }

    chat_answer_frame(ctx->out, req, chat_frame_upload(req));
}


/* an operator's op: what came of it is in the store and the log */
void
chat_answer_none(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    (void) ctx;
    (void) item;
}
