/*
 * chatctl_revoke.c: chatctl revoke, a user's (or one device's) tokens
 * revoked: a revoke record to the requests topic, keyed by the user; a
 * worker stores it in PostgreSQL, raises chat:revoked and publishes on
 * chat:control, and nginx closes the sessions with 4003 and refuses the
 * tokens issued before, until new ones are. chatctl then waits for the
 * row in PostgreSQL, which is where a revocation is kept.
 */

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chatctl.h"


static const char  chatctl_revoke_help[] =
    "NAME\n"
    "    chatctl revoke - revoke a user's tokens, or one device's\n"
    "\n"
    "SYNOPSIS\n"
    "    chatctl revoke <user> [--device D] [--wait SECONDS] [--admin NAME]\n"
    "                   [--json]\n"
    "\n"
    "DESCRIPTION\n"
    "    Every token of <user> (of device D) issued before now is refused\n"
    "    from now on: its live sessions are closed with 4003 (revoked) and\n"
    "    its handshakes answered 401, until the user gets a token issued\n"
    "    after the revocation. The request goes through Kafka to the\n"
    "    workers, which keep it in PostgreSQL (the revocations table) and\n"
    "    copy it to Redis (chat:revoked) for nginx, again after a Redis\n"
    "    restart. chatctl waits until the revocation is in PostgreSQL.\n"
    "\n"
    "OPTIONS\n"
    "    --device D        only the tokens of this device\n"
    "    --wait SECONDS    how long to wait for the workers (10; 0: do not\n"
    "                      wait, exit once Kafka has the request)\n"
    "    --admin NAME      who asks, for the log and the table (default\n"
    "                      $CHATCTL_ADMIN, $SUDO_USER or $USER)\n"
    "\n"
    "    --json: {\"user\", \"device\" (null: every device),\n"
    "    \"revoked_at\" (ms), \"admin\", \"stored\"}\n"
    "\n"
    "EXAMPLES\n"
    "    chatctl revoke mallory\n"
    "    chatctl revoke alice --device stolen-phone --json\n";


typedef struct {
    PGconn          *pg;
    const char      *params[3];
    bool             failed;
} chatctl_revoke_wait_t;


static bool
chatctl_revoke_stored(void *data)
{
    chatctl_revoke_wait_t  *w = data;
    PGresult               *res;
    bool                    found;

    res = chatctl_query(w->pg, "SELECT 1 FROM revocations WHERE user_id = $1"
                               " AND device_id = $2 AND revoked_at = $3", 3,
                        w->params);
    if (res == NULL) {
        w->failed = true;
        return true;
    }

    found = PQntuples(res) > 0;
    PQclear(res);

    return found;
}


static int
chatctl_revoke(const chatctl_command_t *cmd, int argc, char **argv)
{
    chatctl_opts_t          o;
    chatctl_extra_t         x;
    chatctl_revoke_wait_t   w;
    json_t                 *rec;
    char                    ms_text[24], when[32];
    int64_t                 ms;
    bool                    stored = false;
    int                     rc, nargs;

    rc = chatctl_options(cmd, argc, argv,
                         CHATCTL_OPT_DEVICE | CHATCTL_OPT_WAIT
                         | CHATCTL_OPT_ADMIN, &o, &x, &nargs);
    if (rc >= 0) {
        return rc;
    }

    if (nargs != 1 || !chatctl_valid_id(argv[1])) {
        return chatctl_usage_error(cmd, "one user id, please");
    }

    memset(&w, 0, sizeof(w));

    /* PostgreSQL first: a revocation that cannot be seen to hold is not
     * sent */
    if (o.wait > 0) {
        w.pg = chatctl_pg(&o, true);
        if (w.pg == NULL) {
            return CHATCTL_FAILED;
        }
    }

    ms = chatctl_now_ms();

    rec = json_pack("{s:s}", NGX_CHAT_WIRE_F_USER, argv[1]);
    if (o.device) {
        json_object_set_new(rec, NGX_CHAT_WIRE_F_DEV, json_string(o.device));
    }

    if (!chatctl_produce(&o, argv[1], rec, NGX_CHAT_WIRE_OP_REVOKE, ms)) {
        json_decref(rec);
        PQfinish(w.pg);
        return CHATCTL_FAILED;
    }

    json_decref(rec);
    rc = CHATCTL_OK;

    if (w.pg) {
        snprintf(ms_text, sizeof(ms_text), "%" PRId64, ms);
        w.params[0] = argv[1];
        w.params[1] = o.device ? o.device : "";
        w.params[2] = ms_text;

        stored = chatctl_wait(&o, chatctl_revoke_stored, &w) && !w.failed;

        if (!stored) {
            rc = chatctl_fail(CHATCTL_FAILED, "the workers have not stored"
                              " the revocation after %g s (is a chat_worker"
                              " running?)", o.wait);
        }

        PQfinish(w.pg);
    }

    if (o.json) {
        chatctl_print_json(json_pack("{s:s,s:s?,s:I,s:s,s:b}",
                                     "user", argv[1], "device", o.device,
                                     "revoked_at", (json_int_t) ms,
                                     "admin", o.admin, "stored", stored));

    } else if (rc == CHATCTL_OK) {
        printf("revoked %s%s%s at %s%s\n", argv[1], o.device ? "/" : "",
               o.device ? o.device : " (every device)", chatctl_iso(ms, when),
               stored ? "" : " (sent, not waited for)");
    }

    return rc;
}


const chatctl_command_t  chatctl_revoke_command = {
    "revoke", "revoke a user's (a device's) tokens: 4003 now, 401 after",
    chatctl_revoke, chatctl_revoke_help
};
