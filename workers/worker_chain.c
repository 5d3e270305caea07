/*
 * worker_chain.c: what this worker published, per partition and per
 * (partition, node) (worker_chain.h).
 *
 * A partition's state lives from its assignment to its revocation. Taking
 * it takes a new epoch (microseconds now, and never less than the last one
 * taken here), so that a worker that lost the partition without noticing
 * (frozen past its session timeout) is fenced by the epoch its successor
 * wrote. Its heads are forgotten then: whoever held the partition
 * meanwhile moved them on, and Redis has theirs.
 *
 * The heads are few (partitions held times live nodes) and change often,
 * so they are an array indexed by a map; removing some (a revocation, an
 * expiry: rare) rebuilds the map. Pure code: the unit tests include it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_chain.h"


chat_chain_part_t *
chat_chain_find(const chat_chain_t *c, int32_t partition)
{
    size_t  i;

    for (i = 0; i < c->nparts; i++) {
        if (c->parts[i].partition == partition) {
            return &c->parts[i];
        }
    }

    return NULL;
}


/* drops the heads for which gone() is true, and rebuilds the index */
static void
chat_chain_drop_heads(chat_chain_t *c, int32_t partition, int64_t before)
{
    size_t  i, kept = 0;

    for (i = 0; i < c->nheads; i++) {
        chat_chain_head_t  *h = &c->heads[i];

        if ((partition >= 0 && h->partition == partition)
            || (before >= 0 && h->touched < before))
        {
            free(h->key);
            continue;
        }

        c->heads[kept++] = *h;
    }

    if (kept == c->nheads) {
        return;
    }

    c->nheads = kept;
    chat_map_free(&c->index);

    for (i = 0; i < c->nheads; i++) {
        chat_map_put(&c->index, c->heads[i].key, i);
    }
}


void
chat_chain_assign(chat_chain_t *c, int32_t partition, int64_t now_us)
{
    chat_chain_part_t  *p;

    p = chat_chain_find(c, partition);

    if (p == NULL) {
        if (c->nparts == c->parts_cap) {
            c->parts_cap = c->parts_cap ? 2 * c->parts_cap : 16;
            c->parts = chat_realloc(c->parts,
                                    c->parts_cap * sizeof(chat_chain_part_t));
        }

        p = &c->parts[c->nparts++];
    }

    /* two assignments within a microsecond still get two epochs */
    c->last_epoch = now_us > c->last_epoch ? now_us : c->last_epoch + 1;

    p->partition = partition;
    p->epoch = c->last_epoch;
    p->mark = -1;
    p->mark_known = false;
    p->fenced = false;

    chat_chain_drop_heads(c, partition, -1);
}


void
chat_chain_revoke(chat_chain_t *c, int32_t partition)
{
    chat_chain_part_t  *p;

    p = chat_chain_find(c, partition);

    if (p) {
        *p = c->parts[--c->nparts];
    }

    chat_chain_drop_heads(c, partition, -1);
}


chat_chain_part_t *
chat_chain_part(chat_chain_t *c, int32_t partition)
{
    chat_chain_part_t  *p;

    p = chat_chain_find(c, partition);

    if (p == NULL) {
        chat_chain_assign(c, partition, chat_now_ms() * 1000);
        p = chat_chain_find(c, partition);
    }

    return p;
}


static const char *
chat_chain_key(char *buf, size_t size, int32_t partition, const char *node)
{
    snprintf(buf, size, "%d\n%s", (int) partition, node);

    return buf;
}


chat_chain_head_t *
chat_chain_entry(const chat_chain_t *c, int32_t partition, const char *node)
{
    size_t  i;
    char    key[NGX_CHAT_WIRE_KEY_MAX + 16];

    if (!chat_map_get(&c->index,
                      chat_chain_key(key, sizeof(key), partition, node), &i))
    {
        return NULL;
    }

    return &c->heads[i];
}


bool
chat_chain_head(const chat_chain_t *c, int32_t partition, const char *node,
    int64_t *head)
{
    chat_chain_head_t  *h;

    h = chat_chain_entry(c, partition, node);

    if (h == NULL) {
        return false;
    }

    *head = h->head;

    return true;
}


void
chat_chain_set_head(chat_chain_t *c, int32_t partition, const char *node,
    int64_t head, int64_t now_ms)
{
    chat_chain_head_t  *h;
    size_t              i;
    char                key[NGX_CHAT_WIRE_KEY_MAX + 16];

    chat_chain_key(key, sizeof(key), partition, node);

    if (!chat_map_get(&c->index, key, &i)) {
        if (c->nheads == c->heads_cap) {
            c->heads_cap = c->heads_cap ? 2 * c->heads_cap : 64;
            c->heads = chat_realloc(c->heads,
                                    c->heads_cap * sizeof(chat_chain_head_t));
        }

        i = c->nheads++;
        h = &c->heads[i];
        h->partition = partition;
        h->key = chat_strdup(key);
        h->node = strchr(h->key, '\n') + 1;
        h->expires = 0;
        chat_map_put(&c->index, h->key, i);
    }

    c->heads[i].head = head;
    c->heads[i].touched = now_ms;
}


void
chat_chain_expire(chat_chain_t *c, int64_t before)
{
    chat_chain_drop_heads(c, -1, before);
}


void
chat_chain_free(chat_chain_t *c)
{
    size_t  i;

    for (i = 0; i < c->nheads; i++) {
        free(c->heads[i].key);
    }

    free(c->heads);
    free(c->parts);
    chat_map_free(&c->index);
    memset(c, 0, sizeof(*c));
}
