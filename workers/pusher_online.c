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
#include "worker_util.h"


struct chat_online_s {
    char           *host;
    int             port;        /* 0: host is a socket path */
    redisContext   *c;
};


chat_online_t *
chat_online_open(const char *addr)
{
    chat_online_t  *o;
    const char     *colon;

    o = chat_alloc(sizeof(chat_online_t));
    memset(o, 0, sizeof(*o));

    colon = strrchr(addr, ':');

    if (addr[0] != '/' && colon != NULL) {
        o->host = chat_alloc((size_t) (colon - addr) + 1);
        memcpy(o->host, addr, (size_t) (colon - addr));
        o->host[colon - addr] = '\0';
        o->port = atoi(colon + 1);

    } else {
        o->host = chat_strdup(addr);
    }

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

    free(o->host);
    free(o);
}


static bool
chat_online_connect(chat_online_t *o)
{
    struct timeval  tv = { 2, 0 };

    if (o->c) {
        return true;
    }

    o->c = o->port ? redisConnectWithTimeout(o->host, o->port, tv)
                   : redisConnectUnixWithTimeout(o->host, tv);

    if (o->c == NULL || o->c->err) {
        log_warn("redis %s:%d: %s", o->host, o->port,
                 o->c ? o->c->errstr : "out of memory");
        if (o->c) {
            redisFree(o->c);
        }
        o->c = NULL;
        return false;
    }

    redisSetTimeout(o->c, tv);

    return true;
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
            log_warn("redis %s:%d: %s", o->host, o->port, o->c->errstr);
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
