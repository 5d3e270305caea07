
/*
 * The module's figures (ngx_chat_metrics.h): a shared memory zone of one
 * slot per nginx worker process, each written by its process alone, and
 * the two locations that read them: chat_metrics, the whole server's
 * figures in the Prometheus text format, and chat_health, this process's
 * liveness and readiness (503 while a link to Redis or Kafka is down or
 * while it drains).
 *
 * A process that exits adds its counters to the zone's retired figures
 * and frees its slot, so the server's counters never go backwards; the
 * slot of a process that died without exiting is retired by the next
 * reader.
 */


#include "ngx_chat.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_METRICS_SLOTS   128


typedef struct {
    ngx_chat_metrics_t         retired;
    ngx_chat_metrics_t         slots[NGX_CHAT_METRICS_SLOTS];
} ngx_chat_metrics_zone_t;




/* the close codes counted, in the order of ngx_chat_metrics_t closes */
static ngx_uint_t  ngx_chat_metrics_codes[] = {
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012,
    4001, 4003, 4008, 4009, 0
};

/* the error codes answered, in the order of ngx_chat_metrics_t errors */
static const char  *ngx_chat_metrics_error_codes[] = {
    "bad_request", "forbidden", "not_found", "too_large", "rate_limited",
    "unavailable", "timeout", "internal", NULL
};

/* ack latency buckets, ms */
static ngx_msec_t  ngx_chat_metrics_bounds[NGX_CHAT_METRICS_BUCKETS] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000
};


static ngx_int_t ngx_chat_metrics_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_chat_metrics_add(ngx_chat_metrics_t *to,
    ngx_chat_metrics_t *from, ngx_uint_t gauges);
static void ngx_chat_metrics_sum(ngx_chat_metrics_t *sum,
    ngx_uint_t *processes);


static ngx_chat_metrics_t        ngx_chat_metrics_private;
static ngx_shm_zone_t           *ngx_chat_metrics_shm;

ngx_chat_metrics_t              *ngx_chat_stats = &ngx_chat_metrics_private;


ngx_int_t
ngx_chat_metrics_zone(ngx_conf_t *cf)
{
    ngx_str_t                  name = ngx_string("chat_metrics");
    ngx_chat_main_conf_t      *mcf;
    ngx_chat_metrics_conf_t   *m;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_chat_module);
    m = &mcf->metrics;

    if (m->zone) {
        return NGX_OK;
    }

    m->zone = ngx_shared_memory_add(cf, &name,
                                    sizeof(ngx_chat_metrics_zone_t)
                                    + 8 * ngx_pagesize,
                                    &ngx_chat_module);
    if (m->zone == NULL) {
        return NGX_ERROR;
    }

    m->zone->init = ngx_chat_metrics_zone_init;

    return NGX_OK;
}


ngx_uint_t
ngx_chat_metrics_location(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_uint_t                 i;
    ngx_chat_main_conf_t      *mcf;
    ngx_chat_metrics_conf_t   *m;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_chat_module);
    m = &mcf->metrics;

    for (i = 0; i < m->nnames; i++) {
        if (m->names[i].len == name->len
            && ngx_strncmp(m->names[i].data, name->data, name->len) == 0)
        {
            return i;
        }
    }

    if (i == NGX_CHAT_METRICS_LOCATIONS) {
        /* beyond that many, the last one counts for all the others */
        return NGX_CHAT_METRICS_LOCATIONS - 1;
    }

    m->names[i] = *name;
    m->nnames++;

    return i;
}


static ngx_int_t
ngx_chat_metrics_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t          *shpool;
    ngx_chat_metrics_zone_t  *z;

    if (data) {
        shm_zone->data = data;      /* a reload keeps the figures */
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    z = ngx_slab_calloc(shpool, sizeof(ngx_chat_metrics_zone_t));
    if (z == NULL) {
        return NGX_ERROR;
    }

    shpool->data = z;
    shm_zone->data = z;

    return NGX_OK;
}


static ngx_uint_t
ngx_chat_metrics_alive(ngx_pid_t pid)
{
    return kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}


ngx_int_t
ngx_chat_metrics_init_process(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf)
{
    ngx_uint_t                i;
    ngx_slab_pool_t          *shpool;
    ngx_chat_metrics_zone_t  *z;

    ngx_chat_metrics_shm = mcf->metrics.zone;

    if (ngx_chat_metrics_shm == NULL) {
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) ngx_chat_metrics_shm->shm.addr;
    z = ngx_chat_metrics_shm->data;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < NGX_CHAT_METRICS_SLOTS; i++) {
        if (z->slots[i].pid && !ngx_chat_metrics_alive(z->slots[i].pid)) {
            ngx_chat_metrics_add(&z->retired, &z->slots[i], 0);
            z->slots[i].pid = 0;
        }

        if (z->slots[i].pid == 0) {
            ngx_memzero(&z->slots[i], sizeof(ngx_chat_metrics_t));
            z->slots[i].pid = ngx_pid;
            ngx_chat_stats = &z->slots[i];
            break;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (i == NGX_CHAT_METRICS_SLOTS) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "chat: no metrics slot left: this process's figures "
                      "are not shown");
    }

    return NGX_OK;
}


void
ngx_chat_metrics_exit_process(ngx_cycle_t *cycle)
{
    ngx_slab_pool_t          *shpool;
    ngx_chat_metrics_zone_t  *z;

    if (ngx_chat_stats == &ngx_chat_metrics_private) {
        return;
    }

    shpool = (ngx_slab_pool_t *) ngx_chat_metrics_shm->shm.addr;
    z = ngx_chat_metrics_shm->data;

    ngx_shmtx_lock(&shpool->mutex);
    ngx_chat_metrics_add(&z->retired, ngx_chat_stats, 0);
    ngx_chat_stats->pid = 0;
    ngx_shmtx_unlock(&shpool->mutex);

    ngx_chat_stats = &ngx_chat_metrics_private;
}


void
ngx_chat_metrics_close(ngx_uint_t code)
{
    ngx_uint_t  i;

    for (i = 0; ngx_chat_metrics_codes[i]; i++) {
        if (ngx_chat_metrics_codes[i] == code) {
            break;
        }
    }

    /* the slot after the known codes: any other */
    ngx_chat_stats->closes[i]++;
}


void
ngx_chat_metrics_error(const char *code)
{
    ngx_uint_t  i;

    for (i = 0; ngx_chat_metrics_error_codes[i]; i++) {
        if (ngx_strcmp(ngx_chat_metrics_error_codes[i], code) == 0) {
            break;
        }
    }

    ngx_chat_stats->errors[i]++;
}


void
ngx_chat_metrics_ack(ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_CHAT_METRICS_BUCKETS; i++) {
        if (ms <= ngx_chat_metrics_bounds[i]) {
            ngx_chat_stats->ack_buckets[i]++;
            break;
        }
    }

    ngx_chat_stats->ack_count++;
    ngx_chat_stats->ack_sum_us += ms * 1000;
}


/* to += from: the counters, and the gauges too if gauges */

static void
ngx_chat_metrics_add(ngx_chat_metrics_t *to, ngx_chat_metrics_t *from,
    ngx_uint_t gauges)
{
    ngx_uint_t  i;

#define ngx_chat_metrics_add_array(f)                                         \
    for (i = 0; i < sizeof(to->f) / sizeof(to->f[0]); i++) {                  \
        to->f[i] += from->f[i];                                               \
    }

    ngx_chat_metrics_add_array(handshakes);
    ngx_chat_metrics_add_array(closes);
    ngx_chat_metrics_add_array(gone);
    ngx_chat_metrics_add_array(errors);
    ngx_chat_metrics_add_array(ack_buckets);
    ngx_chat_metrics_add_array(redis_reconnects);
    ngx_chat_metrics_add_array(typing);

    to->frames_in += from->frames_in;
    to->frames_out += from->frames_out;
    to->bytes_in += from->bytes_in;
    to->bytes_out += from->bytes_out;
    to->sends += from->sends;
    to->ack_count += from->ack_count;
    to->ack_sum_us += from->ack_sum_us;
    to->kafka_unavailable += from->kafka_unavailable;
    to->kafka_timeout += from->kafka_timeout;
    to->gaps += from->gaps;
    to->repairs += from->repairs;
    to->gaps_given_up += from->gaps_given_up;
    to->presence_events += from->presence_events;

    if (gauges) {
        ngx_chat_metrics_add_array(connections);
        ngx_chat_metrics_add_array(redis_up);

        to->kafka_queue += from->kafka_queue;
        to->kafka_up += from->kafka_up;
        to->draining += from->draining;
    }

#undef ngx_chat_metrics_add_array
}


static void
ngx_chat_metrics_sum(ngx_chat_metrics_t *sum, ngx_uint_t *processes)
{
    ngx_uint_t                i;
    ngx_slab_pool_t          *shpool;
    ngx_chat_metrics_zone_t  *z;

    ngx_memzero(sum, sizeof(ngx_chat_metrics_t));
    *processes = 0;

    if (ngx_chat_metrics_shm == NULL) {
        ngx_chat_metrics_add(sum, ngx_chat_stats, 1);
        *processes = 1;
        return;
    }

    shpool = (ngx_slab_pool_t *) ngx_chat_metrics_shm->shm.addr;
    z = ngx_chat_metrics_shm->data;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < NGX_CHAT_METRICS_SLOTS; i++) {
        if (z->slots[i].pid == 0) {
            continue;
        }

        if (!ngx_chat_metrics_alive(z->slots[i].pid)) {
            ngx_chat_metrics_add(&z->retired, &z->slots[i], 0);
            z->slots[i].pid = 0;
            continue;
        }

        ngx_chat_metrics_add(sum, &z->slots[i], 1);
        (*processes)++;
    }

    ngx_chat_metrics_add(sum, &z->retired, 0);

    ngx_shmtx_unlock(&shpool->mutex);
}


static ngx_int_t
ngx_chat_metrics_send(ngx_http_request_t *r, ngx_uint_t status, u_char *p,
    u_char *last)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = p;
    b->last = last;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = last - p;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


#define ngx_chat_metrics_help(p, name, type, help)                            \
    ngx_sprintf(p, "# HELP " name " " help "\n# TYPE " name " " type "\n")


ngx_int_t
ngx_chat_metrics_handler(ngx_http_request_t *r)
{
    u_char                    *buf, *p;
    size_t                     size;
    uint64_t                   cumulative;
    ngx_uint_t                 i, processes;
    ngx_chat_metrics_t         m;
    ngx_chat_main_conf_t      *mcf;
    ngx_chat_metrics_conf_t   *mc;

    static const char  *results[NGX_CHAT_HANDSHAKE_RESULTS] = {
        "101", "400", "401", "405", "426", "503"
    };

    static const char  *reasons[NGX_CHAT_GONE_REASONS] = {
        "closed", "silent", "stalled"
    };

    static const char  *links[NGX_CHAT_REDIS_LINKS] = {
        "commands", "subscription"
    };

    static const char  *paths[NGX_CHAT_TYPING_PATHS] = {
        "redis", "kafka"
    };

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_chat_module);
    mc = &mcf->metrics;

    ngx_chat_metrics_sum(&m, &processes);

    /* the fixed lines, and one per location */
    size = 16384;

    for (i = 0; i < mc->nnames; i++) {
        size += mc->names[i].len + 64;
    }

    buf = ngx_pnalloc(r->pool, size);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = buf;

    p = ngx_chat_metrics_help(p, "chat_nginx_processes", "gauge",
                              "nginx worker processes serving chat");
    p = ngx_sprintf(p, "chat_nginx_processes %ui\n", processes);

    p = ngx_chat_metrics_help(p, "chat_connections", "gauge",
                              "WebSocket sessions open, by location");
    for (i = 0; i < mc->nnames; i++) {
        p = ngx_sprintf(p, "chat_connections{location=\"%V\"} %uL\n",
                        &mc->names[i], m.connections[i]);
    }

    p = ngx_chat_metrics_help(p, "chat_handshakes_total", "counter",
                              "upgrade requests, by HTTP status answered");
    for (i = 0; i < NGX_CHAT_HANDSHAKE_RESULTS; i++) {
        p = ngx_sprintf(p, "chat_handshakes_total{status=\"%s\"} %uL\n",
                        results[i], m.handshakes[i]);
    }

    p = ngx_chat_metrics_help(p, "chat_frames_received_total", "counter",
                              "WebSocket messages received from clients");
    p = ngx_sprintf(p, "chat_frames_received_total %uL\n", m.frames_in);
    p = ngx_chat_metrics_help(p, "chat_frames_sent_total", "counter",
                              "WebSocket frames queued to clients");
    p = ngx_sprintf(p, "chat_frames_sent_total %uL\n", m.frames_out);
    p = ngx_chat_metrics_help(p, "chat_received_bytes_total", "counter",
                              "bytes read from clients");
    p = ngx_sprintf(p, "chat_received_bytes_total %uL\n", m.bytes_in);
    p = ngx_chat_metrics_help(p, "chat_sent_bytes_total", "counter",
                              "bytes written to clients");
    p = ngx_sprintf(p, "chat_sent_bytes_total %uL\n", m.bytes_out);

    p = ngx_chat_metrics_help(p, "chat_messages_sent_total", "counter",
                              "send frames handed to Kafka");
    p = ngx_sprintf(p, "chat_messages_sent_total %uL\n", m.sends);

    p = ngx_chat_metrics_help(p, "chat_closes_total", "counter",
                              "close frames sent, by close code");
    for (i = 0; ngx_chat_metrics_codes[i]; i++) {
        p = ngx_sprintf(p, "chat_closes_total{code=\"%ui\"} %uL\n",
                        ngx_chat_metrics_codes[i], m.closes[i]);
    }
    p = ngx_sprintf(p, "chat_closes_total{code=\"other\"} %uL\n",
                    m.closes[i]);

    p = ngx_chat_metrics_help(p, "chat_disconnects_total", "counter",
                              "sessions ended without a close handshake, "
                              "by reason");
    for (i = 0; i < NGX_CHAT_GONE_REASONS; i++) {
        p = ngx_sprintf(p, "chat_disconnects_total{reason=\"%s\"} %uL\n",
                        reasons[i], m.gone[i]);
    }

    p = ngx_chat_metrics_help(p, "chat_errors_total", "counter",
                              "error frames nginx answered, by code");
    for (i = 0; ngx_chat_metrics_error_codes[i]; i++) {
        p = ngx_sprintf(p, "chat_errors_total{code=\"%s\"} %uL\n",
                        ngx_chat_metrics_error_codes[i], m.errors[i]);
    }

    p = ngx_chat_metrics_help(p, "chat_send_ack_seconds", "histogram",
                              "from a send frame read to its ack written");
    for (i = 0, cumulative = 0; i < NGX_CHAT_METRICS_BUCKETS; i++) {
        cumulative += m.ack_buckets[i];
        p = ngx_sprintf(p, "chat_send_ack_seconds_bucket{le=\"%ui.%03ui\"} "
                           "%uL\n",
                        ngx_chat_metrics_bounds[i] / 1000,
                        ngx_chat_metrics_bounds[i] % 1000, cumulative);
    }
    p = ngx_sprintf(p, "chat_send_ack_seconds_bucket{le=\"+Inf\"} %uL\n"
                       "chat_send_ack_seconds_sum %uL.%06uL\n"
                       "chat_send_ack_seconds_count %uL\n",
                    m.ack_count, m.ack_sum_us / 1000000,
                    m.ack_sum_us % 1000000, m.ack_count);

    p = ngx_chat_metrics_help(p, "chat_kafka_queue_messages", "gauge",
                              "records waiting in the Kafka producers");
    p = ngx_sprintf(p, "chat_kafka_queue_messages %uL\n", m.kafka_queue);
    p = ngx_chat_metrics_help(p, "chat_kafka_up", "gauge",
                              "processes whose Kafka producer reaches a "
                              "broker");
    p = ngx_sprintf(p, "chat_kafka_up %uL\n", m.kafka_up);
    p = ngx_chat_metrics_help(p, "chat_kafka_delivery_errors_total",
                              "counter", "records Kafka did not take "
                              "(timeout: may have taken)");
    p = ngx_sprintf(p, "chat_kafka_delivery_errors_total{result="
                       "\"unavailable\"} %uL\n"
                       "chat_kafka_delivery_errors_total{result="
                       "\"timeout\"} %uL\n",
                    m.kafka_unavailable, m.kafka_timeout);

    p = ngx_chat_metrics_help(p, "chat_redis_up", "gauge",
                              "processes whose Redis link is connected");
    for (i = 0; i < NGX_CHAT_REDIS_LINKS; i++) {
        p = ngx_sprintf(p, "chat_redis_up{link=\"%s\"} %uL\n", links[i],
                        m.redis_up[i]);
    }
    p = ngx_chat_metrics_help(p, "chat_redis_reconnects_total", "counter",
                              "Redis links lost and made again");
    for (i = 0; i < NGX_CHAT_REDIS_LINKS; i++) {
        p = ngx_sprintf(p, "chat_redis_reconnects_total{link=\"%s\"} %uL\n",
                        links[i], m.redis_reconnects[i]);
    }

    p = ngx_chat_metrics_help(p, "chat_draining", "gauge",
                              "processes closing their sessions to stop");
    p = ngx_sprintf(p, "chat_draining %uL\n", m.draining);

    p = ngx_chat_metrics_help(p, "chat_delivery_gaps_total", "counter",
                              "gaps seen in the chains of sections");
    p = ngx_sprintf(p, "chat_delivery_gaps_total %uL\n", m.gaps);
    p = ngx_chat_metrics_help(p, "chat_delivery_repairs_total", "counter",
                              "gaps repaired from the store");
    p = ngx_sprintf(p, "chat_delivery_repairs_total %uL\n", m.repairs);
    p = ngx_chat_metrics_help(p, "chat_delivery_gaps_given_up_total",
                              "counter", "gaps not repaired in time "
                              "(the sessions were told to resync)");
    p = ngx_sprintf(p, "chat_delivery_gaps_given_up_total %uL\n",
                    m.gaps_given_up);

    p = ngx_chat_metrics_help(p, "chat_presence_events_total", "counter",
                              "presence events received for local "
                              "watchers");
    p = ngx_sprintf(p, "chat_presence_events_total %uL\n",
                    m.presence_events);

    p = ngx_chat_metrics_help(p, "chat_typing_total", "counter",
                              "typing frames passed on, by the way they "
                              "went: the Redis script, or Kafka while "
                              "Redis's sets are written again");
    for (i = 0; i < NGX_CHAT_TYPING_PATHS; i++) {
        p = ngx_sprintf(p, "chat_typing_total{path=\"%s\"} %uL\n",
                        paths[i], m.typing[i]);
    }

    r->headers_out.content_type_len = sizeof("text/plain; version=0.0.4")
                                      - 1;
    ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4");
    r->headers_out.content_type_lowcase = NULL;

    return ngx_chat_metrics_send(r, NGX_HTTP_OK, buf, p);
}


/*
 * Liveness is an answer at all; readiness is this process's links to
 * Redis and Kafka up and no drain under way (a load balancer takes it
 * out then).
 */

ngx_int_t
ngx_chat_health_handler(ngx_http_request_t *r)
{
    u_char               *buf, *p;
    ngx_uint_t            ready;
    ngx_chat_loc_conf_t  *lcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    buf = ngx_pnalloc(r->pool, 128);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.content_type_len = sizeof("text/plain") - 1;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_lowcase = NULL;

    if (!lcf->health_ready) {
        p = ngx_cpymem(buf, "alive\n", 6);
        return ngx_chat_metrics_send(r, NGX_HTTP_OK, buf, p);
    }

    ready = 1;
    p = buf;

    if (!ngx_chat_stats->redis_up[NGX_CHAT_REDIS_COMMANDS]
        || !ngx_chat_stats->redis_up[NGX_CHAT_REDIS_SUBSCRIPTION])
    {
        p = ngx_cpymem(p, "redis down\n", 11);
        ready = 0;
    }

    if (!ngx_chat_stats->kafka_up) {
        p = ngx_cpymem(p, "kafka down\n", 11);
        ready = 0;
    }

    if (ngx_chat_stats->draining) {
        p = ngx_cpymem(p, "draining\n", 9);
        ready = 0;
    }

    if (ready) {
        p = ngx_cpymem(p, "ready\n", 6);
    }

    return ngx_chat_metrics_send(r, ready ? NGX_HTTP_OK
                                          : NGX_HTTP_SERVICE_UNAVAILABLE,
                                 buf, p);
}
