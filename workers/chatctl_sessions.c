/*
 * chatctl_sessions.c: chatctl sessions (who is online where: the user's
 * registry in Redis, chat:sess and chat:since, with each node's liveness
 * from chat:nodes) and chatctl kick (a K record on each session's node
 * channel, which closes it with 4001 as a newer connection of its device
 * would; the client may connect again at once: revoke is what keeps it
 * out).
 */

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "chatctl.h"


static const char  chatctl_sessions_help[] =
    "NAME\n"
    "    chatctl sessions - who is online where\n"
    "\n"
    "SYNOPSIS\n"
    "    chatctl sessions <user> [--json] [--redis HOST:PORT]\n"
    "\n"
    "DESCRIPTION\n"
    "    Lists the live sessions of <user> from Redis's session registry:\n"
    "    per device, the node (the nginx worker process, <server>:<id>)\n"
    "    that holds the connection, the session id, since when, and\n"
    "    whether that node is still alive (a node that died leaves its\n"
    "    sessions until the others sweep them).\n"
    "\n"
    "OPTIONS\n"
    "    Only the shared ones (below). --json: {\"user\", \"sessions\":\n"
    "    [{\"device\", \"node\", \"session_id\", \"since\" (ms),\n"
    "    \"node_alive\"}]}\n"
    "\n"
    "EXAMPLES\n"
    "    chatctl sessions alice\n"
    "    chatctl sessions alice --json | jq -r '.sessions[].node'\n";


static const char  chatctl_kick_help[] =
    "NAME\n"
    "    chatctl kick - close a user's connections\n"
    "\n"
    "SYNOPSIS\n"
    "    chatctl kick <user> [--device D] [--json] [--redis HOST:PORT]\n"
    "\n"
    "DESCRIPTION\n"
    "    Closes the sessions of <user> (of device D only, with --device)\n"
    "    with close code 4001, as a newer connection of the same device\n"
    "    does: a K record on each session's node channel. The client may\n"
    "    connect again right away; to keep it out, revoke its tokens\n"
    "    (chatctl revoke), which also closes its sessions, with 4003.\n"
    "\n"
    "OPTIONS\n"
    "    --device D   only the session of this device\n"
    "\n"
    "    --json: {\"user\", \"kicked\": [{\"device\", \"node\",\n"
    "    \"session_id\", \"receivers\"}]} (receivers: the nginx processes\n"
    "    subscribed to the node's channel, 1 when it is alive)\n"
    "\n"
    "EXAMPLES\n"
    "    chatctl kick alice\n"
    "    chatctl kick alice --device phone --json\n";


typedef struct {
    const char  *device;
    const char  *node;
    size_t       node_len;
    const char  *sid;
    int64_t      since_ms;
    bool         alive;
} chatctl_session_t;


typedef struct {
    redisContext       *redis;
    redisReply         *sess;
    redisReply         *since;
    chatctl_session_t  *list;
    size_t              n;
} chatctl_sessions_t;


static void
chatctl_sessions_free(chatctl_sessions_t *s)
{
    if (s->sess) {
        freeReplyObject(s->sess);
    }

    if (s->since) {
        freeReplyObject(s->since);
    }

    if (s->redis) {
        redisFree(s->redis);
    }

    free(s->list);
}


/* the user's sessions, by device; false after saying why */
static bool
chatctl_sessions_load(const chatctl_opts_t *o, const char *user,
    chatctl_sessions_t *s)
{
    char         key[NGX_CHAT_WIRE_KEY_MAX];
    redisReply  *alive;
    size_t       i, k;
    const char  *value;
    int64_t      now = chatctl_now_ms();

    memset(s, 0, sizeof(*s));

    s->redis = chatctl_redis(o);
    if (s->redis == NULL) {
        return false;
    }

    ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SESS, user, strlen(user));
    s->sess = chatctl_redis_command(s->redis, "HGETALL %s", key);

    ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_SINCE, user, strlen(user));
    s->since = s->sess ? chatctl_redis_command(s->redis, "HGETALL %s", key)
                       : NULL;

    if (s->since == NULL) {
        return false;
    }

    s->list = calloc(s->sess->elements / 2 + 1, sizeof(chatctl_session_t));

    for (i = 0; i + 1 < s->sess->elements; i += 2) {
        chatctl_session_t  *c = &s->list[s->n];

        value = s->sess->element[i + 1]->str;

        if (!ngx_chat_wire_session_parse(value, strlen(value), &c->node,
                                         &c->node_len, &c->sid))
        {
            continue;
        }

        c->device = s->sess->element[i]->str;
        c->since_ms = -1;

        for (k = 0; k + 1 < s->since->elements; k += 2) {
            if (strcmp(s->since->element[k]->str, c->device) == 0) {
                /* the registry keeps microseconds */
                c->since_ms = strtoll(s->since->element[k + 1]->str, NULL,
                                      10) / 1000;
            }
        }

        alive = chatctl_redis_command(s->redis, "ZSCORE %s %b",
                                      NGX_CHAT_WIRE_KEY_NODES, c->node,
                                      c->node_len);
        c->alive = alive && alive->type == REDIS_REPLY_STRING
                   && strtod(alive->str, NULL) >= (double) now;

        if (alive) {
            freeReplyObject(alive);
        }

        s->n++;
    }

    return true;
}


static json_t *
chatctl_session_json(const chatctl_session_t *c)
{
    return json_pack("{s:s,s:s#,s:s#,s:I,s:b}", "device", c->device,
                     "node", c->node, c->node_len, "session_id", c->sid,
                     (size_t) NGX_CHAT_WIRE_SID_LEN, "since",
                     (json_int_t) c->since_ms, "node_alive", c->alive);
}


static int
chatctl_sessions(const chatctl_command_t *cmd, int argc, char **argv)
{
    chatctl_opts_t      o;
    chatctl_extra_t     x;
    chatctl_sessions_t  s;
    json_t             *list;
    char                when[32];
    size_t              i;
    int                 rc, nargs;

    rc = chatctl_options(cmd, argc, argv, 0, &o, &x, &nargs);
    if (rc >= 0) {
        return rc;
    }

    if (nargs != 1 || !chatctl_valid_id(argv[1])) {
        return chatctl_usage_error(cmd, "one user id, please");
    }

    if (!chatctl_sessions_load(&o, argv[1], &s)) {
        chatctl_sessions_free(&s);
        return CHATCTL_FAILED;
    }

    if (o.json) {
        list = json_array();

        for (i = 0; i < s.n; i++) {
            json_array_append_new(list, chatctl_session_json(&s.list[i]));
        }

        chatctl_print_json(json_pack("{s:s,s:o}", "user", argv[1],
                                     "sessions", list));

    } else if (s.n == 0) {
        printf("%s: no session\n", argv[1]);

    } else {
        printf("%-20s %-28s %-16s %-24s %s\n", "DEVICE", "NODE", "SESSION",
               "SINCE", "NODE ALIVE");

        for (i = 0; i < s.n; i++) {
            printf("%-20s %-28.*s %-16.16s %-24s %s\n", s.list[i].device,
                   (int) s.list[i].node_len, s.list[i].node, s.list[i].sid,
                   s.list[i].since_ms >= 0
                   ? chatctl_iso(s.list[i].since_ms, when) : "-",
                   s.list[i].alive ? "yes" : "no");
        }
    }

    chatctl_sessions_free(&s);

    return CHATCTL_OK;
}


static int
chatctl_kick(const chatctl_command_t *cmd, int argc, char **argv)
{
    chatctl_opts_t      o;
    chatctl_extra_t     x;
    chatctl_sessions_t  s;
    chatctl_session_t  *c;
    redisReply         *reply;
    json_t             *kicked, *one;
    char                channel[NGX_CHAT_WIRE_KEY_MAX];
    char                record[NGX_CHAT_WIRE_SID_LEN + 32];
    const char         *sids[1];
    size_t              i, len;
    int                 rc, nargs;

    rc = chatctl_options(cmd, argc, argv, CHATCTL_OPT_DEVICE, &o, &x,
                         &nargs);
    if (rc >= 0) {
        return rc;
    }

    if (nargs != 1 || !chatctl_valid_id(argv[1])) {
        return chatctl_usage_error(cmd, "one user id, please");
    }

    if (!chatctl_sessions_load(&o, argv[1], &s)) {
        chatctl_sessions_free(&s);
        return CHATCTL_FAILED;
    }

    kicked = json_array();
    rc = CHATCTL_OK;

    for (i = 0; i < s.n; i++) {
        c = &s.list[i];

        if (o.device && strcmp(o.device, c->device) != 0) {
            continue;
        }

        sids[0] = c->sid;
        len = ngx_chat_wire_record_header(record, NGX_CHAT_WIRE_RECORD_KICK,
                                          sids, 1, 0)
              - record;
        ngx_chat_wire_key(channel, NGX_CHAT_WIRE_CHANNEL_NODE, c->node,
                          c->node_len);

        reply = chatctl_redis_command(s.redis, "PUBLISH %s %b", channel,
                                      record, len);
        if (reply == NULL) {
            rc = CHATCTL_FAILED;
            break;
        }

        one = chatctl_session_json(c);
        json_object_set_new(one, "receivers",
                            json_integer(reply->integer));
        json_array_append_new(kicked, one);

        if (!o.json) {
            printf("kicked %s/%s on %.*s (%lld receivers)\n", argv[1],
                   c->device, (int) c->node_len, c->node,
                   (long long) reply->integer);
        }

        freeReplyObject(reply);
    }

    if (rc == CHATCTL_OK && json_array_size(kicked) == 0) {
        if (!o.json) {
            fprintf(stderr, "chatctl: %s%s%s has no session\n", argv[1],
                    o.device ? "/" : "", o.device ? o.device : "");
        }
        rc = CHATCTL_NOT_FOUND;
    }

    if (o.json) {
        chatctl_print_json(json_pack("{s:s,s:o}", "user", argv[1],
                                     "kicked", kicked));
    } else {
        json_decref(kicked);
    }

    chatctl_sessions_free(&s);

    return rc;
}


const chatctl_command_t  chatctl_sessions_command = {
    "sessions", "who is online where: a user's devices, nodes, since when",
    chatctl_sessions, chatctl_sessions_help
};

const chatctl_command_t  chatctl_kick_command = {
    "kick", "close a user's connections (4001), through Redis",
    chatctl_kick, chatctl_kick_help
};
