/*
 * worker_httpd.h: the metrics endpoint of chat_worker and chat_pusher
 * (worker_httpd.c), a thread of its own serving GET /metrics and, when
 * the program has one, GET /health.
 */

#ifndef CHAT_WORKER_HTTPD_H
#define CHAT_WORKER_HTTPD_H

#include "worker_util.h"


typedef struct chat_httpd_s  chat_httpd_t;

/* what the thread serves; every function runs in the thread, with data */
typedef struct {
    /* /metrics: the whole text of a scrape into b */
    void   (*metrics)(void *data, chat_buf_t *b);
    /* /health: its text into b, true when all is well (200, else 503);
     * NULL: no /health */
    bool   (*health)(void *data, chat_buf_t *b);
    /* between requests, at once and then every tick_ms; NULL: none */
    void   (*tick)(void *data);
    long     tick_ms;
    void    *data;
} chat_httpd_site_t;

/* listens on addr ("127.0.0.1:9464") and serves site from a thread (site
 * is copied); NULL after saying why */
chat_httpd_t *chat_httpd_start(const char *addr,
    const chat_httpd_site_t *site);
/* stops the thread, closes everything */
void chat_httpd_stop(chat_httpd_t *h);


#endif /* CHAT_WORKER_HTTPD_H */
