/*
 * worker_store_sends.c: the write transaction of a batch's sends.
 *
 * A batch's sends are one transaction: membership checks, the lookup of
 * already stored (sender, client_msg_id) pairs, seq allocation under the
 * conversation's row lock, one multi-row INSERT of the messages and the
 * sender's receipt pointers. Values always travel as parameters of prepared
 * statements; many rows travel as array parameters expanded by unnest(),
 * and the statements that do not wait for each other's answers are sent
 * together (libpq's pipeline mode), so that a batch of one send or of
 * 1000 is three round trips. The last one also finds the push devices of
 * the messages' recipients (the push topic's records, worker_pushes.c):
 * one statement a batch, never one a message, and no round trip of its
 * own. A conflict with
 * another worker (unique violation or deadlock while partitions move
 * between workers) retries the batch, whose retry then finds the other
 * worker's rows and acks them.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_sends_sql[] = {

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
      "SELECT m.sender_id, m.client_msg_id, " CHAT_PG_MESSAGE_COLUMNS ","
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

    /* direct sends whose recipient blocks the sender */
    { "blocked_sends",
      "SELECT t.r, t.s FROM unnest($1::text[], $2::text[]) AS t(r, s)"
      " JOIN blocks b ON b.user_id = t.r AND b.blocked_id = t.s" },

    /* replies: the messages answered, text messages of the same
     * conversation (asked only when a send of the batch is a reply) */
    { "reply_targets",
      "SELECT t.c, t.r FROM unnest($1::text[], $2::bigint[]) AS t(c, r)"
      " JOIN messages m ON m.conversation_id = t.c AND m.message_id = t.r"
      " WHERE m.kind = 'text'" },

    { "set_replies",
      "UPDATE messages AS m SET reply_to = t.r"
      " FROM unnest($1::bigint[], $2::bigint[]) AS t(id, r)"
      " WHERE m.message_id = t.id" },

    { "message_ids",
      "SELECT nextval('message_ids') FROM generate_series(1, $1::int)" },

    { "insert_messages",
      "INSERT INTO messages (conversation_id, seq, message_id, sender_id,"
      " device_id, client_msg_id, kind, body, server_ts, kafka_partition,"
      " kafka_offset, attachment_names)"
      " SELECT t.c, t.s, t.id, t.u, t.d, t.cm, 'text', t.b, $8, t.p, t.o,"
      " t.n"
      " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],"
      " $5::text[], $6::text[], $7::text[], $9::int[], $10::bigint[],"
      " $11::text[])"
      " AS t(c, s, id, u, d, cm, b, p, o, n)" },

    /* the registered devices of the members of the conversations a
     * batch stores text messages in: a direct conversation's two (named
     * by its id: their members rows may come with this very batch) or a
     * group's current ones; the senders are left out by the caller.
     * Without any registration it is one probe of an empty table */
    { "push_targets",
      "SELECT t.c, d.user_id, d.device_id"
      " FROM unnest($1::text[]) AS t(c)"
      " JOIN LATERAL ("
      "  SELECT split_part(t.c, ':', 2) AS u WHERE t.c LIKE 'dm:%'"
      "  UNION ALL"
      "  SELECT split_part(t.c, ':', 3) WHERE t.c LIKE 'dm:%'"
      "   AND split_part(t.c, ':', 3) <> split_part(t.c, ':', 2)"
      "  UNION ALL"
      "  SELECT m.user_id FROM members m"
      "  WHERE m.conversation_id = t.c AND m.removed_seq IS NULL"
      "   AND t.c NOT LIKE 'dm:%') r ON true"
      " JOIN push_devices d ON d.user_id = r.u"
      " WHERE EXISTS (SELECT 1 FROM push_devices)" },

    /* the uploads a message attaches: the ops checked them before */
    { "attach",
      "UPDATE attachments AS a SET message_id = t.m, position = t.p"
      " FROM unnest($1::text[], $2::bigint[], $3::int[]) AS t(a, m, p)"
      " WHERE a.attachment_id = t.a AND a.message_id IS NULL" },

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
};

const chat_pg_statements_t  chat_store_sends_statements = {
    chat_sends_sql, sizeof(chat_sends_sql) / sizeof(chat_sends_sql[0])
};


/* one conversation written to by the batch */
typedef struct {
    const char  *conv;
    bool         direct;
    bool         allocated;     /* its row was locked and advanced */
    bool         created;       /* its first messages are in this batch */
    int64_t      nnew;
    int64_t      next_seq;
    char         a[NGX_CHAT_WIRE_ID_MAX + 1];     /* direct: the two members */
    char         b[NGX_CHAT_WIRE_ID_MAX + 1];
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

    i = chat_map_put(&w->pointer_index, chat_map_pair(arena, conv, user),
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


/*
 * The transaction in three round trips: BEGIN with the membership check
 * and the lookup of stored sends; the seq allocation with the message ids;
 * the INSERTs with COMMIT. Each function below either fills a step's
 * parameters (false: the step is not needed) or reads its result.
 */

/* non-direct conversations: the sender must be a member now */
static bool
chat_sends_members_step(chat_store_t *st, chat_send_t **sends, size_t n,
    const char **params, chat_pg_step_t *step)
{
    chat_buf_t  *convs = &st->arrays[0], *users = &st->arrays[1];
    size_t       i, asked = 0;

    chat_pg_array_begin(convs);
    chat_pg_array_begin(users);

    for (i = 0; i < n; i++) {
        if (sends[i]->state == CHAT_SEND_PENDING
            && !chat_is_dm_id(sends[i]->req->conv))
        {
            chat_pg_array_text(convs, sends[i]->req->conv);
            chat_pg_array_text(users, sends[i]->req->user);
            asked++;
        }
    }

    if (asked == 0) {
        return false;
    }

    params[0] = chat_pg_array_end(convs);
    params[1] = chat_pg_array_end(users);
    step->stmt = "members_check";
    step->nparams = 2;
    step->params = params;

    return true;
}


static void
chat_sends_members_apply(PGresult *res, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    chat_map_t  allowed = { 0 };
    size_t      i, dummy;
    int         row;

    for (row = 0; row < PQntuples(res); row++) {
        chat_map_put(&allowed, chat_map_pair(arena, PQgetvalue(res, row, 0),
                                              PQgetvalue(res, row, 1)), 1);
    }

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

        if (s->state == CHAT_SEND_PENDING && !chat_is_dm_id(s->req->conv)
            && !chat_map_get(&allowed,
                             chat_map_pair(arena, s->req->conv, s->req->user),
                             &dummy))
        {
            s->state = CHAT_SEND_FORBIDDEN;
        }
    }

    chat_map_free(&allowed);
}


/* sends stored before, asked for every send the membership check may let
 * through (its answer comes in the same round trip) */
static bool
chat_sends_stored_step(chat_store_t *st, chat_send_t **sends, size_t n,
    const char **params, chat_pg_step_t *step)
{
    chat_buf_t  *senders = &st->arrays[2], *cmids = &st->arrays[3];
    size_t       i, asked = 0;

    chat_pg_array_begin(senders);
    chat_pg_array_begin(cmids);

    for (i = 0; i < n; i++) {
        if (sends[i]->state == CHAT_SEND_PENDING) {
            chat_pg_array_text(senders, sends[i]->req->user);
            chat_pg_array_text(cmids, sends[i]->req->cmid);
            asked++;
        }
    }

    if (asked == 0) {
        return false;
    }

    params[0] = chat_pg_array_end(senders);
    params[1] = chat_pg_array_end(cmids);
    step->stmt = "stored_sends";
    step->nparams = 2;
    step->params = params;

    return true;
}


/* RETRY gets the stored ack; REPLAY, the same Kafka record stored by a
 * worker that died before committing its offset, gets its ack and
 * deliveries again; a send the membership check refused stays refused */
static void
chat_sends_stored_apply(PGresult *res, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    chat_map_t       stored = { 0 };
    chat_message_t  *rows;
    int32_t         *partitions;
    int64_t         *offsets;
    size_t           i, row;
    int              nrows, r;

    nrows = PQntuples(res);
    if (nrows == 0) {
        return;
    }

    rows = chat_arena_alloc(arena, nrows * sizeof(chat_message_t));
    partitions = chat_arena_alloc(arena, nrows * sizeof(int32_t));
    offsets = chat_arena_alloc(arena, nrows * sizeof(int64_t));

    for (r = 0; r < nrows; r++) {
        chat_pg_message(res, r, 2, &rows[r]);

        if (rows[r].cmid == NULL) {
            continue;       /* cannot happen: the join compares it */
        }

        chat_pg_message_keep(&rows[r], arena);
        partitions[r] = PQgetisnull(res, r, 2 + CHAT_PG_MESSAGE_NCOLUMNS)
                        ? -1 : (int32_t) chat_pg_int(res, r,
                                               2 + CHAT_PG_MESSAGE_NCOLUMNS);
        offsets[r] = PQgetisnull(res, r, 3 + CHAT_PG_MESSAGE_NCOLUMNS)
                     ? -1 : chat_pg_int(res, r, 3 + CHAT_PG_MESSAGE_NCOLUMNS);
        chat_map_put(&stored, chat_map_pair(arena, rows[r].sender,
                                            rows[r].cmid), r);
    }

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

        if (s->state != CHAT_SEND_PENDING
            || !chat_map_get(&stored,
                             chat_map_pair(arena, s->req->user, s->req->cmid),
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
}


/* the replays go out again as they went the first time: with their
 * attachments (the rows say what they are now) */
static chat_pg_rc_t
chat_sends_replayed_attachments(chat_store_t *st, chat_send_t **sends,
    size_t n, chat_arena_t *arena)
{
    chat_message_t  **replays = NULL;
    size_t            i, nreplays = 0;

    for (i = 0; i < n; i++) {
        if (sends[i]->state != CHAT_SEND_REPLAY) {
            continue;
        }

        if (replays == NULL) {
            replays = chat_arena_alloc(arena, n * sizeof(chat_message_t *));
        }

        replays[nreplays++] = &sends[i]->msg;
    }

    return chat_pg_attachments_of(st, replays, nreplays, arena);
}


/* the new messages' attachments, theirs from now on */
static chat_pg_rc_t
chat_sends_attach(chat_store_t *st, chat_send_t **sends, size_t n)
{
    chat_buf_t   *ids = &st->arrays[0], *mids = &st->arrays[1];
    chat_buf_t   *pos = &st->arrays[2];
    const char   *params[3];
    json_t       *id;
    size_t        i, k, count = 0;

    chat_pg_array_begin(ids);
    chat_pg_array_begin(mids);
    chat_pg_array_begin(pos);

    for (i = 0; i < n; i++) {
        if (sends[i]->state != CHAT_SEND_NEW || sends[i]->attachments == NULL
            || sends[i]->req->attachments == NULL)
        {
            continue;
        }

        json_array_foreach(sends[i]->req->attachments, k, id) {
            chat_pg_array_text(ids, json_string_value(id));
            chat_pg_array_int(mids, sends[i]->msg.message_id);
            chat_pg_array_int(pos, (int64_t) k);
            count++;
        }
    }

    if (count == 0) {
        return CHAT_PG_OK;
    }

    params[0] = chat_pg_array_end(ids);
    params[1] = chat_pg_array_end(mids);
    params[2] = chat_pg_array_end(pos);

    return chat_pg_run(st, "attach", 3, params, NULL);
}


/* arrays 4 and 5: the direct sends' recipients who block their senders,
 * asked with the first round trip */
static bool
chat_sends_blocks_step(chat_store_t *st, chat_send_t **sends, size_t n,
    const char **params, chat_pg_step_t *step)
{
    chat_buf_t  *rcpts = &st->arrays[4], *senders = &st->arrays[5];
    const char  *rcpt;
    char         a[NGX_CHAT_WIRE_ID_MAX + 1], b[NGX_CHAT_WIRE_ID_MAX + 1];
    size_t       i, asked = 0;

    chat_pg_array_begin(rcpts);
    chat_pg_array_begin(senders);

    for (i = 0; i < n; i++) {
        if (sends[i]->state == CHAT_SEND_PENDING
            && chat_parse_dm(sends[i]->req->conv, a, b)
            && strcmp(a, b) != 0)
        {
            rcpt = strcmp(a, sends[i]->req->user) == 0 ? b : a;
            chat_pg_array_text(rcpts, rcpt);
            chat_pg_array_text(senders, sends[i]->req->user);
            asked++;
        }
    }

    if (asked == 0) {
        return false;
    }

    params[0] = chat_pg_array_end(rcpts);
    params[1] = chat_pg_array_end(senders);

    step->stmt = "blocked_sends";
    step->nparams = 2;
    step->params = params;

    return true;
}


/* the sends still to store whose recipient blocks their sender are
 * forbidden; retries of what was stored before keep their answers */
static void
chat_sends_blocks_apply(PGresult *res, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    const char  *rcpt;
    char         a[NGX_CHAT_WIRE_ID_MAX + 1], b[NGX_CHAT_WIRE_ID_MAX + 1];
    chat_map_t   blocked = { 0 };
    size_t       i, dummy;
    int          row;

    if (PQntuples(res) == 0) {
        return;
    }

    for (row = 0; row < PQntuples(res); row++) {
        chat_map_put(&blocked, chat_map_pair(arena, PQgetvalue(res, row, 0),
                                              PQgetvalue(res, row, 1)), 1);
    }

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

        if (s->state != CHAT_SEND_PENDING
            || !chat_parse_dm(s->req->conv, a, b) || strcmp(a, b) == 0)
        {
            continue;
        }

        rcpt = strcmp(a, s->req->user) == 0 ? b : a;

        if (chat_map_get(&blocked, chat_map_pair(arena, rcpt, s->req->user),
                         &dummy))
        {
            s->state = CHAT_SEND_FORBIDDEN;
        }
    }

    chat_map_free(&blocked);
}


/* replies to what is not a text message of the same conversation are
 * refused; none of the batch a reply: nothing is asked */
static chat_pg_rc_t
chat_sends_check_replies(chat_store_t *st, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    chat_buf_t   *convs = &st->arrays[0], *targets = &st->arrays[1];
    const char   *params[2];
    char          key[24];
    chat_map_t    found = { 0 };
    PGresult     *res = NULL;
    chat_pg_rc_t  rc;
    size_t        i, asked = 0, dummy;
    int           row;

    chat_pg_array_begin(convs);
    chat_pg_array_begin(targets);

    for (i = 0; i < n; i++) {
        if (sends[i]->state == CHAT_SEND_PENDING && sends[i]->req->reply_to) {
            chat_pg_array_text(convs, sends[i]->req->conv);
            chat_pg_array_int(targets, sends[i]->req->reply_to);
            asked++;
        }
    }

    if (asked == 0) {
        return CHAT_PG_OK;
    }

    params[0] = chat_pg_array_end(convs);
    params[1] = chat_pg_array_end(targets);

    rc = chat_pg_run(st, "reply_targets", 2, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    for (row = 0; row < PQntuples(res); row++) {
        chat_map_put(&found, chat_map_pair(arena, PQgetvalue(res, row, 0),
                                            PQgetvalue(res, row, 1)), 1);
    }

    PQclear(res);

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

        if (s->state != CHAT_SEND_PENDING || s->req->reply_to == 0) {
            continue;
        }

        snprintf(key, sizeof(key), "%" PRId64, s->req->reply_to);

        if (!chat_map_get(&found, chat_map_pair(arena, s->req->conv, key),
                          &dummy))
        {
            s->state = CHAT_SEND_REFUSED;
            s->error_code = "bad_request";
            s->error_message = "reply_to is not a message of this "
                               "conversation";
        }
    }

    chat_map_free(&found);

    return CHAT_PG_OK;
}


/* the replies among the new messages: what each answers */
/* arrays 12 and 13: the replies' targets, once their rows are in */
static bool
chat_sends_replies_step(chat_store_t *st, chat_send_t **sends, size_t n,
    const char **params, chat_pg_step_t *step)
{
    chat_buf_t  *ids = &st->arrays[12], *targets = &st->arrays[13];
    size_t       i, asked = 0;

    chat_pg_array_begin(ids);
    chat_pg_array_begin(targets);

    for (i = 0; i < n; i++) {
        if (sends[i]->state == CHAT_SEND_NEW && sends[i]->req->reply_to) {
            sends[i]->msg.reply_to = sends[i]->req->reply_to;
            chat_pg_array_int(ids, sends[i]->msg.message_id);
            chat_pg_array_int(targets, sends[i]->req->reply_to);
            asked++;
        }
    }

    if (asked == 0) {
        return false;
    }

    params[0] = chat_pg_array_end(ids);
    params[1] = chat_pg_array_end(targets);

    step->stmt = "set_replies";
    step->nparams = 2;
    step->params = params;

    return true;
}


/* array 15: the conversations of the messages stored now or by this
 * very record before (a replay produces its push records again) */
static bool
chat_sends_push_step(chat_store_t *st, chat_send_t **sends, size_t n,
    const char **params, chat_pg_step_t *step)
{
    chat_buf_t  *convs = &st->arrays[15];
    chat_map_t   seen = { 0 };
    size_t       i, asked = 0;

    chat_pg_array_begin(convs);

    for (i = 0; i < n; i++) {
        if ((sends[i]->state == CHAT_SEND_NEW
             || sends[i]->state == CHAT_SEND_REPLAY)
            && chat_map_put(&seen, sends[i]->msg.conv, asked) == asked)
        {
            chat_pg_array_text(convs, sends[i]->msg.conv);
            asked++;
        }
    }

    chat_map_free(&seen);

    if (asked == 0) {
        return false;
    }

    params[0] = chat_pg_array_end(convs);
    step->stmt = "push_targets";
    step->nparams = 1;
    step->params = params;

    return true;
}


/* each message's push devices: its conversation's, but the sender's */
static void
chat_sends_push_apply(PGresult *res, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    chat_push_device_t  *rows;
    chat_map_t           first = { 0 };
    size_t              *next, *last, i, k, head, count;
    int                  nrows, r;

    nrows = PQntuples(res);
    if (nrows == 0) {
        return;
    }

    rows = chat_arena_alloc(arena, nrows * sizeof(chat_push_device_t));
    next = chat_arena_alloc(arena, nrows * sizeof(size_t));
    last = chat_arena_alloc(arena, nrows * sizeof(size_t));

    /* the rows of each conversation, chained from its first one */
    for (r = 0; r < nrows; r++) {
        rows[r].user = chat_arena_strdup(arena, PQgetvalue(res, r, 1));
        rows[r].device = chat_arena_strdup(arena, PQgetvalue(res, r, 2));
        next[r] = SIZE_MAX;
        head = chat_map_put(&first, PQgetvalue(res, r, 0), (size_t) r);

        if (head == (size_t) r) {
            last[r] = (size_t) r;

        } else {
            next[last[head]] = (size_t) r;
            last[head] = (size_t) r;
        }
    }

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

        if ((s->state != CHAT_SEND_NEW && s->state != CHAT_SEND_REPLAY)
            || !chat_map_get(&first, s->msg.conv, &head))
        {
            continue;
        }

        count = 0;

        for (k = head; k != SIZE_MAX; k = next[k]) {
            count += strcmp(rows[k].user, s->msg.sender) != 0;
        }

        if (count == 0) {
            continue;
        }

        s->push = chat_arena_alloc(arena, count * sizeof(chat_push_device_t));

        for (k = head; k != SIZE_MAX; k = next[k]) {
            if (strcmp(rows[k].user, s->msg.sender) != 0) {
                s->push[s->npush++] = rows[k];
            }
        }
    }

    chat_map_free(&first);
}


/* a send repeated inside the batch is a retry of its first occurrence */
static void
chat_sends_fold(chat_send_work_t *w, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    size_t  i, first;

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

        if (s->state != CHAT_SEND_PENDING) {
            continue;
        }

        first = chat_map_put(&w->keys,
                             chat_map_pair(arena, s->req->user, s->req->cmid),
                             i);

        if (first != i) {
            s->state = CHAT_SEND_RETRY;
            s->same_as = first;
            s->same_as_set = true;
        }
    }
}


/* advances last_seq of every direct (or group) conversation by its new
 * messages; arrays from `first` on */
static bool
chat_sends_allocate_step(chat_store_t *st, chat_send_work_t *w, bool direct,
    size_t first, const char *now_text, const char **params,
    chat_pg_step_t *step)
{
    chat_buf_t  *convs = &st->arrays[first], *counts = &st->arrays[first + 1];
    size_t       i, asked = 0;

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
        return false;
    }

    params[0] = chat_pg_array_end(convs);
    params[1] = chat_pg_array_end(counts);
    params[2] = now_text;
    step->stmt = direct ? "alloc_direct" : "alloc_group";
    step->nparams = 3;
    step->params = params;

    return true;
}


static void
chat_sends_allocate_apply(PGresult *res, chat_send_work_t *w)
{
    size_t  i;
    int     row;

    for (row = 0; row < PQntuples(res); row++) {
        if (chat_map_get(&w->slot_index, PQgetvalue(res, row, 0), &i)) {
            w->slots[i].allocated = true;
            w->slots[i].next_seq = chat_pg_int(res, row, 1)
                                   - w->slots[i].nnew + 1;

            /* a conversation's seqs start at 1 with its first message */
            w->slots[i].created = w->slots[i].next_seq == 1;
        }
    }
}


/* arrays 0 to 8, and 14: the names of what each attaches, for search */
static void
chat_sends_insert_step(chat_store_t *st, chat_send_t **sends, size_t n,
    const char *now_text, const char **params, chat_pg_step_t *step)
{
    chat_buf_t  *a = st->arrays, *names = &st->arrays[14];
    size_t       i, k;

    for (k = 0; k < 9; k++) {
        chat_pg_array_begin(&a[k]);
    }

    chat_pg_array_begin(names);

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

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
        chat_pg_array_text(names, s->names);
    }

    for (k = 0; k < 7; k++) {
        params[k] = chat_pg_array_end(&a[k]);
    }

    params[7] = now_text;
    params[8] = chat_pg_array_end(&a[7]);
    params[9] = chat_pg_array_end(&a[8]);
    params[10] = chat_pg_array_end(names);

    step->stmt = "insert_messages";
    step->nparams = 11;
    step->params = params;
}


/* arrays 9 to 11 */
static bool
chat_sends_pointers_step(chat_store_t *st, chat_send_work_t *w,
    chat_send_t **sends, size_t n, chat_arena_t *arena, const char **params,
    chat_pg_step_t *step)
{
    chat_buf_t        *convs = &st->arrays[9], *users = &st->arrays[10];
    chat_buf_t        *seqs = &st->arrays[11];
    chat_conv_slot_t  *slot;
    size_t             i, k;

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

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
        return false;
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
    step->stmt = "move_pointers";
    step->nparams = 3;
    step->params = params;

    return true;
}


static chat_pg_rc_t
chat_sends_once(chat_store_t *st, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    chat_send_work_t   w;
    chat_conv_slot_t  *slot;
    chat_pg_step_t     steps[5];
    chat_pg_rc_t       rc;
    const char        *p_first[2], *p_second[2], *p_blocks[2];
    const char        *p_count[1], *p_push[1];
    const char        *p_insert[11], *p_pointers[3], *p_replies[2];
    char               count_text[24], now_text[24];
    PGresult          *members = NULL, *stored = NULL, *blocks = NULL;
    PGresult          *direct = NULL, *push = NULL;
    PGresult          *group = NULL, *ids = NULL;
    int64_t            now = chat_now_ms();
    size_t             i, k, nsteps, npending, nnew = 0;
    bool               ask_members, ask_stored;

    memset(&w, 0, sizeof(w));
    snprintf(now_text, sizeof(now_text), "%" PRId64, now);

    for (i = 0; i < n; i++) {
        sends[i]->state = sends[i]->direct_forbidden ? CHAT_SEND_FORBIDDEN
                          : sends[i]->bad_attachments ? CHAT_SEND_BAD
                          : CHAT_SEND_PENDING;
        sends[i]->same_as_set = false;
        memset(&sends[i]->msg, 0, sizeof(chat_message_t));
        sends[i]->push = NULL;
        sends[i]->npush = 0;
    }

    /* 1: BEGIN, who may send, what is stored already, who is blocked */
    memset(steps, 0, sizeof(steps));
    steps[0].sql = "BEGIN";
    nsteps = 1;

    ask_members = chat_sends_members_step(st, sends, n, p_first,
                                          &steps[nsteps]);
    if (ask_members) {
        steps[nsteps++].out = &members;
    }

    ask_stored = chat_sends_stored_step(st, sends, n, p_second,
                                        &steps[nsteps]);
    if (ask_stored) {
        steps[nsteps++].out = &stored;
    }

    if (chat_sends_blocks_step(st, sends, n, p_blocks, &steps[nsteps])) {
        steps[nsteps++].out = &blocks;
    }

    rc = chat_pg_pipeline(st, steps, nsteps);
    if (rc != CHAT_PG_OK) {
        goto done;
    }

    if (members) {
        chat_sends_members_apply(members, sends, n, arena);
    }

    if (stored) {
        chat_sends_stored_apply(stored, sends, n, arena);

        rc = chat_sends_replayed_attachments(st, sends, n, arena);
        if (rc != CHAT_PG_OK) {
            goto done;
        }
    }

    chat_sends_fold(&w, sends, n, arena);

    if (blocks) {
        chat_sends_blocks_apply(blocks, sends, n, arena);
    }

    rc = chat_sends_check_replies(st, sends, n, arena);
    if (rc != CHAT_PG_OK) {
        goto done;
    }
    npending = 0;

    for (i = 0; i < n; i++) {
        if (sends[i]->state == CHAT_SEND_PENDING) {
            chat_conv_slot(&w, sends[i]->req->conv, n)->nnew++;
            npending++;
        }
    }

    if (npending == 0) {
        goto commit;        /* replays may still want their pushes */
    }

    /* 2: seqs and message ids; ids for a conversation that turns out not
     * to take messages are left unused */
    memset(steps, 0, sizeof(steps));
    nsteps = 0;

    if (chat_sends_allocate_step(st, &w, true, 0, now_text, p_insert,
                                 &steps[nsteps]))
    {
        steps[nsteps++].out = &direct;
    }

    if (chat_sends_allocate_step(st, &w, false, 2, now_text, p_insert + 3,
                                 &steps[nsteps]))
    {
        steps[nsteps++].out = &group;
    }

    snprintf(count_text, sizeof(count_text), "%zu", npending);
    p_count[0] = count_text;
    steps[nsteps].stmt = "message_ids";
    steps[nsteps].nparams = 1;
    steps[nsteps].params = p_count;
    steps[nsteps++].out = &ids;

    rc = chat_pg_pipeline(st, steps, nsteps);
    if (rc != CHAT_PG_OK) {
        goto done;
    }

    if (direct) {
        chat_sends_allocate_apply(direct, &w);
    }

    if (group) {
        chat_sends_allocate_apply(group, &w);
    }

    /* seqs in record order; a conversation that could not be advanced
     * (a group that does not exist) got no seqs at all */
    nnew = 0;

    for (i = 0; i < n; i++) {
        chat_send_t  *s = sends[i];

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
        s->msg.message_id = nnew < (size_t) PQntuples(ids)
                            ? chat_pg_int(ids, (int) nnew, 0) : 0;
        s->msg.attachments = s->attachments;
        nnew++;
    }

commit:

    /* 3: the rows, the push devices, and COMMIT */
    memset(steps, 0, sizeof(steps));
    nsteps = 0;

    if (nnew > 0) {
        /* at once, in the transaction: its arrays are free again before
         * the steps below take theirs */
        rc = chat_sends_attach(st, sends, n);
        if (rc != CHAT_PG_OK) {
            goto done;
        }

        chat_sends_insert_step(st, sends, n, now_text, p_insert,
                               &steps[nsteps++]);

        if (chat_sends_pointers_step(st, &w, sends, n, arena, p_pointers,
                                     &steps[nsteps]))
        {
            nsteps++;
        }

        if (chat_sends_replies_step(st, sends, n, p_replies, &steps[nsteps]))
        {
            nsteps++;
        }
    }

    /* its rows are few (the devices of the recipients) and only COMMIT
     * is written after it */
    if (chat_sends_push_step(st, sends, n, p_push, &steps[nsteps])) {
        steps[nsteps++].out = &push;
    }

    steps[nsteps++].sql = "COMMIT";

    rc = chat_pg_pipeline(st, steps, nsteps);
    if (rc != CHAT_PG_OK) {
        goto done;
    }

    if (push) {
        chat_sends_push_apply(push, sends, n, arena);
    }

    for (i = 0; i < n; i++) {
        if (sends[i]->same_as_set) {
            sends[i]->msg = sends[sends[i]->same_as]->msg;
        }
    }

done:

    PQclear(members);
    PQclear(stored);
    PQclear(blocks);
    PQclear(direct);
    PQclear(group);
    PQclear(ids);
    PQclear(push);
    chat_send_work_free(&w);

    return rc;
}


typedef struct {
    chat_send_t     **sends;
    size_t            n;
    chat_arena_t     *arena;
} chat_sends_args_t;


static chat_pg_rc_t
chat_sends_attempt(chat_store_t *st, void *data)
{
    chat_sends_args_t  *a = data;

    return chat_sends_once(st, a->sends, a->n, a->arena);
}


chat_store_rc_t
chat_store_sends(chat_store_t *st, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    chat_sends_args_t  args = { sends, n, arena };

    return chat_pg_retry(st, chat_sends_attempt, &args);
}

