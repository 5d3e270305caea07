/*
 * worker_batch.c: one batch of Kafka records, from bytes to delivered
 * answers: parse and check each record, store the sends in one transaction,
 * run the reads, put every answer in the outbox and deliver it.
 *
 * Answers follow the order of the records, so a conversation's messages
 * reach each node in seq order. Membership changes (create_group,
 * add_members, remove_members) cut the batch into segments: the sends,
 * receipts and typing before a change are stored and answered before it,
 * those after it see it (a send after a removal is refused). Within a
 * segment, sends go first, then receipts (which may name their seqs), then
 * typing; reads come last, after every segment. A record that cannot be parsed is logged
 * and skipped (answered with bad_request when it says where to); it never
 * stops the partition. When the store refuses a whole batch for a reason
 * that is not transient, the batch is split into single records so that
 * only the offending record fails (with internal) and the rest goes
 * through. A send the store recognises as stored by this very record (a
 * predecessor died before committing the offset) is answered again only if
 * the predecessor's answers did not go out.
 */

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "worker_answer.h"
#include "worker_batch.h"
#include "worker_events.h"
#include "worker_frame.h"


typedef struct {
    chat_request_t     *requests;
    size_t              nrequests;
    chat_send_t        *sends;
    size_t              nsends;
    chat_request_t    **reads;
    size_t              nreads;
    chat_request_t    **events;       /* groups, receipts, typing */
    size_t             *events_at;    /* the sends before each event */
    size_t              nevents;

    chat_position_t    *positions;    /* last offset per partition */
    size_t              npositions;

    chat_outbox_t       out;
    chat_arena_t        arena;
} chat_batch_t;


static void
chat_batch_free(chat_batch_t *b)
{
    size_t  i;

    for (i = 0; i < b->nrequests; i++) {
        chat_request_free(&b->requests[i]);
    }

    chat_outbox_reset(&b->out);
    free(b->out.frames);
    free(b->out.deliveries);
    chat_arena_free(&b->arena);
    free(b->requests);
    free(b->sends);
    free(b->reads);
    free(b->events);
    free(b->events_at);
    free(b->positions);
}


/* every record counts, answered or skipped: the positions say how far the
 * batch got in each partition */
static void
chat_batch_positions(chat_batch_t *b, const chat_record_t *records, size_t n)
{
    size_t  i, k;

    for (i = 0; i < n; i++) {
        for (k = 0; k < b->npositions; k++) {
            if (b->positions[k].partition == records[i].partition) {
                break;
            }
        }

        if (k == b->npositions) {
            b->positions[b->npositions].partition = records[i].partition;
            b->positions[b->npositions].offset = records[i].offset;
            b->npositions++;

        } else if (records[i].offset > b->positions[k].offset) {
            b->positions[k].offset = records[i].offset;
        }
    }
}


static void
chat_batch_parse(chat_batch_t *b, const chat_record_t *records, size_t n)
{
    chat_request_t   *req;
    chat_parse_rc_t   rc;
    size_t            i;
    char              why[160];

    for (i = 0; i < n; i++) {
        req = &b->requests[b->nrequests];
        req->partition = records[i].partition;
        req->offset = records[i].offset;

        rc = chat_request_parse(req, records[i].payload, records[i].len,
                                why, sizeof(why));

        if (rc != CHAT_PARSE_OK) {
            log_warn("partition %d offset %" PRId64 ": skipped: %s",
                     records[i].partition, records[i].offset, why);

            if (rc == CHAT_PARSE_BAD) {
                chat_outbox_to_session(&b->out,
                    chat_outbox_frame(&b->out,
                        chat_frame_error_for(req, "bad_request", why)),
                    req->node, req->sid);

                b->nrequests++;     /* its strings are in the outbox */

            } else {
                chat_request_free(req);
            }

            continue;
        }

        b->nrequests++;

        if (req->op == NGX_CHAT_WIRE_OP_SEND) {
            chat_send_t  *s = &b->sends[b->nsends++];

            memset(s, 0, sizeof(*s));
            s->req = req;
            s->direct_forbidden = chat_direct_access(req->conv, req->user)
                                  == NGX_CHAT_WIRE_FORBIDDEN;

        } else if (req->op == NGX_CHAT_WIRE_OP_SYNC || req->op == NGX_CHAT_WIRE_OP_HISTORY) {
            b->reads[b->nreads++] = req;

        } else {
            b->events_at[b->nevents] = b->nsends;
            b->events[b->nevents++] = req;
        }
    }
}


/* false: stopped while waiting for the store */
static bool
chat_batch_store_sends(chat_batch_ctx_t *ctx, chat_batch_t *b,
    chat_send_t *sends, size_t n)
{
    chat_store_rc_t   rc;
    size_t            i;

    if (n == 0) {
        return true;
    }

    rc = chat_store_sends(ctx->store, sends, n, &b->arena);

    if (rc == CHAT_STORE_OK) {
        return true;
    }

    if (rc == CHAT_STORE_STOPPED) {
        return false;
    }

    log_warn("the store refused a batch of %zu sends: storing them one by"
             " one", n);

    for (i = 0; i < n; i++) {
        rc = chat_store_sends(ctx->store, &sends[i], 1, &b->arena);

        if (rc == CHAT_STORE_STOPPED) {
            return false;
        }

        if (rc == CHAT_STORE_OK) {
            continue;
        }

        log_error("partition %d offset %" PRId64 ": conversation %s: the"
                  " store refused the send", sends[i].req->partition,
                  sends[i].req->offset, sends[i].req->conv);
        sends[i].state = CHAT_SEND_FAILED;
    }

    return true;
}


/*
 * A REPLAY is a send stored by this very record before: the worker that
 * stored it died before committing the offset. If that worker also got its
 * answers out (the delivered positions in Redis reach the record), they
 * are not sent again; otherwise they are sent now.
 */
static bool
chat_batch_check_replays(chat_batch_ctx_t *ctx, chat_send_t *sends,
    size_t nsends)
{
    int32_t  partitions[64];
    int64_t  delivered[64];
    size_t   i, k, n = 0;

    for (i = 0; i < nsends; i++) {
        chat_send_t  *s = &sends[i];

        if (s->state != CHAT_SEND_REPLAY) {
            continue;
        }

        for (k = 0; k < n && partitions[k] != s->req->partition; k++) {
            /* void */
        }

        if (k == n) {
            if (n == sizeof(partitions) / sizeof(partitions[0])) {
                continue;       /* more partitions than that: deliver */
            }

            partitions[n++] = s->req->partition;
        }
    }

    if (n == 0) {
        return true;
    }

    if (!chat_redis_delivered(ctx->redis, partitions, n, delivered)) {
        return false;
    }

    for (i = 0; i < nsends; i++) {
        chat_send_t  *s = &sends[i];

        if (s->state != CHAT_SEND_REPLAY) {
            continue;
        }

        for (k = 0; k < n; k++) {
            if (partitions[k] == s->req->partition
                && s->req->offset <= delivered[k])
            {
                s->state = CHAT_SEND_ANSWERED;
            }
        }
    }

    return true;
}


/* the message to every device of every member but the sending one */
static void
chat_batch_fan_out(chat_batch_ctx_t *ctx, chat_batch_t *b,
    const chat_send_t *s)
{
    const chat_members_t  *g;
    size_t               frame, i, len;
    char                *bytes;
    char                 a[NGX_CHAT_WIRE_ID_MAX + 1];
    char                 c[NGX_CHAT_WIRE_ID_MAX + 1];

    bytes = chat_frame_message_text(&s->msg, &len);
    frame = chat_outbox_bytes(&b->out, bytes, len);

    if (chat_parse_dm(s->msg.conv, a, c)) {
        chat_outbox_to_user(&b->out, frame, chat_arena_strdup(&b->arena, a),
                            s->req->node, s->req->sid);

        if (strcmp(a, c) != 0) {
            chat_outbox_to_user(&b->out, frame,
                                chat_arena_strdup(&b->arena, c),
                                s->req->node, s->req->sid);
        }

        return;
    }

    /* the cache holds the members as of this segment of the batch */
    g = chat_members_find(ctx->members, s->msg.conv);
    if (g == NULL) {
        return;
    }

    for (i = 0; i < g->n; i++) {
        if (g->members[i].removed_seq < 0) {
            chat_outbox_to_user(&b->out, frame, g->members[i].user,
                                s->req->node, s->req->sid);
        }
    }
}


/* false: stopped while loading the members of the groups written to */
static bool
chat_batch_answer_sends(chat_batch_ctx_t *ctx, chat_batch_t *b,
    chat_send_t *sends, size_t n)
{
    size_t        i, nconvs = 0;
    const char  **convs;
    chat_send_t  *s;
    char         *bytes;
    size_t        frame, len;

    convs = chat_arena_alloc(&b->arena, (n + 1) * sizeof(char *));

    for (i = 0; i < n; i++) {
        if (sends[i].state == CHAT_SEND_NEW
            || sends[i].state == CHAT_SEND_REPLAY)
        {
            convs[nconvs++] = sends[i].msg.conv;
        }
    }

    if (chat_store_load_members(ctx->store, ctx->members, convs, nconvs)
        == CHAT_STORE_STOPPED)
    {
        return false;
    }

    for (i = 0; i < n; i++) {
        s = &sends[i];

        switch (s->state) {

        case CHAT_SEND_FORBIDDEN:
            frame = chat_outbox_frame(&b->out,
                        chat_frame_error_for(s->req, "forbidden",
                                        "not a member of this conversation"));
            break;

        case CHAT_SEND_NEW:
        case CHAT_SEND_REPLAY:
        case CHAT_SEND_RETRY:
            bytes = chat_frame_ack_text(&s->msg, &len);
            frame = chat_outbox_bytes(&b->out, bytes, len);
            break;

        case CHAT_SEND_ANSWERED:
            continue;

        default:
            frame = chat_outbox_frame(&b->out,
                        chat_frame_error_for(s->req, "internal",
                                        "the message could not be stored"));
            break;
        }

        chat_outbox_to_session(&b->out, frame, s->req->node, s->req->sid);

        if (s->state == CHAT_SEND_NEW || s->state == CHAT_SEND_REPLAY) {
            chat_batch_fan_out(ctx, b, s);
        }
    }

    return true;
}


/* one segment: its sends, then its receipts and typing; false on stop */
static bool
chat_batch_segment(chat_batch_ctx_t *ctx, chat_batch_t *b, size_t s0,
    size_t s1, size_t e0, size_t e1)
{
    chat_request_t  **receipts, **typing;
    size_t            i, nreceipts = 0, ntyping = 0;

    if (!chat_batch_store_sends(ctx, b, b->sends + s0, s1 - s0)
        || !chat_batch_check_replays(ctx, b->sends + s0, s1 - s0)
        || !chat_batch_answer_sends(ctx, b, b->sends + s0, s1 - s0))
    {
        return false;
    }

    if (e1 == e0) {
        return true;
    }

    receipts = chat_arena_alloc(&b->arena, (e1 - e0) * sizeof(void *));
    typing = chat_arena_alloc(&b->arena, (e1 - e0) * sizeof(void *));

    for (i = e0; i < e1; i++) {
        if (b->events[i]->op == NGX_CHAT_WIRE_OP_RECEIPT) {
            receipts[nreceipts++] = b->events[i];

        } else {
            typing[ntyping++] = b->events[i];
        }
    }

    return chat_events_receipts(ctx, receipts, nreceipts, &b->out, &b->arena)
           && chat_events_typing(ctx, typing, ntyping, &b->out, &b->arena);
}


/* the reads' rows, then their answers in record order; false: stopped
 * while waiting for the store */
static bool
chat_batch_reads(chat_batch_ctx_t *ctx, chat_batch_t *b)
{
    chat_store_rc_t   rc;
    chat_read_t      *reads, **ptrs;
    bool             *failed;
    size_t            i;

    if (b->nreads == 0) {
        return true;
    }

    reads = chat_arena_alloc(&b->arena, b->nreads * sizeof(chat_read_t));
    ptrs = chat_arena_alloc(&b->arena, b->nreads * sizeof(chat_read_t *));
    failed = chat_arena_alloc(&b->arena, b->nreads * sizeof(bool));

    for (i = 0; i < b->nreads; i++) {
        memset(&reads[i], 0, sizeof(chat_read_t));
        reads[i].req = b->reads[i];
        ptrs[i] = &reads[i];
        failed[i] = false;
    }

    rc = chat_store_reads(ctx->store, ptrs, b->nreads, &b->arena);

    if (rc == CHAT_STORE_STOPPED) {
        return false;
    }

    if (rc == CHAT_STORE_REFUSED) {
        log_warn("the store refused a batch of %zu reads: reading them one"
                 " by one", b->nreads);

        for (i = 0; i < b->nreads; i++) {
            rc = chat_store_reads(ctx->store, &ptrs[i], 1, &b->arena);

            if (rc == CHAT_STORE_STOPPED) {
                return false;
            }

            if (rc == CHAT_STORE_REFUSED) {
                log_error("partition %d offset %" PRId64 ": the store"
                          " refused the read", b->reads[i]->partition,
                          b->reads[i]->offset);
                failed[i] = true;
            }
        }
    }

    for (i = 0; i < b->nreads; i++) {
        if (failed[i]) {
            chat_answer_error(&b->out, b->reads[i], "internal",
                              "the request failed");

        } else if (b->reads[i]->op == NGX_CHAT_WIRE_OP_SYNC) {
            chat_answer_sync(&b->out, &reads[i]);

        } else {
            chat_answer_history(&b->out, &reads[i]);
        }
    }

    return true;
}


bool
chat_batch_process(chat_batch_ctx_t *ctx, const chat_record_t *records,
    size_t n)
{
    chat_batch_t  b;
    size_t        k, s0, s1, e0;
    bool          done = false;

    memset(&b, 0, sizeof(b));
    b.requests = chat_alloc(n * sizeof(chat_request_t));
    b.sends = chat_alloc(n * sizeof(chat_send_t));
    b.reads = chat_alloc(n * sizeof(chat_request_t *));
    b.events = chat_alloc(n * sizeof(chat_request_t *));
    b.events_at = chat_alloc(n * sizeof(size_t));
    b.positions = chat_alloc(n * sizeof(chat_position_t));

    chat_batch_positions(&b, records, n);
    chat_batch_parse(&b, records, n);

    /* segments end at each membership change, which runs after them */
    s0 = 0;
    e0 = 0;

    for (k = 0; k <= b.nevents; k++) {
        if (k < b.nevents && !chat_op_changes_members(b.events[k]->op)) {
            continue;
        }

        s1 = k < b.nevents ? b.events_at[k] : b.nsends;

        if (!chat_batch_segment(ctx, &b, s0, s1, e0, k)) {
            goto stopped;
        }

        if (k < b.nevents
            && !chat_events_group_op(ctx, b.events[k], &b.out, &b.arena))
        {
            goto stopped;
        }

        s0 = s1;
        e0 = k + 1;
    }

    /* reads last: they see the whole batch */
    if (!chat_batch_reads(ctx, &b)) {
        goto stopped;
    }

    if (!chat_redis_deliver(ctx->redis, &b.out, &b.arena, b.positions,
                            b.npositions))
    {
        goto stopped;
    }

    done = true;

stopped:

    chat_batch_free(&b);
    chat_members_release(ctx->members);

    return done;
}
