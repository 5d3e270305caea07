
/*
 * Streamed answers: a read whose answer can be large (a sync of a big
 * account) is written by the worker into a Redis list in pieces of a
 * bounded size (ngx_chat_wire.h, the S and E records), and the session
 * pops them as its socket drains. The send buffer then bounds what a
 * client fails to read, never the size of an answer, and neither nginx
 * nor the worker holds the whole answer.
 *
 * A session has at most one answer streaming; others wait behind it in
 * the order they were announced. An empty list that has not ended is
 * polled again after a while (the worker is still writing it), and every
 * announcement of more pieces pops at once.
 */


#include "ngx_chat.h"

#include <hiredis/hiredis.h>


#define NGX_CHAT_STREAM_PIECES     2        /* popped at a time */
#define NGX_CHAT_STREAM_POLL       200      /* ms, when the list is empty */
#define NGX_CHAT_STREAM_WAITING    8        /* answers behind the first */


typedef struct {
    ngx_chat_session_t        *session;
    uint64_t                   sid;
    ngx_event_t                poll;
    ngx_uint_t                 nkeys;
    ngx_str_t                  keys[1 + NGX_CHAT_STREAM_WAITING];
    unsigned                   popping:1;
} ngx_chat_stream_t;


static void ngx_chat_stream_pop(ngx_chat_stream_t *st);
static void ngx_chat_stream_popped(void *reply, void *data);
static void ngx_chat_stream_poll_handler(ngx_event_t *ev);
static ngx_int_t ngx_chat_stream_piece(ngx_chat_stream_t *st,
    const char *p, size_t len);
static ngx_int_t ngx_chat_stream_next(ngx_chat_stream_t *st);
static void ngx_chat_stream_free(ngx_chat_stream_t *st);


/* an S record: the answer is in the list named key */

void
ngx_chat_stream_announce(ngx_chat_session_t *s, const u_char *key,
    size_t len)
{
    ngx_uint_t                 i;
    ngx_chat_stream_t         *st;
    ngx_chat_session_extra_t  *extra;

    extra = ngx_chat_session_extra(s);
    if (extra == NULL) {
        return;
    }

    st = extra->stream;

    if (st == NULL) {
        st = ngx_calloc(sizeof(ngx_chat_stream_t), ngx_cycle->log);
        if (st == NULL) {
            return;
        }

        st->session = s;
        st->sid = s->key;
        st->poll.handler = ngx_chat_stream_poll_handler;
        st->poll.data = st;
        st->poll.log = s->connection->log;
        st->poll.cancelable = 1;
        extra->stream = st;
    }

    for (i = 0; i < st->nkeys; i++) {
        if (st->keys[i].len == len
            && ngx_strncmp(st->keys[i].data, key, len) == 0)
        {
            break;
        }
    }

    if (i == st->nkeys) {
        if (st->nkeys == 1 + NGX_CHAT_STREAM_WAITING) {
            ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                          "chat: too many answers streaming to one client");
            return;
        }

        st->keys[i].data = ngx_alloc(len, ngx_cycle->log);
        if (st->keys[i].data == NULL) {
            return;
        }

        ngx_memcpy(st->keys[i].data, key, len);
        st->keys[i].len = len;
        st->nkeys++;
    }

    /* more pieces of the first one: pop now, not at the next poll */
    if (i == 0) {
        ngx_chat_stream_pop(st);
    }
}


/* the session's output went below half its bound: pop what follows */

void
ngx_chat_stream_drained(ngx_chat_session_t *s)
{
    if (s->extra && s->extra->stream) {
        ngx_chat_stream_pop(s->extra->stream);
    }
}


void
ngx_chat_stream_drop(ngx_chat_session_t *s)
{
    ngx_uint_t          i;
    const char         *argv[2];
    size_t              argvlen[2];
    ngx_chat_stream_t  *st;

    st = s->extra ? s->extra->stream : NULL;
    if (st == NULL) {
        return;
    }

    s->extra->stream = NULL;

    /*
     * what the client will never read goes now, not at its expiry: a
     * client that reconnects again and again mid-sync would otherwise keep
     * one whole answer per attempt in Redis
     */

    argv[0] = "DEL";
    argvlen[0] = sizeof("DEL") - 1;

    for (i = 0; i < st->nkeys; i++) {
        argv[1] = (char *) st->keys[i].data;
        argvlen[1] = st->keys[i].len;

        (void) ngx_chat_redis_command(NULL, NULL, 2, argv, argvlen);
    }

    if (st->popping) {
        st->session = NULL;     /* freed when the pop answers */
        return;
    }

    ngx_chat_stream_free(st);
}


static void
ngx_chat_stream_pop(ngx_chat_stream_t *st)
{
    u_char              count[NGX_INT_T_LEN];
    const char         *argv[3];
    size_t              argvlen[3];
    ngx_chat_session_t *s;

    s = st->session;

    if (st->popping || st->nkeys == 0 || s->closing) {
        return;
    }

    if (ngx_chat_session_queued(s) > s->conf->send_buffer / 2) {
        ngx_chat_session_notify_drained(s);
        return;
    }

    argv[0] = "LPOP";
    argvlen[0] = sizeof("LPOP") - 1;
    argv[1] = (char *) st->keys[0].data;
    argvlen[1] = st->keys[0].len;
    argv[2] = (char *) count;
    argvlen[2] = ngx_sprintf(count, "%d", NGX_CHAT_STREAM_PIECES) - count;

    if (ngx_chat_redis_command(ngx_chat_stream_popped, st, 3, argv, argvlen)
        != NGX_OK)
    {
        if (!st->poll.timer_set) {
            ngx_add_timer(&st->poll, NGX_CHAT_STREAM_POLL);
        }

        return;
    }

    st->popping = 1;
}


static void
ngx_chat_stream_popped(void *reply, void *data)
{
    ngx_chat_stream_t  *st = data;

    size_t       i;
    ngx_int_t    rc;
    redisReply  *r = reply;

    st->popping = 0;

    if (st->session == NULL) {
        ngx_chat_stream_free(st);       /* the session went meanwhile */
        return;
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        /* not written yet (or Redis away): look again a little later */
        if (!st->poll.timer_set) {
            ngx_add_timer(&st->poll, NGX_CHAT_STREAM_POLL);
        }

        return;
    }

    for (i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            continue;
        }

        rc = ngx_chat_stream_piece(st, r->element[i]->str,
                                   r->element[i]->len);

        if (rc == NGX_ERROR) {
            return;             /* the session is closing */
        }

        if (rc == NGX_DONE) {
            if (ngx_chat_stream_next(st) == NGX_DONE) {
                return;                 /* nothing more: st is gone */
            }

            /* a piece beyond the end belongs to nothing: the key is gone */
            break;
        }
    }

    ngx_chat_stream_pop(st);
}


/* NGX_OK: more to come; NGX_DONE: the answer ended; NGX_ERROR: closing */

static ngx_int_t
ngx_chat_stream_piece(ngx_chat_stream_t *st, const char *p, size_t len)
{
    int                      rc;
    u_char                   own[NGX_CHAT_WIRE_SID_LEN];
    const char              *last, *sids, *sid;
    ngx_chat_session_t      *s;
    ngx_chat_wire_record_t   rec;

    s = st->session;
    last = p + len;

    while ((rc = ngx_chat_wire_record_next(&p, last, &rec)) == 1) {

        sids = rec.args;

        if (ngx_chat_wire_sids_next(&sids, rec.args + rec.args_len, &sid)
            != 1
            || ngx_strncmp(sid, ngx_chat_session_sid(s, own),
                           NGX_CHAT_WIRE_SID_LEN) != 0)
        {
            continue;       /* for another session: not ours to write */
        }

        if (rec.type == NGX_CHAT_WIRE_RECORD_END) {
            return NGX_DONE;
        }

        if (rec.type == NGX_CHAT_WIRE_RECORD_FRAME
            && ngx_chat_session_send_text(s, (u_char *) rec.body,
                                          rec.body_len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (rc == -1) {
        ngx_log_error(NGX_LOG_ALERT, s->connection->log, 0,
                      "chat: invalid piece of a streamed answer");
        return NGX_DONE;
    }

    return NGX_OK;
}


/* the first answer ended: its list goes, the next one begins (NGX_OK), or
 * none is left and the stream is freed (NGX_DONE) */

static ngx_int_t
ngx_chat_stream_next(ngx_chat_stream_t *st)
{
    const char  *argv[2];
    size_t       argvlen[2];

    argv[0] = "DEL";
    argvlen[0] = sizeof("DEL") - 1;
    argv[1] = (char *) st->keys[0].data;
    argvlen[1] = st->keys[0].len;

    (void) ngx_chat_redis_command(NULL, NULL, 2, argv, argvlen);

    ngx_free(st->keys[0].data);
    st->nkeys--;
    ngx_memmove(&st->keys[0], &st->keys[1], st->nkeys * sizeof(ngx_str_t));

    if (st->nkeys == 0) {
        st->session->extra->stream = NULL;
        ngx_chat_stream_free(st);
        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_chat_stream_poll_handler(ngx_event_t *ev)
{
    ngx_chat_stream_t  *st = ev->data;

    ngx_chat_stream_pop(st);
}


static void
ngx_chat_stream_free(ngx_chat_stream_t *st)
{
    ngx_uint_t  i;

    if (st->poll.timer_set) {
        ngx_del_timer(&st->poll);
    }

    for (i = 0; i < st->nkeys; i++) {
        ngx_free(st->keys[i].data);
    }

    ngx_free(st);
}
