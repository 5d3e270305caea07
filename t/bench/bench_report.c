
/*
 * chat_bench: the result. A scenario's JSON (also what t/bench/run.sh
 * reads and merges with --report) and the table printed from it, so that
 * a table printed later from the files is the one printed at the time.
 */


#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>


/* o's member key: integer v, real v (one line for each of the many) */
void
set_int(json_t *o, const char *key, json_int_t v)
{
    json_object_set_new(o, key, json_integer(v));
}


void
set_real(json_t *o, const char *key, double v)
{
    json_object_set_new(o, key, json_real(v));
}


static json_t *
jpath(json_t *o, const char *path)
{
    char  buf[256], *tok, *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && o;
         tok = strtok_r(NULL, ".", &save))
    {
        o = json_object_get(o, tok);
    }
    return o;
}


double
jd(json_t *o, const char *path)
{
    json_t *v = jpath(o, path);

    return json_is_number(v) ? json_number_value(v) : 0;
}


const char *
js(json_t *o, const char *path)
{
    const char *s = json_string_value(jpath(o, path));

    return s ? s : "";
}


static const char *
human_bytes(double b, char *buf, size_t sz)
{
    double a = b < 0 ? -b : b;

    if (a >= 1024.0 * 1024 * 1024) {
        snprintf(buf, sz, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    } else if (a >= 1024.0 * 1024) {
        snprintf(buf, sz, "%.2f MiB", b / (1024.0 * 1024));
    } else if (a >= 1024.0) {
        snprintf(buf, sz, "%.2f KiB", b / 1024.0);
    } else {
        snprintf(buf, sz, "%.0f B", b);
    }
    return buf;
}


static void
print_lat(json_t *o, const char *name)
{
    json_t *l = json_object_get(o, name);

    if (!l || jd(l, "n") == 0) {
        printf(" %7s %7s %7s %8s", "-", "-", "-", "-");
        return;
    }
    printf(" %7.2f %7.2f %7.2f %8.2f", jd(l, "p50"), jd(l, "p99"),
           jd(l, "p999"), jd(l, "max"));
}


static void
print_cpu_header(const char *first)
{
    int k;

    printf("  %-18s", first);
    for (k = 0; k < NCOMP; k++) {
        printf(" %12s", COMP_NAMES[k]);
    }
    printf(" %12s\n", "stack total");
}


/* "cpu s (us/unit)" per component */
static void
print_cpu_row(const char *label, json_t *cpu)
{
    json_t *c;
    char    cell[64];
    int     k;

    if (!cpu) {
        return;
    }
    printf("  %-18s", label);
    for (k = 0; k < NCOMP; k++) {
        c = jpath(cpu, "components");
        c = json_object_get(c, COMP_NAMES[k]);
        if (json_is_number(json_object_get(c, "us_per_unit"))) {
            snprintf(cell, sizeof(cell), "%.2f(%.0f)", jd(c, "cpu_s"),
                     jd(c, "us_per_unit"));
        } else {
            snprintf(cell, sizeof(cell), "%.2f", jd(c, "cpu_s"));
        }
        printf(" %12s", cell);
    }
    if (json_is_number(json_object_get(cpu, "stack_us_per_unit"))) {
        snprintf(cell, sizeof(cell), "%.2f(%.0f)", jd(cpu, "stack_cpu_s"),
                 jd(cpu, "stack_us_per_unit"));
    } else {
        snprintf(cell, sizeof(cell), "%.2f", jd(cpu, "stack_cpu_s"));
    }
    printf(" %12s\n", cell);
}


static void
print_conn(json_t *j)
{
    json_t     *c = json_object_get(j, "connections"), *fr;
    const char *k;
    json_t     *v;

    if (!c) {
        return;
    }
    printf("  connect: %.0f of %.0f in %.2f s = %.0f conn/s, handshake ms"
           " p50 %.2f p99 %.2f max %.2f", jd(c, "ok"), jd(c, "wanted"),
           jd(c, "seconds"), jd(c, "rate_per_s"), jd(c, "handshake_ms.p50"),
           jd(c, "handshake_ms.p99"), jd(c, "handshake_ms.max"));
    fr = json_object_get(c, "fail_reasons");
    if (jd(c, "failed") > 0) {
        printf("; %.0f failed:", jd(c, "failed"));
        json_object_foreach(fr, k, v) {
            printf(" %s %lld", k, (long long) json_integer_value(v));
        }
    }
    if (jd(c, "kernel.listen_overflows") > 0) {
        printf("; %.0f listen queue overflows",
               jd(c, "kernel.listen_overflows"));
    }
    if (jd(c, "not_attempted") > 0) {
        printf("; stopped after that many failures, %.0f not attempted",
               jd(c, "not_attempted"));
    }
    printf("\n");
}


static void
print_errors(json_t *j)
{
    json_t     *e = json_object_get(j, "errors"), *m, *v;
    const char *k;
    int         any = 0;

    if (!e) {
        return;
    }
    m = json_object_get(e, "server_errors");
    json_object_foreach(m, k, v) {
        printf("%s %s %lld", any++ ? "," : "  server errors:", k,
               (long long) json_integer_value(v));
    }
    m = json_object_get(e, "closes");
    json_object_foreach(m, k, v) {
        printf("%s close %s: %lld", any++ ? "," : " ", k,
               (long long) json_integer_value(v));
    }
    if (jd(e, "protocol_errors") > 0) {
        printf("%s protocol errors %.0f", any++ ? "," : " ",
               jd(e, "protocol_errors"));
    }
    if (any) {
        printf("\n");
    }
    if (js(e, "first_error")[0]) {
        printf("  first error: %s\n", js(e, "first_error"));
    }
}


static void
print_integrity(json_t *j)
{
    json_t *i = json_object_get(j, "integrity");

    if (!i) {
        return;
    }
    printf("  integrity: sent %.0f, acked %.0f, errors %.0f, delivered %.0f,"
           " lost %.0f, duplicates %.0f, out of order %.0f, seq mismatch %.0f,"
           " unacked %.0f", jd(i, "sent"), jd(i, "acked"), jd(i, "errors"),
           jd(i, "delivered"), jd(i, "lost"), jd(i, "duplicates"),
           jd(i, "out_of_order"), jd(i, "seq_mismatch"), jd(i, "unacked"));
    if (json_object_get(i, "missing_deliveries")) {
        printf(", missing deliveries %.0f", jd(i, "missing_deliveries"));
    }
    printf(": %s\n",
           json_is_true(json_object_get(i, "ok")) ? "OK" : "VIOLATED");
}


static void
print_steps(json_t *j, int group)
{
    json_t *steps = json_object_get(j, "steps"), *s, *bl;
    size_t  i;
    char    label[64];

    if (!json_array_size(steps)) {
        return;
    }
    printf("  %-6s %9s %8s %9s %10s | %-33s | %-33s | %7s %9s  %s\n",
           "step", "offered/s", "sent", "acked/s",
           group ? "deliv/s" : "deliv/s",
           group ? "first member ms p50 p99 p99.9 max"
                 : "ack ms  p50     p99   p99.9      max",
           group ? "last member ms  p50 p99 p99.9 max"
                 : "deliver ms p50   p99   p99.9    max",
           "lag ms", "backlog", "verdict");
    json_array_foreach(steps, i, s) {
        if (json_object_get(s, "skipped")) {
            printf("  %-6s %9.0f  skipped: %s\n", js(s, "kind"),
                   jd(s, "offered_rate"), js(s, "skipped"));
            continue;
        }
        printf("  %-6s %9.0f %8.0f %9.1f %10.1f |", js(s, "kind"),
               jd(s, "offered_rate"), jd(s, "sent"), jd(s, "ack_rate"),
               group ? jd(s, "deliveries_per_s") : jd(s, "throughput_msg_s"));
        print_lat(s, group ? "first_member_ms" : "ack_ms");
        printf(" |");
        print_lat(s, group ? "last_member_ms" : "deliver_ms");
        bl = json_object_get(s, "backlog_deliveries");
        printf(" | %7.1f %9.0f  %s", jd(s, "max_generator_lag_ms"),
               json_array_size(bl)
               ? json_number_value(json_array_get(bl, json_array_size(bl) - 1))
               : 0,
               js(s, "verdict"));
        if (jd(s, "duplicates") > 0 || jd(s, "out_of_order") > 0
            || jd(s, "errors") > 0)
        {
            printf(" [duplicates %.0f, out of order %.0f, errors %.0f]",
                   jd(s, "duplicates"), jd(s, "out_of_order"), jd(s, "errors"));
        }
        printf("\n");
    }
    if (group) {
        printf("  %-6s %9s %8s | %-33s\n", "", "", "",
               "ack ms    p50     p99   p99.9      max");
        json_array_foreach(steps, i, s) {
            if (json_object_get(s, "skipped")) {
                continue;
            }
            printf("  %-6s %9.0f %8s |", js(s, "kind"),
                   jd(s, "offered_rate"), "");
            print_lat(s, "ack_ms");
            printf("   (%.0f of %.0f messages reached every member)\n",
                   jd(s, "complete"), jd(s, "sent"));
        }
    }
    printf("  CPU seconds (us per %s):\n", group ? "delivery" : "message");
    print_cpu_header("step");
    json_array_foreach(steps, i, s) {
        if (json_object_get(s, "skipped")) {
            continue;
        }
        snprintf(label, sizeof(label), "%s %.0f/s", js(s, "kind"),
                 jd(s, "offered_rate"));
        print_cpu_row(label, json_object_get(s, "cpu"));
    }
}


void
print_scenario(json_t *j)
{
    const char *sc = js(j, "scenario"), *status = js(j, "status");
    char        b1[32], b2[32], b3[32], b4[32];
    json_t     *m;

    printf("\n== %s: %s", sc[0] ? sc : "?", status[0] ? status : "?");
    if (js(j, "reason")[0]) {
        printf(" (%s)", js(j, "reason"));
    }
    printf("  [%s, %.0f process(es), users %s*]\n", js(j, "params.url"),
           jd(j, "params.procs"), js(j, "params.prefix"));
    if (strcmp(sc, "idle") == 0) {
        print_conn(j);
        if (json_object_get(j, "held")) {
            printf("  held: %.0f connections; app pings answered %.0f of %.0f;"
                   " nginx workers' fd limits add up to %.0f\n",
                   jd(j, "held"), jd(j, "pings.answered"), jd(j, "pings.sent"),
                   jd(j, "nginx_memory.workers_fd_limit_total"));
            m = json_object_get(j, "nginx_memory");
            printf("  nginx memory (%.0f workers): RSS %s -> %s = %s/conn;"
                   " PSS = %s/conn\n", jd(m, "workers"),
                   human_bytes(jd(m, "rss_kb_before") * 1024, b1, sizeof(b1)),
                   human_bytes(jd(m, "rss_kb_after") * 1024, b2, sizeof(b2)),
                   human_bytes(jd(m, "rss_bytes_per_conn"), b3, sizeof(b3)),
                   human_bytes(jd(m, "pss_bytes_per_conn"), b4, sizeof(b4)));
            m = json_object_get(j, "kernel_socket_memory");
            printf("  kernel TCP mem: %.0f -> %.0f pages = %s/conn; kernel"
                   " slab: %s/conn (both ends of each loopback connection)\n",
                   jd(m, "tcp_mem_pages_before"), jd(m, "tcp_mem_pages_after"),
                   human_bytes(jd(m, "bytes_per_conn"), b1, sizeof(b1)),
                   human_bytes(jd(m, "slab_bytes_per_conn"), b2, sizeof(b2)));
            printf("  CPU seconds (us per connection):\n");
            print_cpu_header("");
            print_cpu_row("connect+hold", json_object_get(j, "cpu"));
        }
    } else if (strcmp(sc, "dm") == 0) {
        print_conn(j);
        printf("  %.0f pairs active, body %.0f bytes\n", jd(j, "active_pairs"),
               jd(j, "params.body_bytes"));
        print_steps(j, 0);
        m = json_object_get(j, "max_sustained");
        if (m) {
            if (json_is_true(json_object_get(m, "held"))) {
                printf("  highest rate held for %.0f s: %.0f msg/s\n",
                       jd(m, "hold_s"), jd(m, "rate"));
            } else {
                printf("  highest rate held for %.0f s: none found\n",
                       jd(m, "hold_s"));
            }
        }
        print_integrity(j);
    } else if (strcmp(sc, "group") == 0) {
        print_conn(j);
        if (json_object_get(j, "groups_created")) {
            printf("  groups of %.0f members: %.0f created, %.0f failed\n",
                   jd(j, "params.group_size"), jd(j, "groups_created"),
                   jd(j, "groups_failed"));
        }
        print_steps(j, 1);
        print_integrity(j);
    } else if (strcmp(sc, "storm") == 0) {
        print_conn(j);
        m = json_object_get(j, "storm");
        if (m) {
            printf("  %.0f clients reconnected at once: %.0f back, last after"
                   " %.2f s (p50 %.1f ms, p99 %.1f ms); %.0f synced, last after"
                   " %.2f s (p50 %.1f ms, p99 %.1f ms)\n",
                   jd(m, "clients"), jd(m, "back"), jd(m, "last_back_s"),
                   jd(m, "back_ms.p50"), jd(m, "back_ms.p99"), jd(m, "synced"),
                   jd(m, "last_synced_s"), jd(m, "synced_ms.p50"),
                   jd(m, "synced_ms.p99"));
            printf("  retries %.0f, given up %.0f; sync returned %.0f"
                   " conversations, %.0f messages; kernel: %.0f listen queue"
                   " overflows, %.0f drops\n", jd(m, "retries"),
                   jd(m, "given_up"), jd(m, "sync_conversations"),
                   jd(m, "sync_messages"), jd(m, "kernel.listen_overflows"),
                   jd(m, "kernel.listen_drops"));
            printf("  CPU seconds (us per client):\n");
            print_cpu_header("");
            print_cpu_row("reconnect+sync", json_object_get(j, "cpu"));
        }
    }
    print_errors(j);
    fflush(stdout);
}


void
write_json(bench_t *ctx, json_t *j)
{
    char tmp[4096];

    if (!ctx->opt.json_path) {
        return;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", ctx->opt.json_path);
    if (json_dump_file(j, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0
        || rename(tmp, ctx->opt.json_path) != 0)
    {
        fprintf(stderr, "chat_bench: cannot write %s: %s\n", ctx->opt.json_path,
                strerror(errno));
    }
}


int
do_report(bench_t *ctx, int argc, char **argv)
{
    json_t      *all = json_object(), *arr = json_array(), *j;
    json_error_t e;
    time_t       t = time(NULL);
    char         ts[64];
    int          i, bad = 0;

    for (i = 0; i < argc; i++) {
        j = json_load_file(argv[i], 0, &e);
        if (j == NULL) {
            fprintf(stderr, "chat_bench: %s: %s\n", argv[i], e.text);
            j = json_object();
            json_object_set_new(j, "file", json_string(argv[i]));
            json_object_set_new(j, "status", json_string("failed"));
            json_object_set_new(j, "reason", json_string("no result file"));
        }
        print_scenario(j);
        if (strcmp(js(j, "status"), "failed") == 0) {
            bad = 1;
        }
        json_array_append_new(arr, j);
    }
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    json_object_set_new(all, "tool", json_string("chat_bench"));
    json_object_set_new(all, "generated_at", json_string(ts));
    json_object_set_new(all, "host", host_json());
    if (ctx->opt.label) {
        json_object_set_new(all, "label", json_string(ctx->opt.label));
    }
    json_object_set_new(all, "scenarios", arr);
    write_json(ctx, all);
    json_decref(all);
    return bad;
}
