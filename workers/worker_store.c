/*
 * worker_store.c: PostgreSQL, the store of record. Owns the connection, the
 * prepared statements, the write transaction of a batch's sends and the
 * reads (history, sync).
 *
 * A batch's sends are one transaction: membership checks, the lookup of
 * already stored (sender, client_msg_id) pairs, seq allocation under the
 * conversation's row lock, one multi-row INSERT of the messages and the
 * sender's receipt pointers. Values always travel as parameters of prepared
 * statements; many rows travel as array parameters expanded by unnest(),
 * so a batch of 1000 sends is a handful of round trips.
 *
 * Failures: a lost connection (or a server refusing work) is waited out with
 * backoff, as long as it takes or until SIGTERM; a conflict with another
 * worker (unique violation or deadlock while partitions move between
 * workers) retries the batch, whose retry then finds the other worker's rows
 * and acks them; anything else is retried a few times and then reported, so
 * that the caller can split the batch and isolate the one record the store
 * refuses.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "worker.h"


#define CHAT_STORE_FAILURES_MAX   3     /* then CHAT_STORE_REFUSED */
#define CHAT_STORE_CONFLICTS_MAX  50


struct chat_store_s {
    PGconn          *conn;
    char            *conninfo;
    chat_stop_t     *stop;
    chat_backoff_t   backoff;
    chat_buf_t       arrays[10];     /* array parameters being built */
};


typedef enum {
    CHAT_Q_OK,
    CHAT_Q_CONFLICT,        /* retry the transaction now */
    CHAT_Q_DOWN,            /* reconnect, with backoff */
    CHAT_Q_FAILED           /* not expected to go away by retrying */
} chat_q_rc_t;


#define CHAT_MESSAGE_COLUMNS                                                \
    "conversation_id, seq, message_id, sender_id, client_msg_id, kind, "    \
    "body, server_ts"

typedef struct {
    const char  *name;
    const char  *sql;
} chat_statement_t;

static const chat_statement_t  chat_statements[] = {

    /* the senders into non-direct conversations that are members now; the
     * share lock keeps a concurrent removal from slipping in before COMMIT */
    { "members_check",
      "SELECT m.conversation_id, m.user_id FROM members m"
      " JOIN unnest($1::text[], $2::text[]) AS t(c, u)"
      " ON m.conversation_id = t.c AND m.user_id = t.u"
      " WHERE m.removed_seq IS NULL"
      " FOR SHARE OF m" },

    /* sends stored before: retries, or this batch's own rows when a worker
     * died between COMMIT and the offset commit */
    { "stored_sends",
      "SELECT m.sender_id, m.client_msg_id, " CHAT_MESSAGE_COLUMNS ","
      " m.kafka_partition, m.kafka_offset"
      " FROM messages m JOIN unnest($1::text[], $2::text[]) AS t(s, c)"
      " ON m.sender_id = t.s AND m.client_msg_id = t.c" },

    /* seq allocation: a direct conversation comes into being with its first
     * message; the row lock serializes writers of one conversation, and the
     * ORDER BY makes two workers lock rows in the same order */
    { "alloc_direct",
      "INSERT INTO conversations AS c"
      " (id, kind, last_seq, last_activity, created_at)"
      " SELECT t.id, 'direct', t.n, $3, $3"
      " FROM unnest($1::text[], $2::bigint[]) AS t(id, n) ORDER BY t.id"
      " ON CONFLICT (id) DO UPDATE"
      " SET last_seq = c.last_seq + excluded.last_seq,"
      " last_activity = GREATEST(c.last_activity, excluded.last_activity)"
      " WHERE c.kind = 'direct'"
      " RETURNING c.id, c.last_seq" },

    { "alloc_group",
      "UPDATE conversations AS c"
      " SET last_seq = c.last_seq + t.n,"
      " last_activity = GREATEST(c.last_activity, $3)"
      " FROM unnest($1::text[], $2::bigint[]) AS t(id, n)"
      " WHERE c.id = t.id AND c.kind = 'group'"
      " RETURNING c.id, c.last_seq" },

    { "message_ids",
      "SELECT nextval('message_ids') FROM generate_series(1, $1::int)" },

    { "insert_messages",
      "INSERT INTO messages (conversation_id, seq, message_id, sender_id,"
      " device_id, client_msg_id, kind, body, server_ts, kafka_partition,"
      " kafka_offset)"
      " SELECT t.c, t.s, t.id, t.u, t.d, t.cm, 'text', t.b, $8, t.p, t.o"
      " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],"
      " $5::text[], $6::text[], $7::text[], $9::int[], $10::bigint[])"
      " AS t(c, s, id, u, d, cm, b, p, o)" },

    /* direct members come into being with the conversation; a sender's own
     * pointers move to its message (rows given seq 0 are only created,
     * and moving nothing leaves an existing row unwritten) */
    { "move_pointers",
      "INSERT INTO members AS m"
      " (conversation_id, user_id, delivered_seq, read_seq)"
      " SELECT t.c, t.u, t.s, t.s"
      " FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(c, u, s)"
      " ORDER BY t.c, t.u"
      " ON CONFLICT (conversation_id, user_id) DO UPDATE"
      " SET delivered_seq = GREATEST(m.delivered_seq, excluded.delivered_seq),"
      " read_seq = GREATEST(m.read_seq, excluded.read_seq)"
      " WHERE excluded.read_seq > m.read_seq"
      " OR excluded.delivered_seq > m.delivered_seq" },

    { "group_members",
      "SELECT conversation_id, user_id FROM members"
      " WHERE conversation_id = ANY($1::text[]) AND removed_seq IS NULL"
      " ORDER BY conversation_id, user_id" },

    { "is_member",
      "SELECT 1 FROM members"
      " WHERE conversation_id = $1 AND user_id = $2 AND removed_seq IS NULL" },

    { "history_before",
      "SELECT " CHAT_MESSAGE_COLUMNS " FROM messages"
      " WHERE conversation_id = $1 AND seq < $2"
      " ORDER BY seq DESC LIMIT $3" },

    { "history_after",
      "SELECT " CHAT_MESSAGE_COLUMNS " FROM messages"
      " WHERE conversation_id = $1 AND seq > $2"
      " ORDER BY seq LIMIT $3" },

    /* a user's conversations, newest activity first, with its pointers,
     * the unread count and the last message */
    { "sync_conversations",
      "SELECT c.id, c.kind, c.name, c.last_seq, m.delivered_seq, m.read_seq,"
      " (SELECT count(*) FROM members x"
      "  WHERE x.conversation_id = c.id AND x.removed_seq IS NULL),"
      " (SELECT count(*) FROM messages x WHERE x.conversation_id = c.id"
      "  AND x.seq > m.read_seq AND x.sender_id <> m.user_id),"
      " l.conversation_id, l.seq, l.message_id, l.sender_id,"
      " l.client_msg_id, l.kind, l.body, l.server_ts"
      " FROM members m JOIN conversations c ON c.id = m.conversation_id"
      " LEFT JOIN messages l"
      " ON l.conversation_id = c.id AND l.seq = c.last_seq"
      " WHERE m.user_id = $1 AND m.removed_seq IS NULL"
      " ORDER BY c.last_activity DESC, c.id" },

    /* the newest $3 messages after each cursor, per conversation in the
     * order given, ascending seq */
    { "sync_messages",
      "SELECT x." CHAT_MESSAGE_COLUMNS
      " FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS t(c, s, o)"
      " CROSS JOIN LATERAL (SELECT * FROM messages"
      "  WHERE conversation_id = t.c AND seq > t.s"
      "  ORDER BY seq DESC LIMIT $3) AS x"
      " ORDER BY t.o, x.seq" },
};


/* ---- connection ---- */

static void
chat_store_disconnect(chat_store_t *st)
{
    if (st->conn) {
        PQfinish(st->conn);
        st->conn = NULL;
    }
}


static bool
chat_store_connect(chat_store_t *st)
{
    /* our defaults come first: what --pg says overrides them; a server
     * that vanishes from the network is noticed within about 30 s instead
     * of the kernel's two hours */
    const char  *keys[] = { "connect_timeout", "application_name",
                            "keepalives_idle", "keepalives_interval",
                            "keepalives_count", "tcp_user_timeout",
                            "dbname", NULL };
    const char  *values[] = { "5", "chat_worker", "10", "5", "3", "30000",
                              st->conninfo, NULL };
    PGresult    *res = NULL;
    size_t       i;

    st->conn = PQconnectdbParams(keys, values, 1);

    if (PQstatus(st->conn) != CONNECTION_OK) {
        log_error("postgresql: cannot connect: %s",
                  PQerrorMessage(st->conn));
        chat_store_disconnect(st);
        return false;
    }

    for (i = 0; i < sizeof(chat_statements) / sizeof(chat_statements[0]);
         i++)
    {
        res = PQprepare(st->conn, chat_statements[i].name,
                        chat_statements[i].sql, 0, NULL);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* also a schema not yet migrated: waiting is the answer */
            log_error("postgresql: cannot prepare %s: %s",
                      chat_statements[i].name, PQerrorMessage(st->conn));
            PQclear(res);
            chat_store_disconnect(st);
            return false;
        }

        PQclear(res);
    }

    return true;
}


/* waits for a working connection; false on stop */
static bool
chat_store_reconnect(chat_store_t *st)
{
    chat_store_disconnect(st);

    for ( ;; ) {
        if (!chat_backoff_wait(&st->backoff, st->stop)) {
            return false;
        }

        if (chat_store_connect(st)) {
            log_info("postgresql: connected");
            chat_backoff_reset(&st->backoff);
            return true;
        }
    }
}


chat_store_t *
chat_store_open(const char *conninfo, chat_stop_t *stop)
{
    chat_store_t  *st;

    st = chat_alloc(sizeof(chat_store_t));
    memset(st, 0, sizeof(*st));
    st->conninfo = chat_strdup(conninfo);
    st->stop = stop;
    chat_backoff_reset(&st->backoff);

    if (!chat_store_connect(st) && !chat_store_reconnect(st)) {
        chat_store_close(st);
        return NULL;
    }

    return st;
}


void
chat_store_close(chat_store_t *st)
{
    size_t  i;

    if (st == NULL) {
        return;
    }

    chat_store_disconnect(st);

    for (i = 0; i < sizeof(st->arrays) / sizeof(st->arrays[0]); i++) {
        chat_buf_free(&st->arrays[i]);
    }

    free(st->conninfo);
    free(st);
}


/* ---- statements ---- */

static chat_q_rc_t
chat_store_classify(chat_store_t *st, PGresult *res, const char *what)
{
    const char  *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                             : NULL;

    if (PQstatus(st->conn) != CONNECTION_OK || state == NULL) {
        log_error("postgresql: %s: connection lost: %s", what,
                  PQerrorMessage(st->conn));
        return CHAT_Q_DOWN;
    }

    log_error("postgresql: %s: SQLSTATE %s: %s", what, state,
              PQresultErrorMessage(res));

    /* 40001 serialization, 40P01 deadlock, 23505 unique violation (another
     * worker stored the same send), 55P03 lock not available */
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0
        || strcmp(state, "23505") == 0 || strcmp(state, "55P03") == 0)
    {
        return CHAT_Q_CONFLICT;
    }

    /* 08 connection, 53 resources (disk full), 57 operator intervention
     * (shutdown), 58 system error: the server, not the batch */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0
        || strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0)
    {
        return CHAT_Q_DOWN;
    }

    return CHAT_Q_FAILED;
}


static chat_q_rc_t
chat_store_run(chat_store_t *st, const char *stmt, int nparams,
    const char *const *params, PGresult **out)
{
    PGresult        *res = NULL;
    ExecStatusType   status;
    chat_q_rc_t      rc;

    res = PQexecPrepared(st->conn, stmt, nparams, params, NULL, NULL, 0);
    status = PQresultStatus(res);

    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
        if (out) {
            *out = res;
        } else {
            PQclear(res);
        }
        return CHAT_Q_OK;
    }

    rc = chat_store_classify(st, res, stmt);
    PQclear(res);

    return rc;
}


static chat_q_rc_t
chat_store_command(chat_store_t *st, const char *sql)
{
    PGresult     *res = NULL;
    chat_q_rc_t   rc;

    res = PQexec(st->conn, sql);

    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        return CHAT_Q_OK;
    }

    rc = chat_store_classify(st, res, sql);
    PQclear(res);

    return rc;
}


static void
chat_store_rollback(chat_store_t *st)
{
    PGresult  *res = NULL;

    if (st->conn == NULL || PQstatus(st->conn) != CONNECTION_OK) {
        return;
    }

    res = PQexec(st->conn, "ROLLBACK");
    PQclear(res);
}


static int64_t
chat_int(PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}


static const char *
chat_text(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}


/* a message from CHAT_MESSAGE_COLUMNS at column col; the strings stay in
 * res */
static void
chat_row_message(PGresult *res, int row, int col, chat_message_t *m)
{
    m->conv = chat_text(res, row, col);
    m->seq = chat_int(res, row, col + 1);
    m->message_id = chat_int(res, row, col + 2);
    m->sender = chat_text(res, row, col + 3);
    m->cmid = chat_text(res, row, col + 4);
    m->kind = chat_text(res, row, col + 5);
    m->body = chat_text(res, row, col + 6);
    m->server_ts = chat_int(res, row, col + 7);
}


static void
chat_message_to_arena(chat_message_t *m, chat_arena_t *arena)
{
    m->conv = chat_arena_strdup(arena, m->conv);
    m->sender = chat_arena_strdup(arena, m->sender);
    m->cmid = m->cmid ? chat_arena_strdup(arena, m->cmid) : NULL;
    m->kind = chat_arena_strdup(arena, m->kind);
    m->body = chat_arena_strdup(arena, m->body);
}


/* "a\nb": a key of two strings, unambiguous while a holds no newline
 * (user ids and conversation ids do not) */
static const char *
chat_pair_key(chat_arena_t *arena, const char *a, const char *b)
{
    size_t   alen = strlen(a), blen = strlen(b);
    char    *key = chat_arena_alloc(arena, alen + blen + 2);

    memcpy(key, a, alen);
    key[alen] = '\n';
    memcpy(key + alen + 1, b, blen + 1);

    return key;
}


/* ---- sends ---- */

/* one conversation written to by the batch */
typedef struct {
    const char  *conv;
    bool         direct;
    bool         allocated;     /* its row was locked and advanced */
    bool         created;       /* its first messages are in this batch */
    int64_t      nnew;
    int64_t      next_seq;
    char         a[CHAT_ID_MAX + 1];     /* direct: the two members */
    char         b[CHAT_ID_MAX + 1];
} chat_conv_slot_t;

/* receipt pointers to create or move */
typedef struct {
    const char  *conv;
    const char  *user;
    int64_t      seq;
} chat_pointer_t;

typedef struct {
    chat_conv_slot_t  *slots;
    size_t             nslots;
    chat_map_t         slot_index;
    chat_pointer_t    *pointers;
    size_t             npointers;
    chat_map_t         pointer_index;
    chat_map_t         keys;
    int64_t           *ids;
} chat_send_work_t;


static void
chat_send_work_free(chat_send_work_t *w)
{
    free(w->slots);
    free(w->pointers);
    free(w->ids);
    chat_map_free(&w->slot_index);
    chat_map_free(&w->pointer_index);
    chat_map_free(&w->keys);
    memset(w, 0, sizeof(*w));
}


static chat_conv_slot_t *
chat_conv_slot(chat_send_work_t *w, const char *conv, size_t max)
{
    size_t             i;
    chat_conv_slot_t  *slot;

    i = chat_map_put(&w->slot_index, conv, w->nslots);

    if (i < w->nslots) {
        return &w->slots[i];
    }

    if (w->slots == NULL) {
        w->slots = chat_alloc(max * sizeof(chat_conv_slot_t));
    }

    slot = &w->slots[w->nslots++];
    memset(slot, 0, sizeof(*slot));
    slot->conv = conv;
    slot->direct = chat_parse_dm(conv, slot->a, slot->b);

    return slot;
}


static void
chat_pointer_move(chat_send_work_t *w, chat_arena_t *arena, size_t max,
    const char *conv, const char *user, int64_t seq)
{
    size_t  i;

    i = chat_map_put(&w->pointer_index, chat_pair_key(arena, conv, user),
                     w->npointers);

    if (i == w->npointers) {
        if (w->pointers == NULL) {
            w->pointers = chat_alloc(max * sizeof(chat_pointer_t));
        }

        w->pointers[i].conv = conv;
        w->pointers[i].user = user;
        w->pointers[i].seq = seq;
        w->npointers++;

    } else if (seq > w->pointers[i].seq) {
        w->pointers[i].seq = seq;
    }
}


/* non-direct conversations: the sender must be a member now */
static chat_q_rc_t
chat_sends_check_members(chat_store_t *st, chat_send_t *sends, size_t n,
    chat_arena_t *arena)
{
    chat_buf_t  *convs = &st->arrays[0], *users = &st->arrays[1];
    const char  *params[2];
    chat_map_t   allowed = { 0 };
    PGresult    *res = NULL;
    chat_q_rc_t  rc;
    size_t       i, asked = 0, dummy;
    int          row;

    chat_pg_array_begin(convs);
    chat_pg_array_begin(users);

    for (i = 0; i < n; i++) {
        if (sends[i].state == CHAT_SEND_PENDING
            && !chat_is_dm_id(sends[i].req->conv))
        {
            chat_pg_array_text(convs, sends[i].req->conv);
            chat_pg_array_text(users, sends[i].req->user);
            asked++;
        }
    }

    if (asked == 0) {
        return CHAT_Q_OK;
    }

    params[0] = chat_pg_array_end(convs);
    params[1] = chat_pg_array_end(users);

    rc = chat_store_run(st, "members_check", 2, params, &res);
    if (rc != CHAT_Q_OK) {
        return rc;
    }

    for (row = 0; row < PQntuples(res); row++) {
        chat_map_put(&allowed, chat_pair_key(arena, PQgetvalue(res, row, 0),
                                              PQgetvalue(res, row, 1)), 1);
    }

    PQclear(res);

    for (i = 0; i < n; i++) {
        chat_send_t  *s = &sends[i];

        if (s->state == CHAT_SEND_PENDING && !chat_is_dm_id(s->req->conv)
            && !chat_map_get(&allowed,
                             chat_pair_key(arena, s->req->conv, s->req->user),
                             &dummy))
        {
            s->state = CHAT_SEND_FORBIDDEN;
        }
    }

    chat_map_free(&allowed);

    return CHAT_Q_OK;
}


/* sends stored before: RETRY gets the stored ack; REPLAY, the same Kafka
 * record stored by a worker that died before committing its offset, gets
 * its ack and deliveries again */
static chat_q_rc_t
chat_sends_find_stored(chat_store_t *st, chat_send_t *sends, size_t n,
    chat_arena_t *arena)
{
    chat_buf_t      *senders = &st->arrays[0], *cmids = &st->arrays[1];
    const char      *params[2];
    chat_map_t       stored = { 0 };
    chat_message_t  *rows;
    int32_t         *partitions;
    int64_t         *offsets;
    PGresult        *res = NULL;
    chat_q_rc_t      rc;
    size_t           i, asked = 0, row;
    int              nrows, r;

    chat_pg_array_begin(senders);
    chat_pg_array_begin(cmids);

    for (i = 0; i < n; i++) {
        if (sends[i].state == CHAT_SEND_PENDING) {
            chat_pg_array_text(senders, sends[i].req->user);
            chat_pg_array_text(cmids, sends[i].req->cmid);
            asked++;
        }
    }

    if (asked == 0) {
        return CHAT_Q_OK;
    }

    params[0] = chat_pg_array_end(senders);
    params[1] = chat_pg_array_end(cmids);

    rc = chat_store_run(st, "stored_sends", 2, params, &res);
    if (rc != CHAT_Q_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    if (nrows == 0) {
        PQclear(res);
        return CHAT_Q_OK;
    }

    rows = chat_arena_alloc(arena, nrows * sizeof(chat_message_t));
    partitions = chat_arena_alloc(arena, nrows * sizeof(int32_t));
    offsets = chat_arena_alloc(arena, nrows * sizeof(int64_t));

    for (r = 0; r < nrows; r++) {
        chat_row_message(res, r, 2, &rows[r]);

        if (rows[r].cmid == NULL) {
            continue;       /* cannot happen: the join compares it */
        }

        chat_message_to_arena(&rows[r], arena);
        partitions[r] = PQgetisnull(res, r, 10)
                        ? -1 : (int32_t) chat_int(res, r, 10);
        offsets[r] = PQgetisnull(res, r, 11) ? -1 : chat_int(res, r, 11);
        chat_map_put(&stored, chat_pair_key(arena, rows[r].sender,
                                            rows[r].cmid), r);
    }

    PQclear(res);

    for (i = 0; i < n; i++) {
        chat_send_t  *s = &sends[i];

        if (s->state != CHAT_SEND_PENDING
            || !chat_map_get(&stored,
                             chat_pair_key(arena, s->req->user, s->req->cmid),
                             &row))
        {
            continue;
        }

        s->msg = rows[row];
        s->state = partitions[row] == s->req->partition
                   && offsets[row] == s->req->offset
                   ? CHAT_SEND_REPLAY : CHAT_SEND_RETRY;
    }

    chat_map_free(&stored);

    return CHAT_Q_OK;
}


/* a send repeated inside the batch is a retry of its first occurrence */
static void
chat_sends_fold(chat_send_work_t *w, chat_send_t *sends, size_t n,
    chat_arena_t *arena)
{
    size_t  i, first;

    for (i = 0; i < n; i++) {
        chat_send_t  *s = &sends[i];

        if (s->state != CHAT_SEND_PENDING) {
            continue;
        }

        first = chat_map_put(&w->keys,
                             chat_pair_key(arena, s->req->user, s->req->cmid),
                             i);

        if (first != i) {
            s->state = CHAT_SEND_RETRY;
            s->same_as = first;
            s->same_as_set = true;
        }
    }
}


/* advances last_seq of every conversation by its new messages */
static chat_q_rc_t
chat_sends_allocate(chat_store_t *st, chat_send_work_t *w, bool direct,
    int64_t now)
{
    chat_buf_t  *convs = &st->arrays[0], *counts = &st->arrays[1];
    const char  *params[3];
    char         now_text[24];
    PGresult    *res = NULL;
    chat_q_rc_t  rc;
    size_t       i, asked = 0;
    int          row;

    chat_pg_array_begin(convs);
    chat_pg_array_begin(counts);

    for (i = 0; i < w->nslots; i++) {
        if (w->slots[i].direct == direct && w->slots[i].nnew > 0) {
            chat_pg_array_text(convs, w->slots[i].conv);
            chat_pg_array_int(counts, w->slots[i].nnew);
            asked++;
        }
    }

    if (asked == 0) {
        return CHAT_Q_OK;
    }

    snprintf(now_text, sizeof(now_text), "%" PRId64, now);
    params[0] = chat_pg_array_end(convs);
    params[1] = chat_pg_array_end(counts);
    params[2] = now_text;

    rc = chat_store_run(st, direct ? "alloc_direct" : "alloc_group", 3,
                        params, &res);
    if (rc != CHAT_Q_OK) {
        return rc;
    }

    for (row = 0; row < PQntuples(res); row++) {
        if (chat_map_get(&w->slot_index, PQgetvalue(res, row, 0), &i)) {
            w->slots[i].allocated = true;
            w->slots[i].next_seq = chat_int(res, row, 1)
                                   - w->slots[i].nnew + 1;

            /* a conversation's seqs start at 1 with its first message */
            w->slots[i].created = w->slots[i].next_seq == 1;
        }
    }

    PQclear(res);

    return CHAT_Q_OK;
}


static chat_q_rc_t
chat_sends_insert(chat_store_t *st, chat_send_t *sends, size_t n,
    int64_t now)
{
    chat_buf_t  *a = st->arrays;
    const char  *params[10];
    char         now_text[24];
    size_t       i, k;

    for (k = 0; k < 9; k++) {
        chat_pg_array_begin(&a[k]);
    }

    for (i = 0; i < n; i++) {
        chat_send_t  *s = &sends[i];

        if (s->state != CHAT_SEND_NEW) {
            continue;
        }

        chat_pg_array_text(&a[0], s->msg.conv);
        chat_pg_array_int(&a[1], s->msg.seq);
        chat_pg_array_int(&a[2], s->msg.message_id);
        chat_pg_array_text(&a[3], s->req->user);
        chat_pg_array_text(&a[4], s->req->dev);
        chat_pg_array_text(&a[5], s->req->cmid);
        chat_pg_array_text(&a[6], s->req->body);
        chat_pg_array_int(&a[7], s->req->partition);
        chat_pg_array_int(&a[8], s->req->offset);
    }

    snprintf(now_text, sizeof(now_text), "%" PRId64, now);

    for (k = 0; k < 7; k++) {
        params[k] = chat_pg_array_end(&a[k]);
    }

    params[7] = now_text;
    params[8] = chat_pg_array_end(&a[7]);
    params[9] = chat_pg_array_end(&a[8]);

    return chat_store_run(st, "insert_messages", 10, params, NULL);
}


static chat_q_rc_t
chat_sends_move_pointers(chat_store_t *st, chat_send_work_t *w,
    chat_send_t *sends, size_t n, chat_arena_t *arena)
{
    chat_buf_t        *convs = &st->arrays[0], *users = &st->arrays[1];
    chat_buf_t        *seqs = &st->arrays[2];
    const char        *params[3];
    chat_conv_slot_t  *slot;
    size_t             i, k;

    for (i = 0; i < n; i++) {
        chat_send_t  *s = &sends[i];

        if (s->state != CHAT_SEND_NEW) {
            continue;
        }

        chat_map_get(&w->slot_index, s->msg.conv, &k);
        slot = &w->slots[k];

        if (slot->direct && slot->created) {
            /* both members exist from the first message on */
            chat_pointer_move(w, arena, 2 * n + n, slot->conv, slot->a, 0);
            chat_pointer_move(w, arena, 2 * n + n, slot->conv, slot->b, 0);
        }

        chat_pointer_move(w, arena, 2 * n + n, slot->conv, s->req->user,
                          s->msg.seq);
    }

    if (w->npointers == 0) {
        return CHAT_Q_OK;
    }

    chat_pg_array_begin(convs);
    chat_pg_array_begin(users);
    chat_pg_array_begin(seqs);

    for (i = 0; i < w->npointers; i++) {
        chat_pg_array_text(convs, w->pointers[i].conv);
        chat_pg_array_text(users, w->pointers[i].user);
        chat_pg_array_int(seqs, w->pointers[i].seq);
    }

    params[0] = chat_pg_array_end(convs);
    params[1] = chat_pg_array_end(users);
    params[2] = chat_pg_array_end(seqs);

    return chat_store_run(st, "move_pointers", 3, params, NULL);
}


/* the members of the group conversations the batch delivers to */
static chat_q_rc_t
chat_sends_load_groups(chat_store_t *st, chat_send_t *sends, size_t n,
    chat_arena_t *arena, chat_members_t **groups, size_t *ngroups)
{
    chat_buf_t      *convs = &st->arrays[0];
    const char      *params[1];
    chat_map_t       asked = { 0 };
    size_t           nasked = 0;
    chat_members_t  *g;
    PGresult        *res = NULL;
    chat_q_rc_t      rc;
    size_t           i, ng = 0;
    int              row, nrows;

    chat_pg_array_begin(convs);

    for (i = 0; i < n; i++) {
        chat_send_t  *s = &sends[i];

        if ((s->state == CHAT_SEND_NEW || s->state == CHAT_SEND_REPLAY)
            && !chat_is_dm_id(s->msg.conv)
            && chat_map_put(&asked, s->msg.conv, nasked) == nasked)
        {
            chat_pg_array_text(convs, s->msg.conv);
            nasked++;
        }
    }

    chat_map_free(&asked);

    if (nasked == 0) {
        return CHAT_Q_OK;
    }

    params[0] = chat_pg_array_end(convs);

    rc = chat_store_run(st, "group_members", 1, params, &res);
    if (rc != CHAT_Q_OK) {
        return rc;
    }

    nrows = PQntuples(res);
    g = chat_arena_alloc(arena, (nrows ? nrows : 1) * sizeof(chat_members_t));

    /* rows come ordered by conversation: one entry per run */
    for (row = 0; row < nrows; row++) {
        const char  *conv = PQgetvalue(res, row, 0);

        if (ng == 0 || strcmp(g[ng - 1].conv, conv) != 0) {
            g[ng].conv = chat_arena_strdup(arena, conv);
            g[ng].users = chat_arena_alloc(arena, nrows * sizeof(char *));
            g[ng].nusers = 0;
            ng++;
        }

        g[ng - 1].users[g[ng - 1].nusers++] =
            chat_arena_strdup(arena, PQgetvalue(res, row, 1));
    }

    PQclear(res);

    *groups = g;
    *ngroups = ng;

    return CHAT_Q_OK;
}


static chat_q_rc_t
chat_sends_once(chat_store_t *st, chat_send_t *sends, size_t n,
    chat_arena_t *arena, chat_members_t **groups, size_t *ngroups)
{
    chat_send_work_t   w;
    chat_conv_slot_t  *slot;
    chat_q_rc_t        rc;
    const char        *params[1];
    char               count_text[24];
    PGresult          *res = NULL;
    int64_t            now = chat_now_ms();
    size_t             i, k, nnew;

    memset(&w, 0, sizeof(w));
    *groups = NULL;
    *ngroups = 0;

    for (i = 0; i < n; i++) {
        sends[i].state = sends[i].direct_forbidden ? CHAT_SEND_FORBIDDEN
                                                   : CHAT_SEND_PENDING;
        sends[i].same_as_set = false;
        memset(&sends[i].msg, 0, sizeof(chat_message_t));
    }

    rc = chat_store_command(st, "BEGIN");
    if (rc != CHAT_Q_OK) {
        goto done;
    }

    rc = chat_sends_check_members(st, sends, n, arena);
    if (rc != CHAT_Q_OK) {
        goto done;
    }

    rc = chat_sends_find_stored(st, sends, n, arena);
    if (rc != CHAT_Q_OK) {
        goto done;
    }

    chat_sends_fold(&w, sends, n, arena);

    for (i = 0; i < n; i++) {
        if (sends[i].state == CHAT_SEND_PENDING) {
            chat_conv_slot(&w, sends[i].req->conv, n)->nnew++;
        }
    }

    rc = chat_sends_allocate(st, &w, true, now);
    if (rc == CHAT_Q_OK) {
        rc = chat_sends_allocate(st, &w, false, now);
    }

    if (rc != CHAT_Q_OK) {
        goto done;
    }

    /* seqs in record order; a conversation that could not be advanced
     * (a group that does not exist) got no seqs at all */
    nnew = 0;

    for (i = 0; i < n; i++) {
        chat_send_t  *s = &sends[i];

        if (s->state != CHAT_SEND_PENDING) {
            continue;
        }

        chat_map_get(&w.slot_index, s->req->conv, &k);
        slot = &w.slots[k];

        if (!slot->allocated) {
            log_warn("partition %d offset %" PRId64 ": conversation %s"
                     " cannot take messages", s->req->partition,
                     s->req->offset, s->req->conv);
            s->state = CHAT_SEND_FORBIDDEN;
            continue;
        }

        s->state = CHAT_SEND_NEW;
        s->msg.conv = s->req->conv;
        s->msg.seq = slot->next_seq++;
        s->msg.sender = s->req->user;
        s->msg.cmid = s->req->cmid;
        s->msg.kind = "text";
        s->msg.body = s->req->body;
        s->msg.server_ts = now;
        nnew++;
    }

    if (nnew > 0) {
        snprintf(count_text, sizeof(count_text), "%zu", nnew);
        params[0] = count_text;

        rc = chat_store_run(st, "message_ids", 1, params, &res);
        if (rc != CHAT_Q_OK) {
            goto done;
        }

        k = 0;
        for (i = 0; i < n && k < (size_t) PQntuples(res); i++) {
            if (sends[i].state == CHAT_SEND_NEW) {
                sends[i].msg.message_id = chat_int(res, (int) k++, 0);
            }
        }

        PQclear(res);

        rc = chat_sends_insert(st, sends, n, now);
        if (rc != CHAT_Q_OK) {
            goto done;
        }

        rc = chat_sends_move_pointers(st, &w, sends, n, arena);
        if (rc != CHAT_Q_OK) {
            goto done;
        }
    }

    rc = chat_sends_load_groups(st, sends, n, arena, groups, ngroups);
    if (rc != CHAT_Q_OK) {
        goto done;
    }

    rc = chat_store_command(st, "COMMIT");
    if (rc != CHAT_Q_OK) {
        goto done;
    }

    for (i = 0; i < n; i++) {
        if (sends[i].same_as_set) {
            sends[i].msg = sends[sends[i].same_as].msg;
        }
    }

done:

    chat_send_work_free(&w);

    return rc;
}


/*
 * Runs one kind of transaction until it commits: the connection is waited
 * for, conflicts retried, other failures retried CHAT_STORE_FAILURES_MAX
 * times. attempt runs the transaction; rollback undoes its side effects
 * outside the database.
 */
typedef chat_q_rc_t (*chat_attempt_pt)(chat_store_t *st, void *data);
typedef void (*chat_undo_pt)(void *data);

static chat_store_rc_t
chat_store_retry(chat_store_t *st, chat_attempt_pt attempt,
    chat_undo_pt undo, void *data)
{
    unsigned  failures = 0, conflicts = 0;

    for ( ;; ) {
        if (st->conn == NULL && !chat_store_reconnect(st)) {
            return CHAT_STORE_STOPPED;
        }

        switch (attempt(st, data)) {

        case CHAT_Q_OK:
            return CHAT_STORE_OK;

        case CHAT_Q_DOWN:
            undo(data);
            chat_store_disconnect(st);
            break;

        case CHAT_Q_CONFLICT:
            undo(data);
            chat_store_rollback(st);

            if (++conflicts > CHAT_STORE_CONFLICTS_MAX) {
                return CHAT_STORE_REFUSED;
            }

            /* the other worker is mid-transaction: let it finish; not
             * interrupted by stop, the batch is finished first */
            {
                chat_stop_t  never = 0;

                chat_sleep_ms(conflicts < 10 ? 10 * conflicts : 100, &never);
            }

            break;

        case CHAT_Q_FAILED:
            undo(data);
            chat_store_rollback(st);

            if (++failures >= CHAT_STORE_FAILURES_MAX) {
                return CHAT_STORE_REFUSED;
            }

            break;
        }
    }
}


typedef struct {
    chat_send_t      *sends;
    size_t            n;
    chat_arena_t     *arena;
    chat_members_t  **groups;
    size_t           *ngroups;
} chat_sends_args_t;


static chat_q_rc_t
chat_sends_attempt(chat_store_t *st, void *data)
{
    chat_sends_args_t  *a = data;

    return chat_sends_once(st, a->sends, a->n, a->arena, a->groups,
                           a->ngroups);
}


static void
chat_sends_undo(void *data)
{
    (void) data;    /* each attempt starts from the requests again */
}


chat_store_rc_t
chat_store_sends(chat_store_t *st, chat_send_t *sends, size_t n,
    chat_arena_t *arena, chat_members_t **groups, size_t *ngroups)
{
    chat_sends_args_t  args = { sends, n, arena, groups, ngroups };

    return chat_store_retry(st, chat_sends_attempt, chat_sends_undo, &args);
}


/* ---- reads ---- */

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


static chat_q_rc_t
chat_read_history(chat_store_t *st, chat_request_t *req, chat_outbox_t *out)
{
    const char      *params[3];
    char             bound[24], limit[24];
    json_t          *frame, *messages;
    chat_message_t   m;
    PGresult        *res = NULL;
    chat_q_rc_t      rc;
    int              row, nrows, first, last, step;
    bool             has_more;

    switch (chat_direct_access(req->conv, req->user)) {

    case CHAT_ACCESS_FORBIDDEN:
        chat_answer_forbidden(out, req);
        return CHAT_Q_OK;

    case CHAT_ACCESS_ASK_STORE:
        params[0] = req->conv;
        params[1] = req->user;

        rc = chat_store_run(st, "is_member", 2, params, &res);
        if (rc != CHAT_Q_OK) {
            return rc;
        }

        nrows = PQntuples(res);
        PQclear(res);

        if (nrows == 0) {
            chat_answer_forbidden(out, req);
            return CHAT_Q_OK;
        }

        break;

    case CHAT_ACCESS_ALLOWED:
        /* a direct conversation not begun yet reads as empty */
        break;
    }

    /* one row more than asked tells whether there is more */
    snprintf(limit, sizeof(limit), "%" PRId64, req->limit + 1);
    snprintf(bound, sizeof(bound), "%" PRId64,
             req->after_seq >= 0 ? req->after_seq
             : req->before_seq >= 0 ? req->before_seq : INT64_MAX);

    params[0] = req->conv;
    params[1] = bound;
    params[2] = limit;

    rc = chat_store_run(st, req->after_seq >= 0 ? "history_after"
                                                : "history_before",
                        3, params, &res);
    if (rc != CHAT_Q_OK) {
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
        chat_row_message(res, row, 0, &m);
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

    return CHAT_Q_OK;
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


static chat_q_rc_t
chat_read_sync(chat_store_t *st, chat_request_t *req, chat_outbox_t *out)
{
    chat_buf_t      *convs = &st->arrays[0], *cursors = &st->arrays[1];
    const char      *params[3];
    char             cap[24];
    json_t          *frame, *items, *item, *pending;
    chat_message_t   m;
    PGresult        *list = NULL, *msgs = NULL;
    chat_q_rc_t      rc;
    int              row, nconvs, nmsgs, start, end, i;
    int64_t          last_seq;
    size_t           asked = 0, k;

    params[0] = req->user;

    rc = chat_store_run(st, "sync_conversations", 1, params, &list);
    if (rc != CHAT_Q_OK) {
        return rc;
    }

    nconvs = PQntuples(list);

    chat_pg_array_begin(convs);
    chat_pg_array_begin(cursors);

    for (row = 0; row < nconvs; row++) {
        last_seq = chat_int(list, row, 3);

        if (last_seq > chat_sync_cursor(req, PQgetvalue(list, row, 0))) {
            chat_pg_array_text(convs, PQgetvalue(list, row, 0));
            chat_pg_array_int(cursors,
                              chat_sync_cursor(req, PQgetvalue(list, row, 0)));
            asked++;
        }
    }

    msgs = NULL;

    if (asked > 0) {
        /* one more than the cap tells which ones are truncated */
        snprintf(cap, sizeof(cap), "%d", CHAT_SYNC_CAP + 1);
        params[0] = chat_pg_array_end(convs);
        params[1] = chat_pg_array_end(cursors);
        params[2] = cap;

        rc = chat_store_run(st, "sync_messages", 3, params, &msgs);
        if (rc != CHAT_Q_OK) {
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
                            json_integer(chat_int(list, row, 6)));
        json_object_set_new(item, "last_seq",
                            json_integer(chat_int(list, row, 3)));
        json_object_set_new(item, "delivered_seq",
                            json_integer(chat_int(list, row, 4)));
        json_object_set_new(item, "read_seq",
                            json_integer(chat_int(list, row, 5)));
        json_object_set_new(item, "unread",
                            json_integer(chat_int(list, row, 7)));

        if (PQgetisnull(list, row, 8)) {
            json_object_set_new(item, "last_message", json_null());

        } else {
            chat_row_message(list, row, 8, &m);
            json_object_set_new(item, "last_message",
                                chat_frame_message_object(&m, false));
        }

        start = i;
        while (i < nmsgs && strcmp(PQgetvalue(msgs, i, 0), conv) == 0) {
            i++;
        }
        end = i;

        if (end - start > CHAT_SYNC_CAP) {
            /* ascending: the oldest one is the one over the cap */
            start = end - CHAT_SYNC_CAP;
            json_object_set_new(item, "truncated", json_true());
        }

        for (k = start; k < (size_t) end; k++) {
            chat_row_message(msgs, (int) k, 0, &m);
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

    return CHAT_Q_OK;
}


typedef struct {
    chat_request_t  **reads;
    size_t            n;
    chat_outbox_t    *out;
    size_t            nframes;      /* the outbox before the attempt */
    size_t            ndeliveries;
} chat_reads_args_t;


static chat_q_rc_t
chat_reads_attempt(chat_store_t *st, void *data)
{
    chat_reads_args_t  *a = data;
    chat_q_rc_t         rc;
    size_t              i;

    a->nframes = a->out->nframes;
    a->ndeliveries = a->out->ndeliveries;

    /* one snapshot for all reads of the batch */
    rc = chat_store_command(st,
             "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    if (rc != CHAT_Q_OK) {
        return rc;
    }

    for (i = 0; i < a->n; i++) {
        rc = a->reads[i]->op == CHAT_OP_SYNC
             ? chat_read_sync(st, a->reads[i], a->out)
             : chat_read_history(st, a->reads[i], a->out);

        if (rc != CHAT_Q_OK) {
            return rc;
        }
    }

    return chat_store_command(st, "COMMIT");
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

    return chat_store_retry(st, chat_reads_attempt, chat_reads_undo, &args);
}
