/*
 * test_worker_stream.c: unit tests of catch-up in chat_worker: a sync's
 * answer written in pieces (worker_stream.c) as worker_ops.c reads it a
 * chunk at a time, the conversations frame within its byte bound and its
 * page ends (worker_frame.c), and the conversations and receipts ops.
 *
 * The worker's files are included, not linked, with the store and the
 * Redis lists of worker_fake.h. Prints "N passed, N failed" and exits 1
 * on a failure.
 */

#define _GNU_SOURCE 1

#include <string.h>

#include "../../workers/worker_util.c"
#include "../../workers/worker_request.c"
#include "../../workers/worker_media.c"
#include "../../workers/worker_ops.c"
#include "../../workers/worker_answer.c"
#include "../../workers/worker_fanout.c"
#include "../../workers/worker_frame.c"
#include "../../workers/worker_outbox.c"
#include "../../workers/worker_stream.c"
#include "../../workers/worker_members.c"
#include "../../workers/worker_index.c"


#include "worker_fake.h"
#include "worker_unit.h"


#define SID      "00000000000000ab"
#define SESSION  "s1:0/" SID " "


static chat_members_cache_t  cache;
static chat_outbox_t         out;
static chat_arena_t          arena;
static chat_op_ctx_t         ctx;
static chat_stream_t         stream;
static chat_request_t        req;
static chat_item_t           item;
static chat_buf_t            got;


static void
setup(const char *record)
{
    fake_reset();
    memset(&out, 0, sizeof(out));
    memset(&ctx, 0, sizeof(ctx));
    memset(&item, 0, sizeof(item));
    ctx.members = &cache;
    ctx.out = &out;
    ctx.arena = &arena;
    chat_stream_init(&stream, NULL);
    ctx.stream = &stream;

    check(parse(&req, record) == CHAT_PARSE_OK);

    item.req = &req;
    item.op = chat_ops_find(req.op);
}


static const char *
run(void)
{
    item.op->answer(&ctx, &item);

    chat_buf_free(&got);
    fake_outbox(&got, &out);

    return got.len ? chat_buf_cstr(&got) : "";
}


static void
teardown(void)
{
    chat_request_free(&req);
    chat_outbox_reset(&out);
    free(out.frames);
    free(out.deliveries);
    chat_stream_free(&stream);
    chat_arena_free(&arena);
}


/* n direct conversations of alice, newest first, one ms apart */
static chat_sync_conv_t *
conversations(size_t n, int64_t last_seq, const char *last_body)
{
    chat_sync_conv_t  *c;
    char               id[64];
    size_t             i;

    c = chat_arena_alloc(&arena, (n + 1) * sizeof(chat_sync_conv_t));
    memset(c, 0, (n + 1) * sizeof(chat_sync_conv_t));

    for (i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "dm:alice:p%04zu", i);
        c[i].conv = chat_arena_strdup(&arena, id);
        c[i].kind = "direct";
        c[i].member_count = 2;
        c[i].last_seq = last_seq;
        c[i].others_delivered_seq = last_seq;
        c[i].others_read_seq = last_seq - 1;
        c[i].activity = 1000000 - (int64_t) i;
        c[i].activity_id = 100000 - (int64_t) i;

        if (last_body) {
            c[i].has_last = true;
            c[i].last = (chat_message_t) { c[i].conv, last_seq,
                                           c[i].activity_id, "bob", "x",
                                           "text", last_body,
                                           c[i].activity, 0, 0, 0, false, NULL, NULL };
        }
    }

    return c;
}


/* ---- the conversations frame ---- */

static void
test_frame(void)
{
    chat_sync_rows_t   s;
    chat_sync_conv_t  *c;
    json_t            *j, *o, *items, *tag;
    char              *text, *dumped;
    size_t             listed, len, i;

    memset(&s, 0, sizeof(s));
    c = conversations(5, 3, "hi");
    s.convs = c;
    s.nconvs = 5;
    s.limit = 4;

    /* at most the limit, has_more when there were more rows; the same
     * text jansson writes of the whole object */
    tag = json_string("r");
    text = chat_frame_conversations_text(tag, &s, false, 1 << 20, &listed,
                                         &len);
    json_decref(tag);
    check(listed == 4 && strlen(text) == len);

    o = json_object();
    items = json_array();
    json_object_set_new(o, "type", json_string("conversations"));
    json_object_set_new(o, "req_id", json_string("r"));
    for (i = 0; i < 4; i++) {
        json_array_append_new(items, chat_frame_conversation_item(&c[i],
                                                                  false));
    }
    json_object_set_new(o, "items", items);
    json_object_set_new(o, "has_more", json_true());
    dumped = chat_frame_dump(o, &i);
    check_str(text, dumped);
    free(dumped);
    free(text);

    /* fewer rows than the limit: all, nothing more */
    s.limit = 10;
    text = chat_frame_conversations_text(NULL, &s, false, 1 << 20, &listed,
                                         &len);
    check(listed == 5 && strstr(text, "\"has_more\":false}") != NULL);
    check(strncmp(text, "{\"type\":\"conversations\",\"items\":[", 33) == 0);
    free(text);

    /* the byte bound: as many as fit, the next page has the rest */
    c = conversations(300, 5, NULL);
    s.convs = c;
    s.nconvs = 201;
    s.limit = 200;
    tag = json_integer(1);
    text = chat_frame_conversations_text(tag, &s, true, 4096, &listed, &len);
    json_decref(tag);
    check(len <= 4096 && listed > 5 && listed < 200);
    j = json_loads(text, 0, NULL);
    check(j && json_array_size(json_object_get(j, "items")) == listed);
    check(j && json_is_true(json_object_get(j, "has_more")));
    json_decref(j);
    free(text);

    /* one item always goes, however large */
    c = conversations(3, 5, NULL);
    s.convs = c;
    s.nconvs = 3;
    text = chat_frame_conversations_text(NULL, &s, true, 10, &listed, &len);
    check(listed == 1 && strstr(text, "\"has_more\":true}") != NULL);
    free(text);

    /* a page does not end inside one ms (2, 3, 4 share it)... */
    c = conversations(6, 5, NULL);
    c[3].activity = c[2].activity;
    c[4].activity = c[2].activity;
    s.convs = c;
    s.nconvs = 6;
    s.limit = 4;
    text = chat_frame_conversations_text(NULL, &s, false, 1 << 20, &listed,
                                         &len);
    check(listed == 2);
    free(text);

    /* ... unless that ms is the whole page */
    c[0].activity = c[2].activity;
    c[1].activity = c[2].activity;
    text = chat_frame_conversations_text(NULL, &s, false, 1 << 20, &listed,
                                         &len);
    check(listed == 4);
    free(text);

    /* truncated is the sync's; the others' pointers are everywhere */
    c = conversations(1, 300, NULL);
    c[0].truncated = true;
    o = chat_frame_conversation_item(&c[0], true);
    check(json_is_true(json_object_get(o, "truncated")));
    check(json_integer_value(json_object_get(o, "others_delivered_seq"))
          == 300);
    check(json_integer_value(json_object_get(o, "others_read_seq")) == 299);
    json_decref(o);
    o = chat_frame_conversation_item(&c[0], false);
    check(json_object_get(o, "truncated") == NULL);
    json_decref(o);
}


/* ---- pieces ---- */

/* the payload's records in order: "F", "E" and the frames' first bytes */
static size_t
records(const char *p, size_t len, chat_buf_t *kinds)
{
    ngx_chat_wire_record_t  rec;
    const char             *end = p + len;
    size_t                  n = 0;

    while (ngx_chat_wire_record_next(&p, end, &rec) == 1) {
        check(rec.args_len >= NGX_CHAT_WIRE_SID_LEN
              && memcmp(rec.args, SID, NGX_CHAT_WIRE_SID_LEN) == 0);
        chat_buf_addc(kinds, (char) rec.type);
        n++;
    }

    check(p == end);

    return n;
}


static void
test_pieces(void)
{
    chat_streamed_t  a;
    chat_buf_t       kinds = { 0 };
    char             frame[3000];
    const char      *line;
    size_t           i, pushes;

    memset(frame, 'f', sizeof(frame));

    /* small: handed back whole, nothing pushed, no E */
    fake_reset();
    chat_stream_init(&stream, NULL);
    chat_stream_begin(&stream, SID);
    chat_stream_frame(&stream, "{}", 2);
    chat_stream_frame(&stream, frame, sizeof(frame));
    check(chat_stream_end(&stream, &a, &arena) == CHAT_STREAM_DONE);
    check(a.key == NULL && fake.pushed.len == 0);
    check(records(a.piece, a.piece_len, &kinds) == 2);
    check_str(chat_buf_cstr(&kinds), "FF");

    /* large: pieces of at most NGX_CHAT_WIRE_STREAM_PIECE, an expiry on
     * the first and at the end, the last ending with E */
    fake_reset();
    chat_stream_begin(&stream, SID);
    for (i = 0; i < 100; i++) {
        chat_stream_frame(&stream, frame, sizeof(frame));
    }
    check(chat_stream_end(&stream, &a, &arena) == CHAT_STREAM_DONE);
    check(a.key != NULL && strncmp(a.key, "chat:stream:" SID ":", 29) == 0);
    check(a.piece == NULL);

    pushes = 0;
    for (line = chat_buf_cstr(&fake.pushed); (line = strstr(line, "RPUSH "));
         line++)
    {
        const char  *n = strchr(line + 6, ' ');

        check(n && strtoul(n + 1, NULL, 10) <= NGX_CHAT_WIRE_STREAM_PIECE);
        pushes++;
    }
    /* 300 kB of frames: 4 pieces of 21 frames, then 16 and the E; each
     * piece whole records */
    check(pushes == 5);
    for (i = 0; i < pushes; i++) {
        size_t  from = i ? fake.piece_end[i - 1] : 0;

        kinds.len = 0;
        check(records(fake.pieces.data + from, fake.piece_end[i] - from,
                      &kinds) == (i < 4 ? 21 : 17));
        check(strspn(chat_buf_cstr(&kinds), "F") == (i < 4 ? 21 : 16));
    }
    check(chat_buf_cstr(&kinds)[16] == 'E');
    check(strstr(chat_buf_cstr(&fake.pushed), "EXPIRE") != NULL);
    line = chat_buf_cstr(&fake.pushed);
    check(strncmp(line + fake.pushed.len - strlen(a.key) - 8, "EXPIRE ", 7)
          == 0);

    /* a frame larger than a piece travels alone */
    fake_reset();
    {
        char  *big = chat_alloc(NGX_CHAT_WIRE_STREAM_PIECE + 10);

        memset(big, 'b', NGX_CHAT_WIRE_STREAM_PIECE + 10);
        chat_stream_begin(&stream, SID);
        chat_stream_frame(&stream, "{}", 2);
        chat_stream_frame(&stream, big, NGX_CHAT_WIRE_STREAM_PIECE + 10);
        chat_stream_frame(&stream, "{}", 2);
        check(chat_stream_end(&stream, &a, &arena) == CHAT_STREAM_DONE);
        free(big);
    }
    check(strstr(chat_buf_cstr(&fake.pushed), "RPUSH")
          && fake.pushes == 3);

    /* Redis failed under it: written again under another key, the old
     * one deleted */
    fake_reset();
    fake.push_fail = 2;
    chat_stream_begin(&stream, SID);
    for (i = 0; i < 100; i++) {
        chat_stream_frame(&stream, frame, sizeof(frame));
    }
    check(chat_stream_broken(&stream));
    check(chat_stream_end(&stream, &a, &arena) == CHAT_STREAM_AGAIN);
    check(fake.waits == 1);
    check(strstr(chat_buf_cstr(&fake.pushed), "DEL chat:stream:") != NULL);
    {
        char  old[NGX_CHAT_WIRE_KEY_MAX];

        memcpy(old, stream.key, stream.key_len + 1);
        chat_stream_begin(&stream, SID);
        check(strcmp(old, stream.key) != 0 && !chat_stream_broken(&stream));
    }

    chat_buf_free(&kinds);
    chat_stream_free(&stream);
}


/* ---- a sync, read a chunk at a time ---- */

static void
test_sync(void)
{
    chat_sync_conv_t  *c;
    chat_message_t    *m;
    const char        *p;
    char               body[1100];
    size_t             i, k, n;

    /* the store's messages outlive each case's conversations */
    static char        names[60][24];

    setup("{\"op\":\"sync\"," HEAD ",\"req_id\":\"big\"}");

    /* 60 conversations of 120 messages of 1 kB, none read */
    memset(body, 'k', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    c = conversations(60, 120, "last");
    m = chat_alloc(60 * 120 * sizeof(chat_message_t));

    for (i = 0, n = 0; i < 60; i++) {
        c[i].truncated = true;
        snprintf(names[i], sizeof(names[i]), "%s", c[i].conv);
        for (k = 1; k <= 120; k++, n++) {
            m[n] = (chat_message_t) { names[i], (int64_t) k,
                                      (int64_t) n + 1, "bob", "x", "text",
                                      body, 5, 0, 0, 0, false, NULL, NULL };
        }
    }

    fake.messages = m;
    fake.nmessages = n;
    item.u.read.sync.convs = c;
    item.u.read.sync.nconvs = 60;
    item.u.read.sync.limit = NGX_CHAT_WIRE_SYNC_LIST;

    check(chat_ops_stream_sync(&ctx, &item) == CHAT_STORE_OK);
    check(!item.failed);

    /* the store was asked a few conversations at a time */
    check(fake.chunks == 15);

    /* the answer is in a list; its node is told with an S record */
    check(item.streamed.key != NULL);
    p = run();
    check(strncmp(p, SESSION "stream chat:stream:" SID ":", 44) == 0);
    check(out.ndeliveries == 1);

    /* 60 x 100 frames of 1.25 kB: 51 a piece; in order, the newest 100 of
     * each conversation after the list, sync_done and E last */
    check(fake.pushes == 118);
    {
        chat_buf_t               kinds = { 0 };
        ngx_chat_wire_record_t   rec;
        const char              *q = fake.pieces.data;
        const char              *end = q + fake.pieces.len;
        char                     want[96];
        size_t                   nrec = 0;

        check(records(q, fake.pieces.len, &kinds) == 6003);
        check(strspn(chat_buf_cstr(&kinds), "F") == 6002);

        while (ngx_chat_wire_record_next(&q, end, &rec) == 1) {
            if (nrec == 0) {
                check(strncmp(rec.body, "{\"type\":\"conversations\"", 23)
                      == 0);
            } else if (nrec == 1 || nrec == 6000) {
                snprintf(want, sizeof(want), "\"conversation_id\":\"%s\","
                         "\"seq\":%d,", nrec == 1 ? names[0] : names[59],
                         nrec == 1 ? 21 : 120);
                check(rec.body_len > 0 && memmem(rec.body, rec.body_len,
                                                 want, strlen(want)));
            } else if (nrec == 6001) {
                check(rec.body_len == 35 && strncmp(rec.body,
                      "{\"type\":\"sync_done\",\"req_id\":\"big\"}", 35)
                      == 0);
            }
            nrec++;
        }

        chat_buf_free(&kinds);
    }
    teardown();

    /* a chunk the store refuses: the sync fails, what it wrote goes */
    setup("{\"op\":\"sync\"," HEAD ",\"req_id\":\"big\"}");
    c = conversations(60, 120, "last");
    fake.messages = m;
    fake.nmessages = n;
    fake.refuse = c[40].conv;
    item.u.read.sync.convs = c;
    item.u.read.sync.nconvs = 60;
    item.u.read.sync.limit = NGX_CHAT_WIRE_SYNC_LIST;
    check(chat_ops_stream_sync(&ctx, &item) == CHAT_STORE_OK);
    check(item.failed && item.streamed.key == NULL);
    check(strstr(chat_buf_cstr(&fake.pushed), "DEL chat:stream:") != NULL);
    teardown();

    /* Redis failing under it: the whole answer again */
    setup("{\"op\":\"sync\"," HEAD ",\"req_id\":\"big\"}");
    c = conversations(60, 120, "last");
    fake.messages = m;
    fake.nmessages = n;
    fake.push_fail = 3;
    item.u.read.sync.convs = c;
    item.u.read.sync.nconvs = 60;
    item.u.read.sync.limit = NGX_CHAT_WIRE_SYNC_LIST;
    check(chat_ops_stream_sync(&ctx, &item) == CHAT_STORE_OK);
    check(!item.failed && item.streamed.key != NULL && fake.waits == 1);
    check(fake.chunks > 15);
    teardown();

    /* with the cursors at the end: the list alone, inline */
    setup("{\"op\":\"sync\"," HEAD ",\"req_id\":\"small\"}");
    c = conversations(3, 120, "last");
    for (i = 0; i < 3; i++) {
        c[i].after_seq = 120;
    }
    fake.messages = m;
    fake.nmessages = n;
    item.u.read.sync.convs = c;
    item.u.read.sync.nconvs = 3;
    check(chat_ops_stream_sync(&ctx, &item) == CHAT_STORE_OK);
    check(item.streamed.key == NULL && fake.pushes == 0);
    p = run();
    check(out.ndeliveries == 2);
    check(strncmp(p, SESSION "{\"type\":\"conversations\",\"req_id\":"
                  "\"small\",\"items\":[", 60) == 0);
    check(strstr(p, SESSION "{\"type\":\"sync_done\",\"req_id\":\"small\"}")
          != NULL);
    teardown();

    free(m);
}


/* the chunks: at least one conversation, at most the chunk's messages */
static void
test_chunks(void)
{
    chat_sync_conv_t  c[6];

    memset(c, 0, sizeof(c));
    c[0].last_seq = 500;                    /* capped: 100 */
    c[1].last_seq = 300, c[1].after_seq = 250;
    c[2].last_seq = 10, c[2].after_seq = 10;
    c[3].last_seq = 400, c[3].after_seq = 100;
    c[4].last_seq = 100;
    c[5].last_seq = 100;

    check(chat_ops_sync_chunk(c, 0, 6) == 5);      /* 100+50+0+100+100 */
    check(chat_ops_sync_chunk(c, 5, 6) == 1);
    check(chat_ops_sync_chunk(c, 2, 3) == 1);
}


/* ---- the requests ---- */

static void
test_parse(void)
{
    chat_request_t  r;

    check(parse(&r, "{\"op\":\"conversations\"," HEAD ",\"req_id\":1}")
          == CHAT_PARSE_OK);
    check(r.limit == 50 && r.before_ts == INT64_MAX && r.before_id == 0);
    chat_request_free(&r);

    check(parse(&r, "{\"op\":\"conversations\"," HEAD ",\"req_id\":1,"
                    "\"limit\":200,\"before_ts\":5,"
                    "\"before_message_id\":\"9223372036854775807\"}")
          == CHAT_PARSE_OK);
    check(r.limit == 200 && r.before_ts == 5
          && r.before_id == INT64_MAX);
    chat_request_free(&r);

    check(parse(&r, "{\"op\":\"conversations\"," HEAD ",\"limit\":201}")
          == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"conversations\"," HEAD ",\"before_ts\":-2}")
          == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"conversations\"," HEAD ",\"before_ts\":5,"
                    "\"before_message_id\":\"9223372036854775808\"}")
          == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"conversations\"," HEAD ","
                    "\"before_message_id\":\"5\"}") == CHAT_PARSE_BAD);
    chat_request_free(&r);

    check(parse(&r, "{\"op\":\"receipts\"," HEAD ",\"conv\":\"g:1\"}")
          == CHAT_PARSE_OK);
    check_str(r.conv, "g:1");
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"receipts\"," HEAD "}") == CHAT_PARSE_BAD);
    chat_request_free(&r);

    /* reads of one snapshot, answering only the requester */
    check(chat_ops_find(NGX_CHAT_WIRE_OP_CONVERSATIONS)->store
          == chat_ops_find(NGX_CHAT_WIRE_OP_SYNC)->store);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_RECEIPTS)->store
          == chat_ops_find(NGX_CHAT_WIRE_OP_SYNC)->store);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_CONVERSATIONS)->stage
          == CHAT_STAGE_READ);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_RECEIPTS)->fanout == NULL);
}


static void
test_answers(void)
{
    chat_pointers_row_t  p[2] = { { "alice", 5, 5 }, { "bob", 4, 2 } };

    setup("{\"op\":\"receipts\"," HEAD ",\"req_id\":\"r\",\"conv\":\"g:1\"}");
    item.u.read.receipts.members = p;
    item.u.read.receipts.n = 2;
    check_str(run(), SESSION "{\"type\":\"receipts\",\"req_id\":\"r\","
                     "\"conversation_id\":\"g:1\",\"members\":["
                     "{\"user_id\":\"alice\",\"delivered_seq\":5,"
                     "\"read_seq\":5},{\"user_id\":\"bob\","
                     "\"delivered_seq\":4,\"read_seq\":2}]}\n");
    teardown();

    setup("{\"op\":\"receipts\"," HEAD ",\"req_id\":\"r\",\"conv\":\"g:1\"}");
    item.u.read.receipts.forbidden = true;
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                     "\"message\":\"not a member of this conversation\","
                     "\"req_id\":\"r\"}\n");
    teardown();

    setup("{\"op\":\"conversations\"," HEAD ",\"req_id\":7,\"limit\":1}");
    item.u.read.sync.convs = conversations(2, 4, NULL);
    item.u.read.sync.nconvs = 2;
    item.u.read.sync.limit = 1;
    check_str(run(), SESSION "{\"type\":\"conversations\",\"req_id\":7,"
                     "\"items\":[{\"conversation_id\":\"dm:alice:p0000\","
                     "\"kind\":\"direct\",\"name\":null,\"member_count\":2,"
                     "\"last_seq\":4,\"delivered_seq\":0,\"read_seq\":0,"
                     "\"others_delivered_seq\":4,\"others_read_seq\":3,"
                     "\"unread\":0,\"last_message\":null}],"
                     "\"has_more\":true}\n");
    teardown();
}


int
main(void)
{
    memset(&cache, 0, sizeof(cache));

    test_frame();
    test_pieces();
    test_chunks();
    test_sync();
    test_parse();
    test_answers();

    chat_buf_free(&got);
    chat_arena_free(&arena);
    chat_members_clear(&cache);
    chat_members_release(&cache);

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
