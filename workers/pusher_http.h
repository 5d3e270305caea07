/*
 * pusher_http.h: the POSTs of a batch (pusher_http.c).
 */

#ifndef CHAT_PUSHER_HTTP_H
#define CHAT_PUSHER_HTTP_H

#include <stddef.h>

#include "pusher.h"


typedef struct chat_http_s  chat_http_t;

typedef struct {
    long  timeout_ms;       /* a POST's whole time, connect included */
    bool  with_body;        /* the message's text in the payload */
} chat_http_options_t;

chat_http_t *chat_http_open(const chat_http_options_t *opts);
void chat_http_close(chat_http_t *h);

/* POSTs every job whose flag todo is set, all at once, and sets its
 * status (0 when no answer came) and error; a stop waits for the batch,
 * which the timeout bounds */
void chat_http_post(chat_http_t *h, chat_push_job_t *jobs, const bool *todo,
    size_t n);


#endif /* CHAT_PUSHER_HTTP_H */
