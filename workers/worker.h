/*
 * worker.h: what the parts of chat_worker share.
 *
 * chat_worker takes batches of client requests from Kafka, stores and reads
 * them in PostgreSQL and answers through Redis pub/sub. The parts:
 *
 *   chat_worker.c     command line, signals, the batch loop
 *   worker_kafka.c    the consumer: topic creation, batches, rebalances,
 *                     offset commits
 *   worker_batch.c    one batch: records to requests, authorization, frames
 *                     in the outbox, in record order per conversation
 *   worker_events.c   the batch's group changes, receipts and typing
 *   worker_members.c  the membership cache: conversation -> members (pure)
 *   worker_store.c    PostgreSQL: connection, statements, retries
 *                     (worker_store.h lists the other PostgreSQL files:
 *                     sends, reads, groups, receipts and cache loads)
 *   worker_publish.c  Redis: session lookup and the per-node PUBLISH
 *   worker_outbox.c   the outbox and the pub/sub record format (pure)
 *   worker_request.c  parsing and checking one Kafka record (pure)
 *   worker_frame.c    the protocol frames the worker produces (pure)
 *   worker_util.c     logging, clock, buffers, arena, string map (pure)
 *
 * The only mutable global is the stop flag in chat_worker.c; everything else
 * hangs off the objects below. Allocation failures abort: a worker without
 * memory cannot do anything useful, and at-least-once processing with
 * idempotent writes makes a restart safe.
 */

#ifndef CHAT_WORKER_H
#define CHAT_WORKER_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "ngx_chat_wire.h"


#define CHAT_ID_MAX               NGX_CHAT_WIRE_ID_MAX
#define CHAT_BATCH_MAX            1000    /* records per batch */
#define CHAT_BATCH_WINDOW_MS      2       /* wait for more after the first */
#define CHAT_PAYLOAD_SPLIT        (1024 * 1024)  /* see worker_publish.c */
#define CHAT_MEMBERS_CACHE_MAX    100000  /* conversations; then start over */


/* the SIGTERM/SIGINT flag, set by the handler and only read elsewhere */
typedef const volatile sig_atomic_t  chat_stop_t;


/* ---- worker_util.c ---- */

void chat_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...)  chat_log("error", __VA_ARGS__)
#define log_warn(...)   chat_log("warn", __VA_ARGS__)
#define log_info(...)   chat_log("info", __VA_ARGS__)

void *chat_alloc(size_t size);
void *chat_realloc(void *p, size_t size);
char *chat_strdup(const char *s);

int64_t chat_now_ms(void);

/* sleeps, waking early on stop; false when stop was requested */
bool chat_sleep_ms(long ms, chat_stop_t *stop);

/* exponential backoff with jitter for reconnects: 100 ms doubling to 2 s */
typedef struct {
    long      next_ms;
    unsigned  seed;
} chat_backoff_t;

void chat_backoff_reset(chat_backoff_t *b);
bool chat_backoff_wait(chat_backoff_t *b, chat_stop_t *stop);


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} chat_buf_t;

void chat_buf_reserve(chat_buf_t *b, size_t extra);
void chat_buf_add(chat_buf_t *b, const void *p, size_t n);
void chat_buf_adds(chat_buf_t *b, const char *s);
void chat_buf_addc(chat_buf_t *b, char c);
void chat_buf_printf(chat_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *chat_buf_cstr(chat_buf_t *b);   /* NUL-terminated view */
void chat_buf_free(chat_buf_t *b);

/* PostgreSQL array literals for unnest($n::text[]) and friends: values
 * travel as parameters, never inside SQL text */
void chat_pg_array_begin(chat_buf_t *b);
void chat_pg_array_text(chat_buf_t *b, const char *s);   /* NULL -> NULL */
void chat_pg_array_int(chat_buf_t *b, int64_t v);
const char *chat_pg_array_end(chat_buf_t *b);


/* bump allocator for strings that live as long as one batch */
typedef struct chat_arena_chunk_s  chat_arena_chunk_t;

typedef struct {
    chat_arena_chunk_t  *chunks;
} chat_arena_t;

void *chat_arena_alloc(chat_arena_t *a, size_t size);
char *chat_arena_strdup(chat_arena_t *a, const char *s);
char *chat_arena_strndup(chat_arena_t *a, const char *s, size_t n);
void chat_arena_free(chat_arena_t *a);


/* string -> size_t map with borrowed keys (open addressing, FNV-1a) */
typedef struct {
    const char  **keys;
    size_t       *values;
    size_t        cap;
    size_t        count;
} chat_map_t;

/* stores key -> value unless present; returns the value now stored */
size_t chat_map_put(chat_map_t *m, const char *key, size_t value);
bool chat_map_get(const chat_map_t *m, const char *key, size_t *value);
void chat_map_free(chat_map_t *m);


/* ---- worker_request.c ---- */

/* the wire's checks (ngx_chat_wire.h) on NUL-terminated strings */

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
bool chat_parse_dm(const char *conv, char a[CHAT_ID_MAX + 1],
    char b[CHAT_ID_MAX + 1]);

typedef ngx_chat_wire_op_t  chat_op_t;

/* the ops that change membership: they order a batch (worker_batch.c) */
#define chat_op_changes_members(op)                                        \
    ((op) == NGX_CHAT_WIRE_OP_CREATE_GROUP || (op) == NGX_CHAT_WIRE_OP_ADD_MEMBERS           \
     || (op) == NGX_CHAT_WIRE_OP_REMOVE_MEMBERS)

/* one Kafka record; strings point into root, which the request owns */
typedef struct {
    json_t       *root;
    int32_t       partition;
    int64_t       offset;

    chat_op_t     op;
    const char   *node;
    const char   *sid;
    const char   *user;
    const char   *dev;
    int64_t       ts;

    /* send */
    const char   *conv;             /* all but sync */
    const char   *cmid;
    const char   *body;

    /* sync, history */
    json_t       *req_id;           /* borrowed from root, may be NULL */
    json_t       *cursors;          /* sync: object or NULL */
    int64_t       limit;            /* history: 0 when absent */
    int64_t       before_seq;       /* history: -1 when absent */
    int64_t       after_seq;

    /* groups, receipts, typing */
    const char   *name;             /* create_group */
    json_t       *user_ids;         /* create_group members, add/remove:
                                     * an array of valid user ids */
    int64_t       seq;              /* receipt */
    const char   *state;            /* receipt, typing */
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


/* ---- worker_frame.c ---- */

/* a stored message, as the frames and the store see it */
typedef struct {
    const char  *conv;
    int64_t      seq;
    int64_t      message_id;
    const char  *sender;
    const char  *cmid;          /* NULL for system messages */
    const char  *kind;          /* "text" or "system" */
    const char  *body;          /* system: a JSON object as text */
    int64_t      server_ts;
} chat_message_t;

/* the frames answer objects; the callers serialize them with
 * chat_frame_dump, which takes the reference */
json_t *chat_frame_message_object(const chat_message_t *m, bool with_type);
json_t *chat_frame_ack(const chat_message_t *m);
json_t *chat_frame_error(const char *code, const char *message,
    const char *tag_name, json_t *tag);
json_t *chat_frame_error_for(const chat_request_t *req, const char *code,
    const char *message);
json_t *chat_frame_receipt(const char *conv, const char *user,
    const char *state, int64_t seq, int64_t server_ts);
json_t *chat_frame_typing(const char *conv, const char *user,
    const char *state);
struct chat_member_s;
json_t *chat_frame_group(json_t *req_id, const char *conv, const char *name,
    const struct chat_member_s *members, size_t n);
char *chat_frame_dump(json_t *frame, size_t *len);
/* the two frames of every message, written straight to bytes (the same
 * bytes chat_frame_dump makes of the objects above, without building them) */
char *chat_frame_ack_text(const chat_message_t *m, size_t *len);
char *chat_frame_message_text(const chat_message_t *m, size_t *len);


/* ---- worker_outbox.c ---- */

typedef struct {
    char    *bytes;
    size_t   len;
} chat_frame_t;

/* one frame to one session, or to every session of a user but one */
typedef struct {
    size_t       frame;
    const char  *user;          /* NULL: to node/sid only */
    const char  *node;          /* the target, or the session to skip */
    const char  *sid;
} chat_delivery_t;

typedef struct {
    chat_frame_t     *frames;
    size_t            nframes;
    size_t            frames_cap;
    chat_delivery_t  *deliveries;
    size_t            ndeliveries;
    size_t            deliveries_cap;
} chat_outbox_t;

/* takes the frame reference; returns the frame's index */
size_t chat_outbox_frame(chat_outbox_t *out, json_t *frame);
/* a frame already serialized; the outbox takes the malloc'ed bytes */
size_t chat_outbox_bytes(chat_outbox_t *out, char *bytes, size_t len);
void chat_outbox_to_session(chat_outbox_t *out, size_t frame,
    const char *node, const char *sid);
void chat_outbox_to_user(chat_outbox_t *out, size_t frame, const char *user,
    const char *skip_node, const char *skip_sid);
void chat_outbox_reset(chat_outbox_t *out);
/* forgets what was added after the outbox held nframes and ndeliveries */
void chat_outbox_truncate(chat_outbox_t *out, size_t nframes,
    size_t ndeliveries);

/* appends a frame record for these sessions to a node payload */
void chat_payload_record(chat_buf_t *b, const char *const *sids, size_t nsids,
    const char *bytes, size_t len);


/* ---- worker_members.c ---- */

typedef struct chat_member_s {
    char     *user;
    bool      admin;
    int64_t   joined_seq;       /* the event that added it */
    int64_t   removed_seq;      /* the event that removed it; -1: current */
} chat_member_t;

/* a conversation's members, current and past; none: no such group */
typedef struct {
    char           *conv;
    chat_member_t  *members;
    size_t          n;
} chat_group_t;

typedef struct {
    chat_group_t   **groups;
    size_t           n;
    size_t           cap;
    chat_map_t       index;     /* conv -> groups[]; keys are groups' convs */
    void           **retired;   /* member lists replaced during a batch */
    size_t           nretired;
    size_t           retired_cap;
} chat_members_cache_t;

chat_group_t *chat_members_find(chat_members_cache_t *c, const char *conv);
/* replaces conv's entry with a copy of members; what the old entry held
 * stays valid until chat_members_release (the outbox borrows it) */
chat_group_t *chat_members_set(chat_members_cache_t *c, const char *conv,
    const chat_member_t *members, size_t n);
void chat_members_release(chat_members_cache_t *c);
void chat_members_clear(chat_members_cache_t *c);

/* the member's entry, current or past, or NULL */
const chat_member_t *chat_group_member(const chat_group_t *g,
    const char *user);
bool chat_group_is_member(const chat_group_t *g, const char *user);
size_t chat_group_count(const chat_group_t *g);


/* ---- worker_publish.c ---- */

typedef struct chat_redis_s  chat_redis_t;

/* the last offset of a partition that a batch answered */
typedef struct {
    int32_t  partition;
    int64_t  offset;
} chat_position_t;

chat_redis_t *chat_redis_open(const char *addr, const char *delivered_key,
    chat_stop_t *stop);
/* delivers everything in the outbox and records the batch's positions, in
 * one transaction; retries until it worked (true) or stop was requested
 * (false) */
bool chat_redis_deliver(chat_redis_t *r, chat_outbox_t *out,
    chat_arena_t *arena, const chat_position_t *done, size_t ndone);
/* the recorded positions of the partitions (-1: none); false on stop */
bool chat_redis_delivered(chat_redis_t *r, const int32_t *partitions,
    size_t n, int64_t *offsets);
void chat_redis_close(chat_redis_t *r);


/* ---- worker_store.c ---- */

typedef enum {
    CHAT_SEND_PENDING,
    CHAT_SEND_FORBIDDEN,        /* not the user's conversation */
    CHAT_SEND_NEW,              /* stored now: ack and deliver */
    CHAT_SEND_REPLAY,           /* stored by this very record before a crash:
                                 * ack and deliver again */
    CHAT_SEND_RETRY,            /* stored before (or earlier in the batch):
                                 * ack only */
    CHAT_SEND_ANSWERED,         /* a REPLAY whose answers went out before
                                 * the crash: nothing to send */
    CHAT_SEND_FAILED            /* the store refused it: internal error */
} chat_send_state_t;

typedef struct {
    chat_request_t     *req;
    bool                direct_forbidden;  /* decided before the store */
    chat_send_state_t   state;
    size_t              same_as;           /* RETRY of an earlier item */
    bool                same_as_set;
    chat_message_t      msg;               /* NEW, REPLAY, RETRY */
} chat_send_t;

typedef struct chat_store_s  chat_store_t;

chat_store_t *chat_store_open(const char *conninfo, chat_stop_t *stop);
void chat_store_close(chat_store_t *st);

typedef enum {
    CHAT_STORE_OK,
    CHAT_STORE_STOPPED,         /* stop requested while waiting for the db */
    CHAT_STORE_REFUSED          /* failed repeatedly for a non-transient
                                 * reason: split the batch */
} chat_store_rc_t;

/* stores the sends of a batch in one transaction; retries transient
 * failures and waits out a missing database */
chat_store_rc_t chat_store_sends(chat_store_t *st, chat_send_t *sends,
    size_t n, chat_arena_t *arena);

/* answers the sync and history requests into the outbox */
chat_store_rc_t chat_store_reads(chat_store_t *st, chat_request_t **reads,
    size_t n, chat_outbox_t *out);

/* loads the members of the (non-direct) conversations not yet cached */
chat_store_rc_t chat_store_load_members(chat_store_t *st,
    chat_members_cache_t *c, const char *const *convs, size_t n);

/* one create_group, add_members or remove_members, in one transaction */
typedef enum {
    CHAT_GROUP_DONE,            /* answer group; system message if changed */
    CHAT_GROUP_FORBIDDEN,       /* not a member, not an admin, no group */
    CHAT_GROUP_TOO_LARGE        /* over the group size limit */
} chat_group_rc_t;

typedef struct {
    chat_request_t   *req;
    size_t            max_members;
    chat_group_rc_t   rc;
    bool              changed;      /* msg was stored now */
    chat_message_t    msg;          /* the system message */
    const char       *name;
    chat_member_t    *members;      /* every row after the change */
    size_t            nmembers;
} chat_group_op_t;

chat_store_rc_t chat_store_group_op(chat_store_t *st, chat_group_op_t *op,
    chat_arena_t *arena);

typedef enum {
    CHAT_RECEIPT_FORBIDDEN,     /* not a current member */
    CHAT_RECEIPT_BEYOND,        /* seq past the conversation's last */
    CHAT_RECEIPT_IGNORED,       /* behind the pointer: nothing to say */
    CHAT_RECEIPT_MOVED          /* stored: tell the members */
} chat_receipt_rc_t;

typedef struct {
    chat_request_t     *req;
    chat_receipt_rc_t   rc;
} chat_receipt_t;

/* a batch's receipts in one transaction, in record order */
chat_store_rc_t chat_store_receipts(chat_store_t *st, chat_receipt_t *r,
    size_t n, chat_arena_t *arena);


/* ---- worker_batch.c ---- */

typedef struct {
    chat_store_t          *store;
    chat_redis_t          *redis;
    chat_stop_t           *stop;
    chat_members_cache_t  *members;
    size_t                 max_group_members;
} chat_batch_ctx_t;

typedef struct {
    const char  *payload;
    size_t       len;
    int32_t      partition;
    int64_t      offset;
    int64_t      timestamp;     /* ms, when produced; -1: unknown */
} chat_record_t;

/* processes one batch to the end: stored, answered, delivered; false when
 * stop interrupted it before delivery (then commit nothing) */
bool chat_batch_process(chat_batch_ctx_t *ctx, const chat_record_t *records,
    size_t n);


/* ---- worker_events.c ---- */

/* each false when stop interrupted a wait for the store */
bool chat_events_group_op(chat_batch_ctx_t *ctx, chat_request_t *req,
    chat_outbox_t *out, chat_arena_t *arena);
bool chat_events_receipts(chat_batch_ctx_t *ctx, chat_request_t **reqs,
    size_t n, chat_outbox_t *out, chat_arena_t *arena);
bool chat_events_typing(chat_batch_ctx_t *ctx, chat_request_t **reqs,
    size_t n, chat_outbox_t *out, chat_arena_t *arena);


/* ---- worker_kafka.c ---- */

typedef struct chat_kafka_s  chat_kafka_t;

chat_kafka_t *chat_kafka_open(const char *brokers, const char *topic,
    const char *group, int partitions, chat_stop_t *stop);
/* collects up to max records (waiting CHAT_BATCH_WINDOW_MS after the
 * first); the records stay valid until chat_kafka_release */
size_t chat_kafka_collect(chat_kafka_t *k, chat_record_t *records,
    size_t max);
/* commits the offsets after the collected records, then releases them */
void chat_kafka_commit(chat_kafka_t *k);
void chat_kafka_release(chat_kafka_t *k);
void chat_kafka_close(chat_kafka_t *k);
/* counts the rebalances: partitions this worker cached may have moved */
unsigned chat_kafka_rebalances(chat_kafka_t *k);

#endif /* CHAT_WORKER_H */
