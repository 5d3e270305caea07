/*
 * worker_receipts.c: the receipt pointers of a batch, and the loads of the
 * membership cache (worker_members.c).
 *
 * A batch's receipts are one transaction of two statements: the current
 * pointers of every (conversation, user) named, locked, with the
 * conversation's last seq; then, after the receipts were applied in record
 * order in memory, one UPDATE of the pointers that moved. Pointers only
 * move forward, and read drags delivered along (read implies delivered);
 * a receipt that moves nothing is ignored without a word.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"
#include "worker_store.h"


const chat_statement_t  chat_receipt_statements[] = {

    { "receipt_rows",
      "SELECT m.conversation_id, m.user_id, m.delivered_seq, m.read_seq,"
      " c.last_seq"
      " FROM members m JOIN conversations c ON c.id = m.conversation_id"
      " JOIN unnest($1::text[], $2::text[]) AS t(c, u)"
      " ON m.conversation_id = t.c AND m.user_id = t.u"
      " WHERE m.removed_seq IS NULL"
      " ORDER BY m.conversation_id, m.user_id FOR UPDATE OF m" },

    { "receipt_move",
      "UPDATE members AS m SET delivered_seq = t.d, read_seq = t.r"
      " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])"
      " AS t(c, u, d, r)"
      " WHERE m.conversation_id = t.c AND m.user_id = t.u" },

    { "members_load",
      "SELECT conversation_id, user_id, role = 'admin', joined_seq,"
      " COALESCE(removed_seq, -1) FROM members"
      " WHERE conversation_id = ANY($1::text[])"
      " ORDER BY conversation_id" },
};

const size_t  chat_receipt_nstatements =
    sizeof(chat_receipt_statements) / sizeof(chat_receipt_statements[0]);


typedef struct {
    int64_t  delivered;
    int64_t  read;
    int64_t  last;
    bool     moved;
} chat_pointers_t;


typedef struct {
    chat_receipt_t  *r;
    size_t           n;
    chat_arena_t    *arena;
} chat_receipts_args_t;


static chat_q_rc_t
chat_receipts_attempt(chat_store_t *st, void *data)
{
    chat_receipts_args_t  *a = data;
    chat_buf_t            *c = &st->arrays[0], *u = &st->arrays[1];
    chat_buf_t            *d = &st->arrays[2], *rd = &st->arrays[3];
    const char            *params[4];
    chat_map_t             index = { 0 };
    chat_pointers_t       *p;
    PGresult              *res = NULL;
    chat_q_rc_t            rc;
    size_t                 i, k, nmoved = 0;
    int                    row, nrows;

    rc = chat_store_command(st, "BEGIN");
    if (rc != CHAT_Q_OK) {
        return rc;
    }

    chat_pg_array_begin(c);
    chat_pg_array_begin(u);

    for (i = 0; i < a->n; i++) {
        chat_pg_array_text(c, a->r[i].req->conv);
        chat_pg_array_text(u, a->r[i].req->user);
    }

    params[0] = chat_pg_array_end(c);
    params[1] = chat_pg_array_end(u);

    rc = chat_store_run(st, "receipt_rows", 2, params, &res);
    if (rc != CHAT_Q_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    p = chat_arena_alloc(a->arena, (nrows + 1) * sizeof(chat_pointers_t));

    for (row = 0; row < nrows; row++) {
        chat_map_put(&index, chat_pair_key(a->arena, PQgetvalue(res, row, 0),
                                           PQgetvalue(res, row, 1)), row);
        p[row].delivered = chat_int(res, row, 2);
        p[row].read = chat_int(res, row, 3);
        p[row].last = chat_int(res, row, 4);
        p[row].moved = false;
    }

    /* in record order: a later receipt sees what an earlier one did */
    for (i = 0; i < a->n; i++) {
        chat_request_t  *req = a->r[i].req;
        chat_pointers_t *q;

        if (!chat_map_get(&index, chat_pair_key(a->arena, req->conv,
                                                req->user), &k))
        {
            a->r[i].rc = CHAT_RECEIPT_FORBIDDEN;
            continue;
        }

        q = &p[k];

        if (req->seq > q->last) {
            a->r[i].rc = CHAT_RECEIPT_BEYOND;

        } else if (strcmp(req->state, "read") == 0 ? req->seq <= q->read
                                                   : req->seq <= q->delivered)
        {
            a->r[i].rc = CHAT_RECEIPT_IGNORED;

        } else {
            a->r[i].rc = CHAT_RECEIPT_MOVED;
            q->moved = true;

            if (req->seq > q->delivered) {
                q->delivered = req->seq;
            }

            if (strcmp(req->state, "read") == 0) {
                q->read = req->seq;
            }
        }
    }

    chat_map_free(&index);

    chat_pg_array_begin(c);
    chat_pg_array_begin(u);
    chat_pg_array_begin(d);
    chat_pg_array_begin(rd);

    for (row = 0; row < nrows; row++) {
        if (p[row].moved) {
            chat_pg_array_text(c, PQgetvalue(res, row, 0));
            chat_pg_array_text(u, PQgetvalue(res, row, 1));
            chat_pg_array_int(d, p[row].delivered);
            chat_pg_array_int(rd, p[row].read);
            nmoved++;
        }
    }

    PQclear(res);

    if (nmoved > 0) {
        params[0] = chat_pg_array_end(c);
        params[1] = chat_pg_array_end(u);
        params[2] = chat_pg_array_end(d);
        params[3] = chat_pg_array_end(rd);

        rc = chat_store_run(st, "receipt_move", 4, params, NULL);
        if (rc != CHAT_Q_OK) {
            return rc;
        }
    }

    return chat_store_command(st, "COMMIT");
}


static void
chat_receipts_undo(void *data)
{
    (void) data;    /* each attempt decides every receipt again */
}


chat_store_rc_t
chat_store_receipts(chat_store_t *st, chat_receipt_t *r, size_t n,
    chat_arena_t *arena)
{
    chat_receipts_args_t  args = { r, n, arena };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_store_retry(st, chat_receipts_attempt, chat_receipts_undo,
                            &args);
}


/* ---- the membership cache ---- */

typedef struct {
    chat_members_cache_t  *cache;
    const char *const     *convs;
    size_t                 n;
} chat_load_args_t;


static chat_q_rc_t
chat_load_attempt(chat_store_t *st, void *data)
{
    chat_load_args_t  *a = data;
    chat_buf_t        *convs = &st->arrays[0];
    const char        *params[1];
    chat_member_t     *list;
    chat_map_t         asked = { 0 };
    PGresult          *res = NULL;
    chat_q_rc_t        rc;
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
        return CHAT_Q_OK;
    }

    params[0] = chat_pg_array_end(convs);

    rc = chat_store_run(st, "members_load", 1, params, &res);
    if (rc != CHAT_Q_OK) {
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
            list[n].joined_seq = chat_int(res, row, 3);
            list[n].removed_seq = chat_int(res, row, 4);
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

    return CHAT_Q_OK;
}


static void
chat_load_undo(void *data)
{
    (void) data;
}


chat_store_rc_t
chat_store_load_members(chat_store_t *st, chat_members_cache_t *c,
    const char *const *convs, size_t n)
{
    chat_load_args_t  args = { c, convs, n };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_store_retry(st, chat_load_attempt, chat_load_undo, &args);
}
