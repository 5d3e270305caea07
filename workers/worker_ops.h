/*
 * worker_ops.h: the table of ops (worker_ops.c), one row per op of the
 * wire (ngx_chat_wire_op_t): how its record's fields become a request,
 * where in a batch it runs, how it is stored, how it is answered and who
 * else hears of it.
 *
 * Adding an op is adding a row and its functions. A record whose op the
 * wire does not know, or that has no row here, is answered bad_request
 * (dropped when it names no session to answer) and logged as an error: it
 * is never taken for another op. A record with an admin field is an
 * operator's (chatctl): the rows say which ops take one. A row marked
 * nosession is a node's record (repair): its node is where the answer
 * goes, and a fault in it cannot be answered.
 */

#ifndef CHAT_WORKER_OPS_H
#define CHAT_WORKER_OPS_H

#include "worker_item.h"


/*
 * Where an op runs in a batch (worker_batch.c). Membership changes cut
 * the batch into segments; a segment runs its stages in this order, then
 * the change that ends it, alone; reads come after every segment, and
 * the after stage once the batch's answers are delivered.
 */
typedef enum {
    CHAT_STAGE_SEND,            /* stored together, first */
    CHAT_STAGE_RECEIPT,         /* then: they may name the seqs just sent */
    CHAT_STAGE_TYPING,          /* then: never stored */
    CHAT_STAGE_MEMBERS,         /* ends a segment, alone: a membership
                                 * change, or a change to a message */
    CHAT_STAGE_READ,            /* after every segment, in one snapshot */
    CHAT_STAGE_AFTER            /* after the batch's delivery: slow work
                                 * that no answer of the batch waits for */
} chat_stage_t;

/*
 * Who may send an op's records: a session (through nginx), an operator
 * (chatctl: the record carries admin and no session, and whatever is
 * wrong with it drops it, there being nobody to answer), or either.
 */
typedef enum {
    CHAT_FROM_SESSION = 0,
    CHAT_FROM_EITHER,
    CHAT_FROM_OPERATOR
} chat_from_t;

/* the device an operator's system messages are stored as sent from */
#define CHAT_OPERATOR_DEVICE  "chatctl"

/* what the answers and errors of a request are tagged with */
typedef enum {
    CHAT_TAG_REQ_ID,            /* req_id, echoed as sent (or none) */
    CHAT_TAG_CMID               /* client_msg_id */
} chat_tag_t;

/* the op's own fields of the record into req (the envelope is parsed) */
typedef chat_parse_rc_t (*chat_op_parse_pt)(chat_request_t *req, char *why,
    size_t why_size);

/*
 * PostgreSQL (and the membership cache in front of it) for items of this
 * op and of every op with the same store function in the same stage, in
 * one transaction: results into the items, never frames.
 */
typedef chat_store_rc_t (*chat_op_store_pt)(chat_op_ctx_t *ctx,
    chat_item_t **items, size_t n);

/* an item's results -> frames into ctx->out: for the requester (answer),
 * for everyone else (fan-out) */
typedef void (*chat_op_answer_pt)(chat_op_ctx_t *ctx,
    const chat_item_t *item);
typedef void (*chat_op_fanout_pt)(chat_op_ctx_t *ctx,
    const chat_item_t *item);

struct chat_op_s {
    ngx_chat_wire_op_t   op;        /* its name is the wire's */
    chat_stage_t         stage;
    chat_tag_t           tag;
    bool                 split;     /* refused together: stored again one
                                     * by one, so that only the faulty one
                                     * fails */
    chat_from_t          from;
    bool                 nosession; /* a node's record: no sid, user or
                                     * dev; answered to the node */
    const char          *refused;   /* the internal error's message */

    chat_op_parse_pt     parse;
    chat_op_store_pt     store;     /* NULL: nothing to store */
    chat_op_answer_pt    answer;
    chat_op_fanout_pt    fanout;    /* NULL: nobody else hears of it */
    /* the outbox's pushes (a text message's offline devices): run even
     * for a replay whose answers went out; NULL: none */
    chat_op_fanout_pt    push;
};


/* the row of op, or NULL */
const chat_op_t *chat_ops_find(ngx_chat_wire_op_t op);

/* does the record name an op that the wire does not know or this worker
 * has no row for? */
bool chat_ops_unknown(const chat_request_t *req);

/* a whole record: the envelope (worker_request.c), then the fields of its
 * op by its row; req->partition and req->offset are kept */
chat_parse_rc_t chat_ops_parse(chat_request_t *req, const char *payload,
    size_t len, char *why, size_t why_size);


#endif /* CHAT_WORKER_OPS_H */
