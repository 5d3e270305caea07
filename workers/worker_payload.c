/*
 * worker_payload.c: a batch's outbox as one payload per nginx node, in the
 * record format of ngx_chat_wire.h.
 *
 * Frames go to one session (the requester's) or to every session of a
 * user except one (a message goes to all devices of the members but not
 * the sending one); Redis tells the users' sessions (worker_redis.c), and
 * this file groups the frames per node: a frame for several sessions of
 * one node travels once with all their sids. Payloads beyond
 * CHAT_PAYLOAD_SPLIT are cut between records. Pure code: the unit tests
 * include this file.
 */

#include <stdlib.h>
#include <string.h>

#include "worker_payload.h"


void
chat_payload_users(chat_payload_users_t *u, const chat_outbox_t *out)
{
    const char  *user;
    size_t       i;

    memset(u, 0, sizeof(*u));
    u->users = chat_alloc((out->ndeliveries + 1) * sizeof(const char *));

    for (i = 0; i < out->ndeliveries; i++) {
        user = out->deliveries[i].user;

        if (user && chat_map_put(&u->index, user, u->n) == u->n) {
            u->users[u->n++] = user;
        }
    }

    u->found = chat_alloc((u->n ? u->n : 1) * sizeof(chat_user_sessions_t));
    memset(u->found, 0, (u->n ? u->n : 1) * sizeof(chat_user_sessions_t));
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


static chat_buf_t *
chat_payload_for(chat_payloads_t *p, const char *node)
{
    size_t                 i;
    chat_payload_node_t   *nd;
    chat_payload_chunk_t  *c;

    i = chat_map_put(&p->node_index, node, p->nnodes);

    if (i == p->nnodes) {
        p->nodes = chat_realloc(p->nodes,
                                (p->nnodes + 1) * sizeof(chat_payload_node_t));
        p->nodes[i].name = node;
        p->nodes[i].has_open_chunk = false;
        p->nnodes++;
    }

    nd = &p->nodes[i];

    if (nd->has_open_chunk
        && p->chunks[nd->open_chunk].buf.len >= CHAT_PAYLOAD_SPLIT)
    {
        nd->has_open_chunk = false;
    }

    if (!nd->has_open_chunk) {
        p->chunks = chat_realloc(p->chunks, (p->nchunks + 1)
                                            * sizeof(chat_payload_chunk_t));
        c = &p->chunks[p->nchunks];
        c->node = i;
        memset(&c->buf, 0, sizeof(c->buf));
        nd->open_chunk = p->nchunks++;
        nd->has_open_chunk = true;
    }

    return &p->chunks[nd->open_chunk].buf;
}


/*
 * Turns the deliveries into per-node payloads. Consecutive deliveries of one
 * frame (a message to every member) are gathered, so each node gets the
 * frame once with all its sessions; the order of frames per node is the
 * order of the outbox, which keeps a conversation's messages in seq order.
 */
void
chat_payload_build(chat_payloads_t *p, const chat_outbox_t *out,
    const chat_payload_users_t *users)
{
    const chat_user_sessions_t  *found = users->found;
    chat_session_t   *targets = NULL;
    const char      **sids = NULL;
    size_t            ntargets, cap = 0, i, j, k, u, first;
    const chat_delivery_t  *d;
    const chat_frame_t     *f;

    for (i = 0; i < out->ndeliveries; i = j) {
        f = &out->frames[out->deliveries[i].frame];
        ntargets = 0;

        for (j = i;
             j < out->ndeliveries
             && out->deliveries[j].frame == out->deliveries[i].frame;
             j++)
        {
            d = &out->deliveries[j];

            if (d->user == NULL) {
                if (ntargets == cap) {
                    cap = cap ? cap * 2 : 64;
                    targets = chat_realloc(targets, cap * sizeof(*targets));
                }

                targets[ntargets].node = d->node;
                targets[ntargets].sid = d->sid;
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

            chat_payload_record_of(chat_payload_for(p, targets[first].node),
                                   f->type, sids, nsids, f->bytes, f->len);
        }
    }

    free(targets);
    free(sids);
}


void
chat_payload_free(chat_payloads_t *p)
{
    size_t  i;

    for (i = 0; i < p->nchunks; i++) {
        chat_buf_free(&p->chunks[i].buf);
    }

    free(p->chunks);
    free(p->nodes);
    chat_map_free(&p->node_index);
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
