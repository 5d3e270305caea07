/*
 * worker_store_index.c: chat_store_index_start and _poll, and
 * chat_store_index_partition, the search index's writes after the sends'
 * commits (sql/044: the table message_search and the positions per
 * partition), on a connection of their own.
 *
 * The ids' statement is sent and left to run while the loop goes on with
 * its batches; the loop asks for its result at each turn. A partition's
 * look-over, rare, is waited for.
 *
 * Each is one statement in a transaction of its own, off the send path:
 * the rows of the messages it indexes are read under a share lock, so that
 * an edit, a deletion or a redaction (which lock the row for update, then
 * write or remove its vector) is either wholly before it, and the
 * statement reads the row as they left it, or wholly after it, and finds
 * the vector to rewrite or remove. Rows are locked and inserted in
 * message id order: two workers indexing the same ids while a partition
 * moves wait for each other instead of deadlocking.
 */

#include <inttypes.h>
#include <stdio.h>

#include "worker_pg.h"


/* the messages the search may show: what the vector is made of */
#define CHAT_INDEX_SEARCHABLE                                               \
    " kind = 'text' AND NOT deleted AND redacted_at IS NULL"                \
    " AND body IS NOT NULL"

#define CHAT_INDEX_INSERT                                                   \
    " i AS (INSERT INTO message_search"                                     \
    "  (message_id, conversation_id, seq, search)"                          \
    "  SELECT message_id, conversation_id, seq,"                            \
    "  chat_search_vector(body, attachment_names) FROM m"                   \
    "  ON CONFLICT (message_id) DO NOTHING RETURNING 1)"

#define CHAT_INDEX_POSITION                                                 \
    " ON CONFLICT (kafka_partition) DO UPDATE SET kafka_offset ="           \
    " GREATEST(search_positions.kafka_offset, excluded.kafka_offset))"


static const chat_pg_statement_t  chat_index_sql[] = {

    /* $1 message ids, $2 partitions, $3 the highest offset of each whose
     * records stored them: those partitions are indexed up to there */
    { "index_messages",
      "WITH m AS (SELECT message_id, conversation_id, seq, body,"
      "  attachment_names FROM messages"
      "  WHERE message_id = ANY($1::bigint[]) AND" CHAT_INDEX_SEARCHABLE
      "  ORDER BY message_id FOR SHARE),"
      CHAT_INDEX_INSERT ","
      " p AS (INSERT INTO search_positions (kafka_partition, kafka_offset)"
      "  SELECT * FROM unnest($2::int[], $3::bigint[])"
      CHAT_INDEX_POSITION
      " SELECT count(*) FROM i" },

    /* $1 a partition: what its records stored after its position and is
     * not indexed; the position then moves to its last stored offset */
    { "index_partition",
      "WITH f AS (SELECT COALESCE((SELECT kafka_offset FROM search_positions"
      "  WHERE kafka_partition = $1::int), -1) AS o),"
      " m AS (SELECT message_id, conversation_id, seq, body,"
      "  attachment_names FROM messages"
      "  WHERE kafka_partition = $1::int"
      "  AND kafka_offset > (SELECT o FROM f) AND" CHAT_INDEX_SEARCHABLE
      "  AND NOT EXISTS (SELECT 1 FROM message_search s"
      "   WHERE s.message_id = messages.message_id)"
      "  ORDER BY message_id FOR SHARE OF messages),"
      CHAT_INDEX_INSERT ","
      " p AS (INSERT INTO search_positions (kafka_partition, kafka_offset)"
      "  SELECT $1::int, max(kafka_offset) FROM messages"
      "  WHERE kafka_partition = $1::int AND kafka_offset > (SELECT o FROM f)"
      "  HAVING max(kafka_offset) IS NOT NULL"
      CHAT_INDEX_POSITION
      " SELECT count(*) FROM i" },
};

const chat_pg_statements_t  chat_store_index_statements = {
    chat_index_sql, sizeof(chat_index_sql) / sizeof(chat_index_sql[0])
};


typedef struct {
    const char  *stmt;
    int          nparams;
    const char  *params[3];
    int64_t      indexed;
} chat_index_args_t;


static chat_pg_rc_t
chat_index_attempt(chat_store_t *st, void *data)
{
    chat_index_args_t  *a = data;
    PGresult           *res = NULL;
    chat_pg_rc_t        rc;

    rc = chat_pg_run(st, a->stmt, a->nparams, a->params, &res);
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    a->indexed = chat_pg_int(res, 0, 0);
    PQclear(res);

    return CHAT_PG_OK;
}


bool
chat_store_index_start(chat_store_t *st, const int64_t *ids, size_t n,
    const int32_t *parts, const int64_t *offsets, size_t nparts)
{
    chat_buf_t   *bids = &st->arrays[0], *bparts = &st->arrays[1];
    chat_buf_t   *boffs = &st->arrays[2];
    const char   *params[3];
    size_t        i;

    /* one try: a database away is waited out by the batches */
    if (st->conn == NULL && !chat_pg_connect(st)) {
        return false;
    }

    chat_pg_array_begin(bids);
    chat_pg_array_begin(bparts);
    chat_pg_array_begin(boffs);

    for (i = 0; i < n; i++) {
        chat_pg_array_int(bids, ids[i]);
    }

    for (i = 0; i < nparts; i++) {
        chat_pg_array_int(bparts, parts[i]);
        chat_pg_array_int(boffs, offsets[i]);
    }

    params[0] = chat_pg_array_end(bids);
    params[1] = chat_pg_array_end(bparts);
    params[2] = chat_pg_array_end(boffs);

    if (!PQsendQueryPrepared(st->conn, "index_messages", 3, params, NULL,
                             NULL, 0))
    {
        log_error("postgresql: index_messages: %s", PQerrorMessage(st->conn));
        chat_pg_disconnect(st);
        return false;
    }

    return true;
}


chat_store_index_rc_t
chat_store_index_poll(chat_store_t *st, bool wait, int64_t *indexed)
{
    PGresult  *res;
    bool       ok = false;

    if (st->conn == NULL) {
        return CHAT_STORE_INDEX_FAILED;
    }

    if (!wait) {
        if (!PQconsumeInput(st->conn)) {
            log_error("postgresql: index_messages: %s",
                      PQerrorMessage(st->conn));
            chat_pg_disconnect(st);
            return CHAT_STORE_INDEX_FAILED;
        }

        if (PQisBusy(st->conn)) {
            return CHAT_STORE_INDEX_RUNNING;
        }
    }

    while ((res = PQgetResult(st->conn)) != NULL) {
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
            *indexed = chat_pg_int(res, 0, 0);
            ok = true;

        } else {
            log_error("postgresql: index_messages: %s",
                      PQresultErrorMessage(res));
        }

        PQclear(res);
    }

    if (PQstatus(st->conn) != CONNECTION_OK) {
        chat_pg_disconnect(st);
    }

    return ok ? CHAT_STORE_INDEX_DONE : CHAT_STORE_INDEX_FAILED;
}


chat_store_rc_t
chat_store_index_partition(chat_store_t *st, int32_t partition,
    int64_t *indexed)
{
    chat_index_args_t  a = { "index_partition", 1, { NULL }, 0 };
    chat_store_rc_t    rc;
    char               part[16];

    snprintf(part, sizeof(part), "%" PRId32, partition);
    a.params[0] = part;

    rc = chat_pg_retry(st, chat_index_attempt, &a);
    *indexed = a.indexed;

    return rc;
}
