/*
 * worker_redis.h: chat_worker's Redis connection (worker_redis.c): the
 * delivery of a batch's outbox in one script call, fenced per partition,
 * with the batch's delivered marks and chain heads; the reading of the
 * marks; the idle ping that notices a restart; the users' sets of
 * conversations.
 */

#ifndef CHAT_WORKER_REDIS_H
#define CHAT_WORKER_REDIS_H

#include "worker_chain.h"
#include "worker_members.h"
#include "worker_payload.h"


typedef struct chat_redis_s  chat_redis_t;

/* keys: the delivered marks' and the epochs' hashes of the topic and
 * group; chain: what this worker published, which the calls below load
 * and move (and write again after every reconnect) */
chat_redis_t *chat_redis_open(const char *addr, const char *delivered_key,
    const char *epoch_key, chat_chain_t *chain, chat_stop_t *stop);
/* what the waits for Redis do meanwhile (worker_util.h) */
void chat_redis_set_wait(chat_redis_t *r, chat_wait_pt meanwhile,
    void *data);
/*
 * Delivers everything in the outbox and records the batch's positions:
 * retries until it worked (true) or the wait was given up (false). The
 * outbox's pushes whose device has a live session are marked online from
 * the same lookup of the sessions. A
 * partition found fenced is marked so in the chain and its records left
 * out (neither published nor to be committed).
 */
bool chat_redis_deliver(chat_redis_t *r, chat_outbox_t *out,
    chat_arena_t *arena, const chat_position_t *done, size_t ndone);
/*
 * Takes the partitions (their epochs from the chain go in: the previous
 * owner is fenced from now on) and reads their delivered marks (-1: none;
 * -2 and the partition marked fenced in the chain when a newer owner has
 * it already); false when the wait was given up.
 */
bool chat_redis_delivered(chat_redis_t *r, const int32_t *partitions,
    size_t n, int64_t *offsets);
/* while idle: a PING about every second, so that a restarted Redis is
 * noticed (and the chain written again) without waiting for a batch */
void chat_redis_tick(chat_redis_t *r);
void chat_redis_close(chat_redis_t *r);

/*
 * The sets of conversations by user, from which the nginx nodes tell who
 * may see whose presence, and of members by group, from which they pass
 * typing on: the batches' joins and leaves go with their deliveries; after Redis lost the sets a worker writes them all again
 * (worker_contacts.c), claiming the job first.
 */
typedef enum {
    CHAT_REDIS_CONTACTS_READY,      /* the sets are whole */
    CHAT_REDIS_CONTACTS_START,      /* this writer claimed the job now */
    CHAT_REDIS_CONTACTS_GO_ON,      /* this writer has it (claim renewed) */
    CHAT_REDIS_CONTACTS_OTHER,      /* another writer has it */
    CHAT_REDIS_CONTACTS_BROKEN      /* no connection now: later */
} chat_redis_contacts_t;

chat_redis_contacts_t chat_redis_contacts_claim(chat_redis_t *r,
    const char *writer);
/* SADDs the memberships, both ways (blocks: the blocks, user then whom);
 * last: the sets are whole (both marks), the claim given back. false: the connection broke (the
 * job is to be claimed again) */
bool chat_redis_contacts_write(chat_redis_t *r, const chat_membership_t *rows,
    size_t n, bool blocks, bool last);


#endif /* CHAT_WORKER_REDIS_H */
