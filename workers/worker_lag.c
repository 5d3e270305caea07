/*
 * worker_lag.c: the consumer group's lag per partition of the requests
 * topic, asked of Kafka by a handle of its own, as an operator's tool
 * would: the high watermark of each partition less the group's committed
 * offset (the partition's low watermark when the group has committed
 * nothing). It is the group's lag, not this worker's: every worker shows
 * the same figures, wherever the partitions are assigned (take the max by
 * partition).
 *
 * The handle never subscribes, so it never joins the group; it only asks.
 * chat_pusher asks the same of the push topic. The metrics server's
 * thread calls it every few seconds, with short
 * timeouts, so that a Kafka that is gone costs a scrape a second, not the
 * worker's loop anything.
 */

#include <stdio.h>
#include <stdlib.h>

#include <librdkafka/rdkafka.h>

#include "worker_lag.h"


#define CHAT_LAG_TIMEOUT_MS  1000


struct chat_lag_s {
    rd_kafka_t  *rk;
    char        *topic;
};


/* librdkafka's own complaints about this handle: the worker's log */
static void
chat_lag_log_cb(const rd_kafka_t *rk, int level, const char *facility,
    const char *message)
{
    (void) rk;

    if (level <= 4) {
        chat_log(level <= 3 ? "error" : "warn", "kafka lag %s: %s", facility,
                 message);
    }
}


chat_lag_t *
chat_lag_open(const char *brokers, const char *topic, const char *group)
{
    chat_lag_t       *lag;
    rd_kafka_conf_t  *conf;
    char              errstr[512];

    conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr))
           != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "client.id", "chat_worker_lag", errstr,
                             sizeof(errstr)) != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                             sizeof(errstr)) != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "log.connection.close", "false", errstr,
                             sizeof(errstr)) != RD_KAFKA_CONF_OK)
    {
        log_error("kafka: lag handle: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    rd_kafka_conf_set_log_cb(conf, chat_lag_log_cb);

    lag = chat_alloc(sizeof(chat_lag_t));
    lag->topic = chat_strdup(topic);
    lag->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));

    if (lag->rk == NULL) {
        log_error("kafka: lag handle: %s", errstr);
        rd_kafka_conf_destroy(conf);
        free(lag->topic);
        free(lag);
        return NULL;
    }

    return lag;
}


/* the topic's partition count, or -1 */
static int
chat_lag_partitions(chat_lag_t *lag)
{
    const struct rd_kafka_metadata  *md;
    rd_kafka_topic_t                *rkt;
    int                              n = -1;

    rkt = rd_kafka_topic_new(lag->rk, lag->topic, NULL);
    if (rkt == NULL) {
        return -1;
    }

    if (rd_kafka_metadata(lag->rk, 0, rkt, &md, CHAT_LAG_TIMEOUT_MS)
        == RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        if (md->topic_cnt == 1 && md->topics[0].err == 0) {
            n = md->topics[0].partition_cnt;
        }

        rd_kafka_metadata_destroy(md);
    }

    rd_kafka_topic_destroy(rkt);

    return n;
}


int
chat_lag_query(chat_lag_t *lag, int64_t *lags, int max)
{
    rd_kafka_topic_partition_list_t  *parts;
    rd_kafka_topic_partition_t       *p;
    int64_t                           lo, hi, done;
    int                               n, i;

    n = chat_lag_partitions(lag);

    if (n < 0) {
        return -1;
    }

    if (n > max) {
        n = max;
    }

    parts = rd_kafka_topic_partition_list_new(n);

    for (i = 0; i < n; i++) {
        rd_kafka_topic_partition_list_add(parts, lag->topic, i);
    }

    if (rd_kafka_committed(lag->rk, parts, CHAT_LAG_TIMEOUT_MS)
        != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        rd_kafka_topic_partition_list_destroy(parts);
        return -1;
    }

    for (i = 0; i < n; i++) {
        p = &parts->elems[i];

        if (rd_kafka_query_watermark_offsets(lag->rk, lag->topic, i, &lo, &hi,
                                             CHAT_LAG_TIMEOUT_MS)
            != RD_KAFKA_RESP_ERR_NO_ERROR)
        {
            n = -1;
            break;
        }

        done = p->err == 0 && p->offset >= 0 ? p->offset : lo;
        chat_metrics_set(&lags[i], hi > done ? hi - done : 0);
    }

    rd_kafka_topic_partition_list_destroy(parts);

    return n;
}


void
chat_lag_refresh(chat_lag_t *lag, chat_metrics_t *m)
{
    /* not known: no figures rather than old ones */
    chat_metrics_set(&m->lag_partitions,
                     (int32_t) chat_lag_query(lag, m->lag,
                                              CHAT_METRICS_PARTITIONS));
}


void
chat_lag_close(chat_lag_t *lag)
{
    if (lag == NULL) {
        return;
    }

    rd_kafka_destroy(lag->rk);
    free(lag->topic);
    free(lag);
}
