/*
 * worker_store_admin.c: the operators' ops in PostgreSQL: revocations
 * (the revocations table, sql/020_revocations.sql, and the reading of it
 * whole that Redis's chat:revoked is written from) and redactions (a
 * message's text erased, the message kept and marked, and a system
 * message in its conversation's seq stream that tells its members).
 *
 * Both are idempotent on their Kafka record: a revocation is keyed by
 * (user, device, time), and a redaction's system message carries the
 * record's partition and offset, so that a record consumed again (its
 * worker died before committing the offset) is answered again instead of
 * being judged again.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_admin_sql[] = {

    { "admin_revoke",
      "INSERT INTO revocations (user_id, device_id, revoked_at, admin,"
      " kafka_partition, kafka_offset) VALUES ($1, $2, $3, $4, $5, $6)"
      " ON CONFLICT DO NOTHING" },

    { "admin_revocations",
      "SELECT user_id, device_id, max(revoked_at) FROM revocations"
      " GROUP BY user_id, device_id" },

    { "admin_lock",
      "SELECT last_seq FROM conversations WHERE id = $1 FOR UPDATE" },

    /* locked before the erase's statement begins, so that its snapshot
     * has whatever the search indexing wrote before the lock came
     * (worker_store_index.c) */
    { "admin_target",
      "SELECT kind, redacted_at IS NOT NULL FROM messages"
      " WHERE conversation_id = $1 AND message_id = $2 FOR UPDATE" },

    { "admin_replayed",
      "SELECT " CHAT_PG_MESSAGE_COLUMNS " FROM messages"
      " WHERE conversation_id = $1 AND seq > $2 AND kind = 'system'"
      " AND kafka_partition = $3 AND kafka_offset = $4" },

    /* the names of its attachments and its search vector go with the
     * text, and the uploads are no one's: the sweep removes them and
     * their files */
    { "admin_erase",
      "WITH f AS (DELETE FROM message_search WHERE message_id = $2)"
      " UPDATE messages SET body = '', redacted_at = $3, redacted_by = $4,"
      " attachment_names = NULL"
      " WHERE conversation_id = $1 AND message_id = $2" },

    { "admin_erase_attachments",
      "UPDATE attachments SET name = '', uploader_id = '', message_id = NULL,"
      " position = NULL, created_at = 0 WHERE message_id = $1" },

    { "admin_advance",
      "UPDATE conversations SET last_seq = $2,"
      " last_activity = GREATEST(last_activity, $3) WHERE id = $1" },

    { "admin_event",
      "INSERT INTO messages (conversation_id, seq, sender_id, device_id,"
      " kind, body, server_ts, kafka_partition, kafka_offset)"
      " VALUES ($1, $2, $3, $4, 'system', $5, $6, $7, $8)"
      " RETURNING message_id" },
};

const chat_pg_statements_t  chat_store_admin_statements = {
    chat_admin_sql, sizeof(chat_admin_sql) / sizeof(chat_admin_sql[0])
};


/* ---- revocations ---- */

typedef struct {
    const chat_request_t  *const *reqs;
    size_t                        n;
} chat_revoke_args_t;


static chat_pg_rc_t
chat_revoke_attempt(chat_store_t *st, void *data)
{
    chat_revoke_args_t    *a = data;
    const chat_request_t  *req;
    const char            *params[6];
    char                   ms[24], part[24], off[24];
    chat_pg_rc_t           rc;
    size_t                 i;

    rc = chat_pg_command(st, "BEGIN");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    for (i = 0; i < a->n; i++) {
        req = a->reqs[i];

        snprintf(ms, sizeof(ms), "%" PRId64, req->ts);
        snprintf(part, sizeof(part), "%" PRId32, req->partition);
        snprintf(off, sizeof(off), "%" PRId64, req->offset);

        params[0] = req->target;
        params[1] = req->target_dev ? req->target_dev : "";
        params[2] = ms;
        params[3] = req->admin;
        params[4] = part;
        params[5] = off;

        rc = chat_pg_run(st, "admin_revoke", 6, params, NULL);
        if (rc != CHAT_PG_OK) {
            return rc;
        }
    }

    return chat_pg_command(st, "COMMIT");
}


chat_store_rc_t
chat_store_revoke(chat_store_t *st, const chat_request_t *const *reqs,
    size_t n)
{
    chat_revoke_args_t  args = { reqs, n };

    return chat_pg_retry(st, chat_revoke_attempt, &args);
}


typedef struct {
    chat_revocation_t  **rows;
    size_t              *n;
    chat_arena_t        *arena;
} chat_revocations_args_t;


static chat_pg_rc_t
chat_revocations_attempt(chat_store_t *st, void *data)
{
    chat_revocations_args_t  *a = data;
    chat_revocation_t        *rows;
    const char               *dev;
    PGresult                 *res = NULL;
    chat_pg_rc_t              rc;
    int                       i, nrows;

    rc = chat_pg_run(st, "admin_revocations", 0, NULL, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    rows = chat_arena_alloc(a->arena, (nrows + 1) * sizeof(chat_revocation_t));

    for (i = 0; i < nrows; i++) {
        dev = PQgetvalue(res, i, 1);

        rows[i].user = chat_arena_strdup(a->arena, PQgetvalue(res, i, 0));
        rows[i].device = dev[0] ? chat_arena_strdup(a->arena, dev) : NULL;
        rows[i].ms = chat_pg_int(res, i, 2);
    }

    PQclear(res);

    *a->rows = rows;
    *a->n = (size_t) nrows;

    return CHAT_PG_OK;
}


chat_store_rc_t
chat_store_revocations(chat_store_t *st, chat_revocation_t **rows,
    size_t *n, chat_arena_t *arena)
{
    chat_revocations_args_t  args = { rows, n, arena };

    *rows = NULL;
    *n = 0;

    return chat_pg_retry(st, chat_revocations_attempt, &args);
}


/* ---- redactions ---- */

typedef struct {
    chat_redact_t  *r;
    chat_arena_t   *arena;
} chat_redact_args_t;


/* the system message that tells the members, at seq */
static chat_pg_rc_t
chat_redact_event(chat_store_t *st, chat_redact_t *r, int64_t seq,
    int64_t now, chat_arena_t *arena)
{
    const chat_request_t  *req = r->req;
    const char            *params[8];
    char                   seq_text[24], now_text[24], part[24], off[24];
    char                   id[24], *text;
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    json_t                *body;

    snprintf(id, sizeof(id), "%" PRId64, req->message_id);

    /* by whom: an operator, by the name chatctl gave */
    body = json_pack("{s:s,s:s,s:s,s:b}", "event", "message_redacted",
                     "message_id", id, "by", req->admin, "operator", 1);
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);

    if (text == NULL) {
        log_error("cannot serialize a system message");
        abort();
    }

    snprintf(seq_text, sizeof(seq_text), "%" PRId64, seq);
    snprintf(now_text, sizeof(now_text), "%" PRId64, now);
    snprintf(part, sizeof(part), "%" PRId32, req->partition);
    snprintf(off, sizeof(off), "%" PRId64, req->offset);

    r->msg.conv = req->conv;
    r->msg.seq = seq;
    r->msg.sender = req->user;
    r->msg.cmid = NULL;
    r->msg.kind = "system";
    r->msg.body = chat_arena_strdup(arena, text);
    r->msg.server_ts = now;
    free(text);

    params[0] = req->conv;
    params[1] = seq_text;
    params[2] = req->user;
    params[3] = req->dev;
    params[4] = r->msg.body;
    params[5] = now_text;
    params[6] = part;
    params[7] = off;

    rc = chat_pg_run(st, "admin_event", 8, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    r->msg.message_id = chat_pg_int(res, 0, 0);
    PQclear(res);

    params[1] = seq_text;
    params[2] = now_text;

    return chat_pg_run(st, "admin_advance", 3, params, NULL);
}


static chat_pg_rc_t
chat_redact_attempt(chat_store_t *st, void *data)
{
    chat_redact_args_t    *a = data;
    chat_redact_t         *r = a->r;
    const chat_request_t  *req = r->req;
    const char            *params[4];
    char                   id[24], from[24], part[24], off[24], now_text[24];
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    int64_t                last_seq, now = chat_now_ms();
    bool                   erased;

    r->rc = CHAT_REDACT_NOT_FOUND;
    memset(&r->msg, 0, sizeof(chat_message_t));

    rc = chat_pg_command(st, "BEGIN");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    /* the conversation's row lock orders the event with its sends */
    params[0] = req->conv;

    rc = chat_pg_run(st, "admin_lock", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) == 0) {
        PQclear(res);
        return chat_pg_command(st, "COMMIT");
    }

    last_seq = chat_pg_int(res, 0, 0);
    PQclear(res);

    snprintf(from, sizeof(from), "%" PRId64, last_seq - CHAT_BATCH_MAX);
    snprintf(part, sizeof(part), "%" PRId32, req->partition);
    snprintf(off, sizeof(off), "%" PRId64, req->offset);
    params[1] = from;
    params[2] = part;
    params[3] = off;

    rc = chat_pg_run(st, "admin_replayed", 4, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) > 0) {
        chat_pg_message(res, 0, 0, &r->msg);
        chat_pg_message_keep(&r->msg, a->arena);
        PQclear(res);
        r->rc = CHAT_REDACT_DONE;
        return chat_pg_command(st, "COMMIT");
    }

    PQclear(res);

    snprintf(id, sizeof(id), "%" PRId64, req->message_id);
    params[1] = id;

    rc = chat_pg_run(st, "admin_target", 2, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 0), "text") != 0) {
        PQclear(res);
        return chat_pg_command(st, "COMMIT");
    }

    erased = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);

    if (erased) {
        r->rc = CHAT_REDACT_ALREADY;
        return chat_pg_command(st, "COMMIT");
    }

    snprintf(now_text, sizeof(now_text), "%" PRId64, now);
    params[2] = now_text;
    params[3] = req->admin;

    rc = chat_pg_run(st, "admin_erase", 4, params, NULL);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    rc = chat_pg_run(st, "admin_erase_attachments", 1, &params[1], NULL);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    rc = chat_redact_event(st, r, last_seq + 1, now, a->arena);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    r->rc = CHAT_REDACT_DONE;

    return chat_pg_command(st, "COMMIT");
}


chat_store_rc_t
chat_store_redact(chat_store_t *st, chat_redact_t *r, chat_arena_t *arena)
{
    chat_redact_args_t  args = { r, arena };

    return chat_pg_retry(st, chat_redact_attempt, &args);
}
