/*
 * worker_index.c: the search index's to-do list of chat_worker
 * (worker_index.h). Pure: the loop runs the statements.
 */

#include <stdlib.h>
#include <string.h>

#include "worker_index.h"


void
chat_index_init(chat_index_t *ix, int64_t interval_ms, size_t max,
    int64_t sweep_ms)
{
    memset(ix, 0, sizeof(*ix));
    ix->interval_ms = interval_ms;
    ix->max = max > 0 ? max : 1;
    ix->sweep_ms = sweep_ms;
}


void
chat_index_free(chat_index_t *ix)
{
    free(ix->ids);
    free(ix->parts);
    free(ix->offsets);
    free(ix->run_ids);
    free(ix->run_parts);
    free(ix->run_offsets);
    free(ix->held);
    free(ix->todo);
    memset(ix, 0, sizeof(*ix));
}


/* where partition is, or would go, in a list ascending */
static size_t
chat_index_find(const int32_t *list, size_t n, int32_t partition)
{
    size_t  lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (list[mid] < partition) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return lo;
}


void
chat_index_add(chat_index_t *ix, int64_t message_id, int32_t partition,
    int64_t offset, int64_t now_ms)
{
    size_t  i;

    if (ix->n == ix->cap) {
        ix->cap = ix->cap ? ix->cap * 2 : 256;
        ix->ids = chat_realloc(ix->ids, ix->cap * sizeof(int64_t));
    }

    if (ix->n == 0) {
        ix->since_ms = now_ms;
    }

    ix->ids[ix->n++] = message_id;

    i = chat_index_find(ix->parts, ix->nparts, partition);

    if (i < ix->nparts && ix->parts[i] == partition) {
        if (offset > ix->offsets[i]) {
            ix->offsets[i] = offset;
        }

        return;
    }

    if (ix->nparts == ix->capparts) {
        ix->capparts = ix->capparts ? ix->capparts * 2 : 16;
        ix->parts = chat_realloc(ix->parts, ix->capparts * sizeof(int32_t));
        ix->offsets = chat_realloc(ix->offsets,
                                   ix->capparts * sizeof(int64_t));
    }

    memmove(&ix->parts[i + 1], &ix->parts[i],
            (ix->nparts - i) * sizeof(int32_t));
    memmove(&ix->offsets[i + 1], &ix->offsets[i],
            (ix->nparts - i) * sizeof(int64_t));
    ix->parts[i] = partition;
    ix->offsets[i] = offset;
    ix->nparts++;
}


void
chat_index_assign(chat_index_t *ix, int32_t partition)
{
    size_t  i = chat_index_find(ix->held, ix->nheld, partition);

    if (i < ix->nheld && ix->held[i] == partition) {
        ix->todo[i] = true;
        return;
    }

    if (ix->nheld == ix->capheld) {
        ix->capheld = ix->capheld ? ix->capheld * 2 : 16;
        ix->held = chat_realloc(ix->held, ix->capheld * sizeof(int32_t));
        ix->todo = chat_realloc(ix->todo, ix->capheld * sizeof(bool));
    }

    memmove(&ix->held[i + 1], &ix->held[i],
            (ix->nheld - i) * sizeof(int32_t));
    memmove(&ix->todo[i + 1], &ix->todo[i], (ix->nheld - i) * sizeof(bool));
    ix->held[i] = partition;
    ix->todo[i] = true;
    ix->nheld++;
}


void
chat_index_revoke(chat_index_t *ix, int32_t partition)
{
    size_t  i = chat_index_find(ix->held, ix->nheld, partition);

    if (i == ix->nheld || ix->held[i] != partition) {
        return;
    }

    memmove(&ix->held[i], &ix->held[i + 1],
            (ix->nheld - i - 1) * sizeof(int32_t));
    memmove(&ix->todo[i], &ix->todo[i + 1],
            (ix->nheld - i - 1) * sizeof(bool));
    ix->nheld--;
}


chat_index_job_t
chat_index_next(chat_index_t *ix, int64_t now_ms, bool force,
    int32_t *partition)
{
    size_t  i;

    if (ix->running) {
        return CHAT_INDEX_IDLE;
    }

    if (force) {
        return ix->n > 0 ? CHAT_INDEX_FLUSH : CHAT_INDEX_IDLE;
    }

    if (ix->sweep_ms > 0 && now_ms >= ix->next_sweep_ms) {
        for (i = 0; i < ix->nheld; i++) {
            ix->todo[i] = true;
        }

        ix->next_sweep_ms = now_ms + ix->sweep_ms;
    }

    for (i = 0; i < ix->nheld; i++) {
        if (ix->todo[i]) {
            *partition = ix->held[i];
            return CHAT_INDEX_PARTITION;
        }
    }

    if (ix->n > 0
        && (force || ix->n >= ix->max
            || now_ms - ix->since_ms >= ix->interval_ms))
    {
        return CHAT_INDEX_FLUSH;
    }

    return CHAT_INDEX_IDLE;
}


#define chat_index_swap(type, a, b)                                         \
    do { type t_ = a; a = b; b = t_; } while (0)

void
chat_index_take(chat_index_t *ix)
{
    chat_index_swap(int64_t *, ix->ids, ix->run_ids);
    chat_index_swap(size_t, ix->n, ix->nrun);
    chat_index_swap(size_t, ix->cap, ix->caprun);
    chat_index_swap(int32_t *, ix->parts, ix->run_parts);
    chat_index_swap(int64_t *, ix->offsets, ix->run_offsets);
    chat_index_swap(size_t, ix->nparts, ix->nrun_parts);
    chat_index_swap(size_t, ix->capparts, ix->caprun_parts);

    ix->n = 0;
    ix->nparts = 0;
    ix->running = true;
}


void
chat_index_flushed(chat_index_t *ix, bool ok)
{
    size_t  i, k;

    if (!ok) {
        /* their partitions, when still held, are looked over instead */
        for (i = 0; i < ix->nrun_parts; i++) {
            k = chat_index_find(ix->held, ix->nheld, ix->run_parts[i]);

            if (k < ix->nheld && ix->held[k] == ix->run_parts[i]) {
                ix->todo[k] = true;
            }
        }
    }

    ix->nrun = 0;
    ix->nrun_parts = 0;
    ix->running = false;
}


void
chat_index_looked_over(chat_index_t *ix, int32_t partition)
{
    size_t  i = chat_index_find(ix->held, ix->nheld, partition);

    if (i < ix->nheld && ix->held[i] == partition) {
        ix->todo[i] = false;
    }
}
