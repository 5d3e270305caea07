/*
 * worker_store.h: PostgreSQL, the store of record, as the rest of
 * chat_worker sees it: one call per kind of transaction, each returning
 * what it found. The files behind it:
 *
 *   worker_store.c           opening and closing the store
 *   worker_store_sends.c     chat_store_sends: a batch's messages
 *   worker_store_changes.c   chat_store_change: edits, deletions and
 *                            reactions
 *   worker_store_blocks.c    chat_store_block: whom a user blocks;
 *                            chat_store_blocked_pairs
 *   worker_store_search.c    the search read (one of chat_store_reads')
 *   worker_store_index.c     chat_store_index_start, _poll and _partition:
 *                            the search index, written after the sends
 *   worker_store_reads.c     chat_store_reads: history, sync, the
 *                            conversation list and the receipts
 *   worker_store_groups.c    chat_store_group_op: membership changes
 *   worker_store_receipts.c  chat_store_receipts: receipt pointers;
 *                            chat_store_receipt_senders: whom they cover
 *   worker_store_members.c   chat_store_load_members: the cache's loads;
 *                            chat_store_memberships: every current one
 *   worker_store_admin.c     chat_store_revoke, chat_store_revocations,
 *                            chat_store_redact: the operators' ops
 *   worker_store_repairs.c   chat_store_repairs: a node's gap, read again
 *   worker_store_push.c      chat_store_push: push registrations
 *   worker_store_uploads.c   chat_store_uploads: announced uploads
 *   worker_pg.c              the connection, statements and retries they
 *                            share (worker_pg.h, theirs only)
 */

#ifndef CHAT_WORKER_STORE_H
#define CHAT_WORKER_STORE_H

#include "worker_members.h"
#include "worker_metrics.h"
#include "worker_request.h"


typedef struct chat_store_s  chat_store_t;

typedef enum {
    CHAT_STORE_OK,
    CHAT_STORE_STOPPED,         /* stop requested while waiting for the db */
    CHAT_STORE_REFUSED          /* failed repeatedly for a non-transient
                                 * reason: split the batch */
} chat_store_rc_t;

chat_store_t *chat_store_open(const char *conninfo, chat_stop_t *stop);
/* what the waits for PostgreSQL do meanwhile (worker_util.h) */
void chat_store_set_wait(chat_store_t *st, chat_wait_pt meanwhile,
    void *data);
void chat_store_close(chat_store_t *st);
/* where the transactions' durations and retries are counted (may be
 * NULL: not counted) */
void chat_store_set_metrics(chat_store_t *st, chat_metrics_t *m);


/* a stored message, as the store and the frames see it */
typedef struct {
    const char  *conv;
    int64_t      seq;
    int64_t      message_id;
    const char  *sender;
    const char  *cmid;          /* NULL for system messages */
    const char  *kind;          /* "text" or "system" */
    const char  *body;          /* system: a JSON object as text; NULL:
                                 * erased by a deletion, or none */
    int64_t      server_ts;
    int64_t      target_id;     /* edit, delete, reaction: what it changes;
                                 * 0 for the others */
    int64_t      reply_to;      /* text: the message it answers, or 0 */
    int64_t      edited_at;     /* text: ms of its last edit, or 0 */
    bool         deleted;
    const char  *reactions;     /* text: a JSON object emoji -> user ids,
                                 * or NULL for none */
    /* a JSON array of its attachments (worker_media.h), or NULL */
    const char  *attachments;
} chat_message_t;


/* ---- sends ---- */

typedef enum {
    CHAT_SEND_PENDING,
    CHAT_SEND_FORBIDDEN,        /* not the user's conversation */
    CHAT_SEND_BAD,              /* attachments it may not attach */
    CHAT_SEND_NEW,              /* stored now: ack and deliver */
    CHAT_SEND_REPLAY,           /* stored by this very record before a crash:
                                 * ack and deliver again */
    CHAT_SEND_RETRY,            /* stored before (or earlier in the batch):
                                 * ack only */
    CHAT_SEND_REFUSED           /* not stored: error_code, error_message */
} chat_send_state_t;

/* a device registered for push (push_register) */
typedef struct {
    const char  *user;
    const char  *device;
} chat_push_device_t;

typedef struct {
    const chat_request_t  *req;
    bool                   direct_forbidden;  /* decided before the store */
    bool                   bad_attachments;   /* decided before the store:
                                               * answered bad_request */
    const char            *attachments;       /* what it attaches (JSON) */
    const char            *names;             /* their names, one a line,
                                               * for search */
    chat_send_state_t      state;
    size_t                 same_as;           /* RETRY of an earlier send */
    bool                   same_as_set;
    chat_message_t         msg;               /* NEW, REPLAY, RETRY */
    /* NEW, REPLAY: the registered devices of the other members, found in
     * the transaction that stores it (the push topic's records) */
    chat_push_device_t    *push;
    size_t                 npush;
    const char            *error_code;        /* REFUSED: static strings */
    const char            *error_message;
} chat_send_t;

/* stores the sends of a batch in one transaction, and finds their
 * recipients' push devices in its last round trip; retries transient
 * failures and waits out a missing database */
chat_store_rc_t chat_store_sends(chat_store_t *st, chat_send_t **sends,
    size_t n, chat_arena_t *arena);


/*
 * An edit, delete or react (req->op), in its own transaction: stored as
 * a change (the next seq of its conversation, target_id its target) and
 * applied to the target, or refused (not_found: no such message in the
 * conversation; forbidden: not the user's to change; bad_request: not a
 * text message). The states and msg are a send's; a retry of the same
 * client_msg_id finds the stored change.
 */
chat_store_rc_t chat_store_change(chat_store_t *st, chat_send_t *s,
    chat_arena_t *arena);


/* ---- the search index ---- */

/*
 * On a store of its own (its connection is busy while a statement runs):
 * the text messages of these ids (stored and committed) into the search
 * index, and the partitions (ascending) indexed up to these offsets, in
 * one statement, sent and not waited for; a message deleted or redacted
 * meanwhile is left out. False when it could not be sent.
 */
bool chat_store_index_start(chat_store_t *st, const int64_t *ids,
    size_t n, const int32_t *parts, const int64_t *offsets, size_t nparts);

typedef enum {
    CHAT_STORE_INDEX_RUNNING,
    CHAT_STORE_INDEX_DONE,
    CHAT_STORE_INDEX_FAILED     /* the ids are not indexed */
} chat_store_index_rc_t;

/* how the statement sent went; with wait, until it is over; *indexed says
 * how many it indexed */
chat_store_index_rc_t chat_store_index_poll(chat_store_t *st, bool wait,
    int64_t *indexed);

/* whatever the records of this partition stored after its indexed position
 * and is not in the index, indexed, waited for; *indexed says how many */
chat_store_rc_t chat_store_index_partition(chat_store_t *st,
    int32_t partition, int64_t *indexed);


/* ---- reads ---- */

/* what a history request reads */
typedef struct {
    bool             forbidden;     /* not the user's conversation */
    chat_message_t  *messages;      /* ascending seq */
    size_t           n;
    bool             has_more;
} chat_history_rows_t;

/* one conversation of a list (sync, conversations) as this user sees it:
 * a member removed from a group sees it as of its removal */
typedef struct {
    const char      *conv;
    const char      *kind;
    const char      *name;          /* NULL: none */
    int64_t          member_count;
    int64_t          last_seq;
    int64_t          delivered_seq;
    int64_t          read_seq;
    int64_t          unread;
    bool             has_last;
    chat_message_t   last;
    size_t           first;         /* sync: its messages in the chunk */
    size_t           n;
    bool             truncated;     /* sync: more than NGX_CHAT_WIRE_SYNC_CAP
                                     * after the device's cursor */
    /* the highest seq every other member has delivered / read (a member's
     * pointers count the seqs before its joining as done) */
    int64_t          others_delivered_seq;
    int64_t          others_read_seq;
    int64_t          after_seq;     /* sync: its messages are those after
                                     * this seq, up to last_seq */
    int64_t          activity;      /* ms, the list's order */
    int64_t          activity_id;   /* the last message's id: the order
                                     * within one ms */
} chat_sync_conv_t;

/*
 * A list of conversations, newest activity first: a sync's first page or
 * a page of the conversations request, the rows asked for and one more
 * when there are more. A sync's messages come later, a chunk of its
 * conversations at a time (chat_store_sync_messages), ascending per
 * conversation.
 */
typedef struct {
    chat_sync_conv_t  *convs;
    size_t             nconvs;
    size_t             limit;       /* rows asked for: an answer lists at
                                     * most this many */
    chat_message_t    *messages;
    size_t             nmessages;
} chat_sync_rows_t;

/* a member's pointers, for the receipts request */
typedef struct {
    const char  *user;
    int64_t      delivered_seq;
    int64_t      read_seq;
} chat_pointers_row_t;

typedef struct {
    bool                  forbidden;   /* not a current member */
    chat_pointers_row_t  *members;     /* by user id */
    size_t                n;
} chat_receipts_rows_t;

/* a search result: the message as it is now, and its text with the
 * matches marked */
typedef struct {
    chat_message_t   msg;
    const char      *highlight;
} chat_search_row_t;

typedef struct {
    bool                forbidden;  /* a conversation never the user's */
    chat_search_row_t  *rows;       /* newest first */
    size_t              n;
    bool                has_more;
} chat_search_rows_t;

typedef struct {
    const chat_request_t  *req;     /* sync, history, conversations,
                                     * receipts, search */
    chat_history_rows_t    history;
    chat_sync_rows_t       sync;    /* sync and conversations */
    chat_receipts_rows_t   receipts;
    chat_search_rows_t     search;
} chat_read_t;

/* the reads of a batch from one snapshot, in order; the rows live in the
 * arena */
chat_store_rc_t chat_store_reads(chat_store_t *st, chat_read_t **reads,
    size_t n, chat_arena_t *arena);

/*
 * The messages of convs[0..n-1] of a sync's list (the newest
 * NGX_CHAT_WIRE_SYNC_CAP after each one's after_seq), ascending per
 * conversation and in the order given, into s->messages; each
 * conversation's first and n say where its own are. Read outside the
 * list's snapshot: the list's seqs bound what each one reads, so the
 * answer is the same.
 */
chat_store_rc_t chat_store_sync_messages(chat_store_t *st,
    chat_sync_conv_t *convs, size_t n, chat_sync_rows_t *s,
    chat_arena_t *arena);


/* ---- blocks ---- */

/* a block or unblock, in its own transaction: the user's whole list
 * after it, by user id */
typedef struct {
    const chat_request_t  *req;
    const char           **blocked;
    size_t                 n;
} chat_block_t;

chat_store_rc_t chat_store_block(chat_store_t *st, chat_block_t *b,
    chat_arena_t *arena);

/* blocked[i]: a[i] blocks b[i] or b[i] blocks a[i] */
chat_store_rc_t chat_store_blocked_pairs(chat_store_t *st, const char **a,
    const char **b, size_t n, bool *blocked);


/* ---- membership changes ---- */

/* one create_group, add_members, remove_members or set_role, in one
 * transaction */
typedef enum {
    CHAT_GROUP_DONE,            /* answer group; system message if changed */
    CHAT_GROUP_FORBIDDEN,       /* not a member, not an admin, no group */
    CHAT_GROUP_TOO_LARGE        /* over the group size limit */
} chat_group_rc_t;

typedef struct {
    const chat_request_t  *req;
    size_t                 max_members;
    chat_group_rc_t        rc;
    bool                   changed;     /* msg was stored now */
    chat_message_t         msg;         /* the system message */
    const char            *name;
    chat_member_t         *members;     /* every row after the change */
    size_t                 nmembers;
} chat_group_op_t;

chat_store_rc_t chat_store_group_op(chat_store_t *st, chat_group_op_t *op,
    chat_arena_t *arena);


/* ---- receipts ---- */

typedef enum {
    CHAT_RECEIPT_FORBIDDEN,     /* not a current member */
    CHAT_RECEIPT_BEYOND,        /* seq past the conversation's last */
    CHAT_RECEIPT_IGNORED,       /* behind the pointer: nothing to say */
    CHAT_RECEIPT_MOVED          /* stored: tell the members */
} chat_receipt_rc_t;

typedef struct {
    const chat_request_t  *req;
    chat_receipt_rc_t      rc;

    /* a moved pointer that a later receipt of the batch moved further
     * (the same state, or read over this delivered): that one says it */
    bool                   superseded;
    int64_t                from;        /* this state's pointer before the
                                         * batch */

    /* in a group too large to hear of every receipt: the senders of the
     * messages in (from, seq] */
    bool                   coalesce;
    const char           **senders;
    size_t                 nsenders;
} chat_receipt_t;

/* a batch's receipts in one transaction, in record order */
chat_store_rc_t chat_store_receipts(chat_store_t *st, chat_receipt_t **r,
    size_t n, chat_arena_t *arena);

/* the senders of the receipts marked coalesce that moved and are not
 * superseded (messages of others, not membership events) */
chat_store_rc_t chat_store_receipt_senders(chat_store_t *st,
    chat_receipt_t **r, size_t n, chat_arena_t *arena);


/* ---- the operators' ops ---- */

/* revocations, stored in one transaction (idempotent: a record replayed
 * stores nothing twice) */
chat_store_rc_t chat_store_revoke(chat_store_t *st,
    const chat_request_t *const *reqs, size_t n);

/* the latest revocation of each user (device NULL) and device */
typedef struct {
    const char  *user;
    const char  *device;        /* NULL: every device */
    int64_t      ms;
} chat_revocation_t;

/* every revocation's latest time, for chat:revoked; the rows live in the
 * arena */
chat_store_rc_t chat_store_revocations(chat_store_t *st,
    chat_revocation_t **rows, size_t *n, chat_arena_t *arena);

/* one redaction: the message's text erased (it stays, marked), and a
 * system message in its conversation that says so */
typedef enum {
    CHAT_REDACT_DONE,           /* erased now, or erased by this record */
    CHAT_REDACT_NOT_FOUND,      /* no such text message in conv */
    CHAT_REDACT_ALREADY         /* erased before, by another record */
} chat_redact_rc_t;

typedef struct {
    const chat_request_t  *req;
    chat_redact_rc_t       rc;
    chat_message_t         msg;         /* DONE: the system message */
} chat_redact_t;

chat_store_rc_t chat_store_redact(chat_store_t *st, chat_redact_t *r,
    chat_arena_t *arena);
/* ---- repairs ---- */

/* a gap bigger than this is not answered: the node gives up on it and its
 * sessions sync (cheaper for everyone than one huge record) */
#define CHAT_REPAIR_ROWS_MAX  10000

/* a message a repair sends again, and the device that sent it */
typedef struct {
    chat_message_t   msg;
    const char      *device;
} chat_repair_row_t;

/* what a repair reads: the messages of the Kafka records (after, upto] of
 * its partition since its node started, in offset order, and the members,
 * past and present, of the groups among them (to tell who was a member at
 * each message's seq) */
typedef struct {
    const chat_request_t  *req;
    bool                   too_large;
    chat_repair_row_t     *rows;
    size_t                 n;
    chat_members_t        *groups;
    size_t                 ngroups;
} chat_repair_t;

chat_store_rc_t chat_store_repairs(chat_store_t *st, chat_repair_t **r,
    size_t n, chat_arena_t *arena);


/* ---- push registrations ---- */

typedef struct {
    const chat_request_t  *req;         /* push_register, push_unregister */
    bool                   refused;     /* an endpoint the server does not
                                         * allow: not stored */
} chat_push_op_t;

/* a batch's registrations and unregistrations in one transaction, in
 * record order; an unregistered device's pending pushes are dropped */
chat_store_rc_t chat_store_push(chat_store_t *st, chat_push_op_t **ops,
    size_t n);


/* ---- uploads ---- */

typedef struct {
    const chat_request_t  *req;
    bool                   allowed;     /* the uploader may post there */
} chat_upload_op_t;

/* records the allowed uploads of a batch in one transaction (a retried
 * record finds its row there already) */
chat_store_rc_t chat_store_uploads(chat_store_t *st, chat_upload_op_t **ops,
    size_t n);

/* what a send may attach: the recorded uploads of these ids */
typedef struct {
    const char  *id;
    const char  *conv;
    const char  *uploader;
    int64_t      size;
    bool         attached;      /* to a message already */
    const char  *attached_cmid; /* that message's, when the uploader's */
    const char  *content_type;
    bool         has_dims;      /* its size in pixels is known */
    const char  *json;          /* as members see it, without URLs */
    const char  *name;
} chat_upload_row_t;

chat_store_rc_t chat_store_upload_rows(chat_store_t *st, const char **ids,
    size_t n, chat_upload_row_t **rows, size_t *nrows, chat_arena_t *arena);

/* forgets the uploads announced before `before` (ms) and never attached;
 * their ids, whose files are to go, in the arena */
chat_store_rc_t chat_store_stale_uploads(chat_store_t *st, int64_t before,
    char ***ids, size_t *n, chat_arena_t *arena);

/* an image's size in pixels, once its thumbnail is made */
chat_store_rc_t chat_store_upload_dims(chat_store_t *st, const char *id,
    int width, int height);


/* ---- the membership cache ---- */

/* loads the members of the (non-direct) conversations not yet cached */
chat_store_rc_t chat_store_load_members(chat_store_t *st,
    chat_members_cache_t *c, const char *const *convs, size_t n);

/* up to limit current memberships after (after_user, after_conv), in that
 * order ("", "" for the first page), or with blocks the blocks (user, then
 * whom it blocks in conv); *n says how many (fewer than limit: the last
 * page); strings from arena */
chat_store_rc_t chat_store_memberships(chat_store_t *st, bool blocks,
    const char *after_user, const char *after_conv, chat_membership_t *rows,
    size_t limit, size_t *n, chat_arena_t *arena);


#endif /* CHAT_WORKER_STORE_H */
