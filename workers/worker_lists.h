/*
 * worker_lists.h: the Redis lists of streamed answers (worker_lists.c):
 * chat_worker's second Redis connection, which only RPUSHes pieces (a few
 * unanswered at a time), sets their lists' expiry and deletes the lists
 * of answers given up.
 */

#ifndef CHAT_WORKER_LISTS_H
#define CHAT_WORKER_LISTS_H

#include "worker_util.h"


typedef struct chat_lists_s  chat_lists_t;

/* connects (waiting for Redis, like chat_redis_open); NULL on stop or a
 * bad address */
chat_lists_t *chat_lists_open(const char *addr, chat_stop_t *stop);
void chat_lists_close(chat_lists_t *l);

/*
 * RPUSHes a piece to the list key, pipelined: the answers are read only
 * when more than a few are due. The first piece of a list also sets its
 * expiry, so that the list of an answer never finished goes by itself.
 * false: the connection broke (the answer must be written again).
 */
bool chat_lists_push(chat_lists_t *l, const char *key, size_t key_len,
    const char *piece, size_t len, bool first);

/* the list is complete: its expiry counts from now; every answer read.
 * false: the connection broke */
bool chat_lists_finish(chat_lists_t *l, const char *key, size_t key_len);

/* DEL of a list given up; nothing said when it fails (it expires) */
void chat_lists_drop(chat_lists_t *l, const char *key, size_t key_len);

/* after a failure: waits for a new connection; false on stop */
bool chat_lists_wait(chat_lists_t *l);


#endif /* CHAT_WORKER_LISTS_H */
