/*
 * worker_control.c: the revocations' side of Redis, over a connection of
 * its own (the deliveries' one is worker_redis.c's): a revocation stored
 * in PostgreSQL is raised in the hash chat:revoked and published on the
 * channel chat:control, for every nginx worker process to close the
 * user's sessions with 4003 and to refuse the old tokens at the handshake.
 *
 * The hash is a copy of the revocations table (worker_store_admin.c),
 * written whole when this connection is made (the worker's start, a
 * Redis restart) and whenever a check, about once a second, finds it gone
 * while the table has rows (a FLUSHALL). Fields are only ever raised
 * (lua/revoked.lua): two workers writing at once keep the newer time.
 *
 * A revocation in a batch waits for Redis as a delivery does, until it
 * worked or the worker is stopped: its offset is committed only after.
 * The checks never wait: a Redis that is away is tried again later, with
 * a backoff, and the loop goes on.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "worker_control.h"
#include "worker_lua.h"
#include "worker_redis_link.h"


/* how often the hash is looked at; the fields sent per script call */
#define CHAT_CONTROL_CHECK_MS    1000
#define CHAT_CONTROL_CHUNK       500
#define CHAT_CONTROL_RETRY_MAX   10000


struct chat_control_s {
    redisContext    *ctx;
    chat_redis_link_t  link;
    chat_stop_t     *stop;
    chat_metrics_t  *metrics;
    chat_backoff_t   backoff;
    char             sha[41];       /* of chat_lua_revoked */
    bool             stale;         /* the hash must be written whole */
    size_t           rows;          /* what the last writing wrote */
    int64_t          next_check;    /* ms */
    int64_t          retry_ms;      /* the checks' backoff */
};


static void
chat_control_drop(chat_control_t *c)
{
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
}


/* a connection, its script loaded; a new one makes the hash stale */
static bool
chat_control_connect(chat_control_t *c)
{
    c->ctx = chat_redis_link_connect(&c->link);

    if (c->ctx == NULL) {
        return false;
    }

    if (!chat_redis_link_load(&c->link, c->ctx, chat_lua_revoked, c->sha)) {
        chat_control_drop(c);
        return false;
    }

    /* a Redis this worker has not written to, or one that restarted */
    c->stale = true;

    return true;
}


chat_control_t *
chat_control_open(const char *addr, chat_stop_t *stop, chat_metrics_t *m)
{
    chat_control_t  *c;

    c = chat_alloc(sizeof(chat_control_t));
    memset(c, 0, sizeof(*c));
    c->stop = stop;
    c->metrics = m;
    c->stale = true;
    chat_backoff_reset(&c->backoff);
    chat_redis_link_sha1(chat_lua_revoked, c->sha);

    if (!chat_redis_link_init(&c->link, addr, ": control")) {
        free(c);
        return NULL;
    }

    /* a Redis that is not there yet is waited for at the first use */
    (void) chat_control_connect(c);

    return c;
}


/* a connection, waiting for one as long as it takes; false on stop */
static bool
chat_control_wait(chat_control_t *c)
{
    while (c->ctx == NULL) {
        if (!chat_backoff_wait(&c->backoff, c->stop)) {
            return false;
        }

        if (chat_control_connect(c)) {
            log_info("redis %s:%d: control: connected again",
                     c->link.host, c->link.port);
            chat_backoff_reset(&c->backoff);
        }
    }

    return true;
}


/* a reply that says the command worked; the connection is dropped when
 * it does not (an error reply of ours is a bug: logged, dropped too) */
static bool
chat_control_ok(chat_control_t *c, redisReply *reply, const char *what)
{
    bool  ok;

    if (reply == NULL) {
        log_error("redis: control: %s: %s", what, c->ctx->errstr);
        chat_control_drop(c);
        return false;
    }

    ok = reply->type != REDIS_REPLY_ERROR;

    if (!ok) {
        log_error("redis: control: %s: %s", what, reply->str);
        chat_control_drop(c);
    }

    return ok;
}


/* raises fields to times, in one script call; the connection is there */
static bool
chat_control_raise(chat_control_t *c, const char *const *fields,
    const int64_t *ms, size_t n)
{
    const char  **argv;
    size_t       *argvlen, i, k;
    char         *nums;
    redisReply   *reply;
    bool          ok;

    argv = chat_alloc((4 + 2 * n) * sizeof(char *));
    argvlen = chat_alloc((4 + 2 * n) * sizeof(size_t));
    nums = chat_alloc(n * 24);

    argv[0] = "EVALSHA";
    argv[1] = c->sha;
    argv[2] = "1";
    argv[3] = NGX_CHAT_WIRE_KEY_REVOKED;
    k = 4;

    for (i = 0; i < n; i++) {
        snprintf(nums + 24 * i, 24, "%" PRId64, ms[i]);
        argv[k++] = fields[i];
        argv[k++] = nums + 24 * i;
    }

    for (i = 0; i < k; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    reply = redisCommandArgv(c->ctx, (int) k, argv, argvlen);

    if (reply && reply->type == REDIS_REPLY_ERROR
        && strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        /* SCRIPT FLUSH: loaded again with the next connection */
        log_warn("redis: control: the revoked script was gone");
        freeReplyObject(reply);
        chat_control_drop(c);
        ok = false;

    } else {
        ok = chat_control_ok(c, reply, "EVALSHA");

        if (reply) {
            freeReplyObject(reply);
        }
    }

    free(nums);
    free(argvlen);
    free(argv);

    return ok;
}


bool
chat_control_revoked(chat_control_t *c, const char *admin, const char *user,
    const char *dev, int64_t ms)
{
    char              field[NGX_CHAT_WIRE_REVOKED_FIELD_MAX];
    char              msg[NGX_CHAT_WIRE_CONTROL_MAX];
    const char       *fields[1];
    size_t            len, dev_len;
    redisReply       *reply;
    chat_log_line_t   l;
    long long         heard = 0;

    dev_len = dev ? strlen(dev) : 0;

    ngx_chat_wire_revoked_field(field, user, strlen(user), dev, dev_len);
    len = ngx_chat_wire_control_revoke(msg, user, strlen(user), dev, dev_len,
                                       ms);
    fields[0] = field;

    for ( ;; ) {
        if (!chat_control_wait(c)) {
            return false;
        }

        if (!chat_control_raise(c, fields, &ms, 1)) {
            continue;
        }

        reply = redisCommand(c->ctx, "PUBLISH %s %b",
                             NGX_CHAT_WIRE_CHANNEL_CONTROL, msg, len);

        if (chat_control_ok(c, reply, "PUBLISH")) {
            heard = reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
            freeReplyObject(reply);
            c->rows++;
            break;
        }

        if (reply) {
            freeReplyObject(reply);
        }
    }

    chat_log_begin(&l, "info", "revoked");
    chat_log_str(&l, "admin", admin);
    chat_log_str(&l, "user", user);
    chat_log_str(&l, "device", dev);
    chat_log_int(&l, "revoked_at", ms);
    chat_log_int(&l, "subscribers", heard);
    chat_log_end(&l);

    return true;
}


/* the whole table into the hash; false when Redis failed meanwhile */
static bool
chat_control_write(chat_control_t *c, chat_store_t *st)
{
    chat_revocation_t  *rows;
    chat_arena_t        arena = { 0 };
    chat_log_line_t     l;
    const char        **fields;
    int64_t            *ms, began;
    size_t              n, i, k, chunk;
    char               *f;
    bool                ok = true;

    began = chat_metrics_now_us();

    if (chat_store_revocations(st, &rows, &n, &arena) != CHAT_STORE_OK) {
        chat_arena_free(&arena);
        return false;
    }

    fields = chat_arena_alloc(&arena, (n + 1) * sizeof(char *));
    ms = chat_arena_alloc(&arena, (n + 1) * sizeof(int64_t));

    for (i = 0; i < n; i++) {
        f = chat_arena_alloc(&arena, NGX_CHAT_WIRE_REVOKED_FIELD_MAX);
        ngx_chat_wire_revoked_field(f, rows[i].user, strlen(rows[i].user),
                                    rows[i].device,
                                    rows[i].device ? strlen(rows[i].device)
                                                   : 0);
        fields[i] = f;
        ms[i] = rows[i].ms;
    }

    for (k = 0; k < n && ok; k += chunk) {
        chunk = n - k < CHAT_CONTROL_CHUNK ? n - k : CHAT_CONTROL_CHUNK;
        ok = chat_control_raise(c, fields + k, ms + k, chunk);
    }

    chat_arena_free(&arena);

    if (!ok) {
        return false;
    }

    c->rows = n;
    c->stale = false;
    chat_metrics_revoked_write(c->metrics);

    chat_log_begin(&l, "info", "revoked_written");
    chat_log_int(&l, "fields", (int64_t) n);
    chat_log_ms(&l, "duration_ms",
                (double) (chat_metrics_now_us() - began) / 1000.0);
    chat_log_end(&l);

    return true;
}


/* is the hash gone while the table has rows? (a FLUSHALL, a DEL) */
static void
chat_control_look(chat_control_t *c)
{
    redisReply  *reply;

    reply = redisCommand(c->ctx, "EXISTS %s", NGX_CHAT_WIRE_KEY_REVOKED);

    if (!chat_control_ok(c, reply, "EXISTS")) {
        if (reply) {
            freeReplyObject(reply);
        }
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0
        && c->rows > 0)
    {
        log_warn("redis: control: %s is gone: writing it again",
                 NGX_CHAT_WIRE_KEY_REVOKED);
        c->stale = true;
    }

    freeReplyObject(reply);
}


void
chat_control_tick(chat_control_t *c, chat_store_t *st)
{
    int64_t  now = chat_now_ms();

    if (now < c->next_check) {
        return;
    }

    if (c->ctx == NULL && !chat_control_connect(c)) {
        /* away: tried again later, more and more rarely */
        c->retry_ms = c->retry_ms ? c->retry_ms * 2 : CHAT_CONTROL_CHECK_MS;
        if (c->retry_ms > CHAT_CONTROL_RETRY_MAX) {
            c->retry_ms = CHAT_CONTROL_RETRY_MAX;
        }

        c->next_check = now + c->retry_ms;
        return;
    }

    c->retry_ms = 0;
    c->next_check = now + CHAT_CONTROL_CHECK_MS;

    if (!c->stale) {
        chat_control_look(c);
    }

    if (c->ctx && c->stale) {
        (void) chat_control_write(c, st);
    }
}


void
chat_control_close(chat_control_t *c)
{
    if (c == NULL) {
        return;
    }

    chat_control_drop(c);
    chat_redis_link_free(&c->link);
    free(c);
}
