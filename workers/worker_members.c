/*
 * worker_members.c: the membership cache, conversation -> members (current
 * and past, with roles and the seqs of their joining and removal).
 *
 * Sends, receipts and typing need a group's members on every record; the
 * cache spares PostgreSQL that question. It stays right because a
 * conversation's membership only changes through records keyed by that
 * conversation, which this worker alone consumes while it holds the
 * partition, and the code path that changes membership also sets the
 * entry. When partitions move (a rebalance) another worker may change
 * them, so the whole cache is dropped (chat_worker.c). Entries are loaded
 * on first use (worker_store_members.c, chat_store_load_members).
 *
 * The outbox of a batch borrows user ids from the entries, so an entry
 * replaced during a batch keeps its old list until chat_members_release,
 * after delivery. Pure code: the unit tests include this file.
 */

#include <stdlib.h>
#include <string.h>

#include "worker_members.h"


#define CHAT_MEMBERS_CACHE_MAX  100000    /* conversations; then start over */


static void
chat_members_retire(chat_members_cache_t *c, void *p)
{
    if (p == NULL) {
        return;
    }

    if (c->nretired == c->retired_cap) {
        c->retired_cap = c->retired_cap ? c->retired_cap * 2 : 64;
        c->retired = chat_realloc(c->retired, c->retired_cap * sizeof(void *));
    }

    c->retired[c->nretired++] = p;
}


/* one allocation per list: the members, then their user ids */
static chat_member_t *
chat_members_copy(const chat_member_t *members, size_t n)
{
    chat_member_t  *copy;
    size_t          i, size, len;
    char           *p;

    size = n * sizeof(chat_member_t);
    for (i = 0; i < n; i++) {
        size += strlen(members[i].user) + 1;
    }

    copy = chat_alloc(size ? size : 1);
    p = (char *) (copy + n);

    for (i = 0; i < n; i++) {
        copy[i] = members[i];
        len = strlen(members[i].user) + 1;
        memcpy(p, members[i].user, len);
        copy[i].user = p;
        p += len;
    }

    return copy;
}


chat_members_t *
chat_members_find(chat_members_cache_t *c, const char *conv)
{
    size_t  i;

    return chat_map_get(&c->index, conv, &i) ? c->groups[i] : NULL;
}


chat_members_t *
chat_members_set(chat_members_cache_t *c, const char *conv,
    const chat_member_t *members, size_t n)
{
    chat_members_t  *g;

    g = chat_members_find(c, conv);

    if (g == NULL) {
        if (c->n >= CHAT_MEMBERS_CACHE_MAX) {
            /* only a worker with that many groups gets here: starting over
             * costs one load per conversation */
            chat_members_clear(c);
        }

        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 256;
            c->groups = chat_realloc(c->groups,
                                     c->cap * sizeof(chat_members_t *));
        }

        g = chat_alloc(sizeof(chat_members_t));
        g->conv = chat_strdup(conv);
        g->members = NULL;
        g->n = 0;
        c->groups[c->n] = g;
        chat_map_put(&c->index, g->conv, c->n);
        c->n++;
    }

    chat_members_retire(c, g->members);
    g->members = chat_members_copy(members, n);
    g->n = n;

    return g;
}


void
chat_members_release(chat_members_cache_t *c)
{
    size_t  i;

    for (i = 0; i < c->nretired; i++) {
        free(c->retired[i]);
    }

    c->nretired = 0;
}


void
chat_members_clear(chat_members_cache_t *c)
{
    size_t  i;

    for (i = 0; i < c->n; i++) {
        chat_members_retire(c, c->groups[i]->members);
        chat_members_retire(c, c->groups[i]->conv);
        free(c->groups[i]);
    }

    free(c->groups);
    chat_map_free(&c->index);
    c->groups = NULL;
    c->n = 0;
    c->cap = 0;
}


const chat_member_t *
chat_members_get(const chat_members_t *g, const char *user)
{
    size_t  i;

    /* a linear scan: at most NGX_CHAT_WIRE_GROUP_MEMBERS_MAX current
     * members, and the callers ask once per record */
    for (i = 0; i < g->n; i++) {
        if (strcmp(g->members[i].user, user) == 0) {
            return &g->members[i];
        }
    }

    return NULL;
}


bool
chat_members_has(const chat_members_t *g, const char *user)
{
    const chat_member_t  *m = chat_members_get(g, user);

    return m != NULL && m->removed_seq < 0;
}


size_t
chat_members_count(const chat_members_t *g)
{
    size_t  i, n = 0;

    for (i = 0; i < g->n; i++) {
        n += g->members[i].removed_seq < 0;
    }

    return n;
}
