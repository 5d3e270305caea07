
/*
 * test_wire.c: the wire between the module and the workers
 * (ngx_chat_wire.c), and the round trips across it: records written by the
 * module's protocol code read by the worker's parser, node payloads written
 * by the worker read by the module's parser.
 *
 * The worker's files are included (as in test_worker_pure.c, with the
 * store and Redis of worker_fake.h); the module's pure sources are linked.
 */

#include "../../workers/worker_util.c"
#include "../../workers/worker_chain.c"
#include "../../workers/worker_request.c"
#include "../../workers/worker_media.c"
#include "../../workers/worker_ops.c"
#include "../../workers/worker_answer.c"
#include "../../workers/worker_fanout.c"
#include "../../workers/worker_frame.c"
#include "../../workers/worker_outbox.c"
#include "../../workers/worker_stream.c"
#include "../../workers/worker_payload.c"
#include "../../workers/worker_members.c"
#include "../../workers/worker_index.c"

#include "worker_fake.h"

#include "ngx_chat_proto.h"
#include "unit.h"


static void
test_ids(void)
{
    char  id[NGX_CHAT_WIRE_ID_MAX + 2];

    memset(id, 'x', sizeof(id));

    CHECK(ngx_chat_wire_valid_id("alice", 5), "plain id");
    CHECK(ngx_chat_wire_valid_id("A-b_c.d@e9", 10), "every id character");
    CHECK(ngx_chat_wire_valid_id(id, NGX_CHAT_WIRE_ID_MAX), "64 characters");
    CHECK(!ngx_chat_wire_valid_id(id, NGX_CHAT_WIRE_ID_MAX + 1), "65");
    CHECK(!ngx_chat_wire_valid_id("", 0), "empty");
    CHECK(!ngx_chat_wire_valid_id(NULL, 3), "NULL");
    CHECK(!ngx_chat_wire_valid_id("a b", 3), "space");
    CHECK(!ngx_chat_wire_valid_id("a:b", 3), "colon");
    CHECK(!ngx_chat_wire_valid_id("a\0b", 3), "NUL");
    CHECK(!ngx_chat_wire_valid_id("a+b", 3), "plus");
    CHECK(ngx_chat_wire_valid_id("a+b", 1), "only len bytes count");
    CHECK(!ngx_chat_wire_valid_id("\xc3\xa9", 2), "not ASCII");

    CHECK(ngx_chat_wire_valid_sid("0123456789abcdef", 16), "sid");
    CHECK(!ngx_chat_wire_valid_sid("0123456789ABCDEF", 16), "upper hex");
    CHECK(!ngx_chat_wire_valid_sid("0123456789abcde", 15), "short sid");
    CHECK(!ngx_chat_wire_valid_sid("0123456789abcdef0", 17), "long sid");
    CHECK(!ngx_chat_wire_valid_sid("0123456789abcde,", 16), "comma");

    CHECK(ngx_chat_wire_valid_node("s1:0", 4), "node");
    CHECK(ngx_chat_wire_valid_node("host.example:12.k3", 18), "node dots");
    CHECK(!ngx_chat_wire_valid_node("s1 0", 4), "node space");
    CHECK(!ngx_chat_wire_valid_node("s1\n0", 4), "node newline");
    CHECK(!ngx_chat_wire_valid_node("", 0), "empty node");
}


static void
test_direct(void)
{
    char         conv[NGX_CHAT_WIRE_CONV_MAX + 1];
    const char  *a, *b;
    size_t       a_len, b_len, n;

    n = ngx_chat_wire_direct_id(conv, "bob", 3, "alice", 5);
    CHECK(n == 12 && strcmp(conv, "dm:alice:bob") == 0, "%s", conv);
    n = ngx_chat_wire_direct_id(conv, "alice", 5, "bob", 3);
    CHECK(n == 12 && strcmp(conv, "dm:alice:bob") == 0, "%s", conv);

    /* a prefix sorts first, uppercase before lowercase (byte order) */
    ngx_chat_wire_direct_id(conv, "ab", 2, "a", 1);
    CHECK(strcmp(conv, "dm:a:ab") == 0, "%s", conv);
    ngx_chat_wire_direct_id(conv, "alice", 5, "Zed", 3);
    CHECK(strcmp(conv, "dm:Zed:alice") == 0, "%s", conv);
    ngx_chat_wire_direct_id(conv, "me", 2, "me", 2);
    CHECK(strcmp(conv, "dm:me:me") == 0, "%s", conv);

    CHECK(ngx_chat_wire_parse_direct("dm:alice:bob", 12, &a, &a_len, &b,
                                     &b_len)
          && a_len == 5 && memcmp(a, "alice", 5) == 0
          && b_len == 3 && memcmp(b, "bob", 3) == 0, "parse");
    CHECK(!ngx_chat_wire_parse_direct("dm:bob:alice", 12, &a, &a_len, &b,
                                      &b_len), "out of order");
    CHECK(!ngx_chat_wire_parse_direct("dm::bob", 7, &a, &a_len, &b, &b_len),
          "empty first");
    CHECK(!ngx_chat_wire_parse_direct("dm:a:b:c", 8, &a, &a_len, &b, &b_len),
          "three parts");
    CHECK(!ngx_chat_wire_parse_direct("g:1", 3, &a, &a_len, &b, &b_len),
          "a group");

    CHECK(ngx_chat_wire_direct_access("dm:alice:bob", 12, "bob", 3)
          == NGX_CHAT_WIRE_ALLOWED, "member");
    CHECK(ngx_chat_wire_direct_access("dm:alice:bob", 12, "bo", 2)
          == NGX_CHAT_WIRE_FORBIDDEN, "a prefix of a member");
    CHECK(ngx_chat_wire_direct_access("dm:x", 4, "x", 1)
          == NGX_CHAT_WIRE_FORBIDDEN, "malformed");
    CHECK(ngx_chat_wire_direct_access("g:1", 3, "x", 1)
          == NGX_CHAT_WIRE_ASK_STORE, "a group");

    CHECK(ngx_chat_wire_chars("a\xc3\xa9\xe2\x82\xac", 6) == 3, "chars");
}


static void
test_ops(void)
{
    int  op;

    for (op = 0; op < NGX_CHAT_WIRE_OP_COUNT; op++) {
        const char  *name = ngx_chat_wire_op_name(op);

        CHECK(name && ngx_chat_wire_op_find(name, strlen(name)) == op,
              "op %d", op);
    }

    CHECK(ngx_chat_wire_op_find("sen", 3) == -1, "a prefix of an op");
    CHECK(ngx_chat_wire_op_find("sendx", 5) == -1, "longer than an op");
    CHECK(ngx_chat_wire_op_name(NGX_CHAT_WIRE_OP_COUNT) == NULL, "no op");
}


/* nginx's uploaded record: what chat_worker's row reads back */
static void
test_uploaded(void)
{
    char            buf[NGX_CHAT_WIRE_UPLOADED_MAX + 1], node[200], why[160];
    char            longest[NGX_CHAT_WIRE_ID_MAX];
    const char     *id = "0123456789abcdef0123456789abcdef";
    chat_request_t  req;
    size_t          n;

    n = ngx_chat_wire_uploaded_record(buf, "s1:0", 4, 1714128000123, id,
                                      strlen(id), 1048576);
    buf[n] = '\0';
    CHECK(strcmp(buf, "{\"op\":\"uploaded\",\"node\":\"s1:0\","
                      "\"ts\":1714128000123,\"attachment_id\":"
                      "\"0123456789abcdef0123456789abcdef\","
                      "\"size\":1048576}") == 0, "uploaded: %s", buf);

    memset(&req, 0, sizeof(req));
    CHECK(chat_ops_parse(&req, buf, n, why, sizeof(why)) == CHAT_PARSE_OK,
          "uploaded parsed: %s", why);
    CHECK(req.op == NGX_CHAT_WIRE_OP_UPLOADED && req.sid == NULL
          && strcmp(req.node, "s1:0") == 0 && req.ts == 1714128000123
          && strcmp(req.upload.id, id) == 0
          && req.upload.size == 1048576, "uploaded's fields");
    chat_request_free(&req);

    /* the longest node and the largest numbers fit */
    memset(node, 'n', NGX_CHAT_WIRE_NODE_MAX);
    memset(longest, 'a', NGX_CHAT_WIRE_ID_MAX);
    n = ngx_chat_wire_uploaded_record(buf, node, NGX_CHAT_WIRE_NODE_MAX,
                                      INT64_MIN, longest,
                                      NGX_CHAT_WIRE_ID_MAX, INT64_MIN);
    CHECK(n <= NGX_CHAT_WIRE_UPLOADED_MAX, "uploaded: %zu bytes", n);
}


static const ngx_chat_wire_peer_t  alice = {
    "alice", 5, "phone", 5, "s1:0.k", 6, "00000000000000ab", 1714128000123,
    NULL, 900000
};


static void
test_record_common(void)
{
    char         buf[512], *p;
    json_t      *j;
    size_t       size;

    buf[0] = '{';
    p = ngx_chat_wire_record_common(buf + 1, &alice, NGX_CHAT_WIRE_OP_SYNC);
    *p++ = '}';
    *p = '\0';

    size = ngx_chat_wire_record_common_size(&alice, NGX_CHAT_WIRE_OP_SYNC);
    CHECK((size_t) (p - buf - 2) <= size, "%zu > %zu", (size_t) (p - buf),
          size);

    j = json_loads(buf, 0, NULL);
    CHECK(j != NULL, "%s", buf);
    CHECK(strcmp(json_string_value(json_object_get(j, NGX_CHAT_WIRE_F_OP)),
                 "sync") == 0, "%s", buf);
    CHECK(json_integer_value(json_object_get(j, NGX_CHAT_WIRE_F_TS))
          == 1714128000123, "%s", buf);
    json_decref(j);
}


static void
test_keys_sessions(void)
{
    char         key[NGX_CHAT_WIRE_KEY_MAX], value[NGX_CHAT_WIRE_SESSION_MAX];
    const char  *node, *sid;
    size_t       n, node_len;
    char         big[NGX_CHAT_WIRE_KEY_MAX];

    n = ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SESS, "alice", 5);
    CHECK(n == 15 && strcmp(key, "chat:sess:alice") == 0, "%s", key);

    memset(big, 'x', sizeof(big));
    CHECK(ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SESS, big, sizeof(big))
          == 0, "too long a key");

    n = ngx_chat_wire_session_value(value, "s1:0", 4, "00000000000000ab");
    CHECK(n == 21 && memcmp(value, "s1:0 00000000000000ab", n) == 0,
          "value");
    CHECK(ngx_chat_wire_session_parse(value, n, &node, &node_len, &sid)
          && node_len == 4 && memcmp(sid, "00000000000000ab", 16) == 0,
          "parse value");
    CHECK(!ngx_chat_wire_session_parse("s1:0", 4, &node, &node_len, &sid),
          "no space");
    CHECK(!ngx_chat_wire_session_parse(" 00000000000000ab", 17, &node,
                                       &node_len, &sid), "no node");
    CHECK(!ngx_chat_wire_session_parse("s1:0 00ab", 9, &node, &node_len,
                                       &sid), "short sid");
    CHECK(!ngx_chat_wire_session_parse("s1 0 00000000000000ab", 21, &node,
                                       &node_len, &sid), "two spaces");
}


static void
test_presence(void)
{
    char                      buf[NGX_CHAT_WIRE_PRESENCE_MAX];
    size_t                    n;
    ngx_chat_wire_presence_t  ev;

    n = ngx_chat_wire_presence_event(buf, "alice", 5, "offline",
                                     1714128000123);
    CHECK(n == 27 && memcmp(buf, "alice offline 1714128000123", n) == 0,
          "%.*s", (int) n, buf);
    CHECK(ngx_chat_wire_presence_parse(buf, n, &ev)
          && ev.user_len == 5 && ev.status_len == 7
          && ev.last_seen == 1714128000123, "parse offline");

    n = ngx_chat_wire_presence_event(buf, "bob", 3, "away", -1);
    CHECK(n == 10 && memcmp(buf, "bob away -", n) == 0, "%.*s", (int) n,
          buf);
    CHECK(ngx_chat_wire_presence_parse(buf, n, &ev) && ev.last_seen == -1
          && ev.status_len == 4, "parse away");

    CHECK(!ngx_chat_wire_presence_parse("bob gone -", 10, &ev), "status");
    CHECK(!ngx_chat_wire_presence_parse("b:b online -", 12, &ev), "user");
    CHECK(!ngx_chat_wire_presence_parse("bob online", 10, &ev), "no time");
    CHECK(!ngx_chat_wire_presence_parse("bob offline 12x", 15, &ev),
          "not a number");
    CHECK(!ngx_chat_wire_presence_parse("bob offline ", 12, &ev),
          "empty time");
}


/* the push topic's records: written by chat_worker, read by chat_pusher */
static void
test_push_record(void)
{
    char                  buf[NGX_CHAT_WIRE_PUSH_RECORD_MAX];
    char                  id[NGX_CHAT_WIRE_ID_MAX];
    size_t                n;
    ngx_chat_wire_push_t  in, out;

    in.message_id = 4711;
    in.user = "bob";
    in.user_len = 3;
    in.device = "tablet";
    in.device_len = 6;
    in.ts = 1714128000123;

    n = ngx_chat_wire_push_record(buf, &in);
    CHECK(n == 29 && memcmp(buf, "4711 bob tablet 1714128000123", n) == 0,
          "%.*s", (int) n, buf);
    memset(&out, 0, sizeof(out));
    CHECK(ngx_chat_wire_push_parse(buf, n, &out)
          && out.message_id == 4711 && out.user_len == 3
          && memcmp(out.user, "bob", 3) == 0 && out.device_len == 6
          && memcmp(out.device, "tablet", 6) == 0
          && out.ts == 1714128000123, "round trip");

    /* the longest ids and the largest message id fit the buffer */
    memset(id, 'x', sizeof(id));
    in.message_id = INT64_MAX;
    in.user = id;
    in.user_len = sizeof(id);
    in.device = id;
    in.device_len = sizeof(id);
    in.ts = 999999999999999999LL;
    n = ngx_chat_wire_push_record(buf, &in);
    CHECK(n == 19 + 1 + 64 + 1 + 64 + 1 + 18, "%zu", n);
    CHECK(ngx_chat_wire_push_parse(buf, n, &out)
          && out.message_id == INT64_MAX && out.user_len == sizeof(id)
          && out.device_len == sizeof(id) && out.ts == in.ts,
          "round trip at the limits");

    CHECK(!ngx_chat_wire_push_parse("0 bob tab 1", 11, &out), "id 0");
    CHECK(!ngx_chat_wire_push_parse("x bob tab 1", 11, &out), "id");
    CHECK(!ngx_chat_wire_push_parse("1 b:b tab 1", 11, &out), "user");
    CHECK(!ngx_chat_wire_push_parse("1 bob t:b 1", 11, &out), "device");
    CHECK(!ngx_chat_wire_push_parse("1 bob  1", 8, &out), "empty device");
    CHECK(!ngx_chat_wire_push_parse("1 bob tab", 9, &out), "no time");
    CHECK(!ngx_chat_wire_push_parse("1 bob tab ", 10, &out), "empty time");
    CHECK(!ngx_chat_wire_push_parse("1 bob tab 1x", 12, &out),
          "not a number");
    CHECK(!ngx_chat_wire_push_parse("1 bob tab 1 2", 13, &out),
          "two times");
    CHECK(!ngx_chat_wire_push_parse("", 0, &out), "empty");
    CHECK(ngx_chat_wire_push_parse("1 bob tab 123456789012345678", 28, &out)
          && out.ts == 123456789012345678LL, "18 digits");
    CHECK(!ngx_chat_wire_push_parse("1 bob tab 1234567890123456789", 29,
                                    &out), "19 digits");
}


/* the revocations: chat:revoked's fields, chat:control's messages */
static void
test_control(void)
{
    char                     buf[NGX_CHAT_WIRE_CONTROL_MAX];
    char                     field[NGX_CHAT_WIRE_REVOKED_FIELD_MAX];
    size_t                   n;
    ngx_chat_wire_control_t  ev;

    n = ngx_chat_wire_revoked_field(field, "alice", 5, NULL, 0);
    CHECK(n == 5 && strcmp(field, "alice") == 0, "%s", field);
    n = ngx_chat_wire_revoked_field(field, "alice", 5, "phone", 5);
    CHECK(n == 11 && strcmp(field, "alice phone") == 0, "%s", field);

    n = ngx_chat_wire_control_revoke(buf, "alice", 5, NULL, 0,
                                     1714128000123);
    CHECK(n == 28 && memcmp(buf, "revoke alice - 1714128000123", n) == 0,
          "%.*s", (int) n, buf);
    CHECK(ngx_chat_wire_control_parse(buf, n, &ev)
          && ev.type == NGX_CHAT_WIRE_CONTROL_REVOKE
          && ev.user_len == 5 && memcmp(ev.user, "alice", 5) == 0
          && ev.dev == NULL && ev.ms == 1714128000123, "parse every device");

    n = ngx_chat_wire_control_revoke(buf, "bob", 3, "phone", 5, 7);
    CHECK(n == 18 && memcmp(buf, "revoke bob phone 7", n) == 0, "%.*s",
          (int) n, buf);
    CHECK(ngx_chat_wire_control_parse(buf, n, &ev) && ev.dev_len == 5
          && memcmp(ev.dev, "phone", 5) == 0 && ev.ms == 7, "parse device");

    CHECK(!ngx_chat_wire_control_parse("kick bob - 1", 12, &ev), "type");
    CHECK(!ngx_chat_wire_control_parse("revoke b:b - 1", 14, &ev), "user");
    CHECK(!ngx_chat_wire_control_parse("revoke bob p:p 1", 16, &ev),
          "device");
    CHECK(!ngx_chat_wire_control_parse("revoke bob -", 12, &ev), "no time");
    CHECK(!ngx_chat_wire_control_parse("revoke bob - ", 13, &ev),
          "empty time");
    CHECK(!ngx_chat_wire_control_parse("revoke bob - 1x", 15, &ev),
          "not a number");
    CHECK(!ngx_chat_wire_control_parse("revoke bob - 1 2", 16, &ev),
          "two times");

    /* a token is revoked unless issued after the revocation: its iat in
     * seconds, the revocation's time in ms */
    CHECK(ngx_chat_wire_revokes(1000500, 1000), "same second: revoked");
    CHECK(ngx_chat_wire_revokes(1000000, 1000), "the very ms: revoked");
    CHECK(ngx_chat_wire_revokes(1000500, 999), "issued before: revoked");
    CHECK(!ngx_chat_wire_revokes(1000500, 1001), "issued after: kept");
    CHECK(ngx_chat_wire_revokes(1000500, 0), "no iat: revoked");
    CHECK(!ngx_chat_wire_revokes(1000500, INT64_MAX), "far future: kept");
}


/* every record of a payload: "<type>:<sids>:<body>|..." */
static int
dump(const char *payload, size_t len, char *out, size_t size)
{
    int                      rc, src;
    const char              *pos, *end, *s, *send, *sid;
    size_t                   used;
    ngx_chat_wire_record_t   rec;

    pos = payload;
    end = payload + len;
    used = 0;
    out[0] = '\0';

    while ((rc = ngx_chat_wire_record_next(&pos, end, &rec)) == 1) {
        used += snprintf(out + used, size - used, "%c:", rec.type);

        s = rec.args;
        send = rec.args + rec.args_len;

        while ((src = ngx_chat_wire_sids_next(&s, send, &sid)) == 1) {
            used += snprintf(out + used, size - used, "%.4s,", sid + 12);
        }

        if (src == -1) {
            return -2;
        }

        used += snprintf(out + used, size - used, ":%.*s|",
                         (int) rec.body_len, rec.body);
    }

    return rc;
}


static void
test_payload(void)
{
    char         out[512], buf[512], *p;
    const char  *sids[] = { "00000000000000aa", "00000000000000bb" };
    chat_buf_t   b = { 0 };
    int          rc;
    size_t       i;

    /* written by the worker's outbox, read by the module's parser */
    chat_payload_record(&b, sids, 2, "hello", 5);
    chat_payload_record(&b, sids + 1, 1, "a\nb c 5\n", 8);
    chat_payload_record(&b, sids, 1, "", 0);

    rc = dump(b.data, b.len, out, sizeof(out));
    CHECK(rc == 0 && strcmp(out, "F:00aa,00bb,:hello|F:00bb,:a\nb c 5\n|"
                                 "F:00aa,:|") == 0, "%d %s", rc, out);

    /* every prefix is incomplete (or the payload as far as it went) */
    for (i = 1; i < b.len; i++) {
        rc = dump(b.data, i, out, sizeof(out));
        CHECK(rc == -1 || rc == 0, "prefix %zu: %d", i, rc);
    }

    chat_buf_free(&b);

    p = ngx_chat_wire_record_header(buf, NGX_CHAT_WIRE_RECORD_KICK, sids, 1,
                                    0);
    CHECK((size_t) (p - buf) <= ngx_chat_wire_record_header_size(1, 0),
          "header size");
    rc = dump(buf, p - buf, out, sizeof(out));
    CHECK(rc == 0 && strcmp(out, "K:00aa,:|") == 0, "%d %s", rc, out);

#define BAD(s)  dump(s, sizeof(s) - 1, out, sizeof(out))

    CHECK(BAD("F 00000000000000aa 6\nhello") == -1, "short body");
    CHECK(BAD("F 00000000000000aa\nhello") == -1, "no length");
    CHECK(BAD("F 00000000000000aa 5hello") == -1, "no newline");
    CHECK(BAD("F00000000000000aa 5\nhello") == -1, "no space after type");
    CHECK(BAD("F 00000000000000aa 99999999999999999999\nx") == -1,
          "a length of 20 digits");
    CHECK(BAD("F 00000000000000aa, 1\nx") == -2, "trailing comma");
    CHECK(BAD("F 00aa 1\nx") == -2, "short sid");
    CHECK(BAD("F ,00000000000000aa 1\nx") == -2, "leading comma");
    CHECK(BAD("F 1\nx") == 0, "no sessions at all is a record");

#undef BAD
}


/* the module's records, read by the worker */

static const char *
module_record(const char *frame, char *buf, size_t size)
{
    ngx_chat_proto_result_t  res;

    ngx_chat_proto_handle(&alice, frame, strlen(frame), &res);

    if (res.record == NULL || res.record_len >= size) {
        ngx_chat_proto_result_free(&res);
        return NULL;
    }

    memcpy(buf, res.record, res.record_len + 1);
    ngx_chat_proto_result_free(&res);

    return buf;
}


static void
test_records(void)
{
    char             buf[4096], why[160];
    const char      *r;
    chat_request_t   req;
    size_t           i;

    static const struct {
        const char          *frame;
        ngx_chat_wire_op_t   op;
    } cases[] = {
        { "{\"type\":\"send\",\"client_msg_id\":\"c1\",\"to\":\"bob\","
          "\"body\":\"hi \\\"there\\\"\"}", NGX_CHAT_WIRE_OP_SEND },
        { "{\"type\":\"send\",\"client_msg_id\":\"c2\","
          "\"conversation_id\":\"g:1\",\"body\":\"x\",\"extra\":1}",
          NGX_CHAT_WIRE_OP_SEND },
        { "{\"type\":\"sync\",\"req_id\":\"r\",\"cursors\":{\"g:1\":3}}",
          NGX_CHAT_WIRE_OP_SYNC },
        { "{\"type\":\"history\",\"req_id\":1,\"conversation_id\":\"g:1\","
          "\"before_seq\":9,\"limit\":3}", NGX_CHAT_WIRE_OP_HISTORY },
        { "{\"type\":\"create_group\",\"req_id\":2,\"name\":\"n\","
          "\"members\":[\"bob\",\"alice\"]}", NGX_CHAT_WIRE_OP_CREATE_GROUP },
        { "{\"type\":\"add_members\",\"req_id\":3,\"conversation_id\":\"g:1\","
          "\"user_ids\":[\"c\"]}", NGX_CHAT_WIRE_OP_ADD_MEMBERS },
        { "{\"type\":\"remove_members\",\"req_id\":4,"
          "\"conversation_id\":\"g:1\",\"user_ids\":[\"c\"]}",
          NGX_CHAT_WIRE_OP_REMOVE_MEMBERS },
        { "{\"type\":\"receipt\",\"conversation_id\":\"g:1\",\"seq\":5,"
          "\"state\":\"read\"}", NGX_CHAT_WIRE_OP_RECEIPT },
        { "{\"type\":\"typing\",\"conversation_id\":\"g:1\","
          "\"state\":\"start\"}", NGX_CHAT_WIRE_OP_TYPING },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        r = module_record(cases[i].frame, buf, sizeof(buf));
        CHECK(r != NULL, "no record for %s", cases[i].frame);

        if (r == NULL) {
            continue;
        }

        CHECK(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
              == CHAT_PARSE_OK, "%s: %s", r, why);
        CHECK(req.op == cases[i].op, "%s", r);
        CHECK(strcmp(req.user, "alice") == 0 && strcmp(req.dev, "phone") == 0
              && strcmp(req.node, "s1:0.k") == 0
              && strcmp(req.sid, "00000000000000ab") == 0
              && req.ts == 1714128000123, "%s", r);

        switch (req.op) {
        case NGX_CHAT_WIRE_OP_SEND:
            CHECK(strcmp(req.cmid, i == 0 ? "c1" : "c2") == 0
                  && strcmp(req.conv, i == 0 ? "dm:alice:bob" : "g:1") == 0
                  && strcmp(req.body, i == 0 ? "hi \"there\"" : "x") == 0,
                  "%s", r);
            break;
        case NGX_CHAT_WIRE_OP_SYNC:
            CHECK(json_integer_value(json_object_get(req.cursors, "g:1"))
                  == 3 && json_is_string(req.req_id), "%s", r);
            break;
        case NGX_CHAT_WIRE_OP_HISTORY:
            CHECK(req.before_seq == 9 && req.after_seq == -1
                  && req.limit == 3 && strcmp(req.conv, "g:1") == 0, "%s", r);
            break;
        case NGX_CHAT_WIRE_OP_CREATE_GROUP:
            CHECK(strcmp(req.name, "n") == 0
                  && json_array_size(req.user_ids) == 1
                  && strncmp(req.conv, "g:", 2) == 0, "%s", r);
            break;
        case NGX_CHAT_WIRE_OP_RECEIPT:
            CHECK(req.seq == 5 && strcmp(req.state, "read") == 0, "%s", r);
            break;
        case NGX_CHAT_WIRE_OP_TYPING:
            CHECK(strcmp(req.state, "start") == 0, "%s", r);
            break;
        default:
            CHECK(json_array_size(req.user_ids) == 1, "%s", r);
            break;
        }

        chat_request_free(&req);
    }
}


int
main(void)
{
    test_ids();
    test_direct();
    test_ops();
    test_uploaded();
    test_record_common();
    test_keys_sessions();
    test_presence();
    test_control();
    test_push_record();
    test_payload();
    test_records();

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
