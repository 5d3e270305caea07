/*
 * worker_answer.h: rows -> the frames that answer the requester
 * (worker_answer.c).
 */

#ifndef CHAT_WORKER_ANSWER_H
#define CHAT_WORKER_ANSWER_H

#include "worker_outbox.h"
#include "worker_store.h"


/* an error to the requesting session, tagged as the request was */
void chat_answer_error(chat_outbox_t *out, const chat_request_t *req,
    const char *code, const char *message);

/* a history's frame, or its forbidden */
void chat_answer_history(chat_outbox_t *out, const chat_read_t *read);
/* conversations, the messages after the cursors, sync_done */
void chat_answer_sync(chat_outbox_t *out, const chat_read_t *read);


#endif /* CHAT_WORKER_ANSWER_H */
