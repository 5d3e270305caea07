/*
 * worker_payload.c: a batch's outbox as one payload per nginx node, in the
 * record format of ngx_chat_wire.h.
 *
 * Frames go to one session (the requester's) or to every session of a
 * user but one (a message goes to all devices of the members but not the
 * sending one); Redis tells the users' sessions (worker_redis.c), and this
 * file groups the frames per node: a frame for several sessions of one
 * node travels once with all their sids, an ack as an A record with the
 * send's time.
 *
 * What a node gets of one partition's records travels in one P section,
 * chained to the one before it by the head worker_chain.c keeps for the
 * (partition, node), so that the node sees when one went missing; a repair
 * answers in an R record to its node alone, unchained, and goes out even
 * empty (the node waits for it). Within a block the records keep the
 * outbox's order, which keeps a conversation's messages in seq order.
 * Payloads beyond CHAT_PAYLOAD_SPLIT are cut between blocks.
 *
 * Building happens in two steps, because a section's header needs the head
 * of its chain, which Redis may have to tell first: chat_payload_build
 * sorts the records into blocks, chat_payload_finish heads and joins them
 * (again, without a fenced partition, if the publish found one). Pure
 * code: the unit tests include this file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_payload.h"


void
chat_payload_users(chat_payload_users_t *u, const chat_outbox_t *out)
{
    const char  *user;
    size_t       i;

    memset(u, 0, sizeof(*u));
    u->users = chat_alloc((out->ndeliveries + out->npushes + 1)
                          * sizeof(const char *));

    for (i = 0; i < out->ndeliveries; i++) {
        user = out->deliveries[i].user;

        if (user && chat_map_put(&u->index, user, u->n) == u->n) {
            u->users[u->n++] = user;
        }
    }

    /* the recipients of pushes are the messages' too, but a replay whose
     * answers went out delivers nothing and still pushes */
    for (i = 0; i < out->npushes; i++) {
        user = out->pushes[i].user;

        if (chat_map_put(&u->index, user, u->n) == u->n) {
            u->users[u->n++] = user;
        }
    }

    u->found = chat_alloc((u->n ? u->n : 1) * sizeof(chat_user_sessions_t));
    memset(u->found, 0, (u->n ? u->n : 1) * sizeof(chat_user_sessions_t));
}


void
chat_payload_online(const chat_payload_users_t *u, chat_outbox_t *out)
{
    const chat_user_sessions_t  *f;
    chat_outbox_push_t          *p;
    size_t                       i, j, k;

    for (i = 0; i < out->npushes; i++) {
        p = &out->pushes[i];
        p->online = false;

        if (!chat_map_get(&u->index, p->user, &k)) {
            continue;
        }

        f = &u->found[k];

        for (j = 0; j < f->n; j++) {
            if (f->sessions[j].device
                && strcmp(f->sessions[j].device, p->device) == 0)
            {
                p->online = true;
                break;
            }
        }
    }
}


void
chat_payload_users_free(chat_payload_users_t *u)
{
    chat_map_free(&u->index);
    free(u->found);
    free(u->users);
    memset(u, 0, sizeof(*u));
}


static int
chat_payload_session_cmp(const void *a, const void *b)
{
    const chat_session_t  *x = a, *y = b;
    int                    rc = strcmp(x->node, y->node);

    return rc ? rc : strcmp(x->sid, y->sid);
}


static size_t
chat_payload_node(chat_payloads_t *p, const char *node)
{
    size_t  i;

    i = chat_map_put(&p->node_index, node, p->nnodes);

    if (i == p->nnodes) {
        p->nodes = chat_realloc(p->nodes,
                                (p->nnodes + 1) * sizeof(chat_payload_node_t));
        p->nodes[i].name = node;
        p->nnodes++;
    }

    return i;
}


/* the block of node for this partition or repair, made when missing */
static chat_payload_block_t *
chat_payload_block(chat_payloads_t *p, const char *node, int32_t partition,
    int32_t repair)
{
    chat_payload_block_t  *b;
    chat_buf_t             key = { 0 };
    int                    type;
    size_t                 i;

    type = repair >= 0 ? NGX_CHAT_WIRE_RECORD_REPAIR
           : partition >= 0 ? NGX_CHAT_WIRE_RECORD_SECTION : 0;

    /* the records of a batch come in runs of one block */
    if (p->last_block) {
        b = &p->blocks[p->last_block - 1];

        if (b->type == type && b->partition == partition
            && b->repair == repair
            && strcmp(p->nodes[b->node].name, node) == 0)
        {
            return b;
        }
    }

    chat_buf_printf(&key, "%c %d %d\n%s", type ? type : '-', (int) partition,
                    (int) repair, node);

    i = chat_map_put(&p->block_index, chat_buf_cstr(&key), p->nblocks);

    p->last_block = i + 1;

    if (i < p->nblocks) {
        chat_buf_free(&key);
        return &p->blocks[i];
    }

    p->blocks = chat_realloc(p->blocks, (p->nblocks + 1)
                                        * sizeof(chat_payload_block_t));
    b = &p->blocks[p->nblocks++];
    memset(b, 0, sizeof(*b));
    b->node = chat_payload_node(p, node);
    b->type = type;
    b->partition = partition;
    b->repair = repair;
    b->key = key.data;      /* the map borrows it: the buffer stays put */

    return b;
}


static void
chat_payload_ack(chat_buf_t *b, int64_t ms, const char *sid,
    const char *bytes, size_t len)
{
    char  *end;

    chat_buf_reserve(b, NGX_CHAT_WIRE_ACK_HEADER_MAX + len);
    end = ngx_chat_wire_ack_header(b->data + b->len, ms, sid, len);
    b->len = end - b->data;
    chat_buf_add(b, bytes, len);
}


/* do deliveries i and j belong to one group (one frame, one source)? */
static bool
chat_payload_same(const chat_delivery_t *a, const chat_delivery_t *b)
{
    return a->frame == b->frame && a->partition == b->partition
           && a->repair == b->repair && a->ack_ms < 0 && b->ack_ms < 0;
}


/*
 * Turns the deliveries into blocks per node. Consecutive deliveries of one
 * frame (a message to every member) are gathered, so each node gets the
 * frame once with all its sessions; the order of frames per block is the
 * order of the outbox.
 */
void
chat_payload_build(chat_payloads_t *p, const chat_outbox_t *out,
    const chat_payload_users_t *users)
{
    const chat_user_sessions_t  *found = users->found;
    const chat_delivery_t       *d, *first_d;
    const chat_frame_t          *f;
    const char                  *only, **sids = NULL;
    chat_session_t              *targets = NULL;
    chat_payload_block_t        *blk;
    size_t                       ntargets, cap = 0, i, j, k, u, first;
    int32_t                      repair;

    p->out = out;

    for (i = 0; i < out->ndeliveries; i = j) {
        first_d = &out->deliveries[i];
        f = &out->frames[first_d->frame];
        repair = first_d->repair >= 0
                 && (size_t) first_d->repair < out->nrepairs
                 ? first_d->repair : -1;
        only = repair >= 0 ? out->repairs[repair].node : NULL;
        ntargets = 0;

        for (j = i;
             j < out->ndeliveries
             && (j == i || chat_payload_same(first_d, &out->deliveries[j]));
             j++)
        {
            d = &out->deliveries[j];

            if (d->user == NULL) {
                if (only && strcmp(d->node, only) != 0) {
                    continue;
                }

                if (ntargets == cap) {
                    cap = cap ? cap * 2 : 64;
                    targets = chat_realloc(targets, cap * sizeof(*targets));
                }

                targets[ntargets].node = d->node;
                targets[ntargets].sid = d->sid;
                targets[ntargets].device = NULL;
                ntargets++;
                continue;
            }

            if (!chat_map_get(&users->index, d->user, &u)) {
                continue;
            }

            for (k = 0; k < found[u].n; k++) {
                const chat_session_t  *s = &found[u].sessions[k];

                if (d->sid && strcmp(s->sid, d->sid) == 0
                    && strcmp(s->node, d->node) == 0)
                {
                    continue;   /* the sending session has its ack */
                }

                if (d->skip_dev && s->device
                    && strcmp(s->device, d->skip_dev) == 0)
                {
                    continue;   /* the sending device, in a repair */
                }

                if (only && strcmp(s->node, only) != 0) {
                    continue;   /* a repair is for its node only */
                }

                if (ntargets == cap) {
                    cap = cap ? cap * 2 : 64;
                    targets = chat_realloc(targets, cap * sizeof(*targets));
                }

                targets[ntargets++] = *s;
            }
        }

        if (ntargets == 0) {
            continue;
        }

        if (first_d->ack_ms >= 0) {
            /* one session: an ack is the answer to its send */
            blk = chat_payload_block(p, targets[0].node, first_d->partition,
                                     repair);
            chat_payload_ack(&blk->body, first_d->ack_ms, targets[0].sid,
                             f->bytes, f->len);
            continue;
        }

        qsort(targets, ntargets, sizeof(chat_session_t),
              chat_payload_session_cmp);
        sids = chat_realloc(sids, ntargets * sizeof(const char *));

        for (first = 0; first < ntargets; first = k) {
            size_t  nsids = 0;

            for (k = first;
                 k < ntargets && strcmp(targets[k].node,
                                        targets[first].node) == 0;
                 k++)
            {
                /* the same session twice gets the frame once */
                if (nsids && strcmp(sids[nsids - 1], targets[k].sid) == 0) {
                    continue;
                }

                sids[nsids++] = targets[k].sid;
            }

            blk = chat_payload_block(p, targets[first].node,
                                     first_d->partition, repair);
            chat_payload_record_of(&blk->body, f->type, sids, nsids,
                                   f->bytes, f->len);
        }
    }

    /* the node waits for its repair, whatever it holds */
    for (i = 0; i < out->nrepairs; i++) {
        (void) chat_payload_block(p, out->repairs[i].node,
                                  out->repairs[i].partition, (int32_t) i);
    }

    free(targets);
    free(sids);
}


size_t
chat_payload_unknown(const chat_payloads_t *p, const chat_chain_t *c,
    int32_t *parts, const char **nodes)
{
    const chat_payload_block_t  *b;
    size_t                       i, n = 0;
    int64_t                      head;

    for (i = 0; i < p->nblocks; i++) {
        b = &p->blocks[i];

        if (b->type == NGX_CHAT_WIRE_RECORD_SECTION
            && !chat_chain_head(c, b->partition, p->nodes[b->node].name,
                                &head))
        {
            parts[n] = b->partition;
            nodes[n] = p->nodes[b->node].name;
            n++;
        }
    }

    return n;
}


static void
chat_payload_reset_chunks(chat_payloads_t *p)
{
    size_t  i;

    for (i = 0; i < p->nchunks; i++) {
        chat_buf_free(&p->chunks[i].buf);
    }

    free(p->chunks);
    free(p->heads);
    p->chunks = NULL;
    p->nchunks = 0;
    p->heads = NULL;
    p->nheads = 0;
}


static int64_t
chat_payload_last(const chat_position_t *done, size_t ndone,
    int32_t partition)
{
    size_t  i;

    for (i = 0; i < ndone; i++) {
        if (done[i].partition == partition) {
            return done[i].offset;
        }
    }

    return -1;
}


void
chat_payload_finish(chat_payloads_t *p, const chat_chain_t *c,
    const chat_position_t *done, size_t ndone)
{
    const chat_outbox_repair_t  *r;
    const chat_chain_part_t     *part;
    chat_payload_block_t        *b;
    chat_payload_chunk_t        *chunk;
    ngx_chat_wire_range_t        range;
    chat_buf_t                  *buf;
    size_t                       n, i, *open;
    char                        *end;

    chat_payload_reset_chunks(p);

    p->heads = chat_alloc((p->nblocks + 1) * sizeof(chat_payload_head_t));
    open = chat_alloc((p->nnodes + 1) * sizeof(size_t));

    for (n = 0; n < p->nnodes; n++) {
        open[n] = (size_t) -1;
    }

    for (i = 0; i < p->nblocks; i++) {
        b = &p->blocks[i];

        if (b->type != 0) {
            part = chat_chain_find(c, b->partition);

            if (part && part->fenced) {
                continue;       /* its successor answers these records */
            }
        }

        if (open[b->node] == (size_t) -1
            || p->chunks[open[b->node]].buf.len >= CHAT_PAYLOAD_SPLIT)
        {
            p->chunks = chat_realloc(p->chunks, (p->nchunks + 1)
                                                * sizeof(chat_payload_chunk_t));
            chunk = &p->chunks[p->nchunks];
            chunk->node = b->node;
            memset(&chunk->buf, 0, sizeof(chunk->buf));
            open[b->node] = p->nchunks++;
        }

        buf = &p->chunks[open[b->node]].buf;

        switch (b->type) {

        case NGX_CHAT_WIRE_RECORD_SECTION:
            range.partition = b->partition;
            if (!chat_chain_head(c, b->partition, p->nodes[b->node].name,
                                 &range.from))
            {
                range.from = -1;
            }

            range.to = chat_payload_last(done, ndone, b->partition);

            /* a chain only moves forward (the node drops the rest) */
            if (range.to < range.from) {
                range.to = range.from;
            }

            p->heads[p->nheads].partition = b->partition;
            p->heads[p->nheads].node = p->nodes[b->node].name;
            p->heads[p->nheads].head = range.to;
            p->heads[p->nheads].expire = true;
            p->nheads++;
            break;

        case NGX_CHAT_WIRE_RECORD_REPAIR:
            r = &p->out->repairs[b->repair];
            range.partition = r->partition;
            range.from = r->after;
            range.to = r->upto;
            break;

        default:
            if (b->body.len) {
                chat_buf_add(buf, b->body.data, b->body.len);
            }
            continue;
        }

        chat_buf_reserve(buf, NGX_CHAT_WIRE_RANGE_HEADER_MAX + b->body.len);
        end = ngx_chat_wire_range_header(buf->data + buf->len, b->type,
                                         &range, b->body.len);
        buf->len = end - buf->data;

        if (b->body.len) {      /* an empty repair has no buffer at all */
            chat_buf_add(buf, b->body.data, b->body.len);
        }
    }

    free(open);
}


void
chat_payload_free(chat_payloads_t *p)
{
    size_t  i;

    chat_payload_reset_chunks(p);

    for (i = 0; i < p->nblocks; i++) {
        chat_buf_free(&p->blocks[i].body);
        free(p->blocks[i].key);
    }

    free(p->blocks);
    free(p->nodes);
    chat_map_free(&p->node_index);
    chat_map_free(&p->block_index);
    memset(p, 0, sizeof(*p));
}


void
chat_payload_record(chat_buf_t *b, const char *const *sids, size_t nsids,
    const char *bytes, size_t len)
{
    chat_payload_record_of(b, NGX_CHAT_WIRE_RECORD_FRAME, sids, nsids, bytes,
                           len);
}


void
chat_payload_record_of(chat_buf_t *b, int type, const char *const *sids,
    size_t nsids, const char *bytes, size_t len)
{
    char  *end;

    chat_buf_reserve(b, ngx_chat_wire_record_header_size(nsids, len) + len);

    end = ngx_chat_wire_record_header(b->data + b->len, type, sids, nsids,
                                      len);
    b->len = end - b->data;

    chat_buf_add(b, bytes, len);
}
