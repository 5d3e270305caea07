
/*
 * The session registry: which connection serves each device of a user, in
 * Redis (the keys and values of ngx_chat_wire.h), written by the scripts
 * lua/registry_add.lua and lua/registry_remove.lua. It is what the workers
 * read to find a message's recipients, and what says a user is online.
 *
 * A device has one live connection: when a registration replaces another
 * (on any server), the script names the loser and a kick record on that
 * node's channel closes it with 4001. After a Redis reconnect every local
 * session registers again: Redis may have lost every key.
 */


#include "ngx_chat.h"
#include "ngx_chat_lua.h"

#include <hiredis/hiredis.h>


static void ngx_chat_registry_eval(ngx_chat_session_t *s,
    ngx_chat_redis_script_t *script, const char *mode);
static void ngx_chat_registry_added(void *reply, void *data);


static ngx_chat_main_conf_t     *ngx_chat_registry_conf;
static ngx_chat_redis_script_t   ngx_chat_registry_add_script;
static ngx_chat_redis_script_t   ngx_chat_registry_remove_script;


ngx_int_t
ngx_chat_registry_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf)
{
    ngx_chat_registry_conf = mcf;

    ngx_chat_redis_script_init(&ngx_chat_registry_add_script,
                               ngx_chat_lua_registry_add);
    ngx_chat_redis_script_init(&ngx_chat_registry_remove_script,
                               ngx_chat_lua_registry_remove);

    return NGX_OK;
}


void
ngx_chat_registry_add(ngx_chat_session_t *s)
{
    struct timeval  tv;

    /* microseconds: two connections of a device may come within a ms */
    ngx_gettimeofday(&tv);
    s->since = (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
    s->registered = 1;

    /* while Redis is away: registered by ngx_chat_registry_restore() */
    ngx_chat_registry_eval(s, &ngx_chat_registry_add_script, "replace");
}


void
ngx_chat_registry_remove(ngx_chat_session_t *s)
{
    if (!s->registered) {
        return;
    }

    s->registered = 0;

    ngx_chat_registry_eval(s, &ngx_chat_registry_remove_script, NULL);
}


void
ngx_chat_registry_restore(void)
{
    ngx_chat_session_t  *s;

    for (s = ngx_chat_session_first(); s; s = ngx_chat_session_next(s)) {
        if (s->registered) {
            ngx_chat_registry_eval(s, &ngx_chat_registry_add_script,
                                   "restore");
        }
    }
}


/*
 * Both scripts take the user's keys and the presence channel, then the
 * device and the session value; an add also the mode, the time of the
 * connection and the "online" event, a remove the time and the "offline"
 * event (lua/registry_*.lua).
 */

static void
ngx_chat_registry_eval(ngx_chat_session_t *s, ngx_chat_redis_script_t *script,
    const char *mode)
{
    char         sess[NGX_CHAT_WIRE_KEY_MAX], pres[NGX_CHAT_WIRE_KEY_MAX];
    char         since[NGX_CHAT_WIRE_KEY_MAX];
    char         value[NGX_CHAT_WIRE_SESSION_MAX];
    char         event[NGX_CHAT_WIRE_PRESENCE_MAX];
    u_char       ts[NGX_INT64_LEN];
    int64_t      now;
    ngx_time_t  *tp;
    const char  *argv[9];
    size_t       argvlen[9];

    argv[0] = sess;
    argvlen[0] = ngx_chat_wire_key(sess, NGX_CHAT_WIRE_KEY_SESS,
                                   (char *) s->user.data, s->user.len);
    argv[1] = pres;
    argvlen[1] = ngx_chat_wire_key(pres, NGX_CHAT_WIRE_KEY_PRES,
                                   (char *) s->user.data, s->user.len);
    argv[2] = since;
    argvlen[2] = ngx_chat_wire_key(since, NGX_CHAT_WIRE_KEY_SINCE,
                                   (char *) s->user.data, s->user.len);
    argv[3] = NGX_CHAT_WIRE_CHANNEL_PRESENCE;
    argvlen[3] = sizeof(NGX_CHAT_WIRE_CHANNEL_PRESENCE) - 1;
    argv[4] = (char *) s->device.data;
    argvlen[4] = s->device.len;
    argv[5] = value;
    argvlen[5] = ngx_chat_wire_session_value(value,
                                   (char *) ngx_chat_registry_conf->node.data,
                                   ngx_chat_registry_conf->node.len,
                                   (char *) s->sid);

    if (mode) {
        argv[6] = mode;
        argvlen[6] = ngx_strlen(mode);
        argv[7] = (char *) ts;
        argvlen[7] = ngx_sprintf(ts, "%L", s->since) - ts;
        argv[8] = event;
        argvlen[8] = ngx_chat_wire_presence_event(event,
                                                  (char *) s->user.data,
                                                  s->user.len, "online", -1);

        (void) ngx_chat_redis_eval(script, ngx_chat_registry_added, NULL, 4,
                                   9, argv, argvlen);
        return;
    }

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    argv[6] = (char *) ts;
    argvlen[6] = ngx_sprintf(ts, "%L", now) - ts;
    argv[7] = event;
    argvlen[7] = ngx_chat_wire_presence_event(event, (char *) s->user.data,
                                              s->user.len, "offline", now);

    (void) ngx_chat_redis_eval(script, NULL, NULL, 4, 8, argv, argvlen);
}


/* the add named a connection to close as replaced: tell its node */

static void
ngx_chat_registry_added(void *reply, void *data)
{
    char         channel[NGX_CHAT_WIRE_KEY_MAX], *p;
    char         record[NGX_CHAT_WIRE_SID_LEN + 32];
    size_t       node_len;
    const char  *node, *sid, *argv[3];
    size_t       argvlen[3];
    redisReply  *r = reply;

    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        return;
    }

    if (!ngx_chat_wire_session_parse(r->str, r->len, &node, &node_len, &sid))
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: redis: a malformed session value to replace");
        return;
    }

    p = ngx_chat_wire_record_header(record, NGX_CHAT_WIRE_RECORD_KICK, &sid,
                                    1, 0);

    argv[0] = "PUBLISH";
    argvlen[0] = sizeof("PUBLISH") - 1;
    argv[1] = channel;
    argvlen[1] = ngx_chat_wire_key(channel, NGX_CHAT_WIRE_CHANNEL_NODE, node,
                                   node_len);
    argv[2] = record;
    argvlen[2] = p - record;

    (void) ngx_chat_redis_command(NULL, NULL, 3, argv, argvlen);
}


void
ngx_chat_registry_forget(ngx_chat_session_t *s)
{
    s->registered = 0;
}
