/*
 * worker_redis_link.h: a Redis address as --redis gives it and the making
 * of one connection to it (worker_redis_link.c), for every part of the
 * workers that keeps a connection of its own: chat_worker's deliveries
 * (worker_redis.c), streamed answers (worker_lists.c), revocations
 * (worker_control.c) and chat_pusher's session lookups (pusher_online.c).
 * What each connection is for, and how it waits for Redis, stays theirs.
 */

#ifndef CHAT_WORKER_REDIS_LINK_H
#define CHAT_WORKER_REDIS_LINK_H

#include <stdbool.h>

#include <hiredis/hiredis.h>

#include "worker_util.h"


typedef struct {
    char        *host;          /* or a unix socket path */
    int          port;          /* 0: unix socket */
    /* what the log lines say after the address: "", " (streams)" */
    const char  *name;
    /* a command that takes longer breaks the connection */
    long         timeout_ms;
} chat_redis_link_t;


/* "host:port", "host" (port 6379) or a socket path starting with "/";
 * false, after saying why, on a bad port */
bool chat_redis_link_init(chat_redis_link_t *l, const char *addr,
    const char *name);
void chat_redis_link_free(chat_redis_link_t *l);

/* a connection, with the connect and command timeouts and TCP keepalive;
 * NULL after saying why */
redisContext *chat_redis_link_connect(const chat_redis_link_t *l);

/* SCRIPT LOAD of script, which Redis must name sha; false after saying
 * why (the caller drops the connection) */
bool chat_redis_link_load(const chat_redis_link_t *l, redisContext *ctx,
    const char *script, const char *sha);

/* the name EVALSHA knows a script by: its SHA1, in lowercase hex */
void chat_redis_link_sha1(const char *script, char hex[41]);


#endif /* CHAT_WORKER_REDIS_LINK_H */
