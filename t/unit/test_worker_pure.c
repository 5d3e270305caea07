/*
 * test_worker_pure.c: unit tests of chat_worker's pure parts: identifiers
 * and direct conversation ids as the worker sees them, Kafka record
 * parsing, the frames, the outbox, PostgreSQL array literals, the small
 * containers, the --redis address and a main's option numbers (the wire
 * itself: test_wire.c).
 *
 * The worker's files are included, not linked (the store and Redis are
 * worker_fake.h's), so that this program stands alone:
 * cc -I/usr/include/postgresql test_worker_pure.c -ljansson -lpq -lhiredis
 * -lcrypto
 * Prints "N passed, N failed" and exits 1 on a failure.
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
#include "../../workers/worker_pg.c"
#include "../../workers/worker_redis_link.c"


#include "worker_fake.h"
#include "worker_unit.h"


static void
test_ids(void)
{
    char  id64[65], id65[66];

    memset(id64, 'x', 64);
    id64[64] = '\0';
    memset(id65, 'x', 65);
    id65[65] = '\0';

    check(chat_valid_id("alice"));
    check(chat_valid_id("A-b_c.d@e9"));
    check(chat_valid_id(id64));
    check(!chat_valid_id(id65));
    check(!chat_valid_id(""));
    check(!chat_valid_id("a b"));
    check(!chat_valid_id("a:b"));
    check(!chat_valid_id("\xc3\xa9"));

}


static void
test_direct_ids(void)
{
    char  a[NGX_CHAT_WIRE_ID_MAX + 1], b[NGX_CHAT_WIRE_ID_MAX + 1];

    check(chat_parse_dm("dm:alice:bob", a, b));
    check_str(a, "alice");
    check_str(b, "bob");

    /* byte order: uppercase sorts before lowercase */
    check(chat_parse_dm("dm:Zed:alice", a, b));
    check(!chat_parse_dm("dm:bob:alice", a, b));
    check(chat_parse_dm("dm:same:same", a, b));
    check(!chat_parse_dm("dm::bob", a, b));
    check(!chat_parse_dm("dm:alice:", a, b));
    check(!chat_parse_dm("dm:alice", a, b));
    check(!chat_parse_dm("dm:a:b:c", a, b));
    check(!chat_parse_dm("dm:a b:c", a, b));
    check(!chat_parse_dm("grp_1", a, b));

    check(chat_direct_access("dm:alice:bob", "alice") == NGX_CHAT_WIRE_ALLOWED);
    check(chat_direct_access("dm:alice:bob", "bob") == NGX_CHAT_WIRE_ALLOWED);
    check(chat_direct_access("dm:alice:bob", "carol")
          == NGX_CHAT_WIRE_FORBIDDEN);
    check(chat_direct_access("dm:bob:alice", "bob") == NGX_CHAT_WIRE_FORBIDDEN);
    check(chat_direct_access("dm:x", "x") == NGX_CHAT_WIRE_FORBIDDEN);
    check(chat_direct_access("grp_1", "alice") == NGX_CHAT_WIRE_ASK_STORE);
}


static void
test_parse(void)
{
    chat_request_t  req;
    char            json[1024], cmid[300];
    int             i;

    check(parse(&req, "{\"op\":\"send\"," HEAD ",\"conv\":\"dm:alice:bob\","
                      "\"cmid\":\"c1\",\"body\":\"hi\"}") == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_SEND);
    check(req.partition == 3 && req.offset == 42);
    check_str(req.node, "s1:0");
    check_str(req.sid, "00000000000000ab");
    check_str(req.conv, "dm:alice:bob");
    check_str(req.cmid, "c1");
    check_str(req.body, "hi");
    check(req.ts == 1);
    chat_request_free(&req);

    check(parse(&req, "not json") == CHAT_PARSE_DROP);
    chat_request_free(&req);
    check(parse(&req, "[1]") == CHAT_PARSE_DROP);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"send\",\"sid\":\"ab\"}") == CHAT_PARSE_DROP);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"send\",\"node\":\"a b\",\"sid\":\"ab\"}")
          == CHAT_PARSE_DROP);
    chat_request_free(&req);

    /* routable faults are answered */
    check(parse(&req, "{\"op\":\"send\"," HEAD ",\"conv\":\"dm:alice:bob\","
                      "\"body\":\"hi\"}") == CHAT_PARSE_BAD);
    check(req.cmid == NULL);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"send\"," HEAD ",\"conv\":\"dm:alice:bob\","
                      "\"cmid\":\"c1\",\"body\":\"\"}") == CHAT_PARSE_BAD);
    check_str(req.cmid, "c1");
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"dance\"," HEAD ",\"req_id\":7}")
          == CHAT_PARSE_BAD);
    check(json_integer_value(req.req_id) == 7);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"sync\",\"node\":\"s1:0\","
                      "\"sid\":\"00000000000000ab\","
                      "\"user\":\"a:b\",\"dev\":\"d\"}") == CHAT_PARSE_BAD);
    chat_request_free(&req);

    /* client_msg_id: 64 characters, not bytes */
    strcpy(cmid, "");
    for (i = 0; i < 64; i++) {
        strcat(cmid, "\xc3\xa9");
    }
    snprintf(json, sizeof(json), "{\"op\":\"send\"," HEAD ",\"conv\":\"c\","
             "\"cmid\":\"%s\",\"body\":\"b\"}", cmid);
    check(parse(&req, json) == CHAT_PARSE_OK);
    chat_request_free(&req);
    strcat(cmid, "x");
    snprintf(json, sizeof(json), "{\"op\":\"send\"," HEAD ",\"conv\":\"c\","
             "\"cmid\":\"%s\",\"body\":\"b\"}", cmid);
    check(parse(&req, json) == CHAT_PARSE_BAD);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"history\"," HEAD ",\"req_id\":\"h\","
                      "\"conv\":\"dm:alice:bob\"}") == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_HISTORY && req.limit == 50);
    check(req.before_seq == -1 && req.after_seq == -1);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"history\"," HEAD ",\"req_id\":\"h\","
                      "\"conv\":\"c\",\"limit\":100,\"before_seq\":7,"
                      "\"after_seq\":null}") == CHAT_PARSE_OK);
    check(req.limit == 100 && req.before_seq == 7 && req.after_seq == -1);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"history\"," HEAD ",\"conv\":\"c\","
                      "\"limit\":0}") == CHAT_PARSE_BAD);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"history\"," HEAD ",\"conv\":\"c\","
                      "\"limit\":101}") == CHAT_PARSE_BAD);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"history\"," HEAD ",\"conv\":\"c\","
                      "\"before_seq\":1,\"after_seq\":2}") == CHAT_PARSE_BAD);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"history\"," HEAD ",\"conv\":\"c\","
                      "\"limit\":\"5\"}") == CHAT_PARSE_BAD);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"sync\"," HEAD ",\"req_id\":null,"
                      "\"cursors\":{\"dm:a:b\":3}}") == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_SYNC && json_is_object(req.cursors));
    check(json_is_null(req.req_id));
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"sync\"," HEAD ",\"cursors\":[1]}")
          == CHAT_PARSE_BAD);
    chat_request_free(&req);
}


static char *
dump(json_t *frame)
{
    size_t  len;

    return chat_frame_dump(frame, &len);
}


/* the direct writers give exactly jansson's bytes, whatever the strings */
static void
test_frame_text(void)
{
    static const char  *strings[] = {
        "", "plain", "quote\" back\\slash", "\b\f\n\r\t",
        "\x01\x02\x1f\x7f end", "slash / stays", "h\u00e9 \u20ac \U0001F600",
        "\u2028\u2029", "{\"looks\":\"like json\"}", "\x1b[31m",
    };
    size_t           i, j, n = sizeof(strings) / sizeof(strings[0]);
    size_t           len, want_len;
    char            *got, *want;
    chat_message_t   m = { "dm:a:b", 1, 42, "a", "c1", "text", "x", 5, 0, 0, 0, false, NULL, NULL };

    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            m.body = strings[i];
            m.cmid = (j == 0) ? NULL : strings[j];
            m.seq = (int64_t) (i * 1000003 + j);
            m.message_id = INT64_MAX - (int64_t) i;
            m.server_ts = -(int64_t) j;

            want = chat_frame_dump(chat_frame_message_object(&m, true),
                                   &want_len);
            got = chat_frame_message_text(&m, &len);
            check_str(got, want);
            check(len == want_len);
            free(got);
            free(want);

            want = chat_frame_dump(chat_frame_ack(&m), &want_len);
            got = chat_frame_ack_text(&m, &len);
            check_str(got, want);
            check(len == want_len);
            free(got);
            free(want);
        }
    }

    /* a system message takes the general path: its body is an object */
    m.kind = "system";
    m.cmid = NULL;
    m.body = "{\"event\":\"members_added\",\"user_ids\":[\"c\"],\"by\":\"a\"}";
    want = chat_frame_dump(chat_frame_message_object(&m, true), &want_len);
    got = chat_frame_message_text(&m, &len);
    check_str(got, want);
    free(got);
    free(want);
}


/* a message's state: only what there is, on either path */
static void
test_message_state(void)
{
    chat_message_t      m = { "g:1", 3, 42, "a", "c1", "text", "x", 5,
                              0, 0, 0, false, NULL, NULL };
    chat_search_row_t   row;
    chat_search_rows_t  rows = { false, &row, 1, true };
    const char         *users[2] = { "bob", "carol" };
    json_t             *q;
    char               *got;
    size_t              len;

    /* a fresh message has none */
    got = chat_frame_message_text(&m, &len);
    check_str(got, "{\"type\":\"message\",\"message_id\":\"42\","
                   "\"conversation_id\":\"g:1\",\"seq\":3,\"sender_id\":"
                   "\"a\",\"client_msg_id\":\"c1\",\"kind\":\"text\","
                   "\"body\":\"x\",\"server_ts\":5}");
    free(got);

    m.reply_to = 17;
    m.edited_at = 9;
    m.reactions = "{\"ok\": [\"a\", \"b\"]}";
    got = chat_frame_message_text(&m, &len);
    check_str(got, "{\"type\":\"message\",\"message_id\":\"42\","
                   "\"conversation_id\":\"g:1\",\"seq\":3,\"sender_id\":"
                   "\"a\",\"client_msg_id\":\"c1\",\"kind\":\"text\","
                   "\"body\":\"x\",\"server_ts\":5,\"reply_to\":\"17\","
                   "\"edited_at\":9,\"reactions\":{\"ok\":[\"a\",\"b\"]}}");
    free(got);

    /* deleted: body null; reactions that are not an object are left out */
    m.deleted = true;
    m.body = NULL;
    m.reactions = "[1]";
    got = chat_frame_dump(chat_frame_message_object(&m, false), &len);
    check_str(got, "{\"message_id\":\"42\",\"conversation_id\":\"g:1\","
                   "\"seq\":3,\"sender_id\":\"a\",\"client_msg_id\":\"c1\","
                   "\"kind\":\"text\",\"body\":null,\"server_ts\":5,"
                   "\"reply_to\":\"17\",\"edited_at\":9,\"deleted\":true}");
    free(got);

    /* a change: its target; no state of its own */
    m = (chat_message_t) { "g:1", 4, 43, "a", "c2", "reaction", NULL, 6,
                           42, 0, 0, false, NULL, NULL };
    got = chat_frame_message_text(&m, &len);
    check_str(got, "{\"type\":\"message\",\"message_id\":\"43\","
                   "\"conversation_id\":\"g:1\",\"seq\":4,\"sender_id\":"
                   "\"a\",\"client_msg_id\":\"c2\",\"kind\":\"reaction\","
                   "\"target_id\":\"42\",\"body\":{\"emoji\":null},"
                   "\"server_ts\":6}");
    free(got);

    m.kind = "edit";
    m.body = "new";
    got = chat_frame_message_text(&m, &len);
    check(strstr(got, "\"kind\":\"edit\",\"target_id\":\"42\","
                      "\"body\":\"new\"") != NULL);
    free(got);

    /* the answers of search and block */
    row.msg = (chat_message_t) { "g:1", 3, 42, "a", "c1", "text", "a b", 5,
                                 0, 0, 0, false, NULL, NULL };
    row.highlight = "<b>a</b> b";
    q = json_string("q");
    got = chat_frame_dump(chat_frame_search(q, &rows), &len);
    json_decref(q);
    check_str(got, "{\"type\":\"search\",\"req_id\":\"q\",\"results\":"
                   "[{\"message_id\":\"42\",\"conversation_id\":\"g:1\","
                   "\"seq\":3,\"sender_id\":\"a\",\"client_msg_id\":\"c1\","
                   "\"kind\":\"text\",\"body\":\"a b\",\"server_ts\":5,"
                   "\"highlight\":\"<b>a</b> b\"}],\"has_more\":true}");
    free(got);

    got = chat_frame_dump(chat_frame_blocked(NULL, users, 2), &len);
    check_str(got, "{\"type\":\"blocked\",\"user_ids\":[\"bob\","
                   "\"carol\"]}");
    free(got);
}


static void
test_frames(void)
{
    chat_message_t   m = { "dm:alice:bob", 7, 9007199254740993LL, "alice",
                           "c\"1", "text", "h\u00e9\n", 1714128000123LL, 0, 0, 0, false, NULL, NULL };
    chat_request_t   req;
    char            *s;

    s = dump(chat_frame_ack(&m));
    check_str(s, "{\"type\":\"ack\",\"client_msg_id\":\"c\\\"1\","
                 "\"message_id\":\"9007199254740993\","
                 "\"conversation_id\":\"dm:alice:bob\",\"seq\":7,"
                 "\"server_ts\":1714128000123}");
    free(s);

    s = dump(chat_frame_message_object(&m, true));
    check_str(s, "{\"type\":\"message\",\"message_id\":\"9007199254740993\","
                 "\"conversation_id\":\"dm:alice:bob\",\"seq\":7,"
                 "\"sender_id\":\"alice\",\"client_msg_id\":\"c\\\"1\","
                 "\"kind\":\"text\",\"body\":\"h\u00e9\\n\","
                 "\"server_ts\":1714128000123}");
    free(s);

    s = dump(chat_frame_message_object(&m, false));
    check(strncmp(s, "{\"message_id\":", 14) == 0);
    free(s);

    /* a system message's body is an object on the wire */
    m.kind = "system";
    m.cmid = NULL;
    m.body = "{\"event\":\"members_added\",\"user_ids\":[\"c\"],\"by\":\"a\"}";
    s = dump(chat_frame_message_object(&m, true));
    check(strstr(s, "\"client_msg_id\":null,\"kind\":\"system\",\"body\":"
                    "{\"event\":\"members_added\",\"user_ids\":[\"c\"],"
                    "\"by\":\"a\"},") != NULL);
    free(s);

    /* errors echo the tag exactly: any JSON value as req_id */
    check(parse(&req, "{\"op\":\"history\"," HEAD ",\"conv\":\"c\","
                      "\"req_id\":{\"k\":[1,\"x\",null,2.5,"
                      "9007199254740993]},\"limit\":0}") == CHAT_PARSE_BAD);
    s = dump(chat_frame_error_for(&req, "bad_request", "limit out of range"));
    check_str(s, "{\"type\":\"error\",\"code\":\"bad_request\","
                 "\"message\":\"limit out of range\","
                 "\"req_id\":{\"k\":[1,\"x\",null,2.5,9007199254740993]}}");
    free(s);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"send\"," HEAD ",\"conv\":\"dm:bob:carol\","
                      "\"cmid\":\"x1\",\"body\":\"b\"}") == CHAT_PARSE_OK);
    s = dump(chat_frame_error_for(&req, "forbidden", "no"));
    check_str(s, "{\"type\":\"error\",\"code\":\"forbidden\","
                 "\"message\":\"no\",\"client_msg_id\":\"x1\"}");
    free(s);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"sync\"," HEAD "}") == CHAT_PARSE_OK);
    s = dump(chat_frame_error_for(&req, "internal", "x"));
    check_str(s, "{\"type\":\"error\",\"code\":\"internal\","
                 "\"message\":\"x\"}");
    free(s);
    chat_request_free(&req);
}


static void
test_payload(void)
{
    chat_buf_t   b = { 0 };
    const char  *sids[] = { "00000000000000aa", "00000000000000bb" };

    chat_payload_record(&b, sids, 2, "hello", 5);
    chat_payload_record(&b, sids + 1, 1, "{}", 2);
    check_str(chat_buf_cstr(&b), "F 00000000000000aa,00000000000000bb 5\n"
                                 "helloF 00000000000000bb 2\n{}");
    chat_buf_free(&b);
}


static void
test_outbox(void)
{
    chat_outbox_t  out;
    size_t         f0, f1;

    memset(&out, 0, sizeof(out));

    f0 = chat_outbox_frame(&out, json_pack("{s:s}", "type", "x"));
    chat_outbox_to_session(&out, f0, "s1:0", "aa");
    f1 = chat_outbox_frame(&out, json_pack("{s:s}", "type", "y"));
    chat_outbox_to_user(&out, f1, "bob", "s1:0", "aa");

    check(out.nframes == 2 && out.ndeliveries == 2);
    check(out.frames[f1].len == strlen("{\"type\":\"y\"}"));
    check(out.deliveries[1].user && strcmp(out.deliveries[1].user, "bob") == 0);

    chat_outbox_truncate(&out, 1, 1);
    check(out.nframes == 1 && out.ndeliveries == 1);

    chat_outbox_reset(&out);
    free(out.frames);
    free(out.deliveries);
}


static void
test_pg_arrays(void)
{
    chat_buf_t  b = { 0 };

    chat_pg_array_begin(&b);
    check_str(chat_pg_array_end(&b), "{}");

    chat_pg_array_begin(&b);
    chat_pg_array_text(&b, "a");
    chat_pg_array_text(&b, "");
    chat_pg_array_text(&b, "q\"b\\s,{}");
    chat_pg_array_text(&b, NULL);
    chat_pg_array_text(&b, "NULL");
    check_str(chat_pg_array_end(&b),
              "{\"a\",\"\",\"q\\\"b\\\\s,{}\",NULL,\"NULL\"}");

    chat_pg_array_begin(&b);
    chat_pg_array_int(&b, 1);
    chat_pg_array_int(&b, -9223372036854775807LL - 1);
    check_str(chat_pg_array_end(&b), "{1,-9223372036854775808}");

    chat_buf_free(&b);
}


static void
test_containers(void)
{
    chat_map_t    m = { 0 };
    chat_arena_t  a = { 0 };
    char         *keys[5000], *big;
    size_t        i, v;
    bool          all = true;

    for (i = 0; i < 5000; i++) {
        char  k[32];

        snprintf(k, sizeof(k), "key%zu", i);
        keys[i] = chat_arena_strdup(&a, k);
        if (chat_map_put(&m, keys[i], i) != i) {
            all = false;
        }
    }

    check(all);
    check(m.count == 5000);
    check(chat_map_put(&m, "key17", 99) == 17);     /* first one stays */

    all = true;
    for (i = 0; i < 5000; i++) {
        if (!chat_map_get(&m, keys[i], &v) || v != i) {
            all = false;
        }
    }

    check(all);
    check(!chat_map_get(&m, "nope", &v));

    big = chat_arena_alloc(&a, 200000);         /* larger than a chunk */
    memset(big, 1, 200000);
    check(strcmp(keys[4999], "key4999") == 0);

    chat_map_free(&m);
    chat_arena_free(&a);

}


/* the --redis address every Redis connection of the workers is made from */
static void
test_redis_link(void)
{
    chat_redis_link_t  l;
    char               hex[41];

    check(chat_redis_link_init(&l, "10.0.0.5:6380", " (streams)"));
    check_str(l.host, "10.0.0.5");
    check(l.port == 6380);
    check_str(l.name, " (streams)");
    check(l.timeout_ms == 10000);
    chat_redis_link_free(&l);
    check(l.host == NULL);

    /* no port: Redis's own, not a socket path */
    check(chat_redis_link_init(&l, "redis.internal", ""));
    check_str(l.host, "redis.internal");
    check(l.port == 6379);
    chat_redis_link_free(&l);

    /* a path, colons and all */
    check(chat_redis_link_init(&l, "/run/redis:a/redis.sock", ""));
    check_str(l.host, "/run/redis:a/redis.sock");
    check(l.port == 0);
    chat_redis_link_free(&l);

    check(!chat_redis_link_init(&l, "10.0.0.5:", ""));
    check(!chat_redis_link_init(&l, "10.0.0.5:0", ""));
    check(!chat_redis_link_init(&l, "10.0.0.5:65536", ""));
    check(!chat_redis_link_init(&l, "10.0.0.5:63x", ""));
    check(l.host == NULL);

    /* FIPS 180's first example */
    chat_redis_link_sha1("abc", hex);
    check_str(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
}


static void
test_option_long(void)
{
    long  n = -1;

    check(chat_option_long("t", "batch", "64", 1, 10000, &n) && n == 64);
    check(chat_option_long("t", "batch", "1", 1, 10000, &n) && n == 1);
    check(chat_option_long("t", "batch", "10000", 1, 10000, &n)
          && n == 10000);
    check(chat_option_long("t", "keep", "31536000000", 1000, 31536000000L,
                           &n)
          && n == 31536000000L);

    n = 7;
    check(!chat_option_long("t", "batch", "0", 1, 10000, &n));
    check(!chat_option_long("t", "batch", "10001", 1, 10000, &n));
    check(!chat_option_long("t", "batch", "", 1, 10000, &n));
    check(!chat_option_long("t", "batch", "12x", 1, 10000, &n));
    check(!chat_option_long("t", "batch", "-3", 1, 10000, &n));
    check(!chat_option_long("t", "batch", "99999999999999999999", 1, 10000,
                            &n));
    check(n == 7);
}


int
main(void)
{
    test_ids();
    test_direct_ids();
    test_parse();
    test_frames();
    test_frame_text();
    test_message_state();
    test_payload();
    test_outbox();
    test_pg_arrays();
    test_containers();
    test_redis_link();
    test_option_long();

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
