/*
 * worker_store_receipts.c: the receipt pointers of a batch.
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

#include "worker_pg.h"


static const chat_pg_statement_t  chat_receipts_sql[] = {

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
};

const chat_pg_statements_t  chat_store_receipts_statements = {
    chat_receipts_sql,
    sizeof(chat_receipts_sql) / sizeof(chat_receipts_sql[0])
};


typedef struct {
    int64_t  delivered;
    int64_t  read;
    int64_t  last;
    bool     moved;
} chat_pointers_t;


typedef struct {
    chat_receipt_t **r;
    size_t           n;
    chat_arena_t    *arena;
} chat_receipts_args_t;


static chat_pg_rc_t
chat_receipts_attempt(chat_store_t *st, void *data)
{
    chat_receipts_args_t  *a = data;
    chat_buf_t            *c = &st->arrays[0], *u = &st->arrays[1];
    chat_buf_t            *d = &st->arrays[2], *rd = &st->arrays[3];
    const char            *params[4];
    chat_map_t             index = { 0 };
    chat_pointers_t       *p;
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    size_t                 i, k, nmoved = 0;
    int                    row, nrows;

    rc = chat_pg_command(st, "BEGIN");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    chat_pg_array_begin(c);
    chat_pg_array_begin(u);

    for (i = 0; i < a->n; i++) {
        chat_pg_array_text(c, a->r[i]->req->conv);
        chat_pg_array_text(u, a->r[i]->req->user);
    }

    params[0] = chat_pg_array_end(c);
    params[1] = chat_pg_array_end(u);

    rc = chat_pg_run(st, "receipt_rows", 2, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    p = chat_arena_alloc(a->arena, (nrows + 1) * sizeof(chat_pointers_t));

    for (row = 0; row < nrows; row++) {
        chat_map_put(&index, chat_map_pair(a->arena, PQgetvalue(res, row, 0),
                                           PQgetvalue(res, row, 1)), row);
        p[row].delivered = chat_pg_int(res, row, 2);
        p[row].read = chat_pg_int(res, row, 3);
        p[row].last = chat_pg_int(res, row, 4);
        p[row].moved = false;
    }

    /* in record order: a later receipt sees what an earlier one did */
    for (i = 0; i < a->n; i++) {
        const chat_request_t  *req = a->r[i]->req;
        chat_pointers_t       *q;
        bool                   read;

        if (!chat_map_get(&index, chat_map_pair(a->arena, req->conv,
                                                req->user), &k))
        {
            a->r[i]->rc = CHAT_RECEIPT_FORBIDDEN;
            continue;
        }

        q = &p[k];
        read = strcmp(req->state, NGX_CHAT_WIRE_STATE_READ) == 0;

        if (req->seq > q->last) {
            a->r[i]->rc = CHAT_RECEIPT_BEYOND;

        } else if (read ? req->seq <= q->read : req->seq <= q->delivered) {
            a->r[i]->rc = CHAT_RECEIPT_IGNORED;

        } else {
            a->r[i]->rc = CHAT_RECEIPT_MOVED;
            q->moved = true;

            if (req->seq > q->delivered) {
                q->delivered = req->seq;
            }

            if (read) {
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

        rc = chat_pg_run(st, "receipt_move", 4, params, NULL);
        if (rc != CHAT_PG_OK) {
            return rc;
        }
    }

    return chat_pg_command(st, "COMMIT");
}


chat_store_rc_t
chat_store_receipts(chat_store_t *st, chat_receipt_t **r, size_t n,
    chat_arena_t *arena)
{
    chat_receipts_args_t  args = { r, n, arena };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_receipts_attempt, &args);
}
