
/*
 * The wire between the nginx module and the workers (ngx_chat_wire.h):
 * checks of the ids, the direct conversation id, the common fields of a
 * Kafka record, Redis key names, the session registry value and the
 * records of a node payload, each written and read here only.
 */


#include <stdio.h>
#include <string.h>

#include "ngx_chat_wire.h"


static const char  *ngx_chat_wire_ops[NGX_CHAT_WIRE_OP_COUNT] = {
    "send",
    "sync",
    "history",
    "create_group",
    "add_members",
    "remove_members",
    "receipt",
    "typing",
    "repair",
    "revoke",
    "set_role",
    "redact",
    "conversations",
    "receipts",
    "push_register",
    "push_unregister",
    "upload",
    "edit",
    "delete",
    "react",
    "block",
    "unblock",
    "search",
    "uploaded"
};


static int
ngx_chat_wire_id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || c == '_' || c == '.' || c == '@' || c == '-';
}


int
ngx_chat_wire_valid_id(const char *p, size_t len)
{
    size_t  i;

    if (p == NULL || len == 0 || len > NGX_CHAT_WIRE_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!ngx_chat_wire_id_char((unsigned char) p[i])) {
            return 0;
        }
    }

    return 1;
}


/* sids travel in record headers between ',' and ' ': hex keeps them plain */
int
ngx_chat_wire_valid_sid(const char *p, size_t len)
{
    size_t  i;

    if (len != NGX_CHAT_WIRE_SID_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


/* a node names a Redis channel and ends a session value at its ' ' */
int
ngx_chat_wire_valid_node(const char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > NGX_CHAT_WIRE_NODE_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!ngx_chat_wire_id_char((unsigned char) p[i]) && p[i] != ':') {
            return 0;
        }
    }

    return 1;
}


/* the whole of [p, end) as an unsigned decimal: 1 to 18 digits, so that
 * it fits an int64_t whatever they are */
static int
ngx_chat_wire_decimal(const char *p, const char *end, int64_t *v)
{
    int64_t  n;

    if (p == end || end - p > 18) {
        return 0;
    }

    for (n = 0; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return 0;
        }

        n = n * 10 + (*p - '0');
    }

    *v = n;

    return 1;
}


static int
ngx_chat_wire_cmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
    int  rc;

    rc = memcmp(a, b, a_len < b_len ? a_len : b_len);

    if (rc != 0) {
        return rc;
    }

    return a_len < b_len ? -1 : a_len > b_len;
}


size_t
ngx_chat_wire_direct_id(char *conv, const char *a, size_t a_len,
    const char *b, size_t b_len)
{
    const char  *t;
    size_t       t_len;

    if (ngx_chat_wire_cmp(a, a_len, b, b_len) > 0) {
        t = a; t_len = a_len;
        a = b; a_len = b_len;
        b = t; b_len = t_len;
    }

    memcpy(conv, "dm:", 3);
    memcpy(conv + 3, a, a_len);
    conv[3 + a_len] = ':';
    memcpy(conv + 4 + a_len, b, b_len);
    conv[4 + a_len + b_len] = '\0';

    return 4 + a_len + b_len;
}


int
ngx_chat_wire_is_direct(const char *conv, size_t len)
{
    return len >= 3 && memcmp(conv, "dm:", 3) == 0;
}


int
ngx_chat_wire_parse_direct(const char *conv, size_t len, const char **a,
    size_t *a_len, const char **b, size_t *b_len)
{
    const char  *first, *colon;

    if (!ngx_chat_wire_is_direct(conv, len)) {
        return 0;
    }

    /* ':' is outside the id alphabet, so the split is unambiguous */
    first = conv + 3;
    colon = memchr(first, ':', len - 3);

    if (colon == NULL) {
        return 0;
    }

    *a = first;
    *a_len = colon - first;
    *b = colon + 1;
    *b_len = conv + len - (colon + 1);

    return ngx_chat_wire_valid_id(*a, *a_len)
           && ngx_chat_wire_valid_id(*b, *b_len)
           && ngx_chat_wire_cmp(*a, *a_len, *b, *b_len) <= 0;
}


ngx_chat_wire_access_t
ngx_chat_wire_direct_access(const char *conv, size_t len, const char *user,
    size_t user_len)
{
    const char  *a, *b;
    size_t       a_len, b_len;

    if (!ngx_chat_wire_is_direct(conv, len)) {
        return NGX_CHAT_WIRE_ASK_STORE;
    }

    if (!ngx_chat_wire_parse_direct(conv, len, &a, &a_len, &b, &b_len)) {
        return NGX_CHAT_WIRE_FORBIDDEN;
    }

    if ((a_len == user_len && memcmp(a, user, a_len) == 0)
        || (b_len == user_len && memcmp(b, user, b_len) == 0))
    {
        return NGX_CHAT_WIRE_ALLOWED;
    }

    return NGX_CHAT_WIRE_FORBIDDEN;
}


size_t
ngx_chat_wire_chars(const char *p, size_t len)
{
    size_t  chars;

    /* count the lead bytes: continuation bytes are 10xxxxxx */
    for (chars = 0; len; p++, len--) {
        chars += ((unsigned char) *p & 0xc0) != 0x80;
    }

    return chars;
}


const char *
ngx_chat_wire_op_name(ngx_chat_wire_op_t op)
{
    return (unsigned) op < NGX_CHAT_WIRE_OP_COUNT ? ngx_chat_wire_ops[op]
                                                  : NULL;
}


int
ngx_chat_wire_op_find(const char *name, size_t len)
{
    int  i;

    for (i = 0; i < NGX_CHAT_WIRE_OP_COUNT; i++) {
        if (strlen(ngx_chat_wire_ops[i]) == len
            && memcmp(ngx_chat_wire_ops[i], name, len) == 0)
        {
            return i;
        }
    }

    return -1;
}


#define ngx_chat_wire_put(p, s)                                              \
    (memcpy(p, s, sizeof(s) - 1), (p) + sizeof(s) - 1)

#define ngx_chat_wire_putn(p, s, n)                                          \
    (memcpy(p, s, n), (p) + (n))


size_t
ngx_chat_wire_uploaded_record(char *buf, const char *node, size_t node_len,
    int64_t ts, const char *id, size_t id_len, int64_t size)
{
    char  *p = buf;

    p = ngx_chat_wire_put(p, "{\"" NGX_CHAT_WIRE_F_OP "\":\"");
    p = ngx_chat_wire_putn(p, ngx_chat_wire_ops[NGX_CHAT_WIRE_OP_UPLOADED],
                           strlen(ngx_chat_wire_ops[NGX_CHAT_WIRE_OP_UPLOADED]));
    p = ngx_chat_wire_put(p, "\",\"" NGX_CHAT_WIRE_F_NODE "\":\"");
    p = ngx_chat_wire_putn(p, node, node_len);
    p = ngx_chat_wire_put(p, "\",\"" NGX_CHAT_WIRE_F_TS "\":");
    p += sprintf(p, "%lld", (long long) ts);
    p = ngx_chat_wire_put(p, ",\"" NGX_CHAT_WIRE_F_ATTACHMENT_ID "\":\"");
    p = ngx_chat_wire_putn(p, id, id_len);
    p = ngx_chat_wire_put(p, "\",\"" NGX_CHAT_WIRE_F_SIZE "\":");
    p += sprintf(p, "%lld", (long long) size);
    *p++ = '}';

    return p - buf;
}


size_t
ngx_chat_wire_record_common_size(const ngx_chat_wire_peer_t *peer,
    ngx_chat_wire_op_t op)
{
    return sizeof("\"" NGX_CHAT_WIRE_F_OP "\":\"\",\"" NGX_CHAT_WIRE_F_SID
                  "\":\"\",\"" NGX_CHAT_WIRE_F_NODE "\":\"\",\""
                  NGX_CHAT_WIRE_F_USER "\":\"\",\"" NGX_CHAT_WIRE_F_DEV
                  "\":\"\",\"" NGX_CHAT_WIRE_F_TS "\":")
           + strlen(ngx_chat_wire_op_name(op)) + NGX_CHAT_WIRE_SID_LEN
           + peer->node_len + peer->user_len + peer->device_len
           + sizeof("-9223372036854775808");
}


char *
ngx_chat_wire_record_common(char *p, const ngx_chat_wire_peer_t *peer,
    ngx_chat_wire_op_t op)
{
    const char  *name;

    name = ngx_chat_wire_op_name(op);

    p = ngx_chat_wire_put(p, "\"" NGX_CHAT_WIRE_F_OP "\":\"");
    p = ngx_chat_wire_putn(p, name, strlen(name));
    p = ngx_chat_wire_put(p, "\",\"" NGX_CHAT_WIRE_F_SID "\":\"");
    p = ngx_chat_wire_putn(p, peer->sid, NGX_CHAT_WIRE_SID_LEN);
    p = ngx_chat_wire_put(p, "\",\"" NGX_CHAT_WIRE_F_NODE "\":\"");
    p = ngx_chat_wire_putn(p, peer->node, peer->node_len);
    p = ngx_chat_wire_put(p, "\",\"" NGX_CHAT_WIRE_F_USER "\":\"");
    p = ngx_chat_wire_putn(p, peer->user, peer->user_len);
    p = ngx_chat_wire_put(p, "\",\"" NGX_CHAT_WIRE_F_DEV "\":\"");
    p = ngx_chat_wire_putn(p, peer->device, peer->device_len);
    p = ngx_chat_wire_put(p, "\",\"" NGX_CHAT_WIRE_F_TS "\":");
    p += sprintf(p, "%lld", (long long) peer->now_ms);

    return p;
}


size_t
ngx_chat_wire_key(char *buf, const char *prefix, const char *id,
    size_t id_len)
{
    size_t  len;

    len = strlen(prefix);

    if (len + id_len >= NGX_CHAT_WIRE_KEY_MAX) {
        buf[0] = '\0';
        return 0;
    }

    memcpy(buf, prefix, len);
    memcpy(buf + len, id, id_len);
    buf[len + id_len] = '\0';

    return len + id_len;
}


size_t
ngx_chat_wire_session_value(char *buf, const char *node, size_t node_len,
    const char *sid)
{
    memcpy(buf, node, node_len);
    buf[node_len] = ' ';
    memcpy(buf + node_len + 1, sid, NGX_CHAT_WIRE_SID_LEN);

    return node_len + 1 + NGX_CHAT_WIRE_SID_LEN;
}


int
ngx_chat_wire_session_parse(const char *value, size_t len, const char **node,
    size_t *node_len, const char **sid)
{
    const char  *space;

    space = memchr(value, ' ', len);

    if (space == NULL) {
        return 0;
    }

    *node = value;
    *node_len = space - value;
    *sid = space + 1;

    return ngx_chat_wire_valid_node(value, *node_len)
           && ngx_chat_wire_valid_sid(*sid, value + len - *sid);
}


size_t
ngx_chat_wire_presence_event(char *buf, const char *user, size_t user_len,
    const char *status, int64_t last_seen)
{
    char  *p;

    p = ngx_chat_wire_putn(buf, user, user_len);
    *p++ = ' ';
    p = ngx_chat_wire_putn(p, status, strlen(status));

    if (last_seen < 0) {
        p = ngx_chat_wire_put(p, " -");

    } else {
        p += sprintf(p, " %lld", (long long) last_seen);
    }

    return p - buf;
}


int
ngx_chat_wire_presence_parse(const char *p, size_t len,
    ngx_chat_wire_presence_t *ev)
{
    const char  *end, *sp1, *sp2, *q;

    end = p + len;

    sp1 = memchr(p, ' ', len);
    if (sp1 == NULL) {
        return 0;
    }

    sp2 = memchr(sp1 + 1, ' ', end - (sp1 + 1));
    if (sp2 == NULL) {
        return 0;
    }

    ev->user = p;
    ev->user_len = sp1 - p;
    ev->status = sp1 + 1;
    ev->status_len = sp2 - (sp1 + 1);

    if (!ngx_chat_wire_valid_id(ev->user, ev->user_len)
        || !((ev->status_len == 6 && memcmp(ev->status, "online", 6) == 0)
             || (ev->status_len == 4 && memcmp(ev->status, "away", 4) == 0)
             || (ev->status_len == 7
                 && memcmp(ev->status, "offline", 7) == 0)))
    {
        return 0;
    }

    q = sp2 + 1;

    if (end - q == 1 && *q == '-') {
        ev->last_seen = -1;
        return 1;
    }

    if (!ngx_chat_wire_decimal(q, end, &ev->last_seen)) {
        return 0;
    }

    return 1;
}


/* ---------------------------------------------------------- push topic */

size_t
ngx_chat_wire_push_record(char *buf, const ngx_chat_wire_push_t *push)
{
    char  *p;

    p = buf + sprintf(buf, "%lld ", (long long) push->message_id);
    p = ngx_chat_wire_putn(p, push->user, push->user_len);
    *p++ = ' ';
    p = ngx_chat_wire_putn(p, push->device, push->device_len);
    p += sprintf(p, " %lld", (long long) push->ts);

    return p - buf;
}


int
ngx_chat_wire_push_parse(const char *p, size_t len, ngx_chat_wire_push_t *push)
{
    const char  *end, *sp1, *sp2, *sp3, *q;

    end = p + len;

    sp1 = memchr(p, ' ', len);
    if (sp1 == NULL
        || !ngx_chat_wire_message_id(p, sp1 - p, &push->message_id))
    {
        return 0;
    }

    sp2 = memchr(sp1 + 1, ' ', end - (sp1 + 1));
    if (sp2 == NULL) {
        return 0;
    }

    sp3 = memchr(sp2 + 1, ' ', end - (sp2 + 1));
    if (sp3 == NULL) {
        return 0;
    }

    push->user = sp1 + 1;
    push->user_len = sp2 - (sp1 + 1);
    push->device = sp2 + 1;
    push->device_len = sp3 - (sp2 + 1);

    if (!ngx_chat_wire_valid_id(push->user, push->user_len)
        || !ngx_chat_wire_valid_id(push->device, push->device_len))
    {
        return 0;
    }

    q = sp3 + 1;

    if (!ngx_chat_wire_decimal(q, end, &push->ts)) {
        return 0;
    }

    return 1;
}


/* ------------------------------------------------------- revocations */

int
ngx_chat_wire_revokes(int64_t revoked_ms, int64_t iat)
{
    if (iat <= 0) {
        return 1;
    }

    /* iat beyond any ms of revocation: never revoked */
    if (iat > INT64_MAX / 1000) {
        return 0;
    }

    return iat * 1000 <= revoked_ms;
}


size_t
ngx_chat_wire_revoked_field(char *buf, const char *user, size_t user_len,
    const char *dev, size_t dev_len)
{
    char  *p;

    p = ngx_chat_wire_putn(buf, user, user_len);

    if (dev && dev_len) {
        *p++ = ' ';
        p = ngx_chat_wire_putn(p, dev, dev_len);
    }

    *p = '\0';

    return p - buf;
}


size_t
ngx_chat_wire_control_revoke(char *buf, const char *user, size_t user_len,
    const char *dev, size_t dev_len, int64_t ms)
{
    char  *p;

    p = ngx_chat_wire_put(buf, "revoke ");
    p = ngx_chat_wire_putn(p, user, user_len);
    *p++ = ' ';

    if (dev && dev_len) {
        p = ngx_chat_wire_putn(p, dev, dev_len);

    } else {
        *p++ = '-';
    }

    p += sprintf(p, " %lld", (long long) ms);

    return p - buf;
}


int
ngx_chat_wire_control_parse(const char *p, size_t len,
    ngx_chat_wire_control_t *ev)
{
    const char  *end, *sp1, *sp2, *q;

    end = p + len;

    if (len < 7 || memcmp(p, "revoke ", 7) != 0) {
        return 0;
    }

    ev->type = NGX_CHAT_WIRE_CONTROL_REVOKE;
    p += 7;

    sp1 = memchr(p, ' ', end - p);
    if (sp1 == NULL) {
        return 0;
    }

    sp2 = memchr(sp1 + 1, ' ', end - (sp1 + 1));
    if (sp2 == NULL) {
        return 0;
    }

    ev->user = p;
    ev->user_len = sp1 - p;
    ev->dev = sp1 + 1;
    ev->dev_len = sp2 - (sp1 + 1);

    if (!ngx_chat_wire_valid_id(ev->user, ev->user_len)) {
        return 0;
    }

    if (ev->dev_len == 1 && ev->dev[0] == '-') {
        ev->dev = NULL;
        ev->dev_len = 0;

    } else if (!ngx_chat_wire_valid_id(ev->dev, ev->dev_len)) {
        return 0;
    }

    q = sp2 + 1;

    if (!ngx_chat_wire_decimal(q, end, &ev->ms)) {
        return 0;
    }

    return 1;
}


int
ngx_chat_wire_record_next(const char **pos, const char *end,
    ngx_chat_wire_record_t *rec)
{
    const char  *p, *nl, *num;
    size_t       len;

    p = *pos;

    if (p == end) {
        return 0;
    }

    /* "T <args> <len>\n": the type, a space, and a newline to find */
    if (end - p < 4 || p[1] != ' ') {
        return -1;
    }

    nl = memchr(p + 2, '\n', end - (p + 2));
    if (nl == NULL) {
        return -1;
    }

    num = nl;
    while (num > p + 2 && num[-1] >= '0' && num[-1] <= '9') {
        num--;
    }

    /* a length, at most 19 digits (no overflow), after a space */
    if (num == nl || nl - num > 19 || num[-1] != ' ') {
        return -1;
    }

    for (len = 0, p = num; p < nl; p++) {
        len = len * 10 + (*p - '0');
    }

    if (len > (size_t) (end - (nl + 1))) {
        return -1;
    }

    rec->type = (unsigned char) (*pos)[0];
    rec->args = *pos + 2;
    rec->args_len = (num - 1 > rec->args) ? (size_t) (num - 1 - rec->args)
                                          : 0;
    rec->body = nl + 1;
    rec->body_len = len;

    *pos = rec->body + len;

    return 1;
}


int
ngx_chat_wire_sids_next(const char **pos, const char *end, const char **sid)
{
    const char  *p, *comma;

    p = *pos;

    if (p == end) {
        return 0;
    }

    comma = memchr(p, ',', end - p);
    if (comma == NULL) {
        comma = end;
    }

    if (!ngx_chat_wire_valid_sid(p, comma - p)) {
        return -1;
    }

    *sid = p;

    /* a trailing comma is not a list */
    if (comma < end && comma + 1 == end) {
        return -1;
    }

    *pos = comma < end ? comma + 1 : end;

    return 1;
}


static const char *
ngx_chat_wire_number(const char *p, const char *end, int64_t *v)
{
    int       neg;
    int64_t   n;
    size_t    digits;

    neg = (p < end && *p == '-');
    p += neg;

    for (n = 0, digits = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        if (++digits > 18) {
            return NULL;
        }

        n = n * 10 + (*p - '0');
    }

    if (digits == 0) {
        return NULL;
    }

    *v = neg ? -n : n;

    return p;
}


int
ngx_chat_wire_ack_parse(const char *args, size_t len, int64_t *ms,
    const char **sid)
{
    const char  *p, *end;

    end = args + len;

    p = ngx_chat_wire_number(args, end, ms);

    if (p == NULL || *ms < 0 || end - p != 1 + NGX_CHAT_WIRE_SID_LEN
        || *p != ' ' || !ngx_chat_wire_valid_sid(p + 1, NGX_CHAT_WIRE_SID_LEN))
    {
        return 0;
    }

    *sid = p + 1;

    return 1;
}


char *
ngx_chat_wire_ack_header(char *p, int64_t ms, const char *sid,
    size_t body_len)
{
    return p + sprintf(p, "%c %lld %.*s %zu\n", NGX_CHAT_WIRE_RECORD_ACK,
                       (long long) ms, NGX_CHAT_WIRE_SID_LEN, sid, body_len);
}


int
ngx_chat_wire_range_parse(const char *args, size_t len,
    ngx_chat_wire_range_t *range)
{
    int64_t      v[3];
    const char  *p, *end;
    int          i;

    p = args;
    end = args + len;

    for (i = 0; i < 3; i++) {
        if (i && (p == end || *p++ != ' ')) {
            return 0;
        }

        p = ngx_chat_wire_number(p, end, &v[i]);
        if (p == NULL) {
            return 0;
        }
    }

    if (p != end || v[0] < 0 || v[0] > INT32_MAX || v[1] < -1
        || v[2] < v[1])
    {
        return 0;
    }

    range->partition = (int32_t) v[0];
    range->from = v[1];
    range->to = v[2];

    return 1;
}


char *
ngx_chat_wire_range_header(char *p, int type,
    const ngx_chat_wire_range_t *range, size_t body_len)
{
    return p + sprintf(p, "%c %d %lld %lld %zu\n", type,
                       (int) range->partition, (long long) range->from,
                       (long long) range->to, body_len);
}


size_t
ngx_chat_wire_record_header_size(size_t nsids, size_t body_len)
{
    (void) body_len;

    return 2 + nsids * (NGX_CHAT_WIRE_SID_LEN + 1) + 20 + 1;
}


char *
ngx_chat_wire_record_header(char *p, int type, const char *const *sids,
    size_t nsids, size_t body_len)
{
    size_t  i;

    *p++ = (char) type;

    for (i = 0; i < nsids; i++) {
        *p++ = i ? ',' : ' ';
        memcpy(p, sids[i], NGX_CHAT_WIRE_SID_LEN);
        p += NGX_CHAT_WIRE_SID_LEN;
    }

    p += sprintf(p, " %zu\n", body_len);

    return p;
}


int
ngx_chat_wire_message_id(const char *p, size_t len, int64_t *id)
{
    int64_t  v = 0;
    size_t   i;

    if (len == 0 || len > NGX_CHAT_WIRE_MESSAGE_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }

        /* 19 digits may pass INT64_MAX: no id that large is ever made */
        if (v > (INT64_MAX - (p[i] - '0')) / 10) {
            return 0;
        }

        v = v * 10 + (p[i] - '0');
    }

    if (v == 0) {
        return 0;
    }

    *id = v;

    return 1;
}
