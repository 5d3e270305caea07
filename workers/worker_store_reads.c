/*
 * worker_store_reads.c: the reads, history and sync, from one snapshot per
 * batch (REPEATABLE READ, READ ONLY), as rows: the answer's frames are
 * made by worker_answer.c.
 *
 * A group member reads the seqs from its joining (joined_seq, the event
 * that added it) to its removal (removed_seq, the event that removed it,
 * which it still sees); a re-added member's window starts again at its new
 * joining. A direct conversation has no window: both see everything.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_reads_sql[] = {

    /* the seqs a user may read: from its joining to its removal */
    { "member_window",
      "SELECT joined_seq, COALESCE(removed_seq, -1) FROM members"
      " WHERE conversation_id = $1 AND user_id = $2" },

    { "history_before",
      "SELECT " CHAT_PG_MESSAGE_COLUMNS " FROM messages"
      " WHERE conversation_id = $1 AND seq < $2"
      " AND seq >= $4 AND seq <= $5"
      " ORDER BY seq DESC LIMIT $3" },

    { "history_after",
      "SELECT " CHAT_PG_MESSAGE_COLUMNS " FROM messages"
      " WHERE conversation_id = $1 AND seq > $2"
      " AND seq >= $4 AND seq <= $5"
      " ORDER BY seq LIMIT $3" },

    /*
     * A user's conversations, newest activity first, with its pointers,
     * the unread count and the last message. A conversation the user was
     * removed from stays listed as it was at the removal (its last message
     * is the removal), so that every device learns of it; what happened
     * after is not shown, nor counted, nor used for the order.
     */
    { "sync_conversations",
      "SELECT c.id, c.kind, c.name, COALESCE(m.removed_seq, c.last_seq),"
      " m.delivered_seq, m.read_seq,"
      " (SELECT count(*) FROM members x"
      "  WHERE x.conversation_id = c.id AND x.removed_seq IS NULL),"
      " (SELECT count(*) FROM messages x WHERE x.conversation_id = c.id"
      "  AND x.seq > GREATEST(m.read_seq, m.joined_seq - 1)"
      "  AND x.seq <= COALESCE(m.removed_seq, c.last_seq)"
      "  AND x.sender_id <> m.user_id),"
      " l.conversation_id, l.seq, l.message_id, l.sender_id,"
      " l.client_msg_id, l.kind, l.body, l.server_ts, m.joined_seq"
      " FROM members m JOIN conversations c ON c.id = m.conversation_id"
      " LEFT JOIN messages l ON l.conversation_id = c.id"
      " AND l.seq = COALESCE(m.removed_seq, c.last_seq)"
      " WHERE m.user_id = $1"
      " ORDER BY COALESCE(l.server_ts, c.last_activity) DESC,"
      " l.message_id DESC, c.id" },

    /* the newest $4 messages in (from, to] per conversation, in the order
     * given, ascending seq */
    { "sync_messages",
      "SELECT x." CHAT_PG_MESSAGE_COLUMNS
      " FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
      " WITH ORDINALITY AS t(c, s, u, o)"
      " CROSS JOIN LATERAL (SELECT * FROM messages"
      "  WHERE conversation_id = t.c AND seq > t.s AND seq <= t.u"
      "  ORDER BY seq DESC LIMIT $4) AS x"
      " ORDER BY t.o, x.seq" },
};

const chat_pg_statements_t  chat_store_reads_statements = {
    chat_reads_sql, sizeof(chat_reads_sql) / sizeof(chat_reads_sql[0])
};


/* a message of res into the arena: the rows outlive the result */
static void
chat_read_message(PGresult *res, int row, int col, chat_message_t *m,
    chat_arena_t *arena)
{
    chat_pg_message(res, row, col, m);
    chat_pg_message_keep(m, arena);
}


static chat_pg_rc_t
chat_read_history(chat_store_t *st, chat_read_t *read, chat_arena_t *arena)
{
    const chat_request_t  *req = read->req;
    chat_history_rows_t   *h = &read->history;
    const char            *params[5];
    char                   bound[24], limit[24], lo[24], hi[24];
    int64_t                from = 0, to = INT64_MAX;
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    int                    row, nrows, first, last, step;
    size_t                 n;

    switch (chat_direct_access(req->conv, req->user)) {

    case NGX_CHAT_WIRE_FORBIDDEN:
        h->forbidden = true;
        return CHAT_PG_OK;

    case NGX_CHAT_WIRE_ASK_STORE:
        params[0] = req->conv;
        params[1] = req->user;

        rc = chat_pg_run(st, "member_window", 2, params, &res);
        if (rc != CHAT_PG_OK) {
            return rc;
        }

        nrows = PQntuples(res);

        if (nrows == 0) {
            PQclear(res);
            h->forbidden = true;
            return CHAT_PG_OK;
        }

        from = chat_pg_int(res, 0, 0);
        if (chat_pg_int(res, 0, 1) >= 0) {
            to = chat_pg_int(res, 0, 1);
        }

        PQclear(res);

        break;

    case NGX_CHAT_WIRE_ALLOWED:
        /* a direct conversation not begun yet reads as empty */
        break;
    }

    /* one row more than asked tells whether there is more */
    snprintf(limit, sizeof(limit), "%" PRId64, req->limit + 1);
    snprintf(bound, sizeof(bound), "%" PRId64,
             req->after_seq >= 0 ? req->after_seq
             : req->before_seq >= 0 ? req->before_seq : INT64_MAX);

    snprintf(lo, sizeof(lo), "%" PRId64, from);
    snprintf(hi, sizeof(hi), "%" PRId64, to);

    params[0] = req->conv;
    params[1] = bound;
    params[2] = limit;
    params[3] = lo;
    params[4] = hi;

    rc = chat_pg_run(st, req->after_seq >= 0 ? "history_after"
                                             : "history_before",
                     5, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    h->has_more = nrows > req->limit;
    if (h->has_more) {
        nrows = (int) req->limit;
    }

    /* history_before comes newest first: turn it around */
    if (req->after_seq >= 0) {
        first = 0, last = nrows, step = 1;
    } else {
        first = nrows - 1, last = -1, step = -1;
    }

    h->messages = chat_arena_alloc(arena,
                                   (nrows + 1) * sizeof(chat_message_t));

    for (row = first, n = 0; row != last; row += step, n++) {
        chat_read_message(res, row, 0, &h->messages[n], arena);
    }

    h->n = n;
    PQclear(res);

    return CHAT_PG_OK;
}


static int64_t
chat_sync_cursor(const chat_request_t *req, const char *conv)
{
    json_t  *v;

    v = req->cursors ? json_object_get(req->cursors, conv) : NULL;

    /* anything but a sensible seq counts as no cursor */
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        return json_integer_value(v);
    }

    return 0;
}


static chat_pg_rc_t
chat_read_sync(chat_store_t *st, chat_read_t *read, chat_arena_t *arena)
{
    const chat_request_t  *req = read->req;
    chat_sync_rows_t      *s = &read->sync;
    chat_sync_conv_t      *c;
    chat_buf_t            *convs = &st->arrays[0], *cursors = &st->arrays[1];
    chat_buf_t            *uppers = &st->arrays[2];
    const char            *params[4];
    char                   cap[24];
    PGresult              *list = NULL, *msgs = NULL;
    chat_pg_rc_t           rc;
    int                    row, nconvs, nmsgs, start, end, i, k;
    int64_t                last_seq, from;
    size_t                 asked = 0;

    params[0] = req->user;

    rc = chat_pg_run(st, "sync_conversations", 1, params, &list);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nconvs = PQntuples(list);

    chat_pg_array_begin(convs);
    chat_pg_array_begin(cursors);
    chat_pg_array_begin(uppers);

    for (row = 0; row < nconvs; row++) {
        /* the member's window: after its joining event, up to its
         * removal or the conversation's end */
        last_seq = chat_pg_int(list, row, 3);
        from = chat_sync_cursor(req, PQgetvalue(list, row, 0));

        if (from < chat_pg_int(list, row, 16) - 1) {
            from = chat_pg_int(list, row, 16) - 1;
        }

        if (last_seq > from) {
            chat_pg_array_text(convs, PQgetvalue(list, row, 0));
            chat_pg_array_int(cursors, from);
            chat_pg_array_int(uppers, last_seq);
            asked++;
        }
    }

    msgs = NULL;

    if (asked > 0) {
        /* one more than the cap tells which ones are truncated */
        snprintf(cap, sizeof(cap), "%d", NGX_CHAT_WIRE_SYNC_CAP + 1);
        params[0] = chat_pg_array_end(convs);
        params[1] = chat_pg_array_end(cursors);
        params[2] = chat_pg_array_end(uppers);
        params[3] = cap;

        rc = chat_pg_run(st, "sync_messages", 4, params, &msgs);
        if (rc != CHAT_PG_OK) {
            PQclear(list);
            return rc;
        }
    }

    nmsgs = msgs ? PQntuples(msgs) : 0;

    s->convs = chat_arena_alloc(arena, (nconvs + 1) * sizeof(chat_sync_conv_t));
    s->nconvs = nconvs;
    s->messages = chat_arena_alloc(arena, (nmsgs + 1) * sizeof(chat_message_t));
    s->nmessages = 0;

    /* the messages come grouped by conversation in list order */
    i = 0;

    for (row = 0; row < nconvs; row++) {
        c = &s->convs[row];
        memset(c, 0, sizeof(*c));

        c->conv = chat_arena_strdup(arena, PQgetvalue(list, row, 0));
        c->kind = chat_arena_strdup(arena, PQgetvalue(list, row, 1));
        c->name = PQgetisnull(list, row, 2)
                  ? NULL : chat_arena_strdup(arena, PQgetvalue(list, row, 2));
        c->member_count = chat_pg_int(list, row, 6);
        c->last_seq = chat_pg_int(list, row, 3);
        c->delivered_seq = chat_pg_int(list, row, 4);
        c->read_seq = chat_pg_int(list, row, 5);
        c->unread = chat_pg_int(list, row, 7);

        if (!PQgetisnull(list, row, 8)) {
            c->has_last = true;
            chat_read_message(list, row, 8, &c->last, arena);
        }

        start = i;
        while (i < nmsgs && strcmp(PQgetvalue(msgs, i, 0), c->conv) == 0) {
            i++;
        }
        end = i;

        if (end - start > NGX_CHAT_WIRE_SYNC_CAP) {
            /* ascending: the oldest one is the one over the cap */
            start = end - NGX_CHAT_WIRE_SYNC_CAP;
            c->truncated = true;
        }

        c->first = s->nmessages;
        c->n = end - start;

        for (k = start; k < end; k++) {
            chat_read_message(msgs, k, 0, &s->messages[s->nmessages++],
                              arena);
        }
    }

    PQclear(list);
    PQclear(msgs);

    return CHAT_PG_OK;
}


typedef chat_pg_rc_t (*chat_reader_pt)(chat_store_t *st, chat_read_t *read,
    chat_arena_t *arena);

/* the read of each read op: one entry per op of the READ stage */
static const chat_reader_pt  chat_readers[NGX_CHAT_WIRE_OP_COUNT] = {
    [NGX_CHAT_WIRE_OP_SYNC] = chat_read_sync,
    [NGX_CHAT_WIRE_OP_HISTORY] = chat_read_history,
};


typedef struct {
    chat_read_t   **reads;
    size_t          n;
    chat_arena_t   *arena;
} chat_reads_args_t;


static chat_pg_rc_t
chat_reads_attempt(chat_store_t *st, void *data)
{
    chat_reads_args_t  *a = data;
    chat_reader_pt      reader;
    chat_pg_rc_t        rc;
    size_t              i;

    /* one snapshot for all reads of the batch */
    rc = chat_pg_command(st,
             "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    for (i = 0; i < a->n; i++) {
        chat_read_t  *read = a->reads[i];

        /* an earlier attempt's rows are forgotten (their memory stays in
         * the arena until the batch ends) */
        memset(&read->history, 0, sizeof(read->history));
        memset(&read->sync, 0, sizeof(read->sync));

        reader = (unsigned) read->req->op < NGX_CHAT_WIRE_OP_COUNT
                 ? chat_readers[read->req->op] : NULL;

        if (reader == NULL) {
            log_error("partition %d offset %" PRId64 ": op %s is no read",
                      read->req->partition, read->req->offset,
                      ngx_chat_wire_op_name(read->req->op));
            return CHAT_PG_FAILED;
        }

        rc = reader(st, read, a->arena);
        if (rc != CHAT_PG_OK) {
            return rc;
        }
    }

    return chat_pg_command(st, "COMMIT");
}


chat_store_rc_t
chat_store_reads(chat_store_t *st, chat_read_t **reads, size_t n,
    chat_arena_t *arena)
{
    chat_reads_args_t  args = { reads, n, arena };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_reads_attempt, &args);
}
