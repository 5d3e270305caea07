/*
 * pusher_jobs.h: the push outbox in PostgreSQL (pusher_jobs.c).
 */

#ifndef CHAT_PUSHER_JOBS_H
#define CHAT_PUSHER_JOBS_H

#include "pusher.h"
#include "worker_kafka.h"
#include "worker_store.h"


typedef struct {
    long  lease_ms;         /* a claim older than this: its pusher died */
    long  retry_ms;         /* the first retry's delay, doubling */
    long  retry_max_ms;
    int   max_attempts;
} chat_push_policy_t;

chat_store_t *chat_jobs_open(const char *conninfo, chat_stop_t *stop);
/* what the waits for PostgreSQL do meanwhile (worker_util.h) */
void chat_jobs_set_wait(chat_store_t *st, chat_wait_pt meanwhile,
    void *data);
void chat_jobs_close(chat_store_t *st);

/* the push topic's records into the outbox, due at once, each (message,
 * user, device) once ever; a record that is not a push record is logged
 * and skipped. Returns how many were well formed (*fresh: of them, how
 * many rows were new), -1 when the wait for PostgreSQL was given up */
long chat_jobs_enter(chat_store_t *st, const chat_record_t *records,
    size_t n, long *fresh);

/* claims up to max due rows into jobs (each job's strings are its own);
 * rows whose claim has lapsed become 'unknown' (*lapsed: how many).
 * Returns how many, or -1 on stop */
long chat_jobs_claim(chat_store_t *st, const chat_push_policy_t *policy,
    chat_push_job_t *jobs, size_t max, long *lapsed);

/* records the outcome of each job; false on stop */
bool chat_jobs_finish(chat_store_t *st, const chat_push_policy_t *policy,
    chat_push_job_t *jobs, const chat_push_outcome_t *outcomes, size_t n);

/* gives claimed rows back untried (Redis was not there to ask) */
bool chat_jobs_release(chat_store_t *st, chat_push_job_t *jobs, size_t n);

void chat_jobs_free(chat_push_job_t *jobs, size_t n);


#endif /* CHAT_PUSHER_JOBS_H */
