/*
 * test_worker_index.c: unit tests of chat_worker's to-do list for the
 * search index (worker_index.c): when the pending ids are due, the
 * highest offset per partition they were stored from, the ids of a
 * statement running apart from those that come meanwhile, the partitions
 * taken looked over first (and again every sweep), a failed flush left to
 * the look-over of its partitions, and a stop's flush.
 *
 * The worker's files are included, not linked. Prints "N passed, N
 * failed" and exits 1 on a failure.
 */

#include "../../workers/worker_util.c"
#include "../../workers/worker_index.c"

#include "unit.h"


static void
test_due(void)
{
    chat_index_t  ix;
    int32_t       p = -1;
    int           i;

    chat_index_init(&ix, 250, 4, 0);

    CHECK(chat_index_next(&ix, 1000, false, &p) == CHAT_INDEX_IDLE,
          "nothing pending");
    CHECK(chat_index_next(&ix, 1000, true, &p) == CHAT_INDEX_IDLE,
          "nothing pending, even on a stop");

    chat_index_add(&ix, 10, 2, 100, 1000);
    chat_index_add(&ix, 11, 0, 7, 1100);
    chat_index_add(&ix, 12, 2, 90, 1200);

    CHECK(chat_index_next(&ix, 1249, false, &p) == CHAT_INDEX_IDLE,
          "the oldest has waited less than the interval");
    CHECK(chat_index_next(&ix, 1100, true, &p) == CHAT_INDEX_FLUSH,
          "a stop flushes at once");
    CHECK(chat_index_next(&ix, 1250, false, &p) == CHAT_INDEX_FLUSH,
          "the oldest has waited the interval");

    chat_index_take(&ix);
    CHECK(ix.running && ix.n == 0 && ix.nparts == 0, "taken: running");
    CHECK(ix.nrun == 3 && ix.run_ids[0] == 10 && ix.run_ids[1] == 11
          && ix.run_ids[2] == 12, "the ids in their order: %zu", ix.nrun);
    CHECK(ix.nrun_parts == 2 && ix.run_parts[0] == 0
          && ix.run_parts[1] == 2, "the partitions ascending: %zu",
          ix.nrun_parts);
    CHECK(ix.run_offsets[0] == 7 && ix.run_offsets[1] == 100,
          "the highest offset of each: %lld %lld",
          (long long) ix.run_offsets[0], (long long) ix.run_offsets[1]);

    /* while it runs: the new ones wait, and nothing else is due */
    chat_index_add(&ix, 13, 1, 50, 1300);
    CHECK(chat_index_next(&ix, 9999, false, &p) == CHAT_INDEX_IDLE,
          "nothing while a statement runs");
    CHECK(chat_index_next(&ix, 9999, true, &p) == CHAT_INDEX_IDLE,
          "nor on a stop: it is waited for first");
    CHECK(ix.n == 1 && ix.nrun == 3, "apart: %zu %zu", ix.n, ix.nrun);

    chat_index_flushed(&ix, true);
    CHECK(!ix.running && ix.nrun == 0, "flushed: nothing running");
    CHECK(ix.n == 1 && ix.ids[0] == 13 && ix.nparts == 1
          && ix.parts[0] == 1 && ix.offsets[0] == 50,
          "flushed: the one that came meanwhile is pending: %zu", ix.n);
    CHECK(chat_index_next(&ix, 1549, false, &p) == CHAT_INDEX_IDLE,
          "its own interval: not yet");
    CHECK(chat_index_next(&ix, 1550, false, &p) == CHAT_INDEX_FLUSH,
          "its own interval: due");
    chat_index_take(&ix);
    chat_index_flushed(&ix, true);
    CHECK(ix.n == 0 && ix.nparts == 0, "flushed: nothing pending");
    CHECK(chat_index_next(&ix, 5000, false, &p) == CHAT_INDEX_IDLE,
          "flushed: nothing due");

    /* the interval counts from the oldest of the new ones */
    chat_index_add(&ix, 20, 1, 5, 6000);
    CHECK(chat_index_next(&ix, 6100, false, &p) == CHAT_INDEX_IDLE,
          "a new oldest");

    /* max pending: due at once */
    for (i = 0; i < 3; i++) {
        chat_index_add(&ix, 21 + i, 1, 6 + i, 6000);
    }

    CHECK(chat_index_next(&ix, 6000, false, &p) == CHAT_INDEX_FLUSH,
          "max pending is due at once");
    chat_index_take(&ix);
    CHECK(ix.nrun_parts == 1 && ix.run_offsets[0] == 8,
          "one partition, to 8");
    chat_index_flushed(&ix, true);

    chat_index_free(&ix);
}


static void
test_partitions(void)
{
    chat_index_t  ix;
    int32_t       p = -1;

    chat_index_init(&ix, 250, 100, 60000);

    chat_index_assign(&ix, 3);
    chat_index_assign(&ix, 1);
    chat_index_add(&ix, 10, 3, 100, 0);

    CHECK(chat_index_next(&ix, 1000, false, &p) == CHAT_INDEX_PARTITION
          && p == 1, "the partitions taken first, ascending: %d", p);
    chat_index_looked_over(&ix, 1);
    CHECK(chat_index_next(&ix, 1000, false, &p) == CHAT_INDEX_PARTITION
          && p == 3, "then the next: %d", p);
    chat_index_looked_over(&ix, 3);
    CHECK(chat_index_next(&ix, 1000, false, &p) == CHAT_INDEX_FLUSH,
          "then the pending ids");

    /* a flush that failed: its partitions looked over instead, not those
     * of the ids that came meanwhile */
    chat_index_take(&ix);
    chat_index_add(&ix, 30, 1, 100, 1000);
    chat_index_flushed(&ix, false);
    CHECK(ix.nrun == 0 && ix.n == 1, "failed: dropped from memory");
    CHECK(chat_index_next(&ix, 1000, false, &p) == CHAT_INDEX_PARTITION
          && p == 3, "failed: its partition looked over: %d", p);
    chat_index_looked_over(&ix, 3);
    CHECK(chat_index_next(&ix, 1000, false, &p) == CHAT_INDEX_IDLE,
          "looked over: nothing due (the new one waits its interval)");
    chat_index_take(&ix);
    chat_index_flushed(&ix, true);

    /* a partition lost is no longer this worker's to look over */
    chat_index_assign(&ix, 2);
    chat_index_revoke(&ix, 2);
    chat_index_revoke(&ix, 9);
    CHECK(ix.nheld == 2 && ix.held[0] == 1 && ix.held[1] == 3,
          "held: %zu", ix.nheld);
    CHECK(chat_index_next(&ix, 1000, false, &p) == CHAT_INDEX_IDLE,
          "the lost one is not looked over");

    /* a failed flush of a partition no longer held: its next owner's */
    chat_index_add(&ix, 11, 2, 5, 1000);
    chat_index_take(&ix);
    chat_index_flushed(&ix, false);
    CHECK(chat_index_next(&ix, 1000, false, &p) == CHAT_INDEX_IDLE,
          "not held: not looked over here");

    /* the sweep: every held partition again */
    CHECK(chat_index_next(&ix, 61000, false, &p) == CHAT_INDEX_PARTITION
          && p == 1, "the sweep: %d", p);
    chat_index_looked_over(&ix, 1);
    CHECK(chat_index_next(&ix, 61000, false, &p) == CHAT_INDEX_PARTITION
          && p == 3, "the sweep: %d", p);
    chat_index_looked_over(&ix, 3);
    CHECK(chat_index_next(&ix, 61001, false, &p) == CHAT_INDEX_IDLE,
          "swept");

    /* a stop flushes and looks nothing over */
    chat_index_assign(&ix, 4);
    chat_index_add(&ix, 12, 4, 1, 61001);
    CHECK(chat_index_next(&ix, 61001, true, &p) == CHAT_INDEX_FLUSH,
          "a stop: the flush only");

    chat_index_free(&ix);
}


int
main(void)
{
    test_due();
    test_partitions();

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
