/*
 * pusher_watch.h: what the metrics thread looks at every few seconds
 * (pusher_watch.c): the outbox's rows still to push, and whether
 * PostgreSQL and Kafka answer.
 */

#ifndef CHAT_PUSHER_WATCH_H
#define CHAT_PUSHER_WATCH_H

#include "pusher_metrics.h"


typedef struct chat_watch_s  chat_watch_t;

/* connections of its own, made at the first look */
chat_watch_t *chat_watch_open(const char *conninfo, const char *brokers,
    const char *topic, const char *group, chat_pusher_metrics_t *m);
/* one look, its figures into the metrics; seconds at most */
void chat_watch_look(chat_watch_t *w);
void chat_watch_close(chat_watch_t *w);


#endif /* CHAT_PUSHER_WATCH_H */
