/*
 * worker_store.c: the store's handle: opening it (a connection that has
 * prepared the statements of every store file) and closing it. The store
 * files themselves are listed in worker_store.h.
 */

#include <stdlib.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statements_t  *chat_store_statements[] = {
    &chat_store_sends_statements,
    &chat_store_changes_statements,
    &chat_store_blocks_statements,
    &chat_store_search_statements,
    &chat_store_index_statements,
    &chat_store_reads_statements,
    &chat_store_groups_statements,
    &chat_store_receipts_statements,
    &chat_store_members_statements,
    &chat_store_admin_statements,
    &chat_store_repairs_statements,
    &chat_store_push_statements,
    &chat_store_uploads_statements,
    NULL
};


chat_store_t *
chat_store_open(const char *conninfo, chat_stop_t *stop)
{
    chat_store_t  *st;

    st = chat_alloc(sizeof(chat_store_t));
    memset(st, 0, sizeof(*st));
    st->conninfo = chat_strdup(conninfo);
    st->stop = stop;
    st->statements = chat_store_statements;
    chat_backoff_reset(&st->backoff);

    if (!chat_pg_connect(st) && !chat_pg_reconnect(st)) {
        chat_store_close(st);
        return NULL;
    }

    return st;
}


void
chat_store_set_metrics(chat_store_t *st, chat_metrics_t *m)
{
    st->metrics = m;
}


void
chat_store_set_wait(chat_store_t *st, chat_wait_pt meanwhile, void *data)
{
    st->backoff.meanwhile = meanwhile;
    st->backoff.data = data;
}


void
chat_store_close(chat_store_t *st)
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
