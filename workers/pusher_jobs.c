/*
 * pusher_jobs.c: the push outbox (sql/040_push.sql) as chat_pusher sees
 * it: the push topic's records entered, due rows claimed with everything
 * their POST needs, and outcomes.
 *
 * A record is entered with ON CONFLICT DO NOTHING: the outbox's primary
 * key (message, user, device) is what makes a push happen at most once,
 * whatever the topic delivers again (a chat_worker's replay, this
 * pusher's own offsets not committed before it died).
 *
 * A claim is its own transaction: the rows go to 'sending' with a lease
 * (next_at) and are committed before any POST, so two pushers never take
 * the same row (SKIP LOCKED) and a pusher that dies mid-POST leaves rows
 * that the next claim marks 'unknown' instead of sending again. The unread
 * count is the conversation list's: messages of others after the device
 * owner's read pointer (or its joining).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher_jobs.h"
#include "worker_pg.h"


static const chat_pg_statement_t  chat_jobs_sql[] = {

    /* $1-$4: the records' messages, users, devices and times */
    { "push_enter",
      "INSERT INTO push_outbox"
      " (message_id, user_id, device_id, next_at, created_at)"
      " SELECT t.m, t.u, t.d, t.ts, t.ts"
      " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])"
      " AS t(m, u, d, ts)"
      " ON CONFLICT DO NOTHING" },

    { "push_lapsed",
      "UPDATE push_outbox SET state = 'unknown', done_at = $1,"
      " last_error = 'claim lapsed'"
      " WHERE state = 'sending' AND next_at <= $1" },

    /* $1 now, $2 how many, $3 the lease */
    { "push_claim",
      "WITH due AS ("
      "  SELECT message_id, user_id, device_id FROM push_outbox"
      "  WHERE state = 'pending' AND next_at <= $1"
      "  ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
      " claimed AS ("
      "  UPDATE push_outbox o SET state = 'sending',"
      "  attempts = o.attempts + 1, next_at = $1 + $3"
      "  FROM due WHERE o.message_id = due.message_id"
      "  AND o.user_id = due.user_id AND o.device_id = due.device_id"
      "  RETURNING o.message_id, o.user_id, o.device_id, o.attempts)"
      " SELECT c.message_id, c.user_id, c.device_id, c.attempts,"
      " d.endpoint IS NOT NULL, d.endpoint, d.token,"
      " m.conversation_id, m.sender_id, m.seq, m.body,"
      " (SELECT count(*) FROM messages x"
      "  WHERE x.conversation_id = m.conversation_id"
      "  AND x.seq > COALESCE(GREATEST(b.read_seq, b.joined_seq - 1), 0)"
      "  AND x.sender_id <> c.user_id)"
      " FROM claimed c JOIN messages m ON m.message_id = c.message_id"
      " LEFT JOIN push_devices d"
      " ON d.user_id = c.user_id AND d.device_id = c.device_id"
      " LEFT JOIN members b"
      " ON b.conversation_id = m.conversation_id AND b.user_id = c.user_id" },

    /* $1-$3 the rows, $4 states, $5 next_at, $6 errors, $7 now */
    { "push_finish",
      "UPDATE push_outbox o SET state = t.s, next_at = t.n,"
      " last_error = t.e,"
      " done_at = CASE WHEN t.s = 'pending' THEN NULL ELSE $7::bigint END"
      " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],"
      " $5::bigint[], $6::text[]) AS t(m, u, d, s, n, e)"
      " WHERE o.message_id = t.m AND o.user_id = t.u AND o.device_id = t.d"
      " AND o.state = 'sending'" },

    { "push_release",
      "UPDATE push_outbox o SET state = 'pending',"
      " attempts = o.attempts - 1, next_at = $4"
      " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(m, u, d)"
      " WHERE o.message_id = t.m AND o.user_id = t.u AND o.device_id = t.d"
      " AND o.state = 'sending'" },
};

static const chat_pg_statements_t  chat_jobs_statements = {
    chat_jobs_sql, sizeof(chat_jobs_sql) / sizeof(chat_jobs_sql[0])
};

static const chat_pg_statements_t  *chat_jobs_all[] = {
    &chat_jobs_statements, NULL
};


chat_store_t *
chat_jobs_open(const char *conninfo, chat_stop_t *stop)
{
    chat_store_t  *st;

    st = chat_alloc(sizeof(chat_store_t));
    memset(st, 0, sizeof(*st));
    st->conninfo = chat_strdup(conninfo);
    st->stop = stop;
    st->statements = chat_jobs_all;
    chat_backoff_reset(&st->backoff);

    if (!chat_pg_connect(st) && !chat_pg_reconnect(st)) {
        chat_jobs_close(st);
        return NULL;
    }

    return st;
}


void
chat_jobs_set_wait(chat_store_t *st, chat_wait_pt meanwhile, void *data)
{
    st->backoff.meanwhile = meanwhile;
    st->backoff.data = data;
}


typedef struct {
    const chat_record_t  *records;
    size_t                n;
    size_t                entered;
    long                  fresh;
} chat_enter_args_t;


static chat_pg_rc_t
chat_jobs_enter_attempt(chat_store_t *st, void *data)
{
    chat_enter_args_t     *a = data;
    chat_buf_t            *m = &st->arrays[0], *u = &st->arrays[1];
    chat_buf_t            *d = &st->arrays[2], *t = &st->arrays[3];
    ngx_chat_wire_push_t   push;
    const char            *params[4];
    PGresult              *res = NULL;
    chat_pg_rc_t           rc;
    char                   user[NGX_CHAT_WIRE_ID_MAX + 1];
    char                   device[NGX_CHAT_WIRE_ID_MAX + 1];
    size_t                 i;

    chat_pg_array_begin(m);
    chat_pg_array_begin(u);
    chat_pg_array_begin(d);
    chat_pg_array_begin(t);
    a->entered = 0;
    a->fresh = 0;

    for (i = 0; i < a->n; i++) {
        if (!ngx_chat_wire_push_parse(a->records[i].payload,
                                      a->records[i].len, &push))
        {
            log_warn("partition %d offset %lld: not a push record: skipped",
                     (int) a->records[i].partition,
                     (long long) a->records[i].offset);
            continue;
        }

        memcpy(user, push.user, push.user_len);
        user[push.user_len] = '\0';
        memcpy(device, push.device, push.device_len);
        device[push.device_len] = '\0';

        chat_pg_array_int(m, push.message_id);
        chat_pg_array_text(u, user);
        chat_pg_array_text(d, device);
        chat_pg_array_int(t, push.ts);
        a->entered++;
    }

    if (a->entered == 0) {
        return CHAT_PG_OK;
    }

    params[0] = chat_pg_array_end(m);
    params[1] = chat_pg_array_end(u);
    params[2] = chat_pg_array_end(d);
    params[3] = chat_pg_array_end(t);

    /* one statement: its own transaction, committed as it returns */
    rc = chat_pg_run(st, "push_enter", 4, params, &res);
    if (rc == CHAT_PG_OK) {
        a->fresh = strtol(PQcmdTuples(res), NULL, 10);
        PQclear(res);
    }

    return rc;
}


long
chat_jobs_enter(chat_store_t *st, const chat_record_t *records, size_t n,
    long *fresh)
{
    chat_enter_args_t  args = { records, n, 0, 0 };

    for ( ;; ) {
        switch (chat_pg_retry(st, chat_jobs_enter_attempt, &args)) {

        case CHAT_STORE_OK:
            *fresh = args.fresh;
            return (long) args.entered;

        case CHAT_STORE_REFUSED:
            /* one INSERT of checked values: the schema is not what it
             * should be. The records wait (uncommitted) for an operator
             * rather than being lost */
            log_error("push outbox: %zu records could not be entered:"
                      " trying again in 5 s", n);

            if (!chat_backoff_pause(&st->backoff, 5000, st->stop)) {
                return -1;
            }

            continue;

        case CHAT_STORE_STOPPED:
            break;
        }

        return -1;
    }
}


void
chat_jobs_close(chat_store_t *st)
{
    size_t  i;

    if (st == NULL) {
        return;
    }

    chat_pg_disconnect(st);

    for (i = 0; i < sizeof(st->arrays) / sizeof(st->arrays[0]); i++) {
        chat_buf_free(&st->arrays[i]);
    }

    free(st->conninfo);
    free(st);
}


void
chat_jobs_free(chat_push_job_t *jobs, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        free(jobs[i].user);
        free(jobs[i].device);
        free(jobs[i].endpoint);
        free(jobs[i].token);
        free(jobs[i].conv);
        free(jobs[i].sender);
        free(jobs[i].body);
        memset(&jobs[i], 0, sizeof(jobs[i]));
    }
}


typedef struct {
    const chat_push_policy_t  *policy;
    chat_push_job_t           *jobs;
    size_t                     max;
    size_t                     n;
    long                       lapsed;
} chat_claim_args_t;


static chat_pg_rc_t
chat_jobs_claim_attempt(chat_store_t *st, void *data)
{
    chat_claim_args_t  *a = data;
    chat_push_job_t    *j;
    const char         *params[3];
    char                now[24], max[24], lease[24];
    PGresult           *res = NULL;
    chat_pg_rc_t        rc;
    int                 row, nrows;

    chat_jobs_free(a->jobs, a->n);
    a->n = 0;

    snprintf(now, sizeof(now), "%lld", (long long) chat_now_ms());
    snprintf(max, sizeof(max), "%zu", a->max);
    snprintf(lease, sizeof(lease), "%ld", a->policy->lease_ms);

    params[0] = now;
    rc = chat_pg_run(st, "push_lapsed", 1, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    /* committed as it returns, whatever the claim after it does: an
     * attempt again adds its own */
    a->lapsed += strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    res = NULL;

    params[1] = max;
    params[2] = lease;

    /* one statement: its own transaction, committed as it returns */
    rc = chat_pg_run(st, "push_claim", 3, params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    nrows = PQntuples(res);

    for (row = 0; row < nrows && (size_t) row < a->max; row++) {
        j = &a->jobs[a->n++];
        memset(j, 0, sizeof(*j));
        j->message_id = chat_pg_int(res, row, 0);
        j->user = chat_strdup(PQgetvalue(res, row, 1));
        j->device = chat_strdup(PQgetvalue(res, row, 2));
        j->attempts = (int) chat_pg_int(res, row, 3);
        j->registered = PQgetvalue(res, row, 4)[0] == 't';
        j->endpoint = chat_strdup(PQgetvalue(res, row, 5));
        j->token = chat_strdup(PQgetvalue(res, row, 6));
        j->conv = chat_strdup(PQgetvalue(res, row, 7));
        j->sender = chat_strdup(PQgetvalue(res, row, 8));
        j->seq = chat_pg_int(res, row, 9);
        j->body = chat_strdup(PQgetvalue(res, row, 10));
        j->unread = chat_pg_int(res, row, 11);
    }

    PQclear(res);

    return CHAT_PG_OK;
}


long
chat_jobs_claim(chat_store_t *st, const chat_push_policy_t *policy,
    chat_push_job_t *jobs, size_t max, long *lapsed)
{
    chat_claim_args_t  args = { policy, jobs, max, 0, 0 };

    *lapsed = 0;

    switch (chat_pg_retry(st, chat_jobs_claim_attempt, &args)) {

    case CHAT_STORE_OK:
        *lapsed = args.lapsed;
        return (long) args.n;

    case CHAT_STORE_REFUSED:
        chat_jobs_free(jobs, args.n);
        return 0;

    case CHAT_STORE_STOPPED:
        break;
    }

    chat_jobs_free(jobs, args.n);
    return -1;
}


/* the delay before attempt number attempts + 1: retry_ms doubling, with
 * a quarter of jitter so that a gateway's recovery is not one burst */
static long
chat_jobs_backoff(const chat_push_policy_t *p, int attempts)
{
    long  ms = p->retry_ms;
    int   i;

    for (i = 1; i < attempts && ms < p->retry_max_ms; i++) {
        ms *= 2;
    }

    if (ms > p->retry_max_ms) {
        ms = p->retry_max_ms;
    }

    return ms - ms / 4 + (ms / 4 > 0 ? rand() % (ms / 4 + 1) : 0);
}


typedef struct {
    const chat_push_policy_t   *policy;
    chat_push_job_t            *jobs;
    const chat_push_outcome_t  *outcomes;
    size_t                      n;
} chat_finish_args_t;


static chat_pg_rc_t
chat_jobs_finish_attempt(chat_store_t *st, void *data)
{
    chat_finish_args_t  *a = data;
    chat_buf_t          *m = &st->arrays[0], *u = &st->arrays[1];
    chat_buf_t          *d = &st->arrays[2], *s = &st->arrays[3];
    chat_buf_t          *nx = &st->arrays[4], *e = &st->arrays[5];
    const chat_push_job_t  *j;
    const char          *params[7], *state;
    char                 now_s[24];
    int64_t              now, next;
    size_t               i;

    now = chat_now_ms();
    snprintf(now_s, sizeof(now_s), "%lld", (long long) now);

    chat_pg_array_begin(m);
    chat_pg_array_begin(u);
    chat_pg_array_begin(d);
    chat_pg_array_begin(s);
    chat_pg_array_begin(nx);
    chat_pg_array_begin(e);

    for (i = 0; i < a->n; i++) {
        j = &a->jobs[i];
        next = now;

        switch (a->outcomes[i]) {
        case CHAT_PUSH_SENT:
            state = "sent";
            break;
        case CHAT_PUSH_SKIPPED:
            state = "skipped";
            break;
        case CHAT_PUSH_RETRY:
            state = "pending";
            next = now + chat_jobs_backoff(a->policy, j->attempts);
            break;
        default:
            state = "failed";
            break;
        }

        chat_pg_array_int(m, j->message_id);
        chat_pg_array_text(u, j->user);
        chat_pg_array_text(d, j->device);
        chat_pg_array_text(s, state);
        chat_pg_array_int(nx, next);
        chat_pg_array_text(e, j->error[0] ? j->error : NULL);
    }

    params[0] = chat_pg_array_end(m);
    params[1] = chat_pg_array_end(u);
    params[2] = chat_pg_array_end(d);
    params[3] = chat_pg_array_end(s);
    params[4] = chat_pg_array_end(nx);
    params[5] = chat_pg_array_end(e);
    params[6] = now_s;

    return chat_pg_run(st, "push_finish", 7, params, NULL);
}


bool
chat_jobs_finish(chat_store_t *st, const chat_push_policy_t *policy,
    chat_push_job_t *jobs, const chat_push_outcome_t *outcomes, size_t n)
{
    chat_finish_args_t  args = { policy, jobs, outcomes, n };

    if (n == 0) {
        return true;
    }

    return chat_pg_retry(st, chat_jobs_finish_attempt, &args)
           != CHAT_STORE_STOPPED;
}


typedef struct {
    chat_push_job_t  *jobs;
    size_t            n;
} chat_release_args_t;


static chat_pg_rc_t
chat_jobs_release_attempt(chat_store_t *st, void *data)
{
    chat_release_args_t  *a = data;
    chat_buf_t           *m = &st->arrays[0], *u = &st->arrays[1];
    chat_buf_t           *d = &st->arrays[2];
    const char           *params[4];
    char                  next[24];
    size_t                i;

    snprintf(next, sizeof(next), "%lld", (long long) chat_now_ms() + 1000);

    chat_pg_array_begin(m);
    chat_pg_array_begin(u);
    chat_pg_array_begin(d);

    for (i = 0; i < a->n; i++) {
        chat_pg_array_int(m, a->jobs[i].message_id);
        chat_pg_array_text(u, a->jobs[i].user);
        chat_pg_array_text(d, a->jobs[i].device);
    }

    params[0] = chat_pg_array_end(m);
    params[1] = chat_pg_array_end(u);
    params[2] = chat_pg_array_end(d);
    params[3] = next;

    return chat_pg_run(st, "push_release", 4, params, NULL);
}


bool
chat_jobs_release(chat_store_t *st, chat_push_job_t *jobs, size_t n)
{
    chat_release_args_t  args = { jobs, n };

    if (n == 0) {
        return true;
    }

    return chat_pg_retry(st, chat_jobs_release_attempt, &args)
           != CHAT_STORE_STOPPED;
}
