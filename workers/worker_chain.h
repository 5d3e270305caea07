/*
 * worker_chain.h: what this worker published, per partition it holds
 * (worker_chain.c): the epoch it took the partition with, the delivered
 * mark (the last offset whose answers went out) and, per nginx node, the
 * head of the chain of P sections (ngx_chat_wire.h) it sends that node for
 * the partition. Pure state, no Redis: worker_redis.c loads what is not
 * known yet and writes it back, worker_payload.c reads the heads to chain
 * the sections, worker_batch.c reads the marks to leave replays unsaid.
 */

#ifndef CHAT_WORKER_CHAIN_H
#define CHAT_WORKER_CHAIN_H

#include "worker_util.h"


/* heads not written for this long are forgotten, in memory as in Redis
 * (the chain key expires after as long): their node is long gone */
#define CHAT_CHAIN_HEAD_TTL_S  86400


/* the last offset of a partition that a batch answered */
typedef struct {
    int32_t  partition;
    int64_t  offset;
} chat_position_t;

typedef struct {
    int32_t   partition;
    int64_t   epoch;        /* us when taken: the newer owner wins */
    int64_t   mark;         /* delivered up to here; -1: nothing */
    bool      mark_known;   /* mark loaded from Redis (or published) */
    bool      fenced;       /* a newer owner's epoch is in Redis */
} chat_chain_part_t;

typedef struct {
    int32_t   partition;
    char     *key;          /* "<partition>\n<node>", owned */
    char     *node;         /* points into key */
    int64_t   head;         /* the <last> of the newest section; -1 */
    int64_t   touched;      /* ms, last published or loaded */
    int64_t   expires;      /* ms when the key's TTL is to be set again */
} chat_chain_head_t;

typedef struct {
    chat_chain_part_t  *parts;
    size_t              nparts;
    size_t              parts_cap;
    chat_chain_head_t  *heads;
    size_t              nheads;
    size_t              heads_cap;
    chat_map_t          index;      /* key -> heads[] */
    int64_t             last_epoch;
} chat_chain_t;


/* the partition was (re)taken: a new epoch, its mark to be loaded, its
 * heads forgotten (its previous owner moved them on) */
void chat_chain_assign(chat_chain_t *c, int32_t partition, int64_t now_us);
/* the partition went to another worker: forgotten */
void chat_chain_revoke(chat_chain_t *c, int32_t partition);
/* the partition's state; taken now (chat_chain_assign) if it is not held */
chat_chain_part_t *chat_chain_part(chat_chain_t *c, int32_t partition);
/* the state if held, else NULL */
chat_chain_part_t *chat_chain_find(const chat_chain_t *c, int32_t partition);

/* the head of (partition, node): true and *head when known */
bool chat_chain_head(const chat_chain_t *c, int32_t partition,
    const char *node, int64_t *head);
void chat_chain_set_head(chat_chain_t *c, int32_t partition,
    const char *node, int64_t head, int64_t now_ms);
/* the head's entry, or NULL */
chat_chain_head_t *chat_chain_entry(const chat_chain_t *c, int32_t partition,
    const char *node);
/* forgets the heads untouched since before (ms) */
void chat_chain_expire(chat_chain_t *c, int64_t before);

void chat_chain_free(chat_chain_t *c);


#endif /* CHAT_WORKER_CHAIN_H */
