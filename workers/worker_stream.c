/*
 * worker_stream.c: one streamed answer at a time: its frames as F records
 * for the requesting session, gathered into pieces of at most
 * NGX_CHAT_WIRE_STREAM_PIECE bytes, each pushed to the answer's list
 * (worker_lists.c) as soon as the next frame would not fit, the last one
 * ended by an E record. A frame larger than a piece travels alone in its
 * own. An answer that ends within its first piece is handed back whole
 * instead, for the batch to deliver inline: a small sync costs Redis
 * nothing more than before.
 *
 * The piece size is what bounds the worker's memory per answer (with the
 * few pieces worker_lists.c leaves unanswered) and what the module pops at
 * a time; see ngx_chat_stream.c. Pure code but for the pushes: the unit
 * tests include this file with worker_fake.h's lists.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "worker_stream.h"


void
chat_stream_init(chat_stream_t *st, chat_lists_t *lists)
{
    memset(st, 0, sizeof(*st));
    st->lists = lists;

    /* keys must differ between workers and across restarts: a replayed
     * read never appends to a list a dead worker began */
    if (getrandom(&st->unique, sizeof(st->unique), 0)
        != (ssize_t) sizeof(st->unique))
    {
        st->unique = ((uint64_t) time(NULL) << 20) ^ (uint64_t) getpid();
    }
}


void
chat_stream_free(chat_stream_t *st)
{
    chat_buf_free(&st->piece);
}


void
chat_stream_begin(chat_stream_t *st, const char *sid)
{
    memcpy(st->sid, sid, NGX_CHAT_WIRE_SID_LEN);
    st->sid[NGX_CHAT_WIRE_SID_LEN] = '\0';

    st->key_len = (size_t) snprintf(st->key, sizeof(st->key),
                                    NGX_CHAT_WIRE_KEY_STREAM "%s:%016" PRIx64
                                    "%" PRIx64, st->sid, st->unique,
                                    ++st->answers);
    st->piece.len = 0;
    st->pushed = 0;
    st->broken = false;
}


/* the piece in hand to the list */
static void
chat_stream_push(chat_stream_t *st)
{
    if (st->piece.len == 0) {
        return;
    }

    if (!st->broken
        && !chat_lists_push(st->lists, st->key, st->key_len, st->piece.data,
                            st->piece.len, st->pushed == 0))
    {
        st->broken = true;
    }

    st->pushed++;
    st->piece.len = 0;
}


/* a record for the session: its header, then len bytes the caller adds */
static void
chat_stream_record(chat_stream_t *st, int type, size_t len)
{
    const char  *sids[1] = { st->sid };
    size_t       need;
    char        *end;

    need = ngx_chat_wire_record_header_size(1, len) + len;

    if (st->piece.len > 0
        && st->piece.len + need > NGX_CHAT_WIRE_STREAM_PIECE)
    {
        chat_stream_push(st);
    }

    chat_buf_reserve(&st->piece, need);
    end = ngx_chat_wire_record_header(st->piece.data + st->piece.len, type,
                                      sids, 1, len);
    st->piece.len = (size_t) (end - st->piece.data);
}


void
chat_stream_frame(chat_stream_t *st, const char *bytes, size_t len)
{
    if (st->broken) {
        return;
    }

    chat_stream_record(st, NGX_CHAT_WIRE_RECORD_FRAME, len);
    chat_buf_add(&st->piece, bytes, len);
}


bool
chat_stream_broken(const chat_stream_t *st)
{
    return st->broken;
}


chat_stream_rc_t
chat_stream_end(chat_stream_t *st, chat_streamed_t *out, chat_arena_t *arena)
{
    char  *copy;

    memset(out, 0, sizeof(*out));

    if (!st->broken && st->pushed == 0) {
        copy = chat_arena_alloc(arena, st->piece.len + 1);
        memcpy(copy, st->piece.data ? st->piece.data : "", st->piece.len);
        out->piece = copy;
        out->piece_len = st->piece.len;
        st->piece.len = 0;
        return CHAT_STREAM_DONE;
    }

    chat_stream_record(st, NGX_CHAT_WIRE_RECORD_END, 0);
    chat_stream_push(st);

    if (!st->broken
        && !chat_lists_finish(st->lists, st->key, st->key_len))
    {
        st->broken = true;
    }

    if (!st->broken) {
        out->key = chat_arena_strndup(arena, st->key, st->key_len);
        out->key_len = st->key_len;
        return CHAT_STREAM_DONE;
    }

    /* what went to the list before the failure goes once Redis is back;
     * the answer is written again under another key */
    if (!chat_lists_wait(st->lists)) {
        return CHAT_STREAM_STOPPED;
    }

    log_warn("redis failed under a streamed answer to %s: writing it again",
             st->sid);
    chat_lists_drop(st->lists, st->key, st->key_len);

    return CHAT_STREAM_AGAIN;
}


void
chat_stream_abandon(chat_stream_t *st)
{
    if (st->pushed > 0 && !st->broken) {
        chat_lists_drop(st->lists, st->key, st->key_len);
    }

    st->piece.len = 0;
    st->pushed = 0;
}
