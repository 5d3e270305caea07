/*
 * worker_store_reads.c: the reads, history and sync, answered from one
 * snapshot per batch (REPEATABLE READ, READ ONLY).
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

#include "worker_frame.h"
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


static void
chat_answer(chat_outbox_t *out, const chat_request_t *req, json_t *frame)
{
    chat_outbox_to_session(out, chat_outbox_frame(out, frame), req->node,
                           req->sid);
}


static void
chat_answer_forbidden(chat_outbox_t *out, const chat_request_t *req)
{
    chat_answer(out, req, chat_frame_error_for(req, "forbidden",
                "not a member of this conversation"));
}


static chat_pg_rc_t
chat_read_history(chat_store_t *st, chat_request_t *req, chat_outbox_t *out)
{
    const char      *params[5];
    char             bound[24], limit[24], lo[24], hi[24];
    int64_t          from = 0, to = INT64_MAX;
    json_t          *frame, *messages;
    chat_message_t   m;
    PGresult        *res = NULL;
    chat_pg_rc_t     rc;
    int              row, nrows, first, last, step;
    bool             has_more;

    switch (chat_direct_access(req->conv, req->user)) {

    case NGX_CHAT_WIRE_FORBIDDEN:
        chat_answer_forbidden(out, req);
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
            chat_answer_forbidden(out, req);
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
    has_more = nrows > req->limit;
    if (has_more) {
        nrows = (int) req->limit;
    }

    /* history_before comes newest first: turn it around */
    if (req->after_seq >= 0) {
        first = 0, last = nrows, step = 1;
    } else {
        first = nrows - 1, last = -1, step = -1;
    }

    messages = json_array();

    for (row = first; row != last; row += step) {
        chat_pg_message(res, row, 0, &m);
        json_array_append_new(messages, chat_frame_message_object(&m, false));
    }

    PQclear(res);

    frame = json_object();
    json_object_set_new(frame, "type", json_string("history"));
    if (req->req_id) {
        json_object_set(frame, "req_id", req->req_id);
    }
    json_object_set_new(frame, "conversation_id", json_string(req->conv));
    json_object_set_new(frame, "messages", messages);
    json_object_set_new(frame, "has_more", json_boolean(has_more));

    chat_answer(out, req, frame);

    return CHAT_PG_OK;
}


static int64_t
chat_sync_cursor(chat_request_t *req, const char *conv)
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
chat_read_sync(chat_store_t *st, chat_request_t *req, chat_outbox_t *out)
{
    chat_buf_t      *convs = &st->arrays[0], *cursors = &st->arrays[1];
    chat_buf_t      *uppers = &st->arrays[2];
    const char      *params[4];
    char             cap[24];
    json_t          *frame, *items, *item, *pending;
    chat_message_t   m;
    PGresult        *list = NULL, *msgs = NULL;
    chat_pg_rc_t     rc;
    int              row, nconvs, nmsgs, start, end, i;
    int64_t          last_seq, from;
    size_t           asked = 0, k;

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

    /* the messages come grouped by conversation in list order */
    items = json_array();
    pending = json_array();
    i = 0;

    for (row = 0; row < nconvs; row++) {
        const char  *conv = PQgetvalue(list, row, 0);

        item = json_object();
        json_object_set_new(item, "conversation_id", json_string(conv));
        json_object_set_new(item, "kind",
                            json_string(PQgetvalue(list, row, 1)));
        json_object_set_new(item, "name",
                            PQgetisnull(list, row, 2)
                            ? json_null()
                            : json_string(PQgetvalue(list, row, 2)));
        json_object_set_new(item, "member_count",
                            json_integer(chat_pg_int(list, row, 6)));
        json_object_set_new(item, "last_seq",
                            json_integer(chat_pg_int(list, row, 3)));
        json_object_set_new(item, "delivered_seq",
                            json_integer(chat_pg_int(list, row, 4)));
        json_object_set_new(item, "read_seq",
                            json_integer(chat_pg_int(list, row, 5)));
        json_object_set_new(item, "unread",
                            json_integer(chat_pg_int(list, row, 7)));

        if (PQgetisnull(list, row, 8)) {
            json_object_set_new(item, "last_message", json_null());

        } else {
            chat_pg_message(list, row, 8, &m);
            json_object_set_new(item, "last_message",
                                chat_frame_message_object(&m, false));
        }

        start = i;
        while (i < nmsgs && strcmp(PQgetvalue(msgs, i, 0), conv) == 0) {
            i++;
        }
        end = i;

        if (end - start > NGX_CHAT_WIRE_SYNC_CAP) {
            /* ascending: the oldest one is the one over the cap */
            start = end - NGX_CHAT_WIRE_SYNC_CAP;
            json_object_set_new(item, "truncated", json_true());
        }

        for (k = start; k < (size_t) end; k++) {
            chat_pg_message(msgs, (int) k, 0, &m);
            json_array_append_new(pending,
                                  chat_frame_message_object(&m, true));
        }

        json_array_append_new(items, item);
    }

    PQclear(list);
    PQclear(msgs);

    frame = json_object();
    json_object_set_new(frame, "type", json_string("conversations"));
    if (req->req_id) {
        json_object_set(frame, "req_id", req->req_id);
    }
    json_object_set_new(frame, "items", items);
    chat_answer(out, req, frame);

    for (k = 0; k < json_array_size(pending); k++) {
        chat_answer(out, req, json_incref(json_array_get(pending, k)));
    }

    json_decref(pending);

    frame = json_object();
    json_object_set_new(frame, "type", json_string("sync_done"));
    if (req->req_id) {
        json_object_set(frame, "req_id", req->req_id);
    }
    chat_answer(out, req, frame);

    return CHAT_PG_OK;
}


typedef struct {
    chat_request_t  **reads;
    size_t            n;
    chat_outbox_t    *out;
    size_t            nframes;      /* the outbox before the attempt */
    size_t            ndeliveries;
} chat_reads_args_t;


static chat_pg_rc_t
chat_reads_attempt(chat_store_t *st, void *data)
{
    chat_reads_args_t  *a = data;
    chat_pg_rc_t        rc;
    size_t              i;

    a->nframes = a->out->nframes;
    a->ndeliveries = a->out->ndeliveries;

    /* one snapshot for all reads of the batch */
    rc = chat_pg_command(st,
             "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    for (i = 0; i < a->n; i++) {
        rc = a->reads[i]->op == NGX_CHAT_WIRE_OP_SYNC
             ? chat_read_sync(st, a->reads[i], a->out)
             : chat_read_history(st, a->reads[i], a->out);

        if (rc != CHAT_PG_OK) {
            return rc;
        }
    }

    return chat_pg_command(st, "COMMIT");
}


static void
chat_reads_undo(void *data)
{
    chat_reads_args_t  *a = data;

    chat_outbox_truncate(a->out, a->nframes, a->ndeliveries);
}


chat_store_rc_t
chat_store_reads(chat_store_t *st, chat_request_t **reads, size_t n,
    chat_outbox_t *out)
{
    chat_reads_args_t  args = { reads, n, out, 0, 0 };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_reads_attempt, chat_reads_undo, &args);
}
