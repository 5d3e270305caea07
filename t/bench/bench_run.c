
/*
 * chat_bench: the parent. It forks the load processes and drives them
 * through the shared block: one command at a time (cmd_publish), waiting
 * until each has done it (wait_cmd) while it samples and shows progress.
 * Connecting, a rate step with its sampled backlog and verdict, draining
 * and the final integrity check are here, the scenarios' own parts in
 * their files. A load process that dies is a broken run (fatal).
 *
 * SIGINT and SIGTERM only leave their number for the parent's loops,
 * which then end the load processes and die of that signal.
 */


#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


typedef struct {
    int64_t  t_start, t_end, next;
    int      n;
    double   ack[4096];
    double   del[4096];
    double   rate;
} sampler_t;


/* the one state outside bench_t: set by the signal handler, read below */
static volatile sig_atomic_t  bench_signal;


static void
on_signal(int sig)
{
    bench_signal = sig;
}


static void
bench_signals(void)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}


/* after SIGINT or SIGTERM: the load processes end, then this one, of it */
void
check_signal(bench_t *ctx)
{
    int  i, sig;

    sig = bench_signal;
    if (sig == 0) {
        return;
    }
    for (i = 0; i < ctx->nprocs; i++) {
        if (ctx->kids[i] > 0) {
            kill(ctx->kids[i], SIGTERM);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}


void
start_kids(bench_t *ctx)
{
    pid_t  pid;
    int    i;

    fflush(stdout);
    fflush(stderr);
    for (i = 0; i < ctx->nprocs; i++) {
        pid = fork();
        if (pid < 0) {
            fatal(ctx, "fork: %s", strerror(errno));
        }
        if (pid == 0) {
            child_main(ctx, i);
            _exit(0);
        }
        ctx->kids[i] = pid;
    }
    bench_signals();
}


void
quit_kids(bench_t *ctx)
{
    int  i;

    check_signal(ctx);
    cmd_publish(ctx, CMD_QUIT);
    for (i = 0; i < ctx->nprocs; i++) {
        if (ctx->kids[i] > 0) {
            waitpid(ctx->kids[i], NULL, 0);
            ctx->kids[i] = 0;
        }
    }
    check_signal(ctx);
}


static void
kill_kids(bench_t *ctx)
{
    int i;

    for (i = 0; i < ctx->nprocs; i++) {
        if (ctx->kids[i] > 0) {
            kill(ctx->kids[i], SIGTERM);
        }
    }
    for (i = 0; i < ctx->nprocs; i++) {
        if (ctx->kids[i] > 0) {
            waitpid(ctx->kids[i], NULL, 0);
            ctx->kids[i] = 0;
        }
    }
}


void
fatal(bench_t *ctx, const char *fmt, ...)
{
    va_list ap;
    char    buf[1024];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (ctx->had_progress) {
        fputc('\n', stderr);
    }
    fprintf(stderr, "chat_bench: %s: FAILED: %s\n", ctx->sc->name, buf);
    kill_kids(ctx);
    if (ctx->result) {
        json_object_set_new(ctx->result, "status", json_string("failed"));
        json_object_set_new(ctx->result, "reason", json_string(buf));
        write_json(ctx, ctx->result);
    }
    exit(2);
}


void
cmd_publish(bench_t *ctx, int code)
{
    ctx->shm->cmd.code = code;
    ctx->cmd_seq++;
    __atomic_store_n(&ctx->shm->cmd.seq, ctx->cmd_seq, __ATOMIC_RELEASE);
}


void
wait_cmd(bench_t *ctx, tick_fn tick, void *arg)
{
    int   i, done, st;
    pid_t p;

    for (;;) {
        done = 1;
        for (i = 0; i < ctx->nprocs; i++) {
            if (__atomic_load_n(&ctx->shm->slot[i].done_cmd, __ATOMIC_ACQUIRE)
                != ctx->cmd_seq)
            {
                done = 0;
            }
        }
        if (done) {
            return;
        }
        p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            for (i = 0; i < ctx->nprocs; i++) {
                if (ctx->kids[i] == p) {
                    ctx->kids[i] = 0;
                }
            }
            fatal(ctx, "load process %d died (%s %d)", (int) p,
                  WIFSIGNALED(st) ? "signal" : "exit",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
        check_signal(ctx);
        if (tick) {
            tick(ctx, arg);
        }
        usleep(5000);
    }
}


void
progress(bench_t *ctx, const char *fmt, ...)
{
    va_list ap;

    if (!isatty(2) && !ctx->opt.verbose) {
        return;
    }
    va_start(ap, fmt);
    fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    ctx->had_progress = 1;
}


void
progress_end(bench_t *ctx)
{
    if (ctx->had_progress) {
        fputs("\r\033[K", stderr);
        ctx->had_progress = 0;
    }
}


static void
tick_connect(bench_t *ctx, void *arg)
{
    int64_t now = now_us();

    (void) arg;
    if (now >= ctx->next_progress) {
        ctx->next_progress = now + 500000;
        progress(ctx, "%s: connecting: %" PRIu64 " ok, %" PRIu64 " failed",
                 ctx->sc->name, SUMF(ctx, conn_ok), SUMF(ctx, conn_fail));
    }
}


json_t *
do_connect(bench_t *ctx, int window, long max_fail)
{
    json_t  *o = json_object(), *fr = json_object();
    hist_t  *h = xcalloc(1, sizeof(hist_t));
    int64_t  t0 = now_us(), first = 0, last = 0, v;
    uint64_t ok, fail, f;
    double   secs;
    int      i, k, http = 0;

    ctx->shm->cmd.window = window;
    ctx->shm->cmd.max_fail = max_fail > 0
                             ? (max_fail + ctx->nprocs - 1) / ctx->nprocs : 0;
    ctx->shm->cmd.t_start = t0;
    ctx->next_progress = t0 + 1000000;
    cmd_publish(ctx, CMD_CONNECT);
    wait_cmd(ctx, tick_connect, NULL);
    progress_end(ctx);
    ok = SUMF(ctx, conn_ok);
    fail = SUMF(ctx, conn_fail);
    for (i = 0; i < ctx->nprocs; i++) {
        v = ctx->shm->slot[i].t_first_start;
        if (v && (first == 0 || v < first)) {
            first = v;
        }
        if (ctx->shm->slot[i].t_last_hello > last) {
            last = ctx->shm->slot[i].t_last_hello;
        }
        hist_merge(h, &ctx->shm->slot[i].conn_lat);
        if (ctx->shm->slot[i].last_http) {
            http = ctx->shm->slot[i].last_http;
        }
    }
    for (k = 0; k < NFAIL; k++) {
        for (f = 0, i = 0; i < ctx->nprocs; i++) {
            f += ctx->shm->slot[i].fail[k];
        }
        if (f) {
            set_int(fr, FAIL_NAMES[k], f);
        }
    }
    secs = last > first ? (double) (last - first) / 1e6 : 0;
    set_int(o, "wanted", SUMF(ctx, nconns));
    set_int(o, "ok", ok);
    set_int(o, "failed", fail);
    set_int(o, "not_attempted", (SUMF(ctx, nconns) - ok - fail));
    json_object_set_new(o, "fail_reasons", fr);
    if (http) {
        set_int(o, "last_http_status", http);
    }
    set_real(o, "seconds", secs);
    set_real(o, "rate_per_s", secs > 0 ? (double) ok / secs : 0);
    set_int(o, "window_per_proc", window);
    json_object_set_new(o, "handshake_ms", lat_json(h));
    free(h);
    return o;
}


static void
tick_step(bench_t *ctx, void *arg)
{
    sampler_t *s = arg;
    int64_t    now = now_us(), a, d;

    if (now >= s->next && s->next <= s->t_end + 500000 && s->n < 4096) {
        a = (int64_t) (SUMF(ctx, live_sent) - SUMF(ctx, live_acked)
                       - SUMF(ctx, live_errs));
        d = (int64_t) (SUMF(ctx, live_expected) - SUMF(ctx, live_delivered));
        s->ack[s->n] = (double) a;
        s->del[s->n] = (double) d;
        s->n++;
        s->next += 1000000;
        progress(ctx, "%s: %.0f msg/s, %.0f s: sent %" PRIu64 ", acked %" PRIu64
                 ", ack backlog %" PRId64 ", delivery backlog %" PRId64,
                 ctx->sc->name, s->rate,
                 (double) (now - s->t_start) / 1e6, SUMF(ctx, live_sent),
                 SUMF(ctx, live_acked), a, d);
    }
}


void
tick_drain(bench_t *ctx, void *arg)
{
    int64_t now = now_us();

    (void) arg;
    if (now >= ctx->next_progress) {
        ctx->next_progress = now + 1000000;
        progress(ctx, "%s: draining: ack backlog %" PRId64
                 ", delivery backlog %" PRId64, ctx->sc->name,
                 (int64_t) (SUMF(ctx, live_sent) - SUMF(ctx, live_acked)
                            - SUMF(ctx, live_errs)),
                 (int64_t) (SUMF(ctx, live_expected)
                            - SUMF(ctx, live_delivered)));
    }
}


/* wait until nothing is in flight; 1 if drained */
int
drain(bench_t *ctx, double secs)
{
    ctx->shm->cmd.t_start = now_us();
    ctx->shm->cmd.deadline = ctx->shm->cmd.t_start + (int64_t) (secs * 1e6);
    ctx->next_progress = ctx->shm->cmd.t_start + 1000000;
    cmd_publish(ctx, CMD_DRAIN);
    wait_cmd(ctx, tick_drain, NULL);
    progress_end(ctx);
    return live_outstanding(ctx) == 0;
}


json_t *
run_step(bench_t *ctx, int idx, double rate, double dur, const char *kind,
    int *held, int *drained)
{
    json_t    *o = json_object(), *ba, *bd, *cpu;
    sampler_t *smp = xcalloc(1, sizeof(sampler_t));
    step_t    *agg = xcalloc(1, sizeof(step_t));
    cpu_t      a, b;
    uint64_t   active = 0, act[MAX_PROCS];
    int        i, half;
    double     ratio, slope, maxb, allowed, dps, exp_per_msg, dur_real;
    char       verdict[256];

    if (live_outstanding(ctx) > 0) {
        drain(ctx, ctx->opt.drain * 4);
    }
    for (i = 0; i < ctx->nprocs; i++) {
        act[i] = ctx->shm->slot[i].active_units;
        active += act[i];
    }
    for (i = 0; i < ctx->nprocs; i++) {
        /* each load process its share, by its units that can send */
        ctx->shm->cmd.rate[i] =
            active ? rate * (double) act[i] / (double) active : 0;
    }
    cpu_snap(ctx, &a, NULL, NULL);
    ctx->shm->cmd.step = idx;
    ctx->shm->cmd.t_start = now_us() + 200000;
    ctx->shm->cmd.t_end = ctx->shm->cmd.t_start + (int64_t) (dur * 1e6);
    smp->t_start = ctx->shm->cmd.t_start;
    smp->t_end = ctx->shm->cmd.t_end;
    smp->next = smp->t_start;
    smp->rate = rate;
    cmd_publish(ctx, CMD_RATE);
    wait_cmd(ctx, tick_step, smp);
    while (smp->next <= smp->t_end && now_us() < smp->t_end + 100000) {
        check_signal(ctx);
        tick_step(ctx, smp);
        usleep(5000);
    }
    progress_end(ctx);
    *drained = drain(ctx, ctx->opt.drain);
    cpu_snap(ctx, &b, NULL, NULL);

    for (i = 0; i < ctx->nprocs; i++) {
        step_merge(agg, &ctx->shm->slot[i].steps[idx]);
    }
    dur_real = dur;
    json_object_set_new(o, "kind", json_string(kind));
    set_real(o, "offered_rate", rate);
    set_real(o, "duration_s", dur);
    set_int(o, "active_units", active);
    set_int(o, "scheduled", agg->scheduled);
    set_int(o, "sent", agg->sent);
    set_int(o, "not_sent", agg->not_sent);
    set_int(o, "acked", agg->acked);
    set_int(o, "errors", agg->errs);
    set_real(o, "offered_actual_rate", (double) agg->sent / dur_real);
    set_real(o, "ack_rate", (double) agg->acks_in_win / dur_real);
    set_int(o, "duplicates", agg->dups);
    set_int(o, "out_of_order", agg->order_err);
    set_real(o, "max_generator_lag_ms", (double) agg->max_lag / 1000.0);
    if (ctx->opt.scenario == SC_GROUP) {
        set_int(o, "expected_deliveries", agg->expected);
        set_int(o, "deliveries", agg->deliveries);
        set_int(o, "complete", agg->complete);
        set_real(o, "deliveries_per_s", (double) agg->deliv_in_win / dur_real);
        if (ctx->opt.receipts) {
            set_int(o, "receipts_sent", agg->receipts_sent);
            set_int(o, "receipt_frames", agg->receipt_frames);
        }
        json_object_set_new(o, "first_member_ms", lat_json(&agg->first));
        json_object_set_new(o, "last_member_ms", lat_json(&agg->last));
        dps = (double) agg->deliv_in_win / dur_real;
        exp_per_msg = agg->sent ? (double) agg->expected / (double) agg->sent
                                : 0;
    } else {
        set_int(o, "delivered", agg->delivered);
        dps = (double) agg->deliv_in_win / dur_real;
        exp_per_msg = 1;
    }
    set_real(o, "throughput_msg_s",
             ctx->opt.scenario == SC_GROUP
             ? (double) agg->acks_in_win / dur_real : dps);
    json_object_set_new(o, "ack_ms", lat_json(&agg->ack));
    json_object_set_new(o, "deliver_ms", lat_json(&agg->deliv));
    ba = json_array();
    bd = json_array();
    for (i = 0; i < smp->n; i++) {
        json_array_append_new(ba, json_integer((json_int_t) smp->ack[i]));
        json_array_append_new(bd, json_integer((json_int_t) smp->del[i]));
    }
    json_object_set_new(o, "backlog_acks", ba);
    json_object_set_new(o, "backlog_deliveries", bd);
    json_object_set_new(o, "drained", json_boolean(*drained));

    /*
     * held: the deliveries kept up, and over the second half of the window
     * the delivery backlog neither grew (least-squares slope at most 1% of
     * the offered deliveries per second) nor exceeded --max-backlog seconds
     * of traffic
     */
    ratio = agg->expected > 0 && agg->sent > 0
            ? (double) agg->deliv_in_win / ((double) agg->sent * exp_per_msg)
            : 0;
    half = smp->n / 2;
    slope = 0;
    maxb = 0;
    if (smp->n - half >= 3) {
        double sx = 0, sy = 0, sxx = 0, sxy = 0, m = smp->n - half, x;

        for (i = half; i < smp->n; i++) {
            x = i;
            sx += x;
            sy += smp->del[i];
            sxx += x * x;
            sxy += x * smp->del[i];
        }
        slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
    }
    for (i = half; i < smp->n; i++) {
        if (smp->del[i] > maxb) {
            maxb = smp->del[i];
        }
    }
    allowed = 0.01 * rate * exp_per_msg;
    set_real(o, "backlog_slope_per_s", slope);
    set_real(o, "backlog_max_s", rate > 0 ? maxb / (rate * exp_per_msg) : 0);
    *held = 1;
    verdict[0] = '\0';
    if (agg->sent == 0) {
        *held = 0;
        snprintf(verdict, sizeof(verdict), "nothing sent");
    } else if (agg->max_lag > 200000) {
        *held = 0;
        snprintf(verdict, sizeof(verdict),
                 "generator fell %.0f ms behind (client-bound)",
                 (double) agg->max_lag / 1000.0);
    } else if ((double) agg->errs > 0.01 * (double) agg->sent) {
        *held = 0;
        snprintf(verdict, sizeof(verdict), "%" PRIu64 " errors", agg->errs);
    } else if (ratio < 0.9) {
        *held = 0;
        snprintf(verdict, sizeof(verdict),
                 "deliveries kept up with %.0f%% of the offered load",
                 ratio * 100);
    } else if (maxb > ctx->opt.max_backlog * rate * exp_per_msg) {
        *held = 0;
        snprintf(verdict, sizeof(verdict),
                 "delivery backlog reached %.1f s of traffic",
                 maxb / (rate * exp_per_msg));
    } else if (slope > allowed) {
        *held = 0;
        snprintf(verdict, sizeof(verdict),
                 "delivery backlog grew by %.0f per second", slope);
    } else if (agg->not_sent > 0) {
        snprintf(verdict, sizeof(verdict), "held (%" PRIu64
                 " not sent: no live sender)", agg->not_sent);
    } else {
        snprintf(verdict, sizeof(verdict), "held");
    }
    json_object_set_new(o, "held", json_boolean(*held));
    json_object_set_new(o, "verdict", json_string(verdict));
    if (ctx->opt.scenario == SC_GROUP) {
        cpu = cpu_json(&a, &b, (double) agg->deliveries, "delivery");
    } else {
        cpu = cpu_json(&a, &b, (double) agg->acked, "msg");
    }
    json_object_set_new(o, "cpu", cpu);
    free(smp);
    free(agg);
    logmsg(ctx, "%s %s %.0f msg/s for %.0f s: %s", ctx->sc->name, kind,
           rate, dur, verdict);
    return o;
}


/* a rate not run: a lower one saturated the stack and did not drain */
json_t *
step_skipped(double rate)
{
    json_t  *st = json_object();

    json_object_set_new(st, "kind", json_string("fixed"));
    set_real(st, "offered_rate", rate);
    json_object_set_new(st, "skipped", json_string(
        "a lower rate already saturated the stack and its backlog did not"
        " drain"));
    return st;
}


int
integrity(bench_t *ctx, json_t *res)
{
    json_t  *o = json_object();
    uint64_t dups = 0, order = 0, lost, unacked, mism;
    int      i, k, bad;

    ctx->shm->cmd.t_start = now_us();
    cmd_publish(ctx, CMD_FINAL);
    wait_cmd(ctx, NULL, NULL);
    for (i = 0; i < ctx->nprocs; i++) {
        for (k = 0; k < MAX_STEPS; k++) {
            dups += ctx->shm->slot[i].steps[k].dups;
            order += ctx->shm->slot[i].steps[k].order_err;
        }
    }
    lost = SUMF(ctx, i_lost);
    unacked = SUMF(ctx, i_unacked);
    mism = SUMF(ctx, seq_mismatch);
    set_int(o, "sent", SUMF(ctx, i_sent));
    set_int(o, "acked", SUMF(ctx, i_acked));
    set_int(o, "errors", SUMF(ctx, i_errs));
    set_int(o, "delivered", SUMF(ctx, i_delivered));
    set_int(o, "lost", lost);
    set_int(o, "unacked", unacked);
    set_int(o, "duplicates", dups);
    set_int(o, "out_of_order", order);
    set_int(o, "seq_mismatch", mism);
    if (ctx->opt.scenario == SC_GROUP) {
        set_int(o, "incomplete_messages", SUMF(ctx, i_incomplete));
        set_int(o, "missing_deliveries", SUMF(ctx, i_missing_deliveries));
    }
    bad = lost > 0 || dups > 0 || order > 0 || mism > 0;
    json_object_set_new(o, "ok", json_boolean(!bad));
    json_object_set_new(res, "integrity", o);
    return bad;
}
