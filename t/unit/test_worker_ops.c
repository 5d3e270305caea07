/*
 * test_worker_ops.c: unit tests of chat_worker's table of ops
 * (worker_ops.c) and of what the rows make of the store's results: the
 * frames for the requester (worker_answer.c) and for everyone else
 * (worker_fanout.c).
 *
 * The worker's files are included, not linked, with the store and Redis
 * of worker_fake.h: cc -I/usr/include/postgresql test_worker_ops.c
 * -ljansson. Prints "N passed, N failed" and exits 1 on a failure.
 */

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


#define SESSION  "s1:0/00000000000000ab "


/*
 * The ops of the wire that this worker does not do yet: they have no row,
 * and their records are refused (test_no_row). Giving one a row is taking
 * it out of here: none is left.
 */
static bool
not_yet(int op)
{
    (void) op;

    return false;
}


/* every op of the wire has its row, and the rows say what they should */
static void
test_table(void)
{
    const chat_op_t  *row;
    const char       *name;
    int               op;

    for (op = 0; op < NGX_CHAT_WIRE_OP_COUNT; op++) {
        row = chat_ops_find((ngx_chat_wire_op_t) op);
        name = ngx_chat_wire_op_name((ngx_chat_wire_op_t) op);

        if (not_yet(op)) {
            check(row == NULL);
            continue;
        }

        check(row != NULL);

        if (row == NULL) {
            printf("     no row for op %s\n", name);
            continue;
        }

        check(row->op == (ngx_chat_wire_op_t) op);
        check(ngx_chat_wire_op_find(name, strlen(name)) == op);
        check(row->parse != NULL && row->answer != NULL);
        check(row->store != NULL);
        check(row->refused != NULL && row->refused[0] != '\0');
        check(row->stage <= CHAT_STAGE_AFTER);
        check(row->tag == (op == NGX_CHAT_WIRE_OP_SEND
                           || op == NGX_CHAT_WIRE_OP_EDIT
                           || op == NGX_CHAT_WIRE_OP_DELETE
                           || op == NGX_CHAT_WIRE_OP_REACT
                           ? CHAT_TAG_CMID : CHAT_TAG_REQ_ID));
    }

    check(chat_ops_find(NGX_CHAT_WIRE_OP_COUNT) == NULL);
    check(chat_ops_find((ngx_chat_wire_op_t) -1) == NULL);

    /* where each one runs in a batch */
    check(chat_ops_find(NGX_CHAT_WIRE_OP_SEND)->stage == CHAT_STAGE_SEND);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_RECEIPT)->stage
          == CHAT_STAGE_RECEIPT);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_TYPING)->stage == CHAT_STAGE_TYPING);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_CREATE_GROUP)->stage
          == CHAT_STAGE_MEMBERS);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_ADD_MEMBERS)->stage
          == CHAT_STAGE_MEMBERS);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_REMOVE_MEMBERS)->stage
          == CHAT_STAGE_MEMBERS);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_SYNC)->stage == CHAT_STAGE_READ);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_HISTORY)->stage == CHAT_STAGE_READ);
    /* a repair after every segment: it reads what the batch stored */
    check(chat_ops_find(NGX_CHAT_WIRE_OP_REPAIR)->stage == CHAT_STAGE_READ);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_REPAIR)->nosession);
    check(!chat_ops_find(NGX_CHAT_WIRE_OP_SEND)->nosession);
    /* an image's thumbnail after the batch's delivery, on nginx's word */
    check(chat_ops_find(NGX_CHAT_WIRE_OP_UPLOADED)->stage
          == CHAT_STAGE_AFTER);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_UPLOADED)->nosession);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_UPLOADED)->fanout == NULL);

    /* a change to a message runs alone where it comes, like a
     * membership change, and is answered and fanned out like a send */
    check(chat_ops_find(NGX_CHAT_WIRE_OP_EDIT)->stage == CHAT_STAGE_MEMBERS);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_DELETE)->stage
          == CHAT_STAGE_MEMBERS);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_REACT)->stage == CHAT_STAGE_MEMBERS);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_EDIT)->fanout == chat_fanout_send);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_REACT)->answer == chat_answer_send);

    /* the reads share one snapshot: one store function */
    check(chat_ops_find(NGX_CHAT_WIRE_OP_SYNC)->store
          == chat_ops_find(NGX_CHAT_WIRE_OP_HISTORY)->store);

    /* reads answer only their requester */
    check(chat_ops_find(NGX_CHAT_WIRE_OP_SYNC)->fanout == NULL);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_HISTORY)->fanout == NULL);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_TYPING)->fanout != NULL);

    /* a refused batch of sends or reads is tried again one by one; of
     * receipts it fails as a whole */
    check(chat_ops_find(NGX_CHAT_WIRE_OP_SEND)->split);
    check(chat_ops_find(NGX_CHAT_WIRE_OP_SYNC)->split);
    check(!chat_ops_find(NGX_CHAT_WIRE_OP_RECEIPT)->split);
}


/* an op the wire does not know is refused, never taken for another one */
static void
test_unknown_op(void)
{
    chat_request_t  req;

    check(parse(&req, "{\"op\":\"typo\"," HEAD ",\"conv\":\"g:1\","
                      "\"state\":\"start\"}") == CHAT_PARSE_BAD);
    check(req.op == NGX_CHAT_WIRE_OP_COUNT);
    check(chat_ops_find(req.op) == NULL);
    check(req.conv == NULL && req.state == NULL);
    chat_request_free(&req);

    /* an op's name is exactly the wire's */
    check(parse(&req, "{\"op\":\"Typing\"," HEAD ",\"conv\":\"g:1\","
                      "\"state\":\"start\"}") == CHAT_PARSE_BAD);
    check(chat_ops_find(req.op) == NULL);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"typing \"," HEAD ",\"conv\":\"g:1\","
                      "\"state\":\"start\"}") == CHAT_PARSE_BAD);
    chat_request_free(&req);

    check(parse(&req, "{" HEAD ",\"conv\":\"g:1\",\"state\":\"start\"}")
          == CHAT_PARSE_BAD);
    check(chat_ops_find(req.op) == NULL);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":7," HEAD "}") == CHAT_PARSE_BAD);
    chat_request_free(&req);

    /* the known one, for contrast */
    check(parse(&req, "{\"op\":\"typing\"," HEAD ",\"conv\":\"g:1\","
                      "\"state\":\"start\"}") == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_TYPING);
    check(!chat_ops_unknown(&req));
    chat_request_free(&req);
}


/* a node's repair: no session, its node is where the answer goes; a
 * fault in it cannot be answered, so it is dropped; and an unknown op is
 * still refused and said to be unknown (the batch logs it as an error) */
static void
test_no_row(void)
{
    chat_request_t  req;
    const char     *r;
    char            why[160];

    /* as the module asks for a repair */
    r = "{\"op\":\"repair\",\"node\":\"s1:0\",\"partition\":3,"
        "\"after\":5,\"upto\":9,\"since\":1,\"ts\":7}";
    req.partition = 3;
    req.offset = 42;
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_REPAIR);
    check(!chat_ops_unknown(&req));
    check_str(req.node, "s1:0");
    check(req.sid == NULL);
    check(req.ts == 7);
    check(req.repair.partition == 3 && req.repair.after == 5
          && req.repair.upto == 9 && req.repair.since == 1);
    chat_request_free(&req);

    /* a gap from the node's start on: after -1; since defaults to 0 */
    r = "{\"op\":\"repair\",\"node\":\"s1:0\",\"partition\":3,"
        "\"after\":-1,\"upto\":9}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_OK);
    check(req.repair.after == -1 && req.repair.since == 0);
    chat_request_free(&req);

    /* another partition than its own: its gap may not be stored yet */
    r = "{\"op\":\"repair\",\"node\":\"s1:0\",\"partition\":2,"
        "\"after\":5,\"upto\":9}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_DROP);
    check_str(why, "a repair of partition 2 in partition 3");
    chat_request_free(&req);

    /* not a range, no node: dropped, nobody to tell */
    r = "{\"op\":\"repair\",\"node\":\"s1:0\",\"partition\":3,"
        "\"after\":9,\"upto\":5}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_DROP);
    chat_request_free(&req);
    r = "{\"op\":\"repair\",\"partition\":3,\"after\":1,\"upto\":5}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_DROP);
    check_str(why, "missing or invalid node");
    chat_request_free(&req);
    r = "{\"op\":\"repair\",\"node\":\"s1:0\",\"partition\":\"3\"}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_DROP);
    chat_request_free(&req);

    /* nginx's word that an upload is stored: a node's record, and one
     * that is not whole is dropped */
    r = "{\"op\":\"uploaded\",\"node\":\"s1:0\",\"ts\":7,"
        "\"attachment_id\":\"0123456789abcdef0123456789abcdef\","
        "\"size\":10}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_UPLOADED && req.upload.size == 10);
    check_str(req.upload.id, "0123456789abcdef0123456789abcdef");
    chat_request_free(&req);
    r = "{\"op\":\"uploaded\",\"node\":\"s1:0\","
        "\"attachment_id\":\"../etc/passwd\",\"size\":10}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_DROP);
    check_str(why, "missing or invalid attachment_id");
    chat_request_free(&req);
    r = "{\"op\":\"uploaded\",\"node\":\"s1:0\","
        "\"attachment_id\":\"0123456789abcdef0123456789abcdef\","
        "\"size\":0}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_DROP);
    chat_request_free(&req);
    /* a session's record of that op is still a node's: no session to
     * answer, no user it could stand for */
    r = "{\"op\":\"uploaded\"," HEAD ","
        "\"attachment_id\":\"0123456789abcdef0123456789abcdef\","
        "\"size\":10}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_OK);
    check(req.sid == NULL);
    chat_request_free(&req);

    /* an unknown one without a session is dropped, still unknown */
    r = "{\"op\":\"typo\",\"node\":\"s1:0\"}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_DROP);
    check(chat_ops_unknown(&req));
    check_str(why, "unsupported op \"typo\"");
    chat_request_free(&req);

    /* a record without an op, or a known one that is malformed, is not an
     * unknown op */
    check(parse(&req, "{" HEAD "}") == CHAT_PARSE_BAD);
    check(!chat_ops_unknown(&req));
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"send\"," HEAD "}") == CHAT_PARSE_BAD);
    check(!chat_ops_unknown(&req));
    chat_request_free(&req);
    r = "{\"op\":\"send\",\"node\":\"s1:0\"}";
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_DROP);
    check_str(why, "missing or invalid node or sid");
    check(!chat_ops_unknown(&req));
    chat_request_free(&req);
}


/* ---- rows -> frames ---- */

static chat_members_cache_t  cache;
static chat_outbox_t         out;
static chat_arena_t          arena;
static chat_op_ctx_t         ctx;
static chat_stream_t         stream;
static chat_request_t        req;
static chat_item_t           item;
static chat_buf_t            got;


/* a group: alice (admin), bob; carol removed at seq 3 */
static const chat_member_t  g1[3] = {
    { "alice", true, 1, -1 },
    { "bob", false, 1, -1 },
    { "carol", false, 1, 3 },
};


static void
setup(const char *record)
{
    memset(&out, 0, sizeof(out));
    memset(&ctx, 0, sizeof(ctx));
    memset(&item, 0, sizeof(item));
    ctx.members = &cache;
    ctx.max_group_members = 256;
    ctx.out = &out;
    ctx.arena = &arena;
    chat_stream_init(&stream, NULL);
    ctx.stream = &stream;

    check(parse(&req, record) == CHAT_PARSE_OK);

    item.req = &req;
    item.op = chat_ops_find(req.op);
}


/* the row's answer and fan-out, as fake_outbox lines */
static const char *
run(void)
{
    item.op->answer(&ctx, &item);

    if (item.op->fanout) {
        item.op->fanout(&ctx, &item);
    }

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
    free(out.members);
    chat_stream_free(&stream);
}


/* a block changes the blocker's set of blocked users, which presence
 * asks; an unblock takes the user out again */
static void
test_block(void)
{
    static const char  *bob[] = { "bob" };

    setup("{\"op\":\"block\"," HEAD ",\"req_id\":1,\"other\":\"bob\"}");
    item.u.block.req = &req;
    item.u.block.blocked = bob;
    item.u.block.n = 1;
    check(strstr(run(), "\nb+alice bob\n") != NULL);
    teardown();

    setup("{\"op\":\"unblock\"," HEAD ",\"req_id\":1,"
          "\"other\":\"bob\"}");
    item.u.block.req = &req;
    check(strstr(run(), "\nb-alice bob\n") != NULL);
    teardown();
}


static void
send_new(const char *conv, chat_send_state_t state)
{
    item.u.send.req = &req;
    item.u.send.state = state;
    item.u.send.msg.conv = conv;
    item.u.send.msg.seq = 7;
    item.u.send.msg.message_id = 42;
    item.u.send.msg.sender = "alice";
    item.u.send.msg.cmid = "c1";
    item.u.send.msg.kind = "text";
    item.u.send.msg.body = "hi";
    item.u.send.msg.server_ts = 5;
}


#define ACK(conv)                                                          \
    "{\"type\":\"ack\",\"client_msg_id\":\"c1\",\"message_id\":\"42\","    \
    "\"conversation_id\":\"" conv "\",\"seq\":7,\"server_ts\":5}\n"

#define MESSAGE(conv)                                                      \
    "{\"type\":\"message\",\"message_id\":\"42\",\"conversation_id\":\""   \
    conv "\",\"seq\":7,\"sender_id\":\"alice\",\"client_msg_id\":\"c1\","  \
    "\"kind\":\"text\",\"body\":\"hi\",\"server_ts\":5}\n"

#define SEND(conv)                                                         \
    "{\"op\":\"send\"," HEAD ",\"conv\":\"" conv "\",\"cmid\":\"c1\","     \
    "\"body\":\"hi\"}"


static void
test_send(void)
{
    /* a direct message: the ack to the session, the message to both
     * members' devices but the sending one */
    setup(SEND("dm:alice:bob"));
    send_new("dm:alice:bob", CHAT_SEND_NEW);
    check_str(run(), SESSION ACK("dm:alice:bob")
                     "@alice -" SESSION MESSAGE("dm:alice:bob")
                     "@bob -" SESSION MESSAGE("dm:alice:bob"));
    teardown();

    /* a replay not yet delivered: the same */
    setup(SEND("dm:alice:bob"));
    send_new("dm:alice:bob", CHAT_SEND_REPLAY);
    check_str(run(), SESSION ACK("dm:alice:bob")
                     "@alice -" SESSION MESSAGE("dm:alice:bob")
                     "@bob -" SESSION MESSAGE("dm:alice:bob"));
    teardown();

    /* to oneself: one member */
    setup(SEND("dm:alice:alice"));
    send_new("dm:alice:alice", CHAT_SEND_NEW);
    check_str(run(), SESSION ACK("dm:alice:alice")
                     "@alice -" SESSION MESSAGE("dm:alice:alice"));
    teardown();

    /* a group: its current members, not the removed one */
    setup(SEND("g:1"));
    send_new("g:1", CHAT_SEND_NEW);
    check_str(run(), SESSION ACK("g:1")
                     "@alice -" SESSION MESSAGE("g:1")
                     "@bob -" SESSION MESSAGE("g:1"));
    teardown();

    /* a group the cache does not know: the ack alone */
    setup(SEND("g:unknown"));
    send_new("g:unknown", CHAT_SEND_NEW);
    check_str(run(), SESSION ACK("g:unknown"));
    teardown();

    /* a retry: its ack again, never a second delivery */
    setup(SEND("dm:alice:bob"));
    send_new("dm:alice:bob", CHAT_SEND_RETRY);
    check_str(run(), SESSION ACK("dm:alice:bob"));
    teardown();

    setup(SEND("g:1"));
    item.u.send.state = CHAT_SEND_FORBIDDEN;
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                     "\"message\":\"not a member of this conversation\","
                     "\"client_msg_id\":\"c1\"}\n");
    teardown();

    /* the frames are made once, however many get them */
    setup(SEND("g:1"));
    send_new("g:1", CHAT_SEND_NEW);
    run();
    check(out.nframes == 2 && out.ndeliveries == 3);
    check(out.deliveries[1].frame == out.deliveries[2].frame);
    teardown();
}


#define CHANGE(op, conv, fields)                                           \
    "{\"op\":\"" op "\"," HEAD ",\"conv\":\"" conv "\",\"cmid\":\"e1\"," \
    "\"target\":\"42\"" fields "}"


/* the store step of a change, through the fake store */
static void
store_change(void)
{
    chat_item_t  *items[1] = { &item };

    check(item.op->store(&ctx, items, 1) == CHAT_STORE_OK);
}


static void
test_change_parse(void)
{
    chat_request_t  r;
    char            why[160];

    check(parse(&r, CHANGE("edit", "g:1", ",\"body\":\"new\","
                                          "\"window_ms\":2000"))
          == CHAT_PARSE_OK);
    check(r.target_mid == 42 && r.window_ms == 2000);
    check_str(r.body, "new");
    check_str(r.cmid, "e1");
    chat_request_free(&r);

    /* an older module's edit: the default window */
    check(parse(&r, CHANGE("edit", "g:1", ",\"body\":\"new\""))
          == CHAT_PARSE_OK);
    check(r.window_ms == NGX_CHAT_WIRE_EDIT_WINDOW * 1000LL);
    chat_request_free(&r);

    check(parse(&r, CHANGE("edit", "g:1", "")) == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, CHANGE("edit", "g:1", ",\"body\":\"\""))
          == CHAT_PARSE_BAD);
    chat_request_free(&r);

    /* a delete has no body, whatever the record says */
    check(parse(&r, CHANGE("delete", "g:1", ",\"body\":\"x\""))
          == CHAT_PARSE_OK);
    check(r.body == NULL && r.target_mid == 42);
    chat_request_free(&r);

    check(parse(&r, CHANGE("react", "g:1", ",\"emoji\":\"\\ud83d\\udc4d\""))
          == CHAT_PARSE_OK);
    check_str(r.emoji, "\xf0\x9f\x91\x8d");
    chat_request_free(&r);
    check(parse(&r, CHANGE("react", "g:1", ",\"emoji\":null"))
          == CHAT_PARSE_OK);
    check(r.emoji == NULL);
    chat_request_free(&r);
    /* absent is not null: the module always writes it */
    check(parse(&r, CHANGE("react", "g:1", "")) == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, CHANGE("react", "g:1",
                           ",\"emoji\":\"123456789012345678901234567890123\""))
          == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, CHANGE("react", "g:1", ",\"emoji\":\"\""))
          == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, CHANGE("react", "g:1", ",\"emoji\":7"))
          == CHAT_PARSE_BAD);
    chat_request_free(&r);

    /* the target: a string of digits, positive */
    check(parse(&r, "{\"op\":\"delete\"," HEAD ",\"conv\":\"g:1\","
                    "\"cmid\":\"e1\",\"target\":42}") == CHAT_PARSE_BAD);
    check_str(r.cmid, "e1");
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"delete\"," HEAD ",\"conv\":\"g:1\","
                    "\"cmid\":\"e1\",\"target\":\"0\"}") == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"delete\"," HEAD ",\"conv\":\"g:1\","
                    "\"cmid\":\"e1\",\"target\":\"99999999999999999999\"}")
          == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"delete\"," HEAD ",\"conv\":\"g:1\","
                    "\"target\":\"5\"}") == CHAT_PARSE_BAD);
    chat_request_free(&r);

    /* a send's reply_to */
    check(parse(&r, "{\"op\":\"send\"," HEAD ",\"conv\":\"g:1\","
                    "\"cmid\":\"c\",\"body\":\"b\",\"reply_to\":\"17\"}")
          == CHAT_PARSE_OK);
    check(r.reply_to == 17);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"send\"," HEAD ",\"conv\":\"g:1\","
                    "\"cmid\":\"c\",\"body\":\"b\"}") == CHAT_PARSE_OK);
    check(r.reply_to == 0);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"send\"," HEAD ",\"conv\":\"g:1\","
                    "\"cmid\":\"c\",\"body\":\"b\",\"reply_to\":\"x\"}")
          == CHAT_PARSE_BAD);
    chat_request_free(&r);

    (void) why;
}


static void
test_changes(void)
{
    fake_reset();

    /* an edit: acked, the change to every member's devices but the
     * sending one, with its target and the new text */
    setup(CHANGE("edit", "g:1", ",\"body\":\"new\",\"window_ms\":5"));
    store_change();
    check(item.u.send.state == CHAT_SEND_NEW && !item.replay);
    check_str(run(), SESSION "{\"type\":\"ack\",\"client_msg_id\":\"e1\","
                     "\"message_id\":\"101\",\"conversation_id\":\"g:1\","
                     "\"seq\":1,\"server_ts\":5}\n"
                     "@alice -" SESSION "{\"type\":\"message\",\"message_id\":"
                     "\"101\",\"conversation_id\":\"g:1\",\"seq\":1,"
                     "\"sender_id\":\"alice\",\"client_msg_id\":\"e1\","
                     "\"kind\":\"edit\",\"target_id\":\"42\",\"body\":\"new\","
                     "\"server_ts\":5}\n"
                     "@bob -" SESSION "{\"type\":\"message\",\"message_id\":"
                     "\"101\",\"conversation_id\":\"g:1\",\"seq\":1,"
                     "\"sender_id\":\"alice\",\"client_msg_id\":\"e1\","
                     "\"kind\":\"edit\",\"target_id\":\"42\",\"body\":\"new\","
                     "\"server_ts\":5}\n");
    teardown();

    /* a delete: body null */
    setup(CHANGE("delete", "dm:alice:bob", ""));
    store_change();
    check_str(run(), SESSION "{\"type\":\"ack\",\"client_msg_id\":\"e1\","
                     "\"message_id\":\"102\",\"conversation_id\":"
                     "\"dm:alice:bob\",\"seq\":2,\"server_ts\":5}\n"
                     "@alice -" SESSION "{\"type\":\"message\",\"message_id\":"
                     "\"102\",\"conversation_id\":\"dm:alice:bob\",\"seq\":2,"
                     "\"sender_id\":\"alice\",\"client_msg_id\":\"e1\","
                     "\"kind\":\"delete\",\"target_id\":\"42\",\"body\":null,"
                     "\"server_ts\":5}\n"
                     "@bob -" SESSION "{\"type\":\"message\",\"message_id\":"
                     "\"102\",\"conversation_id\":\"dm:alice:bob\",\"seq\":2,"
                     "\"sender_id\":\"alice\",\"client_msg_id\":\"e1\","
                     "\"kind\":\"delete\",\"target_id\":\"42\",\"body\":null,"
                     "\"server_ts\":5}\n");
    teardown();

    /* a reaction, and one taken back: the body is an object */
    setup(CHANGE("react", "dm:alice:bob", ",\"emoji\":\"+1\""));
    store_change();
    check(strstr(run(), "\"kind\":\"reaction\",\"target_id\":\"42\","
                        "\"body\":{\"emoji\":\"+1\"}") != NULL);
    teardown();
    setup(CHANGE("react", "dm:alice:bob", ",\"emoji\":null"));
    store_change();
    check(strstr(run(), "\"body\":{\"emoji\":null}") != NULL);
    teardown();

    /* refusals: the store's code, tagged, nobody else told */
    setup("{\"op\":\"delete\"," HEAD ",\"conv\":\"g:1\",\"cmid\":\"e1\","
          "\"target\":\"1\"}");
    store_change();
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"not_found\","
                     "\"message\":\"no\",\"client_msg_id\":\"e1\"}\n");
    teardown();
    setup("{\"op\":\"edit\"," HEAD ",\"conv\":\"g:1\",\"cmid\":\"e1\","
          "\"target\":\"2\",\"body\":\"x\"}");
    store_change();
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                     "\"message\":\"no\",\"client_msg_id\":\"e1\"}\n");
    teardown();

    /* a direct conversation without the user: forbidden before the store */
    setup(CHANGE("react", "dm:bob:carol", ",\"emoji\":\"x\""));
    store_change();
    check(item.u.send.state == CHAT_SEND_FORBIDDEN);
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                     "\"message\":\"not a member of this conversation\","
                     "\"client_msg_id\":\"e1\"}\n");
    teardown();

    /* a retry: the ack alone */
    setup(CHANGE("delete", "g:1", ""));
    store_change();
    item.u.send.state = CHAT_SEND_RETRY;
    check_str(run(), SESSION "{\"type\":\"ack\",\"client_msg_id\":\"e1\","
                     "\"message_id\":\"105\",\"conversation_id\":\"g:1\","
                     "\"seq\":5,\"server_ts\":5}\n");
    teardown();

    /* this very record stored before a crash: a replay */
    fake.replay_at = 42;
    setup(CHANGE("delete", "g:1", ""));
    store_change();
    check(item.replay && item.u.send.state == CHAT_SEND_REPLAY);
    teardown();
    fake_reset();
}


static void
test_receipt(void)
{
    const char  *r = "{\"op\":\"receipt\"," HEAD ",\"req_id\":3,"
                     "\"conv\":\"g:1\",\"seq\":4,\"state\":\"read\"}";
    const char  *receipt;
    const char  *senders[] = { "carol", "alice", "bob" };

    /* a moved pointer: every member, the reader's devices included */
    setup(r);
    item.u.receipt.rc = CHAT_RECEIPT_MOVED;
    run();
    check(out.ndeliveries == 2);
    check_str(out.deliveries[0].user, "alice");
    check(out.deliveries[0].sid == NULL);
    check_str(out.deliveries[1].user, "bob");
    receipt = out.frames[out.deliveries[0].frame].bytes;
    check(strncmp(receipt, "{\"type\":\"receipt\",\"conversation_id\":"
                  "\"g:1\",\"user_id\":\"alice\",\"state\":\"read\","
                  "\"seq\":4,\"server_ts\":", 95) == 0);
    teardown();

    /* coalesced: the reader and the senders still members (carol went) */
    setup(r);
    item.u.receipt.rc = CHAT_RECEIPT_MOVED;
    item.u.receipt.coalesce = true;
    item.u.receipt.senders = senders;
    item.u.receipt.nsenders = 2;
    run();
    check(out.ndeliveries == 1);
    check_str(out.deliveries[0].user, "alice");
    teardown();

    setup(r);
    item.u.receipt.rc = CHAT_RECEIPT_MOVED;
    item.u.receipt.coalesce = true;
    item.u.receipt.senders = senders + 1;
    item.u.receipt.nsenders = 2;
    run();
    check(out.ndeliveries == 2);
    check_str(out.deliveries[0].user, "alice");
    check_str(out.deliveries[1].user, "bob");
    teardown();

    /* a later move of the batch says it */
    setup(r);
    item.u.receipt.rc = CHAT_RECEIPT_MOVED;
    item.u.receipt.coalesce = true;
    item.u.receipt.superseded = true;
    check_str(run(), "");
    teardown();

    setup(r);
    item.u.receipt.rc = CHAT_RECEIPT_IGNORED;
    check_str(run(), "");
    teardown();

    setup(r);
    item.u.receipt.rc = CHAT_RECEIPT_BEYOND;
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"bad_request\","
                     "\"message\":\"seq is beyond the conversation's "
                     "last\",\"req_id\":3}\n");
    teardown();

    setup(r);
    item.u.receipt.rc = CHAT_RECEIPT_FORBIDDEN;
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                     "\"message\":\"not a member of this conversation\","
                     "\"req_id\":3}\n");
    teardown();
}


#define TYPING(conv)                                                       \
    "{\"type\":\"typing\",\"conversation_id\":\"" conv "\","               \
    "\"user_id\":\"alice\",\"state\":\"start\"}\n"


static void
test_typing(void)
{
    /* the other members' devices, none of the typer's */
    setup("{\"op\":\"typing\"," HEAD ",\"conv\":\"g:1\","
          "\"state\":\"start\"}");
    item.u.typing.allowed = true;
    check_str(run(), "@bob " TYPING("g:1"));
    teardown();

    setup("{\"op\":\"typing\"," HEAD ",\"conv\":\"dm:alice:bob\","
          "\"state\":\"start\"}");
    item.u.typing.allowed = true;
    check_str(run(), "@bob " TYPING("dm:alice:bob"));
    teardown();

    setup("{\"op\":\"typing\"," HEAD ",\"conv\":\"g:2\","
          "\"state\":\"start\"}");
    item.u.typing.allowed = false;
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                     "\"message\":\"not a member of this conversation\"}\n");
    teardown();
}


#define GROUP_SYSTEM                                                       \
    "{\"type\":\"message\",\"message_id\":\"43\",\"conversation_id\":"     \
    "\"g:1\",\"seq\":3,\"sender_id\":\"alice\",\"client_msg_id\":null,"    \
    "\"kind\":\"system\",\"body\":{\"event\":\"members_removed\"},"        \
    "\"server_ts\":5}\n"


static void
test_group(void)
{
    const char  *r = "{\"op\":\"remove_members\"," HEAD ",\"req_id\":\"r\","
                     "\"conv\":\"g:1\",\"user_ids\":[\"carol\"]}";

    /* the members now to the requester; the system message to every
     * member's devices, the requesting one included, and to the removed */
    setup(r);
    item.u.group.rc = CHAT_GROUP_DONE;
    item.u.group.changed = true;
    item.u.group.name = "T";
    item.u.group.members = (chat_member_t *) g1;
    item.u.group.nmembers = 3;
    item.u.group.msg = (chat_message_t) { "g:1", 3, 43, "alice", NULL,
                                          "system",
                                          "{\"event\":\"members_removed\"}",
                                          5, 0, 0, 0, false, NULL, NULL };
    check_str(run(), SESSION "{\"type\":\"group\",\"req_id\":\"r\","
                     "\"conversation_id\":\"g:1\",\"name\":\"T\","
                     "\"members\":[{\"user_id\":\"alice\",\"role\":"
                     "\"admin\"},{\"user_id\":\"bob\",\"role\":"
                     "\"member\"}]}\n"
                     "@alice " GROUP_SYSTEM
                     "@bob " GROUP_SYSTEM
                     "@carol " GROUP_SYSTEM
                     "-carol g:1\n");
    teardown();

    /* nothing changed: the group frame alone */
    setup(r);
    item.u.group.rc = CHAT_GROUP_DONE;
    item.u.group.name = "T";
    item.u.group.members = (chat_member_t *) g1;
    item.u.group.nmembers = 2;
    check(strstr(run(), "@") == NULL);
    check(out.ndeliveries == 1);
    teardown();

    setup(r);
    item.u.group.rc = CHAT_GROUP_FORBIDDEN;
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                     "\"message\":\"not a member or not an admin of this "
                     "group\",\"req_id\":\"r\"}\n");
    teardown();

    setup(r);
    item.u.group.rc = CHAT_GROUP_TOO_LARGE;
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"too_large\","
                     "\"message\":\"the group would have too many "
                     "members\",\"req_id\":\"r\"}\n");
    teardown();
}


/* an operator's record: admin, ts, no session */
#define OPERATOR  "\"admin\":\"root\",\"ts\":1700000000000"


/* which records an operator may send, and what a session may not */
static void
test_operator_parse(void)
{
    chat_request_t  r;

    check(parse(&r, "{\"op\":\"revoke\"," OPERATOR ",\"user\":\"bob\"}")
          == CHAT_PARSE_OK);
    check_str(r.admin, "root");
    check_str(r.target, "bob");
    check(r.target_dev == NULL);
    check(r.node == NULL && r.sid == NULL);
    check(r.ts == 1700000000000);
    /* the admin stands for the user in what is stored */
    check_str(r.user, "root");
    check_str(r.dev, CHAT_OPERATOR_DEVICE);
    chat_request_free(&r);

    check(parse(&r, "{\"op\":\"revoke\"," OPERATOR ",\"user\":\"bob\","
                    "\"dev\":\"phone\"}") == CHAT_PARSE_OK);
    check_str(r.target_dev, "phone");
    chat_request_free(&r);

    /* whatever is wrong drops it: nobody to answer */
    check(parse(&r, "{\"op\":\"revoke\"," OPERATOR "}") == CHAT_PARSE_DROP);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"revoke\"," OPERATOR ",\"user\":\"bob\","
                    "\"dev\":\"-\"}") == CHAT_PARSE_DROP);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"revoke\",\"admin\":\"r t\",\"ts\":1,"
                    "\"user\":\"bob\"}") == CHAT_PARSE_DROP);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"revoke\",\"admin\":\"root\","
                    "\"user\":\"bob\"}") == CHAT_PARSE_DROP);
    chat_request_free(&r);

    /* a session's op is no operator's, and the other way round */
    check(parse(&r, "{\"op\":\"send\"," OPERATOR ",\"conv\":\"dm:a:b\","
                    "\"cmid\":\"c\",\"body\":\"x\"}") == CHAT_PARSE_DROP);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"revoke\"," HEAD ",\"user\":\"bob\"}")
          == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"redact\"," HEAD ",\"conv\":\"g:1\","
                    "\"message_id\":\"7\"}") == CHAT_PARSE_BAD);
    chat_request_free(&r);

    /* set_role from either */
    check(parse(&r, "{\"op\":\"set_role\"," HEAD ",\"req_id\":1,"
                    "\"conv\":\"g:1\",\"user_id\":\"bob\",\"role\":\"admin\"}")
          == CHAT_PARSE_OK);
    check(r.admin == NULL);
    check_str(r.user, "alice");
    check_str(r.target, "bob");
    check_str(r.role, "admin");
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"set_role\"," OPERATOR ",\"conv\":\"g:1\","
                    "\"user_id\":\"bob\",\"role\":\"member\"}")
          == CHAT_PARSE_OK);
    check_str(r.admin, "root");
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"set_role\"," HEAD ",\"req_id\":1,"
                    "\"conv\":\"g:1\",\"user_id\":\"bob\",\"role\":\"boss\"}")
          == CHAT_PARSE_BAD);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"set_role\"," HEAD ",\"req_id\":1,"
                    "\"conv\":\"dm:alice:bob\",\"user_id\":\"bob\","
                    "\"role\":\"admin\"}") == CHAT_PARSE_BAD);
    chat_request_free(&r);

    /* redact: the id as a string of digits or a number */
    check(parse(&r, "{\"op\":\"redact\"," OPERATOR ",\"conv\":\"g:1\","
                    "\"message_id\":\"12345678901234567\"}") == CHAT_PARSE_OK);
    check(r.message_id == 12345678901234567LL);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"redact\"," OPERATOR ",\"conv\":\"g:1\","
                    "\"message_id\":9}") == CHAT_PARSE_OK);
    check(r.message_id == 9);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"redact\"," OPERATOR ",\"conv\":\"g:1\","
                    "\"message_id\":\"9x\"}") == CHAT_PARSE_DROP);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"redact\"," OPERATOR ",\"conv\":\"g:1\","
                    "\"message_id\":\"-1\"}") == CHAT_PARSE_DROP);
    chat_request_free(&r);
    check(parse(&r, "{\"op\":\"redact\"," OPERATOR ",\"message_id\":\"9\"}")
          == CHAT_PARSE_DROP);
    chat_request_free(&r);
}


#define ROLE_SYSTEM(by)                                                    \
    "{\"type\":\"message\",\"message_id\":\"44\",\"conversation_id\":"     \
    "\"g:1\",\"seq\":4,\"sender_id\":\"" by "\",\"client_msg_id\":null,"   \
    "\"kind\":\"system\",\"body\":{\"event\":\"role_changed\"},"           \
    "\"server_ts\":5}\n"


static void
test_operator_rows(void)
{
    chat_item_t  *items[1];

    /* an admin's set_role: the group frame to it, the event to all */
    setup("{\"op\":\"set_role\"," HEAD ",\"req_id\":\"r\",\"conv\":\"g:1\","
          "\"user_id\":\"bob\",\"role\":\"admin\"}");
    item.u.group.rc = CHAT_GROUP_DONE;
    item.u.group.changed = true;
    item.u.group.name = "T";
    item.u.group.members = (chat_member_t *) g1;
    item.u.group.nmembers = 1;
    item.u.group.msg = (chat_message_t) { "g:1", 4, 44, "alice", NULL,
                                          "system",
                                          "{\"event\":\"role_changed\"}", 5,
                                          0, 0, 0, false, NULL, NULL };
    check_str(run(), SESSION "{\"type\":\"group\",\"req_id\":\"r\","
                     "\"conversation_id\":\"g:1\",\"name\":\"T\","
                     "\"members\":[{\"user_id\":\"alice\",\"role\":"
                     "\"admin\"}]}\n"
                     "@alice " ROLE_SYSTEM("alice")
                     "@bob " ROLE_SYSTEM("alice"));
    teardown();

    /* an operator's: nobody to answer, the event to all; a refusal says
     * nothing to anyone */
    setup("{\"op\":\"set_role\"," OPERATOR ",\"conv\":\"g:1\","
          "\"user_id\":\"bob\",\"role\":\"admin\"}");
    item.u.group.rc = CHAT_GROUP_DONE;
    item.u.group.changed = true;
    item.u.group.name = "T";
    item.u.group.msg = (chat_message_t) { "g:1", 4, 44, "root", NULL,
                                          "system",
                                          "{\"event\":\"role_changed\"}", 5,
                                          0, 0, 0, false, NULL, NULL };
    check_str(run(), "@alice " ROLE_SYSTEM("root")
                     "@bob " ROLE_SYSTEM("root"));
    teardown();

    setup("{\"op\":\"set_role\"," OPERATOR ",\"conv\":\"g:1\","
          "\"user_id\":\"bob\",\"role\":\"admin\"}");
    item.u.group.rc = CHAT_GROUP_FORBIDDEN;
    check_str(run(), "");
    chat_answer_error(&out, &req, "internal", "the change failed");
    check(out.ndeliveries == 0);
    teardown();

    /* a redaction: its event to every member's devices */
    fake_reset();
    setup("{\"op\":\"redact\"," OPERATOR ",\"conv\":\"g:1\","
          "\"message_id\":\"7\"}");
    items[0] = &item;
    check(item.op->store(&ctx, items, 1) == CHAT_STORE_OK);
    check(item.u.redact.rc == CHAT_REDACT_DONE);
    check(strstr(run(), "@alice {\"type\":\"message\"") != NULL);
    check(strstr(got.data, "@bob {\"type\":\"message\"") != NULL);
    check(strstr(got.data, "\"sender_id\":\"root\"") != NULL);
    check(strstr(got.data, "@carol") == NULL);
    teardown();

    setup("{\"op\":\"redact\"," OPERATOR ",\"conv\":\"g:1\","
          "\"message_id\":\"8\"}");
    items[0] = &item;
    check(item.op->store(&ctx, items, 1) == CHAT_STORE_OK);
    check(item.u.redact.rc == CHAT_REDACT_NOT_FOUND);
    check_str(run(), "");
    teardown();

    /* a revocation: stored, then into Redis; no frame anywhere */
    fake_reset();
    setup("{\"op\":\"revoke\"," OPERATOR ",\"user\":\"bob\","
          "\"dev\":\"phone\"}");
    items[0] = &item;
    check(item.op->store(&ctx, items, 1) == CHAT_STORE_OK);
    check_str(chat_buf_cstr(&fake.sent),
              "stored revoke bob phone 1700000000000 by root\n"
              "control revoke bob phone 1700000000000 by root\n");
    check_str(run(), "");
    teardown();
    fake_reset();
}


static void
test_reads(void)
{
    chat_message_t    m[2] = {
        { "g:1", 4, 9, "bob", "c4", "text", "x", 1, 0, 0, 0, false, NULL, NULL },
        { "g:1", 5, 10, "alice", NULL, "system", "{\"event\":\"e\"}", 2, 0, 0, 0, false, NULL, NULL },
    };
    chat_sync_conv_t  c[2] = {
        { "g:1", "group", "T", 2, 5, 4, 3, 1, true,
          { "g:1", 5, 10, "alice", NULL, "system", "{\"event\":\"e\"}", 2, 0, 0, 0, false, NULL, NULL },
          0, 2, true, 0, 0, 0, 0, 0 },
        { "dm:alice:bob", "direct", NULL, 2, 0, 0, 0, 0, false,
          { NULL, 0, 0, NULL, NULL, NULL, NULL, 0, 0, 0, 0, false, NULL, NULL },
          2, 0, false,
          0, 0, 0, 0, 0 },
    };

    setup("{\"op\":\"history\"," HEAD ",\"req_id\":[1],\"conv\":\"g:1\"}");
    item.u.read.history.messages = m;
    item.u.read.history.n = 2;
    item.u.read.history.has_more = true;
    check_str(run(), SESSION "{\"type\":\"history\",\"req_id\":[1],"
                     "\"conversation_id\":\"g:1\",\"messages\":["
                     "{\"message_id\":\"9\",\"conversation_id\":\"g:1\","
                     "\"seq\":4,\"sender_id\":\"bob\",\"client_msg_id\":"
                     "\"c4\",\"kind\":\"text\",\"body\":\"x\","
                     "\"server_ts\":1},"
                     "{\"message_id\":\"10\",\"conversation_id\":\"g:1\","
                     "\"seq\":5,\"sender_id\":\"alice\",\"client_msg_id\":"
                     "null,\"kind\":\"system\",\"body\":{\"event\":\"e\"},"
                     "\"server_ts\":2}],\"has_more\":true}\n");
    teardown();

    setup("{\"op\":\"history\"," HEAD ",\"req_id\":1,\"conv\":\"g:1\"}");
    item.u.read.history.forbidden = true;
    check_str(run(), SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                     "\"message\":\"not a member of this conversation\","
                     "\"req_id\":1}\n");
    teardown();

    /* conversations, then each one's messages, then sync_done: the
     * store step writes them as it reads the messages (fake.messages) */
    setup("{\"op\":\"sync\"," HEAD ",\"req_id\":\"s\"}");
    fake_reset();
    fake.messages = m;
    fake.nmessages = 2;
    c[0].after_seq = 3;
    c[0].others_delivered_seq = 5;
    c[0].others_read_seq = 4;
    item.u.read.sync.convs = c;
    item.u.read.sync.nconvs = 2;
    check(chat_ops_stream_sync(&ctx, &item) == CHAT_STORE_OK);
    check(fake.chunks == 1 && fake.pushed.len == 0);
    check_str(run(), SESSION "{\"type\":\"conversations\",\"req_id\":\"s\","
                     "\"items\":[{\"conversation_id\":\"g:1\",\"kind\":"
                     "\"group\",\"name\":\"T\",\"member_count\":2,"
                     "\"last_seq\":5,\"delivered_seq\":4,\"read_seq\":3,"
                     "\"others_delivered_seq\":5,\"others_read_seq\":4,"
                     "\"unread\":1,\"last_message\":{\"message_id\":\"10\","
                     "\"conversation_id\":\"g:1\",\"seq\":5,\"sender_id\":"
                     "\"alice\",\"client_msg_id\":null,\"kind\":\"system\","
                     "\"body\":{\"event\":\"e\"},\"server_ts\":2},"
                     "\"truncated\":true},"
                     "{\"conversation_id\":\"dm:alice:bob\",\"kind\":"
                     "\"direct\",\"name\":null,\"member_count\":2,"
                     "\"last_seq\":0,\"delivered_seq\":0,\"read_seq\":0,"
                     "\"others_delivered_seq\":0,\"others_read_seq\":0,"
                     "\"unread\":0,\"last_message\":null}],"
                     "\"has_more\":false}\n"
                     SESSION "{\"type\":\"message\",\"message_id\":\"9\","
                     "\"conversation_id\":\"g:1\",\"seq\":4,\"sender_id\":"
                     "\"bob\",\"client_msg_id\":\"c4\",\"kind\":\"text\","
                     "\"body\":\"x\",\"server_ts\":1}\n"
                     SESSION "{\"type\":\"message\",\"message_id\":\"10\","
                     "\"conversation_id\":\"g:1\",\"seq\":5,\"sender_id\":"
                     "\"alice\",\"client_msg_id\":null,\"kind\":\"system\","
                     "\"body\":{\"event\":\"e\"},\"server_ts\":2}\n"
                     SESSION "{\"type\":\"sync_done\",\"req_id\":\"s\"}\n");
    teardown();
}


int
main(void)
{
    memset(&cache, 0, sizeof(cache));
    chat_members_set(&cache, "g:1", g1, 3);

    test_table();
    test_unknown_op();
    test_no_row();
    test_send();
    test_change_parse();
    test_changes();
    test_receipt();
    test_typing();
    test_group();
    test_block();
    test_operator_parse();
    test_operator_rows();
    test_reads();

    chat_buf_free(&got);
    chat_members_clear(&cache);
    chat_members_release(&cache);
    free(cache.retired);
    chat_arena_free(&arena);

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
