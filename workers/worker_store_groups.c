/*
 * worker_store_groups.c: create_group, add_members and remove_members,
 * each in its own transaction (they are rare, and each one decides what
 * the records after it in the batch may do).
 *
 * A change is a 'system' message in the conversation's seq stream, so that
 * history, sync and the live stream tell it in order with the texts, and
 * the members rows remember the seqs of the events: joined_seq (a member
 * reads from there), removed_seq (up to there, the removal included). A
 * re-added member gets a new joined_seq and its removal is cleared. The
 * conversation's row lock serializes the changes with its sends.
 *
 * Authorization: the actor must be a current member; only admins add or
 * remove others; anyone may remove itself. A group that does not exist is
 * forbidden like one the user is not in. set_role is an admin's, and
 * leaves the group at least one admin; an operator's set_role (chatctl)
 * needs no membership and may leave it none.
 *
 * A create_group whose conversation already exists was stored by this
 * very record before a crash (the module makes a fresh id per request):
 * it is answered again from the stored rows; so is a change whose system
 * message carries this record's partition and offset.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_groups_sql[] = {

    { "group_create",
      "INSERT INTO conversations"
      " (id, kind, name, last_seq, last_activity, created_at)"
      " VALUES ($1, 'group', $2, 1, $3, $3)"
      " ON CONFLICT (id) DO NOTHING RETURNING id" },

    { "group_first",
      "SELECT " CHAT_PG_MESSAGE_COLUMNS ", kafka_partition, kafka_offset"
      " FROM messages WHERE conversation_id = $1 AND seq = 1" },

    { "group_replayed",
      "SELECT " CHAT_PG_MESSAGE_COLUMNS " FROM messages"
      " WHERE conversation_id = $1 AND seq > $2 AND kind = 'system'"
      " AND kafka_partition = $3 AND kafka_offset = $4" },

    { "group_lock",
      "SELECT kind, name, last_seq FROM conversations"
      " WHERE id = $1 FOR UPDATE" },

    { "group_rows",
      "SELECT user_id, role = 'admin', joined_seq,"
      " COALESCE(removed_seq, -1) FROM members"
      " WHERE conversation_id = $1 ORDER BY user_id" },

    { "group_advance",
      "UPDATE conversations SET last_seq = $2,"
      " last_activity = GREATEST(last_activity, $3) WHERE id = $1" },

    { "group_message",
      "INSERT INTO messages (conversation_id, seq, sender_id, device_id,"
      " kind, body, server_ts, kafka_partition, kafka_offset)"
      " VALUES ($1, $2, $3, $4, 'system', $5, $6, $7, $8)"
      " RETURNING message_id" },

    { "group_join",
      "INSERT INTO members AS m (conversation_id, user_id, role, joined_seq)"
      " SELECT $1, t.u, t.r, $4"
      " FROM unnest($2::text[], $3::text[]) AS t(u, r) ORDER BY t.u"
      " ON CONFLICT (conversation_id, user_id) DO UPDATE"
      " SET role = excluded.role, joined_seq = excluded.joined_seq,"
      " removed_seq = NULL" },

    { "group_role",
      "UPDATE members SET role = $3"
      " WHERE conversation_id = $1 AND user_id = $2 AND removed_seq IS NULL" },

    { "group_leave",
      "UPDATE members SET removed_seq = $3"
      " WHERE conversation_id = $1 AND user_id = ANY($2::text[])"
      " AND removed_seq IS NULL" },

    /* the actor wrote the system message: its pointers move to it */
    { "group_own_pointers",
      "UPDATE members SET delivered_seq = GREATEST(delivered_seq, $3),"
      " read_seq = GREATEST(read_seq, $3)"
      " WHERE conversation_id = $1 AND user_id = $2" },
};

const chat_pg_statements_t  chat_store_groups_statements = {
    chat_groups_sql, sizeof(chat_groups_sql) / sizeof(chat_groups_sql[0])
};


static chat_member_t *
chat_group_find(chat_group_op_t *op, const char *user)
{
    size_t  i;

    for (i = 0; i < op->nmembers; i++) {
        if (strcmp(op->members[i].user, user) == 0) {
            return &op->members[i];
        }
    }

    return NULL;
}


static chat_pg_rc_t
chat_group_load_rows(chat_store_t *st, chat_group_op_t *op,
    chat_arena_t *arena, size_t extra)
{
    const char   *params[1] = { op->req->conv };
    PGresult     *res = NULL;
    chat_pg_rc_t  rc;
    int           row, nrows;

    rc = chat_pg_run(st, "group_rows", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    op->members = chat_arena_alloc(arena,
                                   (nrows + extra + 1) * sizeof(chat_member_t));
    op->nmembers = nrows;

    for (row = 0; row < nrows; row++) {
        op->members[row].user = chat_arena_strdup(arena,
                                                  PQgetvalue(res, row, 0));
        op->members[row].admin = PQgetvalue(res, row, 1)[0] == 't';
        op->members[row].joined_seq = chat_pg_int(res, row, 2);
        op->members[row].removed_seq = chat_pg_int(res, row, 3);
    }

    PQclear(res);

    return CHAT_PG_OK;
}


/* the system message: seq, body, stored; its id comes back */
static chat_pg_rc_t
chat_group_message(chat_store_t *st, chat_group_op_t *op, json_t *body,
    int64_t seq, int64_t now, chat_arena_t *arena)
{
    const chat_request_t  *req = op->req;
    const char            *params[8];
    char                   seq_text[24], now_text[24], part[24], off[24];
    char                  *text;
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;

    json_object_set_new(body, "by", json_string(req->user));
    if (req->admin) {
        json_object_set_new(body, "operator", json_true());
    }
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    if (text == NULL) {
        log_error("cannot serialize a system message");
        abort();
    }

    snprintf(seq_text, sizeof(seq_text), "%" PRId64, seq);
    snprintf(now_text, sizeof(now_text), "%" PRId64, now);
    snprintf(part, sizeof(part), "%" PRId32, req->partition);
    snprintf(off, sizeof(off), "%" PRId64, req->offset);

    op->msg.conv = req->conv;
    op->msg.seq = seq;
    op->msg.sender = req->user;
    op->msg.cmid = NULL;
    op->msg.kind = "system";
    op->msg.body = chat_arena_strdup(arena, text);
    op->msg.server_ts = now;
    free(text);

    params[0] = req->conv;
    params[1] = seq_text;
    params[2] = req->user;
    params[3] = req->dev;
    params[4] = op->msg.body;
    params[5] = now_text;
    params[6] = part;
    params[7] = off;

    rc = chat_pg_run(st, "group_message", 8, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    op->msg.message_id = chat_pg_int(res, 0, 0);
    op->changed = true;
    PQclear(res);

    params[1] = req->user;
    params[2] = seq_text;

    return chat_pg_run(st, "group_own_pointers", 3, params, NULL);
}


/* the rows of users (role r) joining at seq */
static chat_pg_rc_t
chat_group_join(chat_store_t *st, chat_group_op_t *op, const char **users,
    const bool *admin, size_t n, int64_t seq)
{
    chat_buf_t  *ids = &st->arrays[0], *roles = &st->arrays[1];
    const char  *params[4];
    char         seq_text[24];
    size_t       i;

    chat_pg_array_begin(ids);
    chat_pg_array_begin(roles);

    for (i = 0; i < n; i++) {
        chat_pg_array_text(ids, users[i]);
        chat_pg_array_text(roles, admin[i] ? "admin" : "member");
    }

    snprintf(seq_text, sizeof(seq_text), "%" PRId64, seq);
    params[0] = op->req->conv;
    params[1] = chat_pg_array_end(ids);
    params[2] = chat_pg_array_end(roles);
    params[3] = seq_text;

    return chat_pg_run(st, "group_join", 4, params, NULL);
}


/* a create_group stored before: by this record (answer again) or not */
static chat_pg_rc_t
chat_group_created_before(chat_store_t *st, chat_group_op_t *op,
    chat_arena_t *arena)
{
    const char   *params[1] = { op->req->conv };
    PGresult     *res = NULL;
    chat_pg_rc_t  rc;

    rc = chat_pg_run(st, "group_first", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) == 0
        || PQgetisnull(res, 0, CHAT_PG_MESSAGE_NCOLUMNS)
        || chat_pg_int(res, 0, CHAT_PG_MESSAGE_NCOLUMNS)
           != op->req->partition
        || chat_pg_int(res, 0, CHAT_PG_MESSAGE_NCOLUMNS + 1)
           != op->req->offset)
    {
        PQclear(res);
        op->rc = CHAT_GROUP_FORBIDDEN;
        return CHAT_PG_OK;
    }

    chat_pg_message(res, 0, 0, &op->msg);
    chat_pg_message_keep(&op->msg, arena);
    op->changed = true;
    PQclear(res);

    return chat_group_load_rows(st, op, arena, 0);
}


static chat_pg_rc_t
chat_group_create(chat_store_t *st, chat_group_op_t *op, int64_t now,
    chat_arena_t *arena)
{
    const chat_request_t  *req = op->req;
    const char           **users;
    const char            *params[3];
    char                   now_text[24];
    bool                  *admin;
    json_t                *ids, *v;
    chat_map_t             seen = { 0 };
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    size_t                 i, n = 0;
    int                    nrows;

    /* the creator first and as the admin; duplicates folded */
    users = chat_arena_alloc(arena, (json_array_size(req->user_ids) + 1)
                                    * sizeof(char *));
    users[n++] = req->user;
    chat_map_put(&seen, req->user, 0);

    json_array_foreach(req->user_ids, i, v) {
        if (chat_map_put(&seen, json_string_value(v), n) == n) {
            users[n++] = json_string_value(v);
        }
    }

    chat_map_free(&seen);

    if (n > op->max_members) {
        op->rc = CHAT_GROUP_TOO_LARGE;
        return CHAT_PG_OK;
    }

    snprintf(now_text, sizeof(now_text), "%" PRId64, now);
    params[0] = req->conv;
    params[1] = req->name;
    params[2] = now_text;

    rc = chat_pg_run(st, "group_create", 3, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    PQclear(res);

    if (nrows == 0) {
        return chat_group_created_before(st, op, arena);
    }

    admin = chat_arena_alloc(arena, n * sizeof(bool));
    op->members = chat_arena_alloc(arena, n * sizeof(chat_member_t));
    op->nmembers = n;
    ids = json_array();

    for (i = 0; i < n; i++) {
        admin[i] = i == 0;
        op->members[i].user = (char *) users[i];
        op->members[i].admin = admin[i];
        op->members[i].joined_seq = 1;
        op->members[i].removed_seq = -1;
        json_array_append_new(ids, json_string(users[i]));
    }

    rc = chat_group_join(st, op, users, admin, n, 1);
    if (rc != CHAT_PG_OK) {
        json_decref(ids);
        return rc;
    }

    return chat_group_message(st, op,
                              json_pack("{s:s,s:s,s:o}",
                                        "event", "group_created",
                                        "name", req->name, "user_ids", ids),
                              1, now, arena);
}


/*
 * A change stored by this very record before a crash (the worker died
 * between its COMMIT and its offset commit) finds its system message among
 * the newest ones (a batch holds at most CHAT_BATCH_MAX records): it is
 * answered and delivered again instead of being judged again, which would
 * find nothing to change (or, for a self-removal, a stranger).
 */
static chat_pg_rc_t
chat_group_replayed(chat_store_t *st, chat_group_op_t *op, int64_t last_seq,
    chat_arena_t *arena)
{
    const char   *params[4];
    char          from[24], part[24], off[24];
    PGresult     *res = NULL;
    chat_pg_rc_t  rc;

    snprintf(from, sizeof(from), "%" PRId64, last_seq - CHAT_BATCH_MAX);
    snprintf(part, sizeof(part), "%" PRId32, op->req->partition);
    snprintf(off, sizeof(off), "%" PRId64, op->req->offset);

    params[0] = op->req->conv;
    params[1] = from;
    params[2] = part;
    params[3] = off;

    rc = chat_pg_run(st, "group_replayed", 4, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) > 0) {
        chat_pg_message(res, 0, 0, &op->msg);
        chat_pg_message_keep(&op->msg, arena);
        op->changed = true;
    }

    PQclear(res);

    return CHAT_PG_OK;
}


static chat_pg_rc_t
chat_group_change(chat_store_t *st, chat_group_op_t *op, int64_t now,
    chat_arena_t *arena)
{
    const chat_request_t  *req = op->req;
    bool                   add = req->op == NGX_CHAT_WIRE_OP_ADD_MEMBERS;
    const char            *params[3];
    const char           **changed;
    char                   seq_text[24];
    bool                  *admin;
    json_t                *ids, *v;
    chat_member_t         *actor, *m;
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    int64_t                seq;
    size_t                 i, n = 0, current;

    params[0] = req->conv;

    rc = chat_pg_run(st, "group_lock", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 0), "group") != 0) {
        PQclear(res);
        op->rc = CHAT_GROUP_FORBIDDEN;
        return CHAT_PG_OK;
    }

    op->name = chat_arena_strdup(arena, PQgetvalue(res, 0, 1));
    seq = chat_pg_int(res, 0, 2) + 1;
    PQclear(res);

    rc = chat_group_load_rows(st, op, arena, json_array_size(req->user_ids));
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    rc = chat_group_replayed(st, op, seq - 1, arena);
    if (rc != CHAT_PG_OK || op->changed) {
        return rc;
    }

    actor = chat_group_find(op, req->user);

    if (actor == NULL || actor->removed_seq >= 0) {
        op->rc = CHAT_GROUP_FORBIDDEN;
        return CHAT_PG_OK;
    }

    changed = chat_arena_alloc(arena, (json_array_size(req->user_ids) + 1)
                                      * sizeof(char *));
    admin = chat_arena_alloc(arena, (json_array_size(req->user_ids) + 1)
                                    * sizeof(bool));

    json_array_foreach(req->user_ids, i, v) {
        const char  *user = json_string_value(v);

        if (!actor->admin && (add || strcmp(user, req->user) != 0)) {
            op->rc = CHAT_GROUP_FORBIDDEN;
            return CHAT_PG_OK;
        }

        m = chat_group_find(op, user);

        /* adding a member or removing a stranger changes nothing */
        if (add ? m == NULL || m->removed_seq >= 0
                : m != NULL && m->removed_seq < 0)
        {
            admin[n] = false;
            changed[n++] = user;
        }
    }

    if (n == 0) {
        return CHAT_PG_OK;
    }

    current = 0;
    for (i = 0; i < op->nmembers; i++) {
        current += op->members[i].removed_seq < 0;
    }

    if (add && current + n > op->max_members) {
        op->rc = CHAT_GROUP_TOO_LARGE;
        return CHAT_PG_OK;
    }

    snprintf(seq_text, sizeof(seq_text), "%" PRId64, seq);
    params[1] = seq_text;
    params[2] = seq_text;

    /* the row was locked above; the seq is the next one */
    {
        char  now_text[24];

        snprintf(now_text, sizeof(now_text), "%" PRId64, now);
        params[2] = now_text;

        rc = chat_pg_run(st, "group_advance", 3, params, NULL);
        if (rc != CHAT_PG_OK) {
            return rc;
        }
    }

    if (add) {
        rc = chat_group_join(st, op, changed, admin, n, seq);

    } else {
        chat_buf_t  *a = &st->arrays[0];

        chat_pg_array_begin(a);
        for (i = 0; i < n; i++) {
            chat_pg_array_text(a, changed[i]);
        }

        params[1] = chat_pg_array_end(a);
        params[2] = seq_text;
        rc = chat_pg_run(st, "group_leave", 3, params, NULL);
    }

    if (rc != CHAT_PG_OK) {
        return rc;
    }

    /* the rows as they are now */
    ids = json_array();

    for (i = 0; i < n; i++) {
        json_array_append_new(ids, json_string(changed[i]));
        m = chat_group_find(op, changed[i]);

        if (m == NULL) {
            m = &op->members[op->nmembers++];
            m->user = (char *) changed[i];
        }

        if (add) {
            m->admin = false;
            m->joined_seq = seq;
            m->removed_seq = -1;

        } else {
            m->removed_seq = seq;
        }
    }

    return chat_group_message(st, op,
                              json_pack("{s:s,s:o}", "event",
                                        add ? "members_added"
                                            : "members_removed",
                                        "user_ids", ids),
                              seq, now, arena);
}


/* one member's role: admin or member */
static chat_pg_rc_t
chat_group_set_role(chat_store_t *st, chat_group_op_t *op, int64_t now,
    chat_arena_t *arena)
{
    const chat_request_t  *req = op->req;
    bool                   admin;
    const char            *params[3];
    char                   seq_text[24], now_text[24];
    chat_member_t         *actor, *m;
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    int64_t                seq;
    size_t                 i, admins;

    params[0] = req->conv;

    rc = chat_pg_run(st, "group_lock", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 0), "group") != 0) {
        PQclear(res);
        op->rc = CHAT_GROUP_FORBIDDEN;
        return CHAT_PG_OK;
    }

    op->name = chat_arena_strdup(arena, PQgetvalue(res, 0, 1));
    seq = chat_pg_int(res, 0, 2) + 1;
    PQclear(res);

    rc = chat_group_load_rows(st, op, arena, 0);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    rc = chat_group_replayed(st, op, seq - 1, arena);
    if (rc != CHAT_PG_OK || op->changed) {
        return rc;
    }

    admin = strcmp(req->role, NGX_CHAT_WIRE_ROLE_ADMIN) == 0;
    admins = 0;

    for (i = 0; i < op->nmembers; i++) {
        admins += op->members[i].removed_seq < 0 && op->members[i].admin;
    }

    if (req->admin == NULL) {
        actor = chat_group_find(op, req->user);

        if (actor == NULL || actor->removed_seq >= 0 || !actor->admin) {
            op->rc = CHAT_GROUP_FORBIDDEN;
            return CHAT_PG_OK;
        }
    }

    m = chat_group_find(op, req->target);

    /* a stranger's role, or a role it has: nothing changes, and the
     * answer shows the members as they are */
    if (m == NULL || m->removed_seq >= 0 || m->admin == admin) {
        return CHAT_PG_OK;
    }

    if (!admin && admins == 1 && req->admin == NULL) {
        /* a group of members only could never change again */
        op->rc = CHAT_GROUP_FORBIDDEN;
        return CHAT_PG_OK;
    }

    params[1] = req->target;
    params[2] = req->role;

    rc = chat_pg_run(st, "group_role", 3, params, NULL);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    snprintf(seq_text, sizeof(seq_text), "%" PRId64, seq);
    snprintf(now_text, sizeof(now_text), "%" PRId64, now);
    params[1] = seq_text;
    params[2] = now_text;

    rc = chat_pg_run(st, "group_advance", 3, params, NULL);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    m->admin = admin;

    return chat_group_message(st, op,
                              json_pack("{s:s,s:s,s:s}",
                                        "event", "role_changed",
                                        "user_id", req->target,
                                        "role", req->role),
                              seq, now, arena);
}


typedef struct {
    chat_group_op_t  *op;
    chat_arena_t     *arena;
} chat_group_args_t;


static chat_pg_rc_t
chat_group_attempt(chat_store_t *st, void *data)
{
    chat_group_args_t  *a = data;
    chat_group_op_t    *op = a->op;
    chat_pg_rc_t        rc;
    int64_t             now = chat_now_ms();

    /* each attempt starts from the request again */
    op->rc = CHAT_GROUP_DONE;
    op->changed = false;
    op->name = op->req->name;
    op->members = NULL;
    op->nmembers = 0;
    memset(&op->msg, 0, sizeof(chat_message_t));

    rc = chat_pg_command(st, "BEGIN");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    rc = op->req->op == NGX_CHAT_WIRE_OP_CREATE_GROUP
         ? chat_group_create(st, op, now, a->arena)
         : op->req->op == NGX_CHAT_WIRE_OP_SET_ROLE
         ? chat_group_set_role(st, op, now, a->arena)
         : chat_group_change(st, op, now, a->arena);

    if (rc != CHAT_PG_OK) {
        return rc;
    }

    /* a refused change wrote nothing, and COMMIT of nothing is cheap */
    return chat_pg_command(st, "COMMIT");
}


chat_store_rc_t
chat_store_group_op(chat_store_t *st, chat_group_op_t *op,
    chat_arena_t *arena)
{
    chat_group_args_t  args = { op, arena };

    return chat_pg_retry(st, chat_group_attempt, &args);
}
