/*
 * worker_pg.c: the PostgreSQL plumbing of the store files: the connection
 * and its prepared statements, running statements, retrying transactions,
 * reading results and writing array parameters.
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

#include "worker_pg.h"


#define CHAT_STORE_FAILURES_MAX   3     /* then CHAT_STORE_REFUSED */
#define CHAT_STORE_CONFLICTS_MAX  50


/* ---- connection ---- */

void
chat_pg_disconnect(chat_store_t *st)
{
    if (st->conn) {
        PQfinish(st->conn);
        st->conn = NULL;
    }
}


static bool
chat_pg_prepare(chat_store_t *st, const chat_pg_statements_t *stmts)
{
    PGresult  *res = NULL;
    size_t     i;

    for (i = 0; i < stmts->n; i++) {
        res = PQprepare(st->conn, stmts->list[i].name, stmts->list[i].sql, 0,
                        NULL);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* also a schema not yet migrated: waiting is the answer */
            log_error("postgresql: cannot prepare %s: %s",
                      stmts->list[i].name, PQerrorMessage(st->conn));
            PQclear(res);
            return false;
        }

        PQclear(res);
    }

    return true;
}


/* the server's notices (none are expected) go to the log as warnings,
 * not to stderr as libpq's default would: the log is JSON lines */
static void
chat_pg_notice(void *data, const char *message)
{
    (void) data;

    log_warn("postgresql: %.*s", (int) strcspn(message, "\n"), message);
}


bool
chat_pg_connect(chat_store_t *st)
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
    size_t       i;

    st->conn = PQconnectdbParams(keys, values, 1);

    if (PQstatus(st->conn) != CONNECTION_OK) {
        log_error("postgresql: cannot connect: %s",
                  PQerrorMessage(st->conn));
        chat_pg_disconnect(st);
        return false;
    }

    PQsetNoticeProcessor(st->conn, chat_pg_notice, NULL);

    for (i = 0; st->statements[i]; i++) {
        if (!chat_pg_prepare(st, st->statements[i])) {
            chat_pg_disconnect(st);
            return false;
        }
    }

    return true;
}


bool
chat_pg_reconnect(chat_store_t *st)
{
    chat_pg_disconnect(st);

    for ( ;; ) {
        if (!chat_backoff_wait(&st->backoff, st->stop)) {
            return false;
        }

        if (chat_pg_connect(st)) {
            log_info("postgresql: connected");
            chat_backoff_reset(&st->backoff);
            return true;
        }
    }
}


/* ---- statements ---- */

static chat_pg_rc_t
chat_pg_classify(chat_store_t *st, PGresult *res, const char *what)
{
    const char  *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                             : NULL;

    if (PQstatus(st->conn) != CONNECTION_OK || state == NULL) {
        log_error("postgresql: %s: connection lost: %s", what,
                  PQerrorMessage(st->conn));
        return CHAT_PG_DOWN;
    }

    log_error("postgresql: %s: SQLSTATE %s: %s", what, state,
              PQresultErrorMessage(res));

    /* 40001 serialization, 40P01 deadlock, 23505 unique violation (another
     * worker stored the same send), 55P03 lock not available */
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0
        || strcmp(state, "23505") == 0 || strcmp(state, "55P03") == 0)
    {
        return CHAT_PG_CONFLICT;
    }

    /* 08 connection, 53 resources (disk full), 57 operator intervention
     * (shutdown), 58 system error: the server, not the batch */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0
        || strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0)
    {
        return CHAT_PG_DOWN;
    }

    return CHAT_PG_FAILED;
}


chat_pg_rc_t
chat_pg_run(chat_store_t *st, const char *stmt, int nparams,
    const char *const *params, PGresult **out)
{
    PGresult        *res = NULL;
    ExecStatusType   status;
    chat_pg_rc_t     rc;

    res = PQexecPrepared(st->conn, stmt, nparams, params, NULL, NULL, 0);
    status = PQresultStatus(res);

    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
        if (out) {
            *out = res;
        } else {
            PQclear(res);
        }
        return CHAT_PG_OK;
    }

    rc = chat_pg_classify(st, res, stmt);
    PQclear(res);

    return rc;
}


chat_pg_rc_t
chat_pg_command(chat_store_t *st, const char *sql)
{
    PGresult     *res = NULL;
    chat_pg_rc_t  rc;

    res = PQexec(st->conn, sql);

    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        return CHAT_PG_OK;
    }

    rc = chat_pg_classify(st, res, sql);
    PQclear(res);

    return rc;
}


static void
chat_pg_pipeline_drop(chat_pg_step_t *steps, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (steps[i].out && *steps[i].out) {
            PQclear(*steps[i].out);
            *steps[i].out = NULL;
        }
    }
}


/*
 * The steps are queued and flushed with one Sync, then their results read
 * in order; each step's results end with a NULL. A failed step makes the
 * server skip the rest up to the Sync (PGRES_PIPELINE_ABORTED) and, inside
 * BEGIN, leaves the transaction failed: the retry's ROLLBACK ends it.
 */
chat_pg_rc_t
chat_pg_pipeline(chat_store_t *st, chat_pg_step_t *steps, size_t n)
{
    PGresult        *res;
    ExecStatusType   status;
    chat_pg_rc_t     rc = CHAT_PG_OK;
    const char      *failed = NULL;
    size_t           i;
    int              sent;

    for (i = 0; i < n; i++) {
        if (steps[i].out) {
            *steps[i].out = NULL;
        }
    }

    if (!PQenterPipelineMode(st->conn)) {
        return chat_pg_classify(st, NULL, "pipeline");
    }

    for (i = 0; i < n; i++) {
        sent = steps[i].stmt
               ? PQsendQueryPrepared(st->conn, steps[i].stmt,
                                     steps[i].nparams, steps[i].params,
                                     NULL, NULL, 0)
               : PQsendQueryParams(st->conn, steps[i].sql, 0, NULL, NULL,
                                   NULL, NULL, 0);
        if (!sent) {
            return chat_pg_classify(st, NULL, steps[i].stmt ? steps[i].stmt
                                                            : steps[i].sql);
        }
    }

    if (!PQpipelineSync(st->conn)) {
        return chat_pg_classify(st, NULL, "pipeline sync");
    }

    for (i = 0; i < n; i++) {
        const char  *what = steps[i].stmt ? steps[i].stmt : steps[i].sql;

        res = PQgetResult(st->conn);
        if (res == NULL) {
            chat_pg_pipeline_drop(steps, n);
            return chat_pg_classify(st, NULL, what);
        }

        status = PQresultStatus(res);

        if ((status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
            && rc == CHAT_PG_OK)
        {
            if (steps[i].out) {
                *steps[i].out = res;
            } else {
                PQclear(res);
            }

        } else if (status == PGRES_PIPELINE_ABORTED) {
            PQclear(res);

        } else if (status == PGRES_FATAL_ERROR && failed == NULL) {
            rc = chat_pg_classify(st, res, what);
            failed = what;
            PQclear(res);

            if (rc == CHAT_PG_DOWN) {
                chat_pg_pipeline_drop(steps, n);
                return rc;
            }

        } else {
            PQclear(res);
        }

        /* the NULL that ends this step's results */
        res = PQgetResult(st->conn);
        if (res != NULL) {
            PQclear(res);
            chat_pg_pipeline_drop(steps, n);
            log_error("postgresql: %s: more results than expected", what);
            return CHAT_PG_DOWN;
        }
    }

    res = PQgetResult(st->conn);
    status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    PQclear(res);

    if (status != PGRES_PIPELINE_SYNC || !PQexitPipelineMode(st->conn)) {
        chat_pg_pipeline_drop(steps, n);
        return chat_pg_classify(st, NULL, "pipeline end");
    }

    if (rc != CHAT_PG_OK) {
        chat_pg_pipeline_drop(steps, n);
    }

    return rc;
}


static void
chat_pg_rollback(chat_store_t *st)
{
    PGresult  *res = NULL;

    if (st->conn == NULL || PQstatus(st->conn) != CONNECTION_OK) {
        return;
    }

    res = PQexec(st->conn, "ROLLBACK");
    PQclear(res);
}


int64_t
chat_pg_int(PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}


const char *
chat_pg_text(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}


void
chat_pg_message(PGresult *res, int row, int col, chat_message_t *m)
{
    m->conv = chat_pg_text(res, row, col);
    m->seq = chat_pg_int(res, row, col + 1);
    m->message_id = chat_pg_int(res, row, col + 2);
    m->sender = chat_pg_text(res, row, col + 3);
    m->cmid = chat_pg_text(res, row, col + 4);
    m->kind = chat_pg_text(res, row, col + 5);
    m->body = chat_pg_text(res, row, col + 6);
    m->server_ts = chat_pg_int(res, row, col + 7);
    m->target_id = chat_pg_int(res, row, col + 8);
    m->reply_to = chat_pg_int(res, row, col + 9);
    m->edited_at = chat_pg_int(res, row, col + 10);
    m->deleted = PQgetvalue(res, row, col + 11)[0] == 't';
    m->reactions = chat_pg_text(res, row, col + 12);
    m->attachments = NULL;
}


void
chat_pg_message_keep(chat_message_t *m, chat_arena_t *arena)
{
    m->conv = chat_arena_strdup(arena, m->conv);
    m->sender = chat_arena_strdup(arena, m->sender);
    m->cmid = m->cmid ? chat_arena_strdup(arena, m->cmid) : NULL;
    m->kind = chat_arena_strdup(arena, m->kind);
    m->body = m->body ? chat_arena_strdup(arena, m->body) : NULL;
    m->reactions = m->reactions ? chat_arena_strdup(arena, m->reactions)
                                : NULL;
    m->attachments = m->attachments ? chat_arena_strdup(arena, m->attachments)
                                    : NULL;
}


chat_store_rc_t
chat_pg_retry(chat_store_t *st, chat_pg_attempt_pt attempt, void *data)
{
    unsigned  failures = 0, conflicts = 0;
    int64_t   began;

    for ( ;; ) {
        if (st->conn == NULL && !chat_pg_reconnect(st)) {
            return CHAT_STORE_STOPPED;
        }

        began = chat_metrics_now_us();

        switch (attempt(st, data)) {

        case CHAT_PG_OK:
            chat_metrics_observe(st->metrics, CHAT_HIST_PG_COMMIT,
                                 chat_metrics_now_us() - began);
            return CHAT_STORE_OK;

        case CHAT_PG_DOWN:
            chat_metrics_retry(st->metrics, CHAT_RETRY_CONNECTION);
            chat_pg_disconnect(st);
            break;

        case CHAT_PG_CONFLICT:
            chat_metrics_retry(st->metrics, CHAT_RETRY_CONFLICT);
            chat_pg_rollback(st);

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

        case CHAT_PG_FAILED:
            chat_metrics_retry(st->metrics, CHAT_RETRY_FAILURE);
            chat_pg_rollback(st);

            if (++failures >= CHAT_STORE_FAILURES_MAX) {
                return CHAT_STORE_REFUSED;
            }

            break;
        }
    }
}


/* ---- array parameters ---- */

/*
 * Array literals in PostgreSQL's text format: {"a","b\"c",NULL}. Every
 * element is quoted, so empty strings, commas, braces and the word NULL
 * inside values need nothing special; only '"' and '\' are escaped.
 */
void
chat_pg_array_begin(chat_buf_t *b)
{
    b->len = 0;
    chat_buf_addc(b, '{');
}


static void
chat_pg_array_sep(chat_buf_t *b)
{
    if (b->len > 1) {
        chat_buf_addc(b, ',');
    }
}


void
chat_pg_array_text(chat_buf_t *b, const char *s)
{
    const char  *p, *run;

    chat_pg_array_sep(b);

    if (s == NULL) {
        chat_buf_adds(b, "NULL");
        return;
    }

    chat_buf_addc(b, '"');

    run = s;
    for (p = s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            chat_buf_add(b, run, p - run);
            chat_buf_addc(b, '\\');
            run = p;
        }
    }

    chat_buf_add(b, run, p - run);
    chat_buf_addc(b, '"');
}


void
chat_pg_array_int(chat_buf_t *b, int64_t v)
{
    chat_pg_array_sep(b);
    chat_buf_printf(b, "%lld", (long long) v);
}


const char *
chat_pg_array_end(chat_buf_t *b)
{
    chat_buf_addc(b, '}');

    return chat_buf_cstr(b);
}
