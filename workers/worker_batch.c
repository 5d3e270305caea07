/*
 * worker_batch.c: one batch of Kafka records, from bytes to delivered
 * answers: each record parsed by its op's row (worker_ops.c), the rows'
 * store steps run in the batch's order, their answers and fan-outs put in
 * the outbox, and the outbox delivered with the batch's positions.
 *
 * The order keeps a conversation's records in record order. Membership
 * changes (create_group, add_members, remove_members) cut the batch into
 * segments: the sends, receipts and typing before a change are stored and
 * answered before it, those after it see it (a send after a removal is
 * refused). Within a segment, sends go first, then receipts (which may
 * name their seqs), then typing; reads come last, after every segment.
 * Within a stage, the items whose rows share a store function are stored
 * together (all sends in one transaction, all reads in one snapshot); then
 * each item is answered and fanned out, in record order. The pushes of a
 * batch's text messages to devices without a live session go to the push
 * topic after the delivery, and the batch is done when Kafka has them.
 * Work that no answer waits for (an uploaded image's thumbnail) runs
 * after all that, so that it never delays the batch's sends.
 *
 * A record that cannot be parsed is logged and skipped (answered with
 * bad_request when it says where to); it never stops the partition, and
 * one whose op has no row is never taken for another op. When the store
 * refuses a whole group of items for a reason that is not transient, the
 * group is stored again one by one if its row says so, so that only the
 * offending record fails (with internal) and the rest goes through. An
 * item the store recognises as stored by this very record before (a
 * predecessor died before committing the offset) is answered again only
 * if the predecessor's answers did not go out (the delivered marks).
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_answer.h"
#include "worker_batch.h"
#include "worker_ops.h"


/* the stages of a segment, in the order they run */
static const chat_stage_t  chat_batch_segment[] = {
    CHAT_STAGE_SEND,
    CHAT_STAGE_RECEIPT,
    CHAT_STAGE_TYPING,
};


typedef struct {
    chat_request_t     *requests;     /* every record parsed, answerable */
    size_t              nrequests;
    chat_item_t        *items;        /* those with a row, in record order */
    size_t              nitems;

    chat_position_t    *positions;    /* last offset per partition */
    size_t              npositions;

    chat_outbox_t       out;
    chat_arena_t        arena;
    chat_op_ctx_t       op;           /* what the rows' functions get */
} chat_batch_t;


static void
chat_batch_free(chat_batch_t *b)
{
    size_t  i;

    for (i = 0; i < b->nrequests; i++) {
        chat_request_free(&b->requests[i]);
    }

    chat_outbox_free(&b->out);
    chat_arena_free(&b->arena);
    free(b->requests);
    free(b->items);
    free(b->positions);
}


/* does the record wait for a later batch (at or after its partition's
 * cut)? */
static bool
chat_batch_left(const chat_batch_ctx_t *ctx, const chat_record_t *r)
{
    size_t  i;

    for (i = 0; i < ctx->ncuts; i++) {
        if (ctx->cuts[i].partition == r->partition) {
            return r->offset >= ctx->cuts[i].offset;
        }
    }

    return false;
}


static bool
chat_batch_has(const chat_record_t *r, const char *needle)
{
    size_t  i, n = strlen(needle);

    for (i = 0; i + n <= r->len; i++) {
        if (memcmp(r->payload + i, needle, n) == 0) {
            return true;
        }
    }

    return false;
}


/*
 * The batch's uploaded records go to the images' thread first. A send
 * that attaches an image the thread has yet to make (queued, or being
 * decoded) would hold the whole batch while it waits for it. Instead its partition
 * is cut there: what comes before goes through now, the send and what
 * follows it in its partition (their order kept) are left for a later
 * batch, by when the image is made; the other partitions are not held at
 * all. A send left that long (CHAT_BATCH_CUT_MAX_MS) is taken as it is
 * and waits, or makes the image itself. Only records that name an upload
 * are read for this, and only with an images' thread.
 */
static void
chat_batch_cut(chat_batch_ctx_t *ctx, const chat_record_t *records, size_t n)
{
    const chat_batch_cut_t  *c;
    json_t                 **docs, *o, *list, *id, *size;
    const char              *op, *image;
    size_t                   i, k;
    int64_t                  now;

    ctx->ncuts = 0;

    if (ctx->images == NULL) {
        return;
    }

    docs = chat_alloc(n * sizeof(json_t *));
    now = chat_now_ms();

    for (i = 0; i < n; i++) {
        docs[i] = NULL;

        if (records[i].payload
            && (chat_batch_has(&records[i], "\"attachments\"")
                || chat_batch_has(&records[i], "\"uploaded\"")))
        {
            docs[i] = json_loadb(records[i].payload, records[i].len, 0,
                                 NULL);
        }

        op = json_string_value(json_object_get(docs[i],
                                               NGX_CHAT_WIRE_F_OP));
        id = json_object_get(docs[i], NGX_CHAT_WIRE_F_ATTACHMENT_ID);
        size = json_object_get(docs[i], NGX_CHAT_WIRE_F_SIZE);

        /* the thread starts on it now, while the batch is stored */
        if (op && json_is_string(id) && json_is_integer(size)
            && strcmp(op, ngx_chat_wire_op_name(NGX_CHAT_WIRE_OP_UPLOADED))
               == 0)
        {
            (void) chat_images_queue(ctx->images, json_string_value(id),
                                     json_integer_value(size));
        }
    }

    for (i = 0; i < n; i++) {
        o = docs[i];
        op = json_string_value(json_object_get(o, NGX_CHAT_WIRE_F_OP));
        list = json_object_get(o, NGX_CHAT_WIRE_F_ATTACHMENTS);

        if (op == NULL || strcmp(op, ngx_chat_wire_op_name(
                                         NGX_CHAT_WIRE_OP_SEND)) != 0
            || !json_is_array(list))
        {
            continue;
        }

        image = NULL;

        json_array_foreach(list, k, id) {
            if (json_is_string(id)
                && chat_images_pending(ctx->images, json_string_value(id)))
            {
                image = json_string_value(id);
            }
        }

        if (image == NULL || chat_batch_left(ctx, &records[i])) {
            continue;
        }

        /* cut there before: since then, not since now */
        c = NULL;

        for (k = 0; k < ctx->nwaiting; k++) {
            if (ctx->waiting[k].partition == records[i].partition
                && ctx->waiting[k].offset == records[i].offset)
            {
                c = &ctx->waiting[k];
            }
        }

        if (c && now - c->since >= CHAT_BATCH_CUT_MAX_MS) {
            log_warn("partition %d offset %" PRId64 ": a send waited %lld ms"
                     " for its image: taken as it is", records[i].partition,
                     records[i].offset, (long long) (now - c->since));
            continue;
        }

        for (k = 0; k < ctx->ncuts; k++) {
            if (ctx->cuts[k].partition == records[i].partition) {
                break;
            }
        }

        if (k == ctx->ncuts) {
            if (ctx->ncuts == CHAT_BATCH_CUTS_MAX) {
                continue;
            }

            ctx->ncuts++;

        } else if (ctx->cuts[k].offset <= records[i].offset) {
            continue;
        }

        ctx->cuts[k].partition = records[i].partition;
        ctx->cuts[k].offset = records[i].offset;
        ctx->cuts[k].since = c ? c->since : now;
        ctx->cuts[k].paused = false;
        snprintf(ctx->cuts[k].id, sizeof(ctx->cuts[k].id), "%s", image);
    }

    for (i = 0; i < n; i++) {
        json_decref(docs[i]);
    }

    free(docs);
}


/* every record counts, answered or skipped, but those left for a later
 * batch: the positions say how far the batch got in each partition */
static void
chat_batch_positions(chat_batch_ctx_t *ctx, chat_batch_t *b,
    const chat_record_t *records, size_t n)
{
    size_t  i, k;

    for (i = 0; i < n; i++) {
        if (chat_batch_left(ctx, &records[i])) {
            continue;
        }

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


/* was the record answered before (by a predecessor that died)? */
static bool
chat_batch_said(chat_batch_ctx_t *ctx, const chat_request_t *req)
{
    chat_chain_part_t  *part;

    part = chat_chain_find(ctx->chain, req->partition);

    return part && part->mark_known && req->offset <= part->mark;
}


static void
chat_batch_parse(chat_batch_ctx_t *ctx, chat_batch_t *b,
    const chat_record_t *records, size_t n)
{
    chat_request_t   *req;
    chat_item_t      *item;
    chat_parse_rc_t   rc;
    size_t            i;
    char              why[160];

    for (i = 0; i < n; i++) {
        req = &b->requests[b->nrequests];
        req->partition = records[i].partition;
        req->offset = records[i].offset;

        rc = chat_ops_parse(req, records[i].payload, records[i].len,
                            why, sizeof(why));

        /* left for a later batch, but an uploaded record: it answers
         * nothing, and its image is wanted by then */
        if (chat_batch_left(ctx, &records[i])
            && !(rc == CHAT_PARSE_OK && req->op == NGX_CHAT_WIRE_OP_UPLOADED))
        {
            chat_request_free(req);
            continue;
        }

        chat_metrics_record(b->op.metrics, (int) req->op);

        switch (rc) {

        case CHAT_PARSE_OK:
            item = &b->items[b->nitems++];
            memset(item, 0, sizeof(*item));
            item->req = req;
            item->op = chat_ops_find(req->op);
            item->answered = chat_batch_said(ctx, req);
            b->nrequests++;
            continue;

        case CHAT_PARSE_BAD:
        case CHAT_PARSE_DROP:
            break;
        }

        /* an op this worker does not know is no slip of a producer but a
         * worker that does not understand what nginx sends: an error */
        if (chat_ops_unknown(req)) {
            log_error("partition %d offset %" PRId64 ": skipped: %s",
                      records[i].partition, records[i].offset, why);
        } else {
            log_warn("partition %d offset %" PRId64 ": skipped: %s",
                     records[i].partition, records[i].offset, why);
        }

        if (rc == CHAT_PARSE_DROP) {
            chat_request_free(req);
            continue;
        }

        if (!chat_batch_said(ctx, req)) {
            chat_outbox_from(&b->out, req->partition);
            chat_answer_error(&b->out, req, "bad_request", why);
        }

        b->nrequests++;     /* its strings are in the outbox */
    }
}


static void
chat_batch_refused(chat_item_t *item)
{
    const chat_request_t  *req = item->req;

    log_error("partition %d offset %" PRId64 ": %s%s%s: the store refused"
              " it", req->partition, req->offset,
              ngx_chat_wire_op_name(req->op), req->conv ? " in " : "",
              req->conv ? req->conv : "");

    item->failed = true;
}


/* items sharing a store function; false: stopped waiting for the store */
static bool
chat_batch_store(chat_batch_t *b, chat_item_t **items, size_t n)
{
    const chat_op_t  *op = items[0]->op;
    chat_store_rc_t   rc;
    size_t            i;

    rc = op->store(&b->op, items, n);

    if (rc == CHAT_STORE_OK) {
        return true;
    }

    if (rc == CHAT_STORE_STOPPED) {
        return false;
    }

    if (n > 1 && op->split) {
        log_warn("the store refused %zu records together: storing them one"
                 " by one", n);

        for (i = 0; i < n; i++) {
            rc = op->store(&b->op, &items[i], 1);

            if (rc == CHAT_STORE_STOPPED) {
                return false;
            }

            if (rc == CHAT_STORE_REFUSED) {
                chat_batch_refused(items[i]);
            }
        }

        return true;
    }

    for (i = 0; i < n; i++) {
        chat_batch_refused(items[i]);
    }

    return true;
}


/*
 * Replays: a worker that died after its delivery but before its offset
 * commit leaves records that its successor consumes again. The delivered
 * mark of each partition (read from Redis when the partition is taken,
 * before any of its records is processed, in the same script that writes
 * this worker's epoch; raised with every delivery) says how far the
 * answers went out: a record at or below it is stored again
 * (idempotently: the store recognises it) but says nothing, whatever its
 * op. false: stopped waiting for Redis.
 */
static bool
chat_batch_marks(chat_batch_ctx_t *ctx, chat_batch_t *b)
{
    chat_chain_part_t  *part;
    int32_t            *parts;
    int64_t            *marks;
    size_t              i, n = 0;

    parts = chat_arena_alloc(&b->arena, (b->npositions + 1) * sizeof(int32_t));
    marks = chat_arena_alloc(&b->arena, (b->npositions + 1) * sizeof(int64_t));

    for (i = 0; i < b->npositions; i++) {
        if (!chat_chain_part(ctx->chain,
                             b->positions[i].partition)->mark_known)
        {
            parts[n++] = b->positions[i].partition;
        }
    }

    if (n == 0) {
        return true;
    }

    if (!chat_redis_delivered(ctx->redis, parts, n, marks)) {
        return false;
    }

    for (i = 0; i < n; i++) {
        part = chat_chain_part(ctx->chain, parts[i]);
        part->mark = marks[i] >= 0 ? marks[i] : -1;
        part->mark_known = true;

        if (marks[i] >= 0) {
            log_info("partition %d: answers went out up to offset %lld",
                     (int) parts[i], (long long) marks[i]);
        }
    }

    return true;
}


/*
 * One stage's items, in record order: stored (the items of one store
 * function together), then each answered and fanned out unless it was
 * answered before. false: stopped while waiting for PostgreSQL or Redis.
 */
static bool
chat_batch_run(chat_batch_t *b, chat_item_t **items, size_t n)
{
    chat_item_t     **group;
    chat_op_store_pt  store;
    bool             *stored;
    size_t            i, j, ngroup;

    if (n == 0) {
        return true;
    }

    group = chat_arena_alloc(&b->arena, n * sizeof(chat_item_t *));
    stored = chat_arena_alloc(&b->arena, n * sizeof(bool));
    memset(stored, 0, n * sizeof(bool));

    for (i = 0; i < n; i++) {
        if (stored[i]) {
            continue;
        }

        store = items[i]->op->store;

        for (j = i, ngroup = 0; j < n; j++) {
            if (!stored[j] && items[j]->op->store == store) {
                stored[j] = true;
                group[ngroup++] = items[j];
            }
        }

        if (store != NULL && !chat_batch_store(b, group, ngroup)) {
            return false;
        }
    }

    for (i = 0; i < n; i++) {
        chat_item_t  *item = items[i];

        chat_outbox_from(&b->out, item->req->partition);

        /* a replay pushes again even if its answers went out: its push
         * records may not have (chat_pusher drops the second of one) */
        if (item->op->push && !item->failed) {
            item->op->push(&b->op, item);
        }

        if (item->answered) {
            continue;
        }

        if (item->failed) {
            chat_metrics_refused(b->op.metrics);
            chat_answer_error(&b->out, item->req, "internal",
                              item->op->refused);
            continue;
        }

        item->op->answer(&b->op, item);

        if (item->op->fanout) {
            item->op->fanout(&b->op, item);
        }
    }

    return true;
}


/* the items of [from, to) that run in stage; false on stop */
static bool
chat_batch_stage(chat_batch_t *b, chat_stage_t stage,
    size_t from, size_t to)
{
    chat_item_t  **items;
    size_t         i, n = 0;

    if (from == to) {
        return true;
    }

    items = chat_arena_alloc(&b->arena, (to - from) * sizeof(chat_item_t *));

    for (i = from; i < to; i++) {
        if (b->items[i].op->stage == stage) {
            items[n++] = &b->items[i];
        }
    }

    return chat_batch_run(b, items, n);
}


/* the pushes to devices the delivery found without a live session, but
 * those of partitions found fenced (their next owner's), acknowledged by
 * Kafka before the batch may be committed; false: the wait was given up */
static bool
chat_batch_pushes(chat_batch_ctx_t *ctx, chat_batch_t *b)
{
    const chat_outbox_push_t  **todo;
    const chat_outbox_push_t   *p;
    chat_chain_part_t          *part;
    size_t                      i, n = 0;

    if (b->out.npushes == 0) {
        return true;
    }

    todo = chat_arena_alloc(&b->arena,
                            b->out.npushes * sizeof(chat_outbox_push_t *));

    for (i = 0; i < b->out.npushes; i++) {
        p = &b->out.pushes[i];
        part = chat_chain_find(ctx->chain, p->partition);

        if (!p->online && !(part && part->fenced)) {
            todo[n++] = p;
        }
    }

    return chat_pushes_produce(ctx->pushes, todo, n);
}


bool
chat_batch_process(chat_batch_ctx_t *ctx, const chat_record_t *records,
    size_t n)
{
    chat_batch_t   b;
    chat_item_t   *change;
    size_t         k, s, start;
    int64_t        published;
    bool           done = false;

    memset(&b, 0, sizeof(b));
    b.requests = chat_alloc(n * sizeof(chat_request_t));
    b.items = chat_alloc(n * sizeof(chat_item_t));
    b.positions = chat_alloc(n * sizeof(chat_position_t));

    b.op.store = ctx->store;
    b.op.members = ctx->members;
    b.op.max_group_members = ctx->max_group_members;
    b.op.receipt_fanout_max = ctx->receipt_fanout_max;
    b.op.push_endpoints = ctx->push_endpoints;
    b.op.media = ctx->media;
    b.op.images = ctx->images;
    b.op.out = &b.out;
    b.op.stream = ctx->stream;
    b.op.arena = &b.arena;
    b.op.control = ctx->control;
    b.op.metrics = ctx->metrics;
    b.op.index = ctx->index;

    chat_outbox_from(&b.out, -1);
    chat_batch_cut(ctx, records, n);
    chat_batch_positions(ctx, &b, records, n);

    if (!chat_batch_marks(ctx, &b)) {
        goto stopped;
    }

    chat_batch_parse(ctx, &b, records, n);

    /* segments end at each membership change, which runs after them */
    start = 0;

    for (k = 0; k <= b.nitems; k++) {
        if (k < b.nitems && b.items[k].op->stage != CHAT_STAGE_MEMBERS) {
            continue;
        }

        for (s = 0; s < sizeof(chat_batch_segment)
                        / sizeof(chat_batch_segment[0]); s++)
        {
            if (!chat_batch_stage(&b, chat_batch_segment[s], start, k)) {
                goto stopped;
            }
        }

        if (k < b.nitems) {
            change = &b.items[k];

            if (!chat_batch_run(&b, &change, 1)) {
                goto stopped;
            }
        }

        start = k + 1;
    }

    /* reads last: they see the whole batch */
    if (!chat_batch_stage(&b, CHAT_STAGE_READ, 0, b.nitems)) {
        goto stopped;
    }

    published = chat_metrics_now_us();

    if (!chat_redis_deliver(ctx->redis, &b.out, &b.arena, b.positions,
                            b.npositions))
    {
        goto stopped;
    }

    chat_metrics_observe(ctx->metrics, CHAT_HIST_PUBLISH,
                         chat_metrics_now_us() - published);

    if (!chat_batch_pushes(ctx, &b)) {
        goto stopped;
    }

    /* what nobody in the batch waits for, once their answers are out;
     * before the commit, so that a worker dying in it leaves it to the
     * next one */
    if (!chat_batch_stage(&b, CHAT_STAGE_AFTER, 0, b.nitems)) {
        goto stopped;
    }

    done = true;

stopped:

    chat_batch_free(&b);
    chat_members_release(ctx->members);

    return done;
}
