/*
 * worker_store_search.c: the search read, one of the reads of a batch's
 * snapshot (worker_store_reads.c runs it).
 *
 * PostgreSQL's full-text search over the vectors of message_search
 * (sql/044_search_table.sql: text bodies and the names of their
 * attachments, sql/043_search_attachments.sql; none for deleted or
 * redacted messages, changes or system messages), through its GIN index,
 * written a moment after each send (worker_store_index.c); the messages
 * rows are checked again, so that nothing deleted or redacted shows even
 * before its vector goes. Restricted to what the user
 * may read: the conversations it is a member of, from its joining to its
 * removal (a removed member finds what it could read until then, nothing
 * after). Newest first by message id, which is also the next page's
 * bound; the page is cut before the highlights are made, so that
 * ts_headline runs on the rows answered only (on their bodies and the
 * names of their attachments). The query is a web-search style one
 * (words, "quoted phrases", -excluded, or), in the database's text search
 * configuration.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_search_sql[] = {

    { "search_member",
      "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2" },

    /* $1 user, $2 query, $3 conversation or NULL, $4 before this message
     * id, $5 rows; each row then has the excerpt of its body and, when
     * it has attachments, [name, chat_search_name(name) marked, name
     * marked] for each (marked whole: names are short) */
    { "search",
      "SELECT s." CHAT_PG_MESSAGE_COLUMNS ","
      " ts_headline(chat_search_config(), s.body,"
      "  websearch_to_tsquery(chat_search_config(), $2),"
      "  'StartSel=<b>, StopSel=</b>, MaxWords=30, MinWords=10,"
      "  MaxFragments=2'),"
      " (SELECT json_agg(json_build_array(a.name,"
      "   ts_headline(chat_search_config(), chat_search_name(a.name),"
      "    websearch_to_tsquery(chat_search_config(), $2),"
      "    'HighlightAll=true, StartSel=<b>, StopSel=</b>'),"
      "   ts_headline(chat_search_config(), a.name,"
      "    websearch_to_tsquery(chat_search_config(), $2),"
      "    'HighlightAll=true, StartSel=<b>, StopSel=</b>'))"
      "   ORDER BY a.position)::text"
      "  FROM attachments a"
      "  WHERE s.attachment_names IS NOT NULL"
      "  AND a.message_id = s.message_id)"
      " FROM (SELECT m.* FROM members b"
      "  JOIN message_search x ON x.conversation_id = b.conversation_id"
      "  JOIN messages m ON m.message_id = x.message_id"
      "  WHERE b.user_id = $1"
      "  AND ($3::text IS NULL OR b.conversation_id = $3::text)"
      "  AND x.search @@ websearch_to_tsquery(chat_search_config(), $2)"
      "  AND x.seq >= b.joined_seq"
      "  AND (b.removed_seq IS NULL OR x.seq <= b.removed_seq)"
      "  AND x.message_id < $4"
      "  AND m.kind = 'text' AND NOT m.deleted AND m.redacted_at IS NULL"
      "  ORDER BY x.message_id DESC LIMIT $5) AS s"
      " ORDER BY s.message_id DESC" },
};

const chat_pg_statements_t  chat_store_search_statements = {
    chat_search_sql, sizeof(chat_search_sql) / sizeof(chat_search_sql[0])
};


/*
 * A name's marks put on the name as written: marked is its
 * chat_search_name() (byte for byte the name, its punctuation spaces)
 * with <b> and </b> in it, which that cannot otherwise hold ('<' and '>'
 * are punctuation). NULL when marked is not that.
 */
static const char *
chat_search_mark_name(const char *name, const char *marked,
    chat_arena_t *arena)
{
    char    *out, *p;
    size_t   len = strlen(marked), i = 0, j = 0;

    p = out = chat_arena_alloc(arena, len + 1);

    while (i < len) {
        if (strncmp(marked + i, "<b>", 3) == 0) {
            memcpy(p, "<b>", 3);
            p += 3, i += 3;
            continue;
        }

        if (strncmp(marked + i, "</b>", 4) == 0) {
            memcpy(p, "</b>", 4);
            p += 4, i += 4;
            continue;
        }

        if (name[j] == '\0' || (name[j] != marked[i] && marked[i] != ' ')) {
            return NULL;
        }

        *p++ = name[j++];
        i++;
    }

    if (name[j] != '\0') {
        return NULL;
    }

    *p = '\0';

    return out;
}


/*
 * A result's highlight: the excerpt of its body, then the names of its
 * attachments that hold a match, one a line; the body's excerpt only when
 * it holds a match or no name does. A whole name ("report.pdf" is one
 * word to the parser) is marked whole.
 */
static const char *
chat_search_highlight(const char *body, const char *names,
    chat_arena_t *arena)
{
    const char  *name, *split, *whole, *part, *out;
    chat_buf_t   b = { 0 };
    json_t      *list, *item;
    size_t       i, nparts = 0;

    if (strstr(body, "<b>")) {
        chat_buf_adds(&b, body);
        nparts++;
    }

    list = names ? json_loads(names, 0, NULL) : NULL;

    json_array_foreach(list, i, item) {
        name = json_string_value(json_array_get(item, 0));
        split = json_string_value(json_array_get(item, 1));
        whole = json_string_value(json_array_get(item, 2));

        if (name == NULL || split == NULL || whole == NULL) {
            continue;
        }

        if (strstr(split, "<b>")) {
            part = chat_search_mark_name(name, split, arena);
            part = part ? part : split;

        } else if (strstr(whole, "<b>")) {
            part = whole;

        } else {
            continue;
        }

        if (nparts++ > 0) {
            chat_buf_addc(&b, '\n');
        }

        chat_buf_adds(&b, part);
    }

    json_decref(list);

    out = chat_arena_strdup(arena, nparts > 0 ? chat_buf_cstr(&b) : body);
    chat_buf_free(&b);

    return out;
}


chat_pg_rc_t
chat_read_search(chat_store_t *st, chat_read_t *read, chat_arena_t *arena)
{
    const chat_request_t  *req = read->req;
    chat_search_rows_t    *s = &read->search;
    chat_message_t       **with;
    const char            *params[5], *names;
    char                   before[24], limit[24];
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    size_t                 nwith = 0;
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
    with = chat_arena_alloc(arena, (nrows + 1) * sizeof(chat_message_t *));

    for (row = 0; row < nrows; row++) {
        chat_search_row_t  *r = &s->rows[s->n++];

        chat_pg_message(res, row, 0, &r->msg);
        chat_pg_message_keep(&r->msg, arena);

        names = chat_pg_text(res, row, CHAT_PG_MESSAGE_NCOLUMNS + 1);
        r->highlight = chat_search_highlight(
                           PQgetvalue(res, row, CHAT_PG_MESSAGE_NCOLUMNS),
                           names, arena);

        if (names) {
            with[nwith++] = &r->msg;
        }
    }

    PQclear(res);

    /* each as history shows it: with its attachments */
    return chat_pg_attachments_of(st, with, nwith, arena);
}
