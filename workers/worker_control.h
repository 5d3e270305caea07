/*
 * worker_control.h: the revocations in Redis (worker_control.c): the
 * hash chat:revoked, a copy of PostgreSQL's table, and the channel
 * chat:control.
 */

#ifndef CHAT_WORKER_CONTROL_H
#define CHAT_WORKER_CONTROL_H

#include "worker_store.h"


typedef struct chat_control_s  chat_control_t;

/* a connection of its own to addr (as --redis); NULL on a bad address */
chat_control_t *chat_control_open(const char *addr, chat_stop_t *stop,
    chat_metrics_t *m);
/*
 * A revocation stored in PostgreSQL: its field raised in chat:revoked and
 * the control message published (dev NULL: every device). Waits for Redis
 * until it worked (true) or stop was requested (false).
 */
bool chat_control_revoked(chat_control_t *c, const char *admin,
    const char *user, const char *dev, int64_t ms);
/*
 * From the loop, as often as it likes (it acts about once a second):
 * writes chat:revoked whole from the store after a new connection, or
 * when the hash is found gone; never waits for Redis.
 */
void chat_control_tick(chat_control_t *c, chat_store_t *st);
void chat_control_close(chat_control_t *c);


#endif /* CHAT_WORKER_CONTROL_H */
