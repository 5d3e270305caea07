/*
 * worker_request.h: one Kafka record of the requests topic as a checked
 * request (worker_request.c), and the identifier rules as the worker
 * applies them to NUL-terminated strings (the rules themselves are the
 * wire's, ngx_chat_wire.h).
 */

#ifndef CHAT_WORKER_REQUEST_H
#define CHAT_WORKER_REQUEST_H

#include <string.h>

#include <jansson.h>

#include "worker.h"


static inline bool
chat_valid_id(const char *s)
{
    return s != NULL && ngx_chat_wire_valid_id(s, strlen(s));
}

static inline bool
chat_is_dm_id(const char *conv)
{
    return ngx_chat_wire_is_direct(conv, strlen(conv));
}

static inline ngx_chat_wire_access_t
chat_direct_access(const char *conv, const char *user)
{
    return ngx_chat_wire_direct_access(conv, strlen(conv), user,
                                       strlen(user));
}

/* "dm:<a>:<b>" with valid ids and a <= b (byte order); a and b are copied
 * into the caller's buffers */
bool chat_parse_dm(const char *conv, char a[NGX_CHAT_WIRE_ID_MAX + 1],
    char b[NGX_CHAT_WIRE_ID_MAX + 1]);


/* the ops that change membership: they order a batch (worker_batch.c) */
#define chat_op_changes_members(op)                                        \
    ((op) == NGX_CHAT_WIRE_OP_CREATE_GROUP                                 \
     || (op) == NGX_CHAT_WIRE_OP_ADD_MEMBERS                               \
     || (op) == NGX_CHAT_WIRE_OP_REMOVE_MEMBERS)

/* one Kafka record; strings point into root, which the request owns */
typedef struct {
    json_t              *root;
    int32_t              partition;
    int64_t              offset;

    ngx_chat_wire_op_t   op;
    const char          *node;
    const char          *sid;
    const char          *user;
    const char          *dev;
    int64_t              ts;

    /* send */
    const char          *conv;          /* all but sync */
    const char          *cmid;
    const char          *body;

    /* sync, history */
    json_t              *req_id;        /* borrowed from root, may be NULL */
    json_t              *cursors;       /* sync: object or NULL */
    int64_t              limit;         /* history: 0 when absent */
    int64_t              before_seq;    /* history: -1 when absent */
    int64_t              after_seq;

    /* groups, receipts, typing */
    const char          *name;          /* create_group */
    json_t              *user_ids;      /* create_group members, add/remove:
                                         * an array of valid user ids */
    int64_t              seq;           /* receipt */
    const char          *state;         /* receipt, typing */
} chat_request_t;

typedef enum {
    CHAT_PARSE_OK,
    CHAT_PARSE_BAD,            /* malformed but answerable: node, sid known */
    CHAT_PARSE_DROP            /* malformed and nobody to answer */
} chat_parse_rc_t;

/* parses payload into req; on failure why says what was wrong */
chat_parse_rc_t chat_request_parse(chat_request_t *req, const char *payload,
    size_t len, char *why, size_t why_size);
void chat_request_free(chat_request_t *req);


#endif /* CHAT_WORKER_REQUEST_H */
