/*
 * worker_stream.h: a streamed answer (worker_stream.c): the frames of one
 * answer for one session, cut into pieces of at most
 * NGX_CHAT_WIRE_STREAM_PIECE bytes (each a payload of F records, the last
 * one ending with an E record) that go to a Redis list as they fill
 * (worker_lists.c). The session's node is then told the list's key with
 * an S record (ngx_chat_wire.h) and pops the pieces as the client reads.
 *
 * An answer that fits in one piece never goes to Redis: its frames travel
 * inline with the batch's other records, as before.
 */

#ifndef CHAT_WORKER_STREAM_H
#define CHAT_WORKER_STREAM_H

#include "worker_lists.h"


/* where an answer went, in the batch's arena: the list (key), or, when
 * it fit in one piece, that piece's F records (key NULL) */
typedef struct {
    const char  *key;
    size_t       key_len;
    const char  *piece;
    size_t       piece_len;
} chat_streamed_t;

/* the answer being written; one at a time per worker */
typedef struct {
    chat_lists_t  *lists;
    char           sid[NGX_CHAT_WIRE_SID_LEN + 1];
    char           key[NGX_CHAT_WIRE_KEY_MAX];
    size_t         key_len;
    chat_buf_t     piece;       /* the piece being filled */
    size_t         pushed;      /* pieces of this answer in the list */
    bool           broken;      /* Redis failed under this answer */
    uint64_t       unique;      /* this worker's part of the keys */
    uint64_t       answers;     /* answers begun, for the keys */
} chat_stream_t;

typedef enum {
    CHAT_STREAM_DONE,           /* the answer is in out */
    CHAT_STREAM_AGAIN,          /* Redis failed under it and is back:
                                 * write the answer again */
    CHAT_STREAM_STOPPED         /* stop requested while Redis was away */
} chat_stream_rc_t;

void chat_stream_init(chat_stream_t *st, chat_lists_t *lists);
void chat_stream_free(chat_stream_t *st);

/* a new answer for this session (NGX_CHAT_WIRE_SID_LEN characters) */
void chat_stream_begin(chat_stream_t *st, const char *sid);
/* one frame of it: the bytes are copied */
void chat_stream_frame(chat_stream_t *st, const char *bytes, size_t len);
/* did Redis fail under the answer? (its frames are dropped until the end) */
bool chat_stream_broken(const chat_stream_t *st);
/* the end of the answer: the E record, the last piece, the list's expiry;
 * what out names lives in the arena */
chat_stream_rc_t chat_stream_end(chat_stream_t *st, chat_streamed_t *out,
    chat_arena_t *arena);
/* the answer is given up: what of it went to Redis goes */
void chat_stream_abandon(chat_stream_t *st);


#endif /* CHAT_WORKER_STREAM_H */
