/*
 * worker_store_blocks.c: the transaction of a block or an unblock: the
 * row written or removed, then the user's whole list read back for the
 * answer. Blocking twice or unblocking whom one does not block changes
 * nothing and answers the list all the same. And the pairs of users of
 * which one blocks the other, for what a block hides besides sends.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_blocks_sql[] = {

    { "block_add",
      "INSERT INTO blocks (user_id, blocked_id, created_at)"
      " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING" },

    { "block_remove",
      "DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2" },

    { "block_list",
      "SELECT blocked_id FROM blocks WHERE user_id = $1"
      " ORDER BY blocked_id" },

    /* the pairs, by their index from 1, of which either blocks the other */
    { "blocked_pairs",
      "SELECT t.i FROM unnest($1::text[], $2::text[]) WITH ORDINALITY"
      " AS t(a, b, i)"
      " WHERE EXISTS (SELECT 1 FROM blocks x"
      "  WHERE (x.user_id = t.a AND x.blocked_id = t.b)"
      "  OR (x.user_id = t.b AND x.blocked_id = t.a))" },
};

const chat_pg_statements_t  chat_store_blocks_statements = {
    chat_blocks_sql, sizeof(chat_blocks_sql) / sizeof(chat_blocks_sql[0])
};


static chat_pg_rc_t
chat_block_once(chat_store_t *st, void *data)
{
    chat_block_t  *b = ((void **) data)[0];
    chat_arena_t  *arena = ((void **) data)[1];
    const char    *params[3];
    char           now[24];
    PGresult      *res = NULL;
    chat_pg_rc_t   rc;
    int            row;

    b->blocked = NULL;
    b->n = 0;

    snprintf(now, sizeof(now), "%" PRId64, chat_now_ms());
    params[0] = b->req->user;
    params[1] = b->req->other;
    params[2] = now;

    rc = chat_pg_command(st, "BEGIN");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (b->req->op == NGX_CHAT_WIRE_OP_BLOCK) {
        rc = chat_pg_run(st, "block_add", 3, params, NULL);

    } else {
        rc = chat_pg_run(st, "block_remove", 2, params, NULL);
    }

    if (rc != CHAT_PG_OK) {
        return rc;
    }

    rc = chat_pg_run(st, "block_list", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    b->blocked = chat_arena_alloc(arena,
                                  (PQntuples(res) + 1) * sizeof(char *));

    for (row = 0; row < PQntuples(res); row++) {
        b->blocked[b->n++] = chat_arena_strdup(arena,
                                               PQgetvalue(res, row, 0));
    }

    PQclear(res);

    return chat_pg_command(st, "COMMIT");
}


chat_store_rc_t
chat_store_block(chat_store_t *st, chat_block_t *b, chat_arena_t *arena)
{
    void  *args[2] = { b, arena };

    return chat_pg_retry(st, chat_block_once, args);
}


typedef struct {
    const char  **a;
    const char  **b;
    size_t        n;
    bool         *blocked;
} chat_blocked_pairs_args_t;


static chat_pg_rc_t
chat_blocked_pairs_attempt(chat_store_t *st, void *data)
{
    chat_blocked_pairs_args_t  *args = data;
    chat_buf_t                  a = { 0 }, b = { 0 };
    const char                 *params[2];
    PGresult                   *res = NULL;
    chat_pg_rc_t                rc;
    int64_t                     i;
    size_t                      k;
    int                         row;

    chat_pg_array_begin(&a);
    chat_pg_array_begin(&b);

    for (k = 0; k < args->n; k++) {
        args->blocked[k] = false;
        chat_pg_array_text(&a, args->a[k]);
        chat_pg_array_text(&b, args->b[k]);
    }

    params[0] = chat_pg_array_end(&a);
    params[1] = chat_pg_array_end(&b);

    rc = chat_pg_run(st, "blocked_pairs", 2, params, &res);

    if (rc == CHAT_PG_OK) {
        for (row = 0; row < PQntuples(res); row++) {
            i = chat_pg_int(res, row, 0);

            if (i >= 1 && (size_t) i <= args->n) {
                args->blocked[i - 1] = true;
            }
        }
    }

    PQclear(res);
    chat_buf_free(&a);
    chat_buf_free(&b);

    return rc;
}


chat_store_rc_t
chat_store_blocked_pairs(chat_store_t *st, const char **a, const char **b,
    size_t n, bool *blocked)
{
    chat_blocked_pairs_args_t  args = { a, b, n, blocked };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_blocked_pairs_attempt, &args);
}
