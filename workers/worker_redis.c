/*
 * worker_redis.c: chat_worker's side of Redis: the users' sessions
 * (chat:sess:<user>, one pipelined HGETALL per user), the PUBLISH of each
 * node's payload on chat:node:<node> (built by worker_payload.c) and the
 * delivered marks.
 *
 * The PUBLISHes of a batch go in one MULTI/EXEC together with the batch's
 * positions, raised in the hash chat:delivered:<topic>:<group> (field: the
 * partition, value: the last offset answered). A worker that dies after
 * EXEC but before its Kafka offsets are committed leaves records that the
 * next owner consumes again; the store recognises their messages (same
 * partition and offset) and this hash tells whether their answers already
 * went out, so that recipients do not see them twice.
 *
 * The marks are raised by a script (lua/delivered.lua) that each
 * connection loads once, when it is made, and the batches call by its
 * SHA1 with EVALSHA. A script that went missing meanwhile (SCRIPT FLUSH;
 * a Redis restart also drops the connection, which loads it again) makes
 * the EVALSHA in the MULTI answer NOSCRIPT after the PUBLISHes went out:
 * the script is loaded again and the marks raised right after.
 *
 * When Redis is down the delivery waits and retries until it works or the
 * worker is stopped: the Kafka offsets are committed only after it, so
 * nothing stored goes unanswered.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "worker_lua.h"
#include "worker_redis.h"


struct chat_redis_s {
    redisContext    *ctx;
    char            *host;          /* or a unix socket path */
    int              port;          /* 0: unix socket */
    char            *delivered_key;
    chat_stop_t     *stop;
    chat_backoff_t   backoff;
    char             delivered_sha[41];    /* of chat_lua_delivered */
};


/* the name EVALSHA knows a script by: its SHA1, in lowercase hex */
static void
chat_redis_sha1(const char *script, char hex[41])
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


/* SCRIPT LOAD, once per connection; false when it did not work */
static bool
chat_redis_load(chat_redis_t *r)
{
    redisReply  *reply;
    bool         ok;

    reply = redisCommand(r->ctx, "SCRIPT LOAD %s", chat_lua_delivered);

    if (reply == NULL) {
        log_error("redis: SCRIPT LOAD failed: %s", r->ctx->errstr);
        return false;
    }

    ok = reply->type == REDIS_REPLY_STRING
         && strcmp(reply->str, r->delivered_sha) == 0;

    if (!ok) {
        log_error("redis: SCRIPT LOAD: %s",
                  reply->type == REDIS_REPLY_ERROR ? reply->str
                  : "another SHA1 than ours");
    }

    freeReplyObject(reply);

    return ok;
}


static bool
chat_redis_connect(chat_redis_t *r)
{
    struct timeval  connect_timeout = { 2, 0 };
    struct timeval  command_timeout = { 10, 0 };

    if (r->port) {
        r->ctx = redisConnectWithTimeout(r->host, r->port, connect_timeout);
    } else {
        r->ctx = redisConnectUnixWithTimeout(r->host, connect_timeout);
    }

    if (r->ctx == NULL || r->ctx->err) {
        log_error("redis %s:%d: cannot connect: %s", r->host, r->port,
                  r->ctx ? r->ctx->errstr : "out of memory");
        if (r->ctx) {
            redisFree(r->ctx);
            r->ctx = NULL;
        }
        return false;
    }

    /* a Redis that hangs must not hang the worker for good */
    redisSetTimeout(r->ctx, command_timeout);

    if (r->port) {
        redisEnableKeepAlive(r->ctx);
    }

    /* a new connection may be to a Redis that has never seen the script */
    if (!chat_redis_load(r)) {
        redisFree(r->ctx);
        r->ctx = NULL;
        return false;
    }

    return true;
}


/* drops a broken connection and waits for a new one; false on stop */
static bool
chat_redis_reconnect(chat_redis_t *r)
{
    if (r->ctx) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }

    for ( ;; ) {
        if (!chat_backoff_wait(&r->backoff, r->stop)) {
            return false;
        }

        if (chat_redis_connect(r)) {
            log_info("redis %s:%d: connected again", r->host, r->port);
            chat_backoff_reset(&r->backoff);
            return true;
        }
    }
}


chat_redis_t *
chat_redis_open(const char *addr, const char *delivered_key,
    chat_stop_t *stop)
{
    chat_redis_t  *r;
    const char    *colon;
    char          *end;
    long           port = 6379;

    r = chat_alloc(sizeof(chat_redis_t));
    memset(r, 0, sizeof(*r));
    r->delivered_key = chat_strdup(delivered_key);
    r->stop = stop;
    chat_backoff_reset(&r->backoff);
    chat_redis_sha1(chat_lua_delivered, r->delivered_sha);

    colon = strrchr(addr, ':');

    if (addr[0] == '/') {
        r->host = chat_strdup(addr);
        port = 0;

    } else if (colon) {
        port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535) {
            log_error("--redis %s: bad port", addr);
            free(r->delivered_key);
            free(r);
            return NULL;
        }

        r->host = chat_strdup(addr);
        r->host[colon - addr] = '\0';

    } else {
        r->host = chat_strdup(addr);
    }

    r->port = (int) port;

    if (!chat_redis_connect(r) && !chat_redis_reconnect(r)) {
        chat_redis_close(r);
        return NULL;
    }

    return r;
}


void
chat_redis_close(chat_redis_t *r)
{
    if (r == NULL) {
        return;
    }

    if (r->ctx) {
        redisFree(r->ctx);
    }

    free(r->host);
    free(r->delivered_key);
    free(r);
}


/*
 * HGETALL chat:sess:<user> for every user, pipelined. false means the
 * connection broke (the caller reconnects and asks again).
 */
static bool
chat_redis_lookup(chat_redis_t *r, chat_payload_users_t *u,
    chat_arena_t *arena)
{
    chat_user_sessions_t  *found = u->found;
    redisReply            *reply;
    size_t                 i, j, n, node_len, key_len;
    const char            *node, *sid;
    char                  *node_copy, *sid_copy;
    char                   key[NGX_CHAT_WIRE_KEY_MAX];

    for (i = 0; i < u->n; i++) {
        key_len = ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SESS, u->users[i],
                                    strlen(u->users[i]));

        if (redisAppendCommand(r->ctx, "HGETALL %b", key, key_len)
            != REDIS_OK)
        {
            log_error("redis: cannot queue HGETALL: %s", r->ctx->errstr);
            return false;
        }
    }

    for (i = 0; i < u->n; i++) {
        if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
            log_error("redis: HGETALL failed: %s", r->ctx->errstr);
            return false;
        }

        found[i].sessions = NULL;
        found[i].n = 0;

        if (reply->type != REDIS_REPLY_ARRAY) {
            /* e.g. WRONGTYPE: nobody can be reached through that key */
            ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SESS, u->users[i],
                              strlen(u->users[i]));
            log_warn("redis: HGETALL %s: unexpected reply %s", key,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "");
            freeReplyObject(reply);
            continue;
        }

        found[i].sessions = chat_arena_alloc(arena,
                                (reply->elements / 2) * sizeof(chat_session_t));

        for (j = 0; j + 1 < reply->elements; j += 2) {
            redisReply  *value = reply->element[j + 1];

            if (value->type != REDIS_REPLY_STRING
                || !ngx_chat_wire_session_parse(value->str, value->len,
                                                &node, &node_len, &sid))
            {
                ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SESS, u->users[i],
                                  strlen(u->users[i]));
                log_warn("redis: %s: malformed session value", key);
                continue;
            }

            node_copy = chat_arena_strndup(arena, node, node_len);
            sid_copy = chat_arena_strndup(arena, sid, NGX_CHAT_WIRE_SID_LEN);

            n = found[i].n++;
            found[i].sessions[n].node = node_copy;
            found[i].sessions[n].sid = sid_copy;
        }

        freeReplyObject(reply);
    }

    return true;
}


/* queues EVALSHA of lua/delivered.lua for the batch's positions */
static void
chat_redis_append_marks(chat_redis_t *r, const chat_position_t *done,
    size_t ndone)
{
    const char  **argv;
    size_t       *argvlen;
    char        (*numbers)[2][24];
    size_t        argc = 4 + 2 * ndone, i;

    argv = chat_alloc(argc * sizeof(char *));
    argvlen = chat_alloc(argc * sizeof(size_t));
    numbers = chat_alloc(ndone * sizeof(*numbers));

    argv[0] = "EVALSHA";
    argv[1] = r->delivered_sha;
    argv[2] = "1";
    argv[3] = r->delivered_key;

    for (i = 0; i < ndone; i++) {
        snprintf(numbers[i][0], 24, "%d", (int) done[i].partition);
        snprintf(numbers[i][1], 24, "%lld", (long long) done[i].offset);
        argv[4 + 2 * i] = numbers[i][0];
        argv[5 + 2 * i] = numbers[i][1];
    }

    for (i = 0; i < argc; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    redisAppendCommandArgv(r->ctx, (int) argc, argv, argvlen);

    free(numbers);
    free(argvlen);
    free(argv);
}


/*
 * The script was gone when the EXEC ran, after its PUBLISHes: it is loaded
 * again and the marks raised now (raising is idempotent). Should this fail
 * too, the marks stay behind: a replay of these records would be
 * delivered again, the at-least-once side of a Redis failure.
 */
static void
chat_redis_marks_again(chat_redis_t *r, const chat_position_t *done,
    size_t ndone)
{
    redisReply  *reply;

    log_warn("redis: the delivered script was gone: loading it again");

    if (!chat_redis_load(r)) {
        return;
    }

    chat_redis_append_marks(r, done, ndone);

    if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
        log_error("redis: EVALSHA failed: %s", r->ctx->errstr);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis: EVALSHA: %s", reply->str);
    }

    freeReplyObject(reply);
}


/*
 * The batch's PUBLISHes and its positions (raised in the delivered hash) in
 * one MULTI/EXEC: either everything went out and is recorded, or nothing
 * did. false means the connection broke or Redis refused; then all of it is
 * sent again (if only the EXEC reply was lost, nodes see it twice: the
 * at-least-once side of a Redis failure).
 */
static bool
chat_redis_publish(chat_redis_t *r, chat_payloads_t *p,
    const chat_position_t *done, size_t ndone)
{
    redisReply  *reply, *e;
    size_t       i, expect, len;
    bool         ok = true, noscript = false;
    const char  *node;
    char         channel[NGX_CHAT_WIRE_KEY_MAX];

    redisAppendCommand(r->ctx, "MULTI");

    for (i = 0; i < p->nchunks; i++) {
        node = p->nodes[p->chunks[i].node].name;
        len = ngx_chat_wire_key(channel, NGX_CHAT_WIRE_CHANNEL_NODE, node,
                                strlen(node));
        redisAppendCommand(r->ctx, "PUBLISH %b %b", channel, len,
                           p->chunks[i].buf.data, p->chunks[i].buf.len);
    }

    if (ndone) {
        chat_redis_append_marks(r, done, ndone);
    }

    redisAppendCommand(r->ctx, "EXEC");

    /* +OK for MULTI, +QUEUED per command, then EXEC's array */
    expect = 1 + p->nchunks + (ndone ? 1 : 0);

    for (i = 0; i < expect; i++) {
        if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
            log_error("redis: MULTI failed: %s", r->ctx->errstr);
            return false;
        }

        if (reply->type == REDIS_REPLY_ERROR) {
            log_error("redis: MULTI: %s", reply->str);
            ok = false;
        }

        freeReplyObject(reply);
    }

    if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
        log_error("redis: EXEC failed: %s", r->ctx->errstr);
        return false;
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        log_error("redis: EXEC: %s",
                  reply->type == REDIS_REPLY_ERROR ? reply->str : "aborted");
        ok = false;

    } else {
        /* the commands ran: a failed one is reported, not repeated */
        for (i = 0; i < reply->elements; i++) {
            e = reply->element[i];

            if (e->type != REDIS_REPLY_ERROR) {
                continue;
            }

            if (ndone && i == p->nchunks
                && strncmp(e->str, "NOSCRIPT", 8) == 0)
            {
                noscript = true;
                continue;
            }

            log_error("redis: in EXEC: %s", e->str);
        }
    }

    freeReplyObject(reply);

    if (noscript) {
        chat_redis_marks_again(r, done, ndone);
    }

    return ok;
}


bool
chat_redis_deliver(chat_redis_t *r, chat_outbox_t *out, chat_arena_t *arena,
    const chat_position_t *done, size_t ndone)
{
    chat_payload_users_t  users;
    chat_payloads_t       payloads = { 0 };
    bool                  ok = false;

    chat_payload_users(&users, out);

    for ( ;; ) {
        if (r->ctx == NULL && !chat_redis_reconnect(r)) {
            goto done;
        }

        if (users.n == 0 || chat_redis_lookup(r, &users, arena)) {
            break;
        }

        redisFree(r->ctx);
        r->ctx = NULL;
    }

    chat_payload_build(&payloads, out, &users);

    for ( ;; ) {
        if (r->ctx == NULL && !chat_redis_reconnect(r)) {
            goto done;
        }

        if (chat_redis_publish(r, &payloads, done, ndone)) {
            break;
        }

        redisFree(r->ctx);
        r->ctx = NULL;
    }

    ok = true;

done:

    chat_payload_free(&payloads);
    chat_payload_users_free(&users);

    return ok;
}


bool
chat_redis_delivered(chat_redis_t *r, const int32_t *partitions, size_t n,
    int64_t *offsets)
{
    redisReply  *reply;
    size_t       i;

    for ( ;; ) {
        if (r->ctx == NULL && !chat_redis_reconnect(r)) {
            return false;
        }

        for (i = 0; i < n; i++) {
            redisAppendCommand(r->ctx, "HGET %s %d", r->delivered_key,
                               (int) partitions[i]);
        }

        for (i = 0; i < n; i++) {
            if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
                log_error("redis: HGET failed: %s", r->ctx->errstr);
                break;
            }

            offsets[i] = reply->type == REDIS_REPLY_STRING
                         ? strtoll(reply->str, NULL, 10) : -1;
            freeReplyObject(reply);
        }

        if (i == n) {
            return true;
        }

        redisFree(r->ctx);
        r->ctx = NULL;
    }
}
