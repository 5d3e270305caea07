
/*
 * The session registry: which connection serves each device of a user, in
 * Redis (the keys and values of ngx_chat_wire.h), written by the scripts
 * lua/registry_*.lua. It is what the workers read to find a message's
 * recipients, and what says a user is online.
 *
 * A device has one live connection: when a registration replaces another
 * (on any server), the script names the loser and a kick record on that
 * node's channel closes it with 4001.
 *
 * Nothing here depends on a close being seen. Each process says every few
 * seconds that its node is alive; the sessions of a node that stopped
 * saying so (a crashed server) are removed by the other processes' sweeps.
 * A user whose last device went is announced offline only after a grace
 * period, and not at all if a device came back meanwhile: a reload or a
 * flapping link flips nobody offline. When Redis lost its data (it did not
 * know this node, or the command link was lost) every local session
 * registers again, and entries of this node that no local session backs
 * are removed.
 */


#include "ngx_chat.h"
#include "ngx_chat_lua.h"

#include <hiredis/hiredis.h>


/* how often a node says it is alive, and for how long it counts */
#define NGX_CHAT_REGISTRY_ALIVE_EVERY   2000
#define NGX_CHAT_REGISTRY_NODE_TTL      10000
#define NGX_CHAT_REGISTRY_SWEEP_EVERY   1000
#define NGX_CHAT_REGISTRY_SWEEP_AGAIN   50
#define NGX_CHAT_REGISTRY_SWEEP_MAX     500
#define NGX_CHAT_REGISTRY_DUE_MAX       200


typedef enum {
    NGX_CHAT_REGISTRY_ADD = 0,
    NGX_CHAT_REGISTRY_REMOVE,
    NGX_CHAT_REGISTRY_ALIVE,
    NGX_CHAT_REGISTRY_SWEEP,
    NGX_CHAT_REGISTRY_DUE,
    NGX_CHAT_REGISTRY_GONE,
    NGX_CHAT_REGISTRY_SCRIPTS
} ngx_chat_registry_script_e;


static void ngx_chat_registry_eval_add(ngx_chat_session_t *s,
    const char *mode);
static void ngx_chat_registry_eval_remove(const u_char *user, size_t len,
    const u_char *device, size_t device_len, const char *value,
    size_t value_len);
static void ngx_chat_registry_added(void *reply, void *data);
static void ngx_chat_registry_alive_handler(ngx_event_t *ev);
static void ngx_chat_registry_alive(void *reply, void *data);
static void ngx_chat_registry_sweep_handler(ngx_event_t *ev);
static void ngx_chat_registry_swept(void *reply, void *data);
static void ngx_chat_registry_due(void *reply, void *data);
static void ngx_chat_registry_listed(void *reply, void *data);
static int64_t ngx_chat_registry_now(void);


static ngx_chat_main_conf_t     *ngx_chat_registry_conf;
static ngx_chat_redis_script_t   ngx_chat_registry_scripts[
                                     NGX_CHAT_REGISTRY_SCRIPTS];
static ngx_event_t               ngx_chat_registry_alive_ev;
static ngx_event_t               ngx_chat_registry_sweep_ev;

/* this node's sessions key, made once */
static char                      ngx_chat_registry_nsess[
                                     NGX_CHAT_WIRE_KEY_MAX];
static size_t                    ngx_chat_registry_nsess_len;


ngx_int_t
ngx_chat_registry_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf)
{
    ngx_uint_t  i;

    static const char  *texts[NGX_CHAT_REGISTRY_SCRIPTS] = {
        ngx_chat_lua_registry_add,
        ngx_chat_lua_registry_remove,
        ngx_chat_lua_registry_alive,
        ngx_chat_lua_registry_sweep,
        ngx_chat_lua_registry_due,
        ngx_chat_lua_registry_gone
    };

    ngx_chat_registry_conf = mcf;

    for (i = 0; i < NGX_CHAT_REGISTRY_SCRIPTS; i++) {
        ngx_chat_redis_script_init(&ngx_chat_registry_scripts[i], texts[i]);
    }

    ngx_chat_registry_nsess_len = ngx_chat_wire_key(ngx_chat_registry_nsess,
                                          NGX_CHAT_WIRE_KEY_NODE_SESSIONS,
                                          (char *) mcf->node.data,
                                          mcf->node.len);

    ngx_chat_registry_alive_ev.handler = ngx_chat_registry_alive_handler;
    ngx_chat_registry_alive_ev.log = cycle->log;
    ngx_chat_registry_alive_ev.cancelable = 1;

    ngx_chat_registry_sweep_ev.handler = ngx_chat_registry_sweep_handler;
    ngx_chat_registry_sweep_ev.log = cycle->log;
    ngx_chat_registry_sweep_ev.cancelable = 1;

    /* the processes of a server start together: spread their sweeps */
    ngx_add_timer(&ngx_chat_registry_sweep_ev,
                  NGX_CHAT_REGISTRY_SWEEP_EVERY / 2
                  + ngx_random() % NGX_CHAT_REGISTRY_SWEEP_EVERY);

    return NGX_OK;
}


void
ngx_chat_registry_exit(ngx_cycle_t *cycle)
{
    if (ngx_chat_registry_alive_ev.timer_set) {
        ngx_del_timer(&ngx_chat_registry_alive_ev);
    }

    if (ngx_chat_registry_sweep_ev.timer_set) {
        ngx_del_timer(&ngx_chat_registry_sweep_ev);
    }
}


static int64_t
ngx_chat_registry_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
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
    ngx_chat_registry_eval_add(s, "replace");
}


void
ngx_chat_registry_remove(ngx_chat_session_t *s)
{
    char    value[NGX_CHAT_WIRE_SESSION_MAX];
    u_char  sid[NGX_CHAT_WIRE_SID_LEN];
    size_t  len;

    if (!s->registered) {
        return;
    }

    s->registered = 0;

    len = ngx_chat_wire_session_value(value,
                                 (char *) ngx_chat_registry_conf->node.data,
                                 ngx_chat_registry_conf->node.len,
                                 (char *) ngx_chat_session_sid(s, sid));

    /* when Redis is away, the entry goes with the restore's check */
    ngx_chat_registry_eval_remove(ngx_chat_session_user(s)->data, s->user_len, ngx_chat_session_device(s)->data,
                                  s->device_len, value, len);
}


/*
 * Redis may have lost every key, or come back with older ones: register
 * every local session again, then remove what Redis holds of this node
 * that no local session backs.
 */

void
ngx_chat_registry_restore(void)
{
    const char          *argv[2];
    size_t               argvlen[2];
    ngx_chat_session_t  *s;

    for (s = ngx_chat_session_first(); s; s = ngx_chat_session_next(s)) {
        if (s->registered) {
            ngx_chat_registry_eval_add(s, "restore");
        }
    }

    argv[0] = "HGETALL";
    argvlen[0] = sizeof("HGETALL") - 1;
    argv[1] = ngx_chat_registry_nsess;
    argvlen[1] = ngx_chat_registry_nsess_len;

    (void) ngx_chat_redis_command(ngx_chat_registry_listed, NULL, 2, argv,
                                  argvlen);

    /* and say this node is alive again, now */
    if (ngx_chat_registry_alive_ev.timer_set) {
        ngx_del_timer(&ngx_chat_registry_alive_ev);
    }

    ngx_chat_registry_alive_handler(&ngx_chat_registry_alive_ev);
}


static void
ngx_chat_registry_listed(void *reply, void *data)
{
    size_t               i, node_len;
    const char          *node, *sid;
    redisReply          *r = reply, *value, *user;
    ngx_chat_session_t  *s;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        return;
    }

    for (i = 0; i + 1 < r->elements; i += 2) {
        value = r->element[i];
        user = r->element[i + 1];

        if (value->type != REDIS_REPLY_STRING
            || user->type != REDIS_REPLY_STRING
            || !ngx_chat_wire_session_parse(value->str, value->len, &node,
                                            &node_len, &sid)
            || !ngx_chat_wire_valid_id(user->str, user->len))
        {
            continue;
        }

        s = ngx_chat_session_find((const u_char *) sid);

        if (s && s->registered) {
            continue;
        }

        ngx_chat_registry_eval_remove((u_char *) user->str, user->len,
                                      (u_char *) "", 0, value->str,
                                      value->len);
    }
}


/* the user's keys, the node's sessions and the offline queue */

static void
ngx_chat_registry_keys(const u_char *user, size_t len, char keys[4][
    NGX_CHAT_WIRE_KEY_MAX], const char **argv, size_t *argvlen)
{
    argv[0] = keys[0];
    argvlen[0] = ngx_chat_wire_key(keys[0], NGX_CHAT_WIRE_KEY_SESS,
                                   (char *) user, len);
    argv[1] = keys[1];
    argvlen[1] = ngx_chat_wire_key(keys[1], NGX_CHAT_WIRE_KEY_PRES,
                                   (char *) user, len);
    argv[2] = keys[2];
    argvlen[2] = ngx_chat_wire_key(keys[2], NGX_CHAT_WIRE_KEY_SINCE,
                                   (char *) user, len);
    argv[3] = ngx_chat_registry_nsess;
    argvlen[3] = ngx_chat_registry_nsess_len;
    argv[4] = NGX_CHAT_WIRE_KEY_GONE;
    argvlen[4] = sizeof(NGX_CHAT_WIRE_KEY_GONE) - 1;
    argv[5] = keys[3];
    argvlen[5] = ngx_chat_wire_key(keys[3], NGX_CHAT_WIRE_CHANNEL_PRESENCE,
                                   (char *) user, len);
}


static void
ngx_chat_registry_eval_add(ngx_chat_session_t *s, const char *mode)
{
    char         keys[4][NGX_CHAT_WIRE_KEY_MAX];
    char         value[NGX_CHAT_WIRE_SESSION_MAX];
    char         event[NGX_CHAT_WIRE_PRESENCE_MAX];
    u_char       since[NGX_INT64_LEN], sid[NGX_CHAT_WIRE_SID_LEN];
    const char  *argv[12];
    size_t       argvlen[12];

    ngx_chat_registry_keys(ngx_chat_session_user(s)->data, s->user_len, keys,
                           argv, argvlen);

    argv[6] = (char *) ngx_chat_session_device(s)->data;
    argvlen[6] = s->device_len;
    argv[7] = value;
    argvlen[7] = ngx_chat_wire_session_value(value,
                                   (char *) ngx_chat_registry_conf->node.data,
                                   ngx_chat_registry_conf->node.len,
                                   (char *) ngx_chat_session_sid(s, sid));
    argv[8] = mode;
    argvlen[8] = ngx_strlen(mode);
    argv[9] = (char *) since;
    argvlen[9] = ngx_sprintf(since, "%L", s->since) - since;
    argv[10] = (char *) ngx_chat_session_user(s)->data;
    argvlen[10] = s->user_len;
    argv[11] = event;
    argvlen[11] = ngx_chat_wire_presence_event(event, (char *) ngx_chat_session_user(s)->data,
                                               s->user_len, "online", -1);

    (void) ngx_chat_redis_eval(
                         &ngx_chat_registry_scripts[NGX_CHAT_REGISTRY_ADD],
                         ngx_chat_registry_added, NULL, 6, 12, argv,
                         argvlen);
}


static void
ngx_chat_registry_eval_remove(const u_char *user, size_t len,
    const u_char *device, size_t device_len, const char *value,
    size_t value_len)
{
    char         keys[4][NGX_CHAT_WIRE_KEY_MAX];
    u_char       now[NGX_INT64_LEN], grace[NGX_INT64_LEN];
    const char  *argv[10];
    size_t       argvlen[10];

    ngx_chat_registry_keys(user, len, keys, argv, argvlen);

    argv[5] = (char *) device;
    argvlen[5] = device_len;
    argv[6] = value;
    argvlen[6] = value_len;
    argv[7] = (char *) now;
    argvlen[7] = ngx_sprintf(now, "%L", ngx_chat_registry_now()) - now;
    argv[8] = (char *) user;
    argvlen[8] = len;
    argv[9] = (char *) grace;
    argvlen[9] = ngx_sprintf(grace, "%M",
                             ngx_chat_registry_conf->presence_grace)
                 - grace;

    (void) ngx_chat_redis_eval(
                         &ngx_chat_registry_scripts[NGX_CHAT_REGISTRY_REMOVE],
                         NULL, NULL, 5, 10, argv, argvlen);
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


static void
ngx_chat_registry_alive_handler(ngx_event_t *ev)
{
    u_char       until[NGX_INT64_LEN];
    const char  *argv[3];
    size_t       argvlen[3];

    argv[0] = NGX_CHAT_WIRE_KEY_NODES;
    argvlen[0] = sizeof(NGX_CHAT_WIRE_KEY_NODES) - 1;
    argv[1] = (char *) ngx_chat_registry_conf->node.data;
    argvlen[1] = ngx_chat_registry_conf->node.len;
    argv[2] = (char *) until;
    argvlen[2] = ngx_sprintf(until, "%L", ngx_chat_registry_now()
                                          + NGX_CHAT_REGISTRY_NODE_TTL)
                 - until;

    (void) ngx_chat_redis_eval(
                         &ngx_chat_registry_scripts[NGX_CHAT_REGISTRY_ALIVE],
                         ngx_chat_registry_alive, NULL, 1, 3, argv, argvlen);

    /* a draining process lives on for its sessions: it says so too */
    ngx_add_timer(ev, NGX_CHAT_REGISTRY_ALIVE_EVERY);
}


static void
ngx_chat_registry_alive(void *reply, void *data)
{
    redisReply  *r = reply;

    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0
        && ngx_chat_session_first() != NULL)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: redis did not know this node: registering its "
                      "sessions again");
        ngx_chat_registry_restore();
    }
}


static void
ngx_chat_registry_sweep_handler(ngx_event_t *ev)
{
    u_char       now[NGX_INT64_LEN], max[NGX_INT_T_LEN], ttl[NGX_INT_T_LEN];
    const char  *argv[9];
    size_t       argvlen[9];

    argv[0] = NGX_CHAT_WIRE_KEY_NODES;
    argvlen[0] = sizeof(NGX_CHAT_WIRE_KEY_NODES) - 1;
    argv[1] = NGX_CHAT_WIRE_KEY_GONE;
    argvlen[1] = sizeof(NGX_CHAT_WIRE_KEY_GONE) - 1;
    argv[2] = (char *) now;
    argvlen[2] = ngx_sprintf(now, "%L", ngx_chat_registry_now()) - now;
    argv[3] = (char *) max;
    argvlen[3] = ngx_sprintf(max, "%d", NGX_CHAT_REGISTRY_SWEEP_MAX) - max;
    argv[4] = (char *) ttl;
    argvlen[4] = ngx_sprintf(ttl, "%d", NGX_CHAT_REGISTRY_NODE_TTL) - ttl;
    argv[5] = NGX_CHAT_WIRE_KEY_NODE_SESSIONS;
    argvlen[5] = sizeof(NGX_CHAT_WIRE_KEY_NODE_SESSIONS) - 1;
    argv[6] = NGX_CHAT_WIRE_KEY_SESS;
    argvlen[6] = sizeof(NGX_CHAT_WIRE_KEY_SESS) - 1;
    argv[7] = NGX_CHAT_WIRE_KEY_SINCE;
    argvlen[7] = sizeof(NGX_CHAT_WIRE_KEY_SINCE) - 1;
    argv[8] = NGX_CHAT_WIRE_KEY_PRES;
    argvlen[8] = sizeof(NGX_CHAT_WIRE_KEY_PRES) - 1;

    if (ngx_chat_redis_eval(
                         &ngx_chat_registry_scripts[NGX_CHAT_REGISTRY_SWEEP],
                         ngx_chat_registry_swept, NULL, 2, 9, argv, argvlen)
        != NGX_OK)
    {
        ngx_add_timer(ev, NGX_CHAT_REGISTRY_SWEEP_EVERY);
        return;
    }

    /* the users due offline, now that the dead nodes' ones are among them */

    argv[1] = (char *) now;
    argvlen[1] = argvlen[2];
    argv[2] = (char *) max;
    argvlen[2] = ngx_sprintf(max, "%d", NGX_CHAT_REGISTRY_DUE_MAX) - max;
    argv[3] = NGX_CHAT_WIRE_KEY_PRES;
    argvlen[3] = sizeof(NGX_CHAT_WIRE_KEY_PRES) - 1;

    argv[0] = NGX_CHAT_WIRE_KEY_GONE;
    argvlen[0] = sizeof(NGX_CHAT_WIRE_KEY_GONE) - 1;

    (void) ngx_chat_redis_eval(
                         &ngx_chat_registry_scripts[NGX_CHAT_REGISTRY_DUE],
                         ngx_chat_registry_due, NULL, 1, 4, argv, argvlen);
}


static void
ngx_chat_registry_swept(void *reply, void *data)
{
    redisReply  *r = reply;
    ngx_msec_t   next;

    next = NGX_CHAT_REGISTRY_SWEEP_EVERY;

    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "chat: removed %L sessions of nodes that stopped",
                      (int64_t) r->integer);

        if (r->integer >= NGX_CHAT_REGISTRY_SWEEP_MAX) {
            next = NGX_CHAT_REGISTRY_SWEEP_AGAIN;
        }
    }

    if (!ngx_chat_registry_sweep_ev.timer_set) {
        ngx_add_timer(&ngx_chat_registry_sweep_ev, next);
    }
}


/* announce the due users offline, each event written here */

static void
ngx_chat_registry_due(void *reply, void *data)
{
    u_char       now[NGX_INT64_LEN], *p, *events;
    size_t       i, n;
    int64_t      last_seen;
    const char **argv;
    size_t      *argvlen;
    redisReply  *r = reply, *user, *seen;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
        return;
    }

    n = r->elements / 2;

    argv = ngx_alloc((4 + 2 * n) * (sizeof(char *) + sizeof(size_t))
                     + n * NGX_CHAT_WIRE_PRESENCE_MAX, ngx_cycle->log);
    if (argv == NULL) {
        return;
    }

    argvlen = (size_t *) (argv + 4 + 2 * n);
    events = (u_char *) (argvlen + 4 + 2 * n);

    argv[0] = NGX_CHAT_WIRE_KEY_GONE;
    argvlen[0] = sizeof(NGX_CHAT_WIRE_KEY_GONE) - 1;
    argv[1] = (char *) now;
    argvlen[1] = ngx_sprintf(now, "%L", ngx_chat_registry_now()) - now;
    argv[2] = NGX_CHAT_WIRE_KEY_SESS;
    argvlen[2] = sizeof(NGX_CHAT_WIRE_KEY_SESS) - 1;
    argv[3] = NGX_CHAT_WIRE_CHANNEL_PRESENCE;
    argvlen[3] = sizeof(NGX_CHAT_WIRE_CHANNEL_PRESENCE) - 1;

    p = events;
    n = 4;

    for (i = 0; i + 1 < r->elements; i += 2) {
        user = r->element[i];
        seen = r->element[i + 1];

        if (user->type != REDIS_REPLY_STRING
            || !ngx_chat_wire_valid_id(user->str, user->len))
        {
            continue;
        }

        last_seen = -1;

        if (seen->type == REDIS_REPLY_STRING) {
            last_seen = ngx_atoof((u_char *) seen->str, seen->len);
        }

        argv[n] = user->str;
        argvlen[n] = user->len;
        argv[n + 1] = (char *) p;
        argvlen[n + 1] = ngx_chat_wire_presence_event((char *) p, user->str,
                                                      user->len, "offline",
                                                      last_seen > 0
                                                      ? last_seen : -1);
        p += argvlen[n + 1];
        n += 2;
    }

    (void) ngx_chat_redis_eval(
                         &ngx_chat_registry_scripts[NGX_CHAT_REGISTRY_GONE],
                         NULL, NULL, 1, (int) n, argv, argvlen);

    ngx_free(argv);
}
