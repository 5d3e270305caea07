
/*
 * The Redis link of one nginx worker process: a hiredis adapter that drives
 * the async API from nginx events, two connections (commands, and the
 * subscription to this node's delivery channel), reconnection with backoff
 * and jitter, the session registry (chat:sess:<user>), and the dispatch of
 * delivery payloads to local sessions.
 *
 * Nothing here blocks: a Redis that is down only delays registrations and
 * deliveries; on reconnect every local session is registered again and the
 * channel subscribed again.
 */


#include "ngx_chat.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NGX_CHAT_REDIS_BACKOFF_MIN   100
#define NGX_CHAT_REDIS_BACKOFF_MAX   5000
#define NGX_CHAT_REDIS_PING_INTERVAL 5000


typedef struct {
    redisAsyncContext         *ac;
    ngx_connection_t          *conn;
    ngx_event_t                reconnect;
    ngx_msec_t                 backoff;
    char                      *name;
    void                     (*ready)(void);
    unsigned                   connected:1;
} ngx_chat_redis_link_t;


static void ngx_chat_redis_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_chat_redis_ping_handler(ngx_event_t *ev);
static void ngx_chat_redis_pong(redisAsyncContext *ac, void *reply,
    void *data);
static void ngx_chat_redis_schedule(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_chat_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_chat_redis_cmd_ready(void);
static void ngx_chat_redis_sub_ready(void);
static void ngx_chat_redis_message(redisAsyncContext *ac, void *reply,
    void *data);
static void ngx_chat_redis_dispatch(u_char *p, u_char *last);
static void ngx_chat_redis_set(ngx_chat_session_t *s, char *mode);
static void ngx_chat_redis_session_eval(ngx_chat_session_t *s, char *script,
    size_t len, char *mode);

static ngx_int_t ngx_chat_redis_attach(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_event_handler(ngx_event_t *ev);
static void ngx_chat_redis_add_read(void *data);
static void ngx_chat_redis_del_read(void *data);
static void ngx_chat_redis_add_write(void *data);
static void ngx_chat_redis_del_write(void *data);
static void ngx_chat_redis_cleanup(void *data);


/*
 * KEYS[1] chat:sess:<user>, KEYS[2] chat:pres:<user>, KEYS[3]
 * chat:since:<user>, ARGV[1] device, ARGV[2] "<node> <sid>", ARGV[3]
 * "replace" on connect, "restore" after a Redis restart (a connection of
 * the device registered meanwhile wins), ARGV[4] when the connection was
 * made (us). The older of two connections of a device is closed with 4001,
 * whichever registration reaches Redis first: the two may come from
 * different nginx workers, each on its own Redis link. A user's first
 * device makes it online (ngx_chat_presence.c).
 */
static char  ngx_chat_redis_register_lua[] =
    "local old = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if old == ARGV[2] then return 0 end "
    "if old and ARGV[3] == 'restore' then return 0 end "
    "local kick = old "
    "if old and tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') "
    "           > tonumber(ARGV[4]) then "
    "  kick = ARGV[2] "
    "else "
    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
    "  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) "
    "end "
    "if kick then "
    "  local sp = string.find(kick, ' ', 1, true) "
    "  if sp then "
    "    redis.call('PUBLISH', 'chat:node:' .. string.sub(kick, 1, sp - 1), "
    "                'K ' .. string.sub(kick, sp + 1) .. ' 0\\n') "
    "  end "
    "elseif redis.call('HLEN', KEYS[1]) == 1 then "
    "  redis.call('HDEL', KEYS[2], 'away') "
    "  redis.call('PUBLISH', 'chat:presence', "
    "              string.sub(KEYS[1], 11) .. ' online -') "
    "end "
    "return 1";

/* the last device gone: offline, seen now */
static char  ngx_chat_redis_unregister_lua[] =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
    "  redis.call('HDEL', KEYS[1], ARGV[1]) "
    "  redis.call('HDEL', KEYS[3], ARGV[1]) "
    "  if redis.call('HLEN', KEYS[1]) == 0 then "
    "    local t = redis.call('TIME') "
    "    local ms = t[1] * 1000 + math.floor(t[2] / 1000) "
    "    redis.call('HSET', KEYS[2], 'last_seen', ms) "
    "    redis.call('PUBLISH', 'chat:presence', "
    "                string.sub(KEYS[1], 11) .. ' offline ' .. ms) "
    "  end "
    "end "
    "return 0";


static ngx_chat_main_conf_t   *ngx_chat_redis_conf;
static ngx_event_t             ngx_chat_redis_ping;
static ngx_uint_t              ngx_chat_redis_ping_pending;
static ngx_chat_redis_link_t   ngx_chat_redis_cmd = {
    NULL, NULL, { 0 }, 0, "commands", ngx_chat_redis_cmd_ready, 0
};
static ngx_chat_redis_link_t   ngx_chat_redis_sub = {
    NULL, NULL, { 0 }, 0, "subscription", ngx_chat_redis_sub_ready, 0
};


ngx_int_t
ngx_chat_redis_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf)
{
    ngx_chat_redis_link_t  *links[2];
    ngx_uint_t              i;

    ngx_chat_redis_conf = mcf;

    links[0] = &ngx_chat_redis_cmd;
    links[1] = &ngx_chat_redis_sub;

    for (i = 0; i < 2; i++) {
        links[i]->reconnect.handler = ngx_chat_redis_reconnect_handler;
        links[i]->reconnect.data = links[i];
        links[i]->reconnect.log = cycle->log;
        links[i]->reconnect.cancelable = 1;
        links[i]->backoff = NGX_CHAT_REDIS_BACKOFF_MIN;

        ngx_chat_redis_connect(links[i]);
    }

    ngx_chat_redis_ping.handler = ngx_chat_redis_ping_handler;
    ngx_chat_redis_ping.log = cycle->log;
    ngx_chat_redis_ping.cancelable = 1;
    ngx_add_timer(&ngx_chat_redis_ping, NGX_CHAT_REDIS_PING_INTERVAL);

    return NGX_OK;
}


/*
 * hiredis has no timeouts: a Redis that hangs without closing its sockets
 * would stall deliveries for good. A PING unanswered for a whole interval
 * drops both links, and the usual reconnect takes over.
 */

static void
ngx_chat_redis_ping_handler(ngx_event_t *ev)
{
    if (ngx_chat_redis_ping_pending && ngx_chat_redis_cmd.ac) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "chat: redis did not answer a ping in %d ms, "
                      "reconnecting", NGX_CHAT_REDIS_PING_INTERVAL);

        ngx_chat_redis_ping_pending = 0;

        /* not redisAsyncDisconnect(): it would wait for the replies */

        redisAsyncFree(ngx_chat_redis_cmd.ac);

        if (ngx_chat_redis_sub.ac) {
            redisAsyncFree(ngx_chat_redis_sub.ac);
        }

    } else if (ngx_chat_redis_cmd.connected) {
        if (redisAsyncCommand(ngx_chat_redis_cmd.ac, ngx_chat_redis_pong,
                              NULL, "PING")
            == REDIS_OK)
        {
            ngx_chat_redis_ping_pending = 1;
        }
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_CHAT_REDIS_PING_INTERVAL);
    }
}


static void
ngx_chat_redis_pong(redisAsyncContext *ac, void *reply, void *data)
{
    ngx_chat_redis_ping_pending = 0;
}


void
ngx_chat_redis_exit(ngx_cycle_t *cycle)
{
    ngx_chat_redis_link_t  *links[2];
    ngx_uint_t              i;

    links[0] = &ngx_chat_redis_cmd;
    links[1] = &ngx_chat_redis_sub;

    if (ngx_chat_redis_ping.timer_set) {
        ngx_del_timer(&ngx_chat_redis_ping);
    }

    for (i = 0; i < 2; i++) {
        if (links[i]->reconnect.timer_set) {
            ngx_del_timer(&links[i]->reconnect);
        }

        if (links[i]->ac) {
            /* no reconnect from the disconnect callback */
            links[i]->reconnect.log = NULL;
            redisAsyncFree(links[i]->ac);
            links[i]->ac = NULL;
        }
    }
}


void
ngx_chat_redis_register(ngx_chat_session_t *s)
{
    s->registered = 1;
    ngx_chat_redis_set(s, "replace");
}


void
ngx_chat_redis_unregister(ngx_chat_session_t *s)
{
    if (!s->registered) {
        return;
    }

    s->registered = 0;

    ngx_chat_redis_session_eval(s, ngx_chat_redis_unregister_lua,
                                sizeof(ngx_chat_redis_unregister_lua) - 1,
                                NULL);
}


static void
ngx_chat_redis_set(ngx_chat_session_t *s, char *mode)
{
    /* registered by ngx_chat_redis_cmd_ready() when Redis is back */

    ngx_chat_redis_session_eval(s, ngx_chat_redis_register_lua,
                                sizeof(ngx_chat_redis_register_lua) - 1,
                                mode);
}


/*
 * EVAL script 3 chat:sess:<user> chat:pres:<user> chat:since:<user>
 * <device> "<node> <sid>" [mode since]
 */

static void
ngx_chat_redis_session_eval(ngx_chat_session_t *s, char *script, size_t len,
    char *mode)
{
    u_char        key[sizeof("chat:sess:") + NGX_CHAT_WIRE_ID_MAX];
    u_char        pres[sizeof("chat:pres:") + NGX_CHAT_WIRE_ID_MAX];
    u_char        since_key[sizeof("chat:since:") + NGX_CHAT_WIRE_ID_MAX];
    u_char        value[NGX_CHAT_WIRE_NODE_MAX + 1 + NGX_CHAT_WIRE_SID_LEN];
    u_char        since[NGX_INT64_LEN];
    const char   *argv[10];
    size_t        argvlen[10];

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = script;
    argvlen[1] = len;
    argv[2] = "3";
    argvlen[2] = 1;
    argv[3] = (char *) key;
    argvlen[3] = ngx_sprintf(key, "chat:sess:%V", &s->user) - key;
    argv[4] = (char *) pres;
    argvlen[4] = ngx_sprintf(pres, "chat:pres:%V", &s->user) - pres;
    argv[5] = (char *) since_key;
    argvlen[5] = ngx_sprintf(since_key, "chat:since:%V", &s->user)
                 - since_key;
    argv[6] = (char *) s->device.data;
    argvlen[6] = s->device.len;
    argv[7] = (char *) value;
    argvlen[7] = ngx_sprintf(value, "%V %*s", &ngx_chat_worker.node,
                             (size_t) NGX_CHAT_WIRE_SID_LEN, s->sid)
                 - value;
    argv[8] = mode;
    argvlen[8] = mode ? ngx_strlen(mode) : 0;
    argv[9] = (char *) since;
    argvlen[9] = ngx_sprintf(since, "%L", s->since) - since;

    (void) ngx_chat_redis_command(NULL, NULL, mode ? 10 : 8, argv, argvlen);
}


/* a command on the commands link: NGX_ERROR while Redis is away */

ngx_int_t
ngx_chat_redis_command(void *callback, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    if (!ngx_chat_redis_cmd.connected) {
        return NGX_ERROR;
    }

    if (redisAsyncCommandArgv(ngx_chat_redis_cmd.ac,
                              (redisCallbackFn *) callback, data, argc,
                              argv, argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_chat_redis_connect(ngx_chat_redis_link_t *link)
{
    redisAsyncContext  *ac;

    ac = redisAsyncConnect((char *) ngx_chat_redis_conf->redis_host.data,
                           ngx_chat_redis_conf->redis_port);

    if (ac == NULL || ac->err) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: redis %s connect to %V:%d failed: %s",
                      link->name, &ngx_chat_redis_conf->redis_host,
                      (int) ngx_chat_redis_conf->redis_port,
                      ac ? ac->errstr : "out of memory");
        if (ac) {
            redisAsyncFree(ac);
        }

        ngx_chat_redis_schedule(link);
        return;
    }

    ac->data = link;
    link->ac = ac;

    if (ngx_chat_redis_attach(link) != NGX_OK) {
        redisAsyncFree(ac);
        link->ac = NULL;
        ngx_chat_redis_schedule(link);
        return;
    }

    redisAsyncSetConnectCallback(ac, ngx_chat_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_chat_redis_disconnected);

    /* hiredis learns that the connect finished on the first write event */
    ngx_chat_redis_add_write(link);
}


static void
ngx_chat_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_chat_redis_link_t  *link = ac->data;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: redis %s connect failed: %s",
                      link->name, ac->errstr);
        /* hiredis frees the context after this callback */
        link->ac = NULL;
        link->connected = 0;
        ngx_chat_redis_schedule(link);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "chat: redis %s connected", link->name);

    link->connected = 1;
    link->backoff = NGX_CHAT_REDIS_BACKOFF_MIN;
    link->ready();
}


static void
ngx_chat_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_chat_redis_link_t  *link = ac->data;

    link->ac = NULL;
    link->connected = 0;

    if (link->reconnect.log == NULL) {
        return;         /* exiting */
    }

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "chat: redis %s connection lost: %s", link->name,
                  status == REDIS_OK ? "closed" : ac->errstr);

    ngx_chat_redis_schedule(link);
}


static void
ngx_chat_redis_schedule(ngx_chat_redis_link_t *link)
{
    ngx_msec_t  delay;

    if (link->reconnect.timer_set || ngx_exiting || ngx_terminate
        || link->reconnect.log == NULL)
    {
        return;
    }

    /* jitter keeps a fleet of workers from reconnecting in lockstep */
    delay = link->backoff / 2 + ngx_random() % (link->backoff / 2 + 1);

    link->backoff = ngx_min(link->backoff * 2, NGX_CHAT_REDIS_BACKOFF_MAX);

    ngx_add_timer(&link->reconnect, delay);
}


static void
ngx_chat_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_chat_redis_link_t  *link = ev->data;

    if (link->ac == NULL) {
        ngx_chat_redis_connect(link);
    }
}


static void
ngx_chat_redis_cmd_ready(void)
{
    ngx_rbtree_node_t   *node, *root, *sentinel;
    ngx_chat_session_t  *s;

    root = ngx_chat_worker.sessions.root;
    sentinel = ngx_chat_worker.sessions.sentinel;

    if (root == sentinel) {
        return;
    }

    /* Redis may have lost every key: register the local sessions again */

    for (node = ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&ngx_chat_worker.sessions, node))
    {
        s = (ngx_chat_session_t *) node;

        if (s->registered) {
            ngx_chat_redis_set(s, "restore");
        }
    }
}


static void
ngx_chat_redis_sub_ready(void)
{
    const char  *argv[3];
    size_t       argvlen[3];

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = (char *) ngx_chat_worker.channel.data;
    argvlen[1] = ngx_chat_worker.channel.len;
    argv[2] = "chat:presence";
    argvlen[2] = sizeof("chat:presence") - 1;

    (void) redisAsyncCommandArgv(ngx_chat_redis_sub.ac,
                                 ngx_chat_redis_message, NULL, 3, argv,
                                 argvlen);
}


static void
ngx_chat_redis_message(redisAsyncContext *ac, void *reply, void *data)
{
    redisReply  *r = reply;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3
        || r->element[0]->type != REDIS_REPLY_STRING
        || r->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (ngx_strcmp(r->element[0]->str, "message") != 0) {
        return;
    }

    if (r->element[1]->type == REDIS_REPLY_STRING
        && r->element[1]->len == sizeof("chat:presence") - 1
        && ngx_strncmp(r->element[1]->str, "chat:presence",
                       sizeof("chat:presence") - 1) == 0)
    {
        ngx_chat_presence_event((u_char *) r->element[2]->str,
                                r->element[2]->len);
        return;
    }

    ngx_chat_redis_dispatch((u_char *) r->element[2]->str,
                            (u_char *) r->element[2]->str
                            + r->element[2]->len);
}


/*
 * Records "<T> <sid>[,<sid>...] <len>\n<len bytes>": F writes the bytes as
 * a text frame to each session, K closes each session as replaced.
 */

static void
ngx_chat_redis_dispatch(u_char *p, u_char *last)
{
    int                      rc;
    const char              *pos, *sids, *sids_end, *sid;
    ngx_chat_session_t      *s;
    ngx_chat_wire_record_t   rec;

    pos = (const char *) p;

    while ((rc = ngx_chat_wire_record_next(&pos, (const char *) last, &rec))
           == 1)
    {
        sids = rec.args;
        sids_end = rec.args + rec.args_len;

        while ((rc = ngx_chat_wire_sids_next(&sids, sids_end, &sid)) == 1) {

            s = ngx_chat_session_find((u_char *) sid, NGX_CHAT_WIRE_SID_LEN);
            if (s == NULL) {
                continue;
            }

            if (rec.type == NGX_CHAT_WIRE_RECORD_FRAME) {
                (void) ngx_chat_session_send_text(s, (u_char *) rec.body,
                                                  rec.body_len);

            } else if (rec.type == NGX_CHAT_WIRE_RECORD_KICK) {
                s->registered = 0;    /* the newer one owns the key now */
                ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_REPLACED,
                                       "replaced by a newer connection");
            }
        }

        if (rc == -1) {
            break;
        }
    }

    if (rc == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: invalid delivery payload from redis");
    }
}


/* the adapter: hiredis asks for read and write interest, nginx delivers */

static ngx_int_t
ngx_chat_redis_attach(ngx_chat_redis_link_t *link)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    ac = link->ac;

    if (ac->ev.data != NULL) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, ngx_cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = link;
    c->read->handler = ngx_chat_redis_event_handler;
    c->write->handler = ngx_chat_redis_event_handler;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;

    link->conn = c;

    ac->ev.addRead = ngx_chat_redis_add_read;
    ac->ev.delRead = ngx_chat_redis_del_read;
    ac->ev.addWrite = ngx_chat_redis_add_write;
    ac->ev.delWrite = ngx_chat_redis_del_write;
    ac->ev.cleanup = ngx_chat_redis_cleanup;
    ac->ev.data = link;

    return NGX_OK;
}


static void
ngx_chat_redis_event_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c = ev->data;
    ngx_chat_redis_link_t  *link = c->data;

    if (link->ac == NULL) {
        return;
    }

    /* either call may free the context and this connection */

    if (ev->write) {
        redisAsyncHandleWrite(link->ac);

    } else {
        redisAsyncHandleRead(link->ac);
    }
}


static void
ngx_chat_redis_add_read(void *data)
{
    ngx_chat_redis_link_t  *link = data;

    if (!link->conn->read->active) {
        (void) ngx_add_event(link->conn->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_chat_redis_del_read(void *data)
{
    ngx_chat_redis_link_t  *link = data;

    if (link->conn->read->active) {
        (void) ngx_del_event(link->conn->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_chat_redis_add_write(void *data)
{
    ngx_chat_redis_link_t  *link = data;

    if (!link->conn->write->active) {
        (void) ngx_add_event(link->conn->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_chat_redis_del_write(void *data)
{
    ngx_chat_redis_link_t  *link = data;

    if (link->conn->write->active) {
        (void) ngx_del_event(link->conn->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_chat_redis_cleanup(void *data)
{
    ngx_chat_redis_link_t  *link = data;
    ngx_connection_t       *c;

    c = link->conn;
    if (c == NULL) {
        return;
    }

    ngx_chat_redis_del_read(link);
    ngx_chat_redis_del_write(link);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* hiredis closes the socket itself */
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    link->conn = NULL;
}
