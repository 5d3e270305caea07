/*
 * worker_redis.c: chat_worker's side of Redis: the users' sessions
 * (chat:sess:<user>, one pipelined HGETALL per user), the chain heads it
 * does not know yet (chat:chain:<node>, one pipelined HGET per pair), and
 * the delivery of a batch: one call of a script (lua/publish.lua) that
 * checks the epochs of the batch's partitions, raises their delivered
 * marks (chat:delivered:<topic>:<group>), writes the chain heads and
 * PUBLISHes each node's payload (built by worker_payload.c) on
 * chat:node:<node>, all or nothing.
 *
 * The marks: a worker that dies after the script but before its Kafka
 * offsets are committed leaves records that the next owner consumes
 * again; the marks tell it that their answers already went out.
 *
 * The epochs (chat:epoch:<topic>:<group>): a worker takes one per
 * partition when the partition is assigned (worker_chain.c) and writes it
 * before it processes any record of the partition, reading the
 * partition's mark in the same script (lua/take.lua): the newer epoch
 * wins. A worker frozen past its session timeout wakes up to find its
 * successor's epoch there: the publish script then publishes nothing and
 * names the fenced partitions, whose records are dropped (uncommitted: the
 * successor consumes them), and the rest is published by a second call.
 * Whatever the old owner published before the successor took over, the
 * successor's mark says.
 *
 * The scripts are loaded once per connection and called by their SHA1
 * with EVALSHA; a NOSCRIPT answer (SCRIPT FLUSH) loads them again.
 *
 * A Redis that restarted lost the heads, the marks and the epochs, and the
 * nginx nodes register their sessions again when they come back: after
 * every reconnect the worker writes back what it holds in memory (the
 * same script, without payloads) and, before it publishes, waits a few
 * seconds at most for the nodes that were alive to be back in chat:nodes
 * (a node adds itself there after registering its sessions again), so
 * that no frame is dropped for want of a session that is only not
 * registered yet. Which nodes were alive, it knows from reading chat:nodes
 * every few seconds (pipelined with a batch's lookups, or instead of the
 * idle ping): a node whose score (alive until) moved lately is alive.
 * While idle it pings Redis about every second, so that a restart is
 * noticed, and the heads written again, without waiting for a batch: the
 * nodes audit those heads to see what they missed.
 *
 * When Redis is down the delivery waits and retries until it works or the
 * wait is given up (stop, or the batch's partitions taken meanwhile): the
 * Kafka offsets are committed only after it, so nothing stored goes
 * unanswered.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "worker_lua.h"
#include "worker_redis.h"
#include "worker_redis_link.h"


#define CHAT_REDIS_PING_EVERY_MS   1000
/* chat:nodes read this often; a node whose score moved this recently was
 * alive (nodes push theirs every 2 s); after a reconnect such nodes are
 * waited for this long at most (a node reconnects with a backoff of up
 * to 5 s) */
#define CHAT_REDIS_NODES_EVERY_MS  2000
#define CHAT_REDIS_NODES_ALIVE_MS  7000
#define CHAT_REDIS_NODES_WAIT_MS   8000
#define CHAT_REDIS_NODES_MAX       1024


typedef struct {
    char     *name;
    double    score;            /* the ms until which it said it lives */
    int64_t   moved;            /* ms when we saw the score move */
} chat_redis_node_t;


struct chat_redis_s {
    redisContext    *ctx;
    chat_redis_link_t  link;
    char            *delivered_key;
    char            *epoch_key;
    chat_chain_t    *chain;
    chat_stop_t     *stop;
    chat_backoff_t   backoff;
    int64_t          last_io;       /* ms, the last command that worked */
    char             publish_sha[41];    /* of chat_lua_publish */
    char             take_sha[41];       /* of chat_lua_take */

    chat_redis_node_t  *nodes;      /* as chat:nodes said last */
    size_t              nnodes;
    int64_t             nodes_read; /* ms */
    int64_t             expired;    /* ms, heads last expired */
};


/* SCRIPT LOAD, once per connection; false when it did not work */
static bool
chat_redis_load(chat_redis_t *r)
{
    return chat_redis_link_load(&r->link, r->ctx, chat_lua_publish,
                                r->publish_sha)
           && chat_redis_link_load(&r->link, r->ctx, chat_lua_take,
                                   r->take_sha);
}


static bool
chat_redis_connect(chat_redis_t *r)
{
    r->ctx = chat_redis_link_connect(&r->link);

    if (r->ctx == NULL) {
        return false;
    }

    /* a new connection may be to a Redis that has never seen the script */
    if (!chat_redis_load(r)) {
        redisFree(r->ctx);
        r->ctx = NULL;
        return false;
    }

    r->last_io = chat_now_ms();

    return true;
}


static void
chat_redis_drop(chat_redis_t *r)
{
    if (r->ctx) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }
}


/* ---- the script's call ---- */

typedef enum {
    CHAT_REDIS_EVAL_OK,
    CHAT_REDIS_EVAL_FENCED,
    CHAT_REDIS_EVAL_FAILED          /* reconnect and call again */
} chat_redis_eval_rc_t;

/* a partition's triple for the script */
typedef struct {
    int32_t  partition;
    int64_t  epoch;
    int64_t  mark;
} chat_redis_part_t;


/*
 * publish.lua for these partitions, heads and payloads (p may be NULL).
 * The fenced partitions are marked in the chain.
 */
static chat_redis_eval_rc_t
chat_redis_eval(chat_redis_t *r, const chat_redis_part_t *parts, size_t np,
    const chat_payload_head_t *heads, size_t nh, const chat_payloads_t *p)
{
    const char          **argv;
    size_t               *argvlen, argc, nkeys, i, k, a, nchunks;
    size_t               *key_of;
    chat_arena_t          arena = { 0 };
    chat_map_t            nodes = { 0 };
    chat_chain_part_t    *part;
    redisReply           *reply;
    chat_redis_eval_rc_t  rc;
    char                  key[NGX_CHAT_WIRE_KEY_MAX], *s;
    const char           *node;
    bool                  again = false;

    nchunks = p ? p->nchunks : 0;

    /* the chain keys first: KEYS[3..], one per node */
    key_of = chat_alloc((nh + 1) * sizeof(size_t));
    nkeys = 2;

    for (i = 0; i < nh; i++) {
        k = chat_map_put(&nodes, heads[i].node, nkeys);
        if (k == nkeys) {
            nkeys++;
        }
        key_of[i] = k;
    }

    argc = 3 + nkeys + 1 + 3 * np + 1 + 3 * nh + 2 * nchunks;
    argv = chat_alloc(argc * sizeof(char *));
    argvlen = chat_alloc(argc * sizeof(size_t));

    argv[0] = "EVALSHA";
    argv[1] = r->publish_sha;
    argv[2] = s = chat_arena_alloc(&arena, 24);
    snprintf(s, 24, "%zu", nkeys);
    argv[3] = r->delivered_key;
    argv[4] = r->epoch_key;

    for (i = 0; i < nh; i++) {
        ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_CHAIN, heads[i].node,
                          strlen(heads[i].node));
        argv[3 + key_of[i]] = chat_arena_strdup(&arena, key);
    }

    a = 3 + nkeys;

#define chat_redis_num(v)                                                  \
    (s = chat_arena_alloc(&arena, 24),                                     \
     snprintf(s, 24, "%lld", (long long) (v)), s)

    argv[a++] = chat_redis_num(np);

    for (i = 0; i < np; i++) {
        argv[a++] = chat_redis_num(parts[i].partition);
        argv[a++] = chat_redis_num(parts[i].epoch);
        argv[a++] = chat_redis_num(parts[i].mark);
    }

    argv[a++] = chat_redis_num(nh);

    for (i = 0; i < nh; i++) {
        /* KEYS is 1-based, after the command's three words; negative:
         * its TTL too */
        argv[a++] = chat_redis_num(heads[i].expire ? -(long long) key_of[i] - 1
                                                   : (long long) key_of[i] + 1);
        argv[a++] = chat_redis_num(heads[i].partition);
        argv[a++] = chat_redis_num(heads[i].head);
    }

#undef chat_redis_num

    for (i = 0; i < a; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    for (i = 0; i < nchunks; i++) {
        node = p->nodes[p->chunks[i].node].name;
        argvlen[a] = ngx_chat_wire_key(key, NGX_CHAT_WIRE_CHANNEL_NODE, node,
                                       strlen(node));
        argv[a++] = chat_arena_strdup(&arena, key);
        argv[a] = p->chunks[i].buf.data ? p->chunks[i].buf.data : "";
        argvlen[a++] = p->chunks[i].buf.len;
    }

    for ( ;; ) {
        reply = redisCommandArgv(r->ctx, (int) argc, argv, argvlen);

        if (reply == NULL) {
            log_error("redis: EVALSHA failed: %s", r->ctx->errstr);
            rc = CHAT_REDIS_EVAL_FAILED;
            break;
        }

        if (reply->type == REDIS_REPLY_ERROR
            && strncmp(reply->str, "NOSCRIPT", 8) == 0 && !again)
        {
            /* SCRIPT FLUSH: loaded again, called again */
            log_warn("redis: the publish script was gone: loading it again");
            freeReplyObject(reply);
            again = true;

            if (!chat_redis_load(r)) {
                rc = CHAT_REDIS_EVAL_FAILED;
                goto done;
            }

            continue;
        }

        if (reply->type != REDIS_REPLY_ARRAY) {
            log_error("redis: EVALSHA: %s", reply->type == REDIS_REPLY_ERROR
                                            ? reply->str : "unexpected reply");
            rc = CHAT_REDIS_EVAL_FAILED;
            freeReplyObject(reply);
            break;
        }

        rc = reply->elements ? CHAT_REDIS_EVAL_FENCED : CHAT_REDIS_EVAL_OK;

        for (i = 0; i < reply->elements; i++) {
            if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
                continue;
            }

            part = chat_chain_find(r->chain,
                                   (int32_t) reply->element[i]->integer);

            if (part && !part->fenced) {
                log_warn("partition %d: fenced: a newer owner took it; its"
                         " records are left to it",
                         (int) reply->element[i]->integer);
                part->fenced = true;
            }
        }

        freeReplyObject(reply);
        r->last_io = chat_now_ms();
        break;
    }

done:

    free(argv);
    free(argvlen);
    free(key_of);
    chat_map_free(&nodes);
    chat_arena_free(&arena);

    return rc;
}


/* what this worker holds, written again after a reconnect: the epochs and
 * marks of its partitions, its heads; false when the connection broke */
static bool
chat_redis_restore(chat_redis_t *r)
{
    chat_chain_t         *c = r->chain;
    chat_redis_part_t    *parts;
    chat_payload_head_t  *heads;
    size_t                i, np = 0;
    chat_redis_eval_rc_t  rc;

    chat_chain_expire(c, chat_now_ms() - CHAT_CHAIN_HEAD_TTL_S * 1000LL);

    if (c->nparts == 0 && c->nheads == 0) {
        return true;
    }

    parts = chat_alloc((c->nparts + 1) * sizeof(chat_redis_part_t));
    heads = chat_alloc((c->nheads + 1) * sizeof(chat_payload_head_t));

    for (i = 0; i < c->nparts; i++) {
        if (c->parts[i].fenced) {
            continue;
        }

        parts[np].partition = c->parts[i].partition;
        parts[np].epoch = c->parts[i].epoch;
        parts[np].mark = c->parts[i].mark_known ? c->parts[i].mark : -1;
        np++;
    }

    for (i = 0; i < c->nheads; i++) {
        heads[i].partition = c->heads[i].partition;
        heads[i].node = c->heads[i].node;
        heads[i].head = c->heads[i].head;
        heads[i].expire = true;
    }

    rc = chat_redis_eval(r, parts, np, heads, c->nheads, NULL);

    if (rc == CHAT_REDIS_EVAL_FENCED) {
        /* the rest is written with the next delivery */
        log_warn("redis: some partitions were fenced: heads not restored");

    } else if (rc == CHAT_REDIS_EVAL_OK) {
        log_info("redis: %zu chain heads and %zu partitions' marks written"
                 " again", c->nheads, np);
    }

    free(parts);
    free(heads);

    return rc != CHAT_REDIS_EVAL_FAILED;
}


/* the ZRANGEBYSCORE of the nodes still alive, for a pipeline */
static void
chat_redis_append_nodes(chat_redis_t *r)
{
    redisAppendCommand(r->ctx, "ZRANGEBYSCORE %s %lld +inf WITHSCORES",
                       NGX_CHAT_WIRE_KEY_NODES, (long long) chat_now_ms());
}


/* its answer: which nodes moved their score since the last read */
static void
chat_redis_nodes_read(chat_redis_t *r, const redisReply *reply)
{
    chat_redis_node_t  *nodes;
    size_t              i, k, n = 0;
    double              score;
    int64_t             now = chat_now_ms();

    r->nodes_read = now;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return;
    }

    nodes = chat_alloc((reply->elements / 2 + 1) * sizeof(chat_redis_node_t));

    for (i = 0; i + 1 < reply->elements && n < CHAT_REDIS_NODES_MAX; i += 2) {
        if (reply->element[i]->type != REDIS_REPLY_STRING
            || reply->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        score = strtod(reply->element[i + 1]->str, NULL);

        nodes[n].name = chat_strdup(reply->element[i]->str);
        nodes[n].score = score;
        nodes[n].moved = now;       /* first seen: taken as alive */

        for (k = 0; k < r->nnodes; k++) {
            if (strcmp(r->nodes[k].name, nodes[n].name) == 0) {
                nodes[n].moved = score > r->nodes[k].score ? now
                                                           : r->nodes[k].moved;
                break;
            }
        }

        n++;
    }

    for (k = 0; k < r->nnodes; k++) {
        free(r->nodes[k].name);
    }

    free(r->nodes);
    r->nodes = nodes;
    r->nnodes = n;
}


/*
 * The nodes that were alive before the connection broke, back in
 * chat:nodes (they add themselves there after registering their sessions
 * again), or a few seconds passed. false when the connection broke or the
 * wait was given up.
 */
static bool
chat_redis_settle(chat_redis_t *r)
{
    const char  **argv;
    size_t       *argvlen, n = 0, i, missing;
    redisReply   *reply;
    int64_t       deadline, now = chat_now_ms();
    bool          given_up = false;

    argv = chat_alloc((r->nnodes + 2) * sizeof(char *));
    argvlen = chat_alloc((r->nnodes + 2) * sizeof(size_t));
    argv[0] = "ZMSCORE";
    argv[1] = NGX_CHAT_WIRE_KEY_NODES;

    for (i = 0; i < r->nnodes; i++) {
        if (now - r->nodes[i].moved <= CHAT_REDIS_NODES_ALIVE_MS) {
            argv[2 + n++] = r->nodes[i].name;
        }
    }

    if (n == 0) {
        free(argv);
        free(argvlen);
        return true;
    }

    for (i = 0; i < n + 2; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    deadline = now + CHAT_REDIS_NODES_WAIT_MS;
    missing = n;

    for ( ;; ) {
        reply = redisCommandArgv(r->ctx, (int) n + 2, argv, argvlen);

        if (reply == NULL) {
            break;
        }

        missing = 0;

        if (reply->type == REDIS_REPLY_ARRAY) {
            for (i = 0; i < reply->elements; i++) {
                missing += reply->element[i]->type == REDIS_REPLY_NIL;
            }
        }

        freeReplyObject(reply);

        if (missing == 0 || chat_now_ms() >= deadline) {
            break;
        }

        if (!chat_backoff_pause(&r->backoff, 50, r->stop)) {
            given_up = true;
            break;
        }
    }

    free(argv);
    free(argvlen);

    if (given_up) {
        return false;
    }

    if (reply == NULL) {
        log_error("redis: ZMSCORE failed: %s", r->ctx->errstr);
        return false;
    }

    if (missing) {
        log_warn("redis: %zu of %zu nodes not back after %d ms: delivering"
                 " anyway", missing, n, CHAT_REDIS_NODES_WAIT_MS);

    } else {
        log_info("redis: the %zu live nodes are back after %lld ms", n,
                 (long long) (chat_now_ms() - now));
    }

    return !*r->stop;
}


/* drops a broken connection and waits for a new one, on which what the
 * worker holds is written again; false when the wait was given up */
static bool
chat_redis_reconnect(chat_redis_t *r)
{
    chat_redis_drop(r);

    for ( ;; ) {
        if (!chat_backoff_wait(&r->backoff, r->stop)) {
            return false;
        }

        if (!chat_redis_connect(r)) {
            continue;
        }

        if (chat_redis_restore(r) && chat_redis_settle(r)) {
            log_info("redis %s:%d: connected again", r->link.host,
                     r->link.port);
            chat_backoff_reset(&r->backoff);
            return true;
        }

        chat_redis_drop(r);
    }
}


chat_redis_t *
chat_redis_open(const char *addr, const char *delivered_key,
    const char *epoch_key, chat_chain_t *chain, chat_stop_t *stop)
{
    chat_redis_t  *r;

    r = chat_alloc(sizeof(chat_redis_t));
    memset(r, 0, sizeof(*r));
    r->delivered_key = chat_strdup(delivered_key);
    r->epoch_key = chat_strdup(epoch_key);
    r->chain = chain;
    r->stop = stop;
    chat_backoff_reset(&r->backoff);
    chat_redis_link_sha1(chat_lua_publish, r->publish_sha);
    chat_redis_link_sha1(chat_lua_take, r->take_sha);

    if (!chat_redis_link_init(&r->link, addr, "")) {
        chat_redis_close(r);
        return NULL;
    }

    if (!chat_redis_connect(r) && !chat_redis_reconnect(r)) {
        chat_redis_close(r);
        return NULL;
    }

    return r;
}


void
chat_redis_set_wait(chat_redis_t *r, chat_wait_pt meanwhile, void *data)
{
    r->backoff.meanwhile = meanwhile;
    r->backoff.data = data;
}


void
chat_redis_close(chat_redis_t *r)
{
    if (r == NULL) {
        return;
    }

    chat_redis_drop(r);

    while (r->nnodes) {
        free(r->nodes[--r->nnodes].name);
    }

    free(r->nodes);
    chat_redis_link_free(&r->link);
    free(r->delivered_key);
    free(r->epoch_key);
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
    redisReply            *reply, *field, *value;
    size_t                 i, j, n, node_len, key_len;
    const char            *node, *sid;
    char                   key[NGX_CHAT_WIRE_KEY_MAX];
    bool                   nodes;

    /* the live nodes, every few seconds, in the same round trip */
    nodes = chat_now_ms() - r->nodes_read >= CHAT_REDIS_NODES_EVERY_MS;

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

    if (nodes) {
        chat_redis_append_nodes(r);
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
            field = reply->element[j];
            value = reply->element[j + 1];

            if (field->type != REDIS_REPLY_STRING
                || value->type != REDIS_REPLY_STRING
                || !ngx_chat_wire_session_parse(value->str, value->len,
                                                &node, &node_len, &sid))
            {
                ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SESS, u->users[i],
                                  strlen(u->users[i]));
                log_warn("redis: %s: malformed session value", key);
                continue;
            }

            n = found[i].n++;
            found[i].sessions[n].node = chat_arena_strndup(arena, node,
                                                           node_len);
            found[i].sessions[n].sid = chat_arena_strndup(arena, sid,
                                                   NGX_CHAT_WIRE_SID_LEN);
            found[i].sessions[n].device = chat_arena_strndup(arena,
                                                   field->str, field->len);
        }

        freeReplyObject(reply);
    }

    if (nodes) {
        if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
            log_error("redis: ZRANGEBYSCORE failed: %s", r->ctx->errstr);
            return false;
        }

        chat_redis_nodes_read(r, reply);
        freeReplyObject(reply);
    }

    r->last_io = chat_now_ms();

    return true;
}


/* the heads of the pairs the chain does not know, pipelined; false means
 * the connection broke */
static bool
chat_redis_heads(chat_redis_t *r, const chat_payloads_t *p)
{
    int32_t      *parts;
    const char  **nodes;
    redisReply   *reply;
    size_t        i, n, len;
    int64_t       now = chat_now_ms();
    char          key[NGX_CHAT_WIRE_KEY_MAX];
    bool          ok = true;

    parts = chat_alloc((p->nblocks + 1) * sizeof(int32_t));
    nodes = chat_alloc((p->nblocks + 1) * sizeof(char *));

    n = chat_payload_unknown(p, r->chain, parts, nodes);

    for (i = 0; i < n; i++) {
        len = ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_CHAIN, nodes[i],
                                strlen(nodes[i]));
        redisAppendCommand(r->ctx, "HGET %b %d", key, len, (int) parts[i]);
    }

    for (i = 0; i < n; i++) {
        if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
            log_error("redis: HGET failed: %s", r->ctx->errstr);
            ok = false;
            break;
        }

        chat_chain_set_head(r->chain, parts[i], nodes[i],
                            reply->type == REDIS_REPLY_STRING
                            ? strtoll(reply->str, NULL, 10) : -1, now);
        freeReplyObject(reply);
    }

    free(parts);
    free(nodes);

    return ok;
}


/* the batch's payloads through the script: true once they went out (the
 * chain moved), false when the connection broke */
static bool
chat_redis_publish(chat_redis_t *r, chat_payloads_t *p,
    const chat_position_t *done, size_t ndone)
{
    chat_redis_part_t     *parts;
    chat_chain_part_t     *part;
    chat_chain_head_t     *h;
    chat_redis_eval_rc_t   rc;
    size_t                 i, np;
    int64_t                now;

    parts = chat_alloc((ndone + 1) * sizeof(chat_redis_part_t));
    now = chat_now_ms();

    do {
        chat_payload_finish(p, r->chain, done, ndone);

        /* a chain key's TTL is set again once a minute, not every time */
        for (i = 0; i < p->nheads; i++) {
            h = chat_chain_entry(r->chain, p->heads[i].partition,
                                 p->heads[i].node);
            p->heads[i].expire = h == NULL || now >= h->expires;
        }

        for (i = 0, np = 0; i < ndone; i++) {
            part = chat_chain_part(r->chain, done[i].partition);

            if (part->fenced) {
                continue;
            }

            parts[np].partition = part->partition;
            parts[np].epoch = part->epoch;
            parts[np].mark = done[i].offset;
            np++;
        }

        rc = chat_redis_eval(r, parts, np, p->heads, p->nheads, p);

        /* fenced: the rest again, without them */
    } while (rc == CHAT_REDIS_EVAL_FENCED);

    free(parts);

    if (rc != CHAT_REDIS_EVAL_OK) {
        return false;
    }

    for (i = 0; i < p->nheads; i++) {
        chat_chain_set_head(r->chain, p->heads[i].partition,
                            p->heads[i].node, p->heads[i].head, now);

        if (p->heads[i].expire) {
            chat_chain_entry(r->chain, p->heads[i].partition,
                             p->heads[i].node)->expires = now + 60000;
        }
    }

    for (i = 0; i < ndone; i++) {
        part = chat_chain_find(r->chain, done[i].partition);

        if (part && !part->fenced && done[i].offset > part->mark) {
            part->mark = done[i].offset;
            part->mark_known = true;
        }
    }

    return true;
}


/* ---- the contacts' sets ---- */

/* reads n pipelined answers; false when one failed (the connection is
 * then dropped by the caller) */
static bool
chat_redis_answers(chat_redis_t *r, size_t n, const char *what)
{
    redisReply  *reply;
    bool         ok = true;

    for ( ; n; n--) {
        if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
            log_error("redis: %s: %s", what, r->ctx->errstr);
            return false;
        }

        if (reply->type == REDIS_REPLY_ERROR) {
            log_error("redis: %s: %s", what, reply->str);
            ok = false;
        }

        freeReplyObject(reply);
    }

    r->last_io = chat_now_ms();

    return ok;
}


/* one SADD or SREM of conv to user's set of conversations, and of user
 * to a group's set of members (or of a user to its set of blocked users):
 * the number of commands */
static size_t
chat_redis_append_member(chat_redis_t *r, const char *user, const char *conv,
    bool joined, bool block)
{
    char  key[NGX_CHAT_WIRE_KEY_MAX];

    (void) ngx_chat_wire_key(key, block ? NGX_CHAT_WIRE_KEY_BLOCKS
                                        : NGX_CHAT_WIRE_KEY_CONVS,
                             user, strlen(user));
    redisAppendCommand(r->ctx, joined ? "SADD %s %s" : "SREM %s %s", key,
                       conv);

    if (block || ngx_chat_wire_is_direct(conv, strlen(conv))) {
        return 1;
    }

    (void) ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_MEMBERS, conv,
                             strlen(conv));
    redisAppendCommand(r->ctx, joined ? "SADD %s %s" : "SREM %s %s", key,
                       user);

    return 2;
}


/* the batch's joins and leaves, before the frames that tell of them */
static bool
chat_redis_members(chat_redis_t *r, const chat_outbox_t *out)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < out->nmembers; i++) {
        n += chat_redis_append_member(r, out->members[i].user,
                                      out->members[i].conv,
                                      out->members[i].joined,
                                      out->members[i].block);
    }

    return chat_redis_answers(r, n, "conversation sets");
}


chat_redis_contacts_t
chat_redis_contacts_claim(chat_redis_t *r, const char *writer)
{
    redisReply             *reply[3];
    chat_redis_contacts_t   rc = CHAT_REDIS_CONTACTS_BROKEN;
    size_t                  i;

    if (r->ctx == NULL) {
        return rc;
    }

    /* the writer's key lasts while it writes: a writer that died leaves
     * the job to another within half a minute */
    /* both marks: a Redis written before the sets of members had them
     * gets them written too */
    redisAppendCommand(r->ctx, "EXISTS %s %s", NGX_CHAT_WIRE_KEY_CONVS_READY,
                       NGX_CHAT_WIRE_KEY_MEMBERS_READY);
    redisAppendCommand(r->ctx, "SET %s %s NX EX 30",
                       NGX_CHAT_WIRE_KEY_CONVS_WRITER, writer);
    redisAppendCommand(r->ctx, "GET %s", NGX_CHAT_WIRE_KEY_CONVS_WRITER);

    for (i = 0; i < 3; i++) {
        if (redisGetReply(r->ctx, (void **) &reply[i]) != REDIS_OK) {
            log_error("redis: conversation sets: %s", r->ctx->errstr);
            while (i--) {
                freeReplyObject(reply[i]);
            }
            chat_redis_drop(r);
            return rc;
        }
    }

    r->last_io = chat_now_ms();

    if (reply[0]->type == REDIS_REPLY_INTEGER && reply[0]->integer == 2) {
        rc = CHAT_REDIS_CONTACTS_READY;

    } else if (reply[1]->type == REDIS_REPLY_STATUS) {
        rc = CHAT_REDIS_CONTACTS_START;

    } else if (reply[2]->type == REDIS_REPLY_STRING
               && strcmp(reply[2]->str, writer) == 0)
    {
        rc = CHAT_REDIS_CONTACTS_GO_ON;
        redisAppendCommand(r->ctx, "EXPIRE %s 30",
                           NGX_CHAT_WIRE_KEY_CONVS_WRITER);
        if (!chat_redis_answers(r, 1, "conversation sets")) {
            rc = CHAT_REDIS_CONTACTS_BROKEN;
            chat_redis_drop(r);
        }

    } else if (reply[0]->type == REDIS_REPLY_INTEGER) {
        rc = CHAT_REDIS_CONTACTS_OTHER;
    }

    if (rc == CHAT_REDIS_CONTACTS_READY && reply[1]->type == REDIS_REPLY_STATUS)
    {
        /* ready already: the claim just made is given back */
        redisAppendCommand(r->ctx, "DEL %s", NGX_CHAT_WIRE_KEY_CONVS_WRITER);
        if (!chat_redis_answers(r, 1, "conversation sets")) {
            chat_redis_drop(r);
        }
    }

    for (i = 0; i < 3; i++) {
        freeReplyObject(reply[i]);
    }

    return rc;
}


bool
chat_redis_contacts_write(chat_redis_t *r, const chat_membership_t *rows,
    size_t n, bool blocks, bool last)
{
    size_t  i, ncmds;

    if (r->ctx == NULL) {
        return false;
    }

    ncmds = 0;

    for (i = 0; i < n; i++) {
        ncmds += chat_redis_append_member(r, rows[i].user, rows[i].conv, true,
                                          blocks);
    }

    if (last) {
        redisAppendCommand(r->ctx, "SET %s 1", NGX_CHAT_WIRE_KEY_CONVS_READY);
        redisAppendCommand(r->ctx, "SET %s 1",
                           NGX_CHAT_WIRE_KEY_MEMBERS_READY);
        redisAppendCommand(r->ctx, "DEL %s", NGX_CHAT_WIRE_KEY_CONVS_WRITER);
        ncmds += 3;
    }

    if (!chat_redis_answers(r, ncmds, "conversation sets")) {
        chat_redis_drop(r);
        return false;
    }

    return true;
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

        chat_redis_drop(r);
    }

    chat_payload_online(&users, out);
    chat_payload_build(&payloads, out, &users);

    for ( ;; ) {
        if (r->ctx == NULL && !chat_redis_reconnect(r)) {
            goto done;
        }

        if (chat_redis_members(r, out)
            && chat_redis_heads(r, &payloads)
            && chat_redis_publish(r, &payloads, done, ndone))
        {
            break;
        }

        chat_redis_drop(r);
    }

    ok = true;

done:

    chat_payload_free(&payloads);
    chat_payload_users_free(&users);

    return ok;
}


/* lua/take.lua for the partitions; false when the connection broke */
static bool
chat_redis_take(chat_redis_t *r, const int32_t *partitions, size_t n,
    int64_t *offsets)
{
    const char         **argv;
    size_t              *argvlen, argc, i;
    chat_arena_t         arena = { 0 };
    chat_chain_part_t   *part;
    redisReply          *reply;
    char                *s;
    bool                 again = false, ok = false;

    argc = 5 + 2 * n;
    argv = chat_alloc(argc * sizeof(char *));
    argvlen = chat_alloc(argc * sizeof(size_t));
    argv[0] = "EVALSHA";
    argv[1] = r->take_sha;
    argv[2] = "2";
    argv[3] = r->delivered_key;
    argv[4] = r->epoch_key;

    for (i = 0; i < n; i++) {
        s = chat_arena_alloc(&arena, 24);
        snprintf(s, 24, "%d", (int) partitions[i]);
        argv[5 + 2 * i] = s;
        s = chat_arena_alloc(&arena, 24);
        snprintf(s, 24, "%lld",
                 (long long) chat_chain_part(r->chain, partitions[i])->epoch);
        argv[6 + 2 * i] = s;
    }

    for (i = 0; i < argc; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    for ( ;; ) {
        reply = redisCommandArgv(r->ctx, (int) argc, argv, argvlen);

        if (reply == NULL) {
            log_error("redis: EVALSHA failed: %s", r->ctx->errstr);
            break;
        }

        if (reply->type == REDIS_REPLY_ERROR
            && strncmp(reply->str, "NOSCRIPT", 8) == 0 && !again)
        {
            freeReplyObject(reply);
            again = true;

            if (!chat_redis_load(r)) {
                break;
            }

            continue;
        }

        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
            log_error("redis: EVALSHA take: %s",
                      reply->type == REDIS_REPLY_ERROR ? reply->str
                      : "unexpected reply");
            freeReplyObject(reply);
            break;
        }

        for (i = 0; i < n; i++) {
            offsets[i] = reply->element[i]->type == REDIS_REPLY_INTEGER
                         ? reply->element[i]->integer : -1;

            if (offsets[i] == -2) {
                part = chat_chain_part(r->chain, partitions[i]);

                if (!part->fenced) {
                    log_warn("partition %d: fenced: a newer owner took it"
                             " already", (int) partitions[i]);
                    part->fenced = true;
                }
            }
        }

        freeReplyObject(reply);
        r->last_io = chat_now_ms();
        ok = true;
        break;
    }

    free(argv);
    free(argvlen);
    chat_arena_free(&arena);

    return ok;
}


bool
chat_redis_delivered(chat_redis_t *r, const int32_t *partitions, size_t n,
    int64_t *offsets)
{
    for ( ;; ) {
        if (r->ctx == NULL && !chat_redis_reconnect(r)) {
            return false;
        }

        if (chat_redis_take(r, partitions, n, offsets)) {
            return true;
        }

        chat_redis_drop(r);
    }
}


void
chat_redis_tick(chat_redis_t *r)
{
    redisReply  *reply;

    if (r->ctx && chat_now_ms() - r->last_io < CHAT_REDIS_PING_EVERY_MS) {
        return;
    }

    /* the heads of nodes gone for a day go from memory too */
    if (chat_now_ms() - r->expired >= 60000) {
        chat_chain_expire(r->chain,
                          chat_now_ms() - CHAT_CHAIN_HEAD_TTL_S * 1000LL);
        r->expired = chat_now_ms();
    }

    if (r->ctx) {
        /* the live nodes are read instead every few seconds */
        if (chat_now_ms() - r->nodes_read >= CHAT_REDIS_NODES_EVERY_MS) {
            reply = redisCommand(r->ctx, "ZRANGEBYSCORE %s %lld +inf"
                                 " WITHSCORES", NGX_CHAT_WIRE_KEY_NODES,
                                 (long long) chat_now_ms());
        } else {
            reply = redisCommand(r->ctx, "PING");
        }

        if (reply && reply->type != REDIS_REPLY_ERROR) {
            if (reply->type == REDIS_REPLY_ARRAY) {
                chat_redis_nodes_read(r, reply);
            }

            freeReplyObject(reply);
            r->last_io = chat_now_ms();
            return;
        }

        log_error("redis: PING: %s", reply ? reply->str : r->ctx->errstr);

        if (reply) {
            freeReplyObject(reply);
        }
    }

    /* a restart: connected again, and the chain written again */
    (void) chat_redis_reconnect(r);
}
