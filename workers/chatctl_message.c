/*
 * chatctl_message.c: chatctl message show (one message as PostgreSQL has
 * it) and chatctl message redact (a redact record to the requests topic,
 * keyed by the message's conversation so that it is ordered with the
 * conversation's records; a worker erases the body, keeps the message
 * marked redacted and tells the members with a system message). chatctl
 * waits until PostgreSQL shows it redacted.
 */

#include <stdlib.h>
#include <string.h>

#include "chatctl.h"


static const char  chatctl_message_help[] =
    "NAME\n"
    "    chatctl message - show a message, or redact it\n"
    "\n"
    "SYNOPSIS\n"
    "    chatctl message show <message_id> [--json]\n"
    "    chatctl message redact <message_id> [--wait S] [--admin NAME]\n"
    "                           [--json]\n"
    "\n"
    "DESCRIPTION\n"
    "    show prints one message from PostgreSQL: its conversation, seq,\n"
    "    sender and device, kind, body, time, and whether it was\n"
    "    redacted.\n"
    "\n"
    "    redact erases a text message's body in PostgreSQL, the store of\n"
    "    record: the message keeps its id and seq and is marked redacted\n"
    "    (by whom, when), and a system message\n"
    "    {\"event\":\"message_redacted\",\"message_id\":...,\"by\":<admin>,\n"
    "    \"operator\":true} in its conversation tells the members' devices\n"
    "    to forget the text. It goes through Kafka to the workers, in\n"
    "    order with the conversation's messages; chatctl waits until\n"
    "    PostgreSQL shows it done.\n"
    "\n"
    "OPTIONS\n"
    "    --wait S      redact: how long to wait (10; 0: do not wait)\n"
    "    --admin NAME  redact: who asks (default $CHATCTL_ADMIN,\n"
    "                  $SUDO_USER or $USER)\n"
    "\n"
    "    --json: {\"message_id\", \"conversation_id\", \"seq\",\n"
    "    \"sender_id\", \"device_id\", \"client_msg_id\", \"kind\", \"body\",\n"
    "    \"server_ts\", \"redacted\", \"redacted_at\", \"redacted_by\"}; redact\n"
    "    prints the message as it is after the redaction.\n"
    "\n"
    "EXAMPLES\n"
    "    chatctl message show 123456\n"
    "    chatctl message redact 123456 --admin alice.ops\n";


#define CHATCTL_MESSAGE_SQL                                                 \
    "SELECT message_id, conversation_id, seq, sender_id, device_id,"        \
    " client_msg_id, kind, body, server_ts, redacted_at, redacted_by"       \
    " FROM messages WHERE message_id = $1"


/* the message as JSON, or NULL (none: *found false) */
static json_t *
chatctl_message_load(PGconn *pg, const char *id, bool *found, bool *failed)
{
    const char  *params[1] = { id };
    PGresult    *res;
    json_t      *m;

    *found = false;
    *failed = false;

    res = chatctl_query(pg, CHATCTL_MESSAGE_SQL, 1, params);
    if (res == NULL) {
        *failed = true;
        return NULL;
    }

    if (PQntuples(res) == 0) {
        PQclear(res);
        return NULL;
    }

    *found = true;

    m = json_pack("{s:s,s:s,s:I,s:s,s:s,s:o,s:s,s:s,s:I,s:b,s:o,s:o}",
        "message_id", PQgetvalue(res, 0, 0),
        "conversation_id", PQgetvalue(res, 0, 1),
        "seq", (json_int_t) atoll(PQgetvalue(res, 0, 2)),
        "sender_id", PQgetvalue(res, 0, 3),
        "device_id", PQgetvalue(res, 0, 4),
        "client_msg_id", PQgetisnull(res, 0, 5)
                         ? json_null() : json_string(PQgetvalue(res, 0, 5)),
        "kind", PQgetvalue(res, 0, 6),
        "body", PQgetvalue(res, 0, 7),
        "server_ts", (json_int_t) atoll(PQgetvalue(res, 0, 8)),
        "redacted", !PQgetisnull(res, 0, 9),
        "redacted_at", PQgetisnull(res, 0, 9)
                       ? json_null() : json_integer(atoll(PQgetvalue(res, 0,
                                                                     9))),
        "redacted_by", PQgetisnull(res, 0, 10)
                       ? json_null() : json_string(PQgetvalue(res, 0, 10)));

    PQclear(res);

    return m;
}


static void
chatctl_message_print(json_t *m)
{
    const char  *key;
    json_t      *v;
    char        *text;

    json_object_foreach(m, key, v) {
        text = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY);
        printf("%-16s %s\n", key, text ? text : json_string_value(v));
        free(text);
    }
}


typedef struct {
    PGconn      *pg;
    const char  *id;
    bool         failed;
} chatctl_redact_wait_t;


static bool
chatctl_redacted(void *data)
{
    chatctl_redact_wait_t  *w = data;
    json_t                 *m;
    bool                    found, done;

    m = chatctl_message_load(w->pg, w->id, &found, &w->failed);
    done = w->failed || (m && json_is_true(json_object_get(m, "redacted")));
    json_decref(m);

    return done;
}


static int
chatctl_message(const chatctl_command_t *cmd, int argc, char **argv)
{
    chatctl_opts_t          o;
    chatctl_extra_t         x;
    chatctl_redact_wait_t   w;
    PGconn                 *pg;
    json_t                 *m, *rec;
    const char             *id;
    bool                    found, failed, redact;
    int                     rc, nargs;

    rc = chatctl_options(cmd, argc, argv,
                         CHATCTL_OPT_WAIT | CHATCTL_OPT_ADMIN, &o, &x,
                         &nargs);
    if (rc >= 0) {
        return rc;
    }

    if (nargs != 2
        || (strcmp(argv[1], "show") != 0 && strcmp(argv[1], "redact") != 0))
    {
        return chatctl_usage_error(cmd, "show <message_id> or redact"
                                   " <message_id>");
    }

    redact = strcmp(argv[1], "redact") == 0;
    id = argv[2];

    if (id[0] == '\0' || strspn(id, "0123456789") != strlen(id)
        || strlen(id) > 18)
    {
        return chatctl_usage_error(cmd, "not a message id: %s", id);
    }

    pg = chatctl_pg(&o, true);
    if (pg == NULL) {
        return CHATCTL_FAILED;
    }

    m = chatctl_message_load(pg, id, &found, &failed);
    rc = CHATCTL_OK;

    if (failed) {
        rc = CHATCTL_FAILED;
        goto done;
    }

    if (!found) {
        rc = chatctl_fail(CHATCTL_NOT_FOUND, "no message %s", id);
        goto done;
    }

    if (redact && strcmp(json_string_value(json_object_get(m, "kind")),
                         "text") != 0)
    {
        rc = chatctl_fail(CHATCTL_NOT_FOUND, "message %s is no text message"
                          " (only those are redacted)", id);
        goto done;
    }

    if (redact && !json_is_true(json_object_get(m, "redacted"))) {
        rec = json_pack("{s:O,s:s}", NGX_CHAT_WIRE_F_CONV,
                        json_object_get(m, "conversation_id"),
                        NGX_CHAT_WIRE_F_MESSAGE_ID, id);

        if (!chatctl_produce(&o, json_string_value(json_object_get(m,
                                 "conversation_id")), rec,
                             NGX_CHAT_WIRE_OP_REDACT, chatctl_now_ms()))
        {
            json_decref(rec);
            rc = CHATCTL_FAILED;
            goto done;
        }

        json_decref(rec);

        if (o.wait > 0) {
            memset(&w, 0, sizeof(w));
            w.pg = pg;
            w.id = id;

            if (!chatctl_wait(&o, chatctl_redacted, &w) || w.failed) {
                rc = chatctl_fail(CHATCTL_FAILED, "the workers have not"
                                  " redacted message %s after %g s", id,
                                  o.wait);
                goto done;
            }

            json_decref(m);
            m = chatctl_message_load(pg, id, &found, &failed);

            if (m == NULL) {
                rc = CHATCTL_FAILED;
                goto done;
            }
        }
    }

    if (o.json) {
        chatctl_print_json(m);
        m = NULL;

    } else {
        chatctl_message_print(m);
    }

done:

    json_decref(m);
    PQfinish(pg);

    return rc;
}


const chatctl_command_t  chatctl_message_command = {
    "message", "show a message, or redact it (its text erased)",
    chatctl_message, chatctl_message_help
};
