/*
 * worker_redis_link.c: one way to reach Redis for every connection the
 * workers keep (worker_redis_link.h). A Redis that is away must cost a
 * caller a bounded wait, never a hang: connecting gives up after
 * CHAT_REDIS_LINK_CONNECT_MS, a command after the link's timeout, and
 * TCP keepalive notices a peer that vanished while the connection idled.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "worker_redis_link.h"


#define CHAT_REDIS_LINK_CONNECT_MS  2000
#define CHAT_REDIS_LINK_COMMAND_MS  10000
#define CHAT_REDIS_LINK_PORT        6379


bool
chat_redis_link_init(chat_redis_link_t *l, const char *addr,
    const char *name)
{
    const char  *colon;
    char        *end;
    long         port = CHAT_REDIS_LINK_PORT;

    memset(l, 0, sizeof(*l));
    l->name = name;
    l->timeout_ms = CHAT_REDIS_LINK_COMMAND_MS;

    colon = strrchr(addr, ':');

    if (addr[0] == '/') {
        port = 0;

    } else if (colon) {
        port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535) {
            log_error("--redis %s: bad port", addr);
            return false;
        }
    }

    l->host = chat_strdup(addr);
    if (port && colon) {
        l->host[colon - addr] = '\0';
    }

    l->port = (int) port;

    return true;
}


void
chat_redis_link_free(chat_redis_link_t *l)
{
    free(l->host);
    l->host = NULL;
}


static struct timeval
chat_redis_link_tv(long ms)
{
    struct timeval  tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;

    return tv;
}


redisContext *
chat_redis_link_connect(const chat_redis_link_t *l)
{
    struct timeval  connect_timeout, command_timeout;
    redisContext   *ctx;

    connect_timeout = chat_redis_link_tv(CHAT_REDIS_LINK_CONNECT_MS);
    command_timeout = chat_redis_link_tv(l->timeout_ms);

    if (l->port) {
        ctx = redisConnectWithTimeout(l->host, l->port, connect_timeout);
    } else {
        ctx = redisConnectUnixWithTimeout(l->host, connect_timeout);
    }

    if (ctx == NULL || ctx->err) {
        log_error("redis %s:%d%s: cannot connect: %s", l->host, l->port,
                  l->name, ctx ? ctx->errstr : "out of memory");
        if (ctx) {
            redisFree(ctx);
        }
        return NULL;
    }

    redisSetTimeout(ctx, command_timeout);

    if (l->port) {
        redisEnableKeepAlive(ctx);
    }

    return ctx;
}


bool
chat_redis_link_load(const chat_redis_link_t *l, redisContext *ctx,
    const char *script, const char *sha)
{
    redisReply  *reply;
    bool         ok;

    reply = redisCommand(ctx, "SCRIPT LOAD %s", script);

    ok = reply != NULL && reply->type == REDIS_REPLY_STRING
         && strcmp(reply->str, sha) == 0;

    if (!ok) {
        log_error("redis%s: SCRIPT LOAD: %s", l->name,
                  reply == NULL ? ctx->errstr
                  : reply->type == REDIS_REPLY_ERROR ? reply->str
                  : "another SHA1 than ours");
    }

    if (reply) {
        freeReplyObject(reply);
    }

    return ok;
}


void
chat_redis_link_sha1(const char *script, char hex[41])
{
    static const char  digits[] = "0123456789abcdef";
    unsigned char      md[EVP_MAX_MD_SIZE];
    unsigned int       len, i;

    if (!EVP_Digest(script, strlen(script), md, &len, EVP_sha1(), NULL)
        || len != 20)
    {
        log_error("cannot compute a SHA1");
        abort();
    }

    for (i = 0; i < len; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xf];
    }

    hex[40] = '\0';
}
