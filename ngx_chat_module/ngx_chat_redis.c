
/*
 * The Redis links of one nginx worker process: a command link and a
 * subscription link, each reconnected with backoff and jitter, a ping that
 * drops both when Redis hangs without closing them, and Lua scripts called
 * by SHA1 (loaded again when Redis answers NOSCRIPT, as after a restart).
 *
 * Nothing here knows what the messages mean: subscribed messages and the
 * command link coming back go to the handlers given at init. Nothing here
 * blocks: a Redis that is down only delays what goes through it.
 */


#include "ngx_chat.h"

#include <ngx_sha1.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NGX_CHAT_REDIS_BACKOFF_MIN   100
#define NGX_CHAT_REDIS_BACKOFF_MAX   5000
#define NGX_CHAT_REDIS_PING_INTERVAL 5000
#define NGX_CHAT_REDIS_CHANNELS_PER_COMMAND  512


typedef struct {
    redisAsyncContext         *ac;
    ngx_event_t                reconnect;
    ngx_msec_t                 backoff;
    char                      *name;
    void                     (*ready)(void);
    ngx_uint_t                 metrics;     /* NGX_CHAT_REDIS_COMMANDS ... */
    unsigned                   connected:1;
} ngx_chat_redis_link_t;


/* a command in flight whose reply someone waits for */
typedef struct {
    ngx_chat_redis_reply_pt    callback;
    void                      *data;
} ngx_chat_redis_pending_t;


/* an EVALSHA in flight: its arguments, kept for an EVAL after NOSCRIPT */
typedef struct {
    ngx_chat_redis_script_t   *script;
    ngx_chat_redis_reply_pt    callback;
    void                      *data;
    int                        argc;       /* with the command and script */
    const char               **argv;
    size_t                    *argvlen;
    unsigned                   evaluated:1;
} ngx_chat_redis_call_t;


static void ngx_chat_redis_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_chat_redis_schedule(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_chat_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_chat_redis_ping_handler(ngx_event_t *ev);
static void ngx_chat_redis_pong(redisAsyncContext *ac, void *reply,
    void *data);
static void ngx_chat_redis_cmd_ready(void);
static void ngx_chat_redis_sub_ready(void);
static void ngx_chat_redis_message(redisAsyncContext *ac, void *reply,
    void *data);
static ngx_int_t ngx_chat_redis_channel_command(const char *command,
    redisCallbackFn *fn, ngx_str_t *channels, ngx_uint_t n);
static void ngx_chat_redis_reply(redisAsyncContext *ac, void *reply,
    void *data);
static void ngx_chat_redis_evaluated(redisAsyncContext *ac, void *reply,
    void *data);


static ngx_chat_main_conf_t             *ngx_chat_redis_conf;
static const ngx_chat_redis_handlers_t  *ngx_chat_redis_handlers;
static ngx_str_t                        *ngx_chat_redis_channels;
static ngx_uint_t                        ngx_chat_redis_nchannels;
static ngx_event_t                       ngx_chat_redis_ping;
static ngx_uint_t                        ngx_chat_redis_ping_pending;

static ngx_chat_redis_link_t  ngx_chat_redis_cmd = {
    NULL, { 0 }, 0, "commands", ngx_chat_redis_cmd_ready,
    NGX_CHAT_REDIS_COMMANDS, 0
};

static ngx_chat_redis_link_t  ngx_chat_redis_sub = {
    NULL, { 0 }, 0, "subscription", ngx_chat_redis_sub_ready,
    NGX_CHAT_REDIS_SUBSCRIPTION, 0
};


ngx_int_t
ngx_chat_redis_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf,
    ngx_str_t *channels, ngx_uint_t nchannels,
    const ngx_chat_redis_handlers_t *handlers)
{
    ngx_uint_t              i;
    ngx_chat_redis_link_t  *links[2];

    ngx_chat_redis_conf = mcf;
    ngx_chat_redis_handlers = handlers;
    ngx_chat_redis_channels = channels;
    ngx_chat_redis_nchannels = nchannels;

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


void
ngx_chat_redis_exit(ngx_cycle_t *cycle)
{
    ngx_uint_t              i;
    ngx_chat_redis_link_t  *links[2];

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

    if (ngx_chat_redis_attach(ac, ngx_cycle->log) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_chat_redis_schedule(link);
        return;
    }

    ac->data = link;
    link->ac = ac;

    redisAsyncSetConnectCallback(ac, ngx_chat_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_chat_redis_disconnected);

    /* hiredis learns that the connect finished on the first write event */
    ac->ev.addWrite(ac->ev.data);
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
    ngx_chat_stats->redis_up[link->metrics] = 1;
    link->ready();
}


static void
ngx_chat_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_chat_redis_link_t  *link = ac->data;

    link->ac = NULL;
    link->connected = 0;
    ngx_chat_stats->redis_up[link->metrics] = 0;

    if (link->reconnect.log == NULL) {
        return;         /* exiting */
    }

    ngx_chat_stats->redis_reconnects[link->metrics]++;

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
    ngx_chat_redis_handlers->commands_ready();
}


static void
ngx_chat_redis_sub_ready(void)
{
    if (ngx_chat_redis_subscribe(ngx_chat_redis_channels,
                                 ngx_chat_redis_nchannels)
        != NGX_OK)
    {
        redisAsyncDisconnect(ngx_chat_redis_sub.ac);
        return;
    }

    ngx_chat_redis_handlers->subscription_ready();
}


ngx_int_t
ngx_chat_redis_subscribe(ngx_str_t *channels, ngx_uint_t n)
{
    return ngx_chat_redis_channel_command("SUBSCRIBE", ngx_chat_redis_message,
                                          channels, n);
}


void
ngx_chat_redis_unsubscribe(ngx_str_t *channels, ngx_uint_t n)
{
    (void) ngx_chat_redis_channel_command("UNSUBSCRIBE", NULL, channels, n);
}


/* one (UN)SUBSCRIBE for many channels, in commands of a bounded size */

static ngx_int_t
ngx_chat_redis_channel_command(const char *command, redisCallbackFn *fn,
    ngx_str_t *channels, ngx_uint_t n)
{
    ngx_uint_t    i, k, batch;
    const char  **argv;
    size_t       *argvlen;

    if (!ngx_chat_redis_sub.connected) {
        return NGX_ERROR;
    }

    batch = ngx_min(n, NGX_CHAT_REDIS_CHANNELS_PER_COMMAND);

    argv = ngx_alloc((batch + 1) * (sizeof(char *) + sizeof(size_t)),
                     ngx_cycle->log);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + batch + 1);

    argv[0] = command;
    argvlen[0] = ngx_strlen(command);

    for (i = 0; i < n; i += k) {
        for (k = 0; k < batch && i + k < n; k++) {
            argv[k + 1] = (char *) channels[i + k].data;
            argvlen[k + 1] = channels[i + k].len;
        }

        if (redisAsyncCommandArgv(ngx_chat_redis_sub.ac, fn, NULL,
                                  (int) k + 1, argv, argvlen)
            != REDIS_OK)
        {
            ngx_free(argv);
            return NGX_ERROR;
        }
    }

    ngx_free(argv);

    return NGX_OK;
}


static void
ngx_chat_redis_message(redisAsyncContext *ac, void *reply, void *data)
{
    redisReply  *r = reply, *kind;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3
        || r->element[0]->type != REDIS_REPLY_STRING
        || r->element[1]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind = r->element[0];

    if (kind->len == sizeof("message") - 1
        && ngx_strncmp(kind->str, "message", kind->len) == 0
        && r->element[2]->type == REDIS_REPLY_STRING)
    {
        ngx_chat_redis_handlers->message((u_char *) r->element[1]->str,
                                         r->element[1]->len,
                                         (u_char *) r->element[2]->str,
                                         r->element[2]->len);
        return;
    }

    if (kind->len == sizeof("subscribe") - 1
        && ngx_strncmp(kind->str, "subscribe", kind->len) == 0)
    {
        ngx_chat_redis_handlers->subscribed((u_char *) r->element[1]->str,
                                            r->element[1]->len);
    }
}


ngx_int_t
ngx_chat_redis_command(ngx_chat_redis_reply_pt callback, void *data,
    int argc, const char **argv, const size_t *argvlen)
{
    ngx_chat_redis_pending_t  *pending;

    if (!ngx_chat_redis_cmd.connected) {
        return NGX_ERROR;
    }

    pending = NULL;

    if (callback) {
        pending = ngx_alloc(sizeof(ngx_chat_redis_pending_t), ngx_cycle->log);
        if (pending == NULL) {
            return NGX_ERROR;
        }

        pending->callback = callback;
        pending->data = data;
    }

    if (redisAsyncCommandArgv(ngx_chat_redis_cmd.ac,
                              pending ? ngx_chat_redis_reply : NULL,
                              pending, argc, argv, argvlen)
        != REDIS_OK)
    {
        ngx_free(pending);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_chat_redis_reply(redisAsyncContext *ac, void *reply, void *data)
{
    ngx_chat_redis_pending_t  *pending = data;

    pending->callback(reply, pending->data);
    ngx_free(pending);
}


void
ngx_chat_redis_script_init(ngx_chat_redis_script_t *script, const char *text)
{
    u_char      hash[20];
    ngx_sha1_t  sha1;

    script->text = text;
    script->len = ngx_strlen(text);

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, text, script->len);
    ngx_sha1_final(hash, &sha1);

    ngx_hex_dump((u_char *) script->sha1, hash, 20);
}


ngx_int_t
ngx_chat_redis_eval(ngx_chat_redis_script_t *script,
    ngx_chat_redis_reply_pt callback, void *data, int nkeys, int argc,
    const char **argv, const size_t *argvlen)
{
    u_char                 *p;
    size_t                  size;
    ngx_int_t               i, n;
    ngx_chat_redis_call_t  *call;

    if (!ngx_chat_redis_cmd.connected) {
        return NGX_ERROR;
    }

    /* one block: the call, the argument vectors, the argument bytes */

    n = argc + 3;
    size = sizeof(ngx_chat_redis_call_t) + n * (sizeof(char *) + sizeof(size_t))
           + NGX_INT_T_LEN;

    for (i = 0; i < argc; i++) {
        size += argvlen[i];
    }

    call = ngx_alloc(size, ngx_cycle->log);
    if (call == NULL) {
        return NGX_ERROR;
    }

    call->script = script;
    call->callback = callback;
    call->data = data;
    call->argc = (int) n;
    call->argv = (const char **) (call + 1);
    call->argvlen = (size_t *) (call->argv + n);
    call->evaluated = 0;

    p = (u_char *) (call->argvlen + n);

    call->argv[0] = "EVALSHA";
    call->argvlen[0] = sizeof("EVALSHA") - 1;
    call->argv[1] = script->sha1;
    call->argvlen[1] = 40;
    call->argv[2] = (char *) p;
    call->argvlen[2] = ngx_sprintf(p, "%d", nkeys) - p;
    p += call->argvlen[2];

    for (i = 0; i < argc; i++) {
        call->argv[i + 3] = (char *) p;
        call->argvlen[i + 3] = argvlen[i];
        p = ngx_cpymem(p, argv[i], argvlen[i]);
    }

    if (redisAsyncCommandArgv(ngx_chat_redis_cmd.ac, ngx_chat_redis_evaluated,
                              call, call->argc, call->argv, call->argvlen)
        != REDIS_OK)
    {
        ngx_free(call);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_chat_redis_evaluated(redisAsyncContext *ac, void *reply, void *data)
{
    ngx_chat_redis_call_t  *call = data;

    redisReply  *r = reply;

    if (r && r->type == REDIS_REPLY_ERROR && !call->evaluated
        && r->len >= sizeof("NOSCRIPT") - 1
        && ngx_strncmp(r->str, "NOSCRIPT", sizeof("NOSCRIPT") - 1) == 0)
    {
        /* Redis lost its scripts: EVAL loads it again for the next calls */

        call->evaluated = 1;
        call->argv[0] = "EVAL";
        call->argvlen[0] = sizeof("EVAL") - 1;
        call->argv[1] = call->script->text;
        call->argvlen[1] = call->script->len;

        if (redisAsyncCommandArgv(ac, ngx_chat_redis_evaluated, call,
                                  call->argc, call->argv, call->argvlen)
            == REDIS_OK)
        {
            return;
        }

        r = NULL;
    }

    if (call->callback) {
        call->callback(r, call->data);
    }

    ngx_free(call);
}
