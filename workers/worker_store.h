/*
 * worker_store.h: what the PostgreSQL files of chat_worker share, and only
 * they (the rest of the worker sees worker.h):
 *
 *   worker_store.c    the connection, statements, retries
 *   worker_sends.c    the write transaction of a batch's sends
 *   worker_reads.c    history and sync
 *   worker_groups.c   group creation and membership changes
 *   worker_receipts.c receipt pointers; the membership cache loads
 *
 * Each file keeps its prepared statements in its own table; the connection
 * prepares them all.
 */

#ifndef CHAT_WORKER_STORE_H
#define CHAT_WORKER_STORE_H

#include <libpq-fe.h>

#include "worker.h"


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

extern const chat_statement_t  chat_send_statements[];
extern const size_t            chat_send_nstatements;
extern const chat_statement_t  chat_read_statements[];
extern const size_t            chat_read_nstatements;
extern const chat_statement_t  chat_group_statements[];
extern const size_t            chat_group_nstatements;
extern const chat_statement_t  chat_receipt_statements[];
extern const size_t            chat_receipt_nstatements;


chat_q_rc_t chat_store_run(chat_store_t *st, const char *stmt, int nparams,
    const char *const *params, PGresult **out);
chat_q_rc_t chat_store_command(chat_store_t *st, const char *sql);

int64_t chat_int(PGresult *res, int row, int col);
const char *chat_text(PGresult *res, int row, int col);
/* a message from CHAT_MESSAGE_COLUMNS at column col; strings stay in res */
void chat_row_message(PGresult *res, int row, int col, chat_message_t *m);
void chat_message_to_arena(chat_message_t *m, chat_arena_t *arena);
const char *chat_pair_key(chat_arena_t *arena, const char *a, const char *b);

/*
 * Runs one kind of transaction until it commits: the connection is waited
 * for, conflicts retried, other failures retried a few times. attempt runs
 * the transaction; undo forgets its side effects outside the database.
 */
typedef chat_q_rc_t (*chat_attempt_pt)(chat_store_t *st, void *data);
typedef void (*chat_undo_pt)(void *data);

chat_store_rc_t chat_store_retry(chat_store_t *st, chat_attempt_pt attempt,
    chat_undo_pt undo, void *data);

void chat_answer(chat_outbox_t *out, const chat_request_t *req,
    json_t *frame);

#endif /* CHAT_WORKER_STORE_H */
