
/*
 * ngx_chat_module: directives, configuration, and the worker process hooks
 * that start the module's parts, wire them together (who gets what comes
 * back from Redis and Kafka) and stop them.
 */


#include "ngx_chat.h"


#define NGX_CHAT_SECRET_MIN  16


static void *ngx_chat_create_main_conf(ngx_conf_t *cf);
static char *ngx_chat_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_chat_create_loc_conf(ngx_conf_t *cf);
static char *ngx_chat_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_chat(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_chat_echo(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_chat_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_health(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_chat_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_chat_id_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_chat_init_process(ngx_cycle_t *cycle);
static void ngx_chat_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_chat_max_message_bounds = {
    ngx_conf_check_num_bounds, 128, 64 * 1024 * 1024
};


/* zlib's raw DEFLATE: 9..15 (see ngx_chat_deflate_conf_check()) */
static ngx_conf_num_bounds_t  ngx_chat_deflate_bits_bounds = {
    ngx_conf_check_num_bounds, 9, 15
};


/* zlib's compression level and memLevel */
static ngx_conf_num_bounds_t  ngx_chat_deflate_level_bounds = {
    ngx_conf_check_num_bounds, 1, 9
};


/* up to a million: the bucket counts thousandths in 32 bits */
static ngx_conf_num_bounds_t  ngx_chat_rate_bounds = {
    ngx_conf_check_num_bounds, 1, 1000000
};


/* who sees a user's presence: those who share a conversation with it */
static ngx_conf_enum_t  ngx_chat_presence_share[] = {
    { ngx_string("contacts"), NGX_CHAT_PRESENCE_CONTACTS },
    { ngx_string("everyone"), NGX_CHAT_PRESENCE_EVERYONE },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_chat_commands[] = {

    { ngx_string("chat"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_echo"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_echo,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_chat_health,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_jwt_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, jwt_secret),
      NULL },

    { ngx_string("chat_server_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_chat_id_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, server_id),
      NULL },

    { ngx_string("chat_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_chat_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_kafka_brokers"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka_brokers),
      NULL },

    { ngx_string("chat_kafka_topic"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka_topic),
      NULL },

    { ngx_string("chat_kafka_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka_timeout),
      NULL },

    { ngx_string("chat_kafka_linger"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka_linger),
      NULL },

    { ngx_string("chat_presence_grace"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, presence_grace),
      NULL },

    { ngx_string("chat_presence_share"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, presence_share),
      &ngx_chat_presence_share },

    { ngx_string("chat_drain"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, drain),
      NULL },

    { ngx_string("chat_max_message_bytes"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_message),
      &ngx_chat_max_message_bounds },

    { ngx_string("chat_max_frames"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_frames),
      &ngx_chat_rate_bounds },

    { ngx_string("chat_send_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, send_buffer),
      NULL },

    { ngx_string("chat_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, send_timeout),
      NULL },

    { ngx_string("chat_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("chat_edit_window"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, edit_window),
      NULL },

    { ngx_string("chat_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, rate),
      &ngx_chat_rate_bounds },

    { ngx_string("chat_burst"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, burst),
      &ngx_chat_rate_bounds },

    { ngx_string("chat_rate_strikes"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, rate_strikes),
      &ngx_chat_rate_bounds },

    { ngx_string("chat_deflate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, deflate),
      NULL },

    { ngx_string("chat_deflate_window_bits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, deflate_window_bits),
      &ngx_chat_deflate_bits_bounds },

    { ngx_string("chat_deflate_client_window_bits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, deflate_client_window_bits),
      &ngx_chat_deflate_bits_bounds },

    { ngx_string("chat_deflate_client_context_takeover"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, deflate_client_takeover),
      NULL },

    { ngx_string("chat_deflate_level"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, deflate_level),
      &ngx_chat_deflate_level_bounds },

    { ngx_string("chat_deflate_mem_level"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, deflate_mem_level),
      &ngx_chat_deflate_level_bounds },

    { ngx_string("chat_deflate_min_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, deflate_min_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_chat_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_chat_create_main_conf,             /* create main configuration */
    ngx_chat_init_main_conf,               /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_chat_create_loc_conf,              /* create location configuration */
    ngx_chat_merge_loc_conf                /* merge location configuration */
};


ngx_module_t  ngx_chat_module = {
    NGX_MODULE_V1,
    &ngx_chat_module_ctx,                  /* module context */
    ngx_chat_commands,                     /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_chat_init_process,                 /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_chat_exit_process,                 /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_chat_create_main_conf(ngx_conf_t *cf)
{
    ngx_chat_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_chat_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->jwt_secret = { 0, NULL };
     *     mcf->server_id = { 0, NULL };
     *     mcf->redis_host = { 0, NULL };
     *     mcf->kafka_brokers = { 0, NULL };
     *     mcf->kafka_topic = { 0, NULL };
     *     mcf->enabled = 0;
     */

    mcf->redis_port = 0;
    mcf->kafka_timeout = NGX_CONF_UNSET_MSEC;
    mcf->kafka_linger = NGX_CONF_UNSET_MSEC;
    mcf->presence_grace = NGX_CONF_UNSET_MSEC;
    mcf->presence_share = NGX_CONF_UNSET_UINT;
    mcf->drain = NGX_CONF_UNSET_MSEC;
    mcf->deflate_level = NGX_CONF_UNSET_UINT;
    mcf->deflate_mem_level = NGX_CONF_UNSET_UINT;
    mcf->deflate_min_size = NGX_CONF_UNSET_SIZE;

    return mcf;
}


static char *
ngx_chat_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_chat_main_conf_t *mcf = conf;

    const char  *err;

    /*
     * the per-process compression settings (the defaults are the core's:
     * level 1 shrinks a chat frame about as much as 9, for less CPU)
     */

    ngx_chat_deflate_conf_init(&mcf->deflate);

    ngx_conf_init_uint_value(mcf->deflate_level,
                             (ngx_uint_t) mcf->deflate.level);
    ngx_conf_init_uint_value(mcf->deflate_mem_level,
                             (ngx_uint_t) mcf->deflate.mem_level);
    ngx_conf_init_size_value(mcf->deflate_min_size, mcf->deflate.min_size);

    mcf->deflate.level = (int) mcf->deflate_level;
    mcf->deflate.mem_level = (int) mcf->deflate_mem_level;
    mcf->deflate.min_size = mcf->deflate_min_size;

    err = ngx_chat_deflate_conf_check(&mcf->deflate);
    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"chat_deflate_*\" settings: %s", err);
        return NGX_CONF_ERROR;
    }

    if (mcf->redis_host.len == 0) {
        ngx_str_set(&mcf->redis_host, "127.0.0.1");
        mcf->redis_port = 6379;
    }

    if (mcf->kafka_brokers.len == 0) {
        ngx_str_set(&mcf->kafka_brokers, "127.0.0.1:9092");
    }

    if (mcf->kafka_topic.len == 0) {
        ngx_str_set(&mcf->kafka_topic, NGX_CHAT_WIRE_TOPIC);
    }

    ngx_conf_init_msec_value(mcf->kafka_timeout, 10000);
    ngx_conf_init_msec_value(mcf->kafka_linger, 5);

    /* a reconnect (a reload, a flapping link) takes a second or two */
    ngx_conf_init_msec_value(mcf->presence_grace, 5000);
    ngx_conf_init_uint_value(mcf->presence_share,
                             NGX_CHAT_PRESENCE_CONTACTS);
    ngx_conf_init_msec_value(mcf->drain, 30000);

    if (mcf->kafka_linger > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_kafka_linger\" must be at most 1s");
        return NGX_CONF_ERROR;
    }

    if (mcf->server_id.len == 0) {
        mcf->server_id = cf->cycle->hostname;

        if (mcf->server_id.len > NGX_CHAT_WIRE_ID_MAX) {
            mcf->server_id.len = NGX_CHAT_WIRE_ID_MAX;
        }
    }

    if (!mcf->enabled) {
        return NGX_CONF_OK;
    }

    if (mcf->jwt_secret.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_jwt_secret\" is required where "
                           "\"chat\" is used");
        return NGX_CONF_ERROR;
    }

    if (mcf->jwt_secret.len < NGX_CHAT_SECRET_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_jwt_secret\" must be at least %d bytes",
                           NGX_CHAT_SECRET_MIN);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_chat_create_loc_conf(ngx_conf_t *cf)
{
    ngx_chat_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_chat_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;
    conf->echo = NGX_CONF_UNSET;
    conf->max_message = NGX_CONF_UNSET_SIZE;
    conf->max_frames = NGX_CONF_UNSET_UINT;
    conf->send_buffer = NGX_CONF_UNSET_SIZE;
    conf->send_timeout = NGX_CONF_UNSET_MSEC;
    conf->heartbeat = NGX_CONF_UNSET_MSEC;
    conf->edit_window = NGX_CONF_UNSET_MSEC;
    conf->rate = NGX_CONF_UNSET_UINT;
    conf->burst = NGX_CONF_UNSET_UINT;
    conf->rate_strikes = NGX_CONF_UNSET_UINT;
    conf->health_ready = NGX_CONF_UNSET;
    conf->deflate = NGX_CONF_UNSET;
    conf->deflate_window_bits = NGX_CONF_UNSET_UINT;
    conf->deflate_client_window_bits = NGX_CONF_UNSET_UINT;
    conf->deflate_client_takeover = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_chat_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_chat_loc_conf_t *prev = parent;
    ngx_chat_loc_conf_t *conf = child;

    const char  *err;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->echo, prev->echo, 0);
    ngx_conf_merge_value(conf->health_ready, prev->health_ready, 0);
    ngx_conf_merge_size_value(conf->max_message, prev->max_message,
                              16 * 1024);
    ngx_conf_merge_size_value(conf->send_buffer, prev->send_buffer,
                              256 * 1024);

    /* a client that reads nothing for this long is closed (4009 at the
     * bound comes first for one that gets much) */
    ngx_conf_merge_msec_value(conf->send_timeout, prev->send_timeout, 30000);

    /* fragments of 16 bytes on average: no real client comes near */
    ngx_conf_merge_uint_value(conf->max_frames, prev->max_frames,
                              ngx_max(64, conf->max_message / 16));
    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat, 30000);
    ngx_conf_merge_msec_value(conf->edit_window, prev->edit_window,
                              NGX_CHAT_WIRE_EDIT_WINDOW * 1000);

    /*
     * a person types a few frames a second: these leave room for a bot,
     * a catch-up burst after a reconnect and a retry storm, and still stop
     * one connection from flooding Kafka
     */
    ngx_conf_merge_uint_value(conf->rate, prev->rate, 200);
    ngx_conf_merge_uint_value(conf->burst, prev->burst, 1000);
    ngx_conf_merge_uint_value(conf->rate_strikes, prev->rate_strikes, 20);

    if (conf->heartbeat < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_heartbeat\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    /*
     * permessage-deflate: off unless asked for; 15-bit windows both ways;
     * by default a client gives up its context between messages, so that
     * an idle connection holds no inflate stream (32 KB and more)
     */
    ngx_conf_merge_value(conf->deflate, prev->deflate, 0);
    ngx_conf_merge_uint_value(conf->deflate_window_bits,
                              prev->deflate_window_bits, 15);
    ngx_conf_merge_uint_value(conf->deflate_client_window_bits,
                              prev->deflate_client_window_bits, 15);
    ngx_conf_merge_value(conf->deflate_client_takeover,
                         prev->deflate_client_takeover, 0);

    ngx_chat_deflate_conf_init(&conf->deflate_conf);
    conf->deflate_conf.enabled = conf->deflate ? 1 : 0;
    conf->deflate_conf.server_max_window_bits =
                                      (unsigned) conf->deflate_window_bits;
    conf->deflate_conf.client_max_window_bits =
                               (unsigned) conf->deflate_client_window_bits;
    conf->deflate_conf.client_context_takeover =
                                   conf->deflate_client_takeover ? 1 : 0;

    err = ngx_chat_deflate_conf_check(&conf->deflate_conf);
    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"chat_deflate_*\" settings: %s", err);
        return NGX_CONF_ERROR;
    }

    /* one whole message always fits, whatever the level it came from */
    if (conf->send_buffer < conf->max_message + NGX_CHAT_WS_MAX_HEADER) {
        conf->send_buffer = conf->max_message + NGX_CHAT_WS_MAX_HEADER;
    }

    return NGX_CONF_OK;
}


static char *
ngx_chat(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t *clcf = conf;

    ngx_chat_main_conf_t      *mcf;
    ngx_http_core_loc_conf_t  *hclcf;

    if (clcf->enable != NGX_CONF_UNSET || clcf->echo != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf->enable = 1;

    hclcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    hclcf->handler = ngx_chat_handshake;
    clcf->handlers = &ngx_chat_dispatch_chat;
    clcf->metrics_index = ngx_chat_metrics_location(cf, &hclcf->name);

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_chat_module);
    mcf->enabled = 1;

    return NGX_CONF_OK;
}


/* a WebSocket echo endpoint: the same handshake, frames and limits */

static char *
ngx_chat_echo(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t *clcf = conf;

    ngx_chat_main_conf_t      *mcf;
    ngx_http_core_loc_conf_t  *hclcf;

    if (clcf->enable != NGX_CONF_UNSET || clcf->echo != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf->echo = 1;

    hclcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    hclcf->handler = ngx_chat_handshake;
    clcf->handlers = &ngx_chat_dispatch_echo;
    clcf->metrics_index = ngx_chat_metrics_location(cf, &hclcf->name);

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_chat_module);
    mcf->echo = 1;

    return NGX_CONF_OK;
}


/* the whole server's figures, in Prometheus's text format */

static char *
ngx_chat_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *hclcf;

    if (ngx_chat_metrics_zone(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    hclcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    hclcf->handler = ngx_chat_metrics_handler;

    return NGX_CONF_OK;
}


/* chat_health [live|ready]: alive at all, or fit to serve */

static char *
ngx_chat_health(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t *clcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *hclcf;

    if (clcf->health_ready != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    clcf->health_ready = 0;

    if (cf->args->nelts == 2) {
        if (ngx_strcmp(value[1].data, "ready") == 0) {
            clcf->health_ready = 1;

        } else if (ngx_strcmp(value[1].data, "live") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"chat_health\": "
                               "live or ready", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    hclcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    hclcf->handler = ngx_chat_health_handler;

    return NGX_CONF_OK;
}


static char *
ngx_chat_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_main_conf_t *mcf = conf;

    ngx_str_t  *value;
    ngx_url_t   u;

    if (mcf->redis_host.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.default_port = 6379;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"chat_redis\" address \"%V\"%s%s",
                           &value[1], u.err ? ": " : "",
                           u.err ? u.err : "");
        return NGX_CONF_ERROR;
    }

    /* hiredis wants a C string */
    mcf->redis_host.data = ngx_pnalloc(cf->pool, u.host.len + 1);
    if (mcf->redis_host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(mcf->redis_host.data, u.host.data, u.host.len);
    mcf->redis_host.data[u.host.len] = '\0';
    mcf->redis_host.len = u.host.len;
    mcf->redis_port = u.port;

    return NGX_CONF_OK;
}


static char *
ngx_chat_id_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char       *rv;
    ngx_str_t  *id;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    id = (ngx_str_t *) ((char *) conf + cmd->offset);

    if (!ngx_chat_wire_valid_id((char *) id->data, id->len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" \"%V\": 1-%d characters of "
                           "[A-Za-z0-9_.@-]", &cmd->name, id,
                           NGX_CHAT_WIRE_ID_MAX);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_chat_init_process(ngx_cycle_t *cycle)
{
    u_char                *p;
    ngx_str_t             *channels;
    ngx_chat_main_conf_t  *mcf;

    static const ngx_chat_redis_handlers_t  handlers = {
        ngx_chat_registry_restore,
        ngx_chat_presence_resubscribe,
        ngx_chat_presence_subscribed,
        ngx_chat_deliver
    };

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_chat_module);

    if (mcf == NULL || !(mcf->enabled || mcf->echo)) {
        return NGX_OK;
    }

    if (ngx_chat_metrics_init_process(cycle, mcf) != NGX_OK
        || ngx_chat_session_init(cycle, mcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!mcf->enabled) {
        return NGX_OK;      /* echo only: no backends */
    }

    mcf->node.data = ngx_pnalloc(cycle->pool, NGX_CHAT_WIRE_NODE_MAX);
    channels = ngx_palloc(cycle->pool, 2 * sizeof(ngx_str_t));
    if (mcf->node.data == NULL || channels == NULL) {
        return NGX_ERROR;
    }

    p = ngx_snprintf(mcf->node.data, NGX_CHAT_WIRE_NODE_MAX, "%V:%ui",
                     &mcf->server_id, ngx_worker);
    mcf->node.len = p - mcf->node.data;

    channels[0].data = ngx_pnalloc(cycle->pool, NGX_CHAT_WIRE_KEY_MAX);
    if (channels[0].data == NULL) {
        return NGX_ERROR;
    }

    channels[0].len = ngx_chat_wire_key((char *) channels[0].data,
                                        NGX_CHAT_WIRE_CHANNEL_NODE,
                                        (char *) mcf->node.data,
                                        mcf->node.len);

    /* the operators' revocations, for every process */
    ngx_str_set(&channels[1], NGX_CHAT_WIRE_CHANNEL_CONTROL);

    if (ngx_chat_registry_init(cycle, mcf) != NGX_OK
        || ngx_chat_deliver_init(cycle, mcf) != NGX_OK
        || ngx_chat_drain_init(cycle, mcf) != NGX_OK
        || ngx_chat_presence_init(cycle, mcf) != NGX_OK
        || ngx_chat_typing_init(cycle) != NGX_OK
        || ngx_chat_redis_init(cycle, mcf, channels, 2, &handlers) != NGX_OK
        || ngx_chat_kafka_init(cycle, mcf, ngx_chat_dispatch_undelivered)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_chat_exit_process(ngx_cycle_t *cycle)
{
    ngx_chat_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_chat_module);

    if (mcf == NULL || !(mcf->enabled || mcf->echo)) {
        return;
    }

    if (mcf->enabled) {
        ngx_chat_session_close_all(NGX_CHAT_WIRE_CLOSE_AWAY,
                                   "server going away");
        ngx_chat_registry_exit(cycle);
        ngx_chat_deliver_exit(cycle);
        ngx_chat_kafka_exit(cycle);
        ngx_chat_redis_exit(cycle);
    }

    ngx_chat_session_exit(cycle);
    ngx_chat_metrics_exit_process(cycle);
}
