
/*
 * ngx_chat: the nginx module's types and the interfaces between its files.
 *
 * The files, from the edge inwards (each calls only files below it; what
 * comes back up is handed over through the handlers given at init):
 *
 *   ngx_chat_module.c        directives, configuration, process hooks: the
 *                            one place that wires the others together
 *   ngx_chat_handshake.c     the HTTP upgrade request, its token, the 101
 *   ngx_chat_dispatch.c      what a client frame does: protocol, rate,
 *                            replies, Kafka records, presence requests
 *   ngx_chat_typing.c        typing to the other members' nodes through
 *                            one Redis script, or through Kafka while
 *                            Redis's sets of members are not whole
 *   ngx_chat_drain.c         closing the sessions over a while when the
 *                            process stops gracefully
 *   ngx_chat_deliver.c       what arrives from Redis: payloads to sessions,
 *                            presence events to their watchers, gaps in
 *                            the chains of sections repaired
 *   ngx_chat_revoke.c        revocations: the sessions chat:control
 *                            names closed, tokens checked against
 *                            chat:revoked without blocking
 *   ngx_chat_stream.c        large answers popped from Redis as a
 *                            session's socket drains
 *   ngx_chat_registry.c      the session registry in Redis
 *   ngx_chat_presence.c      presence: who watches whom, queries, events
 *   ngx_chat_session.c       one WebSocket connection's I/O, and the table
 *                            of this process's sessions
 *   ngx_chat_media.c         a module of its own: the upload settings,
 *                            the signature check of attachments' files
 *                            (PUT and GET), the workers told of a PUT
 *                            that stored one
 *   ngx_chat_kafka.c         the Kafka producer
 *   ngx_chat_redis.c         the two Redis links and their scripts
 *   ngx_chat_redis_adapter.c hiredis driven by nginx events
 *
 * and the pure C below them all, without nginx types (the unit tests and
 * fuzzers link these): ngx_chat_proto.c with ngx_chat_send.c (the client
 * protocol), ngx_chat_chain.c (a node's view of a chain of sections),
 * ngx_chat_frame.c (RFC 6455), ngx_chat_deflate.c (permessage-deflate),
 * ngx_chat_jwt.c (tokens), ngx_chat_media_sign.c (signed media URLs)
 * and ngx_chat_wire.c (what the module and the
 * workers share).
 */


#ifndef _NGX_CHAT_H_INCLUDED_
#define _NGX_CHAT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_chat_frame.h"
#include "ngx_chat_deflate.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_wire.h"


typedef struct ngx_chat_session_s  ngx_chat_session_t;


/* what a location's sessions do with their connection's events */
typedef struct {
    /* the connection is a session now; NGX_ERROR closes it */
    ngx_int_t                (*start)(ngx_chat_session_t *s);
    /* one whole data message: text (valid UTF-8) or binary */
    void                     (*message)(ngx_chat_session_t *s,
                                        ngx_uint_t opcode, u_char *data,
                                        size_t len);
    /* once, when the session begins to close or is gone */
    void                     (*closed)(ngx_chat_session_t *s);
    /* its output went below half the send buffer, as asked */
    void                     (*drained)(ngx_chat_session_t *s);
} ngx_chat_session_handlers_t;


typedef struct ngx_chat_main_conf_s {
    ngx_str_t                  jwt_secret;
    ngx_str_t                  server_id;
    ngx_str_t                  redis_host;
    in_port_t                  redis_port;
    ngx_str_t                  kafka_brokers;
    ngx_str_t                  kafka_topic;
    ngx_msec_t                 kafka_timeout;
    ngx_msec_t                 kafka_linger;
    ngx_msec_t                 presence_grace;
    ngx_uint_t                 presence_share;  /* NGX_CHAT_PRESENCE_* */
    ngx_msec_t                 drain;
    ngx_flag_t                 enabled;     /* some location says "chat" */
    ngx_flag_t                 echo;        /* some says "chat_echo" */

    ngx_chat_metrics_conf_t    metrics;

    /* permessage-deflate, per process: chat_deflate_level,
     * chat_deflate_mem_level, chat_deflate_min_size, and their check */
    ngx_uint_t                 deflate_level;
    ngx_uint_t                 deflate_mem_level;
    size_t                     deflate_min_size;
    ngx_chat_deflate_conf_t    deflate;

    /* this process, set in init_process: "<server_id>:<process>" */
    ngx_str_t                  node;
} ngx_chat_main_conf_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_flag_t                 echo;
    size_t                     max_message;
    ngx_uint_t                 max_frames;
    size_t                     send_buffer;
    ngx_msec_t                 send_timeout;
    ngx_msec_t                 heartbeat;
    ngx_msec_t                 edit_window; /* own messages editable */
    ngx_uint_t                 rate;        /* client frames per second */
    ngx_uint_t                 burst;
    ngx_uint_t                 rate_strikes;

    /* permessage-deflate: chat_deflate and what a connection may agree
     * to, merged into deflate_conf, which the handshake negotiates with */
    ngx_flag_t                 deflate;
    ngx_uint_t                 deflate_window_bits;
    ngx_uint_t                 deflate_client_window_bits;
    ngx_flag_t                 deflate_client_takeover;
    ngx_chat_deflate_conf_t    deflate_conf;

    const ngx_chat_session_handlers_t  *handlers;
    ngx_uint_t                 metrics_index;   /* connections by location */
    ngx_flag_t                 health_ready;    /* chat_health ready */
} ngx_chat_loc_conf_t;


/* what a session holds beyond its struct, allocated when first needed */
typedef struct {
    /* ngx_chat_stream.c: answers being popped, while there are */
    void                      *stream;

    /* ngx_chat_presence.c: whom it watches */
    void                     **watching;
    uint16_t                   nwatching;
    uint16_t                   nwatching_alloc;
} ngx_chat_session_extra_t;


/*
 * One WebSocket connection after the upgrade; lives in c->pool, with its
 * user and device ids after it. Each file owns the fields under its name.
 * An idle session is this struct and those few bytes, compressed or not:
 * the frame parser and inflater, the reassembly and output buffers and
 * the extras exist only while they are in use, so that the whole of it
 * fits the connection pool's first block with nginx's own.
 */
struct ngx_chat_session_s {
    /* ngx_chat_session.c */
    ngx_chat_session_t        *next;        /* in the table's bucket */
    uint64_t                   key;         /* the session id */
    ngx_connection_t          *connection;
    ngx_chat_loc_conf_t       *conf;

    /* the parser and the message being reassembled, while a frame or a
     * message is under way; the output waiting for the socket */
    void                      *in;
    void                      *out;

    ngx_chat_session_extra_t  *extra;

    uint32_t                   expires;     /* token exp, seconds; 0 none */

    /* ngx_current_msec of the last byte read and of the last ping sent */
    uint32_t                   last_read;
    uint32_t                   last_ping;

    u_char                     user_len;
    u_char                     device_len;

    unsigned                   in_table:1;
    unsigned                   closing:1;     /* our close frame queued */
    unsigned                   lingering:1;   /* draining before close */
    unsigned                   gone:1;        /* handlers->closed ran */
    unsigned                   notify_drained:1;
    /* permessage-deflate: the server window bits agreed, 0 if it was
     * not; the client's, and whether it keeps its context */
    unsigned                   deflate_bits:4;
    unsigned                   inflate_bits:4;
    unsigned                   inflate_takeover:1;

    /* ngx_chat_registry.c */
    unsigned                   registered:1;

    /* ngx_chat_dispatch.c: the token bucket of client frames (thousandths
     * of a frame), and the last typing "start" forwarded */
    uint16_t                   rate_strikes;
    uint32_t                   rate_last;
    uint32_t                   rate_tokens;
    uint32_t                   typing_hash;
    uint32_t                   typing_last;

    /* ngx_chat_session.c: the token's iat, seconds; 0 when it had none */
    uint32_t                   issued;

    /* ngx_chat_registry.c */
    int64_t                    since;       /* connected, us */
};


/* the user and device ids, as ngx_str_t (valid in the enclosing block) */
#define ngx_chat_session_user(s)                                              \
    (&(ngx_str_t) { (s)->user_len, (u_char *) ((s) + 1) })
#define ngx_chat_session_device(s)                                            \
    (&(ngx_str_t) { (s)->device_len, (u_char *) ((s) + 1) + (s)->user_len })


extern ngx_module_t  ngx_chat_module;


/* ---- ngx_chat_handshake.c ---- */

ngx_int_t ngx_chat_handshake(ngx_http_request_t *r);


/* ---- ngx_chat_dispatch.c ---- */

extern const ngx_chat_session_handlers_t  ngx_chat_dispatch_chat;
extern const ngx_chat_session_handlers_t  ngx_chat_dispatch_echo;

/* a record Kafka did not take (or may have taken): answer its session */
void ngx_chat_dispatch_undelivered(const u_char *record, size_t len,
    ngx_uint_t maybe_stored);


/* ---- ngx_chat_drain.c ---- */

ngx_int_t ngx_chat_drain_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf);
/* the sessions close over chat_drain, not all at once when nginx stops */
ngx_uint_t ngx_chat_drain_enabled(void);
ngx_uint_t ngx_chat_draining(void);


/* ---- ngx_chat_deliver.c ---- */

ngx_int_t ngx_chat_deliver_init(ngx_cycle_t *cycle,
    ngx_chat_main_conf_t *mcf);
void ngx_chat_deliver_exit(ngx_cycle_t *cycle);
/* a message on one of the channels this process subscribes to */
void ngx_chat_deliver(const u_char *channel, size_t channel_len,
    const u_char *data, size_t len);


/* ---- ngx_chat_revoke.c ---- */

/* the answer of a check: NGX_OK (not revoked), NGX_ABORT (revoked) or
 * NGX_DECLINED (Redis could not say) */
typedef void (*ngx_chat_revoke_pt)(void *data, ngx_int_t rc);

/* a token of user/device issued at iat (seconds, 0 none) against
 * chat:revoked: NGX_AGAIN (handler is called later, exactly once),
 * NGX_DECLINED (Redis is away: not checked) or NGX_ERROR */
ngx_int_t ngx_chat_revoke_check(ngx_str_t *user, ngx_str_t *device,
    int64_t iat, ngx_chat_revoke_pt handler, void *data);
/* a message on chat:control */
void ngx_chat_revoke_control(const u_char *p, size_t len);


/* ---- ngx_chat_stream.c ---- */

void ngx_chat_stream_announce(ngx_chat_session_t *s, const u_char *key,
    size_t len);
void ngx_chat_stream_drained(ngx_chat_session_t *s);
void ngx_chat_stream_drop(ngx_chat_session_t *s);


/* ---- ngx_chat_registry.c ---- */

ngx_int_t ngx_chat_registry_init(ngx_cycle_t *cycle,
    ngx_chat_main_conf_t *mcf);
void ngx_chat_registry_add(ngx_chat_session_t *s);
void ngx_chat_registry_remove(ngx_chat_session_t *s);
void ngx_chat_registry_exit(ngx_cycle_t *cycle);
/* Redis may have lost every key: register the local sessions again */
void ngx_chat_registry_restore(void);


/* ---- ngx_chat_presence.c ---- */

struct ngx_chat_proto_result_s;

/* chat_presence_share: who sees a user's presence */
#define NGX_CHAT_PRESENCE_CONTACTS  0
#define NGX_CHAT_PRESENCE_EVERYONE  1

ngx_int_t ngx_chat_presence_init(ngx_cycle_t *cycle,
    ngx_chat_main_conf_t *mcf);
void ngx_chat_presence_request(ngx_chat_session_t *s,
    struct ngx_chat_proto_result_s *res);
void ngx_chat_presence_event(const u_char *p, size_t len);
void ngx_chat_presence_drop(ngx_chat_session_t *s);
/* the subscription link: a channel's subscription confirmed, a new link */
void ngx_chat_presence_subscribed(const u_char *channel, size_t len);
void ngx_chat_presence_resubscribe(void);


/* ---- ngx_chat_typing.c ---- */

ngx_int_t ngx_chat_typing_init(ngx_cycle_t *cycle);
/*
 * A typing record of the result (not throttled): NGX_OK when the script
 * took it (the record is gone from res, and so is any reply: the session
 * hears back only if the typer is not a member), NGX_DECLINED when it goes
 * through Kafka as it is (Redis is away)
 */
ngx_int_t ngx_chat_typing_send(ngx_chat_session_t *s,
    struct ngx_chat_proto_result_s *res);


/* ---- ngx_chat_session.c ---- */

/*
 * Takes the connection over from the upgrade request r (expires and issued:
 * the token's exp and iat, seconds): response is the 101 answer to send
 * first (copied), deflate what permessage-deflate
 * agreed to (NULL if it was not), handlers what the session's events go
 * to. NGX_DONE, or an HTTP status to answer instead.
 */
ngx_int_t ngx_chat_session_start(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *device, int64_t expires, int64_t issued, u_char *response,
    size_t len, const ngx_chat_deflate_params_t *deflate);

/* the process's read buffer, session ids and deflate context */
ngx_int_t ngx_chat_session_init(ngx_cycle_t *cycle,
    ngx_chat_main_conf_t *mcf);
void ngx_chat_session_exit(ngx_cycle_t *cycle);

ngx_chat_session_t *ngx_chat_session_find(const u_char *sid);
ngx_chat_session_t *ngx_chat_session_find_key(uint64_t key);
/* the session id as NGX_CHAT_WIRE_SID_LEN hex digits into buf */
u_char *ngx_chat_session_sid(ngx_chat_session_t *s, u_char *buf);
/* the extras, allocated on the first call; NULL without memory */
ngx_chat_session_extra_t *ngx_chat_session_extra(ngx_chat_session_t *s);
/* the sessions of this process in sid order; NULL after the last */
ngx_chat_session_t *ngx_chat_session_first(void);
ngx_chat_session_t *ngx_chat_session_next(ngx_chat_session_t *s);

/* bytes queued for the socket */
size_t ngx_chat_session_queued(ngx_chat_session_t *s);
/* call handlers->drained once the output is below half the send buffer */
void ngx_chat_session_notify_drained(ngx_chat_session_t *s);

/* queues one frame; a text frame beyond the send buffer closes with 4009 */
ngx_int_t ngx_chat_session_send(ngx_chat_session_t *s, ngx_uint_t opcode,
    u_char *data, size_t len);
ngx_int_t ngx_chat_session_send_text(ngx_chat_session_t *s, u_char *data,
    size_t len);
/*
 * The same for one message to many sessions (ngx_chat_deflate_shared_init()
 * first): compressed once per window size among those that agreed to
 * permessage-deflate, as it is to the others; then
 * ngx_chat_session_shared_free()
 */
ngx_int_t ngx_chat_session_send_shared(ngx_chat_session_t *s,
    ngx_chat_deflate_shared_t *sh);
void ngx_chat_session_shared_free(ngx_chat_deflate_shared_t *sh);
void ngx_chat_session_close(ngx_chat_session_t *s, ngx_uint_t code,
    char *reason);
void ngx_chat_session_close_all(ngx_uint_t code, char *reason);


/* ---- ngx_chat_kafka.c ---- */

typedef void (*ngx_chat_kafka_failed_pt)(const u_char *record, size_t len,
    ngx_uint_t maybe_stored);

ngx_int_t ngx_chat_kafka_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf,
    ngx_chat_kafka_failed_pt failed);
void ngx_chat_kafka_exit(ngx_cycle_t *cycle);
/* on NGX_OK the value (malloc'ed) belongs to Kafka, which frees it */
ngx_int_t ngx_chat_kafka_produce(u_char *key, size_t key_len, u_char *value,
    size_t value_len);
/* the same, to one partition */
ngx_int_t ngx_chat_kafka_produce_to(int32_t partition, u_char *value,
    size_t value_len);


/* ---- ngx_chat_redis.c ---- */

typedef void (*ngx_chat_redis_reply_pt)(void *reply, void *data);

typedef struct {
    /* the command link is (again) connected */
    void                     (*commands_ready)(void);
    /* the subscription link is (again) connected, on its fixed channels */
    void                     (*subscription_ready)(void);
    /* a subscription to a channel is confirmed */
    void                     (*subscribed)(const u_char *channel,
                                           size_t channel_len);
    /* a message on a subscribed channel */
    void                     (*message)(const u_char *channel,
                                        size_t channel_len,
                                        const u_char *data, size_t len);
} ngx_chat_redis_handlers_t;

/* a Lua script called by its SHA1, loaded again when Redis lost it */
typedef struct {
    const char                *text;
    size_t                     len;
    char                       sha1[40];
} ngx_chat_redis_script_t;

ngx_int_t ngx_chat_redis_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf,
    ngx_str_t *channels, ngx_uint_t nchannels,
    const ngx_chat_redis_handlers_t *handlers);
void ngx_chat_redis_exit(ngx_cycle_t *cycle);

void ngx_chat_redis_script_init(ngx_chat_redis_script_t *script,
    const char *text);

/* channels beyond the fixed ones; NGX_ERROR while the link is down (a new
 * link calls subscription_ready, which subscribes again) */
ngx_int_t ngx_chat_redis_subscribe(ngx_str_t *channels, ngx_uint_t n);
void ngx_chat_redis_unsubscribe(ngx_str_t *channels, ngx_uint_t n);

/*
 * A command, or a script with its keys and arguments, on the command link;
 * callback (may be NULL) gets the hiredis reply, NULL if the link broke.
 * NGX_ERROR while Redis is away.
 */
ngx_int_t ngx_chat_redis_command(ngx_chat_redis_reply_pt callback,
    void *data, int argc, const char **argv, const size_t *argvlen);
ngx_int_t ngx_chat_redis_eval(ngx_chat_redis_script_t *script,
    ngx_chat_redis_reply_pt callback, void *data, int nkeys, int argc,
    const char **argv, const size_t *argvlen);


/* ---- ngx_chat_media.c ---- */

struct ngx_chat_media_conf_s;

/* the upload settings for the protocol layer, NULL when not configured */
const struct ngx_chat_media_conf_s *ngx_chat_media_conf(void);


/* ---- ngx_chat_redis_adapter.c ---- */

struct redisAsyncContext;

/* drives the context from nginx events; NGX_ERROR if already attached */
ngx_int_t ngx_chat_redis_attach(struct redisAsyncContext *ac, ngx_log_t *log);


#endif /* _NGX_CHAT_H_INCLUDED_ */
