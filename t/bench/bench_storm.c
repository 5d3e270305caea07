
/*
 * chat_bench: the reconnect storm. The dm pairs connect, each sends
 * --storm-msgs messages; then every client drops its connection and
 * reconnects at once (retrying with backoff and jitter until
 * --storm-timeout), and syncs: the time until all are back and until all
 * have their sync_done.
 */


#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>


/* CMD_SETUP: something in every conversation for the syncs to return */
void
storm_setup(bench_t *ctx)
{
    int  i, k;

    for (i = 0; i < ctx->npairs; i++) {
        if (pair_live(ctx, &ctx->pairs[i])) {
            for (k = 0; k < ctx->opt.storm_msgs; k++) {
                dm_send(ctx, &ctx->pairs[i], ctx->now, 0);
            }
        }
    }
}


int
storm_setup_tick(bench_t *ctx)
{
    return outstanding(ctx) == 0 || ctx->now >= ctx->cmd.deadline;
}


/* the messages of a sync count, the pairs' own ones before the storm */
void
storm_message(bench_t *ctx, conn_t *c, json_t *j)
{
    if (ctx->phase == PH_STORM) {
        INC(ctx->slot->st_sync_msgs);
        return;
    }
    dm_message(ctx, c, j);
}


/* back after the drop: the first hello counts, then the sync */
void
storm_hello(bench_t *ctx, conn_t *c)
{
    char  buf[128];
    int   n;

    if (!c->back) {
        c->back = 1;
        INC(ctx->slot->st_back);
        hist_add(&ctx->slot->st_hello, ctx->now - ctx->cmd.t_start);
        __atomic_store_n(&ctx->slot->st_last_hello, ctx->now,
                         __ATOMIC_RELAXED);
    }
    n = snprintf(buf, sizeof(buf), "{\"type\":\"sync\",\"req_id\":\"st%u\"}",
                 c->li);
    ws_text(ctx, c, buf, (size_t) n);
}


void
storm_sync_done(bench_t *ctx, conn_t *c, json_t *j)
{
    (void) j;
    if (ctx->phase == PH_STORM && !c->synced) {
        c->synced = 1;
        INC(ctx->slot->st_synced);
        hist_add(&ctx->slot->st_sync, ctx->now - ctx->cmd.t_start);
        __atomic_store_n(&ctx->slot->st_last_sync, ctx->now,
                         __ATOMIC_RELAXED);
    }
}


void
storm_conversations(bench_t *ctx, conn_t *c, json_t *j)
{
    json_t  *items = json_object_get(j, "items");

    (void) c;
    if (ctx->phase == PH_STORM && json_is_array(items)) {
        ADD(ctx->slot->st_convs, json_array_size(items));
    }
}


void
storm_begin(bench_t *ctx)
{
    int     i;
    conn_t *c;

    close_all(ctx, 0);
    ctx->phase = PH_STORM;
    for (i = 0; i < ctx->nconns; i++) {
        c = &ctx->conns[i];
        c->attempts = 0;
        c->back = 0;
        c->synced = 0;
    }
    ctx->next_launch = 0;
    ctx->inflight = 0;
    ctx->slot->st_clients = (uint64_t) ctx->nconns;
}


/* CMD_STORM from its start time: 1 once every client synced or gave up */
int
storm_tick(bench_t *ctx)
{
    int  i;

    if (ctx->phase != PH_STORM) {
        if (ctx->now < ctx->cmd.t_start) {
            return 0;
        }
        storm_begin(ctx);
    }
    launch(ctx);
    if (LOAD(ctx->slot->st_synced) + LOAD(ctx->slot->st_failed)
        >= (uint64_t) ctx->nconns)
    {
        return 1;
    }
    if (ctx->now < ctx->cmd.deadline) {
        return 0;
    }
    for (i = 0; i < ctx->nconns; i++) {
        if (!ctx->conns[i].synced && ctx->conns[i].state != CS_FAILED) {
            INC(ctx->slot->st_failed);
        }
    }
    return 1;
}


void
storm_retry(bench_t *ctx, conn_t *c)
{
    int64_t backoff;
    int     k = c->attempts > 6 ? 6 : c->attempts;

    backoff = ((int64_t) 100000 << (k > 0 ? k - 1 : 0));
    if (backoff > 5000000) {
        backoff = 5000000;
    }
    backoff += (int64_t) (rng(ctx) % 100000);
    if (ctx->now + backoff < ctx->cmd.deadline) {
        c->state = CS_WAIT;
        c->retry_at = ctx->now + backoff;
        INC(ctx->slot->st_retries);
    } else {
        c->state = CS_FAILED;
        INC(ctx->slot->st_failed);
    }
}


static void
tick_storm(bench_t *ctx, void *arg)
{
    int64_t now = now_us();

    (void) arg;
    if (now >= ctx->next_progress) {
        ctx->next_progress = now + 500000;
        progress(ctx, "storm: %" PRIu64 " back, %" PRIu64 " synced, %" PRIu64
                 " retries, %" PRIu64 " given up",
                 SUMF(ctx, st_back), SUMF(ctx, st_synced),
                 SUMF(ctx, st_retries), SUMF(ctx, st_failed));
    }
}


int
scen_storm(bench_t *ctx, json_t *res)
{
    json_t  *o = json_object(), *fr = json_object();
    hist_t  *hh = xcalloc(1, sizeof(hist_t)), *hs = xcalloc(1, sizeof(hist_t));
    cpu_t    a, b;
    uint64_t f0[NFAIL], clients, back, synced, v;
    int64_t  t0, lh = 0, ls = 0;
    long     lo0, ld0;
    int      i, k;

    json_object_set_new(res, "connections",
                        do_connect(ctx, ctx->opt.window, ctx->opt.max_fail));
    if (SUMF(ctx, conn_ok) == 0) {
        set_error_from_slots(ctx, res);
        fatal(ctx, "no connection was established");
    }
    /* one message per pair, so that every sync has something to return */
    ctx->shm->cmd.t_start = now_us();
    ctx->shm->cmd.deadline = ctx->shm->cmd.t_start
                             + (int64_t) (ctx->opt.drain * 1e6);
    cmd_publish(ctx, CMD_SETUP);
    wait_cmd(ctx, tick_drain, NULL);
    progress_end(ctx);
    for (k = 0; k < NFAIL; k++) {
        for (f0[k] = 0, i = 0; i < ctx->nprocs; i++) {
            f0[k] += ctx->shm->slot[i].fail[k];
        }
    }
    listen_drops(&lo0, &ld0);
    cpu_snap(ctx, &a, NULL, NULL);
    t0 = now_us() + 200000;
    ctx->shm->cmd.t_start = t0;
    ctx->shm->cmd.deadline = t0 + (int64_t) (ctx->opt.storm_timeout * 1e6);
    ctx->shm->cmd.window = 0;
    ctx->shm->cmd.max_fail = 0;
    ctx->next_progress = t0;
    cmd_publish(ctx, CMD_STORM);
    wait_cmd(ctx, tick_storm, NULL);
    progress_end(ctx);
    cpu_snap(ctx, &b, NULL, NULL);
    for (i = 0; i < ctx->nprocs; i++) {
        hist_merge(hh, &ctx->shm->slot[i].st_hello);
        hist_merge(hs, &ctx->shm->slot[i].st_sync);
        if (ctx->shm->slot[i].st_last_hello > lh) {
            lh = ctx->shm->slot[i].st_last_hello;
        }
        if (ctx->shm->slot[i].st_last_sync > ls) {
            ls = ctx->shm->slot[i].st_last_sync;
        }
    }
    for (k = 0; k < NFAIL; k++) {
        for (v = 0, i = 0; i < ctx->nprocs; i++) {
            v += ctx->shm->slot[i].fail[k];
        }
        if (v > f0[k]) {
            set_int(fr, FAIL_NAMES[k], (v - f0[k]));
        }
    }
    clients = SUMF(ctx, st_clients);
    back = SUMF(ctx, st_back);
    synced = SUMF(ctx, st_synced);
    set_int(o, "clients", clients);
    set_int(o, "back", back);
    set_int(o, "synced", synced);
    set_int(o, "given_up", SUMF(ctx, st_failed));
    set_int(o, "retries", SUMF(ctx, st_retries));
    json_object_set_new(o, "failed_attempts", fr);
    json_object_set_new(o, "all_back_s",
                        back == clients && lh
                        ? json_real((double) (lh - t0) / 1e6) : json_null());
    json_object_set_new(o, "all_synced_s",
                        synced == clients && ls
                        ? json_real((double) (ls - t0) / 1e6) : json_null());
    json_object_set_new(o, "last_back_s",
                        lh ? json_real((double) (lh - t0) / 1e6)
                           : json_null());
    json_object_set_new(o, "last_synced_s",
                        ls ? json_real((double) (ls - t0) / 1e6)
                           : json_null());
    json_object_set_new(o, "back_ms", lat_json(hh));
    json_object_set_new(o, "synced_ms", lat_json(hs));
    set_int(o, "sync_messages", SUMF(ctx, st_sync_msgs));
    set_int(o, "sync_conversations", SUMF(ctx, st_convs));
    set_real(o, "timeout_s", ctx->opt.storm_timeout);
    json_object_set_new(o, "kernel", listen_json(lo0, ld0));
    json_object_set_new(res, "storm", o);
    json_object_set_new(res, "cpu",
                        cpu_json(&a, &b, (double) clients, "client"));
    free(hh);
    free(hs);
    if (synced == 0) {
        set_error_from_slots(ctx, res);
        fatal(ctx, "no client got its sync_done after the reconnect");
    }
    return 0;
}
