/*
 * worker_store.c: PostgreSQL, the store of record. Owns the connection,
 * prepares the statements of every store file (worker_store.h lists them),
 * runs statements and retries transactions.
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

#include "worker.h"
#include "worker_store.h"


#define CHAT_STORE_FAILURES_MAX   3     /* then CHAT_STORE_REFUSED */
#define CHAT_STORE_CONFLICTS_MAX  50


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
chat_store_prepare(chat_store_t *st, const chat_statement_t *stmts,
    size_t n)
{
    PGresult  *res = NULL;
    size_t     i;

    for (i = 0; i < n; i++) {
        res = PQprepare(st->conn, stmts[i].name, stmts[i].sql, 0, NULL);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* also a schema not yet migrated: waiting is the answer */
            log_error("postgresql: cannot prepare %s: %s", stmts[i].name,
                      PQerrorMessage(st->conn));
            PQclear(res);
            return false;
        }

        PQclear(res);
    }

    return true;
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

    st->conn = PQconnectdbParams(keys, values, 1);

    if (PQstatus(st->conn) != CONNECTION_OK) {
        log_error("postgresql: cannot connect: %s",
                  PQerrorMessage(st->conn));
        chat_store_disconnect(st);
        return false;
    }

    if (!chat_store_prepare(st, chat_send_statements,
                            chat_send_nstatements)
        || !chat_store_prepare(st, chat_read_statements,
                               chat_read_nstatements)
        || !chat_store_prepare(st, chat_group_statements,
                               chat_group_nstatements)
        || !chat_store_prepare(st, chat_receipt_statements,
                               chat_receipt_nstatements))
    {
        chat_store_disconnect(st);
        return false;
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


chat_q_rc_t
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


chat_q_rc_t
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


int64_t
chat_int(PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}


const char *
chat_text(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}


/* a message from CHAT_MESSAGE_COLUMNS at column col; the strings stay in
 * res */
void
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


void
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
const char *
chat_pair_key(chat_arena_t *arena, const char *a, const char *b)
{
    size_t   alen = strlen(a), blen = strlen(b);
    char    *key = chat_arena_alloc(arena, alen + blen + 2);

    memcpy(key, a, alen);
    key[alen] = '\n';
    memcpy(key + alen + 1, b, blen + 1);

    return key;
}


chat_store_rc_t
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
