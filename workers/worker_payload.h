/*
 * worker_payload.h: a batch's outbox as the payloads of the nginx nodes
 * (worker_payload.c): the users the outbox names, whose sessions Redis
 * tells, and then one payload per node in the record format of
 * ngx_chat_wire.h: a P section per partition the node hears from (its
 * F and A records, chained by the heads of worker_chain.h) and an R record
 * per repair, cut between records into pieces of about CHAT_PAYLOAD_SPLIT
 * bytes.
 */

#ifndef CHAT_WORKER_PAYLOAD_H
#define CHAT_WORKER_PAYLOAD_H

#include "worker_chain.h"
#include "worker_outbox.h"


/*
 * A node's payload beyond this is cut between sections into several
 * PUBLISHes (Redis keeps them in order), so that a large answer is not
 * one huge allocation in Redis and in the module. A section is never
 * cut: it is one record.
 */
#define CHAT_PAYLOAD_SPLIT  (1024 * 1024)


/* one session of a user: a node, a sid and the device it serves */
typedef struct {
    const char  *node;
    const char  *sid;
    const char  *device;        /* NULL: not known */
} chat_session_t;

typedef struct {
    chat_session_t  *sessions;
    size_t           n;
} chat_user_sessions_t;

/* the users an outbox delivers to, and their sessions once looked up */
typedef struct {
    const char            **users;
    size_t                  n;
    chat_map_t              index;      /* user -> users[] */
    chat_user_sessions_t   *found;      /* per user, filled by the lookup */
} chat_payload_users_t;

/* what one node gets of one partition's records (type P), of one repair
 * (type R), or of records from no partition (type 0: bare records) */
typedef struct {
    size_t       node;                  /* index into nodes */
    int          type;
    int32_t      partition;
    int32_t      repair;                /* R: index into out->repairs */
    char        *key;                   /* in block_index, owned */
    chat_buf_t   body;                  /* its F and A records */
} chat_payload_block_t;

/* a node's payload, possibly in several PUBLISHes */
typedef struct {
    size_t       node;                  /* index into nodes */
    chat_buf_t   buf;
} chat_payload_chunk_t;

typedef struct {
    const char  *name;
} chat_payload_node_t;

/* where a section leaves the chain of (partition, node) */
typedef struct {
    int32_t      partition;
    const char  *node;
    int64_t      head;
    bool         expire;        /* the node's chain key's TTL set again */
} chat_payload_head_t;

typedef struct {
    chat_payload_node_t   *nodes;
    size_t                 nnodes;
    chat_map_t             node_index;
    chat_payload_block_t  *blocks;      /* in the order records came */
    size_t                 nblocks;
    chat_map_t             block_index;
    size_t                 last_block;  /* the one used last, + 1; 0 none */
    const chat_outbox_t   *out;

    /* chat_payload_finish: what to publish, and the heads it moves */
    chat_payload_chunk_t  *chunks;      /* in the order to publish */
    size_t                 nchunks;
    chat_payload_head_t   *heads;
    size_t                 nheads;
} chat_payloads_t;


/* the users out delivers or pushes to, each once; their sessions still
 * empty */
void chat_payload_users(chat_payload_users_t *u, const chat_outbox_t *out);
void chat_payload_users_free(chat_payload_users_t *u);
/* each push of out marked online when its device is among its user's
 * sessions (looked up in u) */
void chat_payload_online(const chat_payload_users_t *u, chat_outbox_t *out);

/* the outbox as records per node and partition, the sessions of its
 * users known; every repair gets its record, frames or not */
void chat_payload_build(chat_payloads_t *p, const chat_outbox_t *out,
    const chat_payload_users_t *u);

/* the sections whose chain head chain does not know yet, as (partition,
 * node) pairs into parts and nodes (room for p->nblocks); returns how
 * many */
size_t chat_payload_unknown(const chat_payloads_t *p, const chat_chain_t *c,
    int32_t *parts, const char **nodes);

/*
 * The records as payloads (p->chunks): each section headed by the head
 * its chain has now (-1 if none) and the batch's last offset of its
 * partition (from done); the sections and repairs of fenced partitions
 * left out. p->heads says where each section leaves its chain; the chain
 * itself is not touched (it moves once the publish went through). May be
 * called again, after more partitions were fenced.
 */
void chat_payload_finish(chat_payloads_t *p, const chat_chain_t *c,
    const chat_position_t *done, size_t ndone);
void chat_payload_free(chat_payloads_t *p);

/* appends a frame record for these sessions to a node payload */
void chat_payload_record(chat_buf_t *b, const char *const *sids, size_t nsids,
    const char *bytes, size_t len);
/* the same for a record of another type (an S record) */
void chat_payload_record_of(chat_buf_t *b, int type, const char *const *sids,
    size_t nsids, const char *bytes, size_t len);


#endif /* CHAT_WORKER_PAYLOAD_H */
