/*
 * worker_store_changes.c: the transaction of one edit, delete or react.
 *
 * A change is a row of messages like a send (the next seq of its
 * conversation, under the conversation's row lock; the sender's pointers
 * move to it; its (sender, client_msg_id) is the idempotency key), whose
 * target_id names the message it changes, and the same transaction
 * applies it to the target's row (which history and sync read): the new
 * body and edited_at, the deletion (the text of the message and of its
 * edits erased, its reactions gone, its attachments no one's), or the
 * user's one reaction replaced or taken back and the target's summary of
 * reactions rewritten.
 *
 * Changes are rare next to sends: each has its own transaction, run alone
 * in its place in the batch (worker_ops.c), so that it sees every message
 * before it and none after.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_changes_sql[] = {

    { "change_stored",
      "SELECT " CHAT_PG_MESSAGE_COLUMNS ", kafka_partition, kafka_offset"
      " FROM messages WHERE sender_id = $1 AND client_msg_id = $2" },

    /* a group's current member, and since when it sees the messages; the
     * share lock keeps a removal from slipping in before COMMIT */
    { "change_member",
      "SELECT role, joined_seq FROM members"
      " WHERE conversation_id = $1 AND user_id = $2 AND removed_seq IS NULL"
      " FOR SHARE" },

    { "change_target",
      "SELECT sender_id, kind, server_ts, deleted, seq FROM messages"
      " WHERE conversation_id = $1 AND message_id = $2 FOR UPDATE" },

    { "change_alloc",
      "UPDATE conversations SET last_seq = last_seq + 1,"
      " last_activity = GREATEST(last_activity, $2)"
      " WHERE id = $1 RETURNING last_seq" },

    { "change_insert",
      "INSERT INTO messages (conversation_id, seq, sender_id, device_id,"
      " client_msg_id, kind, body, server_ts, kafka_partition, kafka_offset,"
      " target_id)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
      " RETURNING message_id" },

    /* the search vector rewritten with the text, in the same statement
     * (worker_store_index.c: the indexing after a send waits for the row
     * lock change_target holds, or came before it) */
    { "change_edit",
      "WITH e AS (UPDATE messages SET body = $2, edited_at = $3"
      "  WHERE message_id = $1 RETURNING message_id, conversation_id, seq,"
      "  body, attachment_names, redacted_at)"
      " INSERT INTO message_search (message_id, conversation_id, seq, search)"
      " SELECT message_id, conversation_id, seq,"
      " chat_search_vector(body, attachment_names) FROM e"
      " WHERE redacted_at IS NULL"
      " ON CONFLICT (message_id) DO UPDATE SET search = excluded.search" },

    /* the text goes from the store, not only from what is shown: the
     * message's and its edits', the names of its attachments and its
     * search vector */
    { "change_erase",
      "WITH f AS (DELETE FROM message_search WHERE message_id = $1)"
      " UPDATE messages SET body = NULL, deleted = (message_id = $1),"
      " reactions = NULL, attachment_names = NULL"
      " WHERE message_id = $1 OR (target_id = $1 AND kind = 'edit')" },

    /* its uploads are no one's: the sweep of those never attached removes
     * them and their files (sql/043_search_attachments.sql) */
    { "change_erase_attachments",
      "UPDATE attachments SET name = '', uploader_id = '', message_id = NULL,"
      " position = NULL, created_at = 0 WHERE message_id = $1" },

    { "change_unreact_all",
      "DELETE FROM reactions WHERE message_id = $1" },

    { "change_react",
      "INSERT INTO reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)"
      " ON CONFLICT (message_id, user_id) DO UPDATE SET emoji = excluded.emoji"
    },

    { "change_unreact",
      "DELETE FROM reactions WHERE message_id = $1 AND user_id = $2" },

    { "change_reactions",
      "UPDATE messages SET reactions = COALESCE("
      " (SELECT jsonb_object_agg(r.emoji, r.users) FROM"
      "  (SELECT emoji, jsonb_agg(user_id ORDER BY user_id) AS users"
      "   FROM reactions WHERE message_id = $1 GROUP BY emoji) AS r),"
      " '{}')"
      " WHERE message_id = $1" },

    { "change_pointers",
      "UPDATE members SET delivered_seq = GREATEST(delivered_seq, $3),"
      " read_seq = GREATEST(read_seq, $3)"
      " WHERE conversation_id = $1 AND user_id = $2" },
};

const chat_pg_statements_t  chat_store_changes_statements = {
    chat_changes_sql, sizeof(chat_changes_sql) / sizeof(chat_changes_sql[0])
};


/* the target as the checks need it */
typedef struct {
    const char  *sender;
    bool         text;
    bool         deleted;
    int64_t      server_ts;
    int64_t      seq;
} chat_change_target_t;


static const char *
chat_change_kind(ngx_chat_wire_op_t op)
{
    switch (op) {
    case NGX_CHAT_WIRE_OP_EDIT:
        return "edit";
    case NGX_CHAT_WIRE_OP_DELETE:
        return "delete";
    default:
        return "reaction";
    }
}


static void
chat_change_refuse(chat_send_t *s, const char *code, const char *message)
{
    s->state = CHAT_SEND_REFUSED;
    s->error_code = code;
    s->error_message = message;
}


/* stored before: a retry (ack only) or this very record (replayed) */
static chat_pg_rc_t
chat_change_find_stored(chat_store_t *st, chat_send_t *s, chat_arena_t *arena)
{
    const chat_request_t  *req = s->req;
    const char            *params[2];
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    int                    c = CHAT_PG_MESSAGE_NCOLUMNS;

    params[0] = req->user;
    params[1] = req->cmid;

    rc = chat_pg_run(st, "change_stored", 2, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) == 1) {
        chat_pg_message(res, 0, 0, &s->msg);
        chat_pg_message_keep(&s->msg, arena);
        s->state = !PQgetisnull(res, 0, c)
                   && chat_pg_int(res, 0, c) == req->partition
                   && chat_pg_int(res, 0, c + 1) == req->offset
                   ? CHAT_SEND_REPLAY : CHAT_SEND_RETRY;
    }

    PQclear(res);

    return CHAT_PG_OK;
}


/* who may change what; refuses s otherwise */
static chat_pg_rc_t
chat_change_check(chat_store_t *st, chat_send_t *s, chat_arena_t *arena)
{
    const chat_request_t  *req = s->req;
    const char            *params[2];
    char                   target[24];
    chat_change_target_t   t;
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    bool                   group, admin = false;
    int64_t                joined = 0;

    group = !chat_is_dm_id(req->conv);

    if (group) {
        params[0] = req->conv;
        params[1] = req->user;

        rc = chat_pg_run(st, "change_member", 2, params, &res);
        if (rc != CHAT_PG_OK) {
            return rc;
        }

        if (PQntuples(res) == 0) {
            PQclear(res);
            chat_change_refuse(s, "forbidden",
                               "not a member of this conversation");
            return CHAT_PG_OK;
        }

        admin = strcmp(PQgetvalue(res, 0, 0), "admin") == 0;
        joined = chat_pg_int(res, 0, 1);
        PQclear(res);
    }

    snprintf(target, sizeof(target), "%" PRId64, req->target_mid);
    params[0] = req->conv;
    params[1] = target;

    rc = chat_pg_run(st, "change_target", 2, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) == 0) {
        PQclear(res);
        chat_change_refuse(s, "not_found",
                           "no such message in this conversation");
        return CHAT_PG_OK;
    }

    t.sender = chat_arena_strdup(arena, PQgetvalue(res, 0, 0));
    t.text = strcmp(PQgetvalue(res, 0, 1), "text") == 0;
    t.server_ts = chat_pg_int(res, 0, 2);
    t.deleted = PQgetvalue(res, 0, 3)[0] == 't';
    t.seq = chat_pg_int(res, 0, 4);
    PQclear(res);

    /* what happened before a member joined is not its to see */
    if (t.seq < joined) {
        chat_change_refuse(s, "not_found",
                           "no such message in this conversation");
        return CHAT_PG_OK;
    }

    if (!t.text) {
        chat_change_refuse(s, "bad_request", "not a text message");
        return CHAT_PG_OK;
    }

    if (t.deleted) {
        chat_change_refuse(s, "not_found", "the message was deleted");
        return CHAT_PG_OK;
    }

    switch (req->op) {

    case NGX_CHAT_WIRE_OP_EDIT:
        if (strcmp(t.sender, req->user) != 0) {
            chat_change_refuse(s, "forbidden",
                               "only its sender may edit a message");

        } else if (req->ts - t.server_ts > req->window_ms) {
            chat_change_refuse(s, "forbidden",
                               "the edit window of the message has passed");
        }

        break;

    case NGX_CHAT_WIRE_OP_DELETE:
        if (strcmp(t.sender, req->user) != 0 && !(group && admin)) {
            chat_change_refuse(s, "forbidden",
                               "only its sender or a group admin may "
                               "delete a message");
        }

        break;

    default:
        break;
    }

    return CHAT_PG_OK;
}


/* the change's row: the next seq of the conversation */
static chat_pg_rc_t
chat_change_insert(chat_store_t *st, chat_send_t *s, int64_t now)
{
    const chat_request_t  *req = s->req;
    const char            *params[11];
    char                   now_text[24], seq_text[24], part_text[24];
    char                   off_text[24], target[24];
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;

    snprintf(now_text, sizeof(now_text), "%" PRId64, now);
    params[0] = req->conv;
    params[1] = now_text;

    rc = chat_pg_run(st, "change_alloc", 2, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) == 0) {
        /* a direct conversation with a target has its row: cannot be */
        PQclear(res);
        chat_change_refuse(s, "not_found",
                           "no such message in this conversation");
        return CHAT_PG_OK;
    }

    s->msg.seq = chat_pg_int(res, 0, 0);
    PQclear(res);

    s->msg.conv = req->conv;
    s->msg.sender = req->user;
    s->msg.cmid = req->cmid;
    s->msg.kind = chat_change_kind(req->op);
    s->msg.body = req->op == NGX_CHAT_WIRE_OP_EDIT ? req->body
                  : req->op == NGX_CHAT_WIRE_OP_REACT ? req->emoji : NULL;
    s->msg.server_ts = now;
    s->msg.target_id = req->target_mid;

    snprintf(seq_text, sizeof(seq_text), "%" PRId64, s->msg.seq);
    snprintf(part_text, sizeof(part_text), "%d", (int) req->partition);
    snprintf(off_text, sizeof(off_text), "%" PRId64, req->offset);
    snprintf(target, sizeof(target), "%" PRId64, req->target_mid);

    params[0] = req->conv;
    params[1] = seq_text;
    params[2] = req->user;
    params[3] = req->dev;
    params[4] = req->cmid;
    params[5] = s->msg.kind;
    params[6] = s->msg.body;
    params[7] = now_text;
    params[8] = part_text;
    params[9] = off_text;
    params[10] = target;

    rc = chat_pg_run(st, "change_insert", 11, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    s->msg.message_id = chat_pg_int(res, 0, 0);
    PQclear(res);

    s->state = CHAT_SEND_NEW;

    params[0] = req->conv;
    params[1] = req->user;
    params[2] = seq_text;

    return chat_pg_run(st, "change_pointers", 3, params, NULL);
}


/* the change applied to its target's row */
static chat_pg_rc_t
chat_change_apply(chat_store_t *st, chat_send_t *s, int64_t now)
{
    const chat_request_t  *req = s->req;
    const char            *params[3];
    char                   target[24], now_text[24];
    chat_pg_rc_t           rc;

    snprintf(target, sizeof(target), "%" PRId64, req->target_mid);
    snprintf(now_text, sizeof(now_text), "%" PRId64, now);
    params[0] = target;

    switch (req->op) {

    case NGX_CHAT_WIRE_OP_EDIT:
        params[1] = req->body;
        params[2] = now_text;
        return chat_pg_run(st, "change_edit", 3, params, NULL);

    case NGX_CHAT_WIRE_OP_DELETE:
        rc = chat_pg_run(st, "change_erase", 1, params, NULL);

        if (rc == CHAT_PG_OK) {
            rc = chat_pg_run(st, "change_erase_attachments", 1, params, NULL);
        }

        if (rc != CHAT_PG_OK) {
            return rc;
        }

        return chat_pg_run(st, "change_unreact_all", 1, params, NULL);

    default:
        params[1] = req->user;
        params[2] = req->emoji;

        rc = chat_pg_run(st, req->emoji ? "change_react" : "change_unreact",
                         req->emoji ? 3 : 2, params, NULL);
        if (rc != CHAT_PG_OK) {
            return rc;
        }

        return chat_pg_run(st, "change_reactions", 1, params, NULL);
    }
}


static chat_pg_rc_t
chat_change_once(chat_store_t *st, void *data)
{
    chat_send_t   *s = ((void **) data)[0];
    chat_arena_t  *arena = ((void **) data)[1];
    chat_pg_rc_t   rc;
    int64_t        now = chat_now_ms();

    s->state = s->direct_forbidden ? CHAT_SEND_FORBIDDEN : CHAT_SEND_PENDING;
    s->error_code = NULL;
    s->error_message = NULL;
    memset(&s->msg, 0, sizeof(chat_message_t));

    if (s->state == CHAT_SEND_FORBIDDEN) {
        return CHAT_PG_OK;
    }

    rc = chat_pg_command(st, "BEGIN");

    if (rc == CHAT_PG_OK) {
        rc = chat_change_find_stored(st, s, arena);
    }

    if (rc == CHAT_PG_OK && s->state == CHAT_SEND_PENDING) {
        rc = chat_change_check(st, s, arena);
    }

    if (rc == CHAT_PG_OK && s->state == CHAT_SEND_PENDING) {
        rc = chat_change_insert(st, s, now);
    }

    if (rc == CHAT_PG_OK && s->state == CHAT_SEND_NEW) {
        rc = chat_change_apply(st, s, now);
    }

    if (rc == CHAT_PG_OK) {
        rc = chat_pg_command(st, "COMMIT");
    }

    return rc;
}


chat_store_rc_t
chat_store_change(chat_store_t *st, chat_send_t *s, chat_arena_t *arena)
{
    void  *args[2] = { s, arena };

    return chat_pg_retry(st, chat_change_once, args);
}
