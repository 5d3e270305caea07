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

#include "worker.h"


bool
chat_valid_id(const char *s)
{
    size_t  n;

    for (n = 0; s[n]; n++) {
        unsigned char  c = s[n];

        if (n == CHAT_ID_MAX) {
            return false;
        }

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')
              || c == '_' || c == '.' || c == '@' || c == '-'))
        {
            return false;
        }
    }

    return n > 0;
}


/* session ids travel in the pub/sub record header, separated by ',' and
 * ended by ' ': a narrow alphabet keeps that header unambiguous */
bool
chat_valid_sid(const char *s)
{
    size_t  n;

    for (n = 0; s[n]; n++) {
        unsigned char  c = s[n];

        if (n == 64) {
            return false;
        }

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
        {
            return false;
        }
    }

    return n > 0;
}


/* a node names a Redis channel and ends a session value at its ' ' */
bool
chat_valid_node(const char *s)
{
    size_t  n;

    for (n = 0; s[n]; n++) {
        unsigned char  c = s[n];

        if (n == 256 || c <= ' ' || c >= 0x7f) {
            return false;
        }
    }

    return n > 0;
}


bool
chat_is_dm_id(const char *conv)
{
    return strncmp(conv, "dm:", 3) == 0;
}


bool
chat_parse_dm(const char *conv, char a[CHAT_ID_MAX + 1],
    char b[CHAT_ID_MAX + 1])
{
    const char  *first, *colon;
    size_t       alen;

    if (!chat_is_dm_id(conv)) {
        return false;
    }

    /* ':' is outside the id alphabet, so the split is unambiguous */
    first = conv + 3;
    colon = strchr(first, ':');
    if (colon == NULL) {
        return false;
    }

    alen = colon - first;
    if (alen == 0 || alen > CHAT_ID_MAX || strlen(colon + 1) > CHAT_ID_MAX) {
        return false;
    }

    memcpy(a, first, alen);
    a[alen] = '\0';
    strcpy(b, colon + 1);

    return chat_valid_id(a) && chat_valid_id(b) && strcmp(a, b) <= 0;
}


chat_access_t
chat_direct_access(const char *conv, const char *user)
{
    char  a[CHAT_ID_MAX + 1], b[CHAT_ID_MAX + 1];

    if (!chat_is_dm_id(conv)) {
        return CHAT_ACCESS_ASK_STORE;
    }

    if (!chat_parse_dm(conv, a, b)) {
        return CHAT_ACCESS_FORBIDDEN;
    }

    return strcmp(user, a) == 0 || strcmp(user, b) == 0
           ? CHAT_ACCESS_ALLOWED : CHAT_ACCESS_FORBIDDEN;
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


/* characters, not bytes: jansson has already checked the UTF-8 */
static size_t
chat_utf8_length(const char *s)
{
    size_t  n = 0;

    for ( /* void */ ; *s; s++) {
        if (((unsigned char) *s & 0xc0) != 0x80) {
            n++;
        }
    }

    return n;
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
    req->node = chat_get_string(root, "node");
    req->sid = chat_get_string(root, "sid");

    if (req->node == NULL || !chat_valid_node(req->node)
        || req->sid == NULL || !chat_valid_sid(req->sid))
    {
        req->node = NULL;
        req->sid = NULL;
        snprintf(why, why_size, "missing or invalid node or sid");
        return CHAT_PARSE_DROP;
    }

    op = chat_get_string(root, "op");
    req->user = chat_get_string(root, "user");
    req->dev = chat_get_string(root, "dev");
    req->req_id = json_object_get(root, "req_id");

    if (op == NULL) {
        chat_bad("missing op");
    }

    if (strcmp(op, "send") == 0) {
        req->op = CHAT_OP_SEND;
        req->cmid = chat_get_string(root, "cmid");

    } else if (strcmp(op, "sync") == 0) {
        req->op = CHAT_OP_SYNC;

    } else if (strcmp(op, "history") == 0) {
        req->op = CHAT_OP_HISTORY;

    } else if (strcmp(op, "create_group") == 0) {
        req->op = CHAT_OP_CREATE_GROUP;

    } else if (strcmp(op, "add_members") == 0) {
        req->op = CHAT_OP_ADD_MEMBERS;

    } else if (strcmp(op, "remove_members") == 0) {
        req->op = CHAT_OP_REMOVE_MEMBERS;

    } else if (strcmp(op, "receipt") == 0) {
        req->op = CHAT_OP_RECEIPT;

    } else if (strcmp(op, "typing") == 0) {
        req->op = CHAT_OP_TYPING;

    } else {
        chat_bad("unsupported op \"%.32s\"", op);
    }

    if (req->user == NULL || !chat_valid_id(req->user)) {
        chat_bad("missing or invalid user");
    }

    if (req->dev == NULL || !chat_valid_id(req->dev)) {
        chat_bad("missing or invalid dev");
    }

    if (!chat_get_int(root, "ts", 0, &req->ts)) {
        chat_bad("ts is not an integer");
    }

    switch (req->op) {

    case CHAT_OP_SEND:
        req->conv = chat_get_string(root, "conv");
        req->body = chat_get_string(root, "body");

        if (req->cmid == NULL || req->cmid[0] == '\0'
            || chat_utf8_length(req->cmid) > CHAT_ID_MAX)
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

    case CHAT_OP_SYNC:
        req->cursors = json_object_get(root, "cursors");

        if (json_is_null(req->cursors)) {
            req->cursors = NULL;
        }

        if (req->cursors && !json_is_object(req->cursors)) {
            chat_bad("cursors is not an object");
        }

        break;

    case CHAT_OP_HISTORY:
        req->conv = chat_get_string(root, "conv");

        if (req->conv == NULL || req->conv[0] == '\0') {
            chat_bad("missing conv");
        }

        if (!chat_get_int(root, "limit", CHAT_HISTORY_LIMIT, &req->limit)
            || req->limit < 1 || req->limit > CHAT_HISTORY_LIMIT_MAX)
        {
            chat_bad("limit out of range");
        }

        if (!chat_get_int(root, "before_seq", -1, &req->before_seq)
            || !chat_get_int(root, "after_seq", -1, &req->after_seq))
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

    case CHAT_OP_CREATE_GROUP:
    case CHAT_OP_ADD_MEMBERS:
    case CHAT_OP_REMOVE_MEMBERS:
        req->conv = chat_get_string(root, "conv");
        req->name = chat_get_string(root, "name");
        req->user_ids = json_object_get(root,
                                        req->op == CHAT_OP_CREATE_GROUP
                                        ? "members" : "user_ids");

        if (req->conv == NULL || req->conv[0] == '\0'
            || chat_is_dm_id(req->conv))
        {
            chat_bad("missing conv or not a group");
        }

        if (req->op == CHAT_OP_CREATE_GROUP
            && (req->name == NULL || req->name[0] == '\0'))
        {
            chat_bad("missing name");
        }

        if (!chat_valid_ids(req->user_ids)) {
            chat_bad("user ids missing or invalid");
        }

        if (req->op != CHAT_OP_CREATE_GROUP
            && json_array_size(req->user_ids) == 0)
        {
            chat_bad("no user ids");
        }

        break;

    case CHAT_OP_RECEIPT:
    case CHAT_OP_TYPING:
        req->conv = chat_get_string(root, "conv");
        req->state = chat_get_string(root, "state");

        if (req->conv == NULL || req->conv[0] == '\0') {
            chat_bad("missing conv");
        }

        if (req->state == NULL
            || (req->op == CHAT_OP_RECEIPT
                ? strcmp(req->state, "delivered") != 0
                  && strcmp(req->state, "read") != 0
                : strcmp(req->state, "start") != 0
                  && strcmp(req->state, "stop") != 0))
        {
            chat_bad("missing or invalid state");
        }

        if (req->op == CHAT_OP_RECEIPT
            && (!chat_get_int(root, "seq", 0, &req->seq) || req->seq < 1))
        {
            chat_bad("seq is not a positive integer");
        }

        break;
    }

    return CHAT_PARSE_OK;
}


void
chat_request_free(chat_request_t *req)
{
    json_decref(req->root);
    req->root = NULL;
}
