
/*
 * What the module counts, for the chat_metrics location (Prometheus text
 * format) and the chat_health location. Each nginx worker process writes
 * only its own slot of a shared memory zone, so counting is a plain add;
 * the location sums the slots of the whole server.
 */


#ifndef _NGX_CHAT_METRICS_H_INCLUDED_
#define _NGX_CHAT_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_CHAT_METRICS_LOCATIONS   16
#define NGX_CHAT_METRICS_BUCKETS     14


typedef enum {
    NGX_CHAT_HANDSHAKE_OK = 0,
    NGX_CHAT_HANDSHAKE_BAD_REQUEST,
    NGX_CHAT_HANDSHAKE_UNAUTHORIZED,
    NGX_CHAT_HANDSHAKE_NOT_ALLOWED,
    NGX_CHAT_HANDSHAKE_UPGRADE_REQUIRED,
    NGX_CHAT_HANDSHAKE_UNAVAILABLE,
    NGX_CHAT_HANDSHAKE_RESULTS
} ngx_chat_handshake_result_e;


typedef enum {
    NGX_CHAT_GONE_EOF = 0,          /* the client closed the socket */
    NGX_CHAT_GONE_SILENT,           /* two heartbeats without a byte */
    NGX_CHAT_GONE_STALLED,          /* read nothing for chat_send_timeout */
    NGX_CHAT_GONE_REASONS
} ngx_chat_gone_reason_e;


typedef enum {
    NGX_CHAT_REDIS_COMMANDS = 0,
    NGX_CHAT_REDIS_SUBSCRIPTION,
    NGX_CHAT_REDIS_LINKS
} ngx_chat_redis_link_e;


/* the way a typing frame went: the script, or Kafka and a worker */
typedef enum {
    NGX_CHAT_TYPING_REDIS = 0,
    NGX_CHAT_TYPING_KAFKA,
    NGX_CHAT_TYPING_PATHS
} ngx_chat_typing_path_e;


/* one process's figures: counters only grow; gauges are marked */
typedef struct {
    ngx_pid_t                  pid;         /* 0: a free slot */

    uint64_t                   connections[NGX_CHAT_METRICS_LOCATIONS];
                                            /* gauge */
    uint64_t                   handshakes[NGX_CHAT_HANDSHAKE_RESULTS];
    uint64_t                   frames_in;
    uint64_t                   frames_out;
    uint64_t                   bytes_in;
    uint64_t                   bytes_out;
    uint64_t                   sends;       /* send records to Kafka */
    uint64_t                   closes[16];  /* by ngx_chat_metrics_close() */
    uint64_t                   gone[NGX_CHAT_GONE_REASONS];
    uint64_t                   errors[10];  /* by ngx_chat_metrics_error() */

    uint64_t                   ack_buckets[NGX_CHAT_METRICS_BUCKETS];
    uint64_t                   ack_count;
    uint64_t                   ack_sum_us;

    uint64_t                   kafka_queue;                 /* gauge */
    uint64_t                   kafka_up;                    /* gauge */
    uint64_t                   kafka_unavailable;
    uint64_t                   kafka_timeout;

    uint64_t                   redis_up[NGX_CHAT_REDIS_LINKS];   /* gauge */
    uint64_t                   redis_reconnects[NGX_CHAT_REDIS_LINKS];

    uint64_t                   draining;                    /* gauge */
    uint64_t                   gaps;
    uint64_t                   repairs;
    uint64_t                   gaps_given_up;
    uint64_t                   presence_events;
    uint64_t                   typing[NGX_CHAT_TYPING_PATHS];
} ngx_chat_metrics_t;


/* the locations counted and the zone, in the main configuration */
typedef struct {
    ngx_str_t                  names[NGX_CHAT_METRICS_LOCATIONS];
    ngx_uint_t                 nnames;
    ngx_shm_zone_t            *zone;
} ngx_chat_metrics_conf_t;


/* this process's slot (a private one when there is no zone) */
extern ngx_chat_metrics_t  *ngx_chat_stats;


ngx_int_t ngx_chat_metrics_zone(ngx_conf_t *cf);
struct ngx_chat_main_conf_s;
ngx_int_t ngx_chat_metrics_init_process(ngx_cycle_t *cycle,
    struct ngx_chat_main_conf_s *mcf);
void ngx_chat_metrics_exit_process(ngx_cycle_t *cycle);

/* a location of chat or chat_echo sessions, for connections by location;
 * returns its index */
ngx_uint_t ngx_chat_metrics_location(ngx_conf_t *cf, ngx_str_t *name);

void ngx_chat_metrics_close(ngx_uint_t code);
void ngx_chat_metrics_error(const char *code);
void ngx_chat_metrics_ack(ngx_msec_t ms);

ngx_int_t ngx_chat_metrics_handler(ngx_http_request_t *r);
ngx_int_t ngx_chat_health_handler(ngx_http_request_t *r);


#endif /* _NGX_CHAT_METRICS_H_INCLUDED_ */
