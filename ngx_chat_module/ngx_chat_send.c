/*
 * ngx_chat_send.c: the fast path of the protocol layer for the frame that
 * carries the load, a well-formed "send". It scans the flat object once,
 * checks exactly what ngx_chat_proto_send checks, and writes the Kafka
 * record directly, the body's JSON string copied as it came.
 *
 * It only ever says yes: a key it does not know, a repeated key, a \u
 * escape, a nested value, a value of the wrong type, a field over its
 * limit, anything else, and it hands the frame to the general path
 * (jansson), which gives the answer, errors included. So the two paths
 * cannot disagree about what is accepted (the unit tests and fuzz_proto
 * compare them).
 *
 * Parsing and building a DOM for every send, and serializing another for
 * its record, was most of nginx's own CPU per message.
 *
 * Like the general path, it is given text frames only, whose UTF-8 the
 * frame layer has checked: it does not check it again.
 *
 * Pure C: the unit tests and the fuzzers link this file.
 */

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_chat_proto.h"


enum {
    NGX_CHAT_SEND_TYPE = 0,
    NGX_CHAT_SEND_CMID,
    NGX_CHAT_SEND_BODY,
    NGX_CHAT_SEND_TO,
    NGX_CHAT_SEND_CONV,
    NGX_CHAT_SEND_FIELDS
};


typedef struct {
    const char  *start;     /* inside the quotes */
    size_t       len;
    int          escaped;   /* has a backslash escape */
} ngx_chat_send_string_t;


typedef struct {
    const char  *name;
    size_t       len;
} ngx_chat_send_key_t;


#define ngx_chat_send_key(s)  { s, sizeof(s) - 1 }
#define ngx_chat_send_lit(p, s)  ngx_chat_send_put(p, s, sizeof(s) - 1)

static const ngx_chat_send_key_t  ngx_chat_send_keys[NGX_CHAT_SEND_FIELDS] = {
    ngx_chat_send_key("type"),
    ngx_chat_send_key("client_msg_id"),
    ngx_chat_send_key("body"),
    ngx_chat_send_key("to"),
    ngx_chat_send_key("conversation_id")
};


static const char *
ngx_chat_send_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }

    return p;
}


/*
 * A JSON string from p (at its opening quote) to after its closing quote;
 * NULL for what the fast path leaves alone: a control character (invalid
 * JSON) or a \u escape (jansson decides about NULs and surrogates).
 */
static const char *
ngx_chat_send_string(const char *p, const char *end,
    ngx_chat_send_string_t *str)
{
    if (p == end || *p != '"') {
        return NULL;
    }

    str->start = ++p;
    str->escaped = 0;

    while (p < end) {
        unsigned char  c = (unsigned char) *p;

        if (c == '"') {
            str->len = p - str->start;
            return p + 1;
        }

        if (c < 0x20) {
            return NULL;
        }

        if (c == '\\') {
            if (p + 1 == end) {
                return NULL;
            }

            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                str->escaped = 1;
                p += 2;
                continue;
            default:
                return NULL;
            }
        }

        p++;
    }

    return NULL;
}


/* bytes that would need escaping in a record */
static int
ngx_chat_send_plain(const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) s[i];

        if (c < 0x20 || c == '"' || c == '\\') {
            return 0;
        }
    }

    return 1;
}


static char *
ngx_chat_send_put(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}


int
ngx_chat_proto_send_fast(const ngx_chat_proto_peer_t *peer, const char *text,
    size_t len, ngx_chat_proto_result_t *res)
{
    char                    conv[NGX_CHAT_PROTO_KEY_MAX];
    char                   *record, *p;
    size_t                  conv_len, size, i;
    const char             *end, *q;
    ngx_chat_send_string_t  key, f[NGX_CHAT_SEND_FIELDS];
    int                     seen[NGX_CHAT_SEND_FIELDS];
    json_t                 *tag;

    end = text + len;
    memset(seen, 0, sizeof(seen));

    q = ngx_chat_send_ws(text, end);
    if (q == end || *q != '{') {
        return 0;
    }

    q = ngx_chat_send_ws(q + 1, end);

    for ( ;; ) {
        q = ngx_chat_send_string(q, end, &key);
        if (q == NULL || key.escaped) {
            return 0;
        }

        for (i = 0; i < NGX_CHAT_SEND_FIELDS; i++) {
            if (ngx_chat_send_keys[i].len == key.len
                && memcmp(ngx_chat_send_keys[i].name, key.start, key.len)
                   == 0)
            {
                break;
            }
        }

        if (i == NGX_CHAT_SEND_FIELDS || seen[i]) {
            return 0;
        }

        seen[i] = 1;

        q = ngx_chat_send_ws(q, end);
        if (q == end || *q != ':') {
            return 0;
        }

        q = ngx_chat_send_string(ngx_chat_send_ws(q + 1, end), end, &f[i]);
        if (q == NULL) {
            return 0;
        }

        q = ngx_chat_send_ws(q, end);
        if (q == end) {
            return 0;
        }

        if (*q == '}') {
            break;
        }

        if (*q != ',') {
            return 0;
        }

        q = ngx_chat_send_ws(q + 1, end);
    }

    if (ngx_chat_send_ws(q + 1, end) != end) {
        return 0;
    }

    /* what ngx_chat_proto_send accepts, and nothing it would refuse */

    if (!seen[NGX_CHAT_SEND_TYPE] || f[NGX_CHAT_SEND_TYPE].escaped
        || f[NGX_CHAT_SEND_TYPE].len != 4
        || memcmp(f[NGX_CHAT_SEND_TYPE].start, "send", 4) != 0)
    {
        return 0;
    }

    if (!seen[NGX_CHAT_SEND_CMID] || f[NGX_CHAT_SEND_CMID].escaped
        || f[NGX_CHAT_SEND_CMID].len == 0
        || ngx_chat_wire_chars(f[NGX_CHAT_SEND_CMID].start,
                                f[NGX_CHAT_SEND_CMID].len)
           > NGX_CHAT_WIRE_CMID_MAX)
    {
        return 0;
    }

    if (!seen[NGX_CHAT_SEND_BODY] || f[NGX_CHAT_SEND_BODY].len == 0) {
        return 0;
    }

    if (seen[NGX_CHAT_SEND_TO] == seen[NGX_CHAT_SEND_CONV]) {
        return 0;
    }

    if (seen[NGX_CHAT_SEND_TO]) {
        if (f[NGX_CHAT_SEND_TO].escaped
            || !ngx_chat_wire_valid_id(f[NGX_CHAT_SEND_TO].start,
                                       f[NGX_CHAT_SEND_TO].len))
        {
            return 0;
        }

        conv_len = ngx_chat_wire_direct_id(conv, peer->user, peer->user_len,
                                           f[NGX_CHAT_SEND_TO].start,
                                           f[NGX_CHAT_SEND_TO].len);

    } else {
        conv_len = f[NGX_CHAT_SEND_CONV].len;

        if (f[NGX_CHAT_SEND_CONV].escaped || conv_len == 0
            || conv_len > NGX_CHAT_WIRE_CONV_MAX
            || !ngx_chat_send_plain(f[NGX_CHAT_SEND_CONV].start, conv_len)
            || ngx_chat_wire_direct_access(f[NGX_CHAT_SEND_CONV].start,
                                           conv_len, peer->user,
                                           peer->user_len)
               == NGX_CHAT_WIRE_FORBIDDEN)
        {
            return 0;
        }

        memcpy(conv, f[NGX_CHAT_SEND_CONV].start, conv_len);
        conv[conv_len] = '\0';
    }

    /* the identity goes into the record unescaped: ids are plain by
     * construction, the node is checked all the same */
    if (!ngx_chat_send_plain(f[NGX_CHAT_SEND_CMID].start,
                             f[NGX_CHAT_SEND_CMID].len)
        || !ngx_chat_send_plain(peer->node, peer->node_len)
        || !ngx_chat_send_plain(peer->user, peer->user_len)
        || !ngx_chat_send_plain(peer->device, peer->device_len))
    {
        return 0;
    }

    tag = json_stringn(f[NGX_CHAT_SEND_CMID].start, f[NGX_CHAT_SEND_CMID].len);
    if (tag == NULL) {
        return 0;
    }

    size = sizeof("{\"" NGX_CHAT_WIRE_F_CONV "\":\"\",\"" NGX_CHAT_WIRE_F_CMID
                  "\":\"\",\"" NGX_CHAT_WIRE_F_BODY "\":\"\",}")
           + conv_len + f[NGX_CHAT_SEND_CMID].len + f[NGX_CHAT_SEND_BODY].len
           + ngx_chat_wire_record_common_size(peer, NGX_CHAT_WIRE_OP_SEND);

    record = malloc(size);
    if (record == NULL) {
        json_decref(tag);
        return 0;
    }

    /* the keys in the order the general path writes them */
    p = ngx_chat_send_lit(record, "{\"" NGX_CHAT_WIRE_F_CONV "\":\"");
    p = ngx_chat_send_put(p, conv, conv_len);
    p = ngx_chat_send_lit(p, "\",\"" NGX_CHAT_WIRE_F_CMID "\":\"");
    p = ngx_chat_send_put(p, f[NGX_CHAT_SEND_CMID].start,
                          f[NGX_CHAT_SEND_CMID].len);
    p = ngx_chat_send_lit(p, "\",\"" NGX_CHAT_WIRE_F_BODY "\":\"");
    p = ngx_chat_send_put(p, f[NGX_CHAT_SEND_BODY].start,
                          f[NGX_CHAT_SEND_BODY].len);
    p = ngx_chat_send_lit(p, "\",");
    p = ngx_chat_wire_record_common(p, peer, NGX_CHAT_WIRE_OP_SEND);
    *p++ = '}';
    *p = '\0';

    res->record = record;
    res->record_len = p - record;
    res->is_send = 1;
    memcpy(res->key, conv, conv_len + 1);
    res->key_len = conv_len;
    res->tag_name = "client_msg_id";
    res->tag_value = tag;

    return 1;
}
