
/*
 * Presence: online / away / offline with last seen, served by nginx and
 * Redis alone (no store of record is involved: presence is ephemeral).
 *
 * Redis holds the truth: a user is online while its sessions key has a
 * device (the registry's scripts publish the edges on the user's presence
 * channel), away when its presence key says so, and offline otherwise with
 * the presence key's last_seen. Each nginx worker process keeps the table
 * of its own sessions' subscriptions, user -> sessions, subscribes to the
 * channels of the users in it (and only those: an event reaches only the
 * processes that have a watcher), and hands each event to the local
 * watchers of that user.
 *
 * A watcher's first answer is read from Redis after its subscription is
 * confirmed, so no change falls between the two.
 */


#include "ngx_chat.h"
#include "ngx_chat_lua.h"
#include "ngx_chat_proto.h"

#include <jansson.h>
#include <hiredis/hiredis.h>


#define NGX_CHAT_PRESENCE_MAX_WATCH  1000


typedef struct {
    ngx_rbtree_node_t          node;        /* key: crc32 of the user id */
    ngx_str_t                  user;
    ngx_str_t                  channel;
    ngx_chat_session_t       **subs;
    ngx_uint_t                 nsubs;
    ngx_uint_t                 nalloc;
    unsigned                   subscribed:1;
} ngx_chat_presence_watch_t;


/*
 * what a presence query and its reply need (the session may be gone by
 * then), and how many subscriptions must be confirmed before it is asked
 */
typedef struct {
    ngx_queue_t                queue;
    uint64_t                   sid;
    json_t                    *ids;
    uint64_t                   after;
} ngx_chat_presence_query_t;


static ngx_chat_presence_watch_t *ngx_chat_presence_find(u_char *user,
    size_t len, ngx_uint_t create);
static ngx_int_t ngx_chat_presence_watch(ngx_chat_session_t *s,
    ngx_chat_presence_watch_t *w);
static void ngx_chat_presence_unwatch(ngx_chat_session_t *s,
    ngx_chat_presence_watch_t *w);
static ngx_int_t ngx_chat_presence_query(ngx_chat_session_t *s,
    json_t *ids);
static ngx_int_t ngx_chat_presence_ask(ngx_chat_presence_query_t *q);
static void ngx_chat_presence_run_waiting(void);
static ngx_int_t ngx_chat_presence_subscribe(ngx_chat_presence_watch_t **ws,
    ngx_uint_t n);
static void ngx_chat_presence_answer(void *reply, void *data);
static void ngx_chat_presence_send(ngx_chat_session_t *s, u_char *user,
    size_t user_len, u_char *status, size_t status_len, u_char *last_seen,
    size_t last_seen_len);


static ngx_rbtree_t             ngx_chat_presence_tree;
static ngx_rbtree_node_t        ngx_chat_presence_sentinel;
static ngx_chat_redis_script_t  ngx_chat_presence_query_script;
static ngx_chat_redis_script_t  ngx_chat_presence_set_script;

/* subscriptions asked for and confirmed on the current subscription link,
 * and the queries waiting for theirs */
static uint64_t                 ngx_chat_presence_asked;
static uint64_t                 ngx_chat_presence_confirmed;
static ngx_queue_t              ngx_chat_presence_waiting;


ngx_int_t
ngx_chat_presence_init(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_chat_presence_tree, &ngx_chat_presence_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&ngx_chat_presence_waiting);

    ngx_chat_redis_script_init(&ngx_chat_presence_query_script,
                               ngx_chat_lua_presence_query);
    ngx_chat_redis_script_init(&ngx_chat_presence_set_script,
                               ngx_chat_lua_presence_set);

    return NGX_OK;
}


void
ngx_chat_presence_request(ngx_chat_session_t *s,
    struct ngx_chat_proto_result_s *res)
{
    size_t                      i, n;
    json_t                     *id;
    char                        sess[NGX_CHAT_WIRE_KEY_MAX];
    char                        pres[NGX_CHAT_WIRE_KEY_MAX];
    char                        event[NGX_CHAT_WIRE_PRESENCE_MAX];
    char                        channel[NGX_CHAT_WIRE_KEY_MAX];
    const char                 *argv[5];
    size_t                      argvlen[5];
    ngx_chat_presence_watch_t  *w;

    n = json_array_size(res->presence_ids);

    switch (res->presence) {

    case NGX_CHAT_PROTO_PRESENCE_SUBSCRIBE:

        if ((s->extra ? s->extra->nwatching : 0) + n
            > NGX_CHAT_PRESENCE_MAX_WATCH)
        {
            ngx_chat_proto_set_error(res, "too_large",
                                     "more than 1000 users watched");
            return;
        }

        for (i = 0; i < n; i++) {
            id = json_array_get(res->presence_ids, i);
            w = ngx_chat_presence_find((u_char *) json_string_value(id),
                                       json_string_length(id), 1);

            if (w == NULL || ngx_chat_presence_watch(s, w) != NGX_OK) {
                ngx_chat_proto_set_error(res, "internal", "out of memory");
                return;
            }
        }

        if (ngx_chat_presence_query(s, res->presence_ids) != NGX_OK) {
            ngx_chat_proto_set_error(res, "unavailable",
                                     "presence is unavailable: retry later");
        }

        return;

    case NGX_CHAT_PROTO_PRESENCE_UNSUBSCRIBE:

        for (i = 0; i < n; i++) {
            id = json_array_get(res->presence_ids, i);
            w = ngx_chat_presence_find((u_char *) json_string_value(id),
                                       json_string_length(id), 0);
            if (w) {
                ngx_chat_presence_unwatch(s, w);
            }
        }

        return;

    default: /* NGX_CHAT_PROTO_PRESENCE_SET */

        argv[0] = sess;
        argvlen[0] = ngx_chat_wire_key(sess, NGX_CHAT_WIRE_KEY_SESS,
                                       (char *) ngx_chat_session_user(s)->data, s->user_len);
        argv[1] = pres;
        argvlen[1] = ngx_chat_wire_key(pres, NGX_CHAT_WIRE_KEY_PRES,
                                       (char *) ngx_chat_session_user(s)->data, s->user_len);
        argv[2] = channel;
        argvlen[2] = ngx_chat_wire_key(channel,
                                       NGX_CHAT_WIRE_CHANNEL_PRESENCE,
                                       (char *) ngx_chat_session_user(s)->data, s->user_len);
        argv[3] = res->presence_status;
        argvlen[3] = ngx_strlen(res->presence_status);
        argv[4] = event;
        argvlen[4] = ngx_chat_wire_presence_event(event,
                                                  (char *) ngx_chat_session_user(s)->data,
                                                  s->user_len,
                                                  res->presence_status, -1);

        if (ngx_chat_redis_eval(&ngx_chat_presence_set_script, NULL, NULL, 3,
                                5, argv, argvlen)
            != NGX_OK)
        {
            ngx_chat_proto_set_error(res, "unavailable",
                                     "presence is unavailable: retry later");
        }

        return;
    }
}


/* an event of the presence channel (ngx_chat_wire.h) */

void
ngx_chat_presence_event(const u_char *p, size_t len)
{
    u_char                      last_seen[NGX_INT64_LEN];
    size_t                      last_seen_len;
    ngx_uint_t                  i;
    ngx_chat_wire_presence_t    ev;
    ngx_chat_presence_watch_t  *w;

    if (!ngx_chat_wire_presence_parse((const char *) p, len, &ev)) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: invalid presence event from redis");
        return;
    }

    ngx_chat_stats->presence_events++;

    w = ngx_chat_presence_find((u_char *) ev.user, ev.user_len, 0);
    if (w == NULL) {
        return;
    }

    if (ev.last_seen < 0) {
        last_seen[0] = '-';
        last_seen_len = 1;

    } else {
        last_seen_len = ngx_sprintf(last_seen, "%L", ev.last_seen)
                        - last_seen;
    }

    for (i = 0; i < w->nsubs; i++) {
        ngx_chat_presence_send(w->subs[i], (u_char *) ev.user, ev.user_len,
                               (u_char *) ev.status, ev.status_len,
                               last_seen, last_seen_len);
    }
}


void
ngx_chat_presence_drop(ngx_chat_session_t *s)
{
    ngx_chat_session_extra_t  *x;

    x = s->extra;
    if (x == NULL) {
        return;
    }

    while (x->nwatching) {
        ngx_chat_presence_unwatch(s, x->watching[x->nwatching - 1]);
    }

    if (x->watching) {
        ngx_free(x->watching);
        x->watching = NULL;
        x->nwatching_alloc = 0;
    }
}


static ngx_chat_presence_watch_t *
ngx_chat_presence_find(u_char *user, size_t len, ngx_uint_t create)
{
    uint32_t                    hash;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_chat_presence_watch_t  *w;

    hash = ngx_crc32_short(user, len);

    node = ngx_chat_presence_tree.root;
    sentinel = ngx_chat_presence_tree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = hash < node->key ? node->left : node->right;
            continue;
        }

        w = (ngx_chat_presence_watch_t *) node;

        if (w->user.len == len && ngx_memcmp(w->user.data, user, len) == 0)
        {
            return w;
        }

        /* a crc32 collision: equal keys go right on insert */
        node = node->right;
    }

    if (!create) {
        return NULL;
    }

    w = ngx_alloc(sizeof(ngx_chat_presence_watch_t)
                  + sizeof(NGX_CHAT_WIRE_CHANNEL_PRESENCE) + len,
                  ngx_cycle->log);
    if (w == NULL) {
        return NULL;
    }

    ngx_memzero(w, sizeof(ngx_chat_presence_watch_t));
    w->node.key = hash;

    /* the channel, whose tail is the user id */
    w->channel.data = (u_char *) w + sizeof(ngx_chat_presence_watch_t);
    w->channel.len = ngx_sprintf(w->channel.data, "%s%*s",
                                 NGX_CHAT_WIRE_CHANNEL_PRESENCE, len, user)
                     - w->channel.data;
    w->user.data = w->channel.data + w->channel.len - len;
    w->user.len = len;

    ngx_rbtree_insert(&ngx_chat_presence_tree, &w->node);

    return w;
}


static ngx_int_t
ngx_chat_presence_watch(ngx_chat_session_t *s, ngx_chat_presence_watch_t *w)
{
    void                      *p;
    ngx_uint_t                 i, size;
    ngx_chat_session_extra_t  *x;

    x = ngx_chat_session_extra(s);
    if (x == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < x->nwatching; i++) {
        if (x->watching[i] == w) {
            return NGX_OK;
        }
    }

    if (w->nsubs == w->nalloc) {
        size = w->nalloc ? 2 * w->nalloc : 4;
        p = ngx_alloc(size * sizeof(ngx_chat_session_t *), ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (w->subs) {
            ngx_memcpy(p, w->subs, w->nsubs * sizeof(ngx_chat_session_t *));
            ngx_free(w->subs);
        }

        w->subs = p;
        w->nalloc = size;
    }

    if (x->nwatching == x->nwatching_alloc) {
        size = x->nwatching_alloc ? 2 * x->nwatching_alloc : 4;
        p = ngx_alloc(size * sizeof(void *), ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (x->watching) {
            ngx_memcpy(p, x->watching, x->nwatching * sizeof(void *));
            ngx_free(x->watching);
        }

        x->watching = p;
        x->nwatching_alloc = (uint16_t) size;
    }

    w->subs[w->nsubs++] = s;
    x->watching[x->nwatching++] = w;

    return NGX_OK;
}


static void
ngx_chat_presence_unwatch(ngx_chat_session_t *s, ngx_chat_presence_watch_t *w)
{
    ngx_uint_t                 i;
    ngx_chat_session_extra_t  *x;

    x = s->extra;

    for (i = 0; x && i < x->nwatching; i++) {
        if (x->watching[i] == w) {
            x->watching[i] = x->watching[--x->nwatching];
            break;
        }
    }

    for (i = 0; i < w->nsubs; i++) {
        if (w->subs[i] == s) {
            w->subs[i] = w->subs[--w->nsubs];
            break;
        }
    }

    if (w->nsubs == 0) {
        if (w->subscribed) {
            ngx_chat_redis_unsubscribe(&w->channel, 1);
        }

        ngx_rbtree_delete(&ngx_chat_presence_tree, &w->node);

        if (w->subs) {
            ngx_free(w->subs);
        }

        ngx_free(w);
    }
}


/*
 * Subscribes to the channels of the users not yet watched here, then asks
 * for the presence of all of them once those subscriptions are confirmed.
 */

static ngx_int_t
ngx_chat_presence_query(ngx_chat_session_t *s, json_t *ids)
{
    size_t                       i, n, k;
    json_t                      *id;
    ngx_chat_presence_watch_t   *w, **fresh;
    ngx_chat_presence_query_t   *q;

    n = json_array_size(ids);

    if (n == 0) {
        return NGX_OK;
    }

    fresh = ngx_alloc(n * sizeof(ngx_chat_presence_watch_t *),
                      ngx_cycle->log);
    if (fresh == NULL) {
        return NGX_ERROR;
    }

    for (i = 0, k = 0; i < n; i++) {
        id = json_array_get(ids, i);
        w = ngx_chat_presence_find((u_char *) json_string_value(id),
                                   json_string_length(id), 0);

        if (w && !w->subscribed) {
            fresh[k++] = w;
        }
    }

    if (k && ngx_chat_presence_subscribe(fresh, k) != NGX_OK) {
        ngx_free(fresh);
        return NGX_ERROR;
    }

    ngx_free(fresh);

    q = ngx_alloc(sizeof(ngx_chat_presence_query_t), ngx_cycle->log);
    if (q == NULL) {
        return NGX_ERROR;
    }

    q->sid = s->key;
    q->ids = json_incref(ids);
    q->after = ngx_chat_presence_asked;

    if (ngx_chat_presence_confirmed >= q->after) {
        return ngx_chat_presence_ask(q);
    }

    ngx_queue_insert_tail(&ngx_chat_presence_waiting, &q->queue);

    return NGX_OK;
}


static ngx_int_t
ngx_chat_presence_subscribe(ngx_chat_presence_watch_t **ws, ngx_uint_t n)
{
    ngx_uint_t   i;
    ngx_str_t   *channels;
    ngx_int_t    rc;

    channels = ngx_alloc(n * sizeof(ngx_str_t), ngx_cycle->log);
    if (channels == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        channels[i] = ws[i]->channel;
    }

    rc = ngx_chat_redis_subscribe(channels, n);

    ngx_free(channels);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        ws[i]->subscribed = 1;
    }

    ngx_chat_presence_asked += n;

    return NGX_OK;
}


/* a subscription of the link's is confirmed: ask what waited for it */

void
ngx_chat_presence_subscribed(const u_char *channel, size_t len)
{
    if (len < sizeof(NGX_CHAT_WIRE_CHANNEL_PRESENCE) - 1
        || ngx_strncmp(channel, NGX_CHAT_WIRE_CHANNEL_PRESENCE,
                       sizeof(NGX_CHAT_WIRE_CHANNEL_PRESENCE) - 1) != 0)
    {
        return;
    }

    ngx_chat_presence_confirmed++;
    ngx_chat_presence_run_waiting();
}


static void
ngx_chat_presence_run_waiting(void)
{
    ngx_queue_t                *head;
    ngx_chat_presence_query_t  *q;

    while (!ngx_queue_empty(&ngx_chat_presence_waiting)) {
        head = ngx_queue_head(&ngx_chat_presence_waiting);
        q = ngx_queue_data(head, ngx_chat_presence_query_t, queue);

        if (q->after > ngx_chat_presence_confirmed) {
            break;
        }

        ngx_queue_remove(head);

        if (ngx_chat_presence_ask(q) != NGX_OK) {
            /* Redis is away: the watch stands, its events will come */
        }
    }
}


/* a new subscription link: every watched user's channel again */

void
ngx_chat_presence_resubscribe(void)
{
    ngx_uint_t                   n;
    ngx_queue_t                 *qe;
    ngx_rbtree_node_t           *node, *root, *sentinel;
    ngx_chat_presence_watch_t  **ws, *w;
    ngx_chat_presence_query_t   *q;

    ngx_chat_presence_asked = 0;
    ngx_chat_presence_confirmed = 0;

    root = ngx_chat_presence_tree.root;
    sentinel = ngx_chat_presence_tree.sentinel;

    n = 0;

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&ngx_chat_presence_tree, node))
        {
            ((ngx_chat_presence_watch_t *) node)->subscribed = 0;
            n++;
        }
    }

    if (n) {
        ws = ngx_alloc(n * sizeof(ngx_chat_presence_watch_t *),
                       ngx_cycle->log);
        if (ws == NULL) {
            return;
        }

        n = 0;

        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&ngx_chat_presence_tree, node))
        {
            w = (ngx_chat_presence_watch_t *) node;
            ws[n++] = w;
        }

        (void) ngx_chat_presence_subscribe(ws, n);

        ngx_free(ws);
    }

    /* what waited on the old link waits for these */

    for (qe = ngx_queue_head(&ngx_chat_presence_waiting);
         qe != ngx_queue_sentinel(&ngx_chat_presence_waiting);
         qe = ngx_queue_next(qe))
    {
        q = ngx_queue_data(qe, ngx_chat_presence_query_t, queue);
        q->after = ngx_chat_presence_asked;
    }

    /* with nothing to subscribe, nothing to wait for */
    ngx_chat_presence_run_waiting();
}


static ngx_int_t
ngx_chat_presence_ask(ngx_chat_presence_query_t *q)
{
    char        *keys;
    size_t       i, n, argc;
    json_t      *id;
    ngx_int_t    rc;
    const char **argv;
    size_t      *argvlen;

    n = json_array_size(q->ids);

    /* each user's sessions and presence keys, in pairs */

    argc = 2 * n;

    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t)
                             + NGX_CHAT_WIRE_KEY_MAX),
                     ngx_cycle->log);
    if (argv == NULL) {
        json_decref(q->ids);
        ngx_free(q);
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + argc);
    keys = (char *) (argvlen + argc);

    for (i = 0; i < n; i++) {
        id = json_array_get(q->ids, i);

        argv[2 * i] = keys + 2 * i * NGX_CHAT_WIRE_KEY_MAX;
        argvlen[2 * i] = ngx_chat_wire_key((char *) argv[2 * i],
                                           NGX_CHAT_WIRE_KEY_SESS,
                                           json_string_value(id),
                                           json_string_length(id));

        argv[2 * i + 1] = keys + (2 * i + 1) * NGX_CHAT_WIRE_KEY_MAX;
        argvlen[2 * i + 1] = ngx_chat_wire_key((char *) argv[2 * i + 1],
                                               NGX_CHAT_WIRE_KEY_PRES,
                                               json_string_value(id),
                                               json_string_length(id));
    }

    rc = ngx_chat_redis_eval(&ngx_chat_presence_query_script,
                             ngx_chat_presence_answer, q, (int) argc,
                             (int) argc, argv, argvlen);

    ngx_free(argv);

    if (rc != NGX_OK) {
        json_decref(q->ids);
        ngx_free(q);
    }

    return rc;
}


static void
ngx_chat_presence_answer(void *reply, void *data)
{
    ngx_chat_presence_query_t  *q = data;

    u_char              *sp, *str;
    size_t               i, len;
    json_t              *id;
    redisReply          *r = reply;
    ngx_chat_session_t  *s;

    s = ngx_chat_session_find_key(q->sid);

    if (s && r && r->type == REDIS_REPLY_ARRAY
        && r->elements == json_array_size(q->ids))
    {
        for (i = 0; i < r->elements; i++) {
            if (r->element[i]->type != REDIS_REPLY_STRING) {
                continue;
            }

            id = json_array_get(q->ids, i);
            str = (u_char *) r->element[i]->str;
            len = r->element[i]->len;

            sp = ngx_strlchr(str, str + len, ' ');
            if (sp == NULL) {
                continue;
            }

            ngx_chat_presence_send(s, (u_char *) json_string_value(id),
                                   json_string_length(id), str, sp - str,
                                   sp + 1, str + len - sp - 1);
        }
    }

    json_decref(q->ids);
    ngx_free(q);
}


static void
ngx_chat_presence_send(ngx_chat_session_t *s, u_char *user, size_t user_len,
    u_char *status, size_t status_len, u_char *last_seen,
    size_t last_seen_len)
{
    u_char  buf[sizeof("{\"type\":\"presence\",\"user_id\":\"\","
                       "\"status\":\"offline\",\"last_seen\":}")
                + NGX_CHAT_WIRE_ID_MAX + NGX_INT64_LEN];
    u_char  *p;

    if (user_len > NGX_CHAT_WIRE_ID_MAX || status_len > sizeof("offline") - 1
        || last_seen_len > NGX_INT64_LEN)
    {
        return;
    }

    if (last_seen_len == 1 && last_seen[0] == '-') {
        last_seen = (u_char *) "null";
        last_seen_len = 4;
    }

    p = ngx_sprintf(buf, "{\"type\":\"presence\",\"user_id\":\"%*s\","
                         "\"status\":\"%*s\",\"last_seen\":%*s}",
                    user_len, user, status_len, status, last_seen_len,
                    last_seen);

    (void) ngx_chat_session_send_text(s, buf, p - buf);
}
