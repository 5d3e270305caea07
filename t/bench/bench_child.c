
/*
 * chat_bench: a load process. It holds its share of the connections in
 * one epoll loop, runs the parent's commands (connect, setup, a rate
 * step, drain, ping, storm, the final scan) and reads the server's
 * frames; what is particular to a scenario is behind its hooks
 * (bench_scenario_t).
 */


#include "bench.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>


typedef struct {
    const char  *type;
    void       (*handler)(bench_t *ctx, conn_t *c, json_t *j);
} frame_handler_t;


static void on_hello(bench_t *ctx, conn_t *c, json_t *j);
static void on_ack(bench_t *ctx, conn_t *c, json_t *j);
static void on_message(bench_t *ctx, conn_t *c, json_t *j);
static void on_error(bench_t *ctx, conn_t *c, json_t *j);
static void on_pong(bench_t *ctx, conn_t *c, json_t *j);
static void on_second_hello(bench_t *ctx, conn_t *c, json_t *j);


/* the frames a connection reads after its hello, by type */
static const frame_handler_t  frame_handlers[] = {
    { "ack",           on_ack },
    { "message",       on_message },
    { "error",         on_error },
    { "pong",          on_pong },
    { "group",         on_group },
    { "receipt",       group_receipt },
    { "sync_done",     storm_sync_done },
    { "conversations", storm_conversations },
    { "hello",         on_second_hello },
};


int
in_window(bench_t *ctx)
{
    return ctx->now >= ctx->win_start && ctx->now <= ctx->win_end;
}


/* "p12-34" / "g3-5": tag, unit, message number */
int
parse_cmid(const char *s, char tag, uint64_t *unit, uint64_t *n)
{
    char *e;

    if (s == NULL || s[0] != tag || !isdigit((unsigned char) s[1])) {
        return 0;
    }
    *unit = strtoull(s + 1, &e, 10);
    if (*e != '-' || !isdigit((unsigned char) e[1])) {
        return 0;
    }
    *n = strtoull(e + 1, &e, 10);
    return *e == '\0' && *n > 0;
}


/* the local index of the pair or group a client_msg_id names, or -1 */
static long
local_unit(bench_t *ctx, const char *cmid, char tag, int count, uint64_t *n)
{
    uint64_t  unit;

    if (!parse_cmid(cmid, tag, &unit, n) || count <= 0
        || unit < (uint64_t) ctx->u0
        || unit >= (uint64_t) (ctx->u0 + count))
    {
        return -1;
    }
    return (long) (unit - (uint64_t) ctx->u0);
}


int64_t
jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);

    return json_is_integer(v) ? (int64_t) json_integer_value(v) : -1;
}


const char *
jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}


/* the body: "<send timestamp us> xxxx..." of --body-bytes bytes */
size_t
put_body(bench_t *ctx, size_t len, int64_t ts)
{
    size_t start = len, want = (size_t) ctx->opt.body_bytes;

    len += (size_t) snprintf(ctx->fbuf + len, ctx->fbufsz - len,
                             "%" PRId64 " ", ts);
    while (len - start < want && len + 8 < ctx->fbufsz) {
        ctx->fbuf[len++] = 'x';
    }
    ctx->fbuf[len++] = '"';
    ctx->fbuf[len++] = '}';
    ctx->fbuf[len] = '\0';
    return len;
}


/* ---------------------------------------------------------------- frames */

static void
on_hello(bench_t *ctx, conn_t *c, json_t *j)
{
    const char *user = jstr(j, "user_id");
    int64_t     mm = jint(j, "max_message_bytes");

    c->got_hello = 1;
    c->t_hello = ctx->now;
    ctx->inflight--;
    INC(ctx->slot->conn_ok);
    hist_add(&ctx->slot->conn_lat, ctx->now - c->t_start);
    if (ctx->now > LOAD(ctx->slot->t_last_hello)) {
        __atomic_store_n(&ctx->slot->t_last_hello, ctx->now,
                         __ATOMIC_RELAXED);
    }
    if (mm > 0) {
        ctx->max_msg = (int) mm;
    }
    if (user == NULL || strcmp(user, c->user) != 0) {
        proto_err(ctx, c, "hello names another user");
    }
    if (ctx->phase == PH_STORM) {
        storm_hello(ctx, c);
    }
}


static void
on_ack(bench_t *ctx, conn_t *c, json_t *j)
{
    const char *cmid = jstr(j, "client_msg_id");
    int64_t     seq = jint(j, "seq");
    uint64_t    n;
    long        i;

    i = local_unit(ctx, cmid, 'p', ctx->npairs, &n);
    if (i >= 0) {
        dm_ack(ctx, c, &ctx->pairs[i], n, seq);
        return;
    }
    i = local_unit(ctx, cmid, 'g', ctx->ngroups, &n);
    if (i >= 0) {
        group_ack(ctx, &ctx->groups[i], n);
        return;
    }
    INC(ctx->slot->unknown_ids);
}


static void
on_message(bench_t *ctx, conn_t *c, json_t *j)
{
    if (ctx->sc->message == NULL) {
        INC(ctx->slot->other_frames);
        return;
    }
    ctx->sc->message(ctx, c, j);
}


static void
on_error(bench_t *ctx, conn_t *c, json_t *j)
{
    const char *code = jstr(j, "code"), *msg = jstr(j, "message");
    const char *cmid = jstr(j, "client_msg_id"), *req = jstr(j, "req_id");
    uint64_t    n;
    long        u;
    int         i;

    for (i = 0; i < NERR - 1; i++) {
        if (code && strcmp(code, ERR_NAMES[i]) == 0) {
            break;
        }
    }
    INC(ctx->slot->errs[i]);
    set_error(ctx, "server error %s: %s (%s)", code ? code : "?",
              msg ? msg : "", c->user);
    u = local_unit(ctx, cmid, 'p', ctx->npairs, &n);
    if (u >= 0) {
        dm_error(ctx, &ctx->pairs[u], n);
        return;
    }
    u = local_unit(ctx, cmid, 'g', ctx->ngroups, &n);
    if (u >= 0) {
        group_error(ctx, &ctx->groups[u], n);
        return;
    }
    group_create_error(ctx, req, code, msg);
}


static void
on_pong(bench_t *ctx, conn_t *c, json_t *j)
{
    (void) c;
    (void) j;
    INC(ctx->slot->pongs);
}


static void
on_second_hello(bench_t *ctx, conn_t *c, json_t *j)
{
    (void) j;
    proto_err(ctx, c, "a second hello");
}


void
on_text(bench_t *ctx, conn_t *c, uint8_t *p, size_t n)
{
    json_t      *j;
    json_error_t e;
    const char  *type;
    size_t       i;

    j = json_loadb((const char *) p, n, 0, &e);
    if (j == NULL || !json_is_object(j)) {
        proto_err(ctx, c, "frame is not a JSON object");
        json_decref(j);
        return;
    }
    type = jstr(j, "type");
    if (type == NULL) {
        proto_err(ctx, c, "frame without type");
    } else if (!c->got_hello) {
        if (strcmp(type, "hello") == 0) {
            on_hello(ctx, c, j);
        } else {
            proto_err(ctx, c, "first frame is not hello");
        }
    } else {
        for (i = 0; i < sizeof(frame_handlers) / sizeof(frame_handlers[0]);
             i++)
        {
            if (strcmp(type, frame_handlers[i].type) == 0) {
                frame_handlers[i].handler(ctx, c, j);
                break;
            }
        }
        if (i == sizeof(frame_handlers) / sizeof(frame_handlers[0])) {
            INC(ctx->slot->other_frames);
        }
    }
    json_decref(j);
}


/* -------------------------------------------------------------- commands */

/* messages not yet acked or errored, and deliveries not yet seen */
int64_t
outstanding(bench_t *ctx)
{
    int64_t a, d;

    a = (int64_t) (LOAD(ctx->slot->live_sent) - LOAD(ctx->slot->live_acked)
                   - LOAD(ctx->slot->live_errs));
    d = (int64_t) (LOAD(ctx->slot->live_expected)
                   - LOAD(ctx->slot->live_delivered));
    return (a > 0 ? a : 0) + (d > 0 ? d : 0);
}


static void
cmd_begin(bench_t *ctx)
{
    static const char  ping[] = "{\"type\":\"ping\",\"req_id\":\"bp\"}";
    int                i;

    switch (ctx->cmd.code) {
    case CMD_CONNECT:
        ctx->next_launch = 0;
        ctx->inflight = 0;
        ctx->stop_launch = 0;
        ctx->fails = 0;
        break;
    case CMD_SETUP:
        if (ctx->sc->setup) {
            ctx->sc->setup(ctx);
        }
        break;
    case CMD_RATE:
        ctx->step = ctx->cmd.step;
        ctx->rate = ctx->cmd.rate[ctx->id];
        ctx->win_start = ctx->cmd.t_start;
        ctx->win_end = ctx->cmd.t_end;
        ctx->sched_k = 0;
        break;
    case CMD_PING:
        for (i = 0; i < ctx->nconns; i++) {
            if (conn_live(&ctx->conns[i])) {
                INC(ctx->slot->pings);
                ws_text(ctx, &ctx->conns[i], ping, sizeof(ping) - 1);
            }
        }
        break;
    case CMD_FINAL:
        /* pairs, then groups: the integrity figures */
        dm_final(ctx);
        group_final(ctx);
        break;
    case CMD_QUIT:
        close_all(ctx, 1);
        exit(0);
    default:
        break;
    }
}


static void
cmd_done(bench_t *ctx)
{
    if (ctx->cmd.code == CMD_CONNECT || ctx->cmd.code == CMD_SETUP) {
        ctx->slot->active_units = ctx->sc->active(ctx);
    }
    ctx->busy = 0;
    __atomic_store_n(&ctx->slot->done_cmd, ctx->cmd.seq, __ATOMIC_RELEASE);
}


void
launch(bench_t *ctx)
{
    int window = ctx->cmd.window;

    while (!ctx->stop_launch && ctx->next_launch < ctx->nconns
           && (window <= 0 || ctx->inflight < window))
    {
        conn_start(ctx, &ctx->conns[ctx->next_launch++]);
        if (ctx->cmd.max_fail > 0 && (long) ctx->fails >= ctx->cmd.max_fail) {
            ctx->stop_launch = 1;
            set_error(ctx, "stopped connecting after %" PRIu64 " failures",
                      ctx->fails);
        }
    }
}


/* handshake deadlines, storm retries */
static void
scan_conns(bench_t *ctx)
{
    int     i;
    conn_t *c;

    for (i = 0; i < ctx->nconns; i++) {
        c = &ctx->conns[i];
        if (c->state == CS_WAIT) {
            if (ctx->now >= c->retry_at) {
                conn_start(ctx, c);
            }
        } else if (!c->got_hello && c->fd >= 0 && ctx->now > c->deadline) {
            set_error(ctx, "%s: no hello within %.0f s", c->user,
                      ctx->opt.timeout);
            conn_down(ctx, c,
                      c->state == CS_CONNECTING ? FR_TIMEOUT : FR_NO_HELLO,
                      0);
        }
    }
}


/* CMD_RATE: every message due by now, each to the scenario's next sender */
static void
rate_tick(bench_t *ctx)
{
    uint64_t due, total;
    int64_t  t, sched, lag;
    double   f;
    step_t  *st;

    if (ctx->now < ctx->cmd.t_start) {
        return;
    }
    st = &ctx->slot->steps[ctx->step];
    /* message k is due at t_start + k / rate, for every k with a
     * time before t_end */
    f = (double) (ctx->cmd.t_end - ctx->cmd.t_start) * ctx->rate / 1e6;
    total = (uint64_t) f;
    if ((double) total < f) {
        total++;
    }
    t = ctx->now < ctx->cmd.t_end ? ctx->now : ctx->cmd.t_end;
    due = (uint64_t) ((double) (t - ctx->cmd.t_start) * ctx->rate / 1e6) + 1;
    if (due > total) {
        due = total;
    }
    while (ctx->sched_k < due) {
        sched = ctx->cmd.t_start
                + (int64_t) ((double) ctx->sched_k * 1e6 / ctx->rate);
        lag = ctx->now - sched;
        if (lag > st->max_lag) {
            st->max_lag = lag;
        }
        INC(st->scheduled);
        if (ctx->sc->send) {
            ctx->sc->send(ctx, sched, ctx->step);
        } else {
            INC(st->not_sent);
        }
        ctx->sched_k++;
    }
    if (ctx->now >= ctx->cmd.t_end && ctx->sched_k >= total) {
        cmd_done(ctx);
    }
}


static void
cmd_tick(bench_t *ctx)
{
    if (ctx->now - ctx->last_scan >= (ctx->phase == PH_STORM ? 10000 : 100000)
        && (ctx->inflight > 0 || ctx->phase == PH_STORM))
    {
        ctx->last_scan = ctx->now;
        scan_conns(ctx);
    }
    if (!ctx->busy) {
        return;
    }
    switch (ctx->cmd.code) {
    case CMD_CONNECT:
        launch(ctx);
        if ((ctx->next_launch >= ctx->nconns || ctx->stop_launch)
            && ctx->inflight <= 0)
        {
            cmd_done(ctx);
        }
        break;
    case CMD_SETUP:
        if (ctx->sc->setup_tick == NULL || ctx->sc->setup_tick(ctx)) {
            cmd_done(ctx);
        }
        break;
    case CMD_RATE:
        rate_tick(ctx);
        break;
    case CMD_DRAIN:
        if (outstanding(ctx) == 0 || ctx->now >= ctx->cmd.deadline) {
            cmd_done(ctx);
        }
        break;
    case CMD_PING:
        if (LOAD(ctx->slot->pongs) >= LOAD(ctx->slot->pings)
            || ctx->now >= ctx->cmd.deadline)
        {
            cmd_done(ctx);
        }
        break;
    case CMD_STORM:
        if (storm_tick(ctx)) {
            cmd_done(ctx);
        }
        break;
    default:
        cmd_done(ctx);
        break;
    }
}


static void
poll_cmd(bench_t *ctx)
{
    uint64_t seq = __atomic_load_n(&ctx->shm->cmd.seq, __ATOMIC_ACQUIRE);

    if (seq == ctx->cmd_seen) {
        return;
    }
    memcpy(&ctx->cmd, &ctx->shm->cmd, sizeof(ctx->cmd));
    ctx->cmd.seq = seq;
    ctx->cmd_seen = seq;
    ctx->busy = 1;
    cmd_begin(ctx);
}


static void
child_setup(bench_t *ctx, int id)
{
    long  i, u1;

    ctx->id = id;
    ctx->slot = &ctx->shm->slot[id];
    ctx->u0 = ctx->units * id / ctx->nprocs;
    u1 = ctx->units * (id + 1) / ctx->nprocs;
    ctx->iobuf = xrealloc(NULL, IOBUF_SIZE);
    ctx->fbufsz = (size_t) ctx->opt.body_bytes + 1024;
    ctx->fbuf = xrealloc(NULL, ctx->fbufsz);
    ctx->ep = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }

    ctx->sc->layout(ctx, u1);

    for (i = 0; i < ctx->nconns; i++) {
        ctx->conns[i].fd = -1;
        ctx->conns[i].li = (uint32_t) i;
    }
    ctx->slot->nconns = (uint64_t) ctx->nconns;
    ctx->slot->units = (uint64_t) (u1 - ctx->u0);
}


void
child_main(bench_t *ctx, int id)
{
    struct epoll_event ev[1024];
    struct timespec    ts;
    int                n, i, timeout;
    int64_t            next;
    conn_t            *c;

    ctx->is_child = 1;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_IGN);
    if (getppid() == 1) {
        exit(0);
    }
    ctx->rng ^= ((uint64_t) getpid() << 32) ^ (uint64_t) now_us();
    child_setup(ctx, id);

    for (;;) {
        /* wake up for the next scheduled send, to the microsecond */
        timeout = 20000;
        if (ctx->busy && ctx->cmd.code == CMD_RATE && ctx->rate > 0) {
            next = ctx->cmd.t_start
                   + (int64_t) ((double) ctx->sched_k * 1e6 / ctx->rate);
            next -= now_us();
            timeout = next < 0 ? 0 : next < timeout ? (int) next : timeout;
        } else if (ctx->busy && ctx->cmd.code == CMD_STORM) {
            timeout = 1000;
        }
        ts.tv_sec = timeout / 1000000;
        ts.tv_nsec = (long) (timeout % 1000000) * 1000;
        n = epoll_pwait2(ctx->ep, ev, 1024, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            die("epoll_wait: %s", strerror(errno));
        }
        ctx->now = now_us();
        for (i = 0; i < n; i++) {
            if (i > 0) {
                /* a vDSO call: keep latencies exact */
                ctx->now = now_us();
            }
            c = &ctx->conns[ev[i].data.u64];
            if (c->fd < 0) {
                continue;
            }
            if (c->state == CS_CONNECTING) {
                conn_connected(ctx, c);
                continue;
            }
            if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                conn_read(ctx, c);
            }
            if (c->fd >= 0 && (ev[i].events & EPOLLOUT)) {
                conn_flush(ctx, c);
            }
        }
        poll_cmd(ctx);
        cmd_tick(ctx);
    }
}
