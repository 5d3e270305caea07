
/*
 * One WebSocket connection after the upgrade: taking it over from the HTTP
 * request, reading and reassembling frames, the bounded output queue,
 * heartbeats, the close handshake, and the table of this process's sessions
 * by id (where deliveries from Redis find them).
 *
 * What a message means is not decided here: whole messages go to the
 * location's handlers (ngx_chat_dispatch.c), which answer through
 * ngx_chat_session_send() and ngx_chat_session_close().
 *
 * An idle session holds only its ngx_chat_session_t in c->pool: input is
 * read into one buffer per process, and the reassembly and output buffers
 * exist only while they hold bytes.
 *
 * With permessage-deflate (RFC 7692, agreed in ngx_chat_handshake.c) an
 * idle session holds nothing more: what was agreed is a few bits of it,
 * the inflater is part of the input state, and the zlib streams belong to
 * the process's context here (ngx_chat_deflate.c): an inflate stream is
 * lent to a session for the length of a compressed message (for its life
 * if the client keeps its context, and the input state with it), and a
 * deflate stream per window size compresses every server message on its
 * own, so that one compressed frame serves every session of a delivery
 * that agreed to the same window.
 */


#include "ngx_chat.h"


#define NGX_CHAT_RECV_SIZE       65536
#define NGX_CHAT_OUT_MIN         4096
#define NGX_CHAT_READS_PER_CALL  16
#define NGX_CHAT_CLOSE_TIMEOUT   5000
#define NGX_CHAT_LINGER_TIMEOUT  2000
#define NGX_CHAT_TICK_SLACK      50

/* ngx_chat_session_queue() flags */
#define NGX_CHAT_QUEUE_FORCE     0x01  /* past the send buffer bound */
#define NGX_CHAT_QUEUE_PLAIN     0x02  /* never compressed */
#define NGX_CHAT_QUEUE_FRAME     0x04  /* data is a whole frame already */


/*
 * What a session holds while a frame or a message is under way: the
 * parser's state, the message reassembled (or inflated) so far, and with
 * permessage-deflate the inflater and the UTF-8 state of inflated text.
 * Between messages a session has none (unless the client keeps its
 * compression context: then the inflater's stream lives here): its input
 * is parsed by the process's scratch parser, which starts where every
 * idle session is.
 */
typedef struct {
    ngx_chat_ws_parser_t       parser;
    u_char                    *msg;
    uint32_t                   msg_len;     /* the message limit is 64m */
    uint32_t                   msg_size;
    ngx_chat_inflater_t        inflater;
    uint32_t                   utf8;
} ngx_chat_session_in_t;


/* frames waiting for the socket: the bytes follow the header */
typedef struct {
    u_char                    *pos;
    u_char                    *last;
    u_char                    *end;
} ngx_chat_session_out_t;

#define ngx_chat_session_in_of(s)   ((ngx_chat_session_in_t *) (s)->in)
#define ngx_chat_session_out_of(s)  ((ngx_chat_session_out_t *) (s)->out)
#define ngx_chat_session_bytes(o)   ((u_char *) ((o) + 1))


static void ngx_chat_session_detach(ngx_event_t *wev);
static void ngx_chat_session_read_handler(ngx_event_t *rev);
static void ngx_chat_session_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_chat_session_tick(ngx_chat_session_t *s);
static ngx_int_t ngx_chat_session_input(ngx_chat_session_t *s, u_char *pos,
    u_char *end);
static ngx_int_t ngx_chat_session_control(ngx_chat_session_t *s,
    ngx_chat_ws_event_t *ev);
static ngx_int_t ngx_chat_session_data(ngx_chat_session_t *s,
    ngx_chat_ws_event_t *ev);
static ngx_int_t ngx_chat_session_inflate(ngx_chat_session_t *s,
    ngx_chat_ws_event_t *ev);
static ngx_chat_session_in_t *ngx_chat_session_in(ngx_chat_session_t *s);
static ngx_chat_ws_parser_t *ngx_chat_session_parser(ngx_chat_session_t *s);
static void ngx_chat_session_input_done(ngx_chat_session_t *s);
static ngx_int_t ngx_chat_session_table_insert(ngx_chat_session_t *s);
static void ngx_chat_session_table_delete(ngx_chat_session_t *s);
static ngx_chat_session_t *ngx_chat_session_from(ngx_uint_t bucket);
static ngx_int_t ngx_chat_session_queue(ngx_chat_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len, ngx_uint_t flags);
static ngx_int_t ngx_chat_session_reserve(ngx_chat_session_t *s,
    size_t need, size_t room, ngx_uint_t force);
static void *ngx_chat_session_zalloc(void *data, size_t size);
static void ngx_chat_session_zfree(void *data, void *p);
static ngx_int_t ngx_chat_session_flush(ngx_chat_session_t *s);
static void ngx_chat_session_drained(ngx_chat_session_t *s);
static void ngx_chat_session_gone(ngx_chat_session_t *s);
static void ngx_chat_session_finalize(ngx_chat_session_t *s);


/*
 * the process's sessions by id (a hash table of chains, doubled as it
 * fills), the read buffer, the scratch parser, the ids handed out
 */
static ngx_chat_session_t   **ngx_chat_sessions;
static ngx_uint_t             ngx_chat_sessions_mask;
static ngx_uint_t             ngx_chat_sessions_n;
static u_char                *ngx_chat_recv_buf;
static ngx_chat_ws_parser_t   ngx_chat_session_scratch;
static uint64_t               ngx_chat_sid_prefix;
static uint64_t               ngx_chat_sid_counter;

#define NGX_CHAT_SESSIONS_MIN   1024
#define ngx_chat_session_bucket(key)                                          \
    ((ngx_uint_t) ((key) ^ ((key) >> 32)) & ngx_chat_sessions_mask)

/* permessage-deflate's zlib streams and settings for this process */
static ngx_chat_deflate_ctx_t  ngx_chat_deflate_ctx;


ngx_int_t
ngx_chat_session_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf)
{
    ngx_chat_sessions = ngx_calloc(NGX_CHAT_SESSIONS_MIN
                                   * sizeof(ngx_chat_session_t *),
                                   cycle->log);
    if (ngx_chat_sessions == NULL) {
        return NGX_ERROR;
    }

    ngx_chat_sessions_mask = NGX_CHAT_SESSIONS_MIN - 1;

    ngx_chat_recv_buf = ngx_alloc(NGX_CHAT_RECV_SIZE, cycle->log);
    if (ngx_chat_recv_buf == NULL) {
        return NGX_ERROR;
    }

    /*
     * session ids must not repeat across restarts of this server: a random
     * upper half, a counter below
     */
    ngx_chat_sid_prefix = ((uint64_t) ngx_random() << 32)
                          ^ ((uint64_t) ngx_pid << 16) ^ (uint64_t) ngx_time();
    ngx_chat_sid_prefix &= 0x7fffffff00000000ULL;   /* fits ngx_hextoi() */
    ngx_chat_sid_counter = 0;

    /* allocates nothing until a session compresses or inflates */
    if (ngx_chat_deflate_ctx_init(&ngx_chat_deflate_ctx, &mcf->deflate,
                                  ngx_chat_session_zalloc,
                                  ngx_chat_session_zfree, cycle->log)
        != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "chat: invalid deflate settings");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_chat_session_exit(ngx_cycle_t *cycle)
{
    /* the streams sessions still hold are given back as they close */
    ngx_chat_deflate_ctx_cleanup(&ngx_chat_deflate_ctx);
}


/* zlib's memory, and inflated messages', is the process's heap */

static void *
ngx_chat_session_zalloc(void *data, size_t size)
{
    return ngx_alloc(size, data);
}


static void
ngx_chat_session_zfree(void *data, void *p)
{
    ngx_free(p);
}


ngx_int_t
ngx_chat_session_start(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *device, int64_t expires, int64_t issued, u_char *response,
    size_t len, const ngx_chat_deflate_params_t *deflate)
{
    u_char                  *p;
    size_t                   size;
    ngx_connection_t        *c;
    ngx_chat_session_t      *s;
    ngx_chat_loc_conf_t     *lcf;
    ngx_chat_session_out_t  *o;

    c = r->connection;

    if (ngx_chat_recv_buf == NULL) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "chat: not initialized in this process");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    /* the ids after the session */
    s = ngx_pcalloc(c->pool,
                    sizeof(ngx_chat_session_t) + user->len + device->len);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->connection = c;
    s->conf = lcf;
    s->expires = (uint32_t) ngx_min(expires, 0xffffffff);
    s->issued = (uint32_t) ngx_max(ngx_min(issued, 0xffffffff), 0);

    p = (u_char *) (s + 1);
    p = ngx_cpymem(p, user->data, user->len);
    ngx_memcpy(p, device->data, device->len);
    s->user_len = (u_char) user->len;
    s->device_len = (u_char) device->len;

    if (deflate) {
        s->deflate_bits = deflate->server_window_bits;
        s->inflate_bits = deflate->client_window_bits;
        s->inflate_takeover = deflate->client_takeover ? 1 : 0;
    }

    s->key = ngx_chat_sid_prefix | (++ngx_chat_sid_counter & 0xffffffff);

    /* the 101 is the first output */

    size = ngx_max(len, NGX_CHAT_OUT_MIN);

    o = ngx_alloc(sizeof(ngx_chat_session_out_t) + size, c->log);
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    o->pos = ngx_chat_session_bytes(o);
    o->last = ngx_cpymem(o->pos, response, len);
    o->end = o->pos + size;
    s->out = o;

    ngx_http_set_ctx(r, s, ngx_chat_module);

    /*
     * the request is freed in ngx_chat_session_detach(), once nginx is done
     * with it: until then it holds one more reference
     */

    r->main->count++;
    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->keepalive = 0;

    c->write->handler = ngx_chat_session_detach;
    ngx_post_event(c->write, &ngx_posted_events);

    return NGX_DONE;
}


static void
ngx_chat_session_detach(ngx_event_t *wev)
{
    size_t                  early;
    ngx_buf_t              *b;
    ngx_chain_t            *cl;
    ngx_connection_t       *c;
    ngx_chat_session_t     *s;
    ngx_http_request_t     *r;
    ngx_http_connection_t  *hc;

    c = wev->data;
    r = c->data;
    s = ngx_http_get_module_ctx(r, ngx_chat_module);
    hc = r->http_connection;

    /* frames that came with the handshake are frames too */

    b = r->header_in;
    early = b->last - b->pos;

    if (early > NGX_CHAT_RECV_SIZE) {
        early = 0;
        s->closing = 1;
    }

    ngx_memcpy(ngx_chat_recv_buf, b->pos, early);

    ngx_http_free_request(r, 0);

    c->destroyed = 0;
    c->data = s;
    c->log->action = "serving chat";

    /* as ngx_http_set_keepalive() does: give back the header buffers */

    if (c->buffer && ngx_pfree(c->pool, c->buffer->start) == NGX_OK) {
        c->buffer = NULL;
    }

    for (cl = hc->busy; cl; cl = cl->next) {
        ngx_pfree(c->pool, cl->buf->start);
    }

    for (cl = hc->free; cl; cl = cl->next) {
        ngx_pfree(c->pool, cl->buf->start);
    }

    hc->busy = NULL;
    hc->free = NULL;
    hc->nbusy = 0;

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        ngx_ssl_free_buffer(c);
    }
#endif

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    /* closed on a graceful shutdown by ngx_close_idle_connections() */
    c->idle = 1;

    c->read->handler = ngx_chat_session_read_handler;
    c->write->handler = ngx_chat_session_write_handler;

    if (!s->conf->echo && ngx_chat_session_table_insert(s) != NGX_OK) {
        s->closing = 1;         /* out of memory: finalized below */
    }

    ngx_chat_stats->connections[s->conf->metrics_index]++;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "chat: session %016xL started for \"%V\"",
                   s->key, ngx_chat_session_user(s));

    if (s->closing || s->conf->handlers->start(s) != NGX_OK) {
        ngx_chat_session_finalize(s);
        return;
    }

    s->last_read = (uint32_t) ngx_current_msec;
    s->last_ping = s->last_read;
    ngx_add_timer(c->read, s->conf->heartbeat);

    if (ngx_chat_session_flush(s) == NGX_ERROR) {
        return;
    }

    if (early
        && ngx_chat_session_input(s, ngx_chat_recv_buf,
                                  ngx_chat_recv_buf + early)
           != NGX_OK)
    {
        return;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static void
ngx_chat_session_read_handler(ngx_event_t *rev)
{
    ssize_t              n;
    ngx_uint_t           i;
    ngx_connection_t    *c;
    ngx_chat_session_t  *s;

    c = rev->data;
    s = c->data;

    if (c->close) {
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_AWAY,
                               "server going away");
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;

        if (s->closing) {
            ngx_chat_session_finalize(s);
            return;
        }

        if (ngx_chat_session_tick(s) != NGX_OK) {
            return;
        }
    }

    for (i = 0; i < NGX_CHAT_READS_PER_CALL && rev->ready; i++) {

        n = c->recv(c, ngx_chat_recv_buf, NGX_CHAT_RECV_SIZE);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "chat: client closed the connection");

            if (!s->closing) {
                ngx_chat_stats->gone[NGX_CHAT_GONE_EOF]++;
            }

            ngx_chat_session_finalize(s);
            return;
        }

        s->last_read = (uint32_t) ngx_current_msec;
        ngx_chat_stats->bytes_in += n;

        if (s->closing) {
            continue;     /* draining until the client closes */
        }

        if (ngx_chat_session_input(s, ngx_chat_recv_buf,
                                   ngx_chat_recv_buf + n)
            != NGX_OK)
        {
            return;
        }
    }

    if (rev->ready) {
        /* let other connections run before reading on */
        ngx_post_event(rev, &ngx_posted_events);
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_chat_session_finalize(s);
    }
}


/*
 * The heartbeat: a ping every interval, and a client from which nothing
 * came for two intervals is gone. The timer is set for whichever is due
 * first, so the close comes two intervals after the last byte, not after
 * the tick that follows them; reads only note their time.
 */

static ngx_int_t
ngx_chat_session_tick(ngx_chat_session_t *s)
{
    ngx_msec_t  hb, idle, since_ping, next;

    if (s->expires && (int64_t) ngx_time() >= s->expires) {
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_POLICY,
                               "token expired");
        return NGX_DONE;
    }

    hb = s->conf->heartbeat;
    idle = (uint32_t) ((uint32_t) ngx_current_msec - s->last_read);

    if (idle >= 2 * hb) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "chat: client silent for two heartbeats");
        ngx_chat_stats->gone[NGX_CHAT_GONE_SILENT]++;
        ngx_chat_session_finalize(s);
        return NGX_DONE;
    }

    since_ping = (uint32_t) ((uint32_t) ngx_current_msec - s->last_ping);

    /* a timer may fire a little early: a ping that is nearly due goes now */
    if (since_ping + NGX_CHAT_TICK_SLACK >= hb) {
        if (ngx_chat_session_queue(s, NGX_CHAT_WS_OP_PING, NULL, 0,
                                   NGX_CHAT_QUEUE_FORCE)
            != NGX_OK)
        {
            ngx_chat_session_finalize(s);
            return NGX_DONE;
        }

        s->last_ping = (uint32_t) ngx_current_msec;
        since_ping = 0;
    }

    next = ngx_min(hb - since_ping, 2 * hb - idle);

    ngx_add_timer(s->connection->read, ngx_max(next, 1));

    return NGX_OK;
}


/* NGX_OK: go on reading; anything else: the session is closing or gone */

static ngx_int_t
ngx_chat_session_input(ngx_chat_session_t *s, u_char *pos, u_char *end)
{
    ngx_int_t             rc;
    ngx_chat_ws_event_t   ev;

    if (s->in == NULL) {
        ngx_chat_ws_parser_init(&ngx_chat_session_scratch,
                                s->conf->max_message);
        ngx_chat_session_scratch.max_frames =
                         (uint32_t) ngx_min(s->conf->max_frames, 0xffffffff);
        ngx_chat_session_scratch.deflate = s->deflate_bits ? 1 : 0;
    }

    for ( ;; ) {

        /* a handler may have moved the state into the session's own */

        switch (ngx_chat_ws_parse(ngx_chat_session_parser(s), &pos, end,
                                  &ev))
        {

        case NGX_CHAT_WS_AGAIN:
            ngx_chat_session_input_done(s);
            return NGX_OK;

        case NGX_CHAT_WS_CONTROL:
            ngx_chat_stats->frames_in++;
            rc = ngx_chat_session_control(s, &ev);
            break;

        case NGX_CHAT_WS_DATA:
            ngx_chat_stats->frames_in += ev.last;
            rc = ngx_chat_session_data(s, &ev);
            break;

        default: /* NGX_CHAT_WS_ERROR */
            ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                          "chat: client protocol error %ui: %s",
                          (ngx_uint_t) ev.close_code, ev.reason);
            ngx_chat_session_close(s, ev.close_code, (char *) ev.reason);
            return NGX_DONE;
        }

        if (rc != NGX_OK || s->closing) {
            return NGX_DONE;
        }
    }
}


static ngx_chat_ws_parser_t *
ngx_chat_session_parser(ngx_chat_session_t *s)
{
    return s->in ? &ngx_chat_session_in_of(s)->parser
                 : &ngx_chat_session_scratch;
}


/* the session's own input state, made from the scratch parser's */

static ngx_chat_session_in_t *
ngx_chat_session_in(ngx_chat_session_t *s)
{
    ngx_chat_session_in_t      *in;
    ngx_chat_deflate_params_t   params;

    if (s->in) {
        return s->in;
    }

    in = ngx_alloc(sizeof(ngx_chat_session_in_t), s->connection->log);
    if (in == NULL) {
        return NULL;
    }

    in->parser = ngx_chat_session_scratch;
    in->msg = NULL;
    in->msg_len = 0;
    in->msg_size = 0;

    if (s->deflate_bits) {
        params.server_window_bits = (uint8_t) s->deflate_bits;
        params.client_window_bits = (uint8_t) s->inflate_bits;
        params.client_takeover = (uint8_t) s->inflate_takeover;
        ngx_chat_inflate_init(&in->inflater, &params);

    } else {
        ngx_memzero(&in->inflater, sizeof(ngx_chat_inflater_t));
    }

    in->utf8 = NGX_CHAT_UTF8_ACCEPT;

    s->in = in;

    return in;
}


/*
 * The read ended: a frame or a message left under way keeps its state in
 * the session, one that ended between messages gives it back.
 */

static void
ngx_chat_session_input_done(ngx_chat_session_t *s)
{
    ngx_chat_session_in_t  *in;

    in = s->in;

    if (in == NULL) {
        if (!ngx_chat_ws_parser_idle(&ngx_chat_session_scratch)
            && ngx_chat_session_in(s) == NULL)
        {
            ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_INTERNAL,
                                   "out of memory");
        }

        return;
    }

    if (in->msg == NULL && in->inflater.stream == NULL
        && ngx_chat_ws_parser_idle(&in->parser))
    {
        ngx_free(in);
        s->in = NULL;
    }
}


static ngx_int_t
ngx_chat_session_control(ngx_chat_session_t *s, ngx_chat_ws_event_t *ev)
{
    ngx_uint_t  code;

    switch (ev->opcode) {

    case NGX_CHAT_WS_OP_PING:
        if (ngx_chat_session_queue(s, NGX_CHAT_WS_OP_PONG, ev->data, ev->len,
                                   0)
            != NGX_OK)
        {
            ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_SLOW,
                                   "send buffer overflow");
            return NGX_DONE;
        }

        return NGX_OK;

    case NGX_CHAT_WS_OP_PONG:
        return NGX_OK;

    default: /* NGX_CHAT_WS_OP_CLOSE */
        code = ev->len >= 2 ? (ev->data[0] << 8 | ev->data[1])
                            : NGX_CHAT_WIRE_CLOSE_NORMAL;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                       "chat: client close %ui", code);

        ngx_chat_session_close(s, code, "");
        return NGX_DONE;
    }
}


static ngx_int_t
ngx_chat_session_data(ngx_chat_session_t *s, ngx_chat_ws_event_t *ev)
{
    u_char                 *msg;
    size_t                  size;
    ngx_chat_session_in_t  *in;

    if (ev->compressed) {
        return ngx_chat_session_inflate(s, ev);
    }

    if (ev->last
        && (s->in == NULL || ngx_chat_session_in_of(s)->msg_len == 0))
    {
        /* the whole message is in the read buffer: no copy */
        s->conf->handlers->message(s, ev->opcode, ev->data, ev->len);
        return NGX_OK;
    }

    in = ngx_chat_session_in(s);
    if (in == NULL) {
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_INTERNAL,
                               "out of memory");
        return NGX_DONE;
    }

    if (in->msg_len + ev->len > in->msg_size) {
        size = ngx_max(in->msg_len + ev->len, 2 * in->msg_size);
        size = ngx_min(size, s->conf->max_message);
        size = ngx_max(size, in->msg_len + ev->len);

        msg = ngx_alloc(size, s->connection->log);
        if (msg == NULL) {
            ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_INTERNAL,
                                   "out of memory");
            return NGX_DONE;
        }

        if (in->msg) {
            ngx_memcpy(msg, in->msg, in->msg_len);
            ngx_free(in->msg);
        }

        in->msg = msg;
        in->msg_size = (uint32_t) size;
    }

    if (ev->len) {
        ngx_memcpy(in->msg + in->msg_len, ev->data, ev->len);
        in->msg_len += (uint32_t) ev->len;
    }

    if (!ev->last) {
        return NGX_OK;
    }

    s->conf->handlers->message(s, ev->opcode, in->msg, in->msg_len);

    ngx_free(in->msg);
    in->msg = NULL;
    in->msg_len = 0;
    in->msg_size = 0;

    return NGX_OK;
}


/*
 * A chunk of a compressed message: inflated into the reassembly buffer
 * under chat_max_message_bytes (the inflated size; the wire size was
 * bounded by the parser), its text checked as it comes out.
 */

static ngx_int_t
ngx_chat_session_inflate(ngx_chat_session_t *s, ngx_chat_ws_event_t *ev)
{
    unsigned                 code;
    ngx_uint_t               level;
    const char              *reason;
    ngx_chat_deflate_buf_t   buf;
    ngx_chat_session_in_t   *in;

    if (!s->deflate_bits) {
        /* the parser flags compressed messages only when asked to */
        ngx_log_error(NGX_LOG_ALERT, s->connection->log, 0,
                      "chat: compressed message without permessage-deflate");
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_INTERNAL,
                               "internal error");
        return NGX_DONE;
    }

    in = ngx_chat_session_in(s);
    if (in == NULL) {
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_INTERNAL,
                               "out of memory");
        return NGX_DONE;
    }

    buf.data = in->msg;
    buf.len = in->msg_len;
    buf.size = in->msg_size;

    code = ngx_chat_inflate_event(&ngx_chat_deflate_ctx, &in->inflater,
                                  &in->utf8, ev, &buf, s->conf->max_message,
                                  &reason);

    /* the buffer may have grown (through ngx_alloc(), as the plain path's) */
    in->msg = buf.data;
    in->msg_len = (uint32_t) buf.len;
    in->msg_size = (uint32_t) buf.size;

    if (code) {
        /* out of memory is ours; the rest is the client's doing */
        level = (code == NGX_CHAT_WIRE_CLOSE_INTERNAL) ? NGX_LOG_ERR
                                                       : NGX_LOG_INFO;

        ngx_log_error(level, s->connection->log, 0,
                      "chat: client compressed message refused with %ui: %s",
                      (ngx_uint_t) code, reason);
        ngx_chat_session_close(s, code, (char *) reason);
        return NGX_DONE;
    }

    if (!ev->last) {
        return NGX_OK;
    }

    /* an empty message allocated nothing */

    s->conf->handlers->message(s, ev->opcode,
                               in->msg ? in->msg : (u_char *) "", in->msg_len);

    if (in->msg) {
        ngx_free(in->msg);
        in->msg = NULL;
    }

    in->msg_len = 0;
    in->msg_size = 0;

    return NGX_OK;
}


ngx_int_t
ngx_chat_session_send_text(ngx_chat_session_t *s, u_char *data, size_t len)
{
    return ngx_chat_session_send(s, NGX_CHAT_WS_OP_TEXT, data, len);
}


ngx_int_t
ngx_chat_session_send(ngx_chat_session_t *s, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    if (s->closing) {
        return NGX_DECLINED;
    }

    if (ngx_chat_session_queue(s, opcode, data, len, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "chat: client too slow, %uz bytes queued",
                      ngx_chat_session_queued(s));
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_SLOW,
                               "send buffer overflow");
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_chat_session_send_shared(ngx_chat_session_t *s,
    ngx_chat_deflate_shared_t *sh)
{
    u_char                 *frame;
    size_t                  len;
    ngx_uint_t              flags;
    ngx_chat_deflate_rc_e   rc;

    if (s->closing) {
        return NGX_DECLINED;
    }

    frame = (u_char *) sh->in;
    len = sh->len;
    flags = 0;

    if (s->deflate_bits) {
        rc = ngx_chat_deflate_shared_frame(&ngx_chat_deflate_ctx, sh,
                                           s->deflate_bits, &frame, &len);

        if (rc == NGX_CHAT_DEFLATE_OK) {
            flags = NGX_CHAT_QUEUE_FRAME;

        } else {
            /* declined once for this window size: not tried again here */

            if (rc == NGX_CHAT_DEFLATE_ERROR) {
                ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                              "chat: deflate failed, sending uncompressed");
            }

            frame = (u_char *) sh->in;
            len = sh->len;
            flags = NGX_CHAT_QUEUE_PLAIN;
        }
    }

    if (ngx_chat_session_queue(s, sh->opcode, frame, len, flags) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "chat: client too slow, %uz bytes queued",
                      ngx_chat_session_queued(s));
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_SLOW,
                               "send buffer overflow");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_chat_session_shared_free(ngx_chat_deflate_shared_t *sh)
{
    ngx_chat_deflate_shared_free(&ngx_chat_deflate_ctx, sh);
}


/*
 * Appends one frame: a text or binary one compressed when the session
 * agreed to permessage-deflate and it is at least chat_deflate_min_size
 * long (and shrinks), written straight into the output buffer. Only close
 * and ping frames may pass the chat_send_buffer bound (FORCE): they are
 * small and the client must see them. The bound is on the uncompressed
 * size, which a compressed frame never passes.
 */

static ngx_int_t
ngx_chat_session_queue(ngx_chat_session_t *s, ngx_uint_t opcode, u_char *data,
    size_t len, ngx_uint_t flags)
{
    u_char                 *frame;
    size_t                  need, room, n;
    ngx_chat_session_out_t *o;
    ngx_int_t               rc;
    ngx_uint_t              compress;
    ngx_chat_deflate_rc_e   drc;

    compress = 0;

    if (flags & NGX_CHAT_QUEUE_FRAME) {
        need = len;
        room = len;

    } else {
        need = NGX_CHAT_WS_MAX_HEADER + len;
        room = need;

        if (s->deflate_bits
            && !(flags & NGX_CHAT_QUEUE_PLAIN)
            && (opcode == NGX_CHAT_WS_OP_TEXT
                || opcode == NGX_CHAT_WS_OP_BINARY)
            && len >= ngx_chat_deflate_ctx.min_size)
        {
            /* zlib writes the sync flush's 4-byte tail before it goes */
            compress = 1;
            room = NGX_CHAT_DEFLATE_FRAME_SIZE(len);
        }
    }

    rc = ngx_chat_session_reserve(s, need, room,
                                  flags & NGX_CHAT_QUEUE_FORCE);
    if (rc != NGX_OK) {
        return rc;
    }

    o = s->out;

    if (flags & NGX_CHAT_QUEUE_FRAME) {
        o->last = ngx_cpymem(o->last, data, len);
        goto queued;
    }

    if (compress) {
        drc = ngx_chat_deflate_frame(&ngx_chat_deflate_ctx, s->deflate_bits,
                                     (unsigned) opcode, data, len,
                                     o->last, room, &frame, &n);

        if (drc == NGX_CHAT_DEFLATE_OK) {
            /* the header went where its length put it: no gap before it */
            if (frame != o->last) {
                ngx_memmove(o->last, frame, n);
            }

            o->last += n;
            goto queued;
        }

        if (drc == NGX_CHAT_DEFLATE_ERROR) {
            ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                          "chat: deflate failed, sending uncompressed");
        }

        /* declined: it goes as it is, over what zlib wrote */
    }

    o->last += ngx_chat_ws_frame_header(o->last, opcode, len);

    if (len) {
        o->last = ngx_cpymem(o->last, data, len);
    }

queued:

    ngx_chat_stats->frames_out++;

    /* one write for everything queued before the posted events run */
    ngx_post_event(s->connection->write, &ngx_posted_events);

    return NGX_OK;
}


/*
 * Room for room bytes at the output's last; need (at most room) is what the
 * frame adds to the queue as far as the send buffer bound goes.
 */

static ngx_int_t
ngx_chat_session_reserve(ngx_chat_session_t *s, size_t need, size_t room,
    ngx_uint_t force)
{
    size_t                   used, size;
    ngx_chat_session_out_t  *o, *old;

    old = s->out;

    if (old == NULL) {
        size = ngx_max(room, NGX_CHAT_OUT_MIN);

        o = ngx_alloc(sizeof(ngx_chat_session_out_t) + size,
                      s->connection->log);
        if (o == NULL) {
            return NGX_ERROR;
        }

        o->pos = ngx_chat_session_bytes(o);
        o->last = o->pos;
        o->end = o->pos + size;
        s->out = o;

        return NGX_OK;
    }

    if ((size_t) (old->end - old->last) >= room) {
        return NGX_OK;
    }

    used = old->last - old->pos;

    if (used + need > s->conf->send_buffer && !force) {
        return NGX_DECLINED;
    }

    if ((size_t) (old->end - ngx_chat_session_bytes(old)) >= used + room) {
        ngx_memmove(ngx_chat_session_bytes(old), old->pos, used);
        old->pos = ngx_chat_session_bytes(old);
        old->last = old->pos + used;

        return NGX_OK;
    }

    size = ngx_max(used + room,
                   2 * (size_t) (old->end - ngx_chat_session_bytes(old)));

    if (!force) {
        size = ngx_min(size, s->conf->send_buffer);
        size = ngx_max(size, used + room);
    }

    o = ngx_alloc(sizeof(ngx_chat_session_out_t) + size, s->connection->log);
    if (o == NULL) {
        return NGX_ERROR;
    }

    o->pos = ngx_chat_session_bytes(o);
    o->last = ngx_cpymem(o->pos, old->pos, used);
    o->end = o->pos + size;

    ngx_free(old);
    s->out = o;

    return NGX_OK;
}


static void
ngx_chat_session_write_handler(ngx_event_t *wev)
{
    ngx_connection_t    *c;
    ngx_chat_session_t  *s;

    c = wev->data;
    s = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "chat: client read nothing for %M ms, %uz bytes "
                      "queued", s->conf->send_timeout,
                      ngx_chat_session_queued(s));
        ngx_chat_stats->gone[NGX_CHAT_GONE_STALLED]++;
        ngx_chat_session_finalize(s);
        return;
    }

    (void) ngx_chat_session_flush(s);
}


size_t
ngx_chat_session_queued(ngx_chat_session_t *s)
{
    ngx_chat_session_out_t  *o;

    o = s->out;

    return o ? (size_t) (o->last - o->pos) : 0;
}


void
ngx_chat_session_notify_drained(ngx_chat_session_t *s)
{
    s->notify_drained = 1;
}


/* NGX_ERROR: the session is gone */

static ngx_int_t
ngx_chat_session_flush(ngx_chat_session_t *s)
{
    ssize_t                  n;
    ngx_connection_t        *c;
    ngx_chat_session_out_t  *o;

    c = s->connection;

    while ((o = s->out) != NULL && o->pos < o->last) {

        n = c->send(c, o->pos, o->last - o->pos);

        if (n == NGX_ERROR) {
            ngx_chat_session_finalize(s);
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_chat_session_finalize(s);
                return NGX_ERROR;
            }

            /* a client that reads nothing for this long is gone */
            if (!c->write->timer_set) {
                ngx_add_timer(c->write, s->conf->send_timeout);
            }

            ngx_chat_session_drained(s);

            return NGX_AGAIN;
        }

        o->pos += n;
        ngx_chat_stats->bytes_out += n;

        if (c->write->timer_set) {
            ngx_del_timer(c->write);
        }
    }

    if (s->out) {
        ngx_free(s->out);
        s->out = NULL;
    }

    ngx_chat_session_drained(s);

    if (!s->closing) {
        return NGX_OK;
    }

    /*
     * our close frame is out: the client answers with its own and closes;
     * read and drop what it still sends so that the kernel does not reset
     * the connection under the close frame
     */

    if (s->lingering) {
        return NGX_OK;
    }

    if (c->ssl) {
        ngx_chat_session_finalize(s);
        return NGX_ERROR;
    }

    if (shutdown(c->fd, SHUT_WR) == -1) {
        ngx_chat_session_finalize(s);
        return NGX_ERROR;
    }

    s->lingering = 1;
    ngx_add_timer(c->read, NGX_CHAT_LINGER_TIMEOUT);

    return NGX_OK;
}


void
ngx_chat_session_close(ngx_chat_session_t *s, ngx_uint_t code, char *reason)
{
    u_char   buf[NGX_CHAT_WS_MAX_CONTROL];
    size_t   len;

    if (s->closing) {
        return;
    }

    /*
     * never finalizes here: callers deep in the input path go on using the
     * session; the posted write event sends the frame and ends it
     */

    len = ngx_chat_ws_close_payload(buf, code, reason);
    ngx_chat_metrics_close(code);

    (void) ngx_chat_session_queue(s, NGX_CHAT_WS_OP_CLOSE, buf, len,
                                  NGX_CHAT_QUEUE_FORCE);

    s->closing = 1;

    ngx_chat_session_gone(s);

    ngx_add_timer(s->connection->read, NGX_CHAT_CLOSE_TIMEOUT);
    ngx_post_event(s->connection->write, &ngx_posted_events);
}


/* the handlers asked to hear when the output has room again */

static void
ngx_chat_session_drained(ngx_chat_session_t *s)
{
    if (s->notify_drained && !s->closing
        && ngx_chat_session_queued(s) <= s->conf->send_buffer / 2)
    {
        s->notify_drained = 0;
        s->conf->handlers->drained(s);
    }
}


static void
ngx_chat_session_gone(ngx_chat_session_t *s)
{
    if (!s->gone) {
        s->gone = 1;
        s->conf->handlers->closed(s);
    }
}


static void
ngx_chat_session_finalize(ngx_chat_session_t *s)
{
    ngx_connection_t  *c;

    c = s->connection;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "chat: session %016xL closed", s->key);

    ngx_chat_session_gone(s);

    if (s->in_table) {
        ngx_chat_session_table_delete(s);
    }

    ngx_chat_stats->connections[s->conf->metrics_index]--;

    if (s->in) {
        /* a message cut short, or a client's kept context: its stream */
        ngx_chat_inflate_end(&ngx_chat_deflate_ctx,
                             &ngx_chat_session_in_of(s)->inflater);

        if (ngx_chat_session_in_of(s)->msg) {
            ngx_free(ngx_chat_session_in_of(s)->msg);
        }

        ngx_free(s->in);
        s->in = NULL;
    }

    if (s->extra) {
        /* the handlers gave back what hung off it */
        ngx_free(s->extra);
        s->extra = NULL;
    }

    if (s->out) {
        ngx_free(s->out);
        s->out = NULL;
    }

    ngx_http_close_connection(c);
}


ngx_chat_session_t *
ngx_chat_session_find(const u_char *sid)
{
    ngx_int_t  key;

    key = ngx_hextoi((u_char *) sid, NGX_CHAT_WIRE_SID_LEN);

    if (key == NGX_ERROR) {
        return NULL;
    }

    return ngx_chat_session_find_key((uint64_t) key);
}


ngx_chat_session_t *
ngx_chat_session_find_key(uint64_t key)
{
    ngx_chat_session_t  *s;

    for (s = ngx_chat_sessions[ngx_chat_session_bucket(key)]; s; s = s->next)
    {
        if (s->key == key) {
            return s;
        }
    }

    return NULL;
}


u_char *
ngx_chat_session_sid(ngx_chat_session_t *s, u_char *buf)
{
    (void) ngx_sprintf(buf, "%016xL", s->key);

    return buf;
}


ngx_chat_session_extra_t *
ngx_chat_session_extra(ngx_chat_session_t *s)
{
    if (s->extra == NULL) {
        s->extra = ngx_calloc(sizeof(ngx_chat_session_extra_t),
                              s->connection->log);
    }

    return s->extra;
}


static ngx_int_t
ngx_chat_session_table_insert(ngx_chat_session_t *s)
{
    ngx_uint_t            i, size, bucket;
    ngx_chat_session_t  **table, *t, *next;

    /* one session a bucket on average: double, then rehash */

    if (ngx_chat_sessions_n > ngx_chat_sessions_mask) {
        size = 2 * (ngx_chat_sessions_mask + 1);

        table = ngx_calloc(size * sizeof(ngx_chat_session_t *),
                           s->connection->log);
        if (table == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i <= ngx_chat_sessions_mask; i++) {
            for (t = ngx_chat_sessions[i]; t; t = next) {
                next = t->next;
                bucket = (ngx_uint_t) (t->key ^ (t->key >> 32)) & (size - 1);
                t->next = table[bucket];
                table[bucket] = t;
            }
        }

        ngx_free(ngx_chat_sessions);
        ngx_chat_sessions = table;
        ngx_chat_sessions_mask = size - 1;
    }

    bucket = ngx_chat_session_bucket(s->key);

    s->next = ngx_chat_sessions[bucket];
    ngx_chat_sessions[bucket] = s;
    ngx_chat_sessions_n++;
    s->in_table = 1;

    return NGX_OK;
}


static void
ngx_chat_session_table_delete(ngx_chat_session_t *s)
{
    ngx_chat_session_t  **prev;

    for (prev = &ngx_chat_sessions[ngx_chat_session_bucket(s->key)];
         *prev;
         prev = &(*prev)->next)
    {
        if (*prev == s) {
            *prev = s->next;
            ngx_chat_sessions_n--;
            break;
        }
    }

    s->in_table = 0;
}


/* from a bucket on: the first session there or after */

static ngx_chat_session_t *
ngx_chat_session_from(ngx_uint_t bucket)
{
    for ( /* void */ ; bucket <= ngx_chat_sessions_mask; bucket++) {
        if (ngx_chat_sessions[bucket]) {
            return ngx_chat_sessions[bucket];
        }
    }

    return NULL;
}


ngx_chat_session_t *
ngx_chat_session_first(void)
{
    return ngx_chat_sessions ? ngx_chat_session_from(0) : NULL;
}


ngx_chat_session_t *
ngx_chat_session_next(ngx_chat_session_t *s)
{
    if (s->next) {
        return s->next;
    }

    return ngx_chat_session_from(ngx_chat_session_bucket(s->key) + 1);
}


/* the process is exiting: one try to tell each client, then close */

void
ngx_chat_session_close_all(ngx_uint_t code, char *reason)
{
    ngx_connection_t        *c;
    ngx_chat_session_t      *s;
    ngx_chat_session_out_t  *o;

    if (ngx_chat_recv_buf == NULL) {
        return;
    }

    while ((s = ngx_chat_session_first()) != NULL) {
        c = s->connection;

        ngx_chat_session_close(s, code, reason);

        o = s->out;

        if (o && o->pos < o->last) {
            (void) c->send(c, o->pos, o->last - o->pos);
        }

        ngx_chat_session_finalize(s);
    }
}
