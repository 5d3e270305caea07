/*
 * worker_httpd.h: the metrics endpoint of chat_worker (worker_httpd.c),
 * a thread of its own serving GET /metrics.
 */

#ifndef CHAT_WORKER_HTTPD_H
#define CHAT_WORKER_HTTPD_H

#include "worker_lag.h"
#include "worker_metrics.h"


typedef struct chat_httpd_s  chat_httpd_t;

/* listens on addr ("127.0.0.1:9464") and serves metrics from a thread;
 * lag may be NULL; NULL after saying why */
chat_httpd_t *chat_httpd_start(const char *addr, chat_metrics_t *metrics,
    chat_lag_t *lag);
/* stops the thread, closes everything */
void chat_httpd_stop(chat_httpd_t *h);


#endif /* CHAT_WORKER_HTTPD_H */
