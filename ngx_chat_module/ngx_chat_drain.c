
/*
 * The drain: when this process is told to stop gracefully (a reload, a
 * binary upgrade, nginx -s quit), its listening sockets close at once, so
 * new connections go to the new processes, but its chat sessions are not
 * dropped all together: each gets a "reconnect" hint and a close, spread
 * over chat_drain, so that clients come back (and sync) a few at a time.
 * The process exits when its last session is gone.
 */


#include "ngx_chat.h"


#define NGX_CHAT_DRAIN_WATCH    250     /* how soon the stop is seen */
#define NGX_CHAT_DRAIN_TICK     100
#define NGX_CHAT_DRAIN_RETRY    1000    /* the hint: come back within */


static void ngx_chat_drain_watch_handler(ngx_event_t *ev);
static void ngx_chat_drain_tick_handler(ngx_event_t *ev);


static ngx_event_t            ngx_chat_drain_watch;
static ngx_event_t            ngx_chat_drain_tick;
static ngx_msec_t             ngx_chat_drain_window;
static ngx_uint_t             ngx_chat_drain_per_tick;
static ngx_uint_t             ngx_chat_drain_closed;
static ngx_uint_t             ngx_chat_drain_total;


ngx_int_t
ngx_chat_drain_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf)
{
    ngx_chat_drain_window = mcf->drain;

    if (ngx_chat_drain_window == 0) {
        return NGX_OK;      /* nginx closes the sessions, all at once */
    }

    ngx_chat_drain_watch.handler = ngx_chat_drain_watch_handler;
    ngx_chat_drain_watch.log = cycle->log;
    ngx_chat_drain_watch.cancelable = 1;

    ngx_chat_drain_tick.handler = ngx_chat_drain_tick_handler;
    ngx_chat_drain_tick.log = cycle->log;
    ngx_chat_drain_tick.cancelable = 1;

    ngx_add_timer(&ngx_chat_drain_watch, NGX_CHAT_DRAIN_WATCH);

    return NGX_OK;
}


/* 1 when the sessions are drained by this file, not closed by nginx */

ngx_uint_t
ngx_chat_drain_enabled(void)
{
    return ngx_chat_drain_window != 0;
}


ngx_uint_t
ngx_chat_draining(void)
{
    return ngx_chat_drain_tick.timer_set || ngx_chat_drain_total;
}


static void
ngx_chat_drain_watch_handler(ngx_event_t *ev)
{
    ngx_uint_t           n;
    ngx_chat_session_t  *s;

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_CHAT_DRAIN_WATCH);
        return;
    }

    for (n = 0, s = ngx_chat_session_first(); s; s = ngx_chat_session_next(s))
    {
        n++;
    }

    ngx_chat_drain_total = n;
    ngx_chat_stats->draining = 1;
    ngx_chat_drain_per_tick = (n * NGX_CHAT_DRAIN_TICK
                               + ngx_chat_drain_window - 1)
                              / ngx_chat_drain_window;

    ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                  "chat: draining %ui sessions over %M ms", n,
                  ngx_chat_drain_window);

    ngx_chat_drain_tick_handler(&ngx_chat_drain_tick);
}


static void
ngx_chat_drain_tick_handler(ngx_event_t *ev)
{
    u_char               buf[64], *p;
    ngx_uint_t           i;
    ngx_chat_session_t  *s, *next;

    p = ngx_sprintf(buf, "{\"type\":\"reconnect\",\"retry_after_ms\":%d}",
                    NGX_CHAT_DRAIN_RETRY);

    for (i = 0, s = ngx_chat_session_first();
         s && i < ngx_chat_drain_per_tick;
         s = next)
    {
        next = ngx_chat_session_next(s);

        if (s->closing) {
            continue;
        }

        (void) ngx_chat_session_send_text(s, buf, p - buf);
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_AWAY,
                               "server going away");
        ngx_chat_drain_closed++;
        i++;
    }

    if (s == NULL) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "chat: drained %ui sessions", ngx_chat_drain_closed);
        return;
    }

    ngx_add_timer(ev, NGX_CHAT_DRAIN_TICK);
}
