/*
 * pusher_online.h: which devices have a live session (pusher_online.c).
 */

#ifndef CHAT_PUSHER_ONLINE_H
#define CHAT_PUSHER_ONLINE_H

#include <stddef.h>

#include "pusher.h"


typedef struct chat_online_s  chat_online_t;

/* as --redis gives it (worker_redis_link.h); connects lazily; NULL
 * after saying why on a bad address */
chat_online_t *chat_online_open(const char *addr);
void chat_online_close(chat_online_t *o);

/* sets each job's online flag; false when Redis could not be asked (the
 * flags are then unknown) */
bool chat_online_check(chat_online_t *o, chat_push_job_t *jobs, size_t n);


#endif /* CHAT_PUSHER_ONLINE_H */
