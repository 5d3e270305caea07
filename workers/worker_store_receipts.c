/*
 * worker_store_receipts.c: the receipt pointers of a batch.
 *
 * A batch's receipts are one transaction of two statements: the current
 * pointers of every (conversation, user) named, locked, with the
 * conversation's last seq; then, after the receipts were applied in record
 * order in memory, one UPDATE of the pointers that moved. Pointers only
 * move forward, and read drags delivered along (read implies delivered);
 * a receipt that moves nothing is ignored without a word.
 *
 * The same pass marks the moves a later receipt of the batch goes past
 * (superseded), and gives each the pointer of its state as it was before
 * the batch: in a large group the fan-out tells only the last move of a
 * (conversation, user, state), and its messages' senders of (from, seq].
 * Those senders are one more statement, outside the transaction (the
 * messages below a pointer are committed and never change sender).
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

    { "receipt_senders",
      "SELECT t.i, s.sender_id"
      " FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
      " WITH ORDINALITY AS t(c, lo, hi, i)"
      " CROSS JOIN LATERAL (SELECT DISTINCT m.sender_id FROM messages m"
      " WHERE m.conversation_id = t.c AND m.seq > t.lo AND m.seq <= t.hi"
      " AND m.kind <> 'system') AS s"
      " ORDER BY t.i" },
};

const chat_pg_statements_t  chat_store_receipts_statements = {
    chat_receipts_sql,
    sizeof(chat_receipts_sql) / sizeof(chat_receipts_sql[0])
};


typedef struct {
    int64_t  delivered;
    int64_t  read;
    int64_t  last;
    int64_t  was_delivered;     /* before the batch */
    int64_t  was_read;
    int64_t  later_read;        /* the reverse pass: the last read move
                                 * after this point, -1 none */
    bool     later_delivered;   /* and whether a delivered move follows */
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
        p[row].was_delivered = p[row].delivered;
        p[row].was_read = p[row].read;
        p[row].later_read = -1;
        p[row].later_delivered = false;
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
        a->r[i]->from = read ? q->was_read : q->was_delivered;

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

    /* backwards: what each move is followed by */
    for (i = a->n; i-- > 0; ) {
        const chat_request_t  *req = a->r[i]->req;
        chat_pointers_t       *q;

        a->r[i]->superseded = false;

        if (a->r[i]->rc != CHAT_RECEIPT_MOVED
            || !chat_map_get(&index, chat_map_pair(a->arena, req->conv,
                                                   req->user), &k))
        {
            continue;
        }

        q = &p[k];

        if (strcmp(req->state, NGX_CHAT_WIRE_STATE_READ) == 0) {
            a->r[i]->superseded = q->later_read >= 0;

            if (q->later_read < 0) {
                q->later_read = req->seq;
            }

        } else {
            a->r[i]->superseded = q->later_delivered
                                  || q->later_read >= req->seq;
            q->later_delivered = true;
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


typedef struct {
    chat_receipt_t **r;
    size_t           n;
    chat_arena_t    *arena;
    size_t          *which;     /* the statement's rows -> r */
    size_t           nwhich;
} chat_senders_args_t;


static chat_pg_rc_t
chat_senders_attempt(chat_store_t *st, void *data)
{
    chat_senders_args_t  *a = data;
    chat_buf_t           *c = &st->arrays[0], *lo = &st->arrays[1];
    chat_buf_t           *hi = &st->arrays[2];
    chat_receipt_t       *r;
    const char           *params[3];
    PGresult             *res = NULL;
    chat_pg_rc_t          rc;
    size_t                k;
    int                   row, nrows;

    chat_pg_array_begin(c);
    chat_pg_array_begin(lo);
    chat_pg_array_begin(hi);

    for (k = 0; k < a->nwhich; k++) {
        r = a->r[a->which[k]];
        r->senders = NULL;
        r->nsenders = 0;
        chat_pg_array_text(c, r->req->conv);
        chat_pg_array_int(lo, r->from);
        chat_pg_array_int(hi, r->req->seq);
    }

    params[0] = chat_pg_array_end(c);
    params[1] = chat_pg_array_end(lo);
    params[2] = chat_pg_array_end(hi);

    rc = chat_pg_run(st, "receipt_senders", 3, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);

    /* rows come grouped by receipt: count, then fill */
    for (row = 0; row < nrows; row++) {
        k = (size_t) chat_pg_int(res, row, 0) - 1;
        if (k < a->nwhich) {
            a->r[a->which[k]]->nsenders++;
        }
    }

    for (k = 0; k < a->nwhich; k++) {
        r = a->r[a->which[k]];
        r->senders = chat_arena_alloc(a->arena,
                                      (r->nsenders + 1) * sizeof(char *));
        r->nsenders = 0;
    }

    for (row = 0; row < nrows; row++) {
        k = (size_t) chat_pg_int(res, row, 0) - 1;
        if (k < a->nwhich) {
            r = a->r[a->which[k]];
            r->senders[r->nsenders++] =
                chat_arena_strdup(a->arena, PQgetvalue(res, row, 1));
        }
    }

    PQclear(res);

    return CHAT_PG_OK;
}


chat_store_rc_t
chat_store_receipt_senders(chat_store_t *st, chat_receipt_t **r, size_t n,
    chat_arena_t *arena)
{
    chat_senders_args_t  args = { r, n, arena, NULL, 0 };
    size_t               i;

    args.which = chat_arena_alloc(arena, (n + 1) * sizeof(size_t));

    for (i = 0; i < n; i++) {
        if (r[i]->coalesce && r[i]->rc == CHAT_RECEIPT_MOVED
            && !r[i]->superseded)
        {
            args.which[args.nwhich++] = i;
        }
    }

    if (args.nwhich == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_senders_attempt, &args);
}
