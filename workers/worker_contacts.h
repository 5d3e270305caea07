/*
 * worker_contacts.h: the users' sets of conversations in Redis written
 * again from PostgreSQL after Redis lost them (worker_contacts.c).
 */

#ifndef CHAT_WORKER_CONTACTS_H
#define CHAT_WORKER_CONTACTS_H

#include "worker_redis.h"
#include "worker_store.h"


typedef struct {
    char         writer[64];    /* this worker, in the claim */
    bool         writing;
    bool         blocks;        /* the memberships are written: the blocks */
    int64_t      next_look;     /* ms */
    char        *after_user;    /* where the next page starts */
    char        *after_conv;
} chat_contacts_t;

void chat_contacts_init(chat_contacts_t *c);
/*
 * Looks every few seconds whether the sets are whole; while they are not
 * and this worker has the job, writes one page of memberships per call,
 * so that batches go on between pages.
 */
void chat_contacts_tick(chat_contacts_t *c, chat_store_t *st,
    chat_redis_t *r, int64_t now);
void chat_contacts_free(chat_contacts_t *c);


#endif /* CHAT_WORKER_CONTACTS_H */
