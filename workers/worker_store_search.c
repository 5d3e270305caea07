/*
 * worker_store_search.c: the search read, one of the reads of a batch's
 * snapshot (worker_store_reads.c runs it).
 *
 * PostgreSQL's full-text search over the generated column messages.search
 * (sql/032_search.sql: text bodies, none for deleted messages, changes or
 * system messages), through its GIN index, restricted to what the user
 * may read: the conversations it is a member of, from its joining to its
 * removal (a removed member finds what it could read until then, nothing
 * after). Newest first by message id, which is also the next page's
 * bound; the page is cut before the highlights are made, so that
 * ts_headline runs on the rows answered only. The query is a web-search
 * style one (words, "quoted phrases", -excluded, or), in the database's
 * text search configuration.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_search_sql[] = {

    { "search_member",
      "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2" },

    /* $1 user, $2 query, $3 conversation or NULL, $4 before this message
     * id, $5 rows */
    { "search",
      "SELECT s." CHAT_PG_MESSAGE_COLUMNS ","
      " ts_headline(chat_search_config(), s.body,"
      "  websearch_to_tsquery(chat_search_config(), $2),"
      "  'StartSel=<b>, StopSel=</b>, MaxWords=30, MinWords=10,"
      "  MaxFragments=2')"
      " FROM (SELECT m.* FROM members b"
      "  JOIN messages m ON m.conversation_id = b.conversation_id"
      "  WHERE b.user_id = $1"
      "  AND ($3::text IS NULL OR b.conversation_id = $3::text)"
      "  AND m.search @@ websearch_to_tsquery(chat_search_config(), $2)"
      "  AND m.seq >= b.joined_seq"
      "  AND (b.removed_seq IS NULL OR m.seq <= b.removed_seq)"
      "  AND m.message_id < $4"
      "  ORDER BY m.message_id DESC LIMIT $5) AS s"
      " ORDER BY s.message_id DESC" },
};

const chat_pg_statements_t  chat_store_search_statements = {
    chat_search_sql, sizeof(chat_search_sql) / sizeof(chat_search_sql[0])
};


chat_pg_rc_t
chat_read_search(chat_store_t *st, chat_read_t *read, chat_arena_t *arena)
{
    const chat_request_t  *req = read->req;
    chat_search_rows_t    *s = &read->search;
    const char            *params[5];
    char                   before[24], limit[24];
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    int                    row, nrows;

    if (req->conv) {
        switch (chat_direct_access(req->conv, req->user)) {

        case NGX_CHAT_WIRE_FORBIDDEN:
            s->forbidden = true;
            return CHAT_PG_OK;

        case NGX_CHAT_WIRE_ASK_STORE:
            params[0] = req->conv;
            params[1] = req->user;

            rc = chat_pg_run(st, "search_member", 2, params, &res);
            if (rc != CHAT_PG_OK) {
                return rc;
            }

            s->forbidden = PQntuples(res) == 0;
            PQclear(res);

            if (s->forbidden) {
                return CHAT_PG_OK;
            }

            break;

        case NGX_CHAT_WIRE_ALLOWED:
            break;
        }
    }

    snprintf(before, sizeof(before), "%" PRId64,
             req->before_mid > 0 ? req->before_mid : INT64_MAX);
    snprintf(limit, sizeof(limit), "%" PRId64, req->limit + 1);

    params[0] = req->user;
    params[1] = req->query;
    params[2] = req->conv;
    params[3] = before;
    params[4] = limit;

    rc = chat_pg_run(st, "search", 5, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    s->has_more = nrows > req->limit;
    if (s->has_more) {
        nrows = (int) req->limit;
    }

    s->rows = chat_arena_alloc(arena, (nrows + 1) * sizeof(chat_search_row_t));

    for (row = 0; row < nrows; row++) {
        chat_search_row_t  *r = &s->rows[s->n++];

        chat_pg_message(res, row, 0, &r->msg);
        chat_pg_message_keep(&r->msg, arena);
        r->highlight = chat_arena_strdup(arena,
                                         PQgetvalue(res, row,
                                                    CHAT_PG_MESSAGE_NCOLUMNS));
    }

    PQclear(res);

    return CHAT_PG_OK;
}
