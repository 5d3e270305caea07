/*
 * worker_request.c: one Kafka record of topic chat.requests, from JSON to a
 * checked chat_request_t, and the identifier rules (user ids, direct
 * conversation ids, nodes, sessions).
 *
 * The nginx module validated the client's frame before producing the record;
 * the checks here protect the worker from records it cannot route or store
 * (another producer, an older module), not the protocol. Pure code: the unit
 * tests include this file.
 */

#include <stdio.h>
#include <string.h>

#include "worker_request.h"


bool
chat_parse_dm(const char *conv, char a[NGX_CHAT_WIRE_ID_MAX + 1],
    char b[NGX_CHAT_WIRE_ID_MAX + 1])
{
    const char  *pa, *pb;
    size_t       alen, blen;

    if (!ngx_chat_wire_parse_direct(conv, strlen(conv), &pa, &alen, &pb,
                                    &blen))
    {
        return false;
    }

    memcpy(a, pa, alen);
    a[alen] = '\0';
    memcpy(b, pb, blen);
    b[blen] = '\0';

    return true;
}


/* an array of user ids, as the module sends a group's members */
static bool
chat_valid_ids(json_t *list)
{
    size_t   i;
    json_t  *v;

    if (!json_is_array(list)) {
        return false;
    }

    json_array_foreach(list, i, v) {
        if (!json_is_string(v) || !chat_valid_id(json_string_value(v))) {
            return false;
        }
    }

    return true;
}


static const char *
chat_get_string(json_t *obj, const char *key)
{
    json_t  *v = json_object_get(obj, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}


/* an integer field: absent or null gives dflt, anything else not an
 * integer is an error */
static bool
chat_get_int(json_t *obj, const char *key, int64_t dflt, int64_t *out)
{
    json_t  *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return true;
    }

    if (!json_is_integer(v)) {
        return false;
    }

    *out = json_integer_value(v);

    return true;
}


#define chat_bad(...)                                                      \
    do {                                                                   \
        snprintf(why, why_size, __VA_ARGS__);                              \
        return req->node && req->sid ? CHAT_PARSE_BAD : CHAT_PARSE_DROP;   \
    } while (0)


chat_parse_rc_t
chat_request_parse(chat_request_t *req, const char *payload, size_t len,
    char *why, size_t why_size)
{
    int            n;
    json_error_t   err;
    const char    *op;
    json_t        *root;
    int32_t        partition = req->partition;
    int64_t        offset = req->offset;

    memset(req, 0, sizeof(*req));
    req->partition = partition;
    req->offset = offset;
    req->before_seq = -1;
    req->after_seq = -1;

    if (payload == NULL) {
        snprintf(why, why_size, "empty record");
        return CHAT_PARSE_DROP;
    }

    root = json_loadb(payload, len, 0, &err);
    if (root == NULL) {
        snprintf(why, why_size, "invalid JSON: %s at %d", err.text,
                 err.position);
        return CHAT_PARSE_DROP;
    }

    req->root = root;

    if (!json_is_object(root)) {
        snprintf(why, why_size, "not a JSON object");
        return CHAT_PARSE_DROP;
    }

    /* where to answer comes first: with it, every later fault can be
     * answered with bad_request instead of leaving the client waiting */
    req->node = chat_get_string(root, NGX_CHAT_WIRE_F_NODE);
    req->sid = chat_get_string(root, NGX_CHAT_WIRE_F_SID);

    if (req->node == NULL
        || !ngx_chat_wire_valid_node(req->node, strlen(req->node))
        || req->sid == NULL
        || !ngx_chat_wire_valid_sid(req->sid, strlen(req->sid)))
    {
        req->node = NULL;
        req->sid = NULL;
        snprintf(why, why_size, "missing or invalid node or sid");
        return CHAT_PARSE_DROP;
    }

    op = chat_get_string(root, NGX_CHAT_WIRE_F_OP);
    req->user = chat_get_string(root, NGX_CHAT_WIRE_F_USER);
    req->dev = chat_get_string(root, NGX_CHAT_WIRE_F_DEV);
    req->req_id = json_object_get(root, NGX_CHAT_WIRE_F_REQ_ID);

    if (op == NULL) {
        chat_bad("missing op");
    }

    n = ngx_chat_wire_op_find(op, strlen(op));

    if (n < 0) {
        chat_bad("unsupported op \"%.32s\"", op);
    }

    req->op = (ngx_chat_wire_op_t) n;

    if (req->op == NGX_CHAT_WIRE_OP_SEND) {
        req->cmid = chat_get_string(root, NGX_CHAT_WIRE_F_CMID);
    }

    if (req->user == NULL || !chat_valid_id(req->user)) {
        chat_bad("missing or invalid user");
    }

    if (req->dev == NULL || !chat_valid_id(req->dev)) {
        chat_bad("missing or invalid dev");
    }

    if (!chat_get_int(root, NGX_CHAT_WIRE_F_TS, 0, &req->ts)) {
        chat_bad("ts is not an integer");
    }

    switch (req->op) {

    case NGX_CHAT_WIRE_OP_SEND:
        req->conv = chat_get_string(root, NGX_CHAT_WIRE_F_CONV);
        req->body = chat_get_string(root, NGX_CHAT_WIRE_F_BODY);

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

        if (req->body == NULL || req->body[0] == '\0') {
            chat_bad("missing or empty body");
        }

        break;

    case NGX_CHAT_WIRE_OP_SYNC:
        req->cursors = json_object_get(root, NGX_CHAT_WIRE_F_CURSORS);

        if (json_is_null(req->cursors)) {
            req->cursors = NULL;
        }

        if (req->cursors && !json_is_object(req->cursors)) {
            chat_bad("cursors is not an object");
        }

        break;

    case NGX_CHAT_WIRE_OP_HISTORY:
        req->conv = chat_get_string(root, NGX_CHAT_WIRE_F_CONV);

        if (req->conv == NULL || req->conv[0] == '\0') {
            chat_bad("missing conv");
        }

        if (!chat_get_int(root, NGX_CHAT_WIRE_F_LIMIT, NGX_CHAT_WIRE_HISTORY_LIMIT, &req->limit)
            || req->limit < 1 || req->limit > NGX_CHAT_WIRE_HISTORY_MAX)
        {
            chat_bad("limit out of range");
        }

        if (!chat_get_int(root, NGX_CHAT_WIRE_F_BEFORE_SEQ, -1, &req->before_seq)
            || !chat_get_int(root, NGX_CHAT_WIRE_F_AFTER_SEQ, -1, &req->after_seq))
        {
            chat_bad("before_seq or after_seq is not an integer");
        }

        if (req->before_seq != -1 && req->after_seq != -1) {
            chat_bad("both before_seq and after_seq");
        }

        if (req->before_seq < -1 || req->after_seq < -1) {
            chat_bad("negative before_seq or after_seq");
        }

        break;

    case NGX_CHAT_WIRE_OP_CREATE_GROUP:
    case NGX_CHAT_WIRE_OP_ADD_MEMBERS:
    case NGX_CHAT_WIRE_OP_REMOVE_MEMBERS:
        req->conv = chat_get_string(root, NGX_CHAT_WIRE_F_CONV);
        req->name = chat_get_string(root, NGX_CHAT_WIRE_F_NAME);
        req->user_ids = json_object_get(root,
                                        req->op == NGX_CHAT_WIRE_OP_CREATE_GROUP
                                        ? NGX_CHAT_WIRE_F_MEMBERS
                                        : NGX_CHAT_WIRE_F_USER_IDS);

        if (req->conv == NULL || req->conv[0] == '\0'
            || chat_is_dm_id(req->conv))
        {
            chat_bad("missing conv or not a group");
        }

        if (req->op == NGX_CHAT_WIRE_OP_CREATE_GROUP
            && (req->name == NULL || req->name[0] == '\0'))
        {
            chat_bad("missing name");
        }

        if (!chat_valid_ids(req->user_ids)) {
            chat_bad("user ids missing or invalid");
        }

        if (req->op != NGX_CHAT_WIRE_OP_CREATE_GROUP
            && json_array_size(req->user_ids) == 0)
        {
            chat_bad("no user ids");
        }

        break;

    case NGX_CHAT_WIRE_OP_RECEIPT:
    case NGX_CHAT_WIRE_OP_TYPING:
        req->conv = chat_get_string(root, NGX_CHAT_WIRE_F_CONV);
        req->state = chat_get_string(root, NGX_CHAT_WIRE_F_STATE);

        if (req->conv == NULL || req->conv[0] == '\0') {
            chat_bad("missing conv");
        }

        if (req->state == NULL
            || (req->op == NGX_CHAT_WIRE_OP_RECEIPT
                ? strcmp(req->state, NGX_CHAT_WIRE_STATE_DELIVERED) != 0
                  && strcmp(req->state, NGX_CHAT_WIRE_STATE_READ) != 0
                : strcmp(req->state, NGX_CHAT_WIRE_STATE_START) != 0
                  && strcmp(req->state, NGX_CHAT_WIRE_STATE_STOP) != 0))
        {
            chat_bad("missing or invalid state");
        }

        if (req->op == NGX_CHAT_WIRE_OP_RECEIPT
            && (!chat_get_int(root, NGX_CHAT_WIRE_F_SEQ, 0, &req->seq)
                || req->seq < 1))
        {
            chat_bad("seq is not a positive integer");
        }

        break;

    default: /* NGX_CHAT_WIRE_OP_COUNT: ngx_chat_wire_op_find() never */
        chat_bad("unsupported op");
    }

    return CHAT_PARSE_OK;
}


void
chat_request_free(chat_request_t *req)
{
    json_decref(req->root);
    req->root = NULL;
}
