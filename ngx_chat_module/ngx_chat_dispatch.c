
/*
 * What a client frame does. A session of a "chat" location starts with the
 * hello frame and its registration; each text message goes through the
 * protocol (ngx_chat_proto.c), the per-connection token bucket and the
 * typing throttle, and ends as a reply, a Kafka record for the workers, a
 * typing frame for the members (ngx_chat_typing.c), or a presence
 * request; when the session goes, so do its registration and
 * its presence subscriptions. An "auth" renewal is answered once its token
 * has passed the revocation check (ngx_chat_revoke.c), which Redis answers
 * later: its answer may come after the answers to later frames. A "chat_echo" location sends every message
 * back.
 */


#include "ngx_chat.h"
#include "ngx_chat_jwt.h"
#include "ngx_chat_proto.h"


#define NGX_CHAT_TYPING_EVERY    2000


static ngx_int_t ngx_chat_dispatch_start(ngx_chat_session_t *s);
static void ngx_chat_dispatch_message(ngx_chat_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_chat_dispatch_closed(ngx_chat_session_t *s);
static void ngx_chat_dispatch_drained(ngx_chat_session_t *s);
static ngx_int_t ngx_chat_dispatch_echo_start(ngx_chat_session_t *s);
static void ngx_chat_dispatch_echo_message(ngx_chat_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_chat_dispatch_echo_closed(ngx_chat_session_t *s);
static void ngx_chat_dispatch_echo_drained(ngx_chat_session_t *s);
static ngx_msec_t ngx_chat_dispatch_rate(ngx_chat_session_t *s);
static ngx_uint_t ngx_chat_dispatch_typing_throttled(ngx_chat_session_t *s,
    ngx_chat_proto_result_t *res);
static ngx_chat_main_conf_t *ngx_chat_dispatch_main_conf(void);
static void ngx_chat_dispatch_auth(ngx_chat_session_t *s,
    ngx_chat_main_conf_t *mcf, ngx_chat_proto_result_t *res);
static void ngx_chat_dispatch_auth_checked(void *data, ngx_int_t rc);


/* an auth renewal waiting for its revocation check: both answers ready */
typedef struct {
    uint64_t                   session;     /* its key: it may go meanwhile */
    int64_t                    exp;
    int64_t                    iat;
    char                      *ok;          /* auth_ok, malloc'ed */
    size_t                     ok_len;
    char                      *refused;     /* the error, malloc'ed */
    size_t                     refused_len;
} ngx_chat_dispatch_auth_t;


const ngx_chat_session_handlers_t  ngx_chat_dispatch_chat = {
    ngx_chat_dispatch_start,
    ngx_chat_dispatch_message,
    ngx_chat_dispatch_closed,
    ngx_chat_dispatch_drained
};


const ngx_chat_session_handlers_t  ngx_chat_dispatch_echo = {
    ngx_chat_dispatch_echo_start,
    ngx_chat_dispatch_echo_message,
    ngx_chat_dispatch_echo_closed,
    ngx_chat_dispatch_echo_drained
};


static ngx_chat_main_conf_t *
ngx_chat_dispatch_main_conf(void)
{
    return ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_chat_module);
}


static ngx_int_t
ngx_chat_dispatch_start(ngx_chat_session_t *s)
{
    u_char                 buf[1024], sid[NGX_CHAT_WIRE_SID_LEN], *p;
    ngx_time_t            *tp;
    ngx_chat_main_conf_t  *mcf;

    mcf = ngx_chat_dispatch_main_conf();
    tp = ngx_timeofday();

    s->rate_last = (uint32_t) ngx_current_msec;
    s->rate_tokens = (uint32_t) ngx_min((uint64_t) s->conf->burst * 1000,
                                        NGX_MAX_UINT32_VALUE);

    if (ngx_chat_drain_enabled()) {
        /* not closed all at once by nginx's shutdown: ngx_chat_drain.c */
        s->connection->idle = 0;
    }

    p = ngx_snprintf(buf, sizeof(buf),
                     "{\"type\":\"hello\",\"user_id\":\"%V\","
                     "\"device_id\":\"%V\",\"session_id\":\"%*s\","
                     "\"server_id\":\"%V\",\"node\":\"%V\","
                     "\"heartbeat_s\":%M,\"max_message_bytes\":%uz,"
                     "\"edit_window_s\":%M,"
                     "\"features\":" NGX_CHAT_PROTO_FEATURES ","
                     "\"server_ts\":%M}",
                     ngx_chat_session_user(s), ngx_chat_session_device(s),
                     (size_t) NGX_CHAT_WIRE_SID_LEN,
                     ngx_chat_session_sid(s, sid), &mcf->server_id,
                     &mcf->node,
                     s->conf->heartbeat / 1000, s->conf->max_message,
                     s->conf->edit_window / 1000,
                     (ngx_msec_t) tp->sec * 1000 + tp->msec);

    if (ngx_chat_session_send_text(s, buf, p - buf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_chat_registry_add(s);

    return NGX_OK;
}


static void
ngx_chat_dispatch_message(ngx_chat_session_t *s, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    u_char                    sid[NGX_CHAT_WIRE_SID_LEN];
    ngx_time_t               *tp;
    ngx_msec_t                retry;
    ngx_chat_main_conf_t     *mcf;
    ngx_chat_proto_peer_t     peer;
    ngx_chat_proto_result_t   res;

    if (opcode == NGX_CHAT_WS_OP_BINARY) {
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_BINARY,
                               "binary messages are not accepted");
        return;
    }

    mcf = ngx_chat_dispatch_main_conf();
    tp = ngx_timeofday();

    peer.user = (char *) ngx_chat_session_user(s)->data;
    peer.user_len = s->user_len;
    peer.device = (char *) ngx_chat_session_device(s)->data;
    peer.device_len = s->device_len;
    peer.node = (char *) mcf->node.data;
    peer.node_len = mcf->node.len;
    peer.sid = (char *) ngx_chat_session_sid(s, sid);
    peer.now_ms = (int64_t) tp->sec * 1000 + tp->msec;
    peer.media = ngx_chat_media_conf();
    peer.edit_window_ms = (int64_t) s->conf->edit_window;

    ngx_chat_proto_handle(&peer, (char *) data, len, &res);

    retry = ngx_chat_dispatch_rate(s);

    if (retry) {
        if (++s->rate_strikes > s->conf->rate_strikes) {
            ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                          "chat: client ignores rate limiting");
            ngx_chat_proto_result_free(&res);
            ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_RATE,
                                   "rate limit abuse");
            return;
        }

        ngx_chat_proto_set_retry_error(&res, "rate_limited",
                                       "too many frames: retry later",
                                       (int64_t) retry);

    } else {
        s->rate_strikes = 0;
    }

    if (res.presence) {
        ngx_chat_presence_request(s, &res);
    }

    if (res.auth_token) {
        ngx_chat_dispatch_auth(s, mcf, &res);
    }

    if (res.typing_start && ngx_chat_dispatch_typing_throttled(s, &res)) {
        ngx_chat_proto_result_free(&res);
        return;
    }

    if (res.typing_stop) {
        s->typing_hash = 0;     /* the next start goes out at once */
    }

    if ((res.typing_start || res.typing_stop) && res.record
        && ngx_chat_typing_send(s, &res) != NGX_OK)
    {
        ngx_chat_stats->typing[NGX_CHAT_TYPING_KAFKA]++;
    }

    if (res.record) {
        if (ngx_chat_kafka_produce((u_char *) res.key, res.key_len,
                                   (u_char *) res.record, res.record_len)
            == NGX_OK)
        {
            res.record = NULL;      /* Kafka's now */
            ngx_chat_stats->sends += res.is_send;

        } else {
            ngx_chat_proto_set_error(&res, "unavailable",
                                     "the message store is unavailable, "
                                     "nothing was stored: retry later");
        }
    }

    if (res.error) {
        ngx_chat_metrics_error(res.error);
    }

    if (res.reply) {
        (void) ngx_chat_session_send_text(s, (u_char *) res.reply,
                                          res.reply_len);
    }

    ngx_chat_proto_result_free(&res);
}


static void
ngx_chat_dispatch_closed(ngx_chat_session_t *s)
{
    ngx_chat_registry_remove(s);
    ngx_chat_presence_drop(s);
    ngx_chat_stream_drop(s);
}


static void
ngx_chat_dispatch_drained(ngx_chat_session_t *s)
{
    ngx_chat_stream_drained(s);
}


void
ngx_chat_dispatch_undelivered(const u_char *record, size_t len,
    ngx_uint_t maybe_stored)
{
    char                 sid[NGX_CHAT_WIRE_SID_LEN + 1], *frame;
    size_t               frame_len;
    ngx_chat_session_t  *s;

    if (ngx_chat_proto_record_failed((const char *) record, len,
                                     maybe_stored != 0, sid, sizeof(sid),
                                     &frame, &frame_len)
        != 0)
    {
        return;
    }

    if (ngx_chat_wire_valid_sid(sid, ngx_strlen(sid))) {
        s = ngx_chat_session_find((u_char *) sid);

        if (s) {
            (void) ngx_chat_session_send_text(s, (u_char *) frame,
                                              frame_len);
        }
    }

    free(frame);
}


/* a fresh token for the same user and device: the session lives on */

static void
ngx_chat_dispatch_auth(ngx_chat_session_t *s, ngx_chat_main_conf_t *mcf,
    ngx_chat_proto_result_t *res)
{
    const char                *why;
    ngx_int_t                  rc;
    ngx_chat_jwt_claims_t      claims;
    ngx_chat_dispatch_auth_t  *a;

    if (ngx_chat_jwt_verify((u_char *) res->auth_token, res->auth_token_len,
                            mcf->jwt_secret.data, mcf->jwt_secret.len,
                            (int64_t) ngx_time(), &claims, &why)
        != 0)
    {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "chat: auth refused: %s", why);
        ngx_chat_proto_set_error(res, "bad_request", "invalid token");
        return;
    }

    if (ngx_strlen(claims.sub) != s->user_len
        || ngx_strncmp(claims.sub, ngx_chat_session_user(s)->data, s->user_len) != 0
        || ngx_strlen(claims.dev) != s->device_len
        || ngx_strncmp(claims.dev, ngx_chat_session_device(s)->data, s->device_len) != 0)
    {
        ngx_chat_proto_set_error(res, "forbidden",
                                 "the token is for another user or device");
        return;
    }

    a = ngx_alloc(sizeof(ngx_chat_dispatch_auth_t), s->connection->log);
    if (a == NULL) {
        ngx_chat_proto_set_error(res, "internal", "out of memory");
        return;
    }

    a->session = s->key;
    a->exp = claims.exp;
    a->iat = claims.iat;

    /* both answers made now, while the frame's tag is at hand */
    ngx_chat_proto_set_auth_ok(res, claims.exp * 1000);
    a->ok = res->reply;
    a->ok_len = res->reply_len;
    res->reply = NULL;

    ngx_chat_proto_set_error(res, "bad_request", "the token was revoked");
    a->refused = res->reply;
    a->refused_len = res->reply_len;
    res->reply = NULL;
    res->reply_len = 0;
    res->error = NULL;

    rc = ngx_chat_revoke_check(ngx_chat_session_user(s),
                               ngx_chat_session_device(s), claims.iat,
                               ngx_chat_dispatch_auth_checked, a);

    if (rc == NGX_DECLINED) {
        /* Redis is away: taken as it is */
        ngx_chat_dispatch_auth_checked(a, NGX_DECLINED);

    } else if (rc != NGX_AGAIN) {
        free(a->ok);
        free(a->refused);
        ngx_free(a);
        ngx_chat_proto_set_error(res, "internal", "out of memory");
    }
}


static void
ngx_chat_dispatch_auth_checked(void *data, ngx_int_t rc)
{
    ngx_chat_dispatch_auth_t  *a = data;

    ngx_chat_session_t        *s;

    s = ngx_chat_session_find_key(a->session);

    if (s == NULL || s->closing) {
        goto done;
    }

    if (rc == NGX_ABORT) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "chat: auth refused: the token was revoked");
        ngx_chat_metrics_error("bad_request");

        if (a->refused) {
            (void) ngx_chat_session_send_text(s, (u_char *) a->refused,
                                              a->refused_len);
        }

        goto done;
    }

    /* exp is seconds: 32 bits last until 2106 */
    s->expires = (uint32_t) ngx_min((uint64_t) a->exp, NGX_MAX_UINT32_VALUE);
    s->issued = (uint32_t) ngx_max(ngx_min(a->iat, 0xffffffff), 0);

    if (a->ok) {
        (void) ngx_chat_session_send_text(s, (u_char *) a->ok, a->ok_len);
    }

done:

    free(a->ok);
    free(a->refused);
    ngx_free(a);
}


/* the token bucket: 0 if the frame may pass, else ms until one may */

static ngx_msec_t
ngx_chat_dispatch_rate(ngx_chat_session_t *s)
{
    uint64_t              tokens;
    ngx_msec_t            elapsed;
    ngx_chat_loc_conf_t  *lcf;

    lcf = s->conf;

    /* 32 bits of milliseconds wrap after 49 days: the difference holds */
    elapsed = (uint32_t) ((uint32_t) ngx_current_msec - s->rate_last);
    s->rate_last = (uint32_t) ngx_current_msec;

    tokens = s->rate_tokens + (uint64_t) elapsed * lcf->rate;
    tokens = ngx_min(tokens, (uint64_t) lcf->burst * 1000);
    tokens = ngx_min(tokens, NGX_MAX_UINT32_VALUE);

    if (tokens < 1000) {
        s->rate_tokens = (uint32_t) tokens;
        return (1000 - tokens + lcf->rate - 1) / lcf->rate;
    }

    s->rate_tokens = (uint32_t) (tokens - 1000);

    return 0;
}


/*
 * Typing is ephemeral and frequent: a "start" holds for 6 s on the other
 * side, so one every NGX_CHAT_TYPING_EVERY per conversation is enough and
 * the rest never reach Redis (or Kafka). A "stop" always goes through.
 */

static ngx_uint_t
ngx_chat_dispatch_typing_throttled(ngx_chat_session_t *s,
    ngx_chat_proto_result_t *res)
{
    uint32_t  hash;

    hash = ngx_crc32_short((u_char *) res->key, res->key_len);

    if (hash == s->typing_hash
        && (uint32_t) ((uint32_t) ngx_current_msec - s->typing_last)
           < NGX_CHAT_TYPING_EVERY)
    {
        return 1;
    }

    s->typing_hash = hash;
    s->typing_last = (uint32_t) ngx_current_msec;

    return 0;
}


static ngx_int_t
ngx_chat_dispatch_echo_start(ngx_chat_session_t *s)
{
    return NGX_OK;
}


static void
ngx_chat_dispatch_echo_message(ngx_chat_session_t *s, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    (void) ngx_chat_session_send(s, opcode, data, len);
}


static void
ngx_chat_dispatch_echo_closed(ngx_chat_session_t *s)
{
}


static void
ngx_chat_dispatch_echo_drained(ngx_chat_session_t *s)
{
}
