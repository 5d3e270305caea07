
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
 */


#include "ngx_chat.h"


#define NGX_CHAT_RECV_SIZE       65536
#define NGX_CHAT_OUT_MIN         4096
#define NGX_CHAT_READS_PER_CALL  16
#define NGX_CHAT_CLOSE_TIMEOUT   5000
#define NGX_CHAT_LINGER_TIMEOUT  2000
#define NGX_CHAT_TICK_SLACK      50


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
static ngx_int_t ngx_chat_session_queue(ngx_chat_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len, ngx_uint_t force);
static ngx_int_t ngx_chat_session_flush(ngx_chat_session_t *s);
static void ngx_chat_session_drained(ngx_chat_session_t *s);
static void ngx_chat_session_gone(ngx_chat_session_t *s);
static void ngx_chat_session_finalize(ngx_chat_session_t *s);


/* the process's sessions by id, the read buffer, the ids handed out */
static ngx_rbtree_t       ngx_chat_sessions;
static ngx_rbtree_node_t  ngx_chat_sessions_sentinel;
static u_char            *ngx_chat_recv_buf;
static uint64_t           ngx_chat_sid_prefix;
static uint64_t           ngx_chat_sid_counter;


ngx_int_t
ngx_chat_session_init(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_chat_sessions, &ngx_chat_sessions_sentinel,
                    ngx_rbtree_insert_value);

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

    return NGX_OK;
}


ngx_int_t
ngx_chat_session_start(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *device, int64_t expires, u_char *response, size_t len)
{
    ngx_connection_t     *c;
    ngx_chat_session_t   *s;
    ngx_chat_loc_conf_t  *lcf;

    c = r->connection;

    if (ngx_chat_recv_buf == NULL) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "chat: not initialized in this process");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    s = ngx_pcalloc(c->pool, sizeof(ngx_chat_session_t) + user->len
                             + device->len);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->connection = c;
    s->conf = lcf;
    s->expires = expires;

    s->user.data = (u_char *) s + sizeof(ngx_chat_session_t);
    s->user.len = user->len;
    ngx_memcpy(s->user.data, user->data, user->len);

    s->device.data = s->user.data + user->len;
    s->device.len = device->len;
    ngx_memcpy(s->device.data, device->data, device->len);

    s->node.key = (ngx_rbtree_key_t)
                  (ngx_chat_sid_prefix | (++ngx_chat_sid_counter & 0xffffffff));
    ngx_sprintf(s->sid, "%016xL", (uint64_t) s->node.key);

    ngx_chat_ws_parser_init(&s->parser, lcf->max_message);
    s->parser.max_frames = (uint32_t) ngx_min(lcf->max_frames, 0xffffffff);

    s->out = ngx_alloc(ngx_max(len, NGX_CHAT_OUT_MIN), c->log);
    if (s->out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->out_pos = s->out;
    s->out_last = ngx_cpymem(s->out, response, len);
    s->out_end = s->out + ngx_max(len, NGX_CHAT_OUT_MIN);

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

    if (!s->conf->echo) {
        ngx_rbtree_insert(&ngx_chat_sessions, &s->node);
        s->in_table = 1;
    }

    ngx_chat_stats->connections[s->conf->metrics_index]++;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "chat: session %*s started for \"%V\"",
                   (size_t) NGX_CHAT_WIRE_SID_LEN, s->sid, &s->user);

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
        if (ngx_chat_session_queue(s, NGX_CHAT_WS_OP_PING, NULL, 0, 1)
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

    for ( ;; ) {

        switch (ngx_chat_ws_parse(&s->parser, &pos, end, &ev)) {

        case NGX_CHAT_WS_AGAIN:
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
    u_char  *msg;
    size_t   size;

    if (ev->last && s->msg_len == 0) {
        /* the whole message is in the read buffer: no copy */
        s->conf->handlers->message(s, ev->opcode, ev->data, ev->len);
        return NGX_OK;
    }

    if (s->msg_len + ev->len > s->msg_size) {
        size = ngx_max(s->msg_len + ev->len, 2 * s->msg_size);
        size = ngx_min(size, s->conf->max_message);
        size = ngx_max(size, s->msg_len + ev->len);

        msg = ngx_alloc(size, s->connection->log);
        if (msg == NULL) {
            ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_INTERNAL,
                                   "out of memory");
            return NGX_DONE;
        }

        if (s->msg) {
            ngx_memcpy(msg, s->msg, s->msg_len);
            ngx_free(s->msg);
        }

        s->msg = msg;
        s->msg_size = size;
    }

    if (ev->len) {
        ngx_memcpy(s->msg + s->msg_len, ev->data, ev->len);
        s->msg_len += ev->len;
    }

    if (!ev->last) {
        return NGX_OK;
    }

    s->conf->handlers->message(s, ev->opcode, s->msg, s->msg_len);

    ngx_free(s->msg);
    s->msg = NULL;
    s->msg_len = 0;
    s->msg_size = 0;

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
                      (size_t) (s->out_last - s->out_pos));
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_SLOW,
                               "send buffer overflow");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Appends one frame. Only close and ping frames may pass the
 * chat_send_buffer bound ("force"): they are small and the client must see
 * them.
 */

static ngx_int_t
ngx_chat_session_queue(ngx_chat_session_t *s, ngx_uint_t opcode, u_char *data,
    size_t len, ngx_uint_t force)
{
    u_char  *out;
    size_t   need, used, size;

    need = NGX_CHAT_WS_MAX_HEADER + len;

    if (s->out == NULL) {
        size = ngx_max(need, NGX_CHAT_OUT_MIN);

        s->out = ngx_alloc(size, s->connection->log);
        if (s->out == NULL) {
            return NGX_ERROR;
        }

        s->out_pos = s->out;
        s->out_last = s->out;
        s->out_end = s->out + size;

    } else if ((size_t) (s->out_end - s->out_last) < need) {
        used = s->out_last - s->out_pos;

        if (used + need > s->conf->send_buffer && !force) {
            return NGX_DECLINED;
        }

        if ((size_t) (s->out_end - s->out) >= used + need) {
            ngx_memmove(s->out, s->out_pos, used);

        } else {
            size = ngx_max(used + need, 2 * (size_t) (s->out_end - s->out));

            if (!force) {
                size = ngx_min(size, s->conf->send_buffer);
            }

            out = ngx_alloc(size, s->connection->log);
            if (out == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(out, s->out_pos, used);
            ngx_free(s->out);

            s->out = out;
            s->out_end = out + size;
        }

        s->out_pos = s->out;
        s->out_last = s->out + used;
    }

    s->out_last += ngx_chat_ws_frame_header(s->out_last, opcode, len);
    ngx_chat_stats->frames_out++;

    if (len) {
        s->out_last = ngx_cpymem(s->out_last, data, len);
    }

    /* one write for everything queued before the posted events run */
    ngx_post_event(s->connection->write, &ngx_posted_events);

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
                      (size_t) (s->out_last - s->out_pos));
        ngx_chat_stats->gone[NGX_CHAT_GONE_STALLED]++;
        ngx_chat_session_finalize(s);
        return;
    }

    (void) ngx_chat_session_flush(s);
}


size_t
ngx_chat_session_queued(ngx_chat_session_t *s)
{
    return s->out ? (size_t) (s->out_last - s->out_pos) : 0;
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
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->connection;

    while (s->out && s->out_pos < s->out_last) {

        n = c->send(c, s->out_pos, s->out_last - s->out_pos);

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

        s->out_pos += n;
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

    (void) ngx_chat_session_queue(s, NGX_CHAT_WS_OP_CLOSE, buf, len, 1);

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

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "chat: session %*s closed",
                   (size_t) NGX_CHAT_WIRE_SID_LEN, s->sid);

    ngx_chat_session_gone(s);

    if (s->in_table) {
        ngx_rbtree_delete(&ngx_chat_sessions, &s->node);
        s->in_table = 0;
    }

    ngx_chat_stats->connections[s->conf->metrics_index]--;

    if (s->msg) {
        ngx_free(s->msg);
        s->msg = NULL;
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

    return ngx_chat_session_find_key((ngx_rbtree_key_t) key);
}


ngx_chat_session_t *
ngx_chat_session_find_key(ngx_rbtree_key_t key)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = ngx_chat_sessions.root;
    sentinel = ngx_chat_sessions.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        return (ngx_chat_session_t *) node;
    }

    return NULL;
}


ngx_chat_session_t *
ngx_chat_session_first(void)
{
    if (ngx_chat_sessions.root == ngx_chat_sessions.sentinel) {
        return NULL;
    }

    return (ngx_chat_session_t *) ngx_rbtree_min(ngx_chat_sessions.root,
                                                 ngx_chat_sessions.sentinel);
}


ngx_chat_session_t *
ngx_chat_session_next(ngx_chat_session_t *s)
{
    return (ngx_chat_session_t *) ngx_rbtree_next(&ngx_chat_sessions,
                                                  &s->node);
}


/* the process is exiting: one try to tell each client, then close */

void
ngx_chat_session_close_all(ngx_uint_t code, char *reason)
{
    ngx_connection_t    *c;
    ngx_chat_session_t  *s;

    if (ngx_chat_recv_buf == NULL) {
        return;
    }

    while ((s = ngx_chat_session_first()) != NULL) {
        c = s->connection;

        ngx_chat_session_close(s, code, reason);

        if (s->out && s->out_pos < s->out_last) {
            (void) c->send(c, s->out_pos, s->out_last - s->out_pos);
        }

        ngx_chat_session_finalize(s);
    }
}
