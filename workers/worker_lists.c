/*
 * worker_lists.c: the Redis side of streamed answers, on a connection of
 * its own: a large answer's pushes never sit between the MULTI and the
 * EXEC of a delivery (worker_redis.c), and that connection keeps its one
 * job.
 *
 * Pieces are RPUSHed pipelined, reading the answers only when more than
 * CHAT_LISTS_UNANSWERED are due: hiredis then holds at most that many
 * pieces in its buffers, and the round trips overlap the reading of the
 * next chunk from PostgreSQL. The first push of a list sets its expiry
 * (NGX_CHAT_WIRE_STREAM_TTL) and the last one sets it again, so an
 * answer that was never read, or never finished, goes by itself.
 *
 * Any failure (a broken connection, an error answer) drops the connection:
 * the answer is written again on a new one, after a backoff, as the
 * deliveries are.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "worker_lists.h"
#include "worker_redis_link.h"


#define CHAT_LISTS_UNANSWERED  4


struct chat_lists_s {
    redisContext       *ctx;
    chat_redis_link_t   link;
    chat_stop_t        *stop;
    chat_backoff_t   backoff;
    size_t           unanswered;
};


static bool
chat_lists_connect(chat_lists_t *l)
{
    l->ctx = chat_redis_link_connect(&l->link);

    if (l->ctx == NULL) {
        return false;
    }

    l->unanswered = 0;

    return true;
}


static void
chat_lists_broken(chat_lists_t *l)
{
    if (l->ctx) {
        redisFree(l->ctx);
        l->ctx = NULL;
    }

    l->unanswered = 0;
}


bool
chat_lists_wait(chat_lists_t *l)
{
    chat_lists_broken(l);

    for ( ;; ) {
        if (!chat_backoff_wait(&l->backoff, l->stop)) {
            return false;
        }

        if (chat_lists_connect(l)) {
            log_info("redis %s:%d (streams): connected again",
                     l->link.host, l->link.port);
            chat_backoff_reset(&l->backoff);
            return true;
        }
    }
}


chat_lists_t *
chat_lists_open(const char *addr, chat_stop_t *stop)
{
    chat_lists_t  *l;

    l = chat_alloc(sizeof(chat_lists_t));
    memset(l, 0, sizeof(*l));
    l->stop = stop;
    chat_backoff_reset(&l->backoff);

    if (!chat_redis_link_init(&l->link, addr, " (streams)")) {
        free(l);
        return NULL;
    }

    if (!chat_lists_connect(l) && !chat_lists_wait(l)) {
        chat_lists_close(l);
        return NULL;
    }

    return l;
}


void
chat_lists_close(chat_lists_t *l)
{
    if (l == NULL) {
        return;
    }

    chat_lists_broken(l);
    chat_redis_link_free(&l->link);
    free(l);
}


/* reads answers until at most keep are due; false on any failure */
static bool
chat_lists_answers(chat_lists_t *l, size_t keep)
{
    redisReply  *reply;
    bool         ok = true;

    while (l->unanswered > keep) {
        if (redisGetReply(l->ctx, (void **) &reply) != REDIS_OK) {
            log_error("redis (streams): %s", l->ctx->errstr);
            chat_lists_broken(l);
            return false;
        }

        l->unanswered--;

        if (reply->type == REDIS_REPLY_ERROR) {
            log_error("redis (streams): %s", reply->str);
            ok = false;
        }

        freeReplyObject(reply);
    }

    if (!ok) {
        chat_lists_broken(l);
    }

    return ok;
}


bool
chat_lists_push(chat_lists_t *l, const char *key, size_t key_len,
    const char *piece, size_t len, bool first)
{
    if (l->ctx == NULL) {
        return false;
    }

    redisAppendCommand(l->ctx, "RPUSH %b %b", key, key_len, piece, len);
    l->unanswered++;

    if (first) {
        redisAppendCommand(l->ctx, "EXPIRE %b %d", key, key_len,
                           NGX_CHAT_WIRE_STREAM_TTL);
        l->unanswered++;
    }

    return chat_lists_answers(l, CHAT_LISTS_UNANSWERED);
}


bool
chat_lists_finish(chat_lists_t *l, const char *key, size_t key_len)
{
    if (l->ctx == NULL) {
        return false;
    }

    redisAppendCommand(l->ctx, "EXPIRE %b %d", key, key_len,
                       NGX_CHAT_WIRE_STREAM_TTL);
    l->unanswered++;

    return chat_lists_answers(l, 0);
}


void
chat_lists_drop(chat_lists_t *l, const char *key, size_t key_len)
{
    if (l->ctx == NULL) {
        return;
    }

    redisAppendCommand(l->ctx, "DEL %b", key, key_len);
    l->unanswered++;

    (void) chat_lists_answers(l, 0);
}
