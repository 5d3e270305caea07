/*
 * worker_index.h: what chat_worker has still to put into the search index
 * (worker_index.c), pure state: the ids of the text messages its sends
 * stored and committed, and the partitions whose stored messages are to
 * be looked over for any that a killed predecessor left out. The loop
 * asks it for the next statement to run (chat_store_index_start and
 * chat_store_index_partition, worker_store_index.c) and tells it how that
 * went. The ids of a statement still running are apart from those that
 * came since: a failure sends back only its own.
 *
 * The pending ids wait at most interval_ms, or until max of them are
 * pending; each partition held is looked over when it is taken and every
 * sweep_ms after that.
 */

#ifndef CHAT_WORKER_INDEX_H
#define CHAT_WORKER_INDEX_H

#include "worker_util.h"


/* pending ids that make the next statement due at once */
#define CHAT_INDEX_MAX       2000
#define CHAT_INDEX_SWEEP_MS  60000


typedef struct {
    int64_t    interval_ms;
    int64_t    sweep_ms;
    size_t     max;

    int64_t   *ids;             /* pending message ids, as stored */
    size_t     n;
    size_t     cap;
    int64_t    since_ms;        /* when the oldest of them came */

    /* the highest offset of each partition among the pending ids' records,
     * ascending by partition */
    int32_t   *parts;
    int64_t   *offsets;
    size_t     nparts;
    size_t     capparts;

    /* the ids and positions of the statement running, if one is */
    bool       running;
    int64_t   *run_ids;
    size_t     nrun;
    size_t     caprun;
    int32_t   *run_parts;
    int64_t   *run_offsets;
    size_t     nrun_parts;
    size_t     caprun_parts;

    int32_t   *held;            /* partitions held, ascending */
    size_t     nheld;
    size_t     capheld;
    bool      *todo;            /* held[i] is to be looked over */
    int64_t    next_sweep_ms;
} chat_index_t;

typedef enum {
    CHAT_INDEX_IDLE,            /* nothing due, or a statement running */
    CHAT_INDEX_FLUSH,           /* the pending ids: chat_index_take them */
    CHAT_INDEX_PARTITION        /* one partition looked over */
} chat_index_job_t;

void chat_index_init(chat_index_t *ix, int64_t interval_ms, size_t max,
    int64_t sweep_ms);
void chat_index_free(chat_index_t *ix);

/* a text message stored by the record (partition, offset), committed */
void chat_index_add(chat_index_t *ix, int64_t message_id, int32_t partition,
    int64_t offset, int64_t now_ms);

/* partitions taken (to be looked over) and lost */
void chat_index_assign(chat_index_t *ix, int32_t partition);
void chat_index_revoke(chat_index_t *ix, int32_t partition);

/* what to run now, if anything (nothing while a statement runs):
 * partitions to look over come first, then the pending ids when they are
 * due; with force (a stop) the pending ids, due or not, and nothing else;
 * *partition is set for CHAT_INDEX_PARTITION */
chat_index_job_t chat_index_next(chat_index_t *ix, int64_t now_ms,
    bool force, int32_t *partition);

/* the pending ids become the running statement's (run_ids, run_parts,
 * run_offsets); those that come after wait for the next one */
void chat_index_take(chat_index_t *ix);
/* the running statement's ids are indexed (or, failed, left to the look
 * over of their partitions, which is queued) */
void chat_index_flushed(chat_index_t *ix, bool ok);
/* the partition is looked over */
void chat_index_looked_over(chat_index_t *ix, int32_t partition);


#endif /* CHAT_WORKER_INDEX_H */
