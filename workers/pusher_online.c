/*
 * pusher_online.c: a device with a live session needs no push: it has
 * the message already (or will have it from its own sync). The session
 * registry is the nginx nodes' hash per user (NGX_CHAT_WIRE_KEY_SESS),
 * asked with one pipelined HEXISTS per job.
 */

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "pusher_online.h"
#include "worker_redis_link.h"


/* a lookup waits this long at most: the batch in hand waits for it */
#define CHAT_ONLINE_TIMEOUT_MS  2000


struct chat_online_s {
    chat_redis_link_t   link;
    redisContext       *c;
};


chat_online_t *
chat_online_open(const char *addr)
{
    chat_online_t  *o;

    o = chat_alloc(sizeof(chat_online_t));
    memset(o, 0, sizeof(*o));

    if (!chat_redis_link_init(&o->link, addr, "")) {
        free(o);
        return NULL;
    }

    o->link.timeout_ms = CHAT_ONLINE_TIMEOUT_MS;

    return o;
}


void
chat_online_close(chat_online_t *o)
{
    if (o == NULL) {
        return;
    }

    if (o->c) {
        redisFree(o->c);
    }

    chat_redis_link_free(&o->link);
    free(o);
}


static bool
chat_online_connect(chat_online_t *o)
{
    if (o->c == NULL) {
        o->c = chat_redis_link_connect(&o->link);
    }

    return o->c != NULL;
}


bool
chat_online_check(chat_online_t *o, chat_push_job_t *jobs, size_t n)
{
    char        key[NGX_CHAT_WIRE_KEY_MAX];
    redisReply *r;
    size_t      i;
    bool        ok = true;

    if (n == 0) {
        return true;
    }

    if (!chat_online_connect(o)) {
        return false;
    }

    for (i = 0; i < n; i++) {
        ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SESS, jobs[i].user,
                          strlen(jobs[i].user));
        redisAppendCommand(o->c, "HEXISTS %s %s", key, jobs[i].device);
    }

    for (i = 0; i < n; i++) {
        r = NULL;

        if (redisGetReply(o->c, (void **) &r) != REDIS_OK || r == NULL) {
            log_warn("redis %s:%d: %s", o->link.host, o->link.port,
                     o->c->errstr);
            redisFree(o->c);
            o->c = NULL;
            return false;
        }

        if (r->type == REDIS_REPLY_INTEGER) {
            jobs[i].online = r->integer == 1;
        } else {
            ok = false;
        }

        freeReplyObject(r);
    }

    return ok;
}
