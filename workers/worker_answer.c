/*
 * worker_answer.c: what the store found, as the frames that answer the
 * requesting session: errors tagged as the request was (its
 * client_msg_id or its req_id), and the read answers. Who else hears of
 * what is worker_fanout.c's. Pure code: the unit tests include this file.
 */

#include "worker_answer.h"
#include "worker_frame.h"


static void
chat_answer_frame(chat_outbox_t *out, const chat_request_t *req,
    json_t *frame)
{
    chat_outbox_to_session(out, chat_outbox_frame(out, frame), req->node,
                           req->sid);
}


void
chat_answer_error(chat_outbox_t *out, const chat_request_t *req,
    const char *code, const char *message)
{
    chat_answer_frame(out, req, chat_frame_error_for(req, code, message));
}


void
chat_answer_history(chat_outbox_t *out, const chat_read_t *read)
{
    const chat_request_t  *req = read->req;

    if (read->history.forbidden) {
        chat_answer_error(out, req, "forbidden",
                          "not a member of this conversation");
        return;
    }

    chat_answer_frame(out, req, chat_frame_history(req->req_id, req->conv,
                                                   &read->history));
}


void
chat_answer_sync(chat_outbox_t *out, const chat_read_t *read)
{
    const chat_request_t    *req = read->req;
    const chat_sync_rows_t  *s = &read->sync;
    size_t                   i;

    chat_answer_frame(out, req, chat_frame_conversations(req->req_id, s));

    for (i = 0; i < s->nmessages; i++) {
        chat_answer_frame(out, req,
                          chat_frame_message_object(&s->messages[i], true));
    }

    chat_answer_frame(out, req, chat_frame_sync_done(req->req_id));
}
