/*
 * test_worker_chain.c: unit tests of what chat_worker publishes for the
 * gap-free delivery, all pure: the chain state (worker_chain.c: epochs,
 * marks, heads), the sections and repairs of a payload
 * (worker_payload.c), a repair's rows as frames (worker_fanout.c) and the
 * ranges, read back with the wire's parser and followed with the module's
 * own chain (ngx_chat_chain.c), as a node would.
 *
 * The worker's files are included, not linked. Prints "N passed, N
 * failed" and exits 1 on a failure.
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
#include "worker_unit.h"

#include "ngx_chat_chain.h"


#define SID_A  "00000000000000aa"
#define SID_B  "00000000000000bb"
#define SID_C  "00000000000000cc"
#define SID_D  "00000000000000dd"
#define SID_E  "00000000000000ee"
#define SID_F  "00000000000000ff"


/* ---- what a node reads of a payload ---- */

/* the records of a payload, one line each: "P 2 40 50 [A 123 aa:{..}]"
 * for a section or repair (its records inside), "F aa,bb:{..}" alone */
static void
dump(chat_buf_t *out, const char *p, size_t len, int depth)
{
    ngx_chat_wire_record_t  rec;
    ngx_chat_wire_range_t   range;
    const char             *pos = p, *end = p + len, *s, *sid;
    int64_t                 ms;
    int                     rc, first;

    while ((rc = ngx_chat_wire_record_next(&pos, end, &rec)) == 1) {
        switch (rec.type) {

        case NGX_CHAT_WIRE_RECORD_SECTION:
        case NGX_CHAT_WIRE_RECORD_REPAIR:
            if (!ngx_chat_wire_range_parse(rec.args, rec.args_len, &range)) {
                chat_buf_adds(out, "BAD RANGE");
                return;
            }

            chat_buf_printf(out, "%c %d %lld %lld [", rec.type,
                            (int) range.partition, (long long) range.from,
                            (long long) range.to);
            dump(out, rec.body, rec.body_len, depth + 1);
            chat_buf_adds(out, "]\n");
            break;

        case NGX_CHAT_WIRE_RECORD_ACK:
            if (!ngx_chat_wire_ack_parse(rec.args, rec.args_len, &ms, &sid)) {
                chat_buf_adds(out, "BAD ACK");
                return;
            }

            chat_buf_printf(out, "A %lld %.2s:%.*s ", (long long) ms,
                            sid + 14, (int) rec.body_len, rec.body);
            break;

        default:
            chat_buf_printf(out, "%c ", rec.type);
            s = rec.args;
            first = 1;

            while (ngx_chat_wire_sids_next(&s, rec.args + rec.args_len, &sid)
                   == 1)
            {
                chat_buf_printf(out, "%s%.2s", first ? "" : ",", sid + 14);
                first = 0;
            }

            chat_buf_printf(out, ":%.*s%s", (int) rec.body_len, rec.body,
                            depth ? " " : "\n");
            break;
        }
    }

    if (rc == -1) {
        chat_buf_adds(out, "INVALID");
    }
}


/* the payload of node in p (its chunks joined), dumped */
static const char *
node_payload(chat_buf_t *out, const chat_payloads_t *p, const char *node)
{
    size_t  i;

    out->len = 0;

    for (i = 0; i < p->nchunks; i++) {
        if (strcmp(p->nodes[p->chunks[i].node].name, node) == 0) {
            dump(out, p->chunks[i].buf.data, p->chunks[i].buf.len, 0);
        }
    }

    return out->len ? chat_buf_cstr(out) : "";
}


/* ---- the sessions of the users, as the lookup would find them ---- */

typedef struct {
    const char  *user;
    const char  *device;
    const char  *node;
    const char  *sid;
} session_t;

static void
sessions(chat_payload_users_t *u, const session_t *s, size_t n,
    chat_arena_t *arena)
{
    size_t  i, k;

    for (i = 0; i < u->n; i++) {
        u->found[i].sessions = chat_arena_alloc(arena,
                                   (n + 1) * sizeof(chat_session_t));
        u->found[i].n = 0;

        for (k = 0; k < n; k++) {
            if (strcmp(s[k].user, u->users[i]) == 0) {
                chat_session_t  *x = &u->found[i].sessions[u->found[i].n++];

                x->node = s[k].node;
                x->sid = s[k].sid;
                x->device = s[k].device;
            }
        }
    }
}


/* ---- the chain state ---- */

static void
test_chain_state(void)
{
    chat_chain_t        c = { 0 };
    chat_chain_part_t  *p;
    int64_t             head, e1;

    /* a partition taken: an epoch, its mark to be loaded */
    chat_chain_assign(&c, 2, 1000000);
    p = chat_chain_find(&c, 2);
    check(p != NULL && p->epoch == 1000000 && !p->mark_known
          && p->mark == -1 && !p->fenced);
    e1 = p->epoch;

    /* taken again at the same microsecond: still a newer epoch */
    chat_chain_assign(&c, 5, 1000000);
    check(chat_chain_find(&c, 5)->epoch == e1 + 1);
    check(chat_chain_find(&c, 7) == NULL);

    /* heads per (partition, node) */
    check(!chat_chain_head(&c, 2, "s1:0", &head));
    chat_chain_set_head(&c, 2, "s1:0", 40, 100);
    chat_chain_set_head(&c, 2, "s2:0", 41, 100);
    chat_chain_set_head(&c, 5, "s1:0", 7, 200);
    check(chat_chain_head(&c, 2, "s1:0", &head) && head == 40);
    check(chat_chain_head(&c, 2, "s2:0", &head) && head == 41);
    check(chat_chain_head(&c, 5, "s1:0", &head) && head == 7);
    chat_chain_set_head(&c, 2, "s1:0", 50, 300);
    check(chat_chain_head(&c, 2, "s1:0", &head) && head == 50);
    check(c.nheads == 3);

    /* taken again (a rebalance gave it back): its heads are someone
     * else's now, the others' stay */
    chat_chain_find(&c, 2)->mark = 9;
    chat_chain_find(&c, 2)->mark_known = true;
    chat_chain_find(&c, 2)->fenced = true;
    chat_chain_assign(&c, 2, 2000000);
    p = chat_chain_find(&c, 2);
    check(p->epoch == 2000000 && !p->mark_known && !p->fenced);
    check(!chat_chain_head(&c, 2, "s1:0", &head));
    check(!chat_chain_head(&c, 2, "s2:0", &head));
    check(chat_chain_head(&c, 5, "s1:0", &head) && head == 7);

    /* an epoch never goes back, even with the clock */
    chat_chain_assign(&c, 7, 5);
    check(chat_chain_find(&c, 7)->epoch == 2000001);

    /* lost: forgotten with its heads */
    chat_chain_revoke(&c, 5);
    check(chat_chain_find(&c, 5) == NULL);
    check(!chat_chain_head(&c, 5, "s1:0", &head));
    check(chat_chain_find(&c, 2) != NULL && chat_chain_find(&c, 7) != NULL);

    /* a partition a batch names without an assignment is taken then */
    check(chat_chain_part(&c, 9)->partition == 9);

    /* heads untouched for a day go */
    chat_chain_set_head(&c, 2, "old:1", 3, 10);
    chat_chain_set_head(&c, 2, "new:1", 4, 1000);
    chat_chain_expire(&c, 500);
    check(!chat_chain_head(&c, 2, "old:1", &head));
    check(chat_chain_head(&c, 2, "new:1", &head) && head == 4);

    chat_chain_free(&c);
}


/* ---- sections ---- */

static void
test_sections(void)
{
    static const session_t  s[] = {
        { "alice", "phone", "s1:0", SID_A },
        { "bob", "phone", "s1:0", SID_B },
        { "bob", "tablet", "s2:0", SID_C },
    };
    chat_outbox_t          out = { 0 };
    chat_payload_users_t   users;
    chat_payloads_t        p = { 0 };
    chat_chain_t           c = { 0 };
    chat_arena_t           arena = { 0 };
    chat_buf_t             d = { 0 };
    chat_position_t        done[2] = { { 2, 50 }, { 5, 7 } };
    ngx_chat_chain_t       node;
    int32_t                parts[8];
    const char            *nodes[8];
    size_t                 n, i;

    /* partition 2: alice's ack and her message to bob; partition 5: a
     * frame to bob */
    chat_outbox_from(&out, 2);
    chat_outbox_ack(&out, chat_outbox_bytes(&out, chat_strdup("{ack}"), 5),
                    "s1:0", SID_A, 123);
    chat_outbox_to_user(&out, chat_outbox_bytes(&out, chat_strdup("{m1}"), 4),
                        "bob", "s1:0", SID_A);
    chat_outbox_to_user(&out, out.nframes - 1, "alice", "s1:0", SID_A);
    chat_outbox_from(&out, 5);
    chat_outbox_to_user(&out, chat_outbox_bytes(&out, chat_strdup("{r}"), 3),
                        "bob", NULL, NULL);

    chat_payload_users(&users, &out);
    check(users.n == 2);
    sessions(&users, s, 3, &arena);
    chat_payload_build(&p, &out, &users);

    /* none of the four chains is known yet */
    chat_chain_assign(&c, 2, 1);
    chat_chain_assign(&c, 5, 2);
    n = chat_payload_unknown(&p, &c, parts, nodes);
    check(n == 4);

    /* as Redis tells: one has a head, the others none */
    for (i = 0; i < n; i++) {
        chat_chain_set_head(&c, parts[i], nodes[i],
                            parts[i] == 2 && strcmp(nodes[i], "s1:0") == 0
                            ? 40 : -1, 1);
    }

    check(chat_payload_unknown(&p, &c, parts, nodes) == 0);

    chat_payload_finish(&p, &c, done, 2);

    /* each node: a section per partition, chained, the records in the
     * outbox's order; the ack an A record with the send's time; alice's
     * sending session has its ack, not the message */
    check_str(node_payload(&d, &p, "s1:0"),
              "P 2 40 50 [A 123 aa:{ack} F bb:{m1} ]\n"
              "P 5 -1 7 [F bb:{r} ]\n");
    check_str(node_payload(&d, &p, "s2:0"),
              "P 2 -1 50 [F cc:{m1} ]\n"
              "P 5 -1 7 [F cc:{r} ]\n");

    /* where each chain is now, for the script to write */
    check(p.nheads == 4);
    check(p.heads[0].partition == 2 && p.heads[0].head == 50
          && strcmp(p.heads[0].node, "s1:0") == 0);

    /* the node follows: 40 held, the section continues it */
    ngx_chat_chain_init(&node);
    node.last = 40;
    check(ngx_chat_chain_section(&node, 40, 50) == NGX_CHAT_CHAIN_DELIVER);

    /* a fenced partition's sections are left out, and so are its heads */
    chat_chain_find(&c, 5)->fenced = true;
    chat_payload_finish(&p, &c, done, 2);
    check_str(node_payload(&d, &p, "s1:0"),
              "P 2 40 50 [A 123 aa:{ack} F bb:{m1} ]\n");
    check(p.nheads == 2);

    /* all fenced: nothing at all */
    chat_chain_find(&c, 2)->fenced = true;
    chat_payload_finish(&p, &c, done, 2);
    check(p.nchunks == 0 && p.nheads == 0);

    chat_payload_free(&p);
    chat_payload_users_free(&users);
    chat_outbox_free(&out);
    chat_arena_free(&arena);
    chat_chain_free(&c);
    chat_buf_free(&d);
}


/* a payload beyond CHAT_PAYLOAD_SPLIT is cut between sections, never
 * inside one */
static void
test_split(void)
{
    static const session_t  s[] = { { "bob", "phone", "s1:0", SID_B } };
    chat_outbox_t          out = { 0 };
    chat_payload_users_t   users;
    chat_payloads_t        p = { 0 };
    chat_chain_t           c = { 0 };
    chat_arena_t           arena = { 0 };
    chat_position_t        done[3] = { { 0, 1 }, { 1, 1 }, { 2, 1 } };
    char                  *big;
    int32_t                k;

    for (k = 0; k < 3; k++) {
        big = chat_alloc(CHAT_PAYLOAD_SPLIT * 2 / 3);
        memset(big, 'x', CHAT_PAYLOAD_SPLIT * 2 / 3);
        chat_outbox_from(&out, k);
        chat_outbox_to_user(&out, chat_outbox_bytes(&out, big,
                                                    CHAT_PAYLOAD_SPLIT * 2 / 3),
                            "bob", NULL, NULL);
    }

    chat_payload_users(&users, &out);
    sessions(&users, s, 1, &arena);
    chat_payload_build(&p, &out, &users);
    chat_payload_finish(&p, &c, done, 3);

    /* two sections fill the first piece; the third starts the second */
    check(p.nchunks == 2);
    check(p.nheads == 3);

    chat_payload_free(&p);
    chat_payload_users_free(&users);
    chat_outbox_free(&out);
    chat_arena_free(&arena);
    chat_chain_free(&c);
}


/* ---- repairs ---- */

static const chat_fake_group_t  repair_groups[] = {
    /* carol joined after seq 3, dave was removed at 3 (he hears of it),
     * erin at 2 (she does not) */
    { "g:1", { { "alice", true, 1, -1 }, { "carol", false, 4, -1 },
               { "dave", false, 1, 3 }, { "erin", false, 1, 2 } }, 4 },
};

static const session_t  repair_sessions[] = {
    { "alice", "phone", "s1:0", SID_A },        /* sent the text */
    { "alice", "tablet", "s1:0", SID_B },
    { "alice", "laptop", "s2:0", SID_C },       /* another node */
    { "bob", "phone", "s1:0", SID_D },          /* same device name */
    { "carol", "x", "s1:0", SID_E },
    { "dave", "x", "s1:0", SID_F },
    { "erin", "x", "s1:0", "0000000000000011" },
};


/* a repair through its row: answered with its R record, filled by the
 * fan-out with each message as its first fan-out had it, for the asking
 * node's sessions only */
static void
test_repair(void)
{
    chat_repair_row_t      rows[2];
    chat_request_t         req;
    chat_item_t            item;
    chat_op_ctx_t          ctx;
    chat_outbox_t          out = { 0 };
    chat_payload_users_t   users;
    chat_payloads_t        p = { 0 };
    chat_chain_t           c = { 0 };
    chat_arena_t           arena = { 0 };
    chat_members_cache_t   cache = { 0 };
    chat_buf_t             d = { 0 };
    chat_position_t        done[1] = { { 2, 30 } };
    const char            *r, *text, *sys;
    ngx_chat_chain_t       node;
    char                   why[160];

    memset(rows, 0, sizeof(rows));
    rows[0].msg.conv = "dm:alice:bob";
    rows[0].msg.seq = 8;
    rows[0].msg.message_id = 500;
    rows[0].msg.sender = "alice";
    rows[0].msg.cmid = "c1";
    rows[0].msg.kind = "text";
    rows[0].msg.body = "hi";
    rows[0].msg.server_ts = 9;
    rows[0].device = "phone";
    rows[1].msg.conv = "g:1";
    rows[1].msg.seq = 3;
    rows[1].msg.message_id = 501;
    rows[1].msg.sender = "alice";
    rows[1].msg.kind = "system";
    rows[1].msg.body = "{\"event\":\"members_removed\"}";
    rows[1].msg.server_ts = 9;
    rows[1].device = "phone";

    fake_reset();
    fake.groups = repair_groups;
    fake.ngroups = 1;
    fake.repair_rows = rows;
    fake.nrepair_rows = 2;

    r = "{\"op\":\"repair\",\"node\":\"s1:0\",\"partition\":2,"
        "\"after\":10,\"upto\":20,\"since\":1,\"ts\":1}";
    req.partition = 2;
    req.offset = 30;
    check(chat_ops_parse(&req, r, strlen(r), why, sizeof(why))
          == CHAT_PARSE_OK);

    memset(&item, 0, sizeof(item));
    item.req = &req;
    item.op = chat_ops_find(req.op);

    memset(&ctx, 0, sizeof(ctx));
    ctx.out = &out;
    ctx.arena = &arena;
    ctx.members = &cache;

    check(item.op->store(&ctx, (chat_item_t *[]) { &item }, 1)
          == CHAT_STORE_OK);
    check(item.u.repair.n == 2);

    chat_outbox_from(&out, req.partition);
    item.op->answer(&ctx, &item);
    item.op->fanout(&ctx, &item);

    check(out.nrepairs == 1);

    chat_payload_users(&users, &out);
    sessions(&users, repair_sessions, 7, &arena);
    chat_payload_build(&p, &out, &users);

    /* a repair is no section: no chain to know */
    check(chat_payload_unknown(&p, &c, (int32_t[8]) { 0 },
                               (const char *[8]) { 0 }) == 0);

    chat_payload_finish(&p, &c, done, 1);
    check(p.nheads == 0);

    /* the text: alice's other device and bob (his "phone" is not the
     * sending one); the system message: every device of the members as of
     * seq 3 on this node, the removed dave with them, not carol or erin */
    text = "{\"type\":\"message\",\"message_id\":\"500\",\"conversation_id\":"
           "\"dm:alice:bob\",\"seq\":8,\"sender_id\":\"alice\","
           "\"client_msg_id\":\"c1\",\"kind\":\"text\",\"body\":\"hi\","
           "\"server_ts\":9}";
    sys = "{\"type\":\"message\",\"message_id\":\"501\",\"conversation_id\":"
          "\"g:1\",\"seq\":3,\"sender_id\":\"alice\",\"client_msg_id\":null,"
          "\"kind\":\"system\",\"body\":{\"event\":\"members_removed\"},"
          "\"server_ts\":9}";

    d.len = 0;
    {
        chat_buf_t  want = { 0 };

        chat_buf_printf(&want, "R 2 10 20 [F bb,dd:%s F aa,bb,ff:%s ]\n",
                        text, sys);
        check_str(node_payload(&d, &p, "s1:0"), chat_buf_cstr(&want));
        chat_buf_free(&want);
    }

    /* the other node hears nothing of another's repair */
    check_str(node_payload(&d, &p, "s2:0"), "");

    /* and the node that asked is repaired by it */
    ngx_chat_chain_init(&node);
    node.last = 10;
    check(ngx_chat_chain_section(&node, 20, 25) == NGX_CHAT_CHAIN_GAP);
    check(node.repair == 20);
    check(ngx_chat_chain_repaired(&node, 10, 20) == NGX_CHAT_CHAIN_DELIVER);
    check(node.last == 20);

    chat_payload_free(&p);
    chat_payload_users_free(&users);
    chat_outbox_free(&out);

    /* nothing in the gap for this node: the R record goes all the same */
    fake.nrepair_rows = 0;
    check(item.op->store(&ctx, (chat_item_t *[]) { &item }, 1)
          == CHAT_STORE_OK);
    chat_outbox_from(&out, req.partition);
    item.op->answer(&ctx, &item);
    item.op->fanout(&ctx, &item);
    chat_payload_users(&users, &out);
    chat_payload_build(&p, &out, &users);
    chat_payload_finish(&p, &c, done, 1);
    check_str(node_payload(&d, &p, "s1:0"), "R 2 10 20 []\n");
    chat_payload_free(&p);
    chat_payload_users_free(&users);
    chat_outbox_free(&out);

    /* too large to send: no answer (the node gives up, its sessions sync) */
    item.u.repair.too_large = true;
    chat_outbox_from(&out, req.partition);
    item.op->answer(&ctx, &item);
    item.op->fanout(&ctx, &item);
    check(out.nrepairs == 0 && out.ndeliveries == 0);
    chat_outbox_free(&out);

    chat_request_free(&req);
    chat_arena_free(&arena);
    chat_chain_free(&c);
    chat_buf_free(&d);
    fake_reset();
}


/* ---- batches after batches, as a node follows them ---- */

/* one batch of partition 0 up to offset last, a frame to bob at s1:0: the
 * payload as published, the chain moved as after a publish */
static void
publish(chat_chain_t *c, int64_t last, chat_buf_t *payload)
{
    static const session_t  s[] = { { "bob", "phone", "s1:0", SID_B } };
    chat_outbox_t          out = { 0 };
    chat_payload_users_t   users;
    chat_payloads_t        p = { 0 };
    chat_arena_t           arena = { 0 };
    chat_position_t        done[1];
    int32_t                parts[4];
    const char            *nodes[4];
    size_t                 i, n;

    done[0].partition = 0;
    done[0].offset = last;

    chat_outbox_from(&out, 0);
    chat_outbox_to_user(&out, chat_outbox_bytes(&out, chat_strdup("{m}"), 3),
                        "bob", NULL, NULL);
    chat_payload_users(&users, &out);
    sessions(&users, s, 1, &arena);
    chat_payload_build(&p, &out, &users);

    n = chat_payload_unknown(&p, c, parts, nodes);
    for (i = 0; i < n; i++) {
        chat_chain_set_head(c, parts[i], nodes[i], -1, 1);
    }

    chat_payload_finish(&p, c, done, 1);

    for (i = 0; i < p.nheads; i++) {
        chat_chain_set_head(c, p.heads[i].partition, p.heads[i].node,
                            p.heads[i].head, 1);
    }

    payload->len = 0;
    chat_buf_add(payload, p.chunks[0].buf.data, p.chunks[0].buf.len);

    chat_payload_free(&p);
    chat_payload_users_free(&users);
    chat_outbox_free(&out);
    chat_arena_free(&arena);
}


/* what the node does with a payload's section: its chain's verdict */
static ngx_chat_chain_rc_e
follow(ngx_chat_chain_t *node, const chat_buf_t *payload)
{
    ngx_chat_wire_record_t  rec;
    ngx_chat_wire_range_t   range;
    const char             *pos = payload->data;

    if (ngx_chat_wire_record_next(&pos, payload->data + payload->len, &rec)
        != 1
        || rec.type != NGX_CHAT_WIRE_RECORD_SECTION
        || !ngx_chat_wire_range_parse(rec.args, rec.args_len, &range))
    {
        return (ngx_chat_chain_rc_e) -1;
    }

    return ngx_chat_chain_section(node, range.from, range.to);
}


static void
test_follow(void)
{
    chat_chain_t      c = { 0 };
    chat_buf_t        b = { 0 };
    ngx_chat_chain_t  node;
    int64_t           head = -1;

    ngx_chat_chain_init(&node);
    chat_chain_assign(&c, 0, 1);

    /* the first section to a node starts the chain (-1) */
    publish(&c, 4, &b);
    check(follow(&node, &b) == NGX_CHAT_CHAIN_DELIVER && node.last == 4);

    /* batches without a record for the node leave its chain alone; the
     * next section follows the last one sent to it */
    publish(&c, 9, &b);
    check(follow(&node, &b) == NGX_CHAT_CHAIN_DELIVER && node.last == 9);

    /* a payload lost (Redis restarted, the subscription dropped): the
     * next section shows the gap, which the node asks to be repaired */
    publish(&c, 12, &b);
    publish(&c, 20, &b);
    check(follow(&node, &b) == NGX_CHAT_CHAIN_GAP);
    check(node.last == 9 && node.repair == 12);

    /* the same section published twice (a lost EXEC answer): dropped */
    check(ngx_chat_chain_repaired(&node, 9, 12) == NGX_CHAT_CHAIN_DELIVER);
    check(ngx_chat_chain_section(&node, 12, 20) == NGX_CHAT_CHAIN_DELIVER);
    check(follow(&node, &b) == NGX_CHAT_CHAIN_DROP);

    /* the newest lost: the head the worker wrote shows it at the audits */
    publish(&c, 25, &b);
    check(chat_chain_head(&c, 0, "s1:0", &head) && head == 25);
    check(ngx_chat_chain_audit(&node, head) == NGX_CHAT_CHAIN_DELIVER);
    check(ngx_chat_chain_audit(&node, head) == NGX_CHAT_CHAIN_GAP);
    check(node.repair == 25);

    chat_chain_free(&c);
    chat_buf_free(&b);
}


/* the pushes: a device among its user's sessions is online; a user the
 * outbox names only for a push is looked up too */
static void
test_pushes_online(void)
{
    static const session_t  s[] = { { "bob", "phone", "s1:0", SID_B },
                                    { "carol", "web", "s1:0", SID_B } };
    chat_outbox_t          out = { 0 };
    chat_payload_users_t   users;
    chat_arena_t           arena = { 0 };

    chat_outbox_from(&out, 2);
    chat_outbox_to_user(&out, chat_outbox_bytes(&out, chat_strdup("m"), 1),
                        "bob", NULL, NULL);
    chat_outbox_push(&out, 7, "bob", "phone", 5);
    chat_outbox_push(&out, 7, "bob", "tablet", 5);
    chat_outbox_push(&out, 7, "carol", "tablet", 5);
    chat_outbox_push(&out, 7, "dave", "phone", 5);

    chat_payload_users(&users, &out);
    check(users.n == 3);
    sessions(&users, s, 2, &arena);
    chat_payload_online(&users, &out);

    check(out.npushes == 4);
    check(out.pushes[0].online);
    check(!out.pushes[1].online);
    check(!out.pushes[2].online);
    check(!out.pushes[3].online);
    check(out.pushes[3].partition == 2 && out.pushes[3].ts == 5
          && out.pushes[3].message_id == 7);

    chat_payload_users_free(&users);
    chat_outbox_free(&out);
    chat_arena_free(&arena);
}


int
main(void)
{
    test_chain_state();
    test_pushes_online();
    test_sections();
    test_split();
    test_repair();
    test_follow();

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
