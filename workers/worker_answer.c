/*
 * worker_answer.c: what the store found, as the frames that answer the
 * requesting session: acks, the read answers, the group frame, and the
 * errors, tagged as the request was (its client_msg_id or its req_id).
 * Who else hears of what is worker_fanout.c's. Pure code: the unit tests
 * include this file.
 */

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

    case CHAT_SEND_NEW:
    case CHAT_SEND_REPLAY:
    case CHAT_SEND_RETRY:
        bytes = chat_frame_ack_text(&s->msg, &len);
        chat_outbox_to_session(ctx->out,
                               chat_outbox_bytes(ctx->out, bytes, len),
                               item->req->node, item->req->sid);
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


/* conversations, the messages after the device's cursors, sync_done */
void
chat_answer_sync(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t    *req = item->req;
    const chat_sync_rows_t  *s = &item->u.read.sync;
    size_t                   i;

    chat_answer_frame(ctx->out, req,
                      chat_frame_conversations(req->req_id, s));

    for (i = 0; i < s->nmessages; i++) {
        chat_answer_frame(ctx->out, req,
                          chat_frame_message_object(&s->messages[i], true));
    }

    chat_answer_frame(ctx->out, req, chat_frame_sync_done(req->req_id));
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


void
chat_answer_typing(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    if (!item->u.typing.allowed) {
        chat_answer_not_member(ctx, item);
    }
}


/* an operator's op: what came of it is in the store and the log */
void
chat_answer_none(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    (void) ctx;
    (void) item;
}
