
/*
 * Presence: online / away / offline with last seen, served by nginx and
 * Redis alone (no store of record is involved: presence is ephemeral).
 *
 * Redis holds the truth: a user is online while chat:sess:<user> has a
 * device (the session scripts in ngx_chat_redis.c publish the edges on the
 * channel chat:presence), away when chat:pres:<user> says so, and offline
 * otherwise with chat:pres:<user> last_seen. Each nginx worker keeps the
 * table of its own sessions' subscriptions, user -> sessions, and hands
 * every event on the channel to the local subscribers of that user only.
 */


#include "ngx_chat.h"
#include "ngx_chat_proto.h"

#include <jansson.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NGX_CHAT_PRESENCE_MAX_WATCH  1000


typedef struct {
    ngx_rbtree_node_t          node;        /* key: crc32 of the user id */
    ngx_str_t                  user;
    ngx_chat_session_t       **subs;
    ngx_uint_t                 nsubs;
    ngx_uint_t                 nalloc;
} ngx_chat_presence_watch_t;


/* what a presence query reply needs: the session may be gone by then */
typedef struct {
    ngx_rbtree_key_t           sid;
    json_t                    *ids;
} ngx_chat_presence_query_t;


static ngx_chat_presence_watch_t *ngx_chat_presence_find(u_char *user,
    size_t len, ngx_uint_t create);
static ngx_int_t ngx_chat_presence_watch(ngx_chat_session_t *s,
    ngx_chat_presence_watch_t *w);
static void ngx_chat_presence_unwatch(ngx_chat_session_t *s,
    ngx_chat_presence_watch_t *w);
static ngx_int_t ngx_chat_presence_query(ngx_chat_session_t *s,
    json_t *ids);
static void ngx_chat_presence_answer(redisAsyncContext *ac, void *reply,
    void *data);
static void ngx_chat_presence_send(ngx_chat_session_t *s, u_char *user,
    size_t user_len, u_char *status, size_t status_len, u_char *last_seen,
    size_t last_seen_len);


static char  ngx_chat_presence_query_lua[] =
    "local r = {} "
    "for i = 1, #KEYS, 2 do "
    "  local p = redis.call('HMGET', KEYS[i + 1], 'away', 'last_seen') "
    "  if redis.call('HLEN', KEYS[i]) > 0 then "
    "    r[#r + 1] = (p[1] == '1') and 'away -' or 'online -' "
    "  else "
    "    r[#r + 1] = 'offline ' .. (p[2] or '-') "
    "  end "
    "end "
    "return r";

static char  ngx_chat_presence_set_lua[] =
    "local away = (ARGV[1] == 'away') and '1' or '0' "
    "local old = redis.call('HGET', KEYS[2], 'away') or '0' "
    "redis.call('HSET', KEYS[2], 'away', away) "
    "if old ~= away and redis.call('HLEN', KEYS[1]) > 0 then "
    "  redis.call('PUBLISH', 'chat:presence', "
    "              string.sub(KEYS[1], 11) .. ' ' .. ARGV[1] .. ' -') "
    "end "
    "return 0";


static ngx_rbtree_t       ngx_chat_presence_tree;
static ngx_rbtree_node_t  ngx_chat_presence_sentinel;


void
ngx_chat_presence_init(void)
{
    ngx_rbtree_init(&ngx_chat_presence_tree, &ngx_chat_presence_sentinel,
                    ngx_rbtree_insert_value);
}


void
ngx_chat_presence_request(ngx_chat_session_t *s,
    struct ngx_chat_proto_result_s *res)
{
    size_t                      i, n;
    json_t                     *id;
    const char                 *argv[6];
    size_t                      argvlen[6];
    u_char                      sess[sizeof("chat:sess:") + NGX_CHAT_WIRE_ID_MAX];
    u_char                      pres[sizeof("chat:pres:") + NGX_CHAT_WIRE_ID_MAX];
    ngx_chat_presence_watch_t  *w;

    n = json_array_size(res->presence_ids);

    switch (res->presence) {

    case NGX_CHAT_PROTO_PRESENCE_SUBSCRIBE:

        if (s->nwatching + n > NGX_CHAT_PRESENCE_MAX_WATCH) {
            ngx_chat_proto_set_error(res, "too_large",
                                     "more than 1000 users watched");
            return;
        }

        if (ngx_chat_presence_query(s, res->presence_ids) != NGX_OK) {
            ngx_chat_proto_set_error(res, "unavailable",
                                     "presence is unavailable: retry later");
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

        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_chat_presence_set_lua;
        argvlen[1] = sizeof(ngx_chat_presence_set_lua) - 1;
        argv[2] = "2";
        argvlen[2] = 1;
        argv[3] = (char *) sess;
        argvlen[3] = ngx_sprintf(sess, "chat:sess:%V", &s->user) - sess;
        argv[4] = (char *) pres;
        argvlen[4] = ngx_sprintf(pres, "chat:pres:%V", &s->user) - pres;
        argv[5] = res->presence_status;
        argvlen[5] = ngx_strlen(res->presence_status);

        if (ngx_chat_redis_command(NULL, NULL, 6, argv, argvlen) != NGX_OK) {
            ngx_chat_proto_set_error(res, "unavailable",
                                     "presence is unavailable: retry later");
        }

        return;
    }
}


/* "<user> <status> <last_seen or ->" from the chat:presence channel */

void
ngx_chat_presence_event(u_char *p, size_t len)
{
    u_char                     *last, *user_end, *status, *status_end;
    ngx_uint_t                  i;
    ngx_chat_presence_watch_t  *w;

    last = p + len;

    user_end = ngx_strlchr(p, last, ' ');
    if (user_end == NULL) {
        return;
    }

    status = user_end + 1;
    status_end = ngx_strlchr(status, last, ' ');
    if (status_end == NULL) {
        return;
    }

    w = ngx_chat_presence_find(p, user_end - p, 0);
    if (w == NULL) {
        return;
    }

    for (i = 0; i < w->nsubs; i++) {
        ngx_chat_presence_send(w->subs[i], p, user_end - p, status,
                               status_end - status, status_end + 1,
                               last - status_end - 1);
    }
}


void
ngx_chat_presence_drop(ngx_chat_session_t *s)
{
    while (s->nwatching) {
        ngx_chat_presence_unwatch(s, s->watching[s->nwatching - 1]);
    }

    if (s->watching) {
        ngx_free(s->watching);
        s->watching = NULL;
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

    w = ngx_alloc(sizeof(ngx_chat_presence_watch_t) + len, ngx_cycle->log);
    if (w == NULL) {
        return NULL;
    }

    ngx_memzero(w, sizeof(ngx_chat_presence_watch_t));
    w->node.key = hash;
    w->user.data = (u_char *) w + sizeof(ngx_chat_presence_watch_t);
    w->user.len = len;
    ngx_memcpy(w->user.data, user, len);

    ngx_rbtree_insert(&ngx_chat_presence_tree, &w->node);

    return w;
}


static ngx_int_t
ngx_chat_presence_watch(ngx_chat_session_t *s, ngx_chat_presence_watch_t *w)
{
    void        *p;
    ngx_uint_t   i, size;

    for (i = 0; i < s->nwatching; i++) {
        if (s->watching[i] == w) {
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

    if (s->nwatching == s->nwatching_alloc) {
        size = s->nwatching_alloc ? 2 * s->nwatching_alloc : 4;
        p = ngx_alloc(size * sizeof(void *), ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (s->watching) {
            ngx_memcpy(p, s->watching, s->nwatching * sizeof(void *));
            ngx_free(s->watching);
        }

        s->watching = p;
        s->nwatching_alloc = size;
    }

    w->subs[w->nsubs++] = s;
    s->watching[s->nwatching++] = w;

    return NGX_OK;
}


static void
ngx_chat_presence_unwatch(ngx_chat_session_t *s, ngx_chat_presence_watch_t *w)
{
    ngx_uint_t  i;

    for (i = 0; i < s->nwatching; i++) {
        if (s->watching[i] == w) {
            s->watching[i] = s->watching[--s->nwatching];
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
        ngx_rbtree_delete(&ngx_chat_presence_tree, &w->node);

        if (w->subs) {
            ngx_free(w->subs);
        }

        ngx_free(w);
    }
}


static ngx_int_t
ngx_chat_presence_query(ngx_chat_session_t *s, json_t *ids)
{
    u_char                     *keys, *p;
    size_t                      i, n, argc;
    json_t                     *id;
    ngx_int_t                   rc;
    const char                **argv;
    size_t                     *argvlen;
    ngx_chat_presence_query_t  *q;

    n = json_array_size(ids);

    if (n == 0) {
        return NGX_OK;
    }

    argc = 3 + 2 * n;

    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t))
                     + NGX_INT_T_LEN
                     + n * 2 * (sizeof("chat:sess:") + NGX_CHAT_WIRE_ID_MAX),
                     ngx_cycle->log);
    q = ngx_alloc(sizeof(ngx_chat_presence_query_t), ngx_cycle->log);

    if (argv == NULL || q == NULL) {
        ngx_free(argv);
        ngx_free(q);
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + argc);
    keys = (u_char *) (argvlen + argc);

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_chat_presence_query_lua;
    argvlen[1] = sizeof(ngx_chat_presence_query_lua) - 1;
    argv[2] = (char *) keys;
    argvlen[2] = ngx_sprintf(keys, "%uz", 2 * n) - keys;

    p = keys + NGX_INT_T_LEN;

    for (i = 0; i < n; i++) {
        id = json_array_get(ids, i);

        argv[3 + 2 * i] = (char *) p;
        argvlen[3 + 2 * i] = ngx_sprintf(p, "chat:sess:%*s",
                                         json_string_length(id),
                                         json_string_value(id)) - p;
        p += argvlen[3 + 2 * i];

        argv[4 + 2 * i] = (char *) p;
        argvlen[4 + 2 * i] = ngx_sprintf(p, "chat:pres:%*s",
                                         json_string_length(id),
                                         json_string_value(id)) - p;
        p += argvlen[4 + 2 * i];
    }

    q->sid = s->node.key;
    q->ids = json_incref(ids);

    rc = ngx_chat_redis_command((void *) ngx_chat_presence_answer, q,
                                (int) argc, argv, argvlen);

    ngx_free(argv);

    if (rc != NGX_OK) {
        json_decref(q->ids);
        ngx_free(q);
    }

    return rc;
}


static void
ngx_chat_presence_answer(redisAsyncContext *ac, void *reply, void *data)
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
