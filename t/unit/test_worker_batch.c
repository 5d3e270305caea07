/*
 * test_worker_batch.c: unit tests of chat_worker's batch (worker_batch.c)
 * against the store and Redis of worker_fake.h: the order of the stages
 * and segments, typing never stored, an unknown op never taken for
 * another, a refused batch split into single records, replays and the
 * delivered marks, what every record counts for.
 *
 * The worker's files are included, not linked: cc -I/usr/include/postgresql
 * test_worker_batch.c -ljansson. Prints "N passed, N failed" and exits 1
 * on a failure.
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
#include "../../workers/worker_members.c"
#include "../../workers/worker_index.c"
#include "../../workers/worker_batch.c"


#include "worker_fake.h"
#include "worker_unit.h"


#define SESSION  "s1:0/00000000000000ab "

#define SEND(conv, cmid)                                                   \
    "{\"op\":\"send\"," HEAD ",\"conv\":\"" conv "\",\"cmid\":\"" cmid     \
    "\",\"body\":\"hi\"}"
#define RECEIPT(conv, seq)                                                 \
    "{\"op\":\"receipt\"," HEAD ",\"conv\":\"" conv "\",\"seq\":" seq      \
    ",\"state\":\"read\"}"
#define TYPING(op, conv)                                                   \
    "{\"op\":\"" op "\"," HEAD ",\"conv\":\"" conv "\","                   \
    "\"state\":\"start\"}"


static chat_members_cache_t  cache;
static chat_chain_t          chain;
static size_t                fanout_max;    /* the batches' receipt limit */
static chat_images_t        *images;        /* fake.pending says what it
                                             * has */
static chat_batch_cut_t      cuts[CHAT_BATCH_CUTS_MAX];   /* the last's */
static size_t                ncuts;

/* what the membership loads find: alice and bob, carol gone */
static const chat_fake_group_t  groups[] = {
    { "g:1", { { "alice", true, 1, -1 }, { "bob", false, 1, -1 },
               { "carol", false, 1, 2 } }, 3 },
};


/* the records, partition 3 from offset 10 on, through one batch */
static bool
batch(const char *const *json, size_t n)
{
    chat_batch_ctx_t  ctx;
    chat_stream_t     stream;
    chat_record_t     records[16];
    size_t            i;
    bool              done;

    for (i = 0; i < n; i++) {
        records[i].payload = json[i];
        records[i].len = json[i] ? strlen(json[i]) : 0;
        records[i].partition = 3;
        records[i].offset = 10 + (int64_t) i;
        records[i].timestamp = -1;
    }

    memset(&ctx, 0, sizeof(ctx));
    ctx.members = &cache;
    ctx.chain = &chain;
    ctx.max_group_members = 256;
    ctx.receipt_fanout_max = fanout_max;
    ctx.images = images;
    chat_stream_init(&stream, NULL);
    ctx.stream = &stream;

    /* a mark in the script is loaded (traced); none is known at once */
    if (fake.delivered < 0) {
        chat_chain_part(&chain, 3)->mark_known = true;
    }

    done = chat_batch_process(&ctx, records, n);
    chat_stream_free(&stream);
    memcpy(cuts, ctx.cuts, sizeof(cuts));
    ncuts = ctx.ncuts;

    return done;
}


static void
start(void)
{
    chat_chain_free(&chain);
    fake_reset();
    fake.groups = groups;
    fake.ngroups = 1;
    chat_members_clear(&cache);
    chat_members_release(&cache);
}


static const char *
trace(void)
{
    return fake.trace.len ? chat_buf_cstr(&fake.trace) : "";
}


static const char *
sent(void)
{
    return fake.sent.len ? chat_buf_cstr(&fake.sent) : "";
}


/* the frames of the delivery, one per line, without their recipients */
static size_t
count(const char *needle)
{
    const char  *p;
    size_t       n = 0;

    for (p = sent(); (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }

    return n;
}


/*
 * Sends, then receipts, then typing within a segment; a membership change
 * ends it and runs alone; the reads after everything, in one call.
 */
static void
test_order(void)
{
    const char  *r[] = {
        "{\"op\":\"history\"," HEAD ",\"req_id\":1,\"conv\":\"g:1\"}",
        TYPING("typing", "g:1"),
        RECEIPT("g:1", "1"),
        SEND("g:1", "c1"),
        SEND("g:1", "c2"),
        "{\"op\":\"add_members\"," HEAD ",\"req_id\":2,\"conv\":\"g:1\","
        "\"user_ids\":[\"dave\"]}",
        SEND("g:1", "c3"),
        RECEIPT("g:1", "2"),
        "{\"op\":\"sync\"," HEAD ",\"req_id\":3}",
    };
    const char  *p, *q;

    start();
    check(batch(r, sizeof(r) / sizeof(r[0])));

    check_str(trace(), "sends 2|load 2|receipts 1|load 1|load 1"
                       "|add_members 1"
                       "|sends 1|load 1|receipts 1|load 1"
                       "|reads 2|deliver 21");

    /* the seqs follow: c1 1, c2 2, the change 3, c3 4 */
    check(strstr(sent(), "\"client_msg_id\":\"c1\",\"message_id\":\"101\","
                         "\"conversation_id\":\"g:1\",\"seq\":1,") != NULL);
    check(strstr(sent(), "\"client_msg_id\":\"c3\",\"message_id\":\"104\","
                         "\"conversation_id\":\"g:1\",\"seq\":4,") != NULL);

    /* the frames in the order of the stages: the acks before the
     * receipt, the receipt before typing, the group frame before c3, the
     * reads last */
    p = strstr(sent(), "\"type\":\"ack\"");
    q = strstr(sent(), "\"type\":\"receipt\"");
    check(p && q && p < q);
    p = strstr(sent(), "\"type\":\"typing\"");
    check(p && q < p);
    q = strstr(sent(), "\"type\":\"group\"");
    check(q && p < q);
    p = strstr(sent(), "\"client_msg_id\":\"c3\"");
    check(p && q < p);
    q = strstr(sent(), "\"type\":\"history\"");
    check(q && p < q);
    p = strstr(sent(), "\"type\":\"sync_done\"");
    check(p && q < p);

    /* after the change, dave hears of the group's messages */
    check(strstr(sent(), "@dave -" SESSION "{\"type\":\"message\"")
          != NULL);
    check(strstr(sent(), "@dave " "{\"type\":\"receipt\"") != NULL);

    /* every record counts for the partition's position */
    check(strncmp(sent(), "position 3 18\n", 14) == 0);
}


/* typing goes to the members but is never stored */
/*
 * A group over the receipt fan-out limit: the senders of what a receipt
 * covers are asked, and the receipt goes to the reader and to those who
 * are members still (the fake's senders: carol, gone, and the reader);
 * a direct conversation is never coalesced
 */
static void
test_coalesced_receipts(void)
{
    const char  *r[] = { RECEIPT("g:1", "1"), RECEIPT("dm:alice:bob", "1") };

    start();
    fanout_max = 1;
    check(batch(r, 2));
    fanout_max = 0;

    check_str(trace(), "receipts 2|load 2|senders 1|deliver 3");
    check(strstr(sent(), "@alice {\"type\":\"receipt\",\"conversation_id\":"
                         "\"g:1\"") != NULL);
    check(strstr(sent(), "@bob {\"type\":\"receipt\",\"conversation_id\":"
                         "\"g:1\"") == NULL);
    check(strstr(sent(), "@carol {\"type\":\"receipt\"") == NULL);
    check(count("\"conversation_id\":\"g:1\"") == 1);
    check(count("\"conversation_id\":\"dm:alice:bob\"") == 2);

    /* at the limit: every member, as without one */
    start();
    fanout_max = 2;
    check(batch(r, 1));
    fanout_max = 0;
    check_str(trace(), "receipts 1|load 1|deliver 2");
    check(count("\"type\":\"receipt\"") == 2);
}


static void
test_typing(void)
{
    const char  *r[] = { TYPING("typing", "g:1"),
                         TYPING("typing", "dm:alice:bob"),
                         TYPING("typing", "g:2") };

    start();
    check(batch(r, 3));
    check_str(trace(), "load 3|blocked_pairs 1|deliver 3");
    check_str(sent(), "position 3 12\n"
                      "@bob {\"type\":\"typing\",\"conversation_id\":\"g:1\","
                      "\"user_id\":\"alice\",\"state\":\"start\"}\n"
                      "@bob {\"type\":\"typing\",\"conversation_id\":"
                      "\"dm:alice:bob\",\"user_id\":\"alice\","
                      "\"state\":\"start\"}\n"
                      SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                      "\"message\":\"not a member of this conversation\"}\n");
}


/* a direct pair of which one blocks the other: the typing goes to nobody
 * and the typer is told nothing, as by nginx's script */
static void
test_typing_blocked(void)
{
    const char  *r[] = { TYPING("typing", "dm:alice:blockedbob"),
                         TYPING("typing", "dm:alice:bob") };

    start();
    check(batch(r, 2));
    check_str(trace(), "load 2|blocked_pairs 2|deliver 1");
    check_str(sent(), "position 3 11\n"
                      "@bob {\"type\":\"typing\",\"conversation_id\":"
                      "\"dm:alice:bob\",\"user_id\":\"alice\","
                      "\"state\":\"start\"}\n");
}


/* an unknown op is refused with bad_request when it says where to, never
 * taken for typing; a node's repair is no session's */
static void
test_unknown_op(void)
{
    const char  *r[] = { TYPING("typo", "g:1"),
                         TYPING("typing", "g:1"),
                         "{\"op\":\"typing\",\"node\":\"s1:0\"}",
                         "{\"op\":\"typo\"," HEAD ",\"req_id\":\"q\"}",
                         "{\"op\":\"repair\",\"node\":\"s1:0\","
                         "\"partition\":3,\"after\":5,\"upto\":9}" };

    start();
    check(batch(r, 5));
    /* the repair is a node's: read, not answered with a frame here */
    check_str(trace(), "load 1|repairs 1|deliver 3");
    check(count("\"type\":\"typing\"") == 1);
    check_str(sent(), "position 3 14\n"
                      SESSION "{\"type\":\"error\",\"code\":\"bad_request\","
                      "\"message\":\"unsupported op \\\"typo\\\"\"}\n"
                      SESSION "{\"type\":\"error\",\"code\":\"bad_request\","
                      "\"message\":\"unsupported op \\\"typo\\\"\","
                      "\"req_id\":\"q\"}\n"
                      "@bob {\"type\":\"typing\",\"conversation_id\":\"g:1\","
                      "\"user_id\":\"alice\",\"state\":\"start\"}\n");
}


/* nginx's uploaded records, whatever their place in the batch, are looked
 * at once the batch's sends are stored and delivered: no send waits for
 * an image to decode; they say nothing to anyone */
static void
test_uploaded_after_delivery(void)
{
    const char  *r[] = { "{\"op\":\"uploaded\",\"node\":\"s1:0\",\"ts\":1,"
                         "\"attachment_id\":"
                         "\"0123456789abcdef0123456789abcdef\",\"size\":9}",
                         SEND("g:1", "c1"),
                         "{\"op\":\"uploaded\",\"node\":\"s1:0\",\"ts\":1,"
                         "\"attachment_id\":"
                         "\"fedcba9876543210fedcba9876543210\",\"size\":9}",
                         SEND("g:1", "c2") };

    start();
    check(batch(r, 4));
    check_str(trace(), "sends 2|load 2|deliver 6|images 1|images 1");
    check(count("\"type\":\"ack\"") == 2);
    check(count("uploaded") == 0);
}


/* a send whose image the images' thread is making cuts its partition
 * there: what came before goes through, it and what follows in its
 * partition wait for a later batch (not answered, not in the positions);
 * the other partitions are not held */
static void
test_cut_for_an_image(void)
{
    const char  *r[] = { SEND("g:1", "c1"),
                         "{\"op\":\"send\"," HEAD ",\"conv\":\"g:1\","
                         "\"cmid\":\"c2\",\"body\":\"\",\"attachments\":"
                         "[\"0123456789abcdef0123456789abcdef\"]}",
                         SEND("g:1", "c3"),
                         "{\"op\":\"uploaded\",\"node\":\"s1:0\",\"ts\":1,"
                         "\"attachment_id\":"
                         "\"fedcba9876543210fedcba9876543210\",\"size\":9}" };

    start();
    images = (chat_images_t *) &cache;      /* any: the fake's */
    fake.pending = "0123456789abcdef0123456789abcdef";
    check(batch(r, 4));
    check(ncuts == 1 && cuts[0].partition == 3 && cuts[0].offset == 11);
    check_str(trace(), "sends 1|load 1|deliver 3|images 1");
    check(count("\"client_msg_id\":\"c1\"") > 0);
    check(count("\"client_msg_id\":\"c2\"") == 0);
    check(count("\"client_msg_id\":\"c3\"") == 0);
    check(strncmp(sent(), "position 3 10\n", 14) == 0);

    /* made meanwhile: the next batch takes them all */
    start();
    check(batch(r, 3));
    check(ncuts == 0);
    check_str(trace(), "upload_rows 1|sends 3|load 3|deliver 9");

    /* without an images' thread, nothing is ever cut */
    start();
    images = NULL;
    fake.pending = "0123456789abcdef0123456789abcdef";
    check(batch(r, 3));
    check(ncuts == 0);
}


/* a refused batch of sends is stored again one by one: only the faulty
 * record fails; a refused batch of receipts fails as a whole */
static void
test_refused(void)
{
    const char  *s[] = { SEND("g:1", "c1"), SEND("g:bad", "c2"),
                         SEND("dm:alice:bob", "c3") };
    const char  *r[] = { RECEIPT("g:bad", "1"), RECEIPT("g:1", "1") };

    start();
    fake.refuse = "g:bad";
    check(batch(s, 3));
    check_str(trace(), "sends 3|sends 1|load 1|sends 1|sends 1|load 1"
                       "|deliver 7");
    check(count("\"type\":\"ack\"") == 2);
    check(strstr(sent(), SESSION "{\"type\":\"error\",\"code\":\"internal\","
                         "\"message\":\"the message could not be stored\","
                         "\"client_msg_id\":\"c2\"}\n") != NULL);

    start();
    fake.refuse = "g:bad";
    check(batch(r, 2));
    check_str(trace(), "receipts 2|load 2|deliver 2");
    check(count("\"code\":\"internal\",\"message\":\"the receipt could not"
                " be stored\"") == 2);

    /* reads: one by one, like sends */
    start();
    fake.refuse = "g:bad";
    {
        const char  *h[] = {
            "{\"op\":\"history\"," HEAD ",\"req_id\":1,\"conv\":\"g:bad\"}",
            "{\"op\":\"history\"," HEAD ",\"req_id\":2,\"conv\":\"g:1\"}",
        };

        check(batch(h, 2));
        check_str(trace(), "reads 2|reads 1|reads 1|deliver 2");
        check(strstr(sent(), SESSION "{\"type\":\"error\",\"code\":"
                             "\"internal\",\"message\":\"the request "
                             "failed\",\"req_id\":1}\n" SESSION
                             "{\"type\":\"history\",\"req_id\":2,")
              != NULL);
    }

    /* a change: its own transaction, internal when refused */
    start();
    fake.refuse = "g:bad";
    {
        const char  *g[] = {
            "{\"op\":\"add_members\"," HEAD ",\"req_id\":1,\"conv\":"
            "\"g:bad\",\"user_ids\":[\"x\"]}",
        };

        check(batch(g, 1));
        check_str(trace(), "add_members 1|deliver 1");
        check(strstr(sent(), "\"code\":\"internal\",\"message\":\"the change"
                             " failed\",\"req_id\":1}") != NULL);
    }
}


/*
 * Replays: the records at or below their partition's delivered mark (a
 * predecessor died after its delivery, before its offset commit) are
 * stored again and say nothing, whatever their op; the mark is asked once
 * per partition taken, not per batch.
 */
static void
test_replay(void)
{
    const char  *r[] = { SEND("dm:alice:bob", "c1"),
                         SEND("dm:alice:bob", "c2") };
    const char  *g[] = {
        "{\"op\":\"add_members\"," HEAD ",\"req_id\":1,\"conv\":\"g:1\","
        "\"user_ids\":[\"dave\"]}",
        RECEIPT("g:1", "1"),
        TYPING("typing", "g:1"),
        "{\"op\":\"history\"," HEAD ",\"req_id\":2,\"conv\":\"g:1\"}",
        SEND("g:1", "c3"),
    };

    /* both at or below the mark: stored, nothing said */
    start();
    fake.replay_at = 11;
    fake.delivered = 11;
    check(batch(r, 2));
    check_str(trace(), "delivered 1|sends 2|load 2|deliver 0");
    check(strstr(sent(), "\"c1\"") == NULL);
    check(strstr(sent(), "\"c2\"") == NULL);

    /* the mark known: not asked again */
    fake.trace.len = 0;
    check(batch(r, 2));
    check_str(trace(), "sends 2|load 2|deliver 0");

    /* c2 is beyond it: answered again (its predecessor stored it but its
     * answers did not go out) */
    start();
    fake.replay_at = 11;
    fake.delivered = 10;
    check(batch(r, 2));
    check_str(trace(), "delivered 1|sends 2|load 2|deliver 3");
    check(count("\"client_msg_id\":\"c1\"") == 0);
    check(count("\"client_msg_id\":\"c2\"") == 3);

    /* no mark: everything said */
    start();
    check(batch(r, 2));
    check_str(trace(), "sends 2|load 2|deliver 6");

    /* every op: a change, a receipt, typing and a read say nothing at or
     * below the mark (offsets 10 to 13), the send after it its all */
    start();
    fake.delivered = 13;
    check(batch(g, 5));
    check(count("\"type\":\"group\"") == 0);
    check(count("\"members_added\"") == 0);
    check(count("\"event\":\"x\"") == 0);
    check(count("\"type\":\"receipt\"") == 0);
    check(count("\"type\":\"typing\"") == 0);
    check(count("\"type\":\"history\"") == 0);
    check(count("\"client_msg_id\":\"c3\"") >= 2);
    check(strncmp(sent(), "position 3 14\n", 14) == 0);
}


/*
 * The pushes: a record for each device of the recipients that the
 * delivery found without a session, none for the online one; a replay
 * pushes again even when its answers went out before (its records may
 * not have); a wait for Kafka given up leaves the batch undone.
 */
static void
test_pushes(void)
{
    const char          *r[] = { SEND("dm:alice:bob", "c1") };
    chat_push_device_t   devices[] = { { "bob", "tablet" },
                                       { "bob", "phone" } };

    start();
    fake.push_devices = devices;
    fake.npush_devices = 2;
    fake.online_device = "phone";
    check(batch(r, 1));
    check_str(trace(), "sends 1|load 1|deliver 3|pushes 1");
    check(count("push 101 bob tablet 5\n") == 1);
    check(count(" phone ") == 0);

    /* at or below the mark: nothing said, the push produced again */
    start();
    fake.push_devices = devices;
    fake.npush_devices = 2;
    fake.replay_at = 10;
    fake.delivered = 10;
    check(batch(r, 1));
    check_str(trace(), "delivered 1|sends 1|load 1|deliver 0|pushes 2");
    check(count("\"client_msg_id\":\"c1\"") == 0);
    check(count("push 101 bob tablet 5\n") == 1);
    check(count("push 101 bob phone 5\n") == 1);

    /* its one device online: nothing produced */
    start();
    fake.push_devices = devices;
    fake.npush_devices = 1;
    fake.online_device = "tablet";
    check(batch(r, 1));
    check_str(trace(), "sends 1|load 1|deliver 3");
    check(count("push ") == 0);

    start();
    fake.push_devices = devices;
    fake.npush_devices = 2;
    fake.produce_fail = true;
    check(!batch(r, 1));
}


/* a record nobody can be told about is skipped; one that says where to
 * answer gets bad_request; both count for the position */
static void
test_bad_records(void)
{
    const char  *r[] = { "not json", NULL,
                         "{\"op\":\"send\"," HEAD ",\"conv\":\"g:1\","
                         "\"cmid\":\"c9\"}",
                         SEND("g:none", "c4") };

    start();
    check(batch(r, 4));
    check_str(trace(), "sends 1|deliver 2");
    check_str(sent(), "position 3 13\n"
                      SESSION "{\"type\":\"error\",\"code\":\"bad_request\","
                      "\"message\":\"missing or empty body\","
                      "\"client_msg_id\":\"c9\"}\n"
                      SESSION "{\"type\":\"error\",\"code\":\"forbidden\","
                      "\"message\":\"not a member of this conversation\","
                      "\"client_msg_id\":\"c4\"}\n");
}


/* a change sets the cache for the records after it */
static void
test_change_then_send(void)
{
    const char  *r[] = {
        "{\"op\":\"create_group\"," HEAD ",\"req_id\":1,\"conv\":\"g:new\","
        "\"name\":\"N\",\"members\":[\"erin\"]}",
        SEND("g:new", "c1"),
        "{\"op\":\"remove_members\"," HEAD ",\"req_id\":2,"
        "\"conv\":\"g:new\",\"user_ids\":[\"erin\"]}",
        SEND("g:new", "c2"),
    };

    start();
    check(batch(r, 4));
    check_str(trace(), "create_group 1|sends 1|load 1|remove_members 1"
                       "|sends 1|load 1|deliver 11");

    /* erin gets c1 and her removal, not c2 */
    check(strstr(sent(), "@erin -" SESSION "{\"type\":\"message\","
                         "\"message_id\":\"102\"") != NULL);
    check(strstr(sent(), "@erin {\"type\":\"message\",\"message_id\":"
                         "\"103\"") != NULL);
    check(strstr(sent(), "@erin -" SESSION "{\"type\":\"message\","
                         "\"message_id\":\"104\"") == NULL);

    /* the sets of conversations: both joined, then erin left */
    check(strstr(sent(), "\n+alice g:new\n") != NULL);
    check(strstr(sent(), "\n+erin g:new\n") != NULL);
    check(strstr(sent(), "\n-erin g:new\n") != NULL);
    check(count("g:new\n") == 3);
}


/* a direct conversation's first message makes its two members join it;
 * the next ones change nothing */
static void
test_direct_joins(void)
{
    const char  *r[] = {
        SEND("dm:alice:bob", "c1"),
        SEND("dm:alice:bob", "c2"),
    };

    start();
    check(batch(r, 2));
    check(strstr(sent(), "\n+alice dm:alice:bob\n") != NULL);
    check(strstr(sent(), "\n+bob dm:alice:bob\n") != NULL);
    check(count("dm:alice:bob\n") == 2);
}


int
main(void)
{
    memset(&cache, 0, sizeof(cache));

    test_order();
    test_typing();
    test_typing_blocked();
    test_coalesced_receipts();
    test_unknown_op();
    test_uploaded_after_delivery();
    test_cut_for_an_image();
    test_refused();
    test_replay();
    test_pushes();
    test_bad_records();
    test_change_then_send();
    test_direct_joins();

    fake_reset();
    chat_members_clear(&cache);
    chat_members_release(&cache);
    free(cache.retired);

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
