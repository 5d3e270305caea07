
/*
 * chat_bench: the figures: latency histograms, a load process's counters
 * summed over all of them, and their names in the JSON.
 */


#include "bench.h"

#include <string.h>


const char  *const FAIL_NAMES[NFAIL] = {
    "socket", "bind", "refused", "timeout", "reset", "http_401", "http_503",
    "http_other", "bad_accept", "no_hello", "closed_before_hello"
};

/* the close codes counted one by one; 0 stands for every other one */
const int  CLOSE_CODES[NCLOSE] = {
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011,
    4001, 4008, 4009, 0
};

const char  *const ERR_NAMES[NERR] = {
    "bad_request", "forbidden", "not_found", "too_large", "rate_limited",
    "unavailable", "internal", "other"
};


static int
hist_idx(uint64_t v)
{
    int e;

    if (v < HB_LIN) {
        return (int) v;
    }
    e = 63 - __builtin_clzll(v);
    if (e >= HB_MAXE) {
        return HBUCKETS - 1;
    }
    return HB_LIN + (e - 8) * HB_SUB + (int) ((v >> (e - 7)) & (HB_SUB - 1));
}


static uint64_t
hist_upper(int i)
{
    int      k, e, m;

    if (i < HB_LIN) {
        return (uint64_t) i;
    }
    k = i - HB_LIN;
    e = 8 + k / HB_SUB;
    m = k % HB_SUB;
    return ((uint64_t) (HB_SUB + m) << (e - 7)) + ((uint64_t) 1 << (e - 7)) - 1;
}


void
hist_add(hist_t *h, int64_t v)
{
    uint64_t u = v < 0 ? 0 : (uint64_t) v;

    h->c[hist_idx(u)]++;
    h->n++;
    h->sum += u;
    if (u > h->max) {
        h->max = u;
    }
}


void
hist_merge(hist_t *d, const hist_t *s)
{
    int i;

    if (s->n == 0) {
        return;
    }
    for (i = 0; i < HBUCKETS; i++) {
        d->c[i] += s->c[i];
    }
    d->n += s->n;
    d->sum += s->sum;
    if (s->max > d->max) {
        d->max = s->max;
    }
}


/* the p-quantile in microseconds (an upper bound within 0.8%) */
double
hist_pct(const hist_t *h, double p)
{
    uint64_t rank, cum = 0, v;
    int      i;

    if (h->n == 0) {
        return 0;
    }
    rank = (uint64_t) (p * (double) h->n);
    if ((double) rank < p * (double) h->n) {
        rank++;
    }
    if (rank < 1) {
        rank = 1;
    }
    if (rank > h->n) {
        rank = h->n;
    }
    for (i = 0; i < HBUCKETS; i++) {
        cum += h->c[i];
        if (cum >= rank) {
            v = hist_upper(i);
            return (double) (v < h->max ? v : h->max);
        }
    }
    return (double) h->max;
}


json_t *
lat_json(const hist_t *h)
{
    json_t *o = json_object();

    set_int(o, "n", h->n);
    set_real(o, "p50", hist_pct(h, 0.50) / 1000.0);
    set_real(o, "p99", hist_pct(h, 0.99) / 1000.0);
    set_real(o, "p999", hist_pct(h, 0.999) / 1000.0);
    set_real(o, "max", (double) h->max / 1000.0);
    set_real(o, "mean", h->n ? (double) h->sum / (double) h->n / 1000.0 : 0);
    return o;
}


/* a step's figures of one load process added to d */
void
step_merge(step_t *d, const step_t *s)
{
    d->scheduled += s->scheduled;
    d->sent += s->sent;
    d->not_sent += s->not_sent;
    d->acked += s->acked;
    d->errs += s->errs;
    d->expected += s->expected;
    d->delivered += s->delivered;
    d->deliveries += s->deliveries;
    d->complete += s->complete;
    d->dups += s->dups;
    d->order_err += s->order_err;
    d->acks_in_win += s->acks_in_win;
    d->deliv_in_win += s->deliv_in_win;
    d->receipts_sent += s->receipts_sent;
    d->receipt_frames += s->receipt_frames;
    if (s->max_lag > d->max_lag) {
        d->max_lag = s->max_lag;
    }
    hist_merge(&d->ack, &s->ack);
    hist_merge(&d->deliv, &s->deliv);
    hist_merge(&d->first, &s->first);
    hist_merge(&d->last, &s->last);
}


uint64_t
sum_field(bench_t *ctx, size_t off)
{
    uint64_t s = 0;
    int      i;

    for (i = 0; i < ctx->nprocs; i++) {
        s += __atomic_load_n((uint64_t *) ((char *) &ctx->shm->slot[i] + off),
                             __ATOMIC_RELAXED);
    }
    return s;
}


int64_t
live_outstanding(bench_t *ctx)
{
    int64_t a, d;

    a = (int64_t) (SUMF(ctx, live_sent) - SUMF(ctx, live_acked)
                   - SUMF(ctx, live_errs));
    d = (int64_t) (SUMF(ctx, live_expected) - SUMF(ctx, live_delivered));
    return (a > 0 ? a : 0) + (d > 0 ? d : 0);
}


void
set_error_from_slots(bench_t *ctx, json_t *o)
{
    int i;

    for (i = 0; i < ctx->nprocs; i++) {
        if (ctx->shm->slot[i].last_error[0]) {
            json_object_set_new(o, "first_error",
                                json_string(ctx->shm->slot[i].last_error));
            return;
        }
    }
}


json_t *
counts_json(bench_t *ctx)
{
    json_t  *o = json_object(), *cl = json_object(), *er = json_object();
    uint64_t v;
    int      i, k;
    char     name[16];

    for (k = 0; k < NCLOSE; k++) {
        for (v = 0, i = 0; i < ctx->nprocs; i++) {
            v += ctx->shm->slot[i].closes[k];
        }
        if (v) {
            if (CLOSE_CODES[k]) {
                snprintf(name, sizeof(name), "%d", CLOSE_CODES[k]);
            } else {
                snprintf(name, sizeof(name), "other");
            }
            set_int(cl, name, v);
        }
    }
    for (k = 0; k < NERR; k++) {
        for (v = 0, i = 0; i < ctx->nprocs; i++) {
            v += ctx->shm->slot[i].errs[k];
        }
        if (v) {
            set_int(er, ERR_NAMES[k], v);
        }
    }
    json_object_set_new(o, "closes", cl);
    json_object_set_new(o, "server_errors", er);
    set_int(o, "protocol_errors", SUMF(ctx, proto_err));
    set_int(o, "unknown_ids", SUMF(ctx, unknown_ids));
    set_int(o, "duplicate_acks", SUMF(ctx, dup_acks));
    set_int(o, "seq_mismatch", SUMF(ctx, seq_mismatch));
    set_int(o, "other_frames", SUMF(ctx, other_frames));
    set_error_from_slots(ctx, o);
    return o;
}
