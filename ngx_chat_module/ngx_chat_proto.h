
/*
 * The client protocol (../shared/PROTOCOL.md) as pure C: one text frame in,
 * at most one reply frame and one Kafka record out. No nginx types, so the
 * unit tests run it without a server.
 */


#ifndef _NGX_CHAT_PROTO_H_INCLUDED_
#define _NGX_CHAT_PROTO_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_chat_wire.h"


/* a Kafka key: a conversation id or a user id, NUL-terminated */
#define NGX_CHAT_PROTO_KEY_MAX       (NGX_CHAT_WIRE_CONV_MAX + 1)


#define NGX_CHAT_PROTO_PRESENCE_SUBSCRIBE    1
#define NGX_CHAT_PROTO_PRESENCE_UNSUBSCRIBE  2
#define NGX_CHAT_PROTO_PRESENCE_SET          3


/* who is speaking: the fields every Kafka record carries */
typedef ngx_chat_wire_peer_t  ngx_chat_proto_peer_t;


typedef struct ngx_chat_proto_result_s {
    char         *reply;          /* a frame for the client, or NULL */
    size_t        reply_len;
    char         *record;         /* a record for Kafka, or NULL */
    size_t        record_len;
    char          key[NGX_CHAT_PROTO_KEY_MAX];
    size_t        key_len;
    unsigned      typing_start:1;   /* the record is a typing "start" */
    unsigned      typing_stop:1;    /* ... or a "stop" */
    unsigned      is_send:1;        /* ... or a send */

    /* the code of the error in reply, or NULL (static) */
    const char   *error;

    /* presence requests are served by nginx and Redis, not by Kafka */
    int           presence;         /* NGX_CHAT_PROTO_PRESENCE_* or 0 */
    void         *presence_ids;     /* json_t * array of user ids, owned */
    const char   *presence_status;  /* "online" or "away", static */

    /* an "auth": the new token (malloc'ed), for the session to check */
    char         *auth_token;
    size_t        auth_token_len;

    /* what an error answer must be tagged with */
    const char   *tag_name;       /* "req_id", "client_msg_id" or NULL */
    void         *tag_value;      /* json_t *, owned */
} ngx_chat_proto_result_t;


/* text: a text frame's payload, valid UTF-8 (the frame layer checked it) */
void ngx_chat_proto_handle(const ngx_chat_proto_peer_t *peer,
    const char *text, size_t len, ngx_chat_proto_result_t *res);

/* replaces the record and any reply by an error frame with the same tag */
void ngx_chat_proto_set_error(ngx_chat_proto_result_t *res, const char *code,
    const char *message);

/* the same, with "retry_after_ms" when retry_after_ms >= 0 */
void ngx_chat_proto_set_retry_error(ngx_chat_proto_result_t *res,
    const char *code, const char *message, int64_t retry_after_ms);

void ngx_chat_proto_result_free(ngx_chat_proto_result_t *res);

/* the answer to a good "auth": auth_ok, tagged, expiring at expires_ms */
void ngx_chat_proto_set_auth_ok(ngx_chat_proto_result_t *res,
    int64_t expires_ms);

/* the additions of the contract's second part this server has, for hello */
#define NGX_CHAT_PROTO_FEATURES                                           \
    "[\"auth\",\"reconnect\",\"conversations\",\"receipts\","      \
    "\"set_role\",\"push_register\",\"push_unregister\",\"upload\","  \
    "\"edit\",\"delete\",\"react\",\"block\",\"unblock\",\"search\"]"

/* the general path alone, through a jansson DOM (the tests compare it
 * with the fast path) */
void ngx_chat_proto_handle_dom(const ngx_chat_proto_peer_t *peer,
    const char *text, size_t len, ngx_chat_proto_result_t *res);

/* the common send frame without a DOM (ngx_chat_send.c): 1 when it was
 * handled, with the very result the general path gives; 0 when the
 * general path must run (anything unusual, every error included) */
int ngx_chat_proto_send_fast(const ngx_chat_proto_peer_t *peer,
    const char *text, size_t len, ngx_chat_proto_result_t *res);


/*
 * For a record Kafka could not take: the session it came from and the
 * error frame that answers it (malloc()ed): "unavailable" when nothing was
 * stored, "timeout" when Kafka may have it (maybe_stored: a retry with the
 * same client_msg_id is deduplicated). -1 if the record is not one of
 * ours.
 */
int ngx_chat_proto_record_failed(const char *record, size_t len,
    int maybe_stored, char *sid, size_t sid_size, char **frame,
    size_t *frame_len);


#endif /* _NGX_CHAT_PROTO_H_INCLUDED_ */
