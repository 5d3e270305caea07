/*
 * worker_topic.h: a client's setting, its log, and a topic made sure of
 * (worker_topic.c).
 */

#ifndef CHAT_WORKER_TOPIC_H
#define CHAT_WORKER_TOPIC_H

#include <librdkafka/rdkafka.h>

#include "worker.h"


/* one setting of a client's configuration; false (logged) when refused */
bool chat_topic_set(rd_kafka_conf_t *conf, const char *name,
    const char *value);

/* librdkafka's log lines as the worker's own (JSON lines): every client's
 * log callback */
void chat_topic_log(const rd_kafka_t *rk, int level, const char *facility,
    const char *message);

/* creates the topic unless it exists and waits until it is usable: a
 * consumer subscribed to a topic it cannot see yet would only look again
 * minutes later, a producer would hold its records. false on stop, or
 * when the topic never showed; a topic of another partition count is
 * taken as it is (adding partitions would move keys between them: that is
 * an operator's decision) */
bool chat_topic_ensure(rd_kafka_t *rk, const char *name, int partitions,
    chat_stop_t *stop);


#endif /* CHAT_WORKER_TOPIC_H */
