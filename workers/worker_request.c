/*
 * worker_request.c: the envelope of a Kafka record of the requests topic:
 * JSON to a chat_request_t that says where to answer, who asks and which
 * op; the fields of the record as the ops' parsers read them; the
 * identifier rules as the worker applies them.
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


bool
chat_request_ids(json_t *list)
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


json_t *
chat_request_json(const chat_request_t *req, const char *field)
{
    return json_object_get(req->root, field);
}


const char *
chat_request_string(const chat_request_t *req, const char *field)
{
    json_t  *v = json_object_get(req->root, field);

    return json_is_string(v) ? json_string_value(v) : NULL;
}


bool
chat_request_int(const chat_request_t *req, const char *field, int64_t dflt,
    int64_t *out)
{
    json_t  *v = json_object_get(req->root, field);

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


chat_parse_rc_t
chat_request_parse(chat_request_t *req, const char *payload, size_t len,
    char *why, size_t why_size)
{
    int            n;
    json_error_t   err;
    json_t        *root;
    int32_t        partition = req->partition;
    int64_t        offset = req->offset;

    memset(req, 0, sizeof(*req));
    req->partition = partition;
    req->offset = offset;
    req->op = NGX_CHAT_WIRE_OP_COUNT;
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

    /* where to answer: with it, every later fault can be answered with
     * bad_request instead of leaving the client waiting */
    req->node = chat_request_string(req, NGX_CHAT_WIRE_F_NODE);
    req->sid = chat_request_string(req, NGX_CHAT_WIRE_F_SID);

    if (req->node == NULL
        || !ngx_chat_wire_valid_node(req->node, strlen(req->node))
        || req->sid == NULL
        || !ngx_chat_wire_valid_sid(req->sid, strlen(req->sid)))
    {
        req->node = NULL;
        req->sid = NULL;
    }

    req->op_name = chat_request_string(req, NGX_CHAT_WIRE_F_OP);
    req->user = chat_request_string(req, NGX_CHAT_WIRE_F_USER);
    req->dev = chat_request_string(req, NGX_CHAT_WIRE_F_DEV);
    req->req_id = chat_request_json(req, NGX_CHAT_WIRE_F_REQ_ID);

    if (req->op_name == NULL) {
        snprintf(why, why_size, "missing op");
        return CHAT_PARSE_BAD;
    }

    n = ngx_chat_wire_op_find(req->op_name, strlen(req->op_name));

    if (n < 0) {
        snprintf(why, why_size, "unsupported op \"%.32s\"", req->op_name);
        return CHAT_PARSE_BAD;
    }

    req->op = (ngx_chat_wire_op_t) n;

    return CHAT_PARSE_OK;
}


chat_parse_rc_t
chat_request_check(chat_request_t *req, char *why, size_t why_size)
{
    if (req->user == NULL || !chat_valid_id(req->user)) {
        snprintf(why, why_size, "missing or invalid user");
        return CHAT_PARSE_BAD;
    }

    if (req->dev == NULL || !chat_valid_id(req->dev)) {
        snprintf(why, why_size, "missing or invalid dev");
        return CHAT_PARSE_BAD;
    }

    if (!chat_request_int(req, NGX_CHAT_WIRE_F_TS, 0, &req->ts)) {
        snprintf(why, why_size, "ts is not an integer");
        return CHAT_PARSE_BAD;
    }

    return CHAT_PARSE_OK;
}


void
chat_request_free(chat_request_t *req)
{
    json_decref(req->root);
    req->root = NULL;
}
