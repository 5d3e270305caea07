/*
 * worker_store_uploads.c: the uploads a batch announced, one row each,
 * in one transaction. The attachment id is the module's (random, signed
 * into the PUT URL), so a record consumed again finds its own row and
 * changes nothing.
 */

#include <stdio.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_uploads_sql[] = {

    { "upload_insert",
      "INSERT INTO attachments (attachment_id, conversation_id, uploader_id,"
      " device_id, content_type, size, name, created_at)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
      " ON CONFLICT (attachment_id) DO NOTHING" },

    { "upload_rows",
      "SELECT attachment_id, conversation_id, uploader_id, size,"
      " message_id IS NOT NULL, json_build_object('attachment_id',"
      " attachment_id, 'content_type', content_type, 'size', size, 'name',"
      " name, 'width', width, 'height', height)::text,"
      " (SELECT m.client_msg_id FROM messages m"
      "  WHERE m.message_id = a.message_id AND m.sender_id = a.uploader_id),"
      " content_type, width IS NOT NULL, name"
      " FROM attachments a WHERE attachment_id = ANY($1::text[])" },

    /* what history and sync show of their messages' attachments */
    { "message_attachments",
      "SELECT message_id, json_agg(json_build_object('attachment_id',"
      " attachment_id, 'content_type', content_type, 'size', size, 'name',"
      " name, 'width', width, 'height', height) ORDER BY position)::text"
      " FROM attachments WHERE message_id = ANY($1::bigint[])"
      " GROUP BY message_id" },

    /* uploads never attached, oldest first, a bounded number at a time */
    { "upload_stale",
      "DELETE FROM attachments WHERE attachment_id IN ("
      " SELECT attachment_id FROM attachments"
      " WHERE message_id IS NULL AND created_at < $1"
      " ORDER BY created_at LIMIT 1000 FOR UPDATE SKIP LOCKED)"
      " RETURNING attachment_id" },

    { "upload_dims",
      "UPDATE attachments SET width = $2, height = $3"
      " WHERE attachment_id = $1" },
};

const chat_pg_statements_t  chat_store_uploads_statements = {
    chat_uploads_sql, sizeof(chat_uploads_sql) / sizeof(chat_uploads_sql[0])
};


typedef struct {
    chat_upload_op_t  **ops;
    size_t              n;
} chat_uploads_args_t;


static chat_pg_rc_t
chat_uploads_attempt(chat_store_t *st, void *data)
{
    chat_uploads_args_t   *a = data;
    const chat_request_t  *req;
    const char            *params[8];
    char                   size[24], ts[24];
    chat_pg_rc_t           rc;
    size_t                 i;

    rc = chat_pg_command(st, "BEGIN");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    for (i = 0; i < a->n; i++) {
        if (!a->ops[i]->allowed) {
            continue;
        }

        req = a->ops[i]->req;
        snprintf(size, sizeof(size), "%lld", (long long) req->upload.size);
        snprintf(ts, sizeof(ts), "%lld", (long long) req->ts);

        params[0] = req->upload.id;
        params[1] = req->conv;
        params[2] = req->user;
        params[3] = req->dev;
        params[4] = req->upload.content_type;
        params[5] = size;
        params[6] = req->name;
        params[7] = ts;

        rc = chat_pg_run(st, "upload_insert", 8, params, NULL);
        if (rc != CHAT_PG_OK) {
            return rc;
        }
    }

    return chat_pg_command(st, "COMMIT");
}


chat_store_rc_t
chat_store_uploads(chat_store_t *st, chat_upload_op_t **ops, size_t n)
{
    chat_uploads_args_t  args = { ops, n };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_uploads_attempt, &args);
}


typedef struct {
    const char       **ids;
    size_t             n;
    chat_upload_row_t **rows;
    size_t            *nrows;
    chat_arena_t      *arena;
} chat_upload_rows_args_t;


static chat_pg_rc_t
chat_upload_rows_attempt(chat_store_t *st, void *data)
{
    chat_upload_rows_args_t  *a = data;
    chat_buf_t               *ids = &st->arrays[0];
    chat_upload_row_t        *r;
    const char               *params[1];
    PGresult                 *res = NULL;
    chat_pg_rc_t              rc;
    size_t                    i;
    int                       row, nrows;

    chat_pg_array_begin(ids);

    for (i = 0; i < a->n; i++) {
        chat_pg_array_text(ids, a->ids[i]);
    }

    params[0] = chat_pg_array_end(ids);

    rc = chat_pg_run(st, "upload_rows", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    *a->rows = chat_arena_alloc(a->arena,
                                (nrows + 1) * sizeof(chat_upload_row_t));
    *a->nrows = (size_t) nrows;

    for (row = 0; row < nrows; row++) {
        r = &(*a->rows)[row];
        r->id = chat_arena_strdup(a->arena, PQgetvalue(res, row, 0));
        r->conv = chat_arena_strdup(a->arena, PQgetvalue(res, row, 1));
        r->uploader = chat_arena_strdup(a->arena, PQgetvalue(res, row, 2));
        r->size = chat_pg_int(res, row, 3);
        r->attached = PQgetvalue(res, row, 4)[0] == 't';
        r->json = chat_arena_strdup(a->arena, PQgetvalue(res, row, 5));
        r->content_type = chat_arena_strdup(a->arena,
                                            PQgetvalue(res, row, 7));
        r->has_dims = PQgetvalue(res, row, 8)[0] == 't';
        r->name = chat_arena_strdup(a->arena, PQgetvalue(res, row, 9));
        r->attached_cmid = PQgetisnull(res, row, 6)
                           ? NULL
                           : chat_arena_strdup(a->arena,
                                               PQgetvalue(res, row, 6));
    }

    PQclear(res);

    return CHAT_PG_OK;
}


chat_store_rc_t
chat_store_upload_rows(chat_store_t *st, const char **ids, size_t n,
    chat_upload_row_t **rows, size_t *nrows, chat_arena_t *arena)
{
    chat_upload_rows_args_t  args = { ids, n, rows, nrows, arena };

    *rows = NULL;
    *nrows = 0;

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_upload_rows_attempt, &args);
}


/* the attachments of messages[0..n-1], inside the read's transaction */
chat_pg_rc_t
chat_pg_attachments(chat_store_t *st, chat_message_t *messages, size_t n,
    chat_arena_t *arena)
{
    chat_message_t  **each;
    size_t            i;

    if (n == 0) {
        return CHAT_PG_OK;
    }

    each = chat_arena_alloc(arena, n * sizeof(chat_message_t *));

    for (i = 0; i < n; i++) {
        each[i] = &messages[i];
    }

    return chat_pg_attachments_of(st, each, n, arena);
}


chat_pg_rc_t
chat_pg_attachments_of(chat_store_t *st, chat_message_t **messages, size_t n,
    chat_arena_t *arena)
{
    chat_buf_t    *ids = &st->arrays[9];
    const char    *params[1];
    chat_map_t     index = { 0 };
    PGresult      *res = NULL;
    chat_pg_rc_t   rc;
    char           key[24];
    size_t         i, k;
    int            row;

    if (n == 0) {
        return CHAT_PG_OK;
    }

    chat_pg_array_begin(ids);

    for (i = 0; i < n; i++) {
        chat_pg_array_int(ids, messages[i]->message_id);
    }

    params[0] = chat_pg_array_end(ids);

    rc = chat_pg_run(st, "message_attachments", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) > 0) {
        for (i = 0; i < n; i++) {
            snprintf(key, sizeof(key), "%lld",
                     (long long) messages[i]->message_id);
            chat_map_put(&index, chat_arena_strdup(arena, key), i);
        }

        for (row = 0; row < PQntuples(res); row++) {
            if (chat_map_get(&index, PQgetvalue(res, row, 0), &k)) {
                messages[k]->attachments = chat_arena_strdup(arena,
                                                 PQgetvalue(res, row, 1));
            }
        }
    }

    chat_map_free(&index);
    PQclear(res);

    return CHAT_PG_OK;
}


typedef struct {
    const char  *id;
    int          width;
    int          height;
} chat_upload_dims_args_t;


static chat_pg_rc_t
chat_upload_dims_attempt(chat_store_t *st, void *data)
{
    chat_upload_dims_args_t  *a = data;
    const char               *params[3];
    char                      w[16], h[16];

    snprintf(w, sizeof(w), "%d", a->width);
    snprintf(h, sizeof(h), "%d", a->height);
    params[0] = a->id;
    params[1] = w;
    params[2] = h;

    return chat_pg_run(st, "upload_dims", 3, params, NULL);
}


chat_store_rc_t
chat_store_upload_dims(chat_store_t *st, const char *id, int width,
    int height)
{
    chat_upload_dims_args_t  args = { id, width, height };

    return chat_pg_retry(st, chat_upload_dims_attempt, &args);
}


typedef struct {
    int64_t        before;
    char        ***ids;
    size_t        *n;
    chat_arena_t  *arena;
} chat_upload_stale_args_t;


static chat_pg_rc_t
chat_upload_stale_attempt(chat_store_t *st, void *data)
{
    chat_upload_stale_args_t  *a = data;
    const char                *params[1];
    char                       before[24];
    PGresult                  *res = NULL;
    chat_pg_rc_t               rc;
    int                        row;

    snprintf(before, sizeof(before), "%lld", (long long) a->before);
    params[0] = before;

    rc = chat_pg_run(st, "upload_stale", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    *a->n = (size_t) PQntuples(res);
    *a->ids = chat_arena_alloc(a->arena, (*a->n + 1) * sizeof(char *));

    for (row = 0; row < PQntuples(res); row++) {
        (*a->ids)[row] = chat_arena_strdup(a->arena, PQgetvalue(res, row, 0));
    }

    PQclear(res);

    return CHAT_PG_OK;
}


chat_store_rc_t
chat_store_stale_uploads(chat_store_t *st, int64_t before, char ***ids,
    size_t *n, chat_arena_t *arena)
{
    chat_upload_stale_args_t  args = { before, ids, n, arena };

    *ids = NULL;
    *n = 0;

    return chat_pg_retry(st, chat_upload_stale_attempt, &args);
}
