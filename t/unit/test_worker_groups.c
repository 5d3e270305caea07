/*
 * test_worker_groups.c: unit tests of chat_worker's pure parts for groups,
 * receipts and typing: the records, the frames and the membership cache.
 *
 * The worker's files are included, not linked (the store and Redis are
 * worker_fake.h's), so that this program stands alone:
 * cc -I/usr/include/postgresql test_worker_groups.c -ljansson
 * Prints "N passed, N failed" and exits 1 on a failure.
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


static void
test_parse(void)
{
    chat_request_t  req;

    check(parse(&req, "{\"op\":\"create_group\"," HEAD ",\"req_id\":\"r1\","
                      "\"conv\":\"g:ab1\",\"name\":\"Team\","
                      "\"members\":[\"bob\",\"carol\"]}") == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_CREATE_GROUP);
    check(chat_ops_find(req.op)->stage == CHAT_STAGE_MEMBERS);
    check_str(req.conv, "g:ab1");
    check_str(req.name, "Team");
    check(json_array_size(req.user_ids) == 2);
    check_str(json_string_value(req.req_id), "r1");
    chat_request_free(&req);

    /* a group of the creator alone */
    check(parse(&req, "{\"op\":\"create_group\"," HEAD ",\"conv\":\"g:1\","
                      "\"name\":\"x\",\"members\":[]}") == CHAT_PARSE_OK);
    chat_request_free(&req);

    /* no name, a bad member, a direct id: answered with bad_request */
    check(parse(&req, "{\"op\":\"create_group\"," HEAD ",\"conv\":\"g:1\","
                      "\"members\":[]}") == CHAT_PARSE_BAD);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"create_group\"," HEAD ",\"conv\":\"g:1\","
                      "\"name\":\"x\",\"members\":[\"a b\"]}")
          == CHAT_PARSE_BAD);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"add_members\"," HEAD ",\"conv\":"
                      "\"dm:alice:bob\",\"user_ids\":[\"c\"]}")
          == CHAT_PARSE_BAD);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"remove_members\"," HEAD ",\"conv\":\"g:1\","
                      "\"req_id\":5,\"user_ids\":[\"alice\"]}")
          == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_REMOVE_MEMBERS);
    check(json_array_size(req.user_ids) == 1);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"add_members\"," HEAD ",\"conv\":\"g:1\","
                      "\"user_ids\":[]}") == CHAT_PARSE_BAD);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"receipt\"," HEAD ",\"conv\":\"g:1\","
                      "\"seq\":4,\"state\":\"read\"}") == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_RECEIPT && req.seq == 4);
    check_str(req.state, "read");
    check(chat_ops_find(req.op)->stage != CHAT_STAGE_MEMBERS);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"receipt\"," HEAD ",\"conv\":\"g:1\","
                      "\"seq\":0,\"state\":\"read\"}") == CHAT_PARSE_BAD);
    chat_request_free(&req);
    check(parse(&req, "{\"op\":\"receipt\"," HEAD ",\"conv\":\"g:1\","
                      "\"seq\":3,\"state\":\"start\"}") == CHAT_PARSE_BAD);
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"typing\"," HEAD ",\"conv\":\"g:1\","
                      "\"state\":\"stop\"}") == CHAT_PARSE_OK);
    check(req.op == NGX_CHAT_WIRE_OP_TYPING);
    check_str(req.state, "stop");
    chat_request_free(&req);

    check(parse(&req, "{\"op\":\"typing\"," HEAD ",\"conv\":\"g:1\","
                      "\"state\":\"read\"}") == CHAT_PARSE_BAD);
    chat_request_free(&req);
}


static char *
dump(json_t *frame)
{
    size_t  len;

    return chat_frame_dump(frame, &len);
}


static void
test_frames(void)
{
    chat_member_t  members[3] = {
        { "bob", false, 1, -1 },
        { "carol", false, 1, 3 },       /* removed: not listed */
        { "alice", true, 1, -1 },
    };
    chat_message_t  m = { "g:1", 1, 77, "alice", NULL, "system",
                          "{\"event\":\"group_created\",\"name\":\"T\","
                          "\"user_ids\":[\"alice\"],\"by\":\"alice\"}", 5, 0, 0, 0, false, NULL, NULL };
    json_t         *rid = json_string("r1");
    char           *s;

    s = dump(chat_frame_group(rid, "g:1", "T", members, 3));
    check_str(s, "{\"type\":\"group\",\"req_id\":\"r1\","
                 "\"conversation_id\":\"g:1\",\"name\":\"T\",\"members\":["
                 "{\"user_id\":\"alice\",\"role\":\"admin\"},"
                 "{\"user_id\":\"bob\",\"role\":\"member\"}]}");
    free(s);
    json_decref(rid);

    s = dump(chat_frame_receipt("g:1", "bob", "read", 4, 9));
    check_str(s, "{\"type\":\"receipt\",\"conversation_id\":\"g:1\","
                 "\"user_id\":\"bob\",\"state\":\"read\",\"seq\":4,"
                 "\"server_ts\":9}");
    free(s);

    s = dump(chat_frame_typing("g:1", "bob", "start"));
    check_str(s, "{\"type\":\"typing\",\"conversation_id\":\"g:1\","
                 "\"user_id\":\"bob\",\"state\":\"start\"}");
    free(s);

    /* a system body goes out as an object, client_msg_id as null */
    s = dump(chat_frame_message_object(&m, true));
    check_str(s, "{\"type\":\"message\",\"message_id\":\"77\","
                 "\"conversation_id\":\"g:1\",\"seq\":1,\"sender_id\":"
                 "\"alice\",\"client_msg_id\":null,\"kind\":\"system\","
                 "\"body\":{\"event\":\"group_created\",\"name\":\"T\","
                 "\"user_ids\":[\"alice\"],\"by\":\"alice\"},"
                 "\"server_ts\":5}");
    free(s);
}


static void
test_cache(void)
{
    chat_members_cache_t  c;
    chat_member_t         first[2] = { { "alice", true, 1, -1 },
                                       { "bob", false, 1, -1 } };
    chat_member_t         later[3] = { { "alice", true, 1, -1 },
                                       { "bob", false, 1, 2 },
                                       { "carol", false, 3, -1 } };
    chat_members_t       *g;
    const char           *old_bob;
    char                  conv[32];
    int                   i;

    memset(&c, 0, sizeof(c));

    check(chat_members_find(&c, "g:1") == NULL);

    g = chat_members_set(&c, "g:1", first, 2);
    check(chat_members_find(&c, "g:1") == g);
    check(chat_members_has(g, "bob"));
    check(!chat_members_has(g, "carol"));
    check(chat_members_count(g) == 2);
    check(chat_members_get(g, "alice")->admin);

    /* the list is a copy: the caller's strings may go */
    check(g->members[0].user != first[0].user);

    /* a change replaces the entry; the old list stays readable for the
     * outbox until release */
    old_bob = g->members[1].user;
    g = chat_members_set(&c, "g:1", later, 3);
    check(chat_members_find(&c, "g:1") == g);
    check(!chat_members_has(g, "bob"));
    check(chat_members_get(g, "bob")->removed_seq == 2);
    check(chat_members_has(g, "carol"));
    check(chat_members_count(g) == 2);
    check_str(old_bob, "bob");
    check(c.nretired == 1);
    chat_members_release(&c);
    check(c.nretired == 0);

    /* an unknown group: an empty entry, nobody is a member */
    g = chat_members_set(&c, "g:none", NULL, 0);
    check(g->n == 0 && !chat_members_has(g, "alice"));

    for (i = 0; i < 1000; i++) {
        snprintf(conv, sizeof(conv), "g:%d", i + 100);
        chat_members_set(&c, conv, first, 2);
    }

    check(c.n == 1002);
    check(chat_members_has(chat_members_find(&c, "g:600"), "bob"));

    chat_members_clear(&c);
    check(c.n == 0 && chat_members_find(&c, "g:1") == NULL);
    chat_members_release(&c);
    free(c.retired);
}


int
main(void)
{
    test_parse();
    test_frames();
    test_cache();

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
