/*
 * worker_topic.c: what the Kafka clients of chat_worker (its consumer of
 * the requests, its producer of the pushes) and chat_pusher's consumer
 * share: a setting, checked, their log lines, and a topic created when missing with the
 * partitions asked for, then waited for until the broker's metadata shows
 * it, through the admin API of whichever client handle the caller has.
 */

#include <librdkafka/rdkafka.h>

#include "worker_topic.h"
#include "worker_util.h"


#define CHAT_ADMIN_TIMEOUT_MS  15000


bool
chat_topic_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char  errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        log_error("kafka: cannot set %s=%s: %s", name, value, errstr);
        return false;
    }

    return true;
}


void
chat_topic_log(const rd_kafka_t *rk, int level, const char *facility,
    const char *message)
{
    (void) rk;

    chat_log(level <= 3 ? "error" : level <= 4 ? "warn" : "info",
             "kafka %s: %s", facility, message);
}


static bool
chat_topic_create(rd_kafka_t *rk, const char *name, int partitions,
    chat_stop_t *stop)
{
    rd_kafka_NewTopic_t                  *topic;
    rd_kafka_AdminOptions_t              *options;
    rd_kafka_queue_t                     *queue;
    rd_kafka_event_t                     *event;
    const rd_kafka_CreateTopics_result_t *result;
    const rd_kafka_topic_result_t       **topics;
    rd_kafka_resp_err_t                   err;
    size_t                                ntopics;
    int                                   waited;
    char                                  errstr[512];
    bool                                  ok = false;

    topic = rd_kafka_NewTopic_new(name, partitions, 1, errstr,
                                  sizeof(errstr));
    if (topic == NULL) {
        log_error("kafka: topic %s: %s", name, errstr);
        return false;
    }

    options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);

    if (rd_kafka_AdminOptions_set_operation_timeout(options,
            CHAT_ADMIN_TIMEOUT_MS, errstr, sizeof(errstr))
        || rd_kafka_AdminOptions_set_request_timeout(options,
            CHAT_ADMIN_TIMEOUT_MS, errstr, sizeof(errstr)))
    {
        log_error("kafka: admin options: %s", errstr);
    }

    queue = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &topic, 1, options, queue);

    /* in slices, so that SIGTERM does not wait for the admin timeout */
    event = NULL;

    for (waited = 0;
         event == NULL && waited < CHAT_ADMIN_TIMEOUT_MS + 5000 && !*stop;
         waited += 200)
    {
        event = rd_kafka_queue_poll(queue, 200);
    }

    if (event == NULL) {
        log_error("kafka: creating topic %s: %s", name,
                  *stop ? "stopped" : "no answer");

    } else if (rd_kafka_event_error(event)) {
        log_error("kafka: creating topic %s: %s", name,
                  rd_kafka_event_error_string(event));

    } else {
        result = rd_kafka_event_CreateTopics_result(event);
        topics = rd_kafka_CreateTopics_result_topics(result, &ntopics);
        err = ntopics ? rd_kafka_topic_result_error(topics[0])
                      : RD_KAFKA_RESP_ERR_UNKNOWN;

        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_info("kafka: created topic %s with %d partitions", name,
                     partitions);
            ok = true;

        } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            ok = true;

        } else {
            log_error("kafka: creating topic %s: %s", name,
                      ntopics ? rd_kafka_topic_result_error_string(topics[0])
                              : "no result");
        }
    }

    if (event) {
        rd_kafka_event_destroy(event);
    }

    rd_kafka_queue_destroy(queue);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_NewTopic_destroy(topic);

    return ok;
}


/* the topic's partition count once the broker's metadata shows it; 0 while
 * it does not yet */
static int
chat_topic_partitions(rd_kafka_t *rk, const char *name)
{
    const struct rd_kafka_metadata  *md;
    rd_kafka_topic_t                *rkt;
    rd_kafka_resp_err_t              err;
    int                              count = 0;

    rkt = rd_kafka_topic_new(rk, name, NULL);
    if (rkt == NULL) {
        return 0;
    }

    err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);

    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == 0) {
            count = md->topics[0].partition_cnt;
        }

        rd_kafka_metadata_destroy(md);
    }

    rd_kafka_topic_destroy(rkt);

    return count;
}


bool
chat_topic_ensure(rd_kafka_t *rk, const char *name, int partitions,
    chat_stop_t *stop)
{
    chat_backoff_t  backoff = { 0 };
    int             count, tries;

    while (!chat_topic_create(rk, name, partitions, stop)) {
        if (!chat_backoff_wait(&backoff, stop)) {
            return false;
        }
    }

    for (tries = 0; (count = chat_topic_partitions(rk, name)) == 0; tries++) {
        if (tries == 100 || !chat_sleep_ms(100, stop)) {
            log_error("kafka: topic %s does not show in the metadata",
                      name);
            return false;
        }
    }

    if (count != partitions) {
        /* adding partitions would move keys (conversations, users)
         * between partitions and break their order: that is an
         * operator's decision */
        log_warn("kafka: topic %s has %d partitions, not %d", name,
                 count, partitions);
    }

    return true;
}
