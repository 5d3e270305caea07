/*
 * worker_outbox.h: the outbox of a batch (worker_outbox.c): the frames the
 * batch answers with, and which of them goes to which session or to every
 * session of which user. The frames are complete protocol frames, made
 * once; worker_payload.c later turns the outbox into node payloads.
 */

#ifndef CHAT_WORKER_OUTBOX_H
#define CHAT_WORKER_OUTBOX_H

#include <jansson.h>

#include "worker_util.h"


typedef struct {
    char    *bytes;
    size_t   len;
    int      type;          /* the record that carries it: F, or S for
                             * the key of a streamed answer */
} chat_frame_t;

/* one frame to one session, or to every session of a user but one */
typedef struct {
    size_t       frame;
    const char  *user;          /* NULL: to node/sid only */
    const char  *node;          /* the target, or the session to skip */
    const char  *sid;
} chat_delivery_t;

typedef struct {
    chat_frame_t     *frames;
    size_t            nframes;
    size_t            frames_cap;
    chat_delivery_t  *deliveries;
    size_t            ndeliveries;
    size_t            deliveries_cap;
} chat_outbox_t;

/* serializes the frame and takes its reference; returns its index */
size_t chat_outbox_frame(chat_outbox_t *out, json_t *frame);
/* a frame already serialized; the outbox takes the malloc'ed bytes */
size_t chat_outbox_bytes(chat_outbox_t *out, char *bytes, size_t len);
void chat_outbox_to_session(chat_outbox_t *out, size_t frame,
    const char *node, const char *sid);
/* an S record for one session: its answer is in the list key */
void chat_outbox_stream(chat_outbox_t *out, const char *key, size_t key_len,
    const char *node, const char *sid);
void chat_outbox_to_user(chat_outbox_t *out, size_t frame, const char *user,
    const char *skip_node, const char *skip_sid);
void chat_outbox_reset(chat_outbox_t *out);
/* forgets what was added after the outbox held nframes and ndeliveries */
void chat_outbox_truncate(chat_outbox_t *out, size_t nframes,
    size_t ndeliveries);


#endif /* CHAT_WORKER_OUTBOX_H */
