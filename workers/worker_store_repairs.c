/*
 * worker_store_repairs.c: a node's gap, read again: the messages that the
 * Kafka records (after, upto] of one partition stored, since the node
 * started, in offset order (one conversation stays in one partition, so
 * this is its seq order), with the device that sent each; and the members,
 * past and present, of the groups among them, so that the fan-out can
 * tell who was a member at each message's seq; and the attachments of
 * the text messages, as history has them (the live frame had them).
 * Statements on the index of sql/010_messages_by_offset.sql and on the
 * attachments' own; nothing is written.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_repairs_sql[] = {

    { "repair_messages",
      "SELECT device_id, " CHAT_PG_MESSAGE_COLUMNS " FROM messages"
      " WHERE kafka_partition = $1 AND kafka_offset > $2"
      " AND kafka_offset <= $3 AND server_ts >= $4"
      " ORDER BY kafka_offset, seq LIMIT $5" },

    { "repair_members",
      "SELECT conversation_id, user_id, role = 'admin', joined_seq,"
      " COALESCE(removed_seq, -1) FROM members"
      " WHERE conversation_id = ANY($1::text[])"
      " ORDER BY conversation_id" },
};

const chat_pg_statements_t  chat_store_repairs_statements = {
    chat_repairs_sql, sizeof(chat_repairs_sql) / sizeof(chat_repairs_sql[0])
};


typedef struct {
    chat_repair_t  **repairs;
    size_t           n;
    chat_arena_t    *arena;
} chat_repairs_args_t;


static chat_pg_rc_t
chat_repair_messages(chat_store_t *st, chat_repair_t *r, chat_arena_t *arena)
{
    const chat_request_t  *req = r->req;
    const char            *params[5];
    char                   v[5][24];
    PGresult              *res = NULL;
    chat_message_t       **texts;
    chat_pg_rc_t           rc;
    size_t                 ntexts = 0;
    int                    row, nrows;

    snprintf(v[0], 24, "%" PRId64, req->repair.partition);
    snprintf(v[1], 24, "%" PRId64, req->repair.after);
    snprintf(v[2], 24, "%" PRId64, req->repair.upto);
    snprintf(v[3], 24, "%" PRId64, req->repair.since);
    snprintf(v[4], 24, "%d", CHAT_REPAIR_ROWS_MAX + 1);

    for (row = 0; row < 5; row++) {
        params[row] = v[row];
    }

    rc = chat_pg_run(st, "repair_messages", 5, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);

    if (nrows > CHAT_REPAIR_ROWS_MAX) {
        r->too_large = true;
        PQclear(res);
        return CHAT_PG_OK;
    }

    r->rows = chat_arena_alloc(arena, (nrows + 1) * sizeof(chat_repair_row_t));
    texts = chat_arena_alloc(arena, (nrows + 1) * sizeof(chat_message_t *));
    r->n = 0;

    for (row = 0; row < nrows; row++) {
        chat_repair_row_t  *x = &r->rows[r->n++];

        x->device = chat_arena_strdup(arena, chat_pg_text(res, row, 0));
        chat_pg_message(res, row, 1, &x->msg);
        chat_pg_message_keep(&x->msg, arena);

        if (strcmp(x->msg.kind, "text") == 0) {
            texts[ntexts++] = &x->msg;
        }
    }

    PQclear(res);

    /* a message goes out again as its live frame had it: with its
     * attachments */
    return chat_pg_attachments_of(st, texts, ntexts, arena);
}


/* the members of the groups among the rows, one list per group */
static chat_pg_rc_t
chat_repair_members(chat_store_t *st, chat_repair_t *r, chat_arena_t *arena)
{
    chat_buf_t     *convs = &st->arrays[0];
    const char     *params[1], *conv;
    chat_map_t      asked = { 0 };
    chat_members_t *g;
    PGresult       *res = NULL;
    chat_pg_rc_t    rc;
    size_t          i, nasked = 0;
    int             row, nrows;

    chat_pg_array_begin(convs);

    for (i = 0; i < r->n; i++) {
        conv = r->rows[i].msg.conv;

        if (!chat_is_dm_id(conv) && chat_map_put(&asked, conv, nasked)
                                    == nasked)
        {
            chat_pg_array_text(convs, conv);
            nasked++;
        }
    }

    chat_map_free(&asked);

    if (nasked == 0) {
        return CHAT_PG_OK;
    }

    params[0] = chat_pg_array_end(convs);

    rc = chat_pg_run(st, "repair_members", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    r->groups = chat_arena_alloc(arena, (nasked + 1) * sizeof(chat_members_t));
    r->ngroups = 0;
    g = NULL;

    for (row = 0; row < nrows; row++) {
        conv = PQgetvalue(res, row, 0);

        if (g == NULL || strcmp(g->conv, conv) != 0) {
            /* rows of one conversation come together (ORDER BY) */
            g = &r->groups[r->ngroups++];
            g->conv = chat_arena_strdup(arena, conv);
            g->members = chat_arena_alloc(arena, (nrows - row)
                                                 * sizeof(chat_member_t));
            g->n = 0;
        }

        g->members[g->n].user = chat_arena_strdup(arena,
                                                  PQgetvalue(res, row, 1));
        g->members[g->n].admin = PQgetvalue(res, row, 2)[0] == 't';
        g->members[g->n].joined_seq = chat_pg_int(res, row, 3);
        g->members[g->n].removed_seq = chat_pg_int(res, row, 4);
        g->n++;
    }

    PQclear(res);

    return CHAT_PG_OK;
}


static chat_pg_rc_t
chat_repairs_attempt(chat_store_t *st, void *data)
{
    chat_repairs_args_t  *a = data;
    chat_pg_rc_t          rc;
    size_t                i;

    for (i = 0; i < a->n; i++) {
        a->repairs[i]->too_large = false;
        a->repairs[i]->n = 0;
        a->repairs[i]->ngroups = 0;

        rc = chat_repair_messages(st, a->repairs[i], a->arena);

        if (rc == CHAT_PG_OK && !a->repairs[i]->too_large) {
            rc = chat_repair_members(st, a->repairs[i], a->arena);
        }

        if (rc != CHAT_PG_OK) {
            return rc;
        }
    }

    return CHAT_PG_OK;
}


chat_store_rc_t
chat_store_repairs(chat_store_t *st, chat_repair_t **r, size_t n,
    chat_arena_t *arena)
{
    chat_repairs_args_t  args = { r, n, arena };

    return chat_pg_retry(st, chat_repairs_attempt, &args);
}
