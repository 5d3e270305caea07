
/*
 * The wire between the nginx module and the workers, in one place: the id
 * alphabets, the limits both sides check, the close codes, the Kafka record
 * (topic, ops, field names, the fields every record carries), the Redis keys
 * and channels, the session registry's value and the pub/sub payload that
 * carries frames from the workers to the nginx worker processes.
 *
 * Plain C, no nginx or jansson headers: the module, the workers, chatctl,
 * the unit tests and the fuzzers all compile this file, so a detail written
 * here is written nowhere else. The client protocol itself (what a frame
 * means) is ../shared/PROTOCOL.md; this is what travels behind it.
 */


#ifndef _NGX_CHAT_WIRE_H_INCLUDED_
#define _NGX_CHAT_WIRE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* ------------------------------------------------------------------ ids */

/* user, device and server ids: 1-64 characters of [A-Za-z0-9_.@-] */
#define NGX_CHAT_WIRE_ID_MAX         64

/* a session id: 16 lowercase hex digits, unique per server across restarts */
#define NGX_CHAT_WIRE_SID_LEN        16

/*
 * a node is one nginx worker process, "<server_id>:<process>" where
 * <process> tells this process apart from every other one the server ever
 * ran (a reload starts new processes while the old ones drain)
 */
#define NGX_CHAT_WIRE_NODE_MAX       (NGX_CHAT_WIRE_ID_MAX + 1 + 24)

/* "dm:<a>:<b>" or a group's "g:<hex>"; longer ids are never made */
#define NGX_CHAT_WIRE_CONV_MAX       160

#define NGX_CHAT_WIRE_DEFAULT_DEVICE "default"

int ngx_chat_wire_valid_id(const char *p, size_t len);
int ngx_chat_wire_valid_sid(const char *p, size_t len);
int ngx_chat_wire_valid_node(const char *p, size_t len);

/*
 * The direct conversation of a and b: "dm:<a>:<b>" with a < b in byte order
 * (either argument order). conv holds NGX_CHAT_WIRE_CONV_MAX + 1 bytes; a
 * and b are valid ids. Returns the length; conv is NUL-terminated.
 */
size_t ngx_chat_wire_direct_id(char *conv, const char *a, size_t a_len,
    const char *b, size_t b_len);

/*
 * Splits a direct conversation id into its two members. 1 when conv is a
 * well formed "dm:<a>:<b>" (valid ids, a <= b), else 0.
 */
int ngx_chat_wire_parse_direct(const char *conv, size_t len,
    const char **a, size_t *a_len, const char **b, size_t *b_len);

/* 1 if conv starts with "dm:" (well formed or not) */
int ngx_chat_wire_is_direct(const char *conv, size_t len);

/* may user name conv without asking the store? */
typedef enum {
    NGX_CHAT_WIRE_ALLOWED,      /* a direct conversation with the user in it */
    NGX_CHAT_WIRE_FORBIDDEN,    /* a direct id without the user, or malformed */
    NGX_CHAT_WIRE_ASK_STORE     /* not a direct id: its members decide */
} ngx_chat_wire_access_t;

ngx_chat_wire_access_t ngx_chat_wire_direct_access(const char *conv,
    size_t len, const char *user, size_t user_len);

/* a message id as clients send it (decimal digits, positive, within
 * int64): 1 and *id, else 0 */
int ngx_chat_wire_message_id(const char *p, size_t len, int64_t *id);

/* characters, not bytes, of valid UTF-8: the limits count characters */
size_t ngx_chat_wire_chars(const char *p, size_t len);


/* --------------------------------------------------------------- limits */

#define NGX_CHAT_WIRE_CMID_MAX           64      /* characters */
#define NGX_CHAT_WIRE_NAME_MAX           128     /* characters */
#define NGX_CHAT_WIRE_USER_IDS_MAX       1000
#define NGX_CHAT_WIRE_CURSORS_MAX        10000
#define NGX_CHAT_WIRE_HISTORY_LIMIT      50
#define NGX_CHAT_WIRE_HISTORY_MAX        100
#define NGX_CHAT_WIRE_SYNC_CAP           100     /* messages per conversation */
/* the conversation list: a page of the conversations request, and the
 * first page that a sync answer holds */
#define NGX_CHAT_WIRE_LIST_LIMIT         50
#define NGX_CHAT_WIRE_LIST_MAX           200
#define NGX_CHAT_WIRE_SYNC_LIST          200
#define NGX_CHAT_WIRE_JSON_DEPTH_MAX     16
#define NGX_CHAT_WIRE_GROUP_MEMBERS      256     /* default, creator included */
#define NGX_CHAT_WIRE_GROUP_MEMBERS_MAX  1024
/* groups of more members than this (by default) hear of a receipt only
 * as its reader's devices and the senders of what it covers */
#define NGX_CHAT_WIRE_RECEIPT_FANOUT     256

/* push_register: bytes of the endpoint URL and of the device's token */
#define NGX_CHAT_WIRE_PUSH_ENDPOINT_MAX  2048
#define NGX_CHAT_WIRE_PUSH_TOKEN_MAX     4096

/* a reaction: 1-32 bytes of UTF-8 */
#define NGX_CHAT_WIRE_EMOJI_MAX          32
/* how long after sending its own text message a user may edit it, unless
 * configured otherwise (seconds) */
#define NGX_CHAT_WIRE_EDIT_WINDOW        900
/* a message id on the wire: a string of 1-19 decimal digits */
#define NGX_CHAT_WIRE_MESSAGE_ID_MAX     19

/* search: a query of 1-256 characters, pages of 1-50 results */
#define NGX_CHAT_WIRE_QUERY_MAX          256
#define NGX_CHAT_WIRE_SEARCH_LIMIT       20
#define NGX_CHAT_WIRE_SEARCH_MAX         50

/* a typing "start" holds this long on the other side unless renewed */
#define NGX_CHAT_WIRE_TYPING_VALID_MS    6000


/* ---------------------------------------------------------- close codes */

#define NGX_CHAT_WIRE_CLOSE_NORMAL       1000
#define NGX_CHAT_WIRE_CLOSE_AWAY         1001
#define NGX_CHAT_WIRE_CLOSE_PROTOCOL     1002
#define NGX_CHAT_WIRE_CLOSE_BINARY       1003
#define NGX_CHAT_WIRE_CLOSE_UTF8         1007
#define NGX_CHAT_WIRE_CLOSE_POLICY       1008
#define NGX_CHAT_WIRE_CLOSE_TOO_BIG      1009
#define NGX_CHAT_WIRE_CLOSE_INTERNAL     1011
#define NGX_CHAT_WIRE_CLOSE_RESTART      1012
#define NGX_CHAT_WIRE_CLOSE_REPLACED     4001
#define NGX_CHAT_WIRE_CLOSE_REVOKED      4003
#define NGX_CHAT_WIRE_CLOSE_RATE         4008
#define NGX_CHAT_WIRE_CLOSE_SLOW         4009


/* --------------------------------------------------------- Kafka record */

/*
 * One JSON object per record on the requests topic, keyed by the
 * conversation id (so that one conversation stays in one partition, in
 * order) or, for reads, by the user id.
 */
#define NGX_CHAT_WIRE_TOPIC              "chat.requests"

typedef enum {
    NGX_CHAT_WIRE_OP_SEND = 0,
    NGX_CHAT_WIRE_OP_SYNC,
    NGX_CHAT_WIRE_OP_HISTORY,
    NGX_CHAT_WIRE_OP_CREATE_GROUP,
    NGX_CHAT_WIRE_OP_ADD_MEMBERS,
    NGX_CHAT_WIRE_OP_REMOVE_MEMBERS,
    NGX_CHAT_WIRE_OP_RECEIPT,
    NGX_CHAT_WIRE_OP_TYPING,
    NGX_CHAT_WIRE_OP_REPAIR,
    NGX_CHAT_WIRE_OP_REVOKE,
    NGX_CHAT_WIRE_OP_SET_ROLE,
    NGX_CHAT_WIRE_OP_REDACT,
    NGX_CHAT_WIRE_OP_CONVERSATIONS,
    NGX_CHAT_WIRE_OP_RECEIPTS,
    NGX_CHAT_WIRE_OP_PUSH_REGISTER,
    NGX_CHAT_WIRE_OP_PUSH_UNREGISTER,
    NGX_CHAT_WIRE_OP_UPLOAD,
    NGX_CHAT_WIRE_OP_EDIT,
    NGX_CHAT_WIRE_OP_DELETE,
    NGX_CHAT_WIRE_OP_REACT,
    NGX_CHAT_WIRE_OP_BLOCK,
    NGX_CHAT_WIRE_OP_UNBLOCK,
    NGX_CHAT_WIRE_OP_SEARCH,
    NGX_CHAT_WIRE_OP_UPLOADED,
    NGX_CHAT_WIRE_OP_COUNT
} ngx_chat_wire_op_t;

/* the op's name in records, "send" and so on */
const char *ngx_chat_wire_op_name(ngx_chat_wire_op_t op);

/* the op of a name, or -1 */
int ngx_chat_wire_op_find(const char *name, size_t len);

/* the fields every record carries */
#define NGX_CHAT_WIRE_F_OP               "op"
#define NGX_CHAT_WIRE_F_NODE             "node"    /* where to answer */
#define NGX_CHAT_WIRE_F_SID              "sid"
#define NGX_CHAT_WIRE_F_USER             "user"
#define NGX_CHAT_WIRE_F_DEV              "dev"
#define NGX_CHAT_WIRE_F_TS               "ts"      /* ms, received by nginx */

/* the fields of the ops (which op has which: README.md) */
#define NGX_CHAT_WIRE_F_REQ_ID           "req_id"  /* any JSON, echoed */
#define NGX_CHAT_WIRE_F_CONV             "conv"
#define NGX_CHAT_WIRE_F_CMID             "cmid"
#define NGX_CHAT_WIRE_F_BODY             "body"
#define NGX_CHAT_WIRE_F_CURSORS          "cursors"
#define NGX_CHAT_WIRE_F_LIMIT            "limit"
#define NGX_CHAT_WIRE_F_BEFORE_SEQ       "before_seq"
#define NGX_CHAT_WIRE_F_AFTER_SEQ        "after_seq"
#define NGX_CHAT_WIRE_F_NAME             "name"
#define NGX_CHAT_WIRE_F_MEMBERS          "members"
#define NGX_CHAT_WIRE_F_USER_IDS         "user_ids"
#define NGX_CHAT_WIRE_F_SEQ              "seq"
#define NGX_CHAT_WIRE_F_STATE            "state"
/* set_role: whose role, and which (admin or member) */
#define NGX_CHAT_WIRE_F_USER_ID          "user_id"
#define NGX_CHAT_WIRE_F_ROLE             "role"
/* redact: the message (a string of digits, as clients see it) */
#define NGX_CHAT_WIRE_F_MESSAGE_ID       "message_id"

#define NGX_CHAT_WIRE_ROLE_ADMIN         "admin"
#define NGX_CHAT_WIRE_ROLE_MEMBER        "member"
/* conversations: the page ends before this activity (ms) and, at that
 * very ms, before this message id (a string, as on the client's side) */
#define NGX_CHAT_WIRE_F_BEFORE_TS        "before_ts"
#define NGX_CHAT_WIRE_F_BEFORE_ID        "before_message_id"
/* push_register: the device's push gateway and its token there */
#define NGX_CHAT_WIRE_F_ENDPOINT         "endpoint"
#define NGX_CHAT_WIRE_F_TOKEN            "token"
/* upload: what the module signed, for the worker to record and answer */
#define NGX_CHAT_WIRE_F_ATTACHMENT_ID    "attachment_id"
#define NGX_CHAT_WIRE_F_CONTENT_TYPE     "content_type"
#define NGX_CHAT_WIRE_F_SIZE             "size"
#define NGX_CHAT_WIRE_F_URL              "url"
#define NGX_CHAT_WIRE_F_EXPIRES_AT       "expires_at"
#define NGX_CHAT_WIRE_F_MAX_BYTES        "max_bytes"
/* send: the attachment ids, 1-NGX_CHAT_WIRE_ATTACHMENTS_MAX of them */
#define NGX_CHAT_WIRE_F_ATTACHMENTS      "attachments"
#define NGX_CHAT_WIRE_ATTACHMENTS_MAX    10

/* edit, delete, react: the message they change (its id, as on the
 * client's side); send: the message it answers */
#define NGX_CHAT_WIRE_F_TARGET           "target"
#define NGX_CHAT_WIRE_F_REPLY_TO         "reply_to"
/* react: the emoji, or null to take one's reaction back */
#define NGX_CHAT_WIRE_F_EMOJI            "emoji"
/* edit: the edit window (ms) of the location the edit came through: the
 * module's configuration decides, the worker checks it against the
 * original's server_ts */
#define NGX_CHAT_WIRE_F_WINDOW           "window_ms"
/* block, unblock: the other user */
#define NGX_CHAT_WIRE_F_OTHER            "other"
/* search: the query, and where a page ends (before this message id) */
#define NGX_CHAT_WIRE_F_QUERY            "query"
#define NGX_CHAT_WIRE_F_BEFORE_MID       "before_id"

/* the values of "state": a receipt's, then typing's */
#define NGX_CHAT_WIRE_STATE_DELIVERED    "delivered"
#define NGX_CHAT_WIRE_STATE_READ         "read"
#define NGX_CHAT_WIRE_STATE_START        "start"
#define NGX_CHAT_WIRE_STATE_STOP         "stop"

/*
 * A node's request to repair a gap, produced to the partition it names
 * (so that it comes after every record of the gap), with the fields op,
 * node, ts and these: answered with an R record on the node's channel.
 */
#define NGX_CHAT_WIRE_F_PARTITION        "partition"
#define NGX_CHAT_WIRE_F_AFTER            "after"
#define NGX_CHAT_WIRE_F_UPTO             "upto"
/* ms: the node's start; it needs nothing older (after may be -1) */
#define NGX_CHAT_WIRE_F_SINCE            "since"

/*
 * nginx's own word that an upload's bytes are stored (its chat_media
 * location answered the PUT with 201 or 204), never a client's: the
 * fields op, node (the nginx that stored it), ts and these two, keyed by
 * the attachment id, the one thing a PUT names. chat_worker then makes
 * an image's size in pixels and its thumbnail, off the sends' path.
 */
#define NGX_CHAT_WIRE_UPLOADED_MAX                                          \
    (sizeof("{\"\":\"\",\"\":\"\",\"\":,\"\":\"\",\"\":}")                    \
     + sizeof(NGX_CHAT_WIRE_F_OP NGX_CHAT_WIRE_F_NODE NGX_CHAT_WIRE_F_TS    \
              NGX_CHAT_WIRE_F_ATTACHMENT_ID NGX_CHAT_WIRE_F_SIZE "uploaded") \
     + NGX_CHAT_WIRE_NODE_MAX + NGX_CHAT_WIRE_ID_MAX + 2 * 20)

/* into buf of NGX_CHAT_WIRE_UPLOADED_MAX bytes (not NUL terminated), the
 * node and the id valid; returns the length */
size_t ngx_chat_wire_uploaded_record(char *buf, const char *node,
    size_t node_len, int64_t ts, const char *id, size_t id_len,
    int64_t size);

/*
 * An operator's request (chatctl), not a session's: the fields op, ts,
 * admin (who asked, for the log) and the op's own; no node, sid, user or
 * dev of a session. revoke: user, and dev when one device only.
 * set_role (which sessions send too, as a group op): conv, user_id, role.
 * redact: conv (the key, so that it is ordered with the conversation's
 * messages) and message_id. admin is an id (the id alphabet); ts is
 * required, and is the revocation's time.
 */
#define NGX_CHAT_WIRE_F_ADMIN            "admin"

/*
 * The push topic: one record per (text message, registered device of a
 * recipient) that had no live session when the message was delivered,
 * produced by chat_worker once the message is committed and consumed by
 * chat_pusher's group, which enters it in the push outbox (whose primary
 * key drops the records a replay produces again). Keyed by the recipient's
 * user id; the value is text:
 *
 *     <message_id> <user> <device> <server_ts>
 *
 * The message's text is not in it: chat_pusher reads the message from the
 * store when it sends, and leaves the body out when configured to.
 */
#define NGX_CHAT_WIRE_PUSH_TOPIC         "chat.push"

#define NGX_CHAT_WIRE_PUSH_RECORD_MAX    (NGX_CHAT_WIRE_MESSAGE_ID_MAX + 1    \
                                          + 2 * (NGX_CHAT_WIRE_ID_MAX + 1)    \
                                          + 21)

typedef struct {
    int64_t       message_id;
    const char   *user;
    size_t        user_len;
    const char   *device;
    size_t        device_len;
    int64_t       ts;             /* ms, the message's server_ts */
} ngx_chat_wire_push_t;

/* into buf of NGX_CHAT_WIRE_PUSH_RECORD_MAX bytes (not NUL terminated);
 * returns the length */
size_t ngx_chat_wire_push_record(char *buf, const ngx_chat_wire_push_t *push);

/* 1 when p is a well formed push record (a message id, valid ids, a time),
 * else 0 */
int ngx_chat_wire_push_parse(const char *p, size_t len,
    ngx_chat_wire_push_t *push);

/* who sent a record: every id valid, sid NGX_CHAT_WIRE_SID_LEN bytes */
typedef struct {
    const char   *user;
    size_t        user_len;
    const char   *device;
    size_t        device_len;
    const char   *node;
    size_t        node_len;
    const char   *sid;
    int64_t       now_ms;
    /* the upload settings (ngx_chat_media_sign.h), NULL: no uploads */
    const struct ngx_chat_media_conf_s  *media;
    int64_t       edit_window_ms;  /* what an edit record carries */
} ngx_chat_wire_peer_t;

/* the room the common fields take, for a buffer of known size */
size_t ngx_chat_wire_record_common_size(const ngx_chat_wire_peer_t *peer,
    ngx_chat_wire_op_t op);

/*
 * Writes the fields every record carries as JSON members, without braces
 * and without a leading comma: "op":"send","sid":"...",...,"ts":N. The ids
 * need no escaping (their alphabets have no quote or backslash). Returns
 * the end of what was written.
 */
char *ngx_chat_wire_record_common(char *p, const ngx_chat_wire_peer_t *peer,
    ngx_chat_wire_op_t op);


/* --------------------------------------------------- Redis keys, channels */

/* hash, field <device>, value "<node> <sid>": the user's live sessions */
#define NGX_CHAT_WIRE_KEY_SESS           "chat:sess:"
/* hash, field <device>, value us when that connection was made */
#define NGX_CHAT_WIRE_KEY_SINCE          "chat:since:"
/* hash: "away" ("1" while the user said so), "last_seen" (ms) */
#define NGX_CHAT_WIRE_KEY_PRES           "chat:pres:"
/*
 * sorted set, member a node, score the ms until which it is alive: each
 * nginx worker process pushes its own forward every few seconds, and the
 * sessions of a node whose time has passed are removed by the others
 */
#define NGX_CHAT_WIRE_KEY_NODES          "chat:nodes"
/* hash of one node's sessions: field the session value, value the user */
#define NGX_CHAT_WIRE_KEY_NODE_SESSIONS  "chat:nsess:"
/*
 * sorted set, member a user whose last device went, score the ms when it
 * is announced offline unless a device came back meanwhile: reconnects
 * (a reload, a flapping link) flip nobody offline
 */
#define NGX_CHAT_WIRE_KEY_GONE           "chat:gone"
/*
 * hash of revocations: field "<user>" (every device) or "<user> <device>",
 * value the ms of the revocation; a token issued before it (or without
 * iat) is refused at the handshake. Written by the workers from the
 * store of record (PostgreSQL), so that Redis losing it loses nothing.
 */
#define NGX_CHAT_WIRE_KEY_REVOKED        "chat:revoked"
/*
 * set of the conversations a user is a current member of: two users are
 * contacts, and see each other's presence, while their sets intersect.
 * Written by the workers from the store of record; KEY_CONVS_READY exists
 * while the sets are whole (after Redis lost them, a worker writes them
 * again and then sets it; until then nobody is anybody's contact)
 */
#define NGX_CHAT_WIRE_KEY_CONVS          "chat:convs:"
#define NGX_CHAT_WIRE_KEY_CONVS_READY    "chat:convs"
/*
 * set of the current members of a group (direct conversations have theirs
 * in their id): the other side of the users' sets, written with them, and
 * KEY_MEMBERS_READY exists while these and the blocks are whole (set with
 * KEY_CONVS_READY). The module's typing script (lua/typing.lua) checks the
 * typer and finds the members there; without the mark, typing goes
 * through Kafka and a worker instead
 */
#define NGX_CHAT_WIRE_KEY_MEMBERS        "chat:members:"
#define NGX_CHAT_WIRE_KEY_MEMBERS_READY  "chat:members"
/* string: the worker that writes the sets again, while it does */
#define NGX_CHAT_WIRE_KEY_CONVS_WRITER   "chat:convs-writer"
/* set of the users a user blocks: they see it offline, never seen */
#define NGX_CHAT_WIRE_KEY_BLOCKS         "chat:blocks:"
/* "<topic>:<group>" follows; hash, field <partition>, value the last
 * offset whose answers went out */
#define NGX_CHAT_WIRE_KEY_DELIVERED      "chat:delivered:"
/* "<topic>:<group>" follows; hash, field <partition>, value the epoch (us)
 * with which its worker took the partition: the newer one wins, an older
 * one publishes nothing of it (a worker that lost it without noticing) */
#define NGX_CHAT_WIRE_KEY_EPOCH          "chat:epoch:"

/* channel of one node: payloads of records (below) */
#define NGX_CHAT_WIRE_CHANNEL_NODE       "chat:node:"
/*
 * channel every nginx worker process subscribes to: "revoke <user>
 * <device or -> <ms>" closes the user's (device's) sessions with 4003 and
 * is remembered for the handshake
 */
#define NGX_CHAT_WIRE_CHANNEL_CONTROL    "chat:control"
/* a chat:revoked field: "<user>" or "<user> <device>" */
#define NGX_CHAT_WIRE_REVOKED_FIELD_MAX  (2 * NGX_CHAT_WIRE_ID_MAX + 2)

/* into buf of NGX_CHAT_WIRE_REVOKED_FIELD_MAX bytes, NUL terminated: dev
 * NULL (or dev_len 0) for every device; returns the length */
size_t ngx_chat_wire_revoked_field(char *buf, const char *user,
    size_t user_len, const char *dev, size_t dev_len);

/*
 * A chat:control message: "revoke <user> <device or -> <ms>". A session
 * of the user (of that device) whose token was issued before <ms> is
 * closed with 4003; one issued later is not (a message published again,
 * as a worker that replays its record does, leaves the new token alone).
 */
#define NGX_CHAT_WIRE_CONTROL_MAX    (sizeof("revoke ") + 2 * NGX_CHAT_WIRE_ID_MAX \
                                      + 2 + 20)

typedef enum {
    NGX_CHAT_WIRE_CONTROL_REVOKE = 1
} ngx_chat_wire_control_type_e;

typedef struct {
    ngx_chat_wire_control_type_e  type;
    const char                   *user;
    size_t                        user_len;
    const char                   *dev;        /* NULL: every device */
    size_t                        dev_len;
    int64_t                       ms;
} ngx_chat_wire_control_t;

/* into buf of NGX_CHAT_WIRE_CONTROL_MAX bytes (not NUL terminated); dev
 * NULL for every device; returns the length */
size_t ngx_chat_wire_control_revoke(char *buf, const char *user,
    size_t user_len, const char *dev, size_t dev_len, int64_t ms);

/* 1 when p is a well formed control message (valid ids, a known type),
 * else 0 */
int ngx_chat_wire_control_parse(const char *p, size_t len,
    ngx_chat_wire_control_t *ev);

/*
 * 1 when a revocation at revoked_ms (chat:revoked, chat:control) revokes a
 * token issued at iat (seconds; 0 when it has none): the token was not
 * issued after it. A token issued in the second of the revocation is
 * refused too; one of the next second is not.
 */
int ngx_chat_wire_revokes(int64_t revoked_ms, int64_t iat);

/* channel of one user's presence events (below): only the processes that
 * have a watcher of the user subscribe to it */
#define NGX_CHAT_WIRE_CHANNEL_PRESENCE   "chat:pc:"

/* room for a prefix and an id, a node, or a Kafka topic and group name */
#define NGX_CHAT_WIRE_KEY_MAX            512

/*
 * prefix followed by id into buf of NGX_CHAT_WIRE_KEY_MAX bytes, NUL
 * terminated; returns the length (0 if it does not fit)
 */
size_t ngx_chat_wire_key(char *buf, const char *prefix, const char *id,
    size_t id_len);


/* ------------------------------------------------- session registry value */

/* "<node> <sid>": NODE_MAX + 1 + SID_LEN bytes at most */
#define NGX_CHAT_WIRE_SESSION_MAX   (NGX_CHAT_WIRE_NODE_MAX + 1               \
                                     + NGX_CHAT_WIRE_SID_LEN)

size_t ngx_chat_wire_session_value(char *buf, const char *node,
    size_t node_len, const char *sid);

/* 1 when value is a valid node, one space and a valid sid */
int ngx_chat_wire_session_parse(const char *value, size_t len,
    const char **node, size_t *node_len, const char **sid);


/* ------------------------------------------------------ presence events */

/*
 * "<user> <status> <last_seen>": status "online", "away" or "offline",
 * last_seen the ms when the user's last device went, or "-" (online, away,
 * or never seen)
 */
#define NGX_CHAT_WIRE_PRESENCE_MAX   (NGX_CHAT_WIRE_ID_MAX                    \
                                      + sizeof(" offline ") + 20)

typedef struct {
    const char   *user;
    size_t        user_len;
    const char   *status;
    size_t        status_len;
    int64_t       last_seen;      /* -1: none */
} ngx_chat_wire_presence_t;

/* into buf of NGX_CHAT_WIRE_PRESENCE_MAX bytes; last_seen -1 for none */
size_t ngx_chat_wire_presence_event(char *buf, const char *user,
    size_t user_len, const char *status, int64_t last_seen);

/* 1 when p is a well formed event (valid user, known status), else 0 */
int ngx_chat_wire_presence_parse(const char *p, size_t len,
    ngx_chat_wire_presence_t *ev);


/* --------------------------------------------------------- node payloads */

/*
 * A payload on a node's channel is one or more records, back to back:
 *
 *     <type> <args> <len>\n<len bytes>
 *
 * <type> is one character, <args> what the type needs (never a newline),
 * <len> the decimal length of the bytes that follow. The types:
 *
 *     F <sid>[,<sid>...] <len>   write the bytes as one text frame to each
 *                                of these local sessions (a session that is
 *                                gone is skipped)
 *     A <ms> <sid> <len>         the same for the ack of a send, to its one
 *                                session: <ms> is the record's ts (when
 *                                nginx received the send), for the
 *                                send-to-ack latency nginx measures
 *     K <sid>[,<sid>...] 0       close these sessions with 4001: a newer
 *                                connection of their device took over
 *     P <partition> <prev> <last> <len>
 *                                a section: the records in the bytes are
 *                                what the Kafka records of <partition> up
 *                                to offset <last> have for this node; the
 *                                section before it to this node ended at
 *                                <prev> (-1: none). Each publisher keeps
 *                                the chain, and writes its head to the
 *                                node's chain key: a <prev> beyond what the
 *                                node holds, or a head beyond it, is a gap,
 *                                which the node asks to be repaired
 *     R <partition> <after> <upto> <len>
 *                                a repair: the records in the bytes are the
 *                                messages of the Kafka records (after,
 *                                upto] of <partition> for this node's
 *                                sessions, read again from the store
 *     S <sid> <len>              the answer to a read is in the list whose
 *                                key is the bytes: pieces, each a payload
 *                                of F records for the session and, in the
 *                                last, an E record; popped as the
 *                                session's socket drains
 *     E <sid> 0                  the end of such an answer
 *
 * The frame bytes are complete protocol frames: nginx never parses them.
 * F, A, K and S records come alone or inside P and R records. Besides
 * ngx_chat_wire_record_header(), the module's typing script
 * (lua/typing.lua) writes F records, alone: keep the two alike.
 */
#define NGX_CHAT_WIRE_RECORD_FRAME    'F'
#define NGX_CHAT_WIRE_RECORD_ACK      'A'
#define NGX_CHAT_WIRE_RECORD_KICK     'K'
#define NGX_CHAT_WIRE_RECORD_SECTION  'P'
#define NGX_CHAT_WIRE_RECORD_REPAIR   'R'
#define NGX_CHAT_WIRE_RECORD_STREAM   'S'
#define NGX_CHAT_WIRE_RECORD_END      'E'

/* hash, field <partition>, value the <last> of the newest section
 * published to the node: the chain's head, for the node's audit */
#define NGX_CHAT_WIRE_KEY_CHAIN       "chat:chain:"

/* a list of the pieces of one streamed answer; it expires unread */
#define NGX_CHAT_WIRE_KEY_STREAM      "chat:stream:"
#define NGX_CHAT_WIRE_STREAM_TTL      120       /* seconds */
#define NGX_CHAT_WIRE_STREAM_PIECE    65536     /* bytes a piece at most */

typedef struct {
    int           type;
    const char   *args;
    size_t        args_len;
    const char   *body;
    size_t        body_len;
} ngx_chat_wire_record_t;

/*
 * The next record of a payload at *pos (up to end): 1 and *pos past it, 0
 * at the end of the payload, -1 when what follows is not a record (nothing
 * after it can be trusted either).
 */
int ngx_chat_wire_record_next(const char **pos, const char *end,
    ngx_chat_wire_record_t *rec);

/*
 * The next session id of a record's sid list at *pos (up to end): 1 with
 * the sid (NGX_CHAT_WIRE_SID_LEN bytes), 0 at the end, -1 when the list is
 * malformed.
 */
int ngx_chat_wire_sids_next(const char **pos, const char *end,
    const char **sid);

/* an A record's arguments: the time and the one sid */
int ngx_chat_wire_ack_parse(const char *args, size_t len, int64_t *ms,
    const char **sid);

/* an A record's header; returns the end of what was written */
#define NGX_CHAT_WIRE_ACK_HEADER_MAX  (2 + 21 + NGX_CHAT_WIRE_SID_LEN + 22)

char *ngx_chat_wire_ack_header(char *p, int64_t ms, const char *sid,
    size_t body_len);

/* the three numbers of a P or R record's arguments */
typedef struct {
    int32_t       partition;
    int64_t       from;           /* P: prev (-1: none), R: after */
    int64_t       to;             /* P: last, R: upto */
} ngx_chat_wire_range_t;

int ngx_chat_wire_range_parse(const char *args, size_t len,
    ngx_chat_wire_range_t *range);

/* a P or R record's header for a body of body_len bytes; returns the end */
#define NGX_CHAT_WIRE_RANGE_HEADER_MAX  (2 + 11 + 21 + 21 + 21 + 1)

char *ngx_chat_wire_range_header(char *p, int type,
    const ngx_chat_wire_range_t *range, size_t body_len);

/* the room a record header takes: type, sids, length, newline */
size_t ngx_chat_wire_record_header_size(size_t nsids, size_t body_len);

/*
 * Writes the header of a record for nsids sessions (each
 * NGX_CHAT_WIRE_SID_LEN bytes) and a body of body_len bytes, which the
 * caller appends. Returns the end of what was written.
 */
char *ngx_chat_wire_record_header(char *p, int type,
    const char *const *sids, size_t nsids, size_t body_len);


#endif /* _NGX_CHAT_WIRE_H_INCLUDED_ */
