
/*
 * The Kafka link of one nginx worker process: an idempotent acks=all
 * producer created after fork (librdkafka's threads do not survive it),
 * whose main queue wakes the nginx event loop through a pipe, with a timer
 * as a fallback. A record Kafka could not take in chat_kafka_timeout goes
 * back to the handler given at init, which answers the session it came
 * from (found by the session id inside the record): the record owns all
 * its memory, nothing points at a connection that may be gone.
 */


#include "ngx_chat.h"

#include <librdkafka/rdkafka.h>


#define NGX_CHAT_KAFKA_POLL_INTERVAL  1000
#define NGX_CHAT_KAFKA_FLUSH_TIMEOUT  2000


static ngx_int_t ngx_chat_kafka_set(rd_kafka_conf_t *conf, ngx_log_t *log,
    const char *name, const char *value);
static void ngx_chat_kafka_delivered(rd_kafka_t *rk,
    const rd_kafka_message_t *msg, void *opaque);
static void ngx_chat_kafka_error(rd_kafka_t *rk, int err, const char *reason,
    void *opaque);
static void ngx_chat_kafka_log(const rd_kafka_t *rk, int level,
    const char *facility, const char *buf);
static int ngx_chat_kafka_stats(rd_kafka_t *rk, char *json, size_t len,
    void *opaque);
static void ngx_chat_kafka_wake_handler(ngx_event_t *ev);
static void ngx_chat_kafka_timer_handler(ngx_event_t *ev);


static rd_kafka_t        *ngx_chat_kafka_producer;
static rd_kafka_topic_t  *ngx_chat_kafka_topic;
static rd_kafka_queue_t  *ngx_chat_kafka_main_queue;
static ngx_connection_t  *ngx_chat_kafka_wake;
static ngx_socket_t       ngx_chat_kafka_pipe[2] = { -1, -1 };
static ngx_event_t        ngx_chat_kafka_timer;
static ngx_chat_kafka_failed_pt  ngx_chat_kafka_failed;


ngx_int_t
ngx_chat_kafka_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf,
    ngx_chat_kafka_failed_pt failed)
{
    char              errstr[512], *brokers, *topic, timeout[32];
    char              linger[32];
    rd_kafka_t       *rk;
    rd_kafka_conf_t  *conf;

    brokers = ngx_pnalloc(cycle->pool, mcf->kafka_brokers.len + 1);
    topic = ngx_pnalloc(cycle->pool, mcf->kafka_topic.len + 1);
    if (brokers == NULL || topic == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn((u_char *) brokers, mcf->kafka_brokers.data,
                       mcf->kafka_brokers.len + 1);
    (void) ngx_cpystrn((u_char *) topic, mcf->kafka_topic.data,
                       mcf->kafka_topic.len + 1);
    *ngx_sprintf((u_char *) timeout, "%M", mcf->kafka_timeout) = '\0';
    *ngx_sprintf((u_char *) linger, "%M", mcf->kafka_linger) = '\0';

    ngx_chat_kafka_failed = failed;

    conf = rd_kafka_conf_new();

    if (ngx_chat_kafka_set(conf, cycle->log, "bootstrap.servers", brokers)
        != NGX_OK
        || ngx_chat_kafka_set(conf, cycle->log, "acks", "all") != NGX_OK
        || ngx_chat_kafka_set(conf, cycle->log, "enable.idempotence", "true")
           != NGX_OK
        /*
         * Kafka's cost is per record batch: a few milliseconds of linger
         * make the batches, and the broker's CPU, several times cheaper
         */
        || ngx_chat_kafka_set(conf, cycle->log, "linger.ms", linger)
           != NGX_OK
        /* only failures need an answer: no event per record delivered */
        || ngx_chat_kafka_set(conf, cycle->log,
                              "delivery.report.only.error", "true")
           != NGX_OK
        || ngx_chat_kafka_set(conf, cycle->log, "socket.nagle.disable",
                              "true") != NGX_OK
        /*
         * a broker that restarts is connected to again within a second
         * of its coming back (the default backoff grows to 10 s, which
         * made the first ack after a broker restart take up to that
         * much longer)
         */
        || ngx_chat_kafka_set(conf, cycle->log, "reconnect.backoff.ms",
                              "100") != NGX_OK
        || ngx_chat_kafka_set(conf, cycle->log, "reconnect.backoff.max.ms",
                              "1000") != NGX_OK
        /* and the partitions' leaders, lost with it, looked up as often */
        || ngx_chat_kafka_set(conf, cycle->log,
                              "topic.metadata.refresh.fast.interval.ms",
                              "100") != NGX_OK
        || ngx_chat_kafka_set(conf, cycle->log, "message.timeout.ms",
                              timeout) != NGX_OK
        || ngx_chat_kafka_set(conf, cycle->log, "queue.buffering.max.kbytes",
                              "262144") != NGX_OK
        || ngx_chat_kafka_set(conf, cycle->log, "client.id",
                              "ngx_chat") != NGX_OK
        /* logs come through the main queue, into this thread */
        || ngx_chat_kafka_set(conf, cycle->log, "log.queue", "true")
           != NGX_OK
        /* the brokers' states, for readiness (ngx_chat_kafka_stats) */
        || ngx_chat_kafka_set(conf, cycle->log, "statistics.interval.ms",
                              "2000") != NGX_OK)
    {
        rd_kafka_conf_destroy(conf);
        return NGX_ERROR;
    }

    rd_kafka_conf_set_dr_msg_cb(conf, ngx_chat_kafka_delivered);
    rd_kafka_conf_set_error_cb(conf, ngx_chat_kafka_error);
    rd_kafka_conf_set_log_cb(conf, ngx_chat_kafka_log);
    rd_kafka_conf_set_stats_cb(conf, ngx_chat_kafka_stats);

    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat: kafka producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NGX_ERROR;
    }

    ngx_chat_kafka_producer = rk;

    (void) rd_kafka_set_log_queue(rk, NULL);

    ngx_chat_kafka_topic = rd_kafka_topic_new(rk, topic, NULL);
    if (ngx_chat_kafka_topic == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat: kafka topic \"%s\": %s", topic,
                      rd_kafka_err2str(rd_kafka_last_error()));
        return NGX_ERROR;
    }

    /* librdkafka writes a byte to the pipe when its queue gets work */

    if (pipe2(ngx_chat_kafka_pipe, O_NONBLOCK|O_CLOEXEC) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "chat: pipe2() failed");
        return NGX_ERROR;
    }

    ngx_chat_kafka_wake = ngx_get_connection(ngx_chat_kafka_pipe[0],
                                             cycle->log);
    if (ngx_chat_kafka_wake == NULL) {
        return NGX_ERROR;
    }

    ngx_chat_kafka_wake->read->handler = ngx_chat_kafka_wake_handler;
    ngx_chat_kafka_wake->read->log = cycle->log;

    if (ngx_add_event(ngx_chat_kafka_wake->read, NGX_READ_EVENT, 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_chat_kafka_main_queue = rd_kafka_queue_get_main(rk);
    rd_kafka_queue_io_event_enable(ngx_chat_kafka_main_queue,
                                   ngx_chat_kafka_pipe[1], "1", 1);

    ngx_chat_kafka_timer.handler = ngx_chat_kafka_timer_handler;
    ngx_chat_kafka_timer.log = cycle->log;
    ngx_chat_kafka_timer.cancelable = 1;
    ngx_add_timer(&ngx_chat_kafka_timer, NGX_CHAT_KAFKA_POLL_INTERVAL);

    return NGX_OK;
}


void
ngx_chat_kafka_exit(ngx_cycle_t *cycle)
{
    rd_kafka_t  *rk;

    rk = ngx_chat_kafka_producer;
    if (rk == NULL) {
        return;
    }

    if (ngx_chat_kafka_timer.timer_set) {
        ngx_del_timer(&ngx_chat_kafka_timer);
    }

    if (rd_kafka_flush(rk, NGX_CHAT_KAFKA_FLUSH_TIMEOUT)
        != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "chat: kafka: %d records not delivered at exit",
                      rd_kafka_outq_len(rk));
    }

    if (ngx_chat_kafka_main_queue) {
        rd_kafka_queue_io_event_enable(ngx_chat_kafka_main_queue, -1,
                                       NULL, 0);
        rd_kafka_queue_destroy(ngx_chat_kafka_main_queue);
    }

    if (ngx_chat_kafka_topic) {
        rd_kafka_topic_destroy(ngx_chat_kafka_topic);
    }

    rd_kafka_destroy(rk);
    ngx_chat_kafka_producer = NULL;

    if (ngx_chat_kafka_wake) {
        ngx_close_connection(ngx_chat_kafka_wake);
        ngx_chat_kafka_wake = NULL;
    }

    if (ngx_chat_kafka_pipe[1] != -1) {
        (void) close(ngx_chat_kafka_pipe[1]);
    }
}


ngx_int_t
ngx_chat_kafka_produce(u_char *key, size_t key_len, u_char *value,
    size_t value_len)
{
    if (ngx_chat_kafka_producer == NULL) {
        return NGX_ERROR;
    }

    /* the record is handed over, not copied: one copy less per message */
    if (rd_kafka_produce(ngx_chat_kafka_topic, RD_KAFKA_PARTITION_UA,
                         RD_KAFKA_MSG_F_FREE, value, value_len, key, key_len,
                         NULL)
        == -1)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: kafka produce failed: %s",
                      rd_kafka_err2str(rd_kafka_last_error()));
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_chat_kafka_produce_to(int32_t partition, u_char *value, size_t value_len)
{
    if (ngx_chat_kafka_producer == NULL) {
        return NGX_ERROR;
    }

    if (rd_kafka_produce(ngx_chat_kafka_topic, partition, RD_KAFKA_MSG_F_FREE,
                         value, value_len, NULL, 0, NULL)
        == -1)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: kafka produce to partition %D failed: %s",
                      partition, rd_kafka_err2str(rd_kafka_last_error()));
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_chat_kafka_set(rd_kafka_conf_t *conf, ngx_log_t *log, const char *name,
    const char *value)
{
    char  errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "chat: kafka setting %s=%s: %s", name, value, errstr);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_chat_kafka_delivered(rd_kafka_t *rk, const rd_kafka_message_t *msg,
    void *opaque)
{
    ngx_uint_t  maybe;

    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        return;
    }

    /* a timeout after the record was sent may still have stored it */
    maybe = rd_kafka_message_status(msg) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "chat: kafka did not take a record%s: %s",
                  maybe ? " (or may have)" : "", rd_kafka_err2str(msg->err));

    if (maybe) {
        ngx_chat_stats->kafka_timeout++;

    } else {
        ngx_chat_stats->kafka_unavailable++;
    }

    ngx_chat_kafka_failed(msg->payload, msg->len, maybe);
}


static void
ngx_chat_kafka_error(rd_kafka_t *rk, int err, const char *reason,
    void *opaque)
{
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        ngx_chat_stats->kafka_up = 0;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "chat: kafka: %s: %s",
                  rd_kafka_err2name(err), reason);
}


static void
ngx_chat_kafka_log(const rd_kafka_t *rk, int level, const char *facility,
    const char *buf)
{
    ngx_uint_t  ngx_level;

    ngx_level = level <= 3 ? NGX_LOG_ERR
                           : level <= 5 ? NGX_LOG_NOTICE : NGX_LOG_INFO;

    ngx_log_error(ngx_level, ngx_cycle->log, 0, "chat: kafka %s: %s",
                  facility, buf);
}


/*
 * The statistics come through the main queue too: a broker whose state
 * is "UP" means the producer can deliver. A plain search, not a parse:
 * the only thing wanted from the document is that.
 */

static int
ngx_chat_kafka_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    ngx_chat_stats->kafka_up =
        ngx_strnstr((u_char *) json, "\"state\":\"UP\"", len) != NULL;

    return 0;       /* librdkafka frees json */
}


static void
ngx_chat_kafka_wake_handler(ngx_event_t *ev)
{
    u_char  buf[256];

    while (read(ngx_chat_kafka_pipe[0], buf, sizeof(buf)) > 0) {
        /* drain */
    }

    (void) rd_kafka_poll(ngx_chat_kafka_producer, 0);
}


static void
ngx_chat_kafka_timer_handler(ngx_event_t *ev)
{
    (void) rd_kafka_poll(ngx_chat_kafka_producer, 0);

    ngx_chat_stats->kafka_queue = rd_kafka_outq_len(ngx_chat_kafka_producer);

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_CHAT_KAFKA_POLL_INTERVAL);
    }
}
