/*
 * worker_store_push.c: push registrations, one per (user, device).
 *
 * A registration replaces the device's earlier one; an unregistration
 * deletes it and drops the device's pushes not yet sent (chat_pusher
 * also finds a row without its device and drops it then). A batch's
 * changes are one transaction, applied in record order, so that the last
 * word of a device wins.
 */

#include <stdio.h>
#include <string.h>

#include "worker_pg.h"


static const chat_pg_statement_t  chat_push_sql[] = {

    { "push_register",
      "INSERT INTO push_devices AS d"
      " (user_id, device_id, endpoint, token, registered_at)"
      " VALUES ($1, $2, $3, $4, $5)"
      " ON CONFLICT (user_id, device_id) DO UPDATE"
      " SET endpoint = excluded.endpoint, token = excluded.token,"
      " registered_at = excluded.registered_at" },

    { "push_unregister",
      "DELETE FROM push_devices WHERE user_id = $1 AND device_id = $2" },

    { "push_drop_pending",
      "UPDATE push_outbox SET state = 'skipped', done_at = $3,"
      " last_error = 'unregistered'"
      " WHERE user_id = $1 AND device_id = $2 AND state = 'pending'" },
};

const chat_pg_statements_t  chat_store_push_statements = {
    chat_push_sql, sizeof(chat_push_sql) / sizeof(chat_push_sql[0])
};


typedef struct {
    chat_push_op_t  **ops;
    size_t            n;
} chat_push_args_t;


static chat_pg_rc_t
chat_push_attempt(chat_store_t *st, void *data)
{
    chat_push_args_t      *a = data;
    const chat_request_t  *req;
    const char            *params[5];
    char                   ts[24];
    chat_pg_rc_t           rc;
    size_t                 i;

    rc = chat_pg_command(st, "BEGIN");
    if (rc != CHAT_PG_OK) {
        return rc;
    }

    for (i = 0; i < a->n; i++) {
        if (a->ops[i]->refused) {
            continue;
        }

        req = a->ops[i]->req;
        snprintf(ts, sizeof(ts), "%lld", (long long) req->ts);

        params[0] = req->user;
        params[1] = req->dev;

        if (req->op == NGX_CHAT_WIRE_OP_PUSH_REGISTER) {
            params[2] = req->endpoint;
            params[3] = req->token;
            params[4] = ts;
            rc = chat_pg_run(st, "push_register", 5, params, NULL);

        } else {
            params[2] = ts;
            rc = chat_pg_run(st, "push_unregister", 2, params, NULL);

            if (rc == CHAT_PG_OK) {
                rc = chat_pg_run(st, "push_drop_pending", 3, params, NULL);
            }
        }

        if (rc != CHAT_PG_OK) {
            return rc;
        }
    }

    return chat_pg_command(st, "COMMIT");
}


chat_store_rc_t
chat_store_push(chat_store_t *st, chat_push_op_t **ops, size_t n)
{
    chat_push_args_t  args = { ops, n };

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    return chat_pg_retry(st, chat_push_attempt, &args);
}
