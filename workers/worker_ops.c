/*
 * worker_ops.c: the table of ops, one row per op of the wire, and what is
 * each op's own: the parse of its record's fields and the step that gives
 * its items to the store (worker_store.h) and the membership cache. The
 * answers and the fan-outs the rows name are worker_answer.c's and
 * worker_fanout.c's; worker_batch.c runs the rows.
 *
 * A sync is the one answer that can be large: its store step reads the
 * list, then alternates the store's chunks of messages with the frames
 * worker_answer.c makes of them, which go to a stream (worker_stream.c)
 * as they come, so that neither the rows nor the frames of the whole
 * answer are ever in memory together.
 *
 * The fields' names are the wire's (ngx_chat_wire.h); the module has
 * already checked types and limits, so a fault here is another producer's
 * or an older module's, answered with bad_request.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_chat_media_sign.h"
#include "worker_answer.h"
#include "worker_fanout.h"
#include "worker_ops.h"
#include "worker_thumb.h"


static void chat_ops_audit(const chat_request_t *req, const char *result);
/* the messages a sync reads at a time, whatever the conversations */
#define CHAT_OPS_SYNC_CHUNK  400


#define chat_bad(...)                                                      \
    do {                                                                   \
        snprintf(why, why_size, __VA_ARGS__);                              \
        return CHAT_PARSE_BAD;                                             \
    } while (0)


/* ---- parse: the record's fields of each op ---- */

static bool chat_ops_message_id(chat_request_t *req, const char *field,
    int64_t *id);


static chat_parse_rc_t
chat_ops_parse_send(chat_request_t *req, char *why, size_t why_size)
{
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);
    req->body = chat_request_string(req, NGX_CHAT_WIRE_F_BODY);
    req->attachments = chat_request_json(req, NGX_CHAT_WIRE_F_ATTACHMENTS);

    if (json_is_null(req->attachments)) {
        req->attachments = NULL;
    }

    if (req->cmid == NULL || req->cmid[0] == '\0'
        || ngx_chat_wire_chars(req->cmid, strlen(req->cmid))
           > NGX_CHAT_WIRE_CMID_MAX)
    {
        /* no usable client_msg_id to tag the answer with */
        req->cmid = NULL;
        chat_bad("missing or invalid cmid");
    }

    if (req->conv == NULL || req->conv[0] == '\0') {
        chat_bad("missing conv");
    }

    if (req->attachments
        && (!json_is_array(req->attachments)
            || json_array_size(req->attachments) == 0
            || json_array_size(req->attachments)
               > NGX_CHAT_WIRE_ATTACHMENTS_MAX))
    {
        chat_bad("attachments is not a list of ids");
    }

    if (req->body == NULL
        || (req->body[0] == '\0' && req->attachments == NULL))
    {
        chat_bad("missing or empty body");
    }

    if (!chat_ops_message_id(req, NGX_CHAT_WIRE_F_REPLY_TO, &req->reply_to))
    {
        chat_bad("reply_to is not a message id");
    }

    return CHAT_PARSE_OK;
}

/* an optional message id field (a string of digits): 0 when absent */
static bool
chat_ops_message_id(chat_request_t *req, const char *field, int64_t *id)
{
    json_t  *v = chat_request_json(req, field);

    *id = 0;

    if (v == NULL || json_is_null(v)) {
        return true;
    }

    return json_is_string(v)
           && ngx_chat_wire_message_id(json_string_value(v),
                                       json_string_length(v), id);
}


/* block, unblock: the other user */
static chat_parse_rc_t
chat_ops_parse_block(chat_request_t *req, char *why, size_t why_size)
{
    req->other = chat_request_string(req, NGX_CHAT_WIRE_F_OTHER);

    if (!chat_valid_id(req->other) || strcmp(req->other, req->user) == 0) {
        chat_bad("missing or invalid other");
    }

    return CHAT_PARSE_OK;
}


/* search: a query, maybe one conversation, a page */
static chat_parse_rc_t
chat_ops_parse_search(chat_request_t *req, char *why, size_t why_size)
{
    size_t  chars;

    req->query = chat_request_string(req, NGX_CHAT_WIRE_F_QUERY);
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);

    chars = req->query ? ngx_chat_wire_chars(req->query, strlen(req->query))
                       : 0;

    if (chars == 0 || chars > NGX_CHAT_WIRE_QUERY_MAX) {
        chat_bad("missing or invalid query");
    }

    if (req->conv && req->conv[0] == '\0') {
        chat_bad("empty conv");
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_LIMIT,
                          NGX_CHAT_WIRE_SEARCH_LIMIT, &req->limit)
        || req->limit < 1 || req->limit > NGX_CHAT_WIRE_SEARCH_MAX)
    {
        chat_bad("limit out of range");
    }

    if (!chat_ops_message_id(req, NGX_CHAT_WIRE_F_BEFORE_MID,
                             &req->before_mid))
    {
        chat_bad("before_id is not a message id");
    }

    return CHAT_PARSE_OK;
}


/* edit, delete, react: what a send has but the body, and the target */
static chat_parse_rc_t
chat_ops_parse_change(chat_request_t *req, char *why, size_t why_size)
{
    json_t  *emoji;

    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);
    req->body = chat_request_string(req, NGX_CHAT_WIRE_F_BODY);

    if (req->cmid == NULL || req->cmid[0] == '\0'
        || ngx_chat_wire_chars(req->cmid, strlen(req->cmid))
           > NGX_CHAT_WIRE_CMID_MAX)
    {
        req->cmid = NULL;
        chat_bad("missing or invalid cmid");
    }

    if (req->conv == NULL || req->conv[0] == '\0') {
        chat_bad("missing conv");
    }

    if (!chat_ops_message_id(req, NGX_CHAT_WIRE_F_TARGET, &req->target_mid)
        || req->target_mid == 0)
    {
        chat_bad("missing or invalid target");
    }

    switch (req->op) {

    case NGX_CHAT_WIRE_OP_EDIT:
        if (req->body == NULL || req->body[0] == '\0') {
            chat_bad("missing or empty body");
        }

        if (!chat_request_int(req, NGX_CHAT_WIRE_F_WINDOW,
                              (int64_t) NGX_CHAT_WIRE_EDIT_WINDOW * 1000,
                              &req->window_ms)
            || req->window_ms < 0)
        {
            chat_bad("window_ms is not a duration");
        }

        break;

    case NGX_CHAT_WIRE_OP_REACT:
        emoji = chat_request_json(req, NGX_CHAT_WIRE_F_EMOJI);
        req->emoji = json_string_value(emoji);

        if (!json_is_null(emoji)
            && (req->emoji == NULL || req->emoji[0] == '\0'
                || json_string_length(emoji) > NGX_CHAT_WIRE_EMOJI_MAX
                || strlen(req->emoji) != json_string_length(emoji)))
        {
            chat_bad("emoji is not 1-32 bytes or null");
        }

        break;

    default:
        req->body = NULL;
        break;
    }

    return CHAT_PARSE_OK;
}



static chat_parse_rc_t
chat_ops_parse_sync(chat_request_t *req, char *why, size_t why_size)
{
    req->cursors = chat_request_json(req, NGX_CHAT_WIRE_F_CURSORS);

    if (json_is_null(req->cursors)) {
        req->cursors = NULL;
    }

    if (req->cursors && !json_is_object(req->cursors)) {
        chat_bad("cursors is not an object");
    }

    return CHAT_PARSE_OK;
}


static chat_parse_rc_t
chat_ops_parse_history(chat_request_t *req, char *why, size_t why_size)
{
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);

    if (req->conv == NULL || req->conv[0] == '\0') {
        chat_bad("missing conv");
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_LIMIT,
                          NGX_CHAT_WIRE_HISTORY_LIMIT, &req->limit)
        || req->limit < 1 || req->limit > NGX_CHAT_WIRE_HISTORY_MAX)
    {
        chat_bad("limit out of range");
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_BEFORE_SEQ, -1,
                          &req->before_seq)
        || !chat_request_int(req, NGX_CHAT_WIRE_F_AFTER_SEQ, -1,
                             &req->after_seq))
    {
        chat_bad("before_seq or after_seq is not an integer");
    }

    if (req->before_seq != -1 && req->after_seq != -1) {
        chat_bad("both before_seq and after_seq");
    }

    if (req->before_seq < -1 || req->after_seq < -1) {
        chat_bad("negative before_seq or after_seq");
    }

    return CHAT_PARSE_OK;
}


/* a page of the conversation list: its size and where it starts */
static chat_parse_rc_t
chat_ops_parse_conversations(chat_request_t *req, char *why, size_t why_size)
{
    const char  *id;
    char        *end;

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_LIMIT,
                          NGX_CHAT_WIRE_LIST_LIMIT, &req->limit)
        || req->limit < 1 || req->limit > NGX_CHAT_WIRE_LIST_MAX)
    {
        chat_bad("limit out of range");
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_BEFORE_TS, INT64_MAX,
                          &req->before_ts)
        || req->before_ts < 0)
    {
        chat_bad("before_ts is not a time");
    }

    id = chat_request_string(req, NGX_CHAT_WIRE_F_BEFORE_ID);
    req->before_id = 0;

    if (id) {
        errno = 0;
        req->before_id = strtoll(id, &end, 10);

        if (id[0] < '0' || id[0] > '9' || *end != '\0' || errno != 0
            || req->before_ts == INT64_MAX)
        {
            chat_bad("before_message_id is not a message id after "
                     "before_ts");
        }
    }

    return CHAT_PARSE_OK;
}


static chat_parse_rc_t
chat_ops_parse_receipts(chat_request_t *req, char *why, size_t why_size)
{
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);

    if (req->conv == NULL || req->conv[0] == '\0') {
        chat_bad("missing conv");
    }

    return CHAT_PARSE_OK;
}


/* create_group: a fresh group's id, its name and the other members */
static chat_parse_rc_t
chat_ops_parse_create(chat_request_t *req, char *why, size_t why_size)
{
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);
    req->name = chat_request_string(req, NGX_CHAT_WIRE_F_NAME);
    req->user_ids = chat_request_json(req, NGX_CHAT_WIRE_F_MEMBERS);

    if (req->conv == NULL || req->conv[0] == '\0'
        || chat_is_dm_id(req->conv))
    {
        chat_bad("missing conv or not a group");
    }

    if (req->name == NULL || req->name[0] == '\0') {
        chat_bad("missing name");
    }

    if (!chat_request_ids(req->user_ids)) {
        chat_bad("user ids missing or invalid");
    }

    return CHAT_PARSE_OK;
}


/* add_members, remove_members: a group and at least one user */
static chat_parse_rc_t
chat_ops_parse_members(chat_request_t *req, char *why, size_t why_size)
{
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);
    req->user_ids = chat_request_json(req, NGX_CHAT_WIRE_F_USER_IDS);

    if (req->conv == NULL || req->conv[0] == '\0'
        || chat_is_dm_id(req->conv))
    {
        chat_bad("missing conv or not a group");
    }

    if (!chat_request_ids(req->user_ids)) {
        chat_bad("user ids missing or invalid");
    }

    if (json_array_size(req->user_ids) == 0) {
        chat_bad("no user ids");
    }

    return CHAT_PARSE_OK;
}


/* a conversation and a state that is one of two */
static chat_parse_rc_t
chat_ops_parse_state(chat_request_t *req, const char *one, const char *other,
    char *why, size_t why_size)
{
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);
    req->state = chat_request_string(req, NGX_CHAT_WIRE_F_STATE);

    if (req->conv == NULL || req->conv[0] == '\0') {
        chat_bad("missing conv");
    }

    if (req->state == NULL
        || (strcmp(req->state, one) != 0 && strcmp(req->state, other) != 0))
    {
        chat_bad("missing or invalid state");
    }

    return CHAT_PARSE_OK;
}


static chat_parse_rc_t
chat_ops_parse_receipt(chat_request_t *req, char *why, size_t why_size)
{
    chat_parse_rc_t  rc;

    rc = chat_ops_parse_state(req, NGX_CHAT_WIRE_STATE_DELIVERED,
                              NGX_CHAT_WIRE_STATE_READ, why, why_size);
    if (rc != CHAT_PARSE_OK) {
        return rc;
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_SEQ, 0, &req->seq)
        || req->seq < 1)
    {
        chat_bad("seq is not a positive integer");
    }

    return CHAT_PARSE_OK;
}


static chat_parse_rc_t
chat_ops_parse_typing(chat_request_t *req, char *why, size_t why_size)
{
    return chat_ops_parse_state(req, NGX_CHAT_WIRE_STATE_START,
                                NGX_CHAT_WIRE_STATE_STOP, why, why_size);
}


/* set_role, from a session or an operator: a group, a user, a role */
static chat_parse_rc_t
chat_ops_parse_set_role(chat_request_t *req, char *why, size_t why_size)
{
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);
    req->target = chat_request_string(req, NGX_CHAT_WIRE_F_USER_ID);
    req->role = chat_request_string(req, NGX_CHAT_WIRE_F_ROLE);

    if (req->conv == NULL || req->conv[0] == '\0'
        || chat_is_dm_id(req->conv))
    {
        chat_bad("missing conv or not a group");
    }

    if (!chat_valid_id(req->target)) {
        chat_bad("missing or invalid user_id");
    }

    if (req->role == NULL
        || (strcmp(req->role, NGX_CHAT_WIRE_ROLE_ADMIN) != 0
            && strcmp(req->role, NGX_CHAT_WIRE_ROLE_MEMBER) != 0))
    {
        chat_bad("missing or invalid role");
    }

    return CHAT_PARSE_OK;
}


/* revoke: the user, and the device when only one */
static chat_parse_rc_t
chat_ops_parse_revoke(chat_request_t *req, char *why, size_t why_size)
{
    req->target = chat_request_string(req, NGX_CHAT_WIRE_F_USER);
    req->target_dev = chat_request_string(req, NGX_CHAT_WIRE_F_DEV);

    if (!chat_valid_id(req->target)) {
        chat_bad("missing or invalid user");
    }

    /* "-" is every device on chat:control */
    if (req->target_dev != NULL
        && (!chat_valid_id(req->target_dev)
            || strcmp(req->target_dev, "-") == 0))
    {
        chat_bad("invalid dev");
    }

    return CHAT_PARSE_OK;
}


/* redact: a message of a conversation; its id as a string of digits, as
 * clients and chatctl write it, or a number */
static chat_parse_rc_t
chat_ops_parse_redact(chat_request_t *req, char *why, size_t why_size)
{
    const char  *id;
    char        *end;

    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);
    id = chat_request_string(req, NGX_CHAT_WIRE_F_MESSAGE_ID);

    if (req->conv == NULL || req->conv[0] == '\0') {
        chat_bad("missing conv");
    }

    if (id != NULL) {
        req->message_id = -1;

        if (id[0] >= '0' && id[0] <= '9') {
            req->message_id = strtoll(id, &end, 10);

            if (*end != '\0') {
                req->message_id = -1;
            }
        }

    } else if (!chat_request_int(req, NGX_CHAT_WIRE_F_MESSAGE_ID, -1,
                                 &req->message_id))
    {
        req->message_id = -1;
    }

    if (req->message_id < 1) {
        chat_bad("missing or invalid message_id");
    }

    return CHAT_PARSE_OK;
}


/* a node's gap: (after, upto] of the partition the record is in (so that
 * every record of the gap came before it, stored), nothing older than
 * since */
static chat_parse_rc_t
chat_ops_parse_repair(chat_request_t *req, char *why, size_t why_size)
{
    if (!chat_request_int(req, NGX_CHAT_WIRE_F_PARTITION, -1,
                          &req->repair.partition)
        || !chat_request_int(req, NGX_CHAT_WIRE_F_AFTER, -2,
                             &req->repair.after)
        || !chat_request_int(req, NGX_CHAT_WIRE_F_UPTO, -2,
                             &req->repair.upto)
        || !chat_request_int(req, NGX_CHAT_WIRE_F_SINCE, 0,
                             &req->repair.since))
    {
        chat_bad("partition, after, upto or since is not an integer");
    }

    if (req->repair.partition != req->partition) {
        chat_bad("a repair of partition %lld in partition %d",
                 (long long) req->repair.partition, (int) req->partition);
    }

    if (req->repair.after < -1 || req->repair.upto < req->repair.after) {
        chat_bad("not a range: after %lld, upto %lld",
                 (long long) req->repair.after, (long long) req->repair.upto);
    }

    return CHAT_PARSE_OK;
}


/* push_register: a gateway URL (the module checked its form) and a token */
static chat_parse_rc_t
chat_ops_parse_push(chat_request_t *req, char *why, size_t why_size)
{
    if (req->op == NGX_CHAT_WIRE_OP_PUSH_UNREGISTER) {
        return CHAT_PARSE_OK;
    }

    req->endpoint = chat_request_string(req, NGX_CHAT_WIRE_F_ENDPOINT);
    req->token = chat_request_string(req, NGX_CHAT_WIRE_F_TOKEN);

    if (req->endpoint == NULL
        || (strncmp(req->endpoint, "http://", 7) != 0
            && strncmp(req->endpoint, "https://", 8) != 0))
    {
        chat_bad("missing or invalid endpoint");
    }

    if (req->token == NULL || req->token[0] == '\0') {
        chat_bad("missing token");
    }

    return CHAT_PARSE_OK;
}


/* upload: what the module checked and signed, to record and answer */
static chat_parse_rc_t
chat_ops_parse_upload(chat_request_t *req, char *why, size_t why_size)
{
    req->conv = chat_request_string(req, NGX_CHAT_WIRE_F_CONV);
    req->name = chat_request_string(req, NGX_CHAT_WIRE_F_NAME);
    req->upload.id = chat_request_string(req, NGX_CHAT_WIRE_F_ATTACHMENT_ID);
    req->upload.content_type = chat_request_string(req,
                                               NGX_CHAT_WIRE_F_CONTENT_TYPE);
    req->upload.url = chat_request_string(req, NGX_CHAT_WIRE_F_URL);

    if (req->conv == NULL || req->conv[0] == '\0') {
        chat_bad("missing conv");
    }

    if (req->upload.id == NULL || req->upload.content_type == NULL
        || req->upload.url == NULL || req->name == NULL)
    {
        chat_bad("missing attachment_id, content_type, url or name");
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_SIZE, 0, &req->upload.size)
        || !chat_request_int(req, NGX_CHAT_WIRE_F_EXPIRES_AT, 0,
                             &req->upload.expires_at)
        || !chat_request_int(req, NGX_CHAT_WIRE_F_MAX_BYTES, 0,
                             &req->upload.max_bytes)
        || req->upload.size < 1)
    {
        chat_bad("size, expires_at or max_bytes is not an integer");
    }

    return CHAT_PARSE_OK;
}


/* uploaded: nginx's word that an upload's bytes are stored */
static chat_parse_rc_t
chat_ops_parse_uploaded(chat_request_t *req, char *why, size_t why_size)
{
    req->upload.id = chat_request_string(req, NGX_CHAT_WIRE_F_ATTACHMENT_ID);

    if (req->upload.id == NULL
        || !ngx_chat_media_valid_id(req->upload.id, strlen(req->upload.id)))
    {
        chat_bad("missing or invalid attachment_id");
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_SIZE, 0, &req->upload.size)
        || req->upload.size < 1)
    {
        chat_bad("size is not a positive integer");
    }

    return CHAT_PARSE_OK;
}


/* ---- store: the items to the store, its results into the items ---- */

/* the group conversations named, into the cache; false on stop (a load
 * the store refused leaves them out: nobody is a member then) */
static bool
chat_ops_load(chat_op_ctx_t *ctx, const char **convs, size_t n)
{
    return chat_store_load_members(ctx->store, ctx->members, convs, n)
           != CHAT_STORE_STOPPED;
}


/* an image's size in pixels and its thumbnail, made when a send attaches
 * it and they are not there yet: the uploaded record that makes them
 * (chat_ops_store_uploaded) was overtaken, or never came, or its thread
 * is on it; what members see of it, with them */
static const char *
chat_ops_image(chat_op_ctx_t *ctx, chat_upload_row_t *u)
{
    json_t  *o;
    char    *text;
    int      w, h;

    if (u->has_dims) {
        return u->json;
    }

    /* the images' thread may be making it now: waited for, not made
     * twice */
    switch (ctx->images ? chat_images_claim(ctx->images, u->id, &w, &h)
                        : CHAT_IMAGES_YOURS)
    {
    case CHAT_IMAGES_MADE:
        break;

    case CHAT_IMAGES_NONE:
        return u->json;

    case CHAT_IMAGES_YOURS:
        if (!chat_thumb_make(ctx->media, u->id, u->content_type, &w, &h)
            || chat_store_upload_dims(ctx->store, u->id, w, h)
               != CHAT_STORE_OK)
        {
            return u->json;
        }

        break;
    }

    u->has_dims = true;
    o = json_loads(u->json, 0, NULL);
    if (o == NULL) {
        return u->json;
    }

    json_object_set_new(o, "width", json_integer(w));
    json_object_set_new(o, "height", json_integer(h));
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);

    if (text) {
        u->json = chat_arena_strdup(ctx->arena, text);
        free(text);
    }

    return u->json;
}


/*
 * The sends that attach uploads: each id must be an upload this sender
 * announced in this conversation, not attached yet, whose bytes are
 * stored with the announced size; a send with any other is refused
 * whole (bad_request) before the store. The message carries what members
 * see of them, in the order given.
 */
static chat_store_rc_t
chat_ops_check_attachments(chat_op_ctx_t *ctx, chat_send_t **sends, size_t n)
{
    chat_upload_row_t  *rows;
    const char        **ids;
    chat_map_t          index = { 0 }, taken = { 0 };
    chat_buf_t          list = { 0 }, names = { 0 };
    chat_store_rc_t     rc;
    json_t             *id;
    size_t              i, k, r, nids = 0, nrows, dummy;
    bool                ok, retry;

    for (i = 0; i < n; i++) {
        if (sends[i]->req->attachments) {
            nids += json_array_size(sends[i]->req->attachments);
        }
    }

    if (nids == 0) {
        return CHAT_STORE_OK;
    }

    ids = chat_arena_alloc(ctx->arena, nids * sizeof(char *));
    nids = 0;

    for (i = 0; i < n; i++) {
        json_array_foreach(sends[i]->req->attachments, k, id) {
            ids[nids++] = json_string_value(id) ? json_string_value(id) : "";
        }
    }

    rc = chat_store_upload_rows(ctx->store, ids, nids, &rows, &nrows,
                                ctx->arena);
    if (rc != CHAT_STORE_OK) {
        return rc;
    }

    for (r = 0; r < nrows; r++) {
        chat_map_put(&index, rows[r].id, r);
    }

    for (i = 0; i < n; i++) {
        const chat_request_t  *req = sends[i]->req;

        if (req->attachments == NULL) {
            continue;
        }

        ok = true;
        retry = false;
        list.len = 0;
        names.len = 0;
        chat_buf_addc(&list, '[');

        json_array_foreach(req->attachments, k, id) {
            chat_upload_row_t        *u;

            if (!json_is_string(id)
                || !chat_map_get(&index, json_string_value(id), &r))
            {
                ok = false;
                break;
            }

            u = &rows[r];

            /* attached already by this very send: a retry, which the
             * store answers with the stored ack */
            if (u->attached && u->attached_cmid && req->cmid
                && strcmp(u->attached_cmid, req->cmid) == 0)
            {
                retry = true;
                break;
            }

            /* a send repeated in the batch may name them again */
            if (u->attached || strcmp(u->uploader, req->user) != 0
                || strcmp(u->conv, req->conv) != 0
                || (chat_map_get(&taken, u->id, &dummy)
                    && dummy != i)
                || ctx->media == NULL
                || !chat_media_stored(ctx->media, u->id, u->size))
            {
                ok = false;
                break;
            }

            if (k > 0) {
                chat_buf_addc(&list, ',');
                chat_buf_addc(&names, '\n');
            }
            chat_buf_adds(&list, chat_ops_image(ctx, u));
            chat_buf_adds(&names, u->name);
        }

        if (retry) {
            continue;
        }

        if (!ok) {
            sends[i]->bad_attachments = true;
            continue;
        }

        json_array_foreach(req->attachments, k, id) {
            chat_map_put(&taken, json_string_value(id), i);
        }

        chat_buf_addc(&list, ']');
        sends[i]->attachments = chat_arena_strdup(ctx->arena,
                                                  chat_buf_cstr(&list));
        sends[i]->names = chat_arena_strdup(ctx->arena,
                                            chat_buf_cstr(&names));
    }

    chat_buf_free(&list);
    chat_buf_free(&names);
    chat_map_free(&index);
    chat_map_free(&taken);

    return CHAT_STORE_OK;
}


static chat_store_rc_t
chat_ops_store_sends(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_send_t     **sends;
    chat_send_t      *s;
    const char      **convs;
    chat_store_rc_t   rc;
    size_t            i, nconvs = 0;

    sends = chat_arena_alloc(ctx->arena, n * sizeof(chat_send_t *));
    convs = chat_arena_alloc(ctx->arena, n * sizeof(char *));

    for (i = 0; i < n; i++) {
        s = &items[i]->u.send;
        memset(s, 0, sizeof(*s));
        s->req = items[i]->req;
        s->direct_forbidden = chat_direct_access(s->req->conv, s->req->user)
                              == NGX_CHAT_WIRE_FORBIDDEN;
        sends[i] = s;
    }

    rc = chat_ops_check_attachments(ctx, sends, n);
    if (rc != CHAT_STORE_OK) {
        return rc;
    }

    rc = chat_store_sends(ctx->store, sends, n, ctx->arena);
    if (rc != CHAT_STORE_OK) {
        return rc;
    }

    /* the fan-out needs the members of the groups written to */
    for (i = 0; i < n; i++) {
        s = sends[i];
        items[i]->replay = s->state == CHAT_SEND_REPLAY;
        if (items[i]->replay) {
            chat_metrics_replay(ctx->metrics);
        }

        if (ctx->media && s->msg.attachments) {
            s->msg.attachments = chat_media_sign_list(ctx->media,
                                                      s->msg.attachments,
                                                      chat_now_ms(),
                                                      ctx->arena);
        }

        if (s->state == CHAT_SEND_NEW || s->state == CHAT_SEND_REPLAY) {
            convs[nconvs++] = s->msg.conv;

            /* committed: searchable once the index has it (a replay's
             * may have been lost with its worker) */
            if (ctx->index) {
                chat_index_add(ctx->index, s->msg.message_id,
                               s->req->partition, s->req->offset,
                               chat_now_ms());
            }
        }
    }

    return chat_ops_load(ctx, convs, nconvs) ? CHAT_STORE_OK
                                             : CHAT_STORE_STOPPED;
}


/* fresh GET URLs for the attachments of messages read */
static void
chat_ops_sign(chat_op_ctx_t *ctx, chat_message_t *m, size_t n,
    chat_arena_t *arena)
{
    int64_t  now;
    size_t   i;

    if (ctx->media == NULL) {
        return;
    }

    now = chat_now_ms();

    for (i = 0; i < n; i++) {
        if (m[i].attachments) {
            m[i].attachments = chat_media_sign_list(ctx->media,
                                                    m[i].attachments, now,
                                                    arena);
        }
    }
}


/* edit, delete, react: each alone, in its own transaction; the fan-out
 * needs the members of the group changed */
static chat_store_rc_t
chat_ops_store_changes(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_send_t      *s;
    chat_store_rc_t   rc;
    size_t            i;

    for (i = 0; i < n; i++) {
        s = &items[i]->u.send;
        memset(s, 0, sizeof(*s));
        s->req = items[i]->req;
        s->direct_forbidden = chat_direct_access(s->req->conv, s->req->user)
                              == NGX_CHAT_WIRE_FORBIDDEN;

        rc = chat_store_change(ctx->store, s, ctx->arena);
        if (rc != CHAT_STORE_OK) {
            return rc;
        }

        items[i]->replay = s->state == CHAT_SEND_REPLAY;

        if ((s->state == CHAT_SEND_NEW || s->state == CHAT_SEND_REPLAY)
            && !chat_ops_load(ctx, &s->msg.conv, 1))
        {
            return CHAT_STORE_STOPPED;
        }
    }

    return CHAT_STORE_OK;
}


/* block, unblock: each alone, so that the sends after it in the batch
 * meet it */
static chat_store_rc_t
chat_ops_store_block(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_block_t     *b;
    chat_store_rc_t   rc;
    size_t            i;

    for (i = 0; i < n; i++) {
        b = &items[i]->u.block;
        memset(b, 0, sizeof(*b));
        b->req = items[i]->req;

        rc = chat_store_block(ctx->store, b, ctx->arena);
        if (rc != CHAT_STORE_OK) {
            return rc;
        }
    }

    return CHAT_STORE_OK;
}


/* the messages of convs[from..] that one chunk takes: at least one
 * conversation's, at most CHAT_OPS_SYNC_CHUNK unless one alone has more */
static size_t
chat_ops_sync_chunk(const chat_sync_conv_t *convs, size_t from, size_t to)
{
    int64_t  want, total = 0;
    size_t   k;

    for (k = from; k < to; k++) {
        want = convs[k].last_seq - convs[k].after_seq;
        want = want < 0 ? 0 : want > NGX_CHAT_WIRE_SYNC_CAP
                              ? NGX_CHAT_WIRE_SYNC_CAP : want;

        if (k > from && total + want > CHAT_OPS_SYNC_CHUNK) {
            break;
        }

        total += want;
    }

    return k - from;
}


/*
 * A sync's answer, its list read: the conversations frame, each listed
 * conversation's messages a chunk at a time, sync_done, into the stream.
 * A Redis that failed under it (and came back) has it written again from
 * the start; a chunk the store refused fails the sync (internal).
 */
static chat_store_rc_t
chat_ops_stream_sync(chat_op_ctx_t *ctx, chat_item_t *item)
{
    chat_sync_rows_t  *s = &item->u.read.sync;
    chat_arena_t       chunk;
    chat_store_rc_t    rc;
    size_t             listed, i, n;

    for ( ;; ) {
        chat_stream_begin(ctx->stream, item->req->sid);
        listed = chat_answer_sync_list(ctx, item);

        for (i = 0; i < listed && !chat_stream_broken(ctx->stream); i += n) {
            n = chat_ops_sync_chunk(s->convs, i, listed);

            memset(&chunk, 0, sizeof(chunk));
            rc = chat_store_sync_messages(ctx->store, &s->convs[i], n, s,
                                          &chunk);

            if (rc == CHAT_STORE_OK) {
                chat_ops_sign(ctx, s->messages, s->nmessages, &chunk);
                chat_answer_sync_messages(ctx, item);
            }

            s->messages = NULL;
            s->nmessages = 0;
            chat_arena_free(&chunk);

            if (rc != CHAT_STORE_OK) {
                chat_stream_abandon(ctx->stream);

                if (rc == CHAT_STORE_STOPPED) {
                    return rc;
                }

                item->failed = true;
                return CHAT_STORE_OK;
            }
        }

        chat_answer_sync_done(ctx, item);

        switch (chat_stream_end(ctx->stream, &item->streamed, ctx->arena)) {

        case CHAT_STREAM_DONE:
            return CHAT_STORE_OK;

        case CHAT_STREAM_STOPPED:
            return CHAT_STORE_STOPPED;

        case CHAT_STREAM_AGAIN:
            break;
        }
    }
}


/* the reads: one snapshot for all of them; then the syncs' answers,
 * which read on as they are written */
static chat_store_rc_t
chat_ops_store_reads(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_read_t     **reads;
    chat_store_rc_t   rc;
    size_t            i, k;

    reads = chat_arena_alloc(ctx->arena, n * sizeof(chat_read_t *));

    for (i = 0; i < n; i++) {
        reads[i] = &items[i]->u.read;
        memset(reads[i], 0, sizeof(chat_read_t));
        reads[i]->req = items[i]->req;
    }

    rc = chat_store_reads(ctx->store, reads, n, ctx->arena);
    if (rc != CHAT_STORE_OK) {
        return rc;
    }

    for (i = 0; i < n; i++) {
        chat_ops_sign(ctx, reads[i]->history.messages, reads[i]->history.n,
                      ctx->arena);

        for (k = 0; k < reads[i]->search.n; k++) {
            chat_ops_sign(ctx, &reads[i]->search.rows[k].msg, 1, ctx->arena);
        }
    }

    for (i = 0; i < n; i++) {
        if (items[i]->req->op != NGX_CHAT_WIRE_OP_SYNC) {
            continue;
        }

        rc = chat_ops_stream_sync(ctx, items[i]);
        if (rc != CHAT_STORE_OK) {
            return rc;
        }
    }

    return CHAT_STORE_OK;
}


/* a membership change: its own transaction; the cache learns of it in
 * the same step, so that the records after it see it */
static chat_store_rc_t
chat_ops_store_group(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_group_op_t  *op;
    chat_store_rc_t   rc;
    size_t            i;

    for (i = 0; i < n; i++) {
        op = &items[i]->u.group;
        memset(op, 0, sizeof(*op));
        op->req = items[i]->req;
        op->max_members = ctx->max_group_members;

        rc = chat_store_group_op(ctx->store, op, ctx->arena);
        if (rc != CHAT_STORE_OK) {
            return rc;
        }

        if (op->rc == CHAT_GROUP_DONE) {
            chat_members_set(ctx->members, op->req->conv, op->members,
                             op->nmembers);
        }

        if (op->req->admin) {
            chat_ops_audit(op->req, op->rc != CHAT_GROUP_DONE ? "forbidden"
                                    : op->changed ? "done" : "unchanged");
        }
    }

    return CHAT_STORE_OK;
}


static chat_store_rc_t
chat_ops_store_receipts(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_receipt_t        **r;
    const char            **convs;
    const chat_members_t   *g;
    chat_store_rc_t         rc;
    size_t                  i;

    r = chat_arena_alloc(ctx->arena, n * sizeof(chat_receipt_t *));
    convs = chat_arena_alloc(ctx->arena, n * sizeof(char *));

    for (i = 0; i < n; i++) {
        r[i] = &items[i]->u.receipt;
        memset(r[i], 0, sizeof(*r[i]));
        r[i]->req = items[i]->req;
        r[i]->rc = CHAT_RECEIPT_FORBIDDEN;
        convs[i] = items[i]->req->conv;
    }

    rc = chat_store_receipts(ctx->store, r, n, ctx->arena);

    if (rc == CHAT_STORE_STOPPED || !chat_ops_load(ctx, convs, n)) {
        return CHAT_STORE_STOPPED;
    }

    if (rc != CHAT_STORE_OK || ctx->receipt_fanout_max == 0) {
        return rc;
    }

    /* groups over the limit hear of a receipt only where it matters:
     * the reader's devices and the senders whose messages it covers */
    for (i = 0; i < n; i++) {
        g = chat_members_find(ctx->members, convs[i]);
        r[i]->coalesce = g != NULL
                         && chat_members_count(g) > ctx->receipt_fanout_max;
    }

    return chat_store_receipt_senders(ctx->store, r, n, ctx->arena);
}


/* typing is never stored: this step only asks the membership cache
 * (loaded from PostgreSQL when it lacks a group) who may type, and, for
 * direct conversations, the blocks: nginx's script hides a blocked
 * pair's typing without a word to either, and so does this way */
static chat_store_rc_t
chat_ops_store_typing(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    const chat_members_t  *g;
    const chat_request_t  *req;
    const char           **convs, **a, **b;
    chat_store_rc_t        rc;
    chat_item_t          **direct;
    bool                  *blocked;
    size_t                 i, nd = 0;
    char                  *da, *db;

    convs = chat_arena_alloc(ctx->arena, n * sizeof(char *));
    direct = chat_arena_alloc(ctx->arena, n * sizeof(chat_item_t *));
    a = chat_arena_alloc(ctx->arena, n * sizeof(char *));
    b = chat_arena_alloc(ctx->arena, n * sizeof(char *));
    blocked = chat_arena_alloc(ctx->arena, n * sizeof(bool));

    for (i = 0; i < n; i++) {
        convs[i] = items[i]->req->conv;
    }

    if (!chat_ops_load(ctx, convs, n)) {
        return CHAT_STORE_STOPPED;
    }

    for (i = 0; i < n; i++) {
        req = items[i]->req;
        items[i]->u.typing.hidden = false;

        switch (chat_direct_access(req->conv, req->user)) {

        case NGX_CHAT_WIRE_ALLOWED:
            items[i]->u.typing.allowed = true;

            da = chat_arena_alloc(ctx->arena, NGX_CHAT_WIRE_ID_MAX + 1);
            db = chat_arena_alloc(ctx->arena, NGX_CHAT_WIRE_ID_MAX + 1);

            if (chat_parse_dm(req->conv, da, db)) {
                a[nd] = da;
                b[nd] = db;
                direct[nd++] = items[i];
            }
            break;

        case NGX_CHAT_WIRE_ASK_STORE:
            g = chat_members_find(ctx->members, req->conv);
            items[i]->u.typing.allowed = g != NULL
                                         && chat_members_has(g, req->user);
            break;

        case NGX_CHAT_WIRE_FORBIDDEN:
            items[i]->u.typing.allowed = false;
            break;
        }
    }

    if (nd == 0) {
        return CHAT_STORE_OK;
    }

    rc = chat_store_blocked_pairs(ctx->store, a, b, nd, blocked);
    if (rc != CHAT_STORE_OK) {
        return rc;
    }

    for (i = 0; i < nd; i++) {
        direct[i]->u.typing.hidden = blocked[i];
    }

    return CHAT_STORE_OK;
}


/* an operator's op, in the log: who asked for what, and what came of it */
static void
chat_ops_audit(const chat_request_t *req, const char *result)
{
    chat_log_line_t  l;

    chat_log_begin(&l, "info", "operator_op");
    chat_log_str(&l, "op", ngx_chat_wire_op_name(req->op));
    chat_log_str(&l, "admin", req->admin);
    chat_log_int(&l, "partition", req->partition);
    chat_log_int(&l, "offset", req->offset);

    if (req->conv) {
        chat_log_str(&l, "conv", req->conv);
    }

    if (req->target) {
        chat_log_str(&l, "user", req->target);
    }

    if (req->role) {
        chat_log_str(&l, "role", req->role);
    }

    if (req->message_id > 0) {
        chat_log_int(&l, "message_id", req->message_id);
    }

    chat_log_str(&l, "result", result);
    chat_log_end(&l);
}


/* revocations: stored, then into Redis (after the COMMIT: Redis holds
 * only what PostgreSQL does) */
static chat_store_rc_t
chat_ops_store_revoke(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    const chat_request_t  **reqs, *req;
    chat_store_rc_t         rc;
    size_t                  i;

    reqs = chat_arena_alloc(ctx->arena, n * sizeof(chat_request_t *));

    for (i = 0; i < n; i++) {
        reqs[i] = items[i]->req;
    }

    rc = chat_store_revoke(ctx->store, reqs, n);
    if (rc != CHAT_STORE_OK) {
        return rc;
    }

    for (i = 0; i < n; i++) {
        req = reqs[i];

        if (!chat_control_revoked(ctx->control, req->admin, req->target,
                                  req->target_dev, req->ts))
        {
            return CHAT_STORE_STOPPED;
        }
    }

    return CHAT_STORE_OK;
}


/* a redaction: its own transaction; the members are loaded for the
 * fan-out of its system message */
static chat_store_rc_t
chat_ops_store_redact(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    static const char  *results[] = { "done", "not_found", "already" };

    chat_redact_t    *r;
    chat_store_rc_t   rc;
    const char      **convs;
    size_t            i, nconvs = 0;

    convs = chat_arena_alloc(ctx->arena, n * sizeof(char *));

    for (i = 0; i < n; i++) {
        r = &items[i]->u.redact;
        memset(r, 0, sizeof(*r));
        r->req = items[i]->req;

        rc = chat_store_redact(ctx->store, r, ctx->arena);
        if (rc != CHAT_STORE_OK) {
            return rc;
        }

        chat_ops_audit(r->req, results[r->rc]);

        if (r->rc == CHAT_REDACT_DONE && !chat_is_dm_id(r->req->conv)) {
            convs[nconvs++] = r->req->conv;
        }
    }

    return chat_ops_load(ctx, convs, nconvs) ? CHAT_STORE_OK
                                             : CHAT_STORE_STOPPED;
}


static chat_store_rc_t
chat_ops_store_repairs(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_repair_t   **r;
    chat_store_rc_t   rc;
    size_t            i, k;

    r = chat_arena_alloc(ctx->arena, n * sizeof(chat_repair_t *));

    for (i = 0; i < n; i++) {
        r[i] = &items[i]->u.repair;
        memset(r[i], 0, sizeof(chat_repair_t));
        r[i]->req = items[i]->req;
    }

    rc = chat_store_repairs(ctx->store, r, n, ctx->arena);
    if (rc != CHAT_STORE_OK) {
        return rc;
    }

    /* fresh GET URLs, as in history */
    for (i = 0; i < n; i++) {
        for (k = 0; k < r[i]->n; k++) {
            chat_ops_sign(ctx, &r[i]->rows[k].msg, 1, ctx->arena);
        }
    }

    return CHAT_STORE_OK;
}


/* does url start with one of the comma separated prefixes (none: any)? */
static bool
chat_ops_endpoint_allowed(const char *prefixes, const char *url)
{
    const char  *p, *end;
    size_t       len;

    if (prefixes == NULL || prefixes[0] == '\0') {
        return true;
    }

    for (p = prefixes; *p; p = *end ? end + 1 : end) {
        end = strchr(p, ',');
        if (end == NULL) {
            end = p + strlen(p);
        }

        len = (size_t) (end - p);

        if (len > 0 && strncmp(url, p, len) == 0) {
            return true;
        }
    }

    return false;
}


static chat_store_rc_t
chat_ops_store_push(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_push_op_t  **ops;
    size_t            i;

    ops = chat_arena_alloc(ctx->arena, n * sizeof(chat_push_op_t *));

    for (i = 0; i < n; i++) {
        ops[i] = &items[i]->u.push;
        ops[i]->req = items[i]->req;
        ops[i]->refused = items[i]->req->op == NGX_CHAT_WIRE_OP_PUSH_REGISTER
                          && !chat_ops_endpoint_allowed(ctx->push_endpoints,
                                                  items[i]->req->endpoint);
    }

    return chat_store_push(ctx->store, ops, n);
}


/* uploads: who may post to the conversation, as for typing; then the
 * allowed ones recorded */
static chat_store_rc_t
chat_ops_store_uploads(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    chat_upload_op_t     **ops;
    const chat_members_t  *g;
    const chat_request_t  *req;
    const char           **convs;
    size_t                 i;

    ops = chat_arena_alloc(ctx->arena, n * sizeof(chat_upload_op_t *));
    convs = chat_arena_alloc(ctx->arena, n * sizeof(char *));

    for (i = 0; i < n; i++) {
        convs[i] = items[i]->req->conv;
    }

    if (!chat_ops_load(ctx, convs, n)) {
        return CHAT_STORE_STOPPED;
    }

    for (i = 0; i < n; i++) {
        req = items[i]->req;
        ops[i] = &items[i]->u.upload;
        ops[i]->req = req;

        switch (chat_direct_access(req->conv, req->user)) {

        case NGX_CHAT_WIRE_ALLOWED:
            ops[i]->allowed = true;
            break;

        case NGX_CHAT_WIRE_ASK_STORE:
            g = chat_members_find(ctx->members, req->conv);
            ops[i]->allowed = g != NULL && chat_members_has(g, req->user);
            break;

        case NGX_CHAT_WIRE_FORBIDDEN:
            ops[i]->allowed = false;
            break;
        }
    }

    return chat_store_uploads(ctx->store, ops, n);
}


/*
 * Uploaded records, after the batch's answers went out: each upload's
 * size in pixels and thumbnail, handed to the images' thread when there
 * is one (worker_images.h), so that the next batch does not wait for the
 * decoding either; made here when there is none or its queue is full.
 * Whatever does not fit (no such upload, no file or another size, no
 * image, bytes that do not decode) is logged and skipped: nobody waits
 * for an answer, and a send that attaches it checks the same again.
 */
static chat_store_rc_t
chat_ops_store_uploaded(chat_op_ctx_t *ctx, chat_item_t **items, size_t n)
{
    const chat_request_t  *req;
    size_t                 i;
    int                    w, h;

    for (i = 0; i < n; i++) {
        req = items[i]->req;

        /* the batch queued it when it began (worker_batch.c) */
        if (ctx->images
            && (chat_images_pending(ctx->images, req->upload.id)
                || chat_images_queue(ctx->images, req->upload.id,
                                     req->upload.size)))
        {
            continue;
        }

        (void) chat_images_make(ctx->store, ctx->media, req->upload.id,
                                req->upload.size, &w, &h);
    }

    return CHAT_STORE_OK;
}


/* ---- the table ---- */

static const chat_op_t  chat_ops[NGX_CHAT_WIRE_OP_COUNT] = {

    [NGX_CHAT_WIRE_OP_SEND] = {
        .op = NGX_CHAT_WIRE_OP_SEND,
        .stage = CHAT_STAGE_SEND,
        .tag = CHAT_TAG_CMID,
        .split = true,
        .refused = "the message could not be stored",
        .parse = chat_ops_parse_send,
        .store = chat_ops_store_sends,
        .answer = chat_answer_send,
        .fanout = chat_fanout_send,
        .push = chat_fanout_push
    },

    /* changes to a message: stored alone where they come, so that a
     * change sees the messages before it and none after */
    [NGX_CHAT_WIRE_OP_EDIT] = {
        .op = NGX_CHAT_WIRE_OP_EDIT,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_CMID,
        .split = false,
        .refused = "the change could not be stored",
        .parse = chat_ops_parse_change,
        .store = chat_ops_store_changes,
        .answer = chat_answer_send,
        .fanout = chat_fanout_send
    },

    [NGX_CHAT_WIRE_OP_DELETE] = {
        .op = NGX_CHAT_WIRE_OP_DELETE,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_CMID,
        .split = false,
        .refused = "the change could not be stored",
        .parse = chat_ops_parse_change,
        .store = chat_ops_store_changes,
        .answer = chat_answer_send,
        .fanout = chat_fanout_send
    },

    [NGX_CHAT_WIRE_OP_REACT] = {
        .op = NGX_CHAT_WIRE_OP_REACT,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_CMID,
        .split = false,
        .refused = "the change could not be stored",
        .parse = chat_ops_parse_change,
        .store = chat_ops_store_changes,
        .answer = chat_answer_send,
        .fanout = chat_fanout_send
    },

    [NGX_CHAT_WIRE_OP_BLOCK] = {
        .op = NGX_CHAT_WIRE_OP_BLOCK,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .refused = "the change failed",
        .parse = chat_ops_parse_block,
        .store = chat_ops_store_block,
        .answer = chat_answer_blocked,
        .fanout = chat_fanout_block
    },

    [NGX_CHAT_WIRE_OP_UNBLOCK] = {
        .op = NGX_CHAT_WIRE_OP_UNBLOCK,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .refused = "the change failed",
        .parse = chat_ops_parse_block,
        .store = chat_ops_store_block,
        .answer = chat_answer_blocked,
        .fanout = chat_fanout_block
    },

    [NGX_CHAT_WIRE_OP_SEARCH] = {
        .op = NGX_CHAT_WIRE_OP_SEARCH,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .refused = "the request failed",
        .parse = chat_ops_parse_search,
        .store = chat_ops_store_reads,
        .answer = chat_answer_search,
        .fanout = NULL
    },

    [NGX_CHAT_WIRE_OP_SYNC] = {
        .op = NGX_CHAT_WIRE_OP_SYNC,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .refused = "the request failed",
        .parse = chat_ops_parse_sync,
        .store = chat_ops_store_reads,
        .answer = chat_answer_sync,
        .fanout = NULL
    },

    [NGX_CHAT_WIRE_OP_HISTORY] = {
        .op = NGX_CHAT_WIRE_OP_HISTORY,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .refused = "the request failed",
        .parse = chat_ops_parse_history,
        .store = chat_ops_store_reads,
        .answer = chat_answer_history,
        .fanout = NULL
    },

    [NGX_CHAT_WIRE_OP_CONVERSATIONS] = {
        .op = NGX_CHAT_WIRE_OP_CONVERSATIONS,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .refused = "the request failed",
        .parse = chat_ops_parse_conversations,
        .store = chat_ops_store_reads,
        .answer = chat_answer_conversations,
        .fanout = NULL
    },

    [NGX_CHAT_WIRE_OP_RECEIPTS] = {
        .op = NGX_CHAT_WIRE_OP_RECEIPTS,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .refused = "the request failed",
        .parse = chat_ops_parse_receipts,
        .store = chat_ops_store_reads,
        .answer = chat_answer_receipts,
        .fanout = NULL
    },

    [NGX_CHAT_WIRE_OP_CREATE_GROUP] = {
        .op = NGX_CHAT_WIRE_OP_CREATE_GROUP,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .refused = "the change failed",
        .parse = chat_ops_parse_create,
        .store = chat_ops_store_group,
        .answer = chat_answer_group,
        .fanout = chat_fanout_group
    },

    [NGX_CHAT_WIRE_OP_ADD_MEMBERS] = {
        .op = NGX_CHAT_WIRE_OP_ADD_MEMBERS,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .refused = "the change failed",
        .parse = chat_ops_parse_members,
        .store = chat_ops_store_group,
        .answer = chat_answer_group,
        .fanout = chat_fanout_group
    },

    [NGX_CHAT_WIRE_OP_REMOVE_MEMBERS] = {
        .op = NGX_CHAT_WIRE_OP_REMOVE_MEMBERS,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .refused = "the change failed",
        .parse = chat_ops_parse_members,
        .store = chat_ops_store_group,
        .answer = chat_answer_group,
        .fanout = chat_fanout_group
    },

    /* a refused batch of receipts fails as a whole */
    [NGX_CHAT_WIRE_OP_RECEIPT] = {
        .op = NGX_CHAT_WIRE_OP_RECEIPT,
        .stage = CHAT_STAGE_RECEIPT,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .refused = "the receipt could not be stored",
        .parse = chat_ops_parse_receipt,
        .store = chat_ops_store_receipts,
        .answer = chat_answer_receipt,
        .fanout = chat_fanout_receipt
    },

    [NGX_CHAT_WIRE_OP_TYPING] = {
        .op = NGX_CHAT_WIRE_OP_TYPING,
        .stage = CHAT_STAGE_TYPING,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .refused = "the request failed",
        .parse = chat_ops_parse_typing,
        .store = chat_ops_store_typing,
        .answer = chat_answer_typing,
        .fanout = chat_fanout_typing
    },

    /* a member's role: an admin's (answered with the group frame) or an
     * operator's (chatctl groups promote|demote) */
    [NGX_CHAT_WIRE_OP_SET_ROLE] = {
        .op = NGX_CHAT_WIRE_OP_SET_ROLE,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .from = CHAT_FROM_EITHER,
        .refused = "the change failed",
        .parse = chat_ops_parse_set_role,
        .store = chat_ops_store_group,
        .answer = chat_answer_group,
        .fanout = chat_fanout_group
    },

    /* the store, then chat:revoked and chat:control: its store step does
     * both, there being nobody to answer and no frame to fan out */
    [NGX_CHAT_WIRE_OP_REVOKE] = {
        .op = NGX_CHAT_WIRE_OP_REVOKE,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .from = CHAT_FROM_OPERATOR,
        .refused = "the revocation failed",
        .parse = chat_ops_parse_revoke,
        .store = chat_ops_store_revoke,
        .answer = chat_answer_none,
        .fanout = NULL
    },

    [NGX_CHAT_WIRE_OP_REDACT] = {
        .op = NGX_CHAT_WIRE_OP_REDACT,
        .stage = CHAT_STAGE_MEMBERS,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .from = CHAT_FROM_OPERATOR,
        .refused = "the redaction failed",
        .parse = chat_ops_parse_redact,
        .store = chat_ops_store_redact,
        .answer = chat_answer_none,
        .fanout = chat_fanout_redact
    },

    /* a node's gap, read again from the store: its answer is the R record
     * to the node, its fan-out the messages to the node's sessions */
    [NGX_CHAT_WIRE_OP_REPAIR] = {
        .op = NGX_CHAT_WIRE_OP_REPAIR,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .nosession = true,
        .refused = "the repair failed",
        .parse = chat_ops_parse_repair,
        .store = chat_ops_store_repairs,
        .answer = chat_answer_repair,
        .fanout = chat_fanout_repair
    },

    /* a device's own setting: after the batch's sends, like the reads */
    [NGX_CHAT_WIRE_OP_PUSH_REGISTER] = {
        .op = NGX_CHAT_WIRE_OP_PUSH_REGISTER,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .refused = "the registration could not be stored",
        .parse = chat_ops_parse_push,
        .store = chat_ops_store_push,
        .answer = chat_answer_push,
        .fanout = NULL
    },

    /* after the batch's membership changes: they decide who may upload */
    [NGX_CHAT_WIRE_OP_UPLOAD] = {
        .op = NGX_CHAT_WIRE_OP_UPLOAD,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .refused = "the upload could not be recorded",
        .parse = chat_ops_parse_upload,
        .store = chat_ops_store_uploads,
        .answer = chat_answer_upload,
        .fanout = NULL
    },

    /* nginx's own record (a node's, never a session's: no client frame
     * becomes one): after the batch's delivery, so that no answer in the
     * batch waits for an image to be decoded */
    [NGX_CHAT_WIRE_OP_UPLOADED] = {
        .op = NGX_CHAT_WIRE_OP_UPLOADED,
        .stage = CHAT_STAGE_AFTER,
        .tag = CHAT_TAG_REQ_ID,
        .split = false,
        .nosession = true,
        .refused = "the upload's thumbnail could not be made",
        .parse = chat_ops_parse_uploaded,
        .store = chat_ops_store_uploaded,
        .answer = chat_answer_none,
        .fanout = NULL
    },

    [NGX_CHAT_WIRE_OP_PUSH_UNREGISTER] = {
        .op = NGX_CHAT_WIRE_OP_PUSH_UNREGISTER,
        .stage = CHAT_STAGE_READ,
        .tag = CHAT_TAG_REQ_ID,
        .split = true,
        .refused = "the registration could not be stored",
        .parse = chat_ops_parse_push,
        .store = chat_ops_store_push,
        .answer = chat_answer_push,
        .fanout = NULL
    },
};


bool
chat_ops_unknown(const chat_request_t *req)
{
    return req->op_name != NULL && chat_ops_find(req->op) == NULL;
}


const chat_op_t *
chat_ops_find(ngx_chat_wire_op_t op)
{
    const chat_op_t  *row;

    if ((unsigned) op >= NGX_CHAT_WIRE_OP_COUNT) {
        return NULL;
    }

    row = &chat_ops[op];

    /* an op of the wire without a row here is a hole in the table */
    return row->parse != NULL && row->op == op ? row : NULL;
}


/*
 * An operator's record: admin says who asked, and there is no session,
 * so whatever is wrong drops it. The admin stands for the user in what
 * the store writes (a system message's sender), on the operator's device.
 */
static chat_parse_rc_t
chat_ops_parse_operator(chat_request_t *req, const chat_op_t *row,
    char *why, size_t why_size)
{
    req->node = NULL;
    req->sid = NULL;
    req->admin = chat_request_string(req, NGX_CHAT_WIRE_F_ADMIN);

    if (row->from == CHAT_FROM_SESSION) {
        snprintf(why, why_size, "op \"%s\" is no operator's", req->op_name);
        return CHAT_PARSE_DROP;
    }

    if (!chat_valid_id(req->admin)) {
        req->admin = NULL;
        snprintf(why, why_size, "invalid admin");
        return CHAT_PARSE_DROP;
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_TS, 0, &req->ts)
        || req->ts < 1)
    {
        snprintf(why, why_size, "missing or invalid ts");
        return CHAT_PARSE_DROP;
    }

    req->user = req->admin;
    req->dev = CHAT_OPERATOR_DEVICE;

    return row->parse(req, why, why_size) == CHAT_PARSE_OK ? CHAT_PARSE_OK
                                                           : CHAT_PARSE_DROP;
}


/* a node's record: the node is where the answer goes; a fault cannot be
 * answered (no session), so the record is dropped */
static chat_parse_rc_t
chat_ops_parse_node(chat_request_t *req, const chat_op_t *row, char *why,
    size_t why_size)
{
    req->sid = NULL;
    req->node = chat_request_string(req, NGX_CHAT_WIRE_F_NODE);

    if (req->node == NULL
        || !ngx_chat_wire_valid_node(req->node, strlen(req->node)))
    {
        req->node = NULL;
        snprintf(why, why_size, "missing or invalid node");
        return CHAT_PARSE_DROP;
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_TS, 0, &req->ts)) {
        snprintf(why, why_size, "ts is not an integer");
        return CHAT_PARSE_DROP;
    }

    return row->parse(req, why, why_size) == CHAT_PARSE_OK ? CHAT_PARSE_OK
                                                           : CHAT_PARSE_DROP;
}


chat_parse_rc_t
chat_ops_parse(chat_request_t *req, const char *payload, size_t len,
    char *why, size_t why_size)
{
    const chat_op_t  *row;
    chat_parse_rc_t   rc;

    rc = chat_request_parse(req, payload, len, why, why_size);
    if (rc == CHAT_PARSE_DROP) {
        return rc;
    }

    row = chat_ops_find(req->op);

    if (rc == CHAT_PARSE_OK && row == NULL) {
        snprintf(why, why_size, "op \"%s\" has no row in this worker",
                 req->op_name);
        rc = CHAT_PARSE_BAD;
    }

    if (rc == CHAT_PARSE_OK && row->nosession) {
        return chat_ops_parse_node(req, row, why, why_size);
    }

    if (rc == CHAT_PARSE_OK
        && chat_request_json(req, NGX_CHAT_WIRE_F_ADMIN) != NULL)
    {
        return chat_ops_parse_operator(req, row, why, why_size);
    }

    /* nobody to answer: whatever else is wrong, the record is dropped */
    if (req->node == NULL) {
        if (rc == CHAT_PARSE_OK) {
            snprintf(why, why_size, "missing or invalid node or sid");
        }

        return CHAT_PARSE_DROP;
    }

    if (rc != CHAT_PARSE_OK) {
        return rc;
    }

    /* taken before the other checks, so that their errors carry it */
    if (row->tag == CHAT_TAG_CMID) {
        req->cmid = chat_request_string(req, NGX_CHAT_WIRE_F_CMID);
    }

    rc = chat_request_check(req, why, why_size);
    if (rc != CHAT_PARSE_OK) {
        return rc;
    }

    if (row->from == CHAT_FROM_OPERATOR) {
        snprintf(why, why_size, "op \"%s\" is an operator's",
                 req->op_name);
        return CHAT_PARSE_BAD;
    }

    return row->parse(req, why, why_size);
}
