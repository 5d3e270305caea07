/*
 * worker_pushes.h: the producer of the push topic (worker_pushes.c).
 */

#ifndef CHAT_WORKER_PUSHES_H
#define CHAT_WORKER_PUSHES_H

#include "worker_outbox.h"


typedef struct chat_pushes_s  chat_pushes_t;

/* the producer, once the topic exists (created with partitions when
 * missing); NULL when it could not be made, or on stop */
chat_pushes_t *chat_pushes_open(const char *brokers, const char *topic,
    int partitions, chat_stop_t *stop);
/* what the waits for Kafka's acknowledgements do meanwhile, after the
 * first second (worker_util.h) */
void chat_pushes_set_wait(chat_pushes_t *p, chat_wait_pt meanwhile,
    void *data);
/*
 * One record per push (ngx_chat_wire.h's push record, keyed by the user),
 * then waits until Kafka acknowledged every one of them: what failed is
 * produced again, with backoff. false when the wait was given up (stop,
 * or the meanwhile said so): nothing of the batch is to be committed.
 */
bool chat_pushes_produce(chat_pushes_t *p,
    const chat_outbox_push_t *const *pushes, size_t n);
void chat_pushes_close(chat_pushes_t *p);


#endif /* CHAT_WORKER_PUSHES_H */
