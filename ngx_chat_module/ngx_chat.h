
/*
 * ngx_chat: shared types of the nginx module.
 *
 * The module is split like nginx's own http/v2: ngx_chat_module.c holds the
 * directives and the process hooks, ngx_chat_handshake.c the upgrade,
 * ngx_chat_session.c the life of one WebSocket connection, ngx_chat_proto.c
 * the JSON protocol (pure C, unit tested), ngx_chat_redis.c the Redis link,
 * ngx_chat_kafka.c the Kafka link, ngx_chat_frame.c the RFC 6455 codec and
 * ngx_chat_jwt.c the token check.
 */


#ifndef _NGX_CHAT_H_INCLUDED_
#define _NGX_CHAT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_chat_frame.h"
#include "ngx_chat_wire.h"


typedef struct {
    ngx_str_t                  jwt_secret;
    ngx_str_t                  server_id;
    ngx_str_t                  redis_host;
    in_port_t                  redis_port;
    ngx_str_t                  kafka_brokers;
    ngx_str_t                  kafka_topic;
    ngx_msec_t                 kafka_timeout;
    ngx_msec_t                 kafka_linger;
    ngx_flag_t                 enabled;     /* some location says "chat" */
    ngx_flag_t                 echo;        /* some says "chat_echo" */
} ngx_chat_main_conf_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_flag_t                 echo;
    size_t                     max_message;
    ngx_uint_t                 max_frames;
    size_t                     send_buffer;
    ngx_msec_t                 heartbeat;
    ngx_uint_t                 rate;        /* client frames per second */
    ngx_uint_t                 burst;
    ngx_uint_t                 rate_strikes;
} ngx_chat_loc_conf_t;


/* one WebSocket connection after the upgrade; lives in c->pool */
typedef struct {
    ngx_rbtree_node_t          node;        /* key: the session id */
    ngx_connection_t          *connection;
    ngx_chat_loc_conf_t       *conf;

    ngx_str_t                  user;
    ngx_str_t                  device;
    u_char                     sid[NGX_CHAT_WIRE_SID_LEN];

    ngx_chat_ws_parser_t       parser;

    /* a data message being reassembled (allocated only while it is) */
    u_char                    *msg;
    size_t                     msg_len;
    size_t                     msg_size;

    /* frames waiting for the socket (allocated only while there are) */
    u_char                    *out;
    u_char                    *out_pos;
    u_char                    *out_last;
    u_char                    *out_end;

    int64_t                    expires;     /* token exp, seconds */
    int64_t                    since;       /* connected, us */

    /* the token bucket of client frames, in thousandths of a frame */
    ngx_msec_t                 rate_last;
    uint32_t                   rate_tokens;
    uint16_t                   rate_strikes;

    uint16_t                   silent_ticks;

    /* presence subscriptions (ngx_chat_presence.c), allocated when used */
    void                     **watching;
    uint16_t                   nwatching;
    uint16_t                   nwatching_alloc;

    /* the last typing "start" forwarded: its conversation and time */
    uint32_t                   typing_hash;
    ngx_msec_t                 typing_last;
    unsigned                   echo:1;      /* a chat_echo location */
    unsigned                   registered:1;
    unsigned                   in_table:1;
    unsigned                   closing:1;     /* our close frame queued */
    unsigned                   lingering:1;   /* draining before close */
} ngx_chat_session_t;


extern ngx_module_t  ngx_chat_module;


/* process-wide state of one nginx worker process */
typedef struct {
    ngx_rbtree_t               sessions;
    ngx_rbtree_node_t          sentinel;
    ngx_str_t                  node;        /* "<server_id>:<worker>" */
    ngx_str_t                  channel;     /* "chat:node:<node>" */
    uint64_t                   sid_prefix;
    uint64_t                   sid_counter;
    ngx_log_t                 *log;
} ngx_chat_worker_t;

extern ngx_chat_worker_t  ngx_chat_worker;


/* ngx_chat_handshake.c */
ngx_int_t ngx_chat_handler(ngx_http_request_t *r);

/* ngx_chat_session.c */
ngx_int_t ngx_chat_session_start(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *device, ngx_str_t *protocol, ngx_str_t *key, int64_t expires);
ngx_chat_session_t *ngx_chat_session_find(u_char *sid, size_t len);
ngx_chat_session_t *ngx_chat_session_find_key(ngx_rbtree_key_t key);
ngx_int_t ngx_chat_session_send_text(ngx_chat_session_t *s, u_char *data,
    size_t len);
void ngx_chat_session_close(ngx_chat_session_t *s, ngx_uint_t code,
    char *reason);
void ngx_chat_sessions_close_all(ngx_uint_t code, char *reason);

/* ngx_chat_redis.c */
ngx_int_t ngx_chat_redis_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf);
void ngx_chat_redis_exit(ngx_cycle_t *cycle);
void ngx_chat_redis_register(ngx_chat_session_t *s);
void ngx_chat_redis_unregister(ngx_chat_session_t *s);

ngx_int_t ngx_chat_redis_command(void *callback, void *data, int argc,
    const char **argv, const size_t *argvlen);

/* ngx_chat_presence.c */
struct ngx_chat_proto_result_s;
void ngx_chat_presence_init(void);
void ngx_chat_presence_request(ngx_chat_session_t *s,
    struct ngx_chat_proto_result_s *res);
void ngx_chat_presence_event(u_char *p, size_t len);
void ngx_chat_presence_drop(ngx_chat_session_t *s);

/* ngx_chat_kafka.c */
ngx_int_t ngx_chat_kafka_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf);
void ngx_chat_kafka_exit(ngx_cycle_t *cycle);
/* on NGX_OK the value (malloc'ed) belongs to Kafka, which frees it */
ngx_int_t ngx_chat_kafka_produce(u_char *key, size_t key_len, u_char *value,
    size_t value_len);


#endif /* _NGX_CHAT_H_INCLUDED_ */
