
/*
 * The client protocol, inbound: checks every field of a client frame
 * against the contract and turns it into an answer (pong, error) or into a
 * Kafka record for the workers (send, sync, history). The workers check
 * what needs the store (membership, existence); everything else is
 * decided here, before a byte goes to Kafka.
 */


#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_chat_proto.h"
#include "ngx_chat_jwt.h"
#include "ngx_chat_media_sign.h"

#include <openssl/rand.h>


typedef struct {
    const ngx_chat_proto_peer_t  *peer;
    json_t                       *frame;
    json_t                       *record;
    json_t                       *conversation_id;   /* of the frame */
    ngx_chat_proto_result_t      *res;
} ngx_chat_proto_ctx_t;


typedef int (*ngx_chat_proto_handler_pt)(ngx_chat_proto_ctx_t *ctx);

typedef struct {
    const char                   *type;
    const char                   *tag;
    /* requests whose answer is matched by req_id cannot go without one */
    int                           tag_required;
    ngx_chat_proto_handler_pt     handler;
} ngx_chat_proto_type_t;


static int ngx_chat_proto_ping(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_send(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_sync(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_change(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_block(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_search(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_history(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_conversations(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_receipts(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_create_group(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_members(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_set_role(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_receipt(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_typing(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_presence(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_presence_set(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_auth(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_push_register(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_push_unregister(ngx_chat_proto_ctx_t *ctx);
static int ngx_chat_proto_upload(ngx_chat_proto_ctx_t *ctx);
static json_t *ngx_chat_proto_user_ids(ngx_chat_proto_ctx_t *ctx,
    json_t *list, const char *field, int drop_self);
static int ngx_chat_proto_fail(ngx_chat_proto_ctx_t *ctx, const char *code,
    const char *message);
static int ngx_chat_proto_conversation(ngx_chat_proto_ctx_t *ctx,
    json_t *value, char *conv, size_t *conv_len);
static int ngx_chat_proto_record(ngx_chat_proto_ctx_t *ctx,
    ngx_chat_wire_op_t op, const char *key, size_t key_len);
static int ngx_chat_proto_seq(json_t *value, int64_t *seq);
static int ngx_chat_proto_message_id(json_t *value, int64_t *id);
static int ngx_chat_proto_too_deep(const char *text, size_t len);


static const ngx_chat_proto_type_t  ngx_chat_proto_types[] = {
    { "ping", "req_id", 0, ngx_chat_proto_ping },
    { "send", "client_msg_id", 0, ngx_chat_proto_send },
    { "edit", "client_msg_id", 0, ngx_chat_proto_change },
    { "delete", "client_msg_id", 0, ngx_chat_proto_change },
    { "react", "client_msg_id", 0, ngx_chat_proto_change },
    { "block", "req_id", 1, ngx_chat_proto_block },
    { "unblock", "req_id", 1, ngx_chat_proto_block },
    { "search", "req_id", 1, ngx_chat_proto_search },
    { "sync", "req_id", 1, ngx_chat_proto_sync },
    { "history", "req_id", 1, ngx_chat_proto_history },
    { "conversations", "req_id", 1, ngx_chat_proto_conversations },
    { "receipts", "req_id", 1, ngx_chat_proto_receipts },
    { "receipt", "req_id", 0, ngx_chat_proto_receipt },
    { "typing", "req_id", 0, ngx_chat_proto_typing },
    { "presence_subscribe", "req_id", 0, ngx_chat_proto_presence },
    { "presence_unsubscribe", "req_id", 0, ngx_chat_proto_presence },
    { "presence_set", "req_id", 0, ngx_chat_proto_presence_set },
    { "create_group", "req_id", 1, ngx_chat_proto_create_group },
    { "add_members", "req_id", 1, ngx_chat_proto_members },
    { "remove_members", "req_id", 1, ngx_chat_proto_members },
    { "set_role", "req_id", 1, ngx_chat_proto_set_role },
    { "auth", "req_id", 1, ngx_chat_proto_auth },
    { "push_register", "req_id", 1, ngx_chat_proto_push_register },
    { "push_unregister", "req_id", 1, ngx_chat_proto_push_unregister },
    { "upload", "req_id", 1, ngx_chat_proto_upload },
    { NULL, NULL, 0, NULL }
};


void
ngx_chat_proto_handle(const ngx_chat_proto_peer_t *peer, const char *text,
    size_t len, ngx_chat_proto_result_t *res)
{
    memset(res, 0, sizeof(ngx_chat_proto_result_t));

    if (ngx_chat_proto_send_fast(peer, text, len, res)) {
        return;
    }

    ngx_chat_proto_handle_dom(peer, text, len, res);
}


void
ngx_chat_proto_handle_dom(const ngx_chat_proto_peer_t *peer, const char *text,
    size_t len, ngx_chat_proto_result_t *res)
{
    json_t                       *type, *tag;
    const char                   *name;
    int                           overflow;
    json_error_t                  error;
    ngx_chat_proto_ctx_t          ctx;
    const ngx_chat_proto_type_t  *t;

    memset(res, 0, sizeof(ngx_chat_proto_result_t));

    ctx.peer = peer;
    ctx.res = res;
    ctx.record = NULL;

    if (ngx_chat_proto_too_deep(text, len)) {
        ngx_chat_proto_fail(&ctx, "too_large",
                            "JSON nested deeper than 16 levels");
        return;
    }

    overflow = 0;
    ctx.frame = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);

    if (ctx.frame == NULL
        && json_error_code(&error) == json_error_numeric_overflow)
    {
        /* read it once more, only to tag the error with its req_id */
        overflow = 1;
        ctx.frame = json_loadb(text, len,
                               JSON_REJECT_DUPLICATES
                               | JSON_DECODE_INT_AS_REAL, NULL);
    }

    if (ctx.frame == NULL) {
        ngx_chat_proto_fail(&ctx, "bad_request", "frame is not valid JSON");
        return;
    }

    if (!json_is_object(ctx.frame)) {
        ngx_chat_proto_fail(&ctx, "bad_request",
                            "frame is not a JSON object");
        goto done;
    }

    type = json_object_get(ctx.frame, "type");
    name = json_string_value(type);

    for (t = ngx_chat_proto_types; t->type; t++) {
        if (name && strcmp(name, t->type) == 0) {
            break;
        }
    }

    /* the tag comes first: even a bad frame's error carries it */

    res->tag_name = t->tag ? t->tag : "req_id";
    tag = json_object_get(ctx.frame, res->tag_name);

    if (tag == NULL && t->tag && strcmp(t->tag, "req_id") != 0) {
        res->tag_name = "req_id";
        tag = json_object_get(ctx.frame, "req_id");
    }

    /* range first: casting a double beyond int64 is undefined behaviour */
    if (tag && overflow && json_is_real(tag)
        && json_real_value(tag) < 9007199254740992.0
        && json_real_value(tag) > -9007199254740992.0
        && json_real_value(tag) == (double) (int64_t) json_real_value(tag))
    {
        /* read as a real above: an integer tag is an integer again */
        tag = json_integer((json_int_t) json_real_value(tag));
        res->tag_value = tag;

    } else if (tag) {
        /* any JSON value is echoed; the message limit bounds its size */
        res->tag_value = json_incref(tag);

    } else {
        res->tag_name = NULL;
    }

    if (overflow) {
        ngx_chat_proto_fail(&ctx, "bad_request",
                            "a number is beyond 64-bit integers");
        goto done;
    }

    if (name == NULL) {
        ngx_chat_proto_fail(&ctx, "bad_request",
                            type ? "\"type\" must be a string"
                                 : "\"type\" is missing");
        goto done;
    }

    if (t->type == NULL) {
        ngx_chat_proto_fail(&ctx, "bad_request", "unknown type");
        goto done;
    }

    if (t->tag_required && tag == NULL) {
        ngx_chat_proto_fail(&ctx, "bad_request", "\"req_id\" is missing");
        goto done;
    }

    ctx.conversation_id = json_object_get(ctx.frame, "conversation_id");

    (void) t->handler(&ctx);

done:

    json_decref(ctx.frame);
    json_decref(ctx.record);
}


static int
ngx_chat_proto_ping(ngx_chat_proto_ctx_t *ctx)
{
    json_t  *pong;

    pong = json_pack("{s:s}", "type", "pong");
    if (pong == NULL) {
        return ngx_chat_proto_fail(ctx, "internal", "out of memory");
    }

    if (ctx->res->tag_name) {
        json_object_set(pong, ctx->res->tag_name, ctx->res->tag_value);
    }

    ctx->res->reply = json_dumps(pong, JSON_COMPACT);
    json_decref(pong);

    if (ctx->res->reply == NULL) {
        return ngx_chat_proto_fail(ctx, "internal", "out of memory");
    }

    ctx->res->reply_len = strlen(ctx->res->reply);

    return 0;
}


static int
ngx_chat_proto_send(ngx_chat_proto_ctx_t *ctx)
{
    char         conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t       conv_len, i, k;
    int64_t      reply_to;
    json_t      *cmid, *body, *to, *cid, *att, *id, *reply;

    cmid = json_object_get(ctx->frame, "client_msg_id");
    body = json_object_get(ctx->frame, "body");
    to = json_object_get(ctx->frame, "to");
    cid = json_object_get(ctx->frame, "conversation_id");
    att = json_object_get(ctx->frame, "attachments");

    if (!json_is_string(cmid) || json_string_length(cmid) == 0) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"client_msg_id\" must be a non-empty "
                                   "string");
    }

    if (ngx_chat_wire_chars(json_string_value(cmid),
                             json_string_length(cmid))
        > NGX_CHAT_WIRE_CMID_MAX)
    {
        return ngx_chat_proto_fail(ctx, "too_large",
                                   "\"client_msg_id\" is over 64 "
                                   "characters");
    }

    /* attachments: distinct upload ids; with them the body may be empty */
    if (att) {
        if (!json_is_array(att) || json_array_size(att) == 0) {
            return ngx_chat_proto_fail(ctx, "bad_request",
                                       "\"attachments\" must be a list of "
                                       "attachment ids");
        }

        if (json_array_size(att) > NGX_CHAT_WIRE_ATTACHMENTS_MAX) {
            return ngx_chat_proto_fail(ctx, "too_large",
                                       "more than 10 attachments");
        }

        for (i = 0; i < json_array_size(att); i++) {
            id = json_array_get(att, i);

            if (!json_is_string(id)
                || !ngx_chat_media_valid_id(json_string_value(id),
                                            json_string_length(id)))
            {
                return ngx_chat_proto_fail(ctx, "bad_request",
                                           "\"attachments\" must be a list "
                                           "of attachment ids");
            }

            for (k = 0; k < i; k++) {
                if (json_equal(id, json_array_get(att, k))) {
                    return ngx_chat_proto_fail(ctx, "bad_request",
                                               "an attachment is named "
                                               "twice");
                }
            }
        }

        if (body && !json_is_string(body)) {
            return ngx_chat_proto_fail(ctx, "bad_request",
                                       "\"body\" must be a string");
        }

    } else if (!json_is_string(body) || json_string_length(body) == 0) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"body\" must be a non-empty string");
    }

    if ((to == NULL) == (cid == NULL)) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "give exactly one of \"to\" and "
                                   "\"conversation_id\"");
    }

    if (to) {
        if (!json_is_string(to)
            || !ngx_chat_wire_valid_id((const char *) json_string_value(to),
                                  json_string_length(to)))
        {
            return ngx_chat_proto_fail(ctx, "bad_request",
                                       "\"to\" must be a user id");
        }

        conv_len = ngx_chat_wire_direct_id(conv, ctx->peer->user,
                                           ctx->peer->user_len,
                                           json_string_value(to),
                                           json_string_length(to));

    } else if (ngx_chat_proto_conversation(ctx, cid, conv, &conv_len) != 0) {
        return -1;
    }

    reply = json_object_get(ctx->frame, "reply_to");

    if (reply && !json_is_null(reply)
        && !ngx_chat_proto_message_id(reply, &reply_to))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"reply_to\" must be a message id");
    }

    ctx->record = json_pack("{s:s#,s:O,s:o}",
                            NGX_CHAT_WIRE_F_CONV, conv, conv_len,
                            NGX_CHAT_WIRE_F_CMID, cmid,
                            NGX_CHAT_WIRE_F_BODY,
                            body ? json_incref(body) : json_string(""));

    if (ctx->record && att) {
        json_object_set(ctx->record, NGX_CHAT_WIRE_F_ATTACHMENTS, att);
    }

    if (ctx->record && reply && !json_is_null(reply)) {
        json_object_set(ctx->record, NGX_CHAT_WIRE_F_REPLY_TO, reply);
    }

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_SEND, conv, conv_len);
}


/* a message id as the client names it: a string of digits */
static int
ngx_chat_proto_message_id(json_t *value, int64_t *id)
{
    return json_is_string(value)
           && ngx_chat_wire_message_id(json_string_value(value),
                                       json_string_length(value), id);
}


/* block, unblock: another user, keyed by the user like its reads */
static int
ngx_chat_proto_block(ngx_chat_proto_ctx_t *ctx)
{
    json_t      *other;
    const char  *type;
    int          op;

    other = json_object_get(ctx->frame, "user_id");

    if (!json_is_string(other)
        || !ngx_chat_wire_valid_id(json_string_value(other),
                                   json_string_length(other)))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"user_id\" must be a user id");
    }

    if (json_string_length(other) == ctx->peer->user_len
        && memcmp(json_string_value(other), ctx->peer->user,
                  ctx->peer->user_len) == 0)
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "a user cannot block itself");
    }

    type = json_string_value(json_object_get(ctx->frame, "type"));
    op = ngx_chat_wire_op_find(type, strlen(type));

    ctx->record = json_pack("{s:O}", NGX_CHAT_WIRE_F_OTHER, other);

    return ngx_chat_proto_record(ctx, (ngx_chat_wire_op_t) op,
                                 ctx->peer->user, ctx->peer->user_len);
}


/* search: the query, maybe one conversation, a page */
static int
ngx_chat_proto_search(ngx_chat_proto_ctx_t *ctx)
{
    char         conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t       conv_len, chars;
    int64_t      n, before_id;
    json_t      *query, *before, *limit;

    query = json_object_get(ctx->frame, "query");
    before = json_object_get(ctx->frame, "before_id");
    limit = json_object_get(ctx->frame, "limit");

    if (!json_is_string(query)) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"query\" must be a string");
    }

    chars = ngx_chat_wire_chars(json_string_value(query),
                                json_string_length(query));

    if (chars == 0 || chars > NGX_CHAT_WIRE_QUERY_MAX
        || memchr(json_string_value(query), '\0', json_string_length(query))
           != NULL)
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"query\" must be 1-256 characters");
    }

    if (before && !json_is_null(before)
        && !ngx_chat_proto_message_id(before, &before_id))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"before_id\" must be a message id");
    }

    n = NGX_CHAT_WIRE_SEARCH_LIMIT;

    if (limit && (ngx_chat_proto_seq(limit, &n) != 0
                  || n < 1 || n > NGX_CHAT_WIRE_SEARCH_MAX))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"limit\" must be an integer from 1 "
                                   "to 50");
    }

    ctx->record = json_pack("{s:O,s:I}", NGX_CHAT_WIRE_F_QUERY, query,
                            NGX_CHAT_WIRE_F_LIMIT, (json_int_t) n);

    if (ctx->record && ctx->conversation_id
        && !json_is_null(ctx->conversation_id))
    {
        if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                        &conv_len)
            != 0)
        {
            return -1;
        }

        json_object_set_new(ctx->record, NGX_CHAT_WIRE_F_CONV,
                            json_stringn(conv, conv_len));
    }

    if (ctx->record && before && !json_is_null(before)) {
        json_object_set(ctx->record, NGX_CHAT_WIRE_F_BEFORE_MID, before);
    }

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_SEARCH,
                                 ctx->peer->user, ctx->peer->user_len);
}


/*
 * edit, delete, react: a change to a message of the conversation, tagged
 * and deduplicated by client_msg_id like a send and keyed by the
 * conversation, so that it comes after the message it changes. The worker
 * decides who may change what; an edit carries this location's window.
 */

static int
ngx_chat_proto_change(ngx_chat_proto_ctx_t *ctx)
{
    char                 conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t               conv_len;
    int64_t              target;
    json_t              *cmid, *mid, *body, *emoji;
    const char          *type;
    ngx_chat_wire_op_t   op;

    type = json_string_value(json_object_get(ctx->frame, "type"));
    op = (ngx_chat_wire_op_t) ngx_chat_wire_op_find(type, strlen(type));

    cmid = json_object_get(ctx->frame, "client_msg_id");

    if (!json_is_string(cmid) || json_string_length(cmid) == 0) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"client_msg_id\" must be a non-empty "
                                   "string");
    }

    if (ngx_chat_wire_chars(json_string_value(cmid),
                             json_string_length(cmid))
        > NGX_CHAT_WIRE_CMID_MAX)
    {
        return ngx_chat_proto_fail(ctx, "too_large",
                                   "\"client_msg_id\" is over 64 "
                                   "characters");
    }

    if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                    &conv_len)
        != 0)
    {
        return -1;
    }

    mid = json_object_get(ctx->frame, "message_id");

    if (!ngx_chat_proto_message_id(mid, &target)) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"message_id\" must be a message id");
    }

    ctx->record = json_pack("{s:s#,s:O,s:O}",
                            NGX_CHAT_WIRE_F_CONV, conv, conv_len,
                            NGX_CHAT_WIRE_F_CMID, cmid,
                            NGX_CHAT_WIRE_F_TARGET, mid);
    if (ctx->record == NULL) {
        return ngx_chat_proto_fail(ctx, "internal", "out of memory");
    }

    switch (op) {

    case NGX_CHAT_WIRE_OP_EDIT:
        body = json_object_get(ctx->frame, "body");

        if (!json_is_string(body) || json_string_length(body) == 0) {
            return ngx_chat_proto_fail(ctx, "bad_request",
                                       "\"body\" must be a non-empty "
                                       "string");
        }

        json_object_set(ctx->record, NGX_CHAT_WIRE_F_BODY, body);
        json_object_set_new(ctx->record, NGX_CHAT_WIRE_F_WINDOW,
                            json_integer(ctx->peer->edit_window_ms));
        break;

    case NGX_CHAT_WIRE_OP_REACT:
        emoji = json_object_get(ctx->frame, "emoji");

        if (emoji == NULL
            || (!json_is_null(emoji)
                && (!json_is_string(emoji)
                    || json_string_length(emoji) == 0
                    || json_string_length(emoji) > NGX_CHAT_WIRE_EMOJI_MAX
                    || memchr(json_string_value(emoji), '\0',
                              json_string_length(emoji)) != NULL)))
        {
            return ngx_chat_proto_fail(ctx, "bad_request",
                                       "\"emoji\" must be 1-32 bytes of "
                                       "UTF-8, or null");
        }

        json_object_set(ctx->record, NGX_CHAT_WIRE_F_EMOJI, emoji);
        break;

    default:
        break;
    }

    return ngx_chat_proto_record(ctx, op, conv, conv_len);
}


static int
ngx_chat_proto_sync(ngx_chat_proto_ctx_t *ctx)
{
    json_t      *cursors, *value;
    const char  *conv;
    int64_t      seq;

    cursors = json_object_get(ctx->frame, "cursors");

    if (cursors && !json_is_null(cursors)) {
        if (!json_is_object(cursors)) {
            return ngx_chat_proto_fail(ctx, "bad_request",
                                       "\"cursors\" must be an object");
        }

        if (json_object_size(cursors) > NGX_CHAT_WIRE_CURSORS_MAX) {
            return ngx_chat_proto_fail(ctx, "too_large",
                                       "more than 10000 cursors");
        }

        json_object_foreach(cursors, conv, value) {
            if (strlen(conv) == 0 || strlen(conv) > NGX_CHAT_WIRE_CONV_MAX
                || ngx_chat_proto_seq(value, &seq) != 0 || seq < 0)
            {
                return ngx_chat_proto_fail(ctx, "bad_request",
                                           "\"cursors\" maps conversation "
                                           "ids to sequence numbers");
            }
        }

        ctx->record = json_pack("{s:O}", NGX_CHAT_WIRE_F_CURSORS, cursors);

    } else {
        ctx->record = json_object();
    }

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_SYNC, ctx->peer->user,
                                 ctx->peer->user_len);
}


static int
ngx_chat_proto_history(ngx_chat_proto_ctx_t *ctx)
{
    char     conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t   conv_len;
    json_t  *before, *after, *limit;
    int64_t  before_seq, after_seq, n;

    before_seq = 0;
    after_seq = 0;

    if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                    &conv_len)
        != 0)
    {
        return -1;
    }

    before = json_object_get(ctx->frame, "before_seq");
    after = json_object_get(ctx->frame, "after_seq");
    limit = json_object_get(ctx->frame, "limit");

    if (before && after) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "give at most one of \"before_seq\" and "
                                   "\"after_seq\"");
    }

    if ((before && (ngx_chat_proto_seq(before, &before_seq) != 0
                    || before_seq < 1))
        || (after && (ngx_chat_proto_seq(after, &after_seq) != 0
                      || after_seq < 0)))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"before_seq\" and \"after_seq\" must be "
                                   "sequence numbers");
    }

    n = 50;

    if (limit && (ngx_chat_proto_seq(limit, &n) != 0
                  || n < 1 || n > NGX_CHAT_WIRE_HISTORY_MAX))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"limit\" must be an integer from 1 "
                                   "to 100");
    }

    ctx->record = json_pack("{s:s#,s:I}", NGX_CHAT_WIRE_F_CONV, conv, conv_len,
                            NGX_CHAT_WIRE_F_LIMIT, (json_int_t) n);

    if (ctx->record && before) {
        json_object_set_new(ctx->record, NGX_CHAT_WIRE_F_BEFORE_SEQ,
                            json_integer(before_seq));
    }

    if (ctx->record && after) {
        json_object_set_new(ctx->record, NGX_CHAT_WIRE_F_AFTER_SEQ,
                            json_integer(after_seq));
    }

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_HISTORY,
                                 ctx->peer->user,
                                 ctx->peer->user_len);
}


/*
 * A page of the conversation list: before_ts (activity older than that)
 * and, for a page that ends inside one millisecond, before_message_id (the
 * last item's last message): keyed by the user, as the other reads.
 */

static int
ngx_chat_proto_conversations(ngx_chat_proto_ctx_t *ctx)
{
    json_t      *before, *before_id, *limit;
    int64_t      ts, n;
    size_t       i, len;
    const char  *id;

    ts = 0;
    before = json_object_get(ctx->frame, "before_ts");
    before_id = json_object_get(ctx->frame, "before_message_id");
    limit = json_object_get(ctx->frame, "limit");

    if (before && (ngx_chat_proto_seq(before, &ts) != 0 || ts < 0)) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"before_ts\" must be a time in ms");
    }

    if (before_id) {
        id = json_string_value(before_id);
        len = json_string_length(before_id);

        if (id == NULL || len == 0 || len > 19 || before == NULL) {
            goto bad_id;
        }

        for (i = 0; i < len; i++) {
            if (id[i] < '0' || id[i] > '9') {
                goto bad_id;
            }
        }
    }

    n = NGX_CHAT_WIRE_LIST_LIMIT;

    if (limit && (ngx_chat_proto_seq(limit, &n) != 0
                  || n < 1 || n > NGX_CHAT_WIRE_LIST_MAX))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"limit\" must be an integer from 1 "
                                   "to 200");
    }

    ctx->record = json_pack("{s:I}", NGX_CHAT_WIRE_F_LIMIT, (json_int_t) n);

    if (ctx->record && before) {
        json_object_set_new(ctx->record, NGX_CHAT_WIRE_F_BEFORE_TS,
                            json_integer(ts));
    }

    if (ctx->record && before_id) {
        json_object_set(ctx->record, NGX_CHAT_WIRE_F_BEFORE_ID, before_id);
    }

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_CONVERSATIONS,
                                 ctx->peer->user, ctx->peer->user_len);

bad_id:

    return ngx_chat_proto_fail(ctx, "bad_request",
                               "\"before_message_id\" must be a message id "
                               "and come with \"before_ts\"");
}


/*
 * Every member's pointers of one conversation. Keyed by the conversation,
 * as its receipts are: the answer then comes after the receipts this
 * device sent before it.
 */

static int
ngx_chat_proto_receipts(ngx_chat_proto_ctx_t *ctx)
{
    char    conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t  conv_len;

    if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                    &conv_len)
        != 0)
    {
        return -1;
    }

    ctx->record = json_pack("{s:s#}", NGX_CHAT_WIRE_F_CONV, conv, conv_len);

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_RECEIPTS, conv,
                                 conv_len);
}


static int
ngx_chat_proto_create_group(ngx_chat_proto_ctx_t *ctx)
{
    char         conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t       conv_len;
    json_t      *name, *members;

    static uint32_t  ngx_chat_proto_groups;

    name = json_object_get(ctx->frame, "name");

    if (!json_is_string(name) || json_string_length(name) == 0) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"name\" must be a non-empty string");
    }

    if (ngx_chat_wire_chars(json_string_value(name),
                             json_string_length(name))
        > NGX_CHAT_WIRE_NAME_MAX)
    {
        return ngx_chat_proto_fail(ctx, "too_large",
                                   "\"name\" is over 128 characters");
    }

    members = ngx_chat_proto_user_ids(ctx,
                                      json_object_get(ctx->frame, "members"),
                                      "members", 1);
    if (members == NULL) {
        return -1;
    }

    /* unique: the session id is, and so is the counter within it */
    conv_len = snprintf(conv, sizeof(conv), "g:%.16s%x", ctx->peer->sid,
                        ++ngx_chat_proto_groups);

    ctx->record = json_pack("{s:s#,s:O,s:o}",
                            NGX_CHAT_WIRE_F_CONV, conv, conv_len,
                            NGX_CHAT_WIRE_F_NAME, name,
                            NGX_CHAT_WIRE_F_MEMBERS, members);

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_CREATE_GROUP, conv,
                                 conv_len);
}


static int
ngx_chat_proto_members(ngx_chat_proto_ctx_t *ctx)
{
    char         conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t       conv_len;
    int          op;
    json_t      *ids;
    const char  *type;

    if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                    &conv_len)
        != 0)
    {
        return -1;
    }

    ids = ngx_chat_proto_user_ids(ctx, json_object_get(ctx->frame,
                                                       "user_ids"),
                                  "user_ids", 0);
    if (ids == NULL) {
        return -1;
    }

    if (json_array_size(ids) == 0) {
        json_decref(ids);
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"user_ids\" must not be empty");
    }

    type = json_string_value(json_object_get(ctx->frame, "type"));
    op = ngx_chat_wire_op_find(type, strlen(type));

    ctx->record = json_pack("{s:s#,s:o}", NGX_CHAT_WIRE_F_CONV, conv,
                            conv_len, NGX_CHAT_WIRE_F_USER_IDS, ids);

    return ngx_chat_proto_record(ctx, (ngx_chat_wire_op_t) op, conv,
                                 conv_len);
}


/* one member's role in a group: whether the sender may is the worker's
 * to decide (admins only) */
static int
ngx_chat_proto_set_role(ngx_chat_proto_ctx_t *ctx)
{
    char         conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t       conv_len;
    json_t      *user, *role;
    const char  *r;

    if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                    &conv_len)
        != 0)
    {
        return -1;
    }

    user = json_object_get(ctx->frame, "user_id");

    if (!json_is_string(user)
        || !ngx_chat_wire_valid_id(json_string_value(user),
                                   json_string_length(user)))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"user_id\" must be a user id");
    }

    role = json_object_get(ctx->frame, "role");
    r = json_string_value(role);

    if (r == NULL || (strcmp(r, NGX_CHAT_WIRE_ROLE_ADMIN) != 0
                      && strcmp(r, NGX_CHAT_WIRE_ROLE_MEMBER) != 0))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"role\" must be \"admin\" or "
                                   "\"member\"");
    }

    ctx->record = json_pack("{s:s#,s:O,s:O}", NGX_CHAT_WIRE_F_CONV, conv,
                            conv_len, NGX_CHAT_WIRE_F_USER_ID, user,
                            NGX_CHAT_WIRE_F_ROLE, role);

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_SET_ROLE, conv,
                                 conv_len);
}


static int
ngx_chat_proto_receipt(ngx_chat_proto_ctx_t *ctx)
{
    char         conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t       conv_len;
    json_t      *state;
    int64_t      seq;
    const char  *s;

    if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                    &conv_len)
        != 0)
    {
        return -1;
    }

    if (ngx_chat_proto_seq(json_object_get(ctx->frame, "seq"), &seq) != 0
        || seq < 1)
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"seq\" must be a positive integer");
    }

    state = json_object_get(ctx->frame, "state");
    s = json_string_value(state);

    if (s == NULL || (strcmp(s, "delivered") != 0 && strcmp(s, "read") != 0))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"state\" must be \"delivered\" or "
                                   "\"read\"");
    }

    ctx->record = json_pack("{s:s#,s:I,s:s}",
                            NGX_CHAT_WIRE_F_CONV, conv, conv_len,
                            NGX_CHAT_WIRE_F_SEQ, (json_int_t) seq,
                            NGX_CHAT_WIRE_F_STATE, s);

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_RECEIPT, conv,
                                 conv_len);
}


static int
ngx_chat_proto_typing(ngx_chat_proto_ctx_t *ctx)
{
    char         conv[NGX_CHAT_PROTO_KEY_MAX];
    size_t       conv_len;
    const char  *s;

    if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                    &conv_len)
        != 0)
    {
        return -1;
    }

    s = json_string_value(json_object_get(ctx->frame, "state"));

    if (s == NULL || (strcmp(s, "start") != 0 && strcmp(s, "stop") != 0)) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"state\" must be \"start\" or "
                                   "\"stop\"");
    }

    ctx->record = json_pack("{s:s#,s:s}", NGX_CHAT_WIRE_F_CONV, conv, conv_len,
                            NGX_CHAT_WIRE_F_STATE, s);

    ctx->res->typing_start = (s[1] == 't' && s[2] == 'a');
    ctx->res->typing_stop = !ctx->res->typing_start;

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_TYPING, conv,
                                 conv_len);
}


/*
 * A list of user ids, deduplicated (and without the peer, for a group's
 * first members): a new reference, or NULL with the error set.
 */

static json_t *
ngx_chat_proto_user_ids(ngx_chat_proto_ctx_t *ctx, json_t *list,
    const char *field, int drop_self)
{
    size_t        i, n;
    json_t       *ids, *id, *seen;
    const char   *s;

    if (list == NULL && drop_self) {
        return json_array();
    }

    if (!json_is_array(list)) {
        ngx_chat_proto_fail(ctx, "bad_request",
                            "the user id list must be an array");
        return NULL;
    }

    n = json_array_size(list);

    if (n > NGX_CHAT_WIRE_USER_IDS_MAX) {
        ngx_chat_proto_fail(ctx, "too_large", "more than 1000 user ids");
        return NULL;
    }

    ids = json_array();
    seen = json_object();

    if (ids == NULL || seen == NULL) {
        json_decref(ids);
        json_decref(seen);
        ngx_chat_proto_fail(ctx, "internal", "out of memory");
        return NULL;
    }

    for (i = 0; i < n; i++) {
        id = json_array_get(list, i);
        s = json_string_value(id);

        if (s == NULL
            || !ngx_chat_wire_valid_id((const char *) s,
                                  json_string_length(id)))
        {
            json_decref(ids);
            json_decref(seen);
            ngx_chat_proto_fail(ctx, "bad_request",
                                strcmp(field, "members") == 0
                                ? "\"members\" must hold user ids"
                                : "\"user_ids\" must hold user ids");
            return NULL;
        }

        if (drop_self && json_string_length(id) == ctx->peer->user_len
            && memcmp(s, ctx->peer->user, ctx->peer->user_len) == 0)
        {
            continue;
        }

        /* a hash set: a linear scan per id would be quadratic */
        if (json_object_get(seen, s) == NULL) {
            json_object_set_new(seen, s, json_true());
            json_array_append(ids, id);
        }
    }

    json_decref(seen);

    return ids;
}


static int
ngx_chat_proto_presence(ngx_chat_proto_ctx_t *ctx)
{
    json_t  *ids;

    ids = ngx_chat_proto_user_ids(ctx, json_object_get(ctx->frame,
                                                       "user_ids"),
                                  "user_ids", 0);
    if (ids == NULL) {
        return -1;
    }

    ctx->res->presence_ids = ids;
    ctx->res->presence =
        strcmp(json_string_value(json_object_get(ctx->frame, "type")),
               "presence_subscribe") == 0
        ? NGX_CHAT_PROTO_PRESENCE_SUBSCRIBE
        : NGX_CHAT_PROTO_PRESENCE_UNSUBSCRIBE;

    return 0;
}


static int
ngx_chat_proto_presence_set(ngx_chat_proto_ctx_t *ctx)
{
    const char  *s;

    s = json_string_value(json_object_get(ctx->frame, "status"));

    if (s && strcmp(s, "online") == 0) {
        ctx->res->presence_status = "online";

    } else if (s && strcmp(s, "away") == 0) {
        ctx->res->presence_status = "away";

    } else {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"status\" must be \"online\" or "
                                   "\"away\"");
    }

    ctx->res->presence = NGX_CHAT_PROTO_PRESENCE_SET;

    return 0;
}


/* the token is checked by the session, which knows the secret and whose
 * identity it must match */
static int
ngx_chat_proto_auth(ngx_chat_proto_ctx_t *ctx)
{
    json_t  *token;

    token = json_object_get(ctx->frame, "token");

    if (!json_is_string(token) || json_string_length(token) == 0) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"token\" must be a non-empty string");
    }

    ctx->res->auth_token = strdup(json_string_value(token));
    if (ctx->res->auth_token == NULL) {
        return ngx_chat_proto_fail(ctx, "internal", "out of memory");
    }

    ctx->res->auth_token_len = json_string_length(token);

    return 0;
}


void
ngx_chat_proto_set_auth_ok(ngx_chat_proto_result_t *res, int64_t expires_ms)
{
    json_t  *ok;

    free(res->reply);
    res->reply = NULL;
    res->reply_len = 0;

    ok = json_pack("{s:s,s:I}", "type", "auth_ok", "expires_at",
                   (json_int_t) expires_ms);
    if (ok == NULL) {
        return;
    }

    if (res->tag_name) {
        json_object_set(ok, res->tag_name, res->tag_value);
    }

    res->reply = json_dumps(ok, JSON_COMPACT);
    res->reply_len = res->reply ? strlen(res->reply) : 0;

    json_decref(ok);
}


/*
 * A device's push gateway: an http or https URL of printable ASCII
 * without spaces, and the device's token there. Which gateways are
 * allowed is the worker's setting; keyed by the user, as its reads.
 */

static int
ngx_chat_proto_push_register(ngx_chat_proto_ctx_t *ctx)
{
    json_t      *endpoint, *token;
    const char  *url;
    size_t       len, i;

    endpoint = json_object_get(ctx->frame, "endpoint");
    token = json_object_get(ctx->frame, "token");

    if (!json_is_string(endpoint)) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"endpoint\" must be an http or https "
                                   "URL");
    }

    url = json_string_value(endpoint);
    len = json_string_length(endpoint);

    if (len > NGX_CHAT_WIRE_PUSH_ENDPOINT_MAX) {
        return ngx_chat_proto_fail(ctx, "too_large",
                                   "\"endpoint\" is over 2048 bytes");
    }

    if (!((len > 7 && strncmp(url, "http://", 7) == 0)
          || (len > 8 && strncmp(url, "https://", 8) == 0)))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"endpoint\" must be an http or https "
                                   "URL");
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) url[i] <= 0x20 || (unsigned char) url[i] >= 0x7f) {
            return ngx_chat_proto_fail(ctx, "bad_request",
                                       "\"endpoint\" must be an http or "
                                       "https URL");
        }
    }

    if (!json_is_string(token) || json_string_length(token) == 0) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"token\" must be a non-empty string");
    }

    if (json_string_length(token) > NGX_CHAT_WIRE_PUSH_TOKEN_MAX) {
        return ngx_chat_proto_fail(ctx, "too_large",
                                   "\"token\" is over 4096 bytes");
    }

    ctx->record = json_pack("{s:O,s:O}", NGX_CHAT_WIRE_F_ENDPOINT, endpoint,
                            NGX_CHAT_WIRE_F_TOKEN, token);

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_PUSH_REGISTER,
                                 ctx->peer->user, ctx->peer->user_len);
}


static int
ngx_chat_proto_push_unregister(ngx_chat_proto_ctx_t *ctx)
{
    ctx->record = json_object();

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_PUSH_UNREGISTER,
                                 ctx->peer->user, ctx->peer->user_len);
}


/*
 * An upload: the file's conversation, type, size and name are checked
 * here against the server's limits, and its id and signed PUT URL made
 * here too (the secret is nginx's); the worker records it, after checking
 * that the user may post to the conversation, and answers with the URL.
 * Keyed by the conversation, as a send.
 */

static int
ngx_chat_proto_upload(ngx_chat_proto_ctx_t *ctx)
{
    const ngx_chat_media_conf_t  *m = ctx->peer->media;
    static const char             hex[] = "0123456789abcdef";
    unsigned char                 rnd[NGX_CHAT_MEDIA_ID_LEN / 2];
    char                          conv[NGX_CHAT_PROTO_KEY_MAX];
    char                          id[NGX_CHAT_MEDIA_ID_LEN + 1];
    char                          url[4096];
    size_t                        conv_len, i, len;
    json_t                       *type, *size, *name;
    const char                   *s;
    int64_t                       n, expires;

    if (m == NULL) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "uploads are not enabled on this server");
    }

    if (ngx_chat_proto_conversation(ctx, ctx->conversation_id, conv,
                                    &conv_len)
        != 0)
    {
        return -1;
    }

    type = json_object_get(ctx->frame, "content_type");
    size = json_object_get(ctx->frame, "size");
    name = json_object_get(ctx->frame, "name");

    if (!json_is_string(type) || json_string_length(type) == 0
        || json_string_length(type) > NGX_CHAT_MEDIA_TYPE_MAX)
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"content_type\" must be a media type");
    }

    if (!ngx_chat_media_type_allowed(m, json_string_value(type),
                                     json_string_length(type)))
    {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "this content type is not accepted");
    }

    if (size == NULL || ngx_chat_proto_seq(size, &n) != 0 || n < 1) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"size\" must be a positive integer");
    }

    if (n > m->max_bytes) {
        return ngx_chat_proto_fail(ctx, "too_large",
                                   "the file is over the server's limit");
    }

    if (!json_is_string(name) || json_string_length(name) == 0) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"name\" must be a non-empty string");
    }

    s = json_string_value(name);
    len = json_string_length(name);

    if (ngx_chat_wire_chars(s, len) > NGX_CHAT_MEDIA_NAME_MAX) {
        return ngx_chat_proto_fail(ctx, "too_large",
                                   "\"name\" is over 255 characters");
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f) {
            return ngx_chat_proto_fail(ctx, "bad_request",
                                       "\"name\" has a control character");
        }
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return ngx_chat_proto_fail(ctx, "internal", "no random bytes");
    }

    for (i = 0; i < sizeof(rnd); i++) {
        id[i * 2] = hex[rnd[i] >> 4];
        id[i * 2 + 1] = hex[rnd[i] & 0xf];
    }

    id[NGX_CHAT_MEDIA_ID_LEN] = '\0';

    expires = ctx->peer->now_ms + m->ttl_ms;

    if (ngx_chat_media_url(url, sizeof(url), m, "PUT", id,
                           NGX_CHAT_MEDIA_ID_LEN, n, expires)
        == 0)
    {
        return ngx_chat_proto_fail(ctx, "internal", "the URL is too long");
    }

    ctx->record = json_pack("{s:s#,s:s,s:O,s:I,s:O,s:s,s:I,s:I}",
                            NGX_CHAT_WIRE_F_CONV, conv, conv_len,
                            NGX_CHAT_WIRE_F_ATTACHMENT_ID, id,
                            NGX_CHAT_WIRE_F_CONTENT_TYPE, type,
                            NGX_CHAT_WIRE_F_SIZE, (json_int_t) n,
                            NGX_CHAT_WIRE_F_NAME, name,
                            NGX_CHAT_WIRE_F_URL, url,
                            NGX_CHAT_WIRE_F_EXPIRES_AT, (json_int_t) expires,
                            NGX_CHAT_WIRE_F_MAX_BYTES,
                            (json_int_t) m->max_bytes);

    return ngx_chat_proto_record(ctx, NGX_CHAT_WIRE_OP_UPLOAD, conv,
                                 conv_len);
}


/*
 * A conversation id the user may name. A direct one that does not include
 * the user is refused here already, as forbidden like any conversation the
 * user is not in; the workers check the others.
 */

static int
ngx_chat_proto_conversation(ngx_chat_proto_ctx_t *ctx, json_t *value,
    char *conv, size_t *conv_len)
{
    const char  *s;
    size_t       len;

    if (!json_is_string(value) || json_string_length(value) == 0) {
        return ngx_chat_proto_fail(ctx, "bad_request",
                                   "\"conversation_id\" must be a non-empty "
                                   "string");
    }

    s = json_string_value(value);
    len = json_string_length(value);

    if (len > NGX_CHAT_WIRE_CONV_MAX) {
        return ngx_chat_proto_fail(ctx, "too_large",
                                   "\"conversation_id\" is too long");
    }

    if (ngx_chat_wire_direct_access(s, len, ctx->peer->user,
                                     ctx->peer->user_len)
        == NGX_CHAT_WIRE_FORBIDDEN)
    {
        goto forbidden;
    }

    memcpy(conv, s, len);
    conv[len] = '\0';
    *conv_len = len;

    return 0;

forbidden:

    return ngx_chat_proto_fail(ctx, "forbidden",
                               "not a member of this conversation");
}


/* adds the peer's fields to ctx->record and serializes it */

static int
ngx_chat_proto_record(ngx_chat_proto_ctx_t *ctx, ngx_chat_wire_op_t op,
    const char *key, size_t key_len)
{
    char    *fields, *record, *p;
    size_t   len;
    json_t  *r;

    r = ctx->record;

    if (r == NULL || key_len >= NGX_CHAT_PROTO_KEY_MAX) {
        return ngx_chat_proto_fail(ctx, "internal", "out of memory");
    }

    if (ctx->res->tag_name && strcmp(ctx->res->tag_name, "req_id") == 0
        && json_object_set(r, NGX_CHAT_WIRE_F_REQ_ID, ctx->res->tag_value)
           != 0)
    {
        return ngx_chat_proto_fail(ctx, "internal", "out of memory");
    }

    /* the op's own fields from jansson, then the common ones */

    fields = json_dumps(r, JSON_COMPACT);
    if (fields == NULL) {
        return ngx_chat_proto_fail(ctx, "internal", "out of memory");
    }

    len = strlen(fields);

    record = malloc(len + 1
                    + ngx_chat_wire_record_common_size(ctx->peer, op) + 1);
    if (record == NULL) {
        free(fields);
        return ngx_chat_proto_fail(ctx, "internal", "out of memory");
    }

    /* "{...}" less its closing brace, a comma unless it was empty */
    p = memcpy(record, fields, len - 1);
    p += len - 1;

    if (len > 2) {
        *p++ = ',';
    }

    p = ngx_chat_wire_record_common(p, ctx->peer, op);
    *p++ = '}';
    *p = '\0';

    free(fields);

    ctx->res->record = record;
    ctx->res->record_len = p - record;
    ctx->res->is_send = (op == NGX_CHAT_WIRE_OP_SEND);

    memcpy(ctx->res->key, key, key_len);
    ctx->res->key[key_len] = '\0';
    ctx->res->key_len = key_len;

    return 0;
}


static int
ngx_chat_proto_fail(ngx_chat_proto_ctx_t *ctx, const char *code,
    const char *message)
{
    ngx_chat_proto_set_error(ctx->res, code, message);
    return -1;
}


void
ngx_chat_proto_set_error(ngx_chat_proto_result_t *res, const char *code,
    const char *message)
{
    ngx_chat_proto_set_retry_error(res, code, message, -1);
}


void
ngx_chat_proto_set_retry_error(ngx_chat_proto_result_t *res,
    const char *code, const char *message, int64_t retry_after_ms)
{
    json_t  *error;

    free(res->record);
    res->record = NULL;
    res->record_len = 0;

    free(res->reply);
    res->reply = NULL;
    res->reply_len = 0;

    res->presence = 0;
    res->is_send = 0;
    res->typing_start = 0;
    res->typing_stop = 0;
    free(res->auth_token);
    res->auth_token = NULL;
    res->error = code;

    error = json_pack("{s:s,s:s,s:s}", "type", "error", "code", code,
                      "message", message);
    if (error == NULL) {
        return;
    }

    if (res->tag_name) {
        json_object_set(error, res->tag_name, res->tag_value);
    }

    if (retry_after_ms >= 0) {
        json_object_set_new(error, "retry_after_ms",
                            json_integer(retry_after_ms));
    }

    res->reply = json_dumps(error, JSON_COMPACT);
    res->reply_len = res->reply ? strlen(res->reply) : 0;

    json_decref(error);
}


void
ngx_chat_proto_result_free(ngx_chat_proto_result_t *res)
{
    free(res->reply);
    free(res->record);
    json_decref((json_t *) res->tag_value);
    json_decref((json_t *) res->presence_ids);
    res->presence_ids = NULL;
    free(res->auth_token);
    res->auth_token = NULL;

    res->reply = NULL;
    res->record = NULL;
    res->tag_value = NULL;
}


int
ngx_chat_proto_record_failed(const char *record, size_t len,
    int maybe_stored, char *sid, size_t sid_size, char **frame,
    size_t *frame_len)
{
    json_t                   *r, *op, *s, *tag;
    ngx_chat_proto_result_t   res;

    r = json_loadb(record, len, 0, NULL);
    if (r == NULL) {
        return -1;
    }

    op = json_object_get(r, "op");
    s = json_object_get(r, "sid");

    if (!json_is_string(op) || !json_is_string(s)
        || json_string_length(s) >= sid_size)
    {
        json_decref(r);
        return -1;
    }

    memcpy(sid, json_string_value(s), json_string_length(s) + 1);

    memset(&res, 0, sizeof(ngx_chat_proto_result_t));

    if (json_object_get(r, NGX_CHAT_WIRE_F_CMID) != NULL) {
        /* send, edit, delete, react */
        res.tag_name = "client_msg_id";
        tag = json_object_get(r, "cmid");

    } else {
        res.tag_name = "req_id";
        tag = json_object_get(r, "req_id");
    }

    if (tag) {
        res.tag_value = json_incref(tag);

    } else {
        res.tag_name = NULL;
    }

    if (maybe_stored) {
        ngx_chat_proto_set_error(&res, "timeout",
                                 "no word from the message store in time: "
                                 "it may have been stored, retry with the "
                                 "same client_msg_id");

    } else {
        ngx_chat_proto_set_error(&res, "unavailable",
                                 "the message store is unavailable, nothing "
                                 "was stored: retry later");
    }

    json_decref(r);
    json_decref((json_t *) res.tag_value);

    if (res.reply == NULL) {
        return -1;
    }

    *frame = res.reply;
    *frame_len = res.reply_len;

    return 0;
}


static int
ngx_chat_proto_seq(json_t *value, int64_t *seq)
{
    if (!json_is_integer(value)) {
        return -1;
    }

    *seq = (int64_t) json_integer_value(value);

    return 0;
}


/*
 * No request needs more than a few levels; jansson would recurse 2048 deep
 * before it says no, on the nginx worker's stack
 */

static int
ngx_chat_proto_too_deep(const char *text, size_t len)
{
    size_t  i, depth;
    int     in_string;

    depth = 0;
    in_string = 0;

    for (i = 0; i < len; i++) {

        if (in_string) {
            if (text[i] == '\\') {
                i++;

            } else if (text[i] == '"') {
                in_string = 0;
            }

            continue;
        }

        switch (text[i]) {
        case '"':
            in_string = 1;
            break;

        case '{':
        case '[':
            if (++depth > NGX_CHAT_WIRE_JSON_DEPTH_MAX) {
                return 1;
            }
            break;

        case '}':
        case ']':
            if (depth) {
                depth--;
            }
            break;
        }
    }

    return 0;
}
