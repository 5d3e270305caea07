
/*
 * chat_bench: one-to-one traffic. Each pair is a sender and a receiver;
 * the schedule sends open-loop at fixed rates, round robin over the live
 * pairs; every message is checked acked, delivered once and in order.
 * The parent's part runs the fixed rates, then searches the highest rate
 * the stack holds. The storm reuses the pairs (bench_storm.c).
 */


#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>


static void
pair_grow(pair_t *p, uint64_t n)
{
    uint64_t nc;

    if (n < p->cap) {
        return;
    }
    nc = p->cap ? p->cap * 2 : 64;
    while (nc <= n) {
        nc *= 2;
    }
    p->ts = xrealloc(p->ts, nc * sizeof(*p->ts));
    p->seq = xrealloc(p->seq, nc * sizeof(*p->seq));
    p->flags = xrealloc(p->flags, nc);
    p->step = xrealloc(p->step, nc);
    memset(p->flags + p->cap, 0, nc - p->cap);
    p->cap = nc;
}


/* two connections a pair: dm "u" sends to "v", storm "a" to "b" */
void
dm_layout(bench_t *ctx, long u1)
{
    long     i, k;
    conn_t  *c;

    ctx->npairs = (int) (u1 - ctx->u0);
    ctx->nconns = 2 * ctx->npairs;
    ctx->conns = xcalloc((size_t) ctx->nconns, sizeof(conn_t));
    ctx->pairs = xcalloc((size_t) ctx->npairs, sizeof(pair_t));
    for (i = 0; i < ctx->npairs; i++) {
        ctx->pairs[i].gp = (uint32_t) (ctx->u0 + i);
        ctx->pairs[i].u = (int) (2 * i);
        ctx->pairs[i].v = (int) (2 * i + 1);
        for (k = 0; k < 2; k++) {
            c = &ctx->conns[2 * i + k];
            c->gi = (uint32_t) (2 * (ctx->u0 + i) + k);
            c->owner = (int32_t) i;
            c->member = (int32_t) k;
            snprintf(c->user, sizeof(c->user), "%s%s%ld", ctx->opt.prefix,
                     ctx->opt.scenario == SC_DM ? (k ? "v" : "u")
                                                : (k ? "b" : "a"),
                     ctx->u0 + i);
        }
    }
}


int
dm_send(bench_t *ctx, pair_t *p, int64_t sched, int step)
{
    conn_t  *u = &ctx->conns[p->u], *v = &ctx->conns[p->v];
    step_t  *st = &ctx->slot->steps[step];
    uint64_t n;
    size_t   len;

    n = ++p->nsent;
    pair_grow(p, n);
    p->ts[n] = sched;
    p->flags[n] = F_SENT;
    p->step[n] = (uint8_t) step;
    p->seq[n] = 0;
    len = (size_t) snprintf(ctx->fbuf, ctx->fbufsz,
                            "{\"type\":\"send\",\"client_msg_id\":"
                            "\"p%u-%" PRIu64 "\",\"to\":\"%s\","
                            "\"body\":\"",
                            p->gp, n, v->user);
    len = put_body(ctx, len, sched);
    INC(st->sent);
    INC(st->expected);
    INC(ctx->slot->live_sent);
    INC(ctx->slot->live_expected);
    return ws_text(ctx, u, ctx->fbuf, len);
}


int
pair_live(bench_t *ctx, pair_t *p)
{
    conn_t *u = &ctx->conns[p->u], *v = &ctx->conns[p->v];

    return conn_live(u) && conn_live(v) && u->wlen - u->woff < WBUF_LIMIT;
}


uint64_t
pairs_active(bench_t *ctx)
{
    uint64_t n = 0;
    int      i;

    for (i = 0; i < ctx->npairs; i++) {
        n += pair_live(ctx, &ctx->pairs[i]);
    }
    return n;
}


void
dm_send_next(bench_t *ctx, int64_t sched, int step)
{
    int      tries;
    pair_t  *p;

    for (tries = 0; tries < ctx->npairs; tries++) {
        p = &ctx->pairs[ctx->rr];
        ctx->rr = (ctx->rr + 1) % ctx->npairs;
        if (pair_live(ctx, p)) {
            dm_send(ctx, p, sched, step);
            return;
        }
    }
    INC(ctx->slot->steps[step].not_sent);
}


/* the ack of message n of pair p, read by connection c */
void
dm_ack(bench_t *ctx, conn_t *c, pair_t *p, uint64_t n, int64_t seq)
{
    step_t  *st;
    uint8_t  fl;

    if (n > p->nsent || c->li != (uint32_t) p->u) {
        INC(ctx->slot->unknown_ids);
        return;
    }
    fl = p->flags[n];
    if (fl & F_ACKED) {
        INC(ctx->slot->dup_acks);
        return;
    }
    if (fl & F_ERR) {
        proto_err(ctx, c, "ack after an error for the same client_msg_id");
    }
    p->flags[n] |= F_ACKED;
    if (fl & F_SEQ) {
        if (p->seq[n] != (int32_t) seq) {
            INC(ctx->slot->seq_mismatch);
        }
    } else {
        p->seq[n] = (int32_t) seq;
        p->flags[n] |= F_SEQ;
    }
    st = &ctx->slot->steps[p->step[n]];
    INC(st->acked);
    INC(ctx->slot->live_acked);
    if (in_window(ctx)) {
        INC(st->acks_in_win);
    }
    hist_add(&st->ack, ctx->now - p->ts[n]);
}


/* an error for message n of pair p: it will be neither acked nor delivered */
void
dm_error(bench_t *ctx, pair_t *p, uint64_t n)
{
    step_t  *st;

    if (n <= p->nsent && !(p->flags[n] & (F_ERR | F_ACKED))) {
        p->flags[n] |= F_ERR;
        st = &ctx->slot->steps[p->step[n]];
        INC(st->errs);
        INC(ctx->slot->live_errs);
        ADD(st->expected, (uint64_t) -1);
        ADD(ctx->slot->live_expected, (uint64_t) -1);
    }
}


void
dm_message(bench_t *ctx, conn_t *c, json_t *j)
{
    const char *cmid = jstr(j, "client_msg_id"), *body = jstr(j, "body");
    int64_t     seq = jint(j, "seq"), ts;
    uint64_t    unit, n;
    pair_t     *p;
    step_t     *st;
    uint8_t     fl;

    if (c->member != 1 || !parse_cmid(cmid, 'p', &unit, &n)) {
        INC(ctx->slot->unknown_ids);
        return;
    }
    p = &ctx->pairs[c->owner];
    if (unit != p->gp || n > p->nsent) {
        INC(ctx->slot->unknown_ids);
        return;
    }
    st = &ctx->slot->steps[p->step[n]];
    fl = p->flags[n];
    if (fl & F_DELIV) {
        INC(st->dups);
        return;
    }
    if (seq != c->last_seq + 1 || n <= c->last_n) {
        INC(st->order_err);
        if (ctx->opt.verbose) {
            logmsg(ctx, "%s: seq %" PRId64 " after %" PRId64 ", n %" PRIu64
                   " after %" PRIu64, c->user, seq, c->last_seq, n, c->last_n);
        }
    }
    if (seq > c->last_seq) {
        c->last_seq = seq;
    }
    if (n > c->last_n) {
        c->last_n = n;
    }
    p->flags[n] |= F_DELIV;
    if (fl & F_SEQ) {
        if (p->seq[n] != (int32_t) seq) {
            INC(ctx->slot->seq_mismatch);
        }
    } else {
        p->seq[n] = (int32_t) seq;
        p->flags[n] |= F_SEQ;
    }
    INC(st->delivered);
    INC(ctx->slot->live_delivered);
    if (in_window(ctx)) {
        INC(st->deliv_in_win);
    }
    ts = body ? strtoll(body, NULL, 10) : 0;
    if (ts <= 0) {
        proto_err(ctx, c, "message body without the timestamp");
        ts = p->ts[n];
    }
    hist_add(&st->deliv, ctx->now - ts);
}


/* CMD_FINAL: every message of every pair, for the integrity check */
void
dm_final(bench_t *ctx)
{
    slot_t   *S = ctx->slot;
    pair_t   *p;
    uint64_t  n;
    uint8_t   fl;
    int       i;

    for (i = 0; i < ctx->npairs; i++) {
        p = &ctx->pairs[i];

        for (n = 1; n <= p->nsent; n++) {
            fl = p->flags[n];
            S->i_sent++;
            S->i_acked += !!(fl & F_ACKED);
            S->i_errs += !!(fl & F_ERR);
            S->i_unacked += !(fl & (F_ACKED | F_ERR));
            S->i_delivered += !!(fl & F_DELIV);
            S->i_lost += (fl & F_ACKED) && !(fl & F_DELIV);
        }
    }
}


static double
round_rate(double r)
{
    double q = r >= 5000 ? 500 : r >= 500 ? 50 : r >= 50 ? 5 : 1;

    return (double) ((long) (r / q + 0.5)) * q;
}


int
scen_dm(bench_t *ctx, json_t *res)
{
    json_t *steps = json_array(), *st, *ms;
    double  lo = 0, hi = 0, mid, rate;
    int     i, n = 0, held, drained, skip = 0, p;
    uint64_t active;

    json_object_set_new(res, "connections",
                        do_connect(ctx, ctx->opt.window, ctx->opt.max_fail));
    active = SUMF(ctx, active_units);
    set_int(res, "active_pairs", active);
    if (active == 0) {
        set_error_from_slots(ctx, res);
        fatal(ctx, "no pair has both ends connected");
    }
    json_object_set_new(res, "steps", steps);
    if (ctx->opt.warmup > 0) {
        /* JIT, caches, connection pools: not part of any verdict */
        rate = ctx->opt.rates[0] < 1000 ? ctx->opt.rates[0] : 1000;
        st = run_step(ctx, n++, rate, ctx->opt.warmup, "warmup", &held,
                      &drained);
        json_array_append_new(steps, st);
    }
    for (i = 0; i < ctx->opt.nrates && n < MAX_STEPS; i++) {
        if (skip) {
            json_array_append_new(steps, step_skipped(ctx->opt.rates[i]));
            continue;
        }
        st = run_step(ctx, n++, ctx->opt.rates[i], ctx->opt.duration,
                      "fixed", &held, &drained);
        json_array_append_new(steps, st);
        if (held && ctx->opt.rates[i] > lo) {
            lo = ctx->opt.rates[i];
        }
        if (!held && ctx->opt.rates[i] > lo
            && (hi == 0 || ctx->opt.rates[i] < hi))
        {
            hi = ctx->opt.rates[i];
        }
        if (!held && !drained && !ctx->opt.no_skip) {
            skip = 1;
        }
    }
    if (ctx->opt.hold > 0) {
        for (p = 0; p < ctx->opt.probes && n < MAX_STEPS - 2; p++) {
            if (hi == 0) {
                mid = lo * 2;
            } else if (lo == 0) {
                mid = hi / 2;
            } else if ((hi - lo) / hi < 0.15) {
                break;
            } else {
                mid = (lo + hi) / 2;
            }
            mid = round_rate(mid);
            if (mid <= 0 || mid == lo || mid == hi) {
                break;
            }
            st = run_step(ctx, n++, mid, ctx->opt.probe_duration, "probe",
                          &held, &drained);
            json_array_append_new(steps, st);
            if (held) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        ms = json_object();
        set_real(ms, "hold_s", ctx->opt.hold);
        rate = lo;
        held = 0;
        for (p = 0; p < 2 && rate > 0 && n < MAX_STEPS; p++) {
            st = run_step(ctx, n++, rate, ctx->opt.hold, "hold", &held,
                          &drained);
            json_array_append_new(steps, st);
            if (held) {
                break;
            }
            rate = round_rate(rate * 0.8);
        }
        json_object_set_new(ms, "rate", held ? json_real(rate) : json_null());
        json_object_set_new(ms, "held", json_boolean(held));
        json_object_set_new(res, "max_sustained", ms);
    }
    drain(ctx, ctx->opt.drain);
    return integrity(ctx, res);
}
