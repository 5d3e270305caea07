
/*
 * Typing, off the durable path: one Redis script (lua/typing.lua) checks
 * that the typer is a member (chat:members:<conv>, or the id of a direct
 * conversation and the blocks of its two users), finds the other members'
 * sessions in the registry and publishes the frame to their nodes.
 * Typing is at most once and never stored, so neither Kafka nor a worker
 * needs to see it.
 *
 * The sets are the workers' (written with every join and leave, and
 * again from PostgreSQL after Redis lost its data). While they are not
 * whole the script says so, and the typing record goes the way every op
 * goes, through Kafka to a worker that asks the store; so does one whose
 * Redis link is down or broke before the answer.
 */


#include "ngx_chat.h"
#include "ngx_chat_lua.h"
#include "ngx_chat_proto.h"

#include <jansson.h>
#include <hiredis/hiredis.h>


/* a typing frame in the script: what its answer needs */
typedef struct {
    uint64_t                   session;     /* its key: it may go meanwhile */
    char                      *record;      /* for Kafka, malloc'ed */
    size_t                     record_len;
    char                      *refused;     /* the forbidden error, malloc'ed */
    size_t                     refused_len;
    size_t                     key_len;
    u_char                     key[NGX_CHAT_PROTO_KEY_MAX];
} ngx_chat_typing_call_t;


static void ngx_chat_typing_answered(void *reply, void *data);
static void ngx_chat_typing_fall_back(ngx_chat_typing_call_t *call);
static void ngx_chat_typing_free(ngx_chat_typing_call_t *call);


static ngx_chat_redis_script_t  ngx_chat_typing_script;


ngx_int_t
ngx_chat_typing_init(ngx_cycle_t *cycle)
{
    ngx_chat_redis_script_init(&ngx_chat_typing_script, ngx_chat_lua_typing);

    return NGX_OK;
}


ngx_int_t
ngx_chat_typing_send(ngx_chat_session_t *s,
    struct ngx_chat_proto_result_s *res)
{
    int                      nkeys, argc;
    char                    *frame;
    char                     ready[] = NGX_CHAT_WIRE_KEY_MEMBERS_READY;
    char                     k1[NGX_CHAT_WIRE_KEY_MAX];
    char                     k2[NGX_CHAT_WIRE_KEY_MAX];
    const char              *a, *b, *other;
    const char              *argv[9];
    size_t                   argvlen[9], a_len, b_len, other_len;
    json_t                  *o;
    ngx_int_t                rc;
    ngx_str_t               *user;
    ngx_chat_typing_call_t  *call;

    user = ngx_chat_session_user(s);

    o = json_pack("{s:s,s:s%,s:s%,s:s}",
                  "type", "typing",
                  "conversation_id", res->key, res->key_len,
                  "user_id", (char *) user->data, (size_t) user->len,
                  "state", res->typing_start ? NGX_CHAT_WIRE_STATE_START
                                             : NGX_CHAT_WIRE_STATE_STOP);
    if (o == NULL) {
        return NGX_DECLINED;
    }

    frame = json_dumps(o, JSON_COMPACT);
    json_decref(o);

    if (frame == NULL) {
        return NGX_DECLINED;
    }

    argv[0] = ready;
    argvlen[0] = sizeof(ready) - 1;

    if (ngx_chat_wire_parse_direct(res->key, res->key_len, &a, &a_len, &b,
                                   &b_len))
    {
        /* the protocol layer let no direct id without the typer through */
        if (a_len == user->len && ngx_strncmp(a, user->data, a_len) == 0) {
            other = b;
            other_len = b_len;

        } else {
            other = a;
            other_len = a_len;
        }

        nkeys = 3;
        argv[1] = k1;
        argvlen[1] = ngx_chat_wire_key(k1, NGX_CHAT_WIRE_KEY_BLOCKS,
                                       (char *) user->data, user->len);
        argv[2] = k2;
        argvlen[2] = ngx_chat_wire_key(k2, NGX_CHAT_WIRE_KEY_BLOCKS, other,
                                       other_len);
        argv[3] = "direct";
        argvlen[3] = sizeof("direct") - 1;

    } else {
        other = NULL;
        other_len = 0;

        nkeys = 2;
        argv[1] = k1;
        argvlen[1] = ngx_chat_wire_key(k1, NGX_CHAT_WIRE_KEY_MEMBERS,
                                       res->key, res->key_len);
        argv[2] = "group";
        argvlen[2] = sizeof("group") - 1;
    }

    argc = nkeys + 1;

    argv[argc] = (char *) user->data;
    argvlen[argc++] = user->len;
    argv[argc] = frame;
    argvlen[argc++] = ngx_strlen(frame);
    argv[argc] = NGX_CHAT_WIRE_KEY_SESS;
    argvlen[argc++] = sizeof(NGX_CHAT_WIRE_KEY_SESS) - 1;
    argv[argc] = NGX_CHAT_WIRE_CHANNEL_NODE;
    argvlen[argc++] = sizeof(NGX_CHAT_WIRE_CHANNEL_NODE) - 1;

    if (other) {
        argv[argc] = other;
        argvlen[argc++] = other_len;
    }

    call = ngx_alloc(sizeof(ngx_chat_typing_call_t), s->connection->log);
    if (call == NULL) {
        free(frame);
        return NGX_DECLINED;
    }

    call->session = s->key;
    ngx_memcpy(call->key, res->key, res->key_len);
    call->key_len = res->key_len;

    /* the script copies its arguments */
    rc = ngx_chat_redis_eval(&ngx_chat_typing_script,
                             ngx_chat_typing_answered, call, nkeys, argc,
                             argv, argvlen);
    free(frame);

    if (rc != NGX_OK) {
        ngx_free(call);
        return NGX_DECLINED;
    }

    /* the record waits for the answer, in case the sets are not whole;
     * the error is made now, while the frame's tag is at hand */
    call->record = res->record;
    call->record_len = res->record_len;
    res->record = NULL;

    ngx_chat_proto_set_error(res, "forbidden",
                             "not a member of this conversation");
    call->refused = res->reply;
    call->refused_len = res->reply_len;
    res->reply = NULL;
    res->reply_len = 0;
    res->error = NULL;

    return NGX_OK;
}


static void
ngx_chat_typing_answered(void *reply, void *data)
{
    ngx_chat_typing_call_t  *call = data;

    redisReply          *r = reply;
    ngx_chat_session_t  *s;

    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        if (r && r->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "chat: redis typing script: %*s",
                          (size_t) r->len, r->str);
        }

        ngx_chat_typing_fall_back(call);
        return;
    }

    if (r->len == sizeof("sent") - 1
        && ngx_strncmp(r->str, "sent", r->len) == 0)
    {
        ngx_chat_stats->typing[NGX_CHAT_TYPING_REDIS]++;
        ngx_chat_typing_free(call);
        return;
    }

    if (r->len == sizeof("forbidden") - 1
        && ngx_strncmp(r->str, "forbidden", r->len) == 0)
    {
        ngx_chat_stats->typing[NGX_CHAT_TYPING_REDIS]++;

        s = ngx_chat_session_find_key(call->session);

        if (s && !s->closing && call->refused) {
            ngx_chat_metrics_error("forbidden");
            (void) ngx_chat_session_send_text(s, (u_char *) call->refused,
                                              call->refused_len);
        }

        ngx_chat_typing_free(call);
        return;
    }

    /* "unknown": the sets are written again meanwhile */
    ngx_chat_typing_fall_back(call);
}


/* the workers' way: they answer the session (it is in the record) */

static void
ngx_chat_typing_fall_back(ngx_chat_typing_call_t *call)
{
    if (call->record
        && ngx_chat_kafka_produce(call->key, call->key_len,
                                  (u_char *) call->record, call->record_len)
           == NGX_OK)
    {
        call->record = NULL;        /* Kafka's now */
        ngx_chat_stats->typing[NGX_CHAT_TYPING_KAFKA]++;
    }

    /* else typing is lost, as at most once allows */

    ngx_chat_typing_free(call);
}


static void
ngx_chat_typing_free(ngx_chat_typing_call_t *call)
{
    free(call->record);
    free(call->refused);
    ngx_free(call);
}
