/*
 * worker_store_reads.c: the reads (history, sync, the conversation list,
 * the receipts of a conversation) from one snapshot per batch (REPEATABLE
 * READ, READ ONLY), as rows: the answer's frames are made by
 * worker_answer.c. A sync's messages are read afterwards, a chunk of its
 * conversations at a time, so that no answer is ever whole in memory.
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
     * A page of a user's conversations, newest activity first (then the
     * newest last message, for one ms), older than ($2, $3), at most $4,
     * with its pointers, the unread count, the last message and the
     * others' pointers. A conversation the user was removed from stays
     * listed as it was at the removal (its last message is the removal),
     * so that every device learns of it; what happened after is not shown,
     * nor counted, nor used for the order. The page is cut before the
     * counts, which only its rows need.
     */
    { "list_page",
      "SELECT p.id, p.kind, p.name, p.last_seq, p.delivered_seq,"
      " p.read_seq,"
      " (SELECT count(*) FROM members x"
      "  WHERE x.conversation_id = p.id AND x.removed_seq IS NULL),"
      " (SELECT count(*) FROM messages x WHERE x.conversation_id = p.id"
      "  AND x.seq > GREATEST(p.read_seq, p.joined_seq - 1)"
      "  AND x.seq <= p.last_seq AND x.sender_id <> $1),"
      " p.l_conv, p.l_seq, p.l_id, p.l_sender, p.l_cmid, p.l_kind,"
      " p.l_body, p.l_ts, p.joined_seq, p.ts, p.mid,"
      " (SELECT LEAST(COALESCE(min(GREATEST(x.delivered_seq,"
      "  x.joined_seq - 1)), p.last_seq), p.last_seq) FROM members x"
      "  WHERE x.conversation_id = p.id AND x.user_id <> $1"
      "  AND x.removed_seq IS NULL),"
      " (SELECT LEAST(COALESCE(min(GREATEST(x.read_seq,"
      "  x.joined_seq - 1)), p.last_seq), p.last_seq) FROM members x"
      "  WHERE x.conversation_id = p.id AND x.user_id <> $1"
      "  AND x.removed_seq IS NULL)"
      " FROM (SELECT c.id, c.kind, c.name,"
      "  COALESCE(m.removed_seq, c.last_seq) AS last_seq,"
      "  m.delivered_seq, m.read_seq, m.joined_seq,"
      "  l.conversation_id AS l_conv, l.seq AS l_seq,"
      "  l.message_id AS l_id, l.sender_id AS l_sender,"
      "  l.client_msg_id AS l_cmid, l.kind AS l_kind, l.body AS l_body,"
      "  l.server_ts AS l_ts,"
      "  COALESCE(l.server_ts, c.last_activity) AS ts,"
      "  COALESCE(l.message_id, 0) AS mid"
      "  FROM members m JOIN conversations c ON c.id = m.conversation_id"
      "  LEFT JOIN messages l ON l.conversation_id = c.id"
      "  AND l.seq = COALESCE(m.removed_seq, c.last_seq)"
      "  WHERE m.user_id = $1"
      "  AND (COALESCE(l.server_ts, c.last_activity) < $2"
      "  OR (COALESCE(l.server_ts, c.last_activity) = $2"
      "  AND COALESCE(l.message_id, 0) < $3))"
      "  ORDER BY COALESCE(l.server_ts, c.last_activity) DESC,"
      "  COALESCE(l.message_id, 0) DESC, c.id"
      "  LIMIT $4) AS p"
      " ORDER BY p.ts DESC, p.mid DESC, p.id" },

    /* the messages in (from, to] of each conversation, in the order
     * given, ascending seq: a range of the primary key each */
    { "sync_messages",
      "SELECT x." CHAT_PG_MESSAGE_COLUMNS
      " FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
      " WITH ORDINALITY AS t(c, s, u, o)"
      " CROSS JOIN LATERAL (SELECT * FROM messages"
      "  WHERE conversation_id = t.c AND seq > t.s AND seq <= t.u) AS x"
      " ORDER BY t.o, x.seq" },

    /* the current members' pointers; those before a member's joining
     * count as done: it can never see them */
    { "receipts_members",
      "SELECT user_id, GREATEST(delivered_seq, joined_seq - 1),"
      " GREATEST(read_seq, joined_seq - 1) FROM members"
      " WHERE conversation_id = $1 AND removed_seq IS NULL"
      " ORDER BY user_id" },
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

    return chat_pg_attachments(st, h->messages, h->n, arena);
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


/* a page of the user's conversations older than (before_ts, before_id):
 * limit rows, and one more when there are more */
static chat_pg_rc_t
chat_read_list(chat_store_t *st, const chat_request_t *req, int64_t before_ts,
    int64_t before_id, size_t limit, chat_sync_rows_t *s, chat_arena_t *arena)
{
    chat_sync_conv_t  *c;
    const char        *params[4];
    char               ts[24], id[24], rows[24];
    PGresult          *res = NULL;
    chat_pg_rc_t       rc;
    int                row, nrows;

    snprintf(ts, sizeof(ts), "%" PRId64, before_ts);
    snprintf(id, sizeof(id), "%" PRId64, before_id);
    snprintf(rows, sizeof(rows), "%zu", limit + 1);

    params[0] = req->user;
    params[1] = ts;
    params[2] = id;
    params[3] = rows;

    rc = chat_pg_run(st, "list_page", 4, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);

    s->convs = chat_arena_alloc(arena, (nrows + 1) * sizeof(chat_sync_conv_t));
    s->nconvs = nrows;
    s->limit = limit;

    for (row = 0; row < nrows; row++) {
        c = &s->convs[row];
        memset(c, 0, sizeof(*c));

        c->conv = chat_arena_strdup(arena, PQgetvalue(res, row, 0));
        c->kind = chat_arena_strdup(arena, PQgetvalue(res, row, 1));
        c->name = PQgetisnull(res, row, 2)
                  ? NULL : chat_arena_strdup(arena, PQgetvalue(res, row, 2));
        c->last_seq = chat_pg_int(res, row, 3);
        c->delivered_seq = chat_pg_int(res, row, 4);
        c->read_seq = chat_pg_int(res, row, 5);
        c->member_count = chat_pg_int(res, row, 6);
        c->unread = chat_pg_int(res, row, 7);

        if (!PQgetisnull(res, row, 8)) {
            c->has_last = true;
            chat_read_message(res, row, 8, &c->last, arena);
        }

        /* the member's window starts after its joining event */
        c->after_seq = chat_pg_int(res, row, 16) - 1;
        c->activity = chat_pg_int(res, row, 17);
        c->activity_id = chat_pg_int(res, row, 18);
        c->others_delivered_seq = chat_pg_int(res, row, 19);
        c->others_read_seq = chat_pg_int(res, row, 20);
    }

    PQclear(res);

    return CHAT_PG_OK;
}


/* the first page, and where each conversation's messages start: after the
 * device's cursor, within the member's window */
static chat_pg_rc_t
chat_read_sync(chat_store_t *st, chat_read_t *read, chat_arena_t *arena)
{
    const chat_request_t  *req = read->req;
    chat_sync_rows_t      *s = &read->sync;
    chat_sync_conv_t      *c;
    chat_pg_rc_t           rc;
    int64_t                cursor;
    size_t                 i;

    rc = chat_read_list(st, req, INT64_MAX, 0, NGX_CHAT_WIRE_SYNC_LIST, s,
                        arena);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    for (i = 0; i < s->nconvs; i++) {
        c = &s->convs[i];
        cursor = chat_sync_cursor(req, c->conv);

        if (c->after_seq < cursor) {
            c->after_seq = cursor;
        }

        c->truncated = c->last_seq - c->after_seq > NGX_CHAT_WIRE_SYNC_CAP;
    }

    return CHAT_PG_OK;
}


static chat_pg_rc_t
chat_read_conversations(chat_store_t *st, chat_read_t *read,
    chat_arena_t *arena)
{
    const chat_request_t  *req = read->req;

    return chat_read_list(st, req, req->before_ts, req->before_id,
                          (size_t) req->limit, &read->sync, arena);
}


/* the members' pointers; for a current member only (a removed one has
 * heard of no receipt since its removal, and hears of none now) */
static chat_pg_rc_t
chat_read_receipts(chat_store_t *st, chat_read_t *read, chat_arena_t *arena)
{
    const chat_request_t  *req = read->req;
    chat_receipts_rows_t  *r = &read->receipts;
    const char            *params[1];
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    int                    row, nrows;
    bool                   member = false;

    if (chat_direct_access(req->conv, req->user) == NGX_CHAT_WIRE_FORBIDDEN) {
        r->forbidden = true;
        return CHAT_PG_OK;
    }

    params[0] = req->conv;

    rc = chat_pg_run(st, "receipts_members", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    r->members = chat_arena_alloc(arena,
                                  (nrows + 1) * sizeof(chat_pointers_row_t));

    for (row = 0; row < nrows; row++) {
        r->members[row].user = chat_arena_strdup(arena,
                                                 PQgetvalue(res, row, 0));
        r->members[row].delivered_seq = chat_pg_int(res, row, 1);
        r->members[row].read_seq = chat_pg_int(res, row, 2);

        if (strcmp(r->members[row].user, req->user) == 0) {
            member = true;
        }
    }

    r->n = nrows;
    PQclear(res);

    /* a direct conversation not begun yet has nobody's pointers; any
     * other conversation must have the user in it */
    if (!member && (nrows > 0 || !chat_is_dm_id(req->conv))) {
        r->forbidden = true;
        r->n = 0;
    }

    return CHAT_PG_OK;
}


typedef struct {
    chat_sync_conv_t  *convs;
    size_t             n;
    chat_sync_rows_t  *s;
    chat_arena_t      *arena;
} chat_sync_chunk_args_t;


static chat_pg_rc_t
chat_sync_chunk_attempt(chat_store_t *st, void *data)
{
    chat_sync_chunk_args_t  *a = data;
    chat_sync_conv_t        *c;
    chat_buf_t              *convs = &st->arrays[0], *froms = &st->arrays[1];
    chat_buf_t              *uppers = &st->arrays[2];
    const char              *params[3];
    PGresult                *res = NULL;
    chat_pg_rc_t             rc;
    int64_t                  from;
    size_t                   i;
    int                      row, nrows;

    chat_pg_array_begin(convs);
    chat_pg_array_begin(froms);
    chat_pg_array_begin(uppers);

    for (i = 0; i < a->n; i++) {
        c = &a->convs[i];

        /* the newest ones when there are more than the cap */
        from = c->after_seq;
        if (c->last_seq - from > NGX_CHAT_WIRE_SYNC_CAP) {
            from = c->last_seq - NGX_CHAT_WIRE_SYNC_CAP;
        }

        chat_pg_array_text(convs, c->conv);
        chat_pg_array_int(froms, from);
        chat_pg_array_int(uppers, c->last_seq);
    }

    params[0] = chat_pg_array_end(convs);
    params[1] = chat_pg_array_end(froms);
    params[2] = chat_pg_array_end(uppers);

    rc = chat_pg_run(st, "sync_messages", 3, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    a->s->messages = chat_arena_alloc(a->arena,
                                      (nrows + 1) * sizeof(chat_message_t));
    a->s->nmessages = nrows;

    for (row = 0; row < nrows; row++) {
        chat_read_message(res, row, 0, &a->s->messages[row], a->arena);
    }

    PQclear(res);

    /* they come grouped by conversation, in the order given */
    for (i = 0, row = 0; i < a->n; i++) {
        c = &a->convs[i];
        c->first = row;

        while (row < nrows && strcmp(a->s->messages[row].conv, c->conv) == 0)
        {
            row++;
        }

        c->n = row - c->first;
    }

    return chat_pg_attachments(st, a->s->messages, a->s->nmessages,
                               a->arena);
}


chat_store_rc_t
chat_store_sync_messages(chat_store_t *st, chat_sync_conv_t *convs, size_t n,
    chat_sync_rows_t *s, chat_arena_t *arena)
{
    chat_sync_chunk_args_t  args = { convs, n, s, arena };

    s->messages = NULL;
    s->nmessages = 0;

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_sync_chunk_attempt, &args);
}


typedef chat_pg_rc_t (*chat_reader_pt)(chat_store_t *st, chat_read_t *read,
    chat_arena_t *arena);

/* the read of each read op: one entry per op of the READ stage */
static const chat_reader_pt  chat_readers[NGX_CHAT_WIRE_OP_COUNT] = {
    [NGX_CHAT_WIRE_OP_SYNC] = chat_read_sync,
    [NGX_CHAT_WIRE_OP_HISTORY] = chat_read_history,
    [NGX_CHAT_WIRE_OP_CONVERSATIONS] = chat_read_conversations,
    [NGX_CHAT_WIRE_OP_RECEIPTS] = chat_read_receipts,
    [NGX_CHAT_WIRE_OP_SEARCH] = chat_read_search,
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
        memset(&read->receipts, 0, sizeof(read->receipts));
        memset(&read->search, 0, sizeof(read->search));

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
