
/*
 * hiredis driven by nginx events: the context's socket becomes an nginx
 * connection, hiredis asks for read and write interest through the hooks
 * below, and nginx's events call hiredis back. Debian's hiredis (0.14) has
 * no timer hook: timeouts are the caller's (ngx_chat_redis.c).
 */


#include "ngx_chat.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


static void ngx_chat_redis_adapter_handler(ngx_event_t *ev);
static void ngx_chat_redis_adapter_add_read(void *data);
static void ngx_chat_redis_adapter_del_read(void *data);
static void ngx_chat_redis_adapter_add_write(void *data);
static void ngx_chat_redis_adapter_del_write(void *data);
static void ngx_chat_redis_adapter_cleanup(void *data);


ngx_int_t
ngx_chat_redis_attach(redisAsyncContext *ac, ngx_log_t *log)
{
    ngx_connection_t  *c;

    if (ac->ev.data != NULL) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;
    c->read->handler = ngx_chat_redis_adapter_handler;
    c->write->handler = ngx_chat_redis_adapter_handler;
    c->read->log = log;
    c->write->log = log;

    ac->ev.addRead = ngx_chat_redis_adapter_add_read;
    ac->ev.delRead = ngx_chat_redis_adapter_del_read;
    ac->ev.addWrite = ngx_chat_redis_adapter_add_write;
    ac->ev.delWrite = ngx_chat_redis_adapter_del_write;
    ac->ev.cleanup = ngx_chat_redis_adapter_cleanup;
    ac->ev.data = c;

    return NGX_OK;
}


static void
ngx_chat_redis_adapter_handler(ngx_event_t *ev)
{
    ngx_connection_t   *c = ev->data;
    redisAsyncContext  *ac = c->data;

    /* either call may free the context and this connection */

    if (ev->write) {
        redisAsyncHandleWrite(ac);

    } else {
        redisAsyncHandleRead(ac);
    }
}


static void
ngx_chat_redis_adapter_add_read(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_chat_redis_adapter_del_read(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_chat_redis_adapter_add_write(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_chat_redis_adapter_del_write(void *data)
{
    ngx_connection_t  *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_chat_redis_adapter_cleanup(void *data)
{
    ngx_connection_t  *c = data;

    ngx_chat_redis_adapter_del_read(c);
    ngx_chat_redis_adapter_del_write(c);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* hiredis closes the socket itself */
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
