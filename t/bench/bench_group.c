
/*
 * chat_bench: groups of --group-size members. Member 0 of each creates
 * its group (create_group, then add_members for more than a request
 * names) and, in the rate steps, sends all its
 * messages; every other member must see every one of them, once and in
 * order. Deliveries per second, and the latency to the first and to the
 * last member. Skipped when no group could be created. With --receipts
 * every member answers each message with delivered and read, as a client
 * that shows it does: the receipts sent and the receipt frames received
 * are counted per step.
 */


#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>


static void
group_grow(group_t *g, uint64_t n)
{
    uint64_t nc;

    if (n < g->cap) {
        return;
    }
    nc = g->cap ? g->cap * 2 : 64;
    while (nc <= n) {
        nc *= 2;
    }
    g->ts = xrealloc(g->ts, nc * sizeof(*g->ts));
    g->t_first = xrealloc(g->t_first, nc * sizeof(*g->t_first));
    g->t_last = xrealloc(g->t_last, nc * sizeof(*g->t_last));
    g->exp = xrealloc(g->exp, nc * sizeof(*g->exp));
    g->got = xrealloc(g->got, nc * sizeof(*g->got));
    g->flags = xrealloc(g->flags, nc);
    g->step = xrealloc(g->step, nc);
    memset(g->flags + g->cap, 0, nc - g->cap);
    memset(g->got + g->cap, 0, (nc - g->cap) * sizeof(*g->got));
    g->cap = nc;
}


void
group_layout(bench_t *ctx, long u1)
{
    long     i, k;
    conn_t  *c;

    ctx->ngroups = (int) (u1 - ctx->u0);
    ctx->nconns = ctx->ngroups * ctx->opt.group_size;
    ctx->conns = xcalloc((size_t) ctx->nconns, sizeof(conn_t));
    ctx->groups = xcalloc((size_t) ctx->ngroups, sizeof(group_t));
    for (i = 0; i < ctx->ngroups; i++) {
        ctx->groups[i].gg = (uint32_t) (ctx->u0 + i);
        ctx->groups[i].first = (int) (i * ctx->opt.group_size);
        ctx->groups[i].size = ctx->opt.group_size;
        for (k = 0; k < ctx->opt.group_size; k++) {
            c = &ctx->conns[i * ctx->opt.group_size + k];
            c->gi = (uint32_t) ((ctx->u0 + i) * ctx->opt.group_size + k);
            c->owner = (int32_t) i;
            c->member = (int32_t) k;
            snprintf(c->user, sizeof(c->user), "%sg%ldm%ld",
                     ctx->opt.prefix, ctx->u0 + i, k);
        }
    }
}


/* members named per create_group / add_members: a frame stays well under
 * the server's message limit */
#define GROUP_CHUNK  400


/*
 * the next request filling group g: create_group with the first members,
 * then add_members with the next ones; 0 when every member is named
 */
static int
group_fill(bench_t *ctx, group_t *g)
{
    char     *buf;
    size_t    len, cap;
    int       k, m, end;
    conn_t   *c = &ctx->conns[g->first];

    if (g->named > 0 && g->named >= g->size - 1) {
        return 0;
    }
    cap = (size_t) GROUP_CHUNK * 80 + 512;
    buf = xrealloc(NULL, cap);
    if (g->named == 0) {
        len = (size_t) snprintf(buf, cap,
                "{\"type\":\"create_group\",\"req_id\":\"cg%u\","
                "\"name\":\"bench group %u\",\"members\":[",
                g->gg, g->gg);
    } else {
        len = (size_t) snprintf(buf, cap,
                "{\"type\":\"add_members\",\"req_id\":\"ag%u\","
                "\"conversation_id\":\"%s\",\"user_ids\":[",
                g->gg, g->conv);
    }
    end = g->named + GROUP_CHUNK < g->size - 1 ? g->named + GROUP_CHUNK
                                               : g->size - 1;
    for (k = g->named + 1, m = 0; k <= end; k++) {
        len += (size_t) snprintf(buf + len, cap - len, "%s\"%s\"",
                                 m++ ? "," : "",
                                 ctx->conns[g->first + k].user);
    }
    len += (size_t) snprintf(buf + len, cap - len, "]}");
    g->named = end;
    ws_text(ctx, c, buf, len);
    free(buf);
    return 1;
}


/* CMD_SETUP: each group's creator asks for it, naming the other members */
void
group_setup(bench_t *ctx)
{
    int       i;
    group_t  *g;

    for (i = 0; i < ctx->ngroups; i++) {
        g = &ctx->groups[i];
        if (!conn_live(&ctx->conns[g->first])) {
            g->state = -1;
            INC(ctx->slot->groups_failed);
            continue;
        }
        g->named = 0;
        group_fill(ctx, g);
    }
}


/* 1 once every group is created or failed, at the latest at the deadline */
int
group_setup_tick(bench_t *ctx)
{
    int  i;

    for (i = 0; i < ctx->ngroups; i++) {
        if (ctx->groups[i].state == 0) {
            break;
        }
    }
    if (i == ctx->ngroups) {
        return 1;
    }
    if (ctx->now < ctx->cmd.deadline) {
        return 0;
    }
    for (i = 0; i < ctx->ngroups; i++) {
        if (ctx->groups[i].state == 0) {
            ctx->groups[i].state = -1;
            INC(ctx->slot->groups_failed);
        }
    }
    if (!ctx->slot->skip_reason[0]) {
        snprintf(ctx->slot->skip_reason, sizeof(ctx->slot->skip_reason),
                 "no answer to create_group within %.0f s",
                 (double) (ctx->cmd.deadline - ctx->cmd.t_start) / 1e6);
    }
    return 1;
}


uint64_t
groups_active(bench_t *ctx)
{
    uint64_t n = 0;
    int      i;

    for (i = 0; i < ctx->ngroups; i++) {
        n += ctx->groups[i].state == 1;
    }
    return n;
}


static int
group_open_members(bench_t *ctx, group_t *g, int except)
{
    int k, n = 0;

    for (k = 0; k < g->size; k++) {
        if (k != except && conn_live(&ctx->conns[g->first + k])) {
            n++;
        }
    }
    return n;
}


/*
 * Member 0 (the creator) sends all of a group's messages: the other members
 * then see every seq of the conversation, each exactly once and in order
 * (a sender never receives its own message, which would leave gaps).
 */
void
group_send_next(bench_t *ctx, int64_t sched, int step)
{
    int      tries, exp;
    group_t *g = NULL;
    conn_t  *sc = NULL;
    step_t  *st = &ctx->slot->steps[step];
    uint64_t n;
    size_t   len;

    for (tries = 0; tries < ctx->ngroups; tries++) {
        g = &ctx->groups[ctx->rr];
        ctx->rr = (ctx->rr + 1) % ctx->ngroups;
        sc = &ctx->conns[g->first];
        if (g->state == 1 && conn_live(sc)
            && sc->wlen - sc->woff < WBUF_LIMIT)
        {
            break;
        }
        sc = NULL;
    }
    if (sc == NULL) {
        INC(st->not_sent);
        return;
    }
    exp = group_open_members(ctx, g, 0);
    n = ++g->nsent;
    group_grow(g, n);
    g->ts[n] = sched;
    g->exp[n] = (uint16_t) exp;
    g->got[n] = 0;
    g->flags[n] = F_SENT;
    g->step[n] = (uint8_t) step;
    len = (size_t) snprintf(ctx->fbuf, ctx->fbufsz,
                            "{\"type\":\"send\",\"client_msg_id\":"
                            "\"g%u-%" PRIu64 "\",\"conversation_id\":"
                            "\"%s\",\"body\":\"",
                            g->gg, n, g->conv);
    len = put_body(ctx, len, sched);
    INC(st->sent);
    ADD(st->expected, (uint64_t) exp);
    INC(ctx->slot->live_sent);
    ADD(ctx->slot->live_expected, (uint64_t) exp);
    ws_text(ctx, sc, ctx->fbuf, len);
}


void
group_ack(bench_t *ctx, group_t *g, uint64_t n)
{
    step_t  *st;
    uint8_t  fl;

    if (n > g->nsent) {
        INC(ctx->slot->unknown_ids);
        return;
    }
    fl = g->flags[n];
    if (fl & F_ACKED) {
        INC(ctx->slot->dup_acks);
        return;
    }
    g->flags[n] |= F_ACKED;
    st = &ctx->slot->steps[g->step[n]];
    INC(st->acked);
    INC(ctx->slot->live_acked);
    if (in_window(ctx)) {
        INC(st->acks_in_win);
    }
    hist_add(&st->ack, ctx->now - g->ts[n]);
}


/* an error for message n of group g: no member will see it */
void
group_error(bench_t *ctx, group_t *g, uint64_t n)
{
    step_t  *st;

    if (n <= g->nsent && !(g->flags[n] & (F_ERR | F_ACKED))) {
        g->flags[n] |= F_ERR;
        st = &ctx->slot->steps[g->step[n]];
        INC(st->errs);
        INC(ctx->slot->live_errs);
        ADD(st->expected, (uint64_t) -(int64_t) g->exp[n]);
        ADD(ctx->slot->live_expected, (uint64_t) -(int64_t) g->exp[n]);
    }
}


/* an error answering req_id "cg<unit>": that group failed */
void
group_create_error(bench_t *ctx, const char *req, const char *code,
    const char *msg)
{
    uint64_t  unit;
    group_t  *g;

    if (req == NULL || (req[0] != 'c' && req[0] != 'a') || req[1] != 'g'
        || ctx->ngroups == 0)
    {
        return;
    }
    unit = strtoull(req + 2, NULL, 10);
    if (unit < (uint64_t) ctx->u0
        || unit >= (uint64_t) (ctx->u0 + ctx->ngroups))
    {
        return;
    }
    g = &ctx->groups[unit - (uint64_t) ctx->u0];
    if (g->state == 0) {
        g->state = -1;
        INC(ctx->slot->groups_failed);
        if (!ctx->slot->skip_reason[0]) {
            snprintf(ctx->slot->skip_reason, sizeof(ctx->slot->skip_reason),
                     "create_group answered error %s: %s",
                     code ? code : "?", msg ? msg : "");
        }
    }
}


/* what a client does with a message it got: delivered, then read */
static void
group_send_receipts(bench_t *ctx, conn_t *c, group_t *g, int64_t seq)
{
    static const char *const  states[] = { "delivered", "read" };
    char                      buf[320];
    size_t                    len;
    int                       i;

    for (i = 0; i < 2; i++) {
        len = (size_t) snprintf(buf, sizeof(buf),
                "{\"type\":\"receipt\",\"conversation_id\":\"%s\","
                "\"seq\":%" PRId64 ",\"state\":\"%s\"}",
                g->conv, seq, states[i]);
        ws_text(ctx, c, buf, len);
        INC(ctx->slot->steps[ctx->step].receipts_sent);
    }
}


void
group_message(bench_t *ctx, conn_t *c, json_t *j)
{
    const char *cmid = jstr(j, "client_msg_id"), *body = jstr(j, "body");
    const char *kind = jstr(j, "kind");
    int64_t     seq = jint(j, "seq"), ts;
    uint64_t    unit, n;
    group_t    *g = &ctx->groups[c->owner];
    step_t     *st;

    if (kind != NULL && strcmp(kind, "text") != 0) {
        /* group_created at seq 1, or members_added where the member
         * joined: its first; counted in the order check below */
        if (c->last_seq > 0 && seq != c->last_seq + 1) {
            INC(ctx->slot->steps[ctx->step].order_err);
        }
        if (seq > c->last_seq) {
            c->last_seq = seq;
        }
        return;
    }
    if (c->member == 0 || !parse_cmid(cmid, 'g', &unit, &n) || unit != g->gg
        || n > g->nsent)
    {
        INC(ctx->slot->unknown_ids);
        return;
    }
    st = &ctx->slot->steps[g->step[n]];
    if (seq <= c->last_seq) {
        INC(st->dups);
        return;
    }
    if (seq != c->last_seq + 1) {
        INC(st->order_err);
        if (ctx->opt.verbose) {
            logmsg(ctx, "%s: seq %" PRId64 " after %" PRId64, c->user, seq,
                   c->last_seq);
        }
    }
    c->last_seq = seq;
    g->got[n]++;
    if (g->got[n] == 1) {
        g->t_first[n] = ctx->now;
    }
    g->t_last[n] = ctx->now;
    INC(st->deliveries);
    INC(ctx->slot->live_delivered);
    if (in_window(ctx)) {
        INC(st->deliv_in_win);
    }
    if (ctx->opt.receipts) {
        group_send_receipts(ctx, c, g, seq);
    }
    ts = body ? strtoll(body, NULL, 10) : 0;
    if (ts <= 0) {
        proto_err(ctx, c, "message body without the timestamp");
        ts = g->ts[n];
    }
    hist_add(&st->deliv, ctx->now - ts);
    if (g->got[n] >= g->exp[n] && !(g->flags[n] & F_DONE)) {
        g->flags[n] |= F_DONE;
        INC(st->complete);
        hist_add(&st->first, g->t_first[n] - g->ts[n]);
        hist_add(&st->last, g->t_last[n] - g->ts[n]);
    }
}


void
on_group(bench_t *ctx, conn_t *c, json_t *j)
{
    const char *req = jstr(j, "req_id"), *conv = jstr(j, "conversation_id");
    uint64_t    unit;
    group_t    *g;

    if (req == NULL || (req[0] != 'c' && req[0] != 'a') || req[1] != 'g'
        || ctx->ngroups == 0)
    {
        INC(ctx->slot->other_frames);
        return;
    }
    unit = strtoull(req + 2, NULL, 10);
    if (unit < (uint64_t) ctx->u0
        || unit >= (uint64_t) (ctx->u0 + ctx->ngroups))
    {
        INC(ctx->slot->unknown_ids);
        return;
    }
    g = &ctx->groups[unit - (uint64_t) ctx->u0];
    if (g->state != 0) {
        return;
    }
    if (conv == NULL || strlen(conv) >= sizeof(g->conv)) {
        proto_err(ctx, c, "group without a usable conversation_id");
        g->state = -1;
        INC(ctx->slot->groups_failed);
        return;
    }
    strcpy(g->conv, conv);
    if (group_fill(ctx, g)) {
        return;
    }
    g->state = 1;
    INC(ctx->slot->groups_ok);
}


/* a receipt: the sender hears of its readers, each reader of its own */
void
group_receipt(bench_t *ctx, conn_t *c, json_t *j)
{
    (void) c;
    (void) j;

    INC(ctx->slot->steps[ctx->step].receipt_frames);
}


/* CMD_FINAL: every message of every group, for the integrity check */
void
group_final(bench_t *ctx)
{
    slot_t   *S = ctx->slot;
    group_t  *g;
    uint64_t  n;
    uint8_t   fl;
    int       i;

    for (i = 0; i < ctx->ngroups; i++) {
        g = &ctx->groups[i];

        for (n = 1; n <= g->nsent; n++) {
            fl = g->flags[n];
            S->i_sent++;
            S->i_acked += !!(fl & F_ACKED);
            S->i_errs += !!(fl & F_ERR);
            S->i_unacked += !(fl & (F_ACKED | F_ERR));
            S->i_delivered += !!(fl & F_DONE);
            if ((fl & F_ACKED) && !(fl & F_DONE)) {
                S->i_incomplete++;
                S->i_lost++;
                if (g->got[n] < g->exp[n]) {
                    S->i_missing_deliveries += g->exp[n] - g->got[n];
                }
            }
        }
    }
}


int
scen_group(bench_t *ctx, json_t *res)
{
    json_t  *steps = json_array(), *st;
    uint64_t ok;
    int      i, n = 0, held, drained, skip = 0;
    char     reason[300] = "";

    json_object_set_new(res, "connections",
                        do_connect(ctx, ctx->opt.window, ctx->opt.max_fail));
    if (SUMF(ctx, conn_ok) == 0) {
        set_error_from_slots(ctx, res);
        fatal(ctx, "no connection was established");
    }
    ctx->shm->cmd.t_start = now_us();
    ctx->shm->cmd.deadline = ctx->shm->cmd.t_start
                             + (int64_t) (ctx->opt.timeout * 1e6);
    cmd_publish(ctx, CMD_SETUP);
    wait_cmd(ctx, NULL, NULL);
    ok = SUMF(ctx, groups_ok);
    set_int(res, "groups_created", ok);
    set_int(res, "groups_failed", SUMF(ctx, groups_failed));
    for (i = 0; i < ctx->nprocs; i++) {
        if (ctx->shm->slot[i].skip_reason[0]) {
            snprintf(reason, sizeof(reason), "%s",
                     ctx->shm->slot[i].skip_reason);
            break;
        }
    }
    if (ok == 0) {
        json_object_set_new(res, "status", json_string("skipped"));
        json_object_set_new(res, "reason", json_string(reason[0] ? reason
                                                 : "no group was created"));
        logmsg(ctx, "group: skipped: %s",
               reason[0] ? reason : "no group was created");
        return 0;
    }
    if (reason[0]) {
        json_object_set_new(res, "group_failures", json_string(reason));
    }
    json_object_set_new(res, "steps", steps);
    for (i = 0; i < ctx->opt.nrates && n < MAX_STEPS; i++) {
        if (skip) {
            json_array_append_new(steps, step_skipped(ctx->opt.rates[i]));
            continue;
        }
        st = run_step(ctx, n++, ctx->opt.rates[i], ctx->opt.duration,
                      "fixed", &held, &drained);
        json_array_append_new(steps, st);
        if (!held && !drained && !ctx->opt.no_skip) {
            skip = 1;
        }
    }
    drain(ctx, ctx->opt.drain);
    return integrity(ctx, res);
}
