/*
 * worker_lag.h: the consumer group's lag per partition (worker_lag.c),
 * for the metrics.
 */

#ifndef CHAT_WORKER_LAG_H
#define CHAT_WORKER_LAG_H

#include "worker_metrics.h"


typedef struct chat_lag_s  chat_lag_t;

chat_lag_t *chat_lag_open(const char *brokers, const char *topic,
    const char *group);
/* asks Kafka (about a second at most per question) for the lag of each
 * partition into lags (atomic stores, for another thread to read), max
 * at most; the partitions written, or -1 when Kafka did not answer */
int chat_lag_query(chat_lag_t *lag, int64_t *lags, int max);
/* asks Kafka (about a second at most per question) and writes the
 * figures into m, or marks them unknown */
void chat_lag_refresh(chat_lag_t *lag, chat_metrics_t *m);
void chat_lag_close(chat_lag_t *lag);


#endif /* CHAT_WORKER_LAG_H */
