/*
 * worker_store_members.c: the loads of the membership cache
 * (worker_members.c): the members, current and past, of the group
 * conversations a batch names that the cache does not hold yet, in one
 * statement. A conversation without rows is cached as empty: no such
 * group, and nobody may use it until one is made (which sets the entry).
 * And chat_store_memberships: every current membership (or every block),
 * page by page in (user, conversation) order, from which the sets in
 * Redis that presence asks are written again (worker_contacts.c).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_members_sql[] = {

    { "members_load",
      "SELECT conversation_id, user_id, role = 'admin', joined_seq,"
      " COALESCE(removed_seq, -1) FROM members"
      " WHERE conversation_id = ANY($1::text[])"
      " ORDER BY conversation_id" },

    /* members_by_user serves the order and the start */
    { "memberships_page",
      "SELECT user_id, conversation_id FROM members"
      " WHERE removed_seq IS NULL AND (user_id, conversation_id) > ($1, $2)"
      " ORDER BY user_id, conversation_id LIMIT $3" },

    /* and the primary key here */
    { "blocks_page",
      "SELECT user_id, blocked_id FROM blocks"
      " WHERE (user_id, blocked_id) > ($1, $2)"
      " ORDER BY user_id, blocked_id LIMIT $3" },
};

const chat_pg_statements_t  chat_store_members_statements = {
    chat_members_sql, sizeof(chat_members_sql) / sizeof(chat_members_sql[0])
};


typedef struct {
    chat_members_cache_t  *cache;
    const char *const     *convs;
    size_t                 n;
} chat_load_args_t;


static chat_pg_rc_t
chat_load_attempt(chat_store_t *st, void *data)
{
    chat_load_args_t  *a = data;
    chat_buf_t        *convs = &st->arrays[0];
    const char        *params[1];
    chat_member_t     *list;
    chat_map_t         asked = { 0 };
    PGresult          *res = NULL;
    chat_pg_rc_t       rc;
    size_t             i, nasked = 0, n;
    int                row, nrows, start;

    chat_pg_array_begin(convs);

    for (i = 0; i < a->n; i++) {
        if (!chat_is_dm_id(a->convs[i])
            && chat_members_find(a->cache, a->convs[i]) == NULL
            && chat_map_put(&asked, a->convs[i], nasked) == nasked)
        {
            chat_pg_array_text(convs, a->convs[i]);
            nasked++;
        }
    }

    if (nasked == 0) {
        chat_map_free(&asked);
        return CHAT_PG_OK;
    }

    params[0] = chat_pg_array_end(convs);

    rc = chat_pg_run(st, "members_load", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        chat_map_free(&asked);
        return rc;
    }

    nrows = PQntuples(res);
    list = chat_alloc((nrows + 1) * sizeof(chat_member_t));

    /* rows come grouped by conversation: one entry per run */
    for (start = 0; start < nrows; start = row) {
        const char  *conv = PQgetvalue(res, start, 0);

        for (row = start, n = 0;
             row < nrows && strcmp(PQgetvalue(res, row, 0), conv) == 0;
             row++, n++)
        {
            list[n].user = PQgetvalue(res, row, 1);
            list[n].admin = PQgetvalue(res, row, 2)[0] == 't';
            list[n].joined_seq = chat_pg_int(res, row, 3);
            list[n].removed_seq = chat_pg_int(res, row, 4);
        }

        chat_members_set(a->cache, conv, list, n);
    }

    /* no rows: no such group, and nobody may use it until one is made
     * (which sets the entry) */
    for (i = 0; i < a->n; i++) {
        if (chat_map_get(&asked, a->convs[i], &n)
            && chat_members_find(a->cache, a->convs[i]) == NULL)
        {
            chat_members_set(a->cache, a->convs[i], NULL, 0);
        }
    }

    free(list);
    PQclear(res);
    chat_map_free(&asked);

    return CHAT_PG_OK;
}


chat_store_rc_t
chat_store_load_members(chat_store_t *st, chat_members_cache_t *c,
    const char *const *convs, size_t n)
{
    chat_load_args_t  args = { c, convs, n };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_load_attempt, &args);
}


typedef struct {
    const char        *stmt;
    const char        *after_user;
    const char        *after_conv;
    size_t             limit;
    chat_membership_t *rows;
    size_t            *n;
    chat_arena_t      *arena;
} chat_memberships_args_t;


static chat_pg_rc_t
chat_memberships_attempt(chat_store_t *st, void *data)
{
    chat_memberships_args_t  *a = data;
    const char               *params[3];
    char                      limit[24];
    PGresult                 *res = NULL;
    chat_pg_rc_t              rc;
    int                       row, nrows;

    snprintf(limit, sizeof(limit), "%zu", a->limit);
    params[0] = a->after_user;
    params[1] = a->after_conv;
    params[2] = limit;

    rc = chat_pg_run(st, a->stmt, 3, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);

    for (row = 0; row < nrows; row++) {
        a->rows[row].user = chat_arena_strdup(a->arena,
                                              PQgetvalue(res, row, 0));
        a->rows[row].conv = chat_arena_strdup(a->arena,
                                              PQgetvalue(res, row, 1));
    }

    *a->n = (size_t) nrows;
    PQclear(res);

    return CHAT_PG_OK;
}


chat_store_rc_t
chat_store_memberships(chat_store_t *st, bool blocks, const char *after_user,
    const char *after_conv, chat_membership_t *rows, size_t limit,
    size_t *n, chat_arena_t *arena)
{
    chat_memberships_args_t  args = { blocks ? "blocks_page"
                                             : "memberships_page",
                                      after_user, after_conv, limit, rows, n,
                                      arena };

    *n = 0;

    return chat_pg_retry(st, chat_memberships_attempt, &args);
}
