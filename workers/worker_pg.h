/*
 * worker_pg.h: what the PostgreSQL files of chat_worker share, and only
 * they (the rest of the worker sees worker_store.h): the connection,
 * prepared statements, the retried transaction and result helpers
 * (worker_pg.c), and each store file's statements.
 *
 * Each store file keeps its prepared statements in its own table; the
 * connection prepares them all (worker_store.c lists them).
 */

#ifndef CHAT_WORKER_PG_H
#define CHAT_WORKER_PG_H

#include <libpq-fe.h>

#include "worker_store.h"


typedef struct {
    const char  *name;
    const char  *sql;
} chat_pg_statement_t;

typedef struct {
    const chat_pg_statement_t  *list;
    size_t                      n;
} chat_pg_statements_t;

extern const chat_pg_statements_t  chat_store_sends_statements;
extern const chat_pg_statements_t  chat_store_changes_statements;
extern const chat_pg_statements_t  chat_store_blocks_statements;
extern const chat_pg_statements_t  chat_store_search_statements;
extern const chat_pg_statements_t  chat_store_index_statements;
extern const chat_pg_statements_t  chat_store_reads_statements;
extern const chat_pg_statements_t  chat_store_groups_statements;
extern const chat_pg_statements_t  chat_store_receipts_statements;
extern const chat_pg_statements_t  chat_store_members_statements;
extern const chat_pg_statements_t  chat_store_admin_statements;
extern const chat_pg_statements_t  chat_store_repairs_statements;
extern const chat_pg_statements_t  chat_store_push_statements;
extern const chat_pg_statements_t  chat_store_uploads_statements;


struct chat_store_s {
    PGconn                      *conn;
    char                        *conninfo;
    chat_stop_t                 *stop;
    chat_backoff_t               backoff;
    const chat_pg_statements_t  *const *statements;  /* NULL-terminated */
    chat_buf_t                   arrays[16];     /* array parameters */
    chat_metrics_t              *metrics;        /* or NULL */
};


typedef enum {
    CHAT_PG_OK,
    CHAT_PG_CONFLICT,       /* retry the transaction now */
    CHAT_PG_DOWN,           /* reconnect, with backoff */
    CHAT_PG_FAILED          /* not expected to go away by retrying */
} chat_pg_rc_t;


/* connects and prepares every statement; false when either failed */
bool chat_pg_connect(chat_store_t *st);
/* waits for a working connection; false on stop */
bool chat_pg_reconnect(chat_store_t *st);
void chat_pg_disconnect(chat_store_t *st);

chat_pg_rc_t chat_pg_run(chat_store_t *st, const char *stmt, int nparams,
    const char *const *params, PGresult **out);
chat_pg_rc_t chat_pg_command(chat_store_t *st, const char *sql);

/* the search read of chat_store_reads (worker_store_search.c) */
chat_pg_rc_t chat_read_search(chat_store_t *st, chat_read_t *read,
    chat_arena_t *arena);

/*
 * Statements sent together and answered together: one round trip for what
 * would be n. A step without stmt runs sql (a command without parameters,
 * such as BEGIN or COMMIT); a step whose out is set gets its result (to
 * PQclear), the others' are dropped. The first failure aborts the steps
 * after it (none of their results is given out) and is the return code;
 * every out is NULL unless all steps succeeded. Only the last step may
 * answer with many rows: the steps are written before any result is read.
 */
typedef struct {
    const char          *stmt;
    const char          *sql;
    int                  nparams;
    const char *const   *params;
    PGresult           **out;
} chat_pg_step_t;

chat_pg_rc_t chat_pg_pipeline(chat_store_t *st, chat_pg_step_t *steps,
    size_t n);

/*
 * Runs one kind of transaction until it commits: the connection is waited
 * for, conflicts retried, other failures retried a few times. attempt runs
 * the transaction and has no effect outside the database but its results,
 * which each attempt writes afresh.
 */
typedef chat_pg_rc_t (*chat_pg_attempt_pt)(chat_store_t *st, void *data);

chat_store_rc_t chat_pg_retry(chat_store_t *st, chat_pg_attempt_pt attempt,
    void *data);


#define CHAT_PG_MESSAGE_COLUMNS                                             \
    "conversation_id, seq, message_id, sender_id, client_msg_id, kind, "    \
    "body, server_ts, target_id, reply_to, edited_at, deleted, reactions"

/* how many columns CHAT_PG_MESSAGE_COLUMNS is: what follows it is at
 * its column plus this */
#define CHAT_PG_MESSAGE_NCOLUMNS  13

/* fills the attachments of these messages (worker_store_uploads.c); _of
 * for messages that are not one array (inside search results, repairs) */
chat_pg_rc_t chat_pg_attachments(chat_store_t *st, chat_message_t *messages,
    size_t n, chat_arena_t *arena);
chat_pg_rc_t chat_pg_attachments_of(chat_store_t *st,
    chat_message_t **messages, size_t n, chat_arena_t *arena);

int64_t chat_pg_int(PGresult *res, int row, int col);
const char *chat_pg_text(PGresult *res, int row, int col);
/* a message from CHAT_PG_MESSAGE_COLUMNS at column col; its strings stay
 * in res until chat_pg_message_keep copies them */
void chat_pg_message(PGresult *res, int row, int col, chat_message_t *m);
void chat_pg_message_keep(chat_message_t *m, chat_arena_t *arena);


/* PostgreSQL array literals for unnest($n::text[]) and friends: values
 * travel as parameters, never inside SQL text */
void chat_pg_array_begin(chat_buf_t *b);
void chat_pg_array_text(chat_buf_t *b, const char *s);   /* NULL -> NULL */
void chat_pg_array_int(chat_buf_t *b, int64_t v);
const char *chat_pg_array_end(chat_buf_t *b);


#endif /* CHAT_WORKER_PG_H */
