
/*
 * libFuzzer target: the client protocol (ngx_chat_proto_handle), as the
 * session code drives it.
 *
 * The input is one client text frame (bytes that are not UTF-8, which the
 * frame layer would have refused with 1007, go to the general path
 * alone).  The peer is fixed (its user id is
 * picked by the input length, from a short to a 64-character one); its
 * strings lie in exact-size heap buffers without a terminating NUL, so
 * ASan sees any read past their lengths.  Checked for every frame:
 *   - exactly one of reply, record, presence and auth token (an answer, a
 *     Kafka record, a token for the session to check, or a presence
 *     request for nginx and Redis: its user ids a
 *     deduplicated array of valid ids, or its status online or away);
 *   - lengths match, both are JSON objects; a reply has a type (an error
 *     a code, a message and the frame's tag); a record has op, the peer's
 *     sid, node, user, dev and ts, and the Kafka key the README names;
 *   - the typing flags only on a typing record;
 *   - ngx_chat_proto_record_failed() turns the record back into an
 *     "unavailable" error for the peer's session;
 *   - ngx_chat_proto_set_retry_error() (rate limiting) replaces both by
 *     an error frame;
 *   - ngx_chat_proto_result_free() frees all (LeakSanitizer checks).
 * The frame is also given to ngx_chat_proto_record_failed() as a record,
 * and a frame the send fast path takes must come out of the general path
 * (jansson) the same: record, Kafka key and tag.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_chat_frame.h"
#include "ngx_chat_jwt.h"
#include "ngx_chat_proto.h"


#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_proto: %s:%d: assertion failed: %s\n",      \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


#define NOW_MS  1700000000123LL

static const char  *users[] = {
    "alice",
    "b",
    "zed.user@example-1",
    "u123456789012345678901234567890123456789012345678901234567890123"
};

static const char  sid[] = "0123456789abcdef";


/* an exact-size heap copy, no NUL */

static char *
dup_exact(const char *s, size_t n)
{
    char  *p;

    p = malloc(n ? n : 1);
    FUZZ_ASSERT(p != NULL);
    memcpy(p, s, n);

    return p;
}


static json_t *
load_object(const char *s, size_t len)
{
    json_t  *v;

    FUZZ_ASSERT(s != NULL);
    FUZZ_ASSERT(strlen(s) == len);

    v = json_loadb(s, len, 0, NULL);
    FUZZ_ASSERT(v != NULL);
    FUZZ_ASSERT(json_is_object(v));

    return v;
}


static int
str_is(json_t *v, const char *s, size_t n)
{
    return json_is_string(v) && json_string_length(v) == n
           && memcmp(json_string_value(v), s, n) == 0;
}


static void
check_error_frame(const char *frame, size_t len, const char *tag_name,
    json_t *tag_value, const char *code)
{
    json_t  *r;

    r = load_object(frame, len);

    FUZZ_ASSERT(str_is(json_object_get(r, "type"), "error", 5));
    FUZZ_ASSERT(json_is_string(json_object_get(r, "code")));
    FUZZ_ASSERT(json_is_string(json_object_get(r, "message")));

    if (code) {
        FUZZ_ASSERT(str_is(json_object_get(r, "code"), code, strlen(code)));
    }

    if (tag_name) {
        FUZZ_ASSERT(json_equal(json_object_get(r, tag_name), tag_value));
    }

    json_decref(r);
}


static void
check_reply(ngx_chat_proto_result_t *res)
{
    json_t      *r, *type;
    const char  *t;

    r = load_object(res->reply, res->reply_len);

    type = json_object_get(r, "type");
    FUZZ_ASSERT(json_is_string(type));
    t = json_string_value(type);

    if (res->tag_name) {
        FUZZ_ASSERT(strcmp(res->tag_name, "req_id") == 0
                    || strcmp(res->tag_name, "client_msg_id") == 0);
        FUZZ_ASSERT(res->tag_value != NULL);

    } else {
        FUZZ_ASSERT(res->tag_value == NULL);
    }

    if (strcmp(t, "error") == 0) {
        check_error_frame(res->reply, res->reply_len, res->tag_name,
                          res->tag_value, NULL);

    } else {
        FUZZ_ASSERT(strcmp(t, "pong") == 0);
    }

    json_decref(r);
}


static void
check_record(ngx_chat_proto_result_t *res, const ngx_chat_proto_peer_t *peer)
{
    int          rc;
    char         s[64];
    char        *frame;
    size_t       frame_len;
    json_t      *r, *op, *conv;
    const char  *o;

    r = load_object(res->record, res->record_len);

    op = json_object_get(r, "op");
    FUZZ_ASSERT(json_is_string(op));
    o = json_string_value(op);

    FUZZ_ASSERT(str_is(json_object_get(r, "sid"), peer->sid, 16));
    FUZZ_ASSERT(str_is(json_object_get(r, "node"), peer->node,
                       peer->node_len));
    FUZZ_ASSERT(str_is(json_object_get(r, "user"), peer->user,
                       peer->user_len));
    FUZZ_ASSERT(str_is(json_object_get(r, "dev"), peer->device,
                       peer->device_len));
    FUZZ_ASSERT(json_is_integer(json_object_get(r, "ts")));
    FUZZ_ASSERT(json_integer_value(json_object_get(r, "ts")) == NOW_MS);

    /* the Kafka key: the user for reads, the conversation otherwise */

    FUZZ_ASSERT(res->key_len > 0 && res->key_len < NGX_CHAT_PROTO_KEY_MAX);
    FUZZ_ASSERT(strlen(res->key) == res->key_len);

    if (strcmp(o, "sync") == 0 || strcmp(o, "history") == 0) {
        FUZZ_ASSERT(res->key_len == peer->user_len
                    && memcmp(res->key, peer->user, peer->user_len) == 0);

    } else {
        FUZZ_ASSERT(strcmp(o, "send") == 0
                    || strcmp(o, "create_group") == 0
                    || strcmp(o, "add_members") == 0
                    || strcmp(o, "remove_members") == 0
                    || strcmp(o, "receipt") == 0
                    || strcmp(o, "typing") == 0);

        conv = json_object_get(r, "conv");
        FUZZ_ASSERT(str_is(conv, res->key, res->key_len));
        FUZZ_ASSERT(json_string_length(conv) <= NGX_CHAT_PROTO_KEY_MAX);
    }

    if (strcmp(o, "typing") == 0) {
        FUZZ_ASSERT(res->typing_start + res->typing_stop == 1);

    } else {
        FUZZ_ASSERT(!res->typing_start && !res->typing_stop);
    }

    /* Kafka refused it: the error goes back to this session */

    frame = NULL;
    rc = ngx_chat_proto_record_failed(res->record, res->record_len, 0,
                                      s, sizeof(s), &frame, &frame_len);
    FUZZ_ASSERT(rc == 0);
    FUZZ_ASSERT(strlen(s) == 16 && memcmp(s, peer->sid, 16) == 0);
    check_error_frame(frame, frame_len, NULL, NULL, "unavailable");
    free(frame);

    json_decref(r);
}


static void
check_presence(ngx_chat_proto_result_t *res)
{
    size_t   i, j, n;
    json_t  *ids, *id;

    switch (res->presence) {

    case NGX_CHAT_PROTO_PRESENCE_SUBSCRIBE:
    case NGX_CHAT_PROTO_PRESENCE_UNSUBSCRIBE:
        ids = res->presence_ids;
        FUZZ_ASSERT(json_is_array(ids));
        n = json_array_size(ids);
        FUZZ_ASSERT(n <= NGX_CHAT_WIRE_USER_IDS_MAX);

        for (i = 0; i < n; i++) {
            id = json_array_get(ids, i);
            FUZZ_ASSERT(json_is_string(id));
            FUZZ_ASSERT(ngx_chat_wire_valid_id((const char *) json_string_value(id),
                                          json_string_length(id)));

            for (j = 0; j < i; j++) {
                FUZZ_ASSERT(!json_equal(json_array_get(ids, j), id));
            }
        }

        break;

    case NGX_CHAT_PROTO_PRESENCE_SET:
        FUZZ_ASSERT(res->presence_status != NULL);
        FUZZ_ASSERT(strcmp(res->presence_status, "online") == 0
                    || strcmp(res->presence_status, "away") == 0);
        break;

    default:
        FUZZ_ASSERT(0 && "unknown presence request");
    }
}


/* the send fast path gives what the general path gives, or declines */

static void
check_fast_path(const ngx_chat_proto_peer_t *peer, const char *text,
    size_t size)
{
    json_t                   *a, *b;
    ngx_chat_proto_result_t   rf, rd;

    memset(&rf, 0, sizeof(rf));

    if (!ngx_chat_proto_send_fast(peer, text, size, &rf)) {
        return;
    }

    ngx_chat_proto_handle_dom(peer, text, size, &rd);

    FUZZ_ASSERT(rd.record != NULL && rd.reply == NULL);
    a = json_loadb(rf.record, rf.record_len, 0, NULL);
    b = json_loadb(rd.record, rd.record_len, 0, NULL);
    FUZZ_ASSERT(a != NULL && b != NULL && json_equal(a, b));
    FUZZ_ASSERT(rf.key_len == rd.key_len
                && memcmp(rf.key, rd.key, rf.key_len) == 0);
    FUZZ_ASSERT(rd.tag_name != NULL && strcmp(rf.tag_name, rd.tag_name) == 0
                && json_equal(rf.tag_value, rd.tag_value));

    json_decref(a);
    json_decref(b);
    ngx_chat_proto_result_free(&rf);
    ngx_chat_proto_result_free(&rd);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       rc;
    char                     *text, *frame;
    char                      s[17];
    size_t                    frame_len;
    const char               *user;
    ngx_chat_proto_peer_t     peer;
    ngx_chat_proto_result_t   res;

    user = users[size % (sizeof(users) / sizeof(users[0]))];

    peer.user_len = strlen(user);
    peer.user = dup_exact(user, peer.user_len);
    peer.device_len = 5;
    peer.device = dup_exact("phone", 5);
    peer.node_len = 4;
    peer.node = dup_exact("s1:0", 4);
    peer.sid = dup_exact(sid, 16);
    peer.now_ms = NOW_MS;
    peer.media = NULL;
    peer.edit_window_ms = 900000;

    text = dup_exact((const char *) data, size);

    /* as the session drives it: text frames, whose UTF-8 the frame layer
     * checked; other bytes still go through the general path, which must
     * refuse them cleanly */
    if (ngx_chat_utf8_valid((const unsigned char *) text, size)) {
        ngx_chat_proto_handle(&peer, text, size, &res);
        check_fast_path(&peer, text, size);

    } else {
        ngx_chat_proto_handle_dom(&peer, text, size, &res);
    }

    FUZZ_ASSERT((res.reply != NULL) + (res.record != NULL)
                + (res.presence != 0) + (res.auth_token != NULL) == 1);

    if (res.auth_token) {
        FUZZ_ASSERT(res.auth_token_len == strlen(res.auth_token)
                    && res.auth_token_len > 0);
        FUZZ_ASSERT(res.tag_name && strcmp(res.tag_name, "req_id") == 0);
        ngx_chat_proto_set_auth_ok(&res, 1714128000123);
        FUZZ_ASSERT(res.reply != NULL);
        free(res.auth_token);
        res.auth_token = NULL;
    }

    if (res.reply) {
        check_reply(&res);
        FUZZ_ASSERT(!res.typing_start && !res.typing_stop);
    }

    if (res.record) {
        check_record(&res, &peer);
    }

    if (res.presence) {
        check_presence(&res);
        FUZZ_ASSERT(!res.typing_start && !res.typing_stop);
    }

    /* rate limited (the session does this to any result) */

    if (size & 1) {
        ngx_chat_proto_set_retry_error(&res, "rate_limited",
                                       "too many frames: retry later",
                                       (int64_t) size);
        FUZZ_ASSERT(res.record == NULL && res.record_len == 0);
        FUZZ_ASSERT(res.presence == 0 && res.auth_token == NULL);
        FUZZ_ASSERT(res.reply != NULL);
        check_error_frame(res.reply, res.reply_len, res.tag_name,
                          res.tag_value, "rate_limited");
    }

    ngx_chat_proto_result_free(&res);
    FUZZ_ASSERT(res.reply == NULL && res.record == NULL
                && res.tag_value == NULL);

    /* the frame as a record Kafka gave back */

    frame = NULL;
    rc = ngx_chat_proto_record_failed(text, size, size & 1, s, sizeof(s),
                                      &frame, &frame_len);
    FUZZ_ASSERT(rc == 0 || rc == -1);

    if (rc == 0) {
        FUZZ_ASSERT(strlen(s) < sizeof(s));
        check_error_frame(frame, frame_len, NULL, NULL, "unavailable");
        free(frame);
    }

    free(text);
    free((char *) peer.user);
    free((char *) peer.device);
    free((char *) peer.node);
    free((char *) peer.sid);

    return 0;
}
