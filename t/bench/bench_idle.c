
/*
 * chat_bench: idle connections. --conns authenticated connections are
 * opened and held: the connect rate and handshake latency, then, after
 * an application ping on each, nginx workers' memory and the kernel's
 * socket memory per connection.
 */


#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>


void
idle_layout(bench_t *ctx, long u1)
{
    long     i;
    conn_t  *c;

    ctx->nconns = (int) (u1 - ctx->u0);
    ctx->conns = xcalloc((size_t) ctx->nconns, sizeof(conn_t));
    for (i = 0; i < ctx->nconns; i++) {
        c = &ctx->conns[i];
        c->gi = (uint32_t) (ctx->u0 + i);
        snprintf(c->user, sizeof(c->user), "%si%ld", ctx->opt.prefix,
                 ctx->u0 + i);
    }
}


uint64_t
idle_active(bench_t *ctx)
{
    uint64_t n = 0;
    int      i;

    for (i = 0; i < ctx->nconns; i++) {
        n += conn_live(&ctx->conns[i]);
    }
    return n;
}


int
scen_idle(bench_t *ctx, json_t *res)
{
    cpu_t      a, b;
    ngxmem_t   m0, m1;
    sockstat_t s0, s1;
    json_t    *conn, *o;
    uint64_t   ok;
    int64_t    t;
    long       lo0, ld0;

    nginx_mem(ctx, &m0);
    sockstat(&s0);
    listen_drops(&lo0, &ld0);
    cpu_snap(ctx, &a, NULL, NULL);
    conn = do_connect(ctx, ctx->opt.window, ctx->opt.max_fail);
    json_object_set_new(conn, "kernel", listen_json(lo0, ld0));
    json_object_set_new(res, "connections", conn);
    ok = SUMF(ctx, conn_ok);
    if (ok == 0) {
        set_error_from_slots(ctx, res);
        fatal(ctx, "no connection was established (%s)",
              json_string_value(json_object_get(res, "first_error"))
              ? json_string_value(json_object_get(res, "first_error")) : "?");
    }
    logmsg(ctx, "idle: %" PRIu64 " of %ld connections established in %.2f s",
           ok, ctx->opt.conns,
           json_real_value(json_object_get(conn, "seconds")));
    ctx->shm->cmd.t_start = now_us();
    ctx->shm->cmd.deadline = ctx->shm->cmd.t_start + 10000000;
    cmd_publish(ctx, CMD_PING);
    wait_cmd(ctx, NULL, NULL);
    t = now_us() + (int64_t) (ctx->opt.settle * 1e6);
    while (now_us() < t) {
        wait_cmd(ctx, NULL, NULL);
        usleep(20000);
    }
    nginx_mem(ctx, &m1);
    sockstat(&s1);
    cpu_snap(ctx, &b, NULL, NULL);
    ok = 0;
    for (int i = 0; i < ctx->nprocs; i++) {
        ok += ctx->shm->slot[i].conn_ok;
    }
    /* held = established and still open (closes counted separately) */
    {
        uint64_t closed = 0;
        int      i, k;

        for (i = 0; i < ctx->nprocs; i++) {
            for (k = 0; k < NCLOSE; k++) {
                closed += ctx->shm->slot[i].closes[k];
            }
        }
        ok = ok > closed ? ok - closed : 0;
    }
    set_int(res, "held", ok);
    o = json_object();
    set_int(o, "workers", m1.workers);
    set_int(o, "workers_fd_limit_total", m1.nofile);
    set_int(o, "rss_kb_before", m0.rss_kb);
    set_int(o, "rss_kb_after", m1.rss_kb);
    set_int(o, "pss_kb_before", m0.pss_kb);
    set_int(o, "pss_kb_after", m1.pss_kb);
    set_real(o, "rss_bytes_per_conn",
             ok ? (double) (m1.rss_kb - m0.rss_kb) * 1024 / (double) ok : 0);
    set_real(o, "pss_bytes_per_conn",
             ok ? (double) (m1.pss_kb - m0.pss_kb) * 1024 / (double) ok : 0);
    json_object_set_new(res, "nginx_memory", o);
    o = json_object();
    set_int(o, "page_size", sysconf(_SC_PAGESIZE));
    set_int(o, "tcp_mem_pages_before", s0.tcp_mem);
    set_int(o, "tcp_mem_pages_after", s1.tcp_mem);
    set_int(o, "tcp_inuse_before", s0.tcp_inuse);
    set_int(o, "tcp_inuse_after", s1.tcp_inuse);
    set_int(o, "sockets_used_before", s0.sockets);
    set_int(o, "sockets_used_after", s1.sockets);
    set_real(o, "bytes_per_conn",
             ok ? (double) (s1.tcp_mem - s0.tcp_mem)
                  * (double) sysconf(_SC_PAGESIZE) / (double) ok : 0);
    set_int(o, "slab_kb_before", s0.slab_kb);
    set_int(o, "slab_kb_after", s1.slab_kb);
    set_real(o, "slab_bytes_per_conn",
             ok ? (double) (s1.slab_kb - s0.slab_kb) * 1024 / (double) ok
                : 0);
    json_object_set_new(o, "note", json_string(
        "both ends of each loopback connection are in this kernel; TCP mem "
        "is the socket buffers (near zero when idle), Slab (from "
        "/proc/meminfo) the socket, file and epoll structures of the whole "
        "machine"));
    json_object_set_new(res, "kernel_socket_memory", o);
    o = json_object();
    set_int(o, "sent", SUMF(ctx, pings));
    set_int(o, "answered", SUMF(ctx, pongs));
    json_object_set_new(res, "pings", o);
    json_object_set_new(res, "cpu", cpu_json(&a, &b, (double) ok, "conn"));
    return 0;
}
