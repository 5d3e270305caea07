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


/* one Kafka record; strings point into root, which the request owns */
typedef struct {
    json_t              *root;
    int32_t              partition;
    int64_t              offset;

    /* every record */
    ngx_chat_wire_op_t   op;
    const char          *op_name;       /* as the record names it, or NULL */
    const char          *node;          /* NULL unless valid, as sid */
    const char          *sid;
    const char          *user;
    const char          *dev;
    int64_t              ts;
    json_t              *req_id;        /* borrowed from root, may be NULL */
    const char          *cmid;          /* the ops tagged by client_msg_id */

    /* the ops' own fields (worker_ops.c) */
    const char          *conv;          /* all but sync */
    const char          *body;          /* send, edit */
    int64_t              reply_to;      /* send: 0 when absent */
    int64_t              target_mid;    /* edit, delete, react */
    const char          *emoji;         /* react: NULL takes it back */
    int64_t              window_ms;     /* edit: its edit window */
    const char          *other;         /* block, unblock: a valid id */
    const char          *query;         /* search; conv may be NULL */
    int64_t              before_mid;    /* search: 0 when absent */
    json_t              *attachments;   /* send: attachment ids, or NULL */
    json_t              *cursors;       /* sync: object or NULL */
    int64_t              limit;         /* history, conversations */
    int64_t              before_seq;    /* history: -1 when absent */
    int64_t              after_seq;
    const char          *name;          /* create_group */
    json_t              *user_ids;      /* create_group members, add/remove:
                                         * an array of valid user ids */
    int64_t              seq;           /* receipt */
    const char          *state;         /* receipt, typing */

    /* an operator's record (chatctl): no session; user is the admin */
    const char          *admin;         /* who asked; NULL: a session's */
    const char          *target;        /* revoke: user; set_role: user_id */
    const char          *target_dev;    /* revoke: the device, NULL: all */
    const char          *role;          /* set_role */
    int64_t              message_id;    /* redact */
    int64_t              before_ts;     /* conversations: INT64_MAX when
                                         * absent */
    int64_t              before_id;     /* conversations: 0 when absent */
    const char          *endpoint;      /* push_register */
    const char          *token;
    struct {                            /* upload: what the module signed */
        const char      *id;
        const char      *content_type;
        int64_t          size;
        const char      *url;
        int64_t          expires_at;
        int64_t          max_bytes;
    }                    upload;
    struct {                            /* repair: what a node missed */
        int64_t          partition;
        int64_t          after;
        int64_t          upto;
        int64_t          since;         /* ms: nothing older is wanted */
    }                    repair;
} chat_request_t;

typedef enum {
    CHAT_PARSE_OK,
    CHAT_PARSE_BAD,            /* malformed but answerable: node, sid known */
    CHAT_PARSE_DROP            /* malformed and nobody to answer */
} chat_parse_rc_t;

/*
 * The envelope of a record: the JSON (DROP when it is not an object),
 * where to answer (node, sid: NULL unless both are valid), who asks (user,
 * dev, req_id) and which op (BAD when it names none the wire knows: req->op
 * stays NGX_CHAT_WIRE_OP_COUNT). req->partition and req->offset are kept.
 * On failure why says what was wrong. The op's own fields are its row's to
 * parse (chat_ops_parse, worker_ops.c), which also drops what it cannot
 * answer.
 */
chat_parse_rc_t chat_request_parse(chat_request_t *req, const char *payload,
    size_t len, char *why, size_t why_size);
/* the checks of who asks, after the op is known: user, dev, ts */
chat_parse_rc_t chat_request_check(chat_request_t *req, char *why,
    size_t why_size);
void chat_request_free(chat_request_t *req);

/* a field of the record: a string or NULL */
const char *chat_request_string(const chat_request_t *req,
    const char *field);
/* an integer field: absent or null gives dflt; false when it is anything
 * else that is not an integer */
bool chat_request_int(const chat_request_t *req, const char *field,
    int64_t dflt, int64_t *out);
/* a field as it is, or NULL */
json_t *chat_request_json(const chat_request_t *req, const char *field);
/* an array of valid user ids? */
bool chat_request_ids(json_t *list);


#endif /* CHAT_WORKER_REQUEST_H */
