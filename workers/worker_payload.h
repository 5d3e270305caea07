/*
 * worker_payload.h: a batch's outbox as the payloads of the nginx nodes
 * (worker_payload.c): the users the outbox names, whose sessions Redis
 * tells, and then one payload per node in the record format of
 * ngx_chat_wire.h, cut into pieces of about CHAT_PAYLOAD_SPLIT bytes.
 */

#ifndef CHAT_WORKER_PAYLOAD_H
#define CHAT_WORKER_PAYLOAD_H

#include "worker_outbox.h"


/*
 * A node's payload beyond this is cut between records into several
 * PUBLISHes (Redis keeps them in order on one connection), so that a large
 * sync answer is not one huge allocation in Redis and in the module.
 */
#define CHAT_PAYLOAD_SPLIT  (1024 * 1024)


/* one session of a user: a node and a sid */
typedef struct {
    const char  *node;
    const char  *sid;
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

/* a node's payload, possibly in several PUBLISHes */
typedef struct {
    size_t       node;                  /* index into nodes */
    chat_buf_t   buf;
} chat_payload_chunk_t;

typedef struct {
    const char  *name;
    size_t       open_chunk;            /* the chunk records go to */
    bool         has_open_chunk;
} chat_payload_node_t;

typedef struct {
    chat_payload_node_t   *nodes;
    size_t                 nnodes;
    chat_map_t             node_index;
    chat_payload_chunk_t  *chunks;      /* in the order to publish */
    size_t                 nchunks;
} chat_payloads_t;


/* the users out delivers to, each once; their sessions still empty */
void chat_payload_users(chat_payload_users_t *u, const chat_outbox_t *out);
void chat_payload_users_free(chat_payload_users_t *u);

/* the outbox as node payloads, the sessions of its users known */
void chat_payload_build(chat_payloads_t *p, const chat_outbox_t *out,
    const chat_payload_users_t *u);
void chat_payload_free(chat_payloads_t *p);

/* appends a frame record for these sessions to a node payload */
void chat_payload_record(chat_buf_t *b, const char *const *sids, size_t nsids,
    const char *bytes, size_t len);
/* the same for a record of another type (an S record) */
void chat_payload_record_of(chat_buf_t *b, int type, const char *const *sids,
    size_t nsids, const char *bytes, size_t len);


#endif /* CHAT_WORKER_PAYLOAD_H */
