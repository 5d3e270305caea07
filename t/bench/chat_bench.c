
/*
 * chat_bench: the load generator of ngx_chat.
 *
 * It speaks the client contract (../shared/PROTOCOL.md) with its own
 * WebSocket client (RFC 6455, masked client frames), signs its tokens with
 * the module's own code and runs one scenario per invocation:
 *
 *   idle   N authenticated connections held: nginx worker memory and kernel
 *          socket memory per connection, connect rate
 *   dm     open-loop one-to-one traffic at fixed offered rates, then the
 *          highest rate held without the backlog growing; ack and
 *          send->deliver latency; every message checked delivered once and
 *          in order
 *   group  256-member groups: deliveries per second, latency to the first
 *          and to the last member (skipped if create_group answers error)
 *   storm  N clients drop and reconnect at once, then sync: time until all
 *          are back and have their sync_done
 *
 * One parent process coordinates P load processes (bench.h says which file
 * does what); the parent samples the backlog, reads the CPU time of every
 * stack component from /proc and writes the result as a table and as
 * JSON.
 *
 *   chat_bench --report a.json b.json ... [--json all.json]
 *
 * prints the tables of earlier runs and merges them into one file.
 *
 * Exit status: 0 ok (also: a scenario skipped, a performance target
 * missed), 1 usage or setup error, 2 the tool or the stack is broken
 * (no connection, nothing delivered, a child died), 3 integrity violation
 * (a message lost, duplicated or out of order).
 */


#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>


static const bench_scenario_t  bench_scenarios[NSCENARIOS] = {

    [SC_IDLE] = { "idle", 50000, 500,
                  idle_layout, NULL, NULL, NULL, NULL, idle_active,
                  scen_idle },

    [SC_DM] = { "dm", 2000, 200,
                dm_layout, NULL, NULL, dm_send_next, dm_message,
                pairs_active, scen_dm },

    [SC_GROUP] = { "group", 2048, 256,
                   group_layout, group_setup, group_setup_tick,
                   group_send_next, group_message, groups_active,
                   scen_group },

    [SC_STORM] = { "storm", 20000, 200,
                   dm_layout, storm_setup, storm_setup_tick, NULL,
                   storm_message, pairs_active, scen_storm },
};


static void
usage(FILE *f)
{
    fprintf(f,
"usage: chat_bench --scenario idle|dm|group|storm [options]\n"
"       chat_bench --report [--json ALL.json] RESULT.json...\n"
"\n"
"  --url ws://127.0.0.1:PORT/chat  target (loopback only; default $CHAT_URL)\n"
"  --secret S          HS256 secret (default $CHAT_JWT_SECRET)\n"
"  --quick             small CI sizes: idle 500, dm 200 conns 500 msg/s 5 s,\n"
"                      group 1x256 20 msg/s 5 s, storm 200\n"
"  --conns N           idle: connections (50k, at most 90%% of the nginx\n"
"                      workers' fd limits); dm: connections, 2 per pair\n"
"                      (2000); group: members, a multiple of --group-size\n"
"                      (2048); storm: clients (20k)\n"
"  --rate R[,R...]     dm: offered msg/s per step (1k,5k,20k,50k);\n"
"                      group: group messages/s per step (20,100,400)\n"
"  --duration S        seconds per step (15)\n"
"  --hold S            dm: hold the highest sustainable rate S s (60; 0: no"
" search)\n"
"  --probes N          dm: bisection probes before the hold (3)\n"
"  --max-backlog S     a rate is held if the delivery backlog stays under S s\n"
"                      of traffic and does not grow (1)\n"
"  --probe-duration S  (10)\n"
"  --warmup S          dm: a first step at min(first rate, 1000)/s, not\n"
"                      measured: a fresh Kafka compiles its hot paths first\n"
"                      (45; quick 0)\n"
"  --procs P           load processes (default: enough for the fd limit)\n"
"  --per-proc N        connections per process at most (15000)\n"
"  --group-size N      (256, at most 4096; named 400 a request: the\n"
"                      create_group, then add_members)\n"
"  --receipts          group: every member sends delivered and read for\n"
"                      each message it gets (receipt frames counted)\n"
"  --body-bytes N      message body size (100)\n"
"  --src-ips N         source addresses 127.0.0.2... to spread over (200)\n"
"  --window N          connects in flight per process (128; storm: unlimited)\n"
"  --timeout S         handshake timeout (10)\n"
"  --drain S           wait for the backlog after a step (30)\n"
"  --settle S          idle: wait before measuring memory (2)\n"
"  --storm-timeout S   (120)\n"
"  --storm-msgs N      messages per pair before the storm (1)\n"
"  --max-fail N        idle: stop connecting after N failures\n"
"  --no-skip           run every rate even after one saturated the stack\n"
"  --cpu-scope PID[,PID...]  count only processes descending from these\n"
"  --deflate           offer permessage-deflate (the location must agree:\n"
"                      /chat-z of conf/nginx.conf.in); compressed server\n"
"                      frames are inflated\n"
"  --prefix P          user id prefix (default random: users are new)\n"
"  --label TEXT        stored in the JSON\n"
"  --json FILE         write the result as JSON\n"
"  --verbose\n");
}


static void
parse_rates(bench_t *ctx, const char *s)
{
    char  buf[1024], *tok, *save = NULL;

    snprintf(buf, sizeof(buf), "%s", s);
    ctx->opt.nrates = 0;
    for (tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save))
    {
        if (ctx->opt.nrates == MAX_STEPS) {
            die("--rate: at most %d rates", MAX_STEPS);
        }
        ctx->opt.rates[ctx->opt.nrates] = parse_count(tok, "--rate");
        if (ctx->opt.rates[ctx->opt.nrates] <= 0) {
            die("--rate: rates must be positive");
        }
        ctx->opt.nrates++;
    }
}


static void
parse_url(bench_t *ctx)
{
    const char *p = ctx->opt.url, *h, *colon, *slash;
    size_t      hl;

    if (strncmp(p, "wss://", 6) == 0) {
        die("--url: wss:// is not supported; use the plain ws:// port");
    }
    if (strncmp(p, "ws://", 5) != 0) {
        die("--url: want ws://HOST:PORT/PATH, got '%s'", p);
    }
    h = p + 5;
    slash = strchr(h, '/');
    if (slash == NULL) {
        slash = h + strlen(h);
    }
    colon = memchr(h, ':', (size_t) (slash - h));
    hl = (size_t) ((colon ? colon : slash) - h);
    if (hl == 0 || hl >= sizeof(ctx->opt.host)) {
        die("--url: bad host in '%s'", p);
    }
    memcpy(ctx->opt.host, h, hl);
    ctx->opt.host[hl] = '\0';
    ctx->opt.port = colon ? atoi(colon + 1) : 80;
    if (ctx->opt.port <= 0 || ctx->opt.port > 65535) {
        die("--url: bad port in '%s'", p);
    }
    snprintf(ctx->opt.path, sizeof(ctx->opt.path), "%s", *slash ? slash : "/");
    if (strcmp(ctx->opt.host, "localhost") == 0) {
        inet_pton(AF_INET, "127.0.0.1", &ctx->opt.dst);
    } else if (inet_pton(AF_INET, ctx->opt.host, &ctx->opt.dst) != 1) {
        die("--url: the host must be an IPv4 loopback address, not '%s'",
            ctx->opt.host);
    }
    if ((ntohl(ctx->opt.dst.s_addr) >> 24) != 127) {
        die("--url: %s is not a loopback address: this tool targets"
            " 127.0.0.0/8 only",
            ctx->opt.host);
    }
}


static void
opts_defaults(opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->scenario = -1;
    o->conns = -1;
    o->duration = -1;
    o->hold = -1;
    o->probes = 3;
    o->probe_duration = -1;
    o->warmup = -1;
    o->max_backlog = 1;
    o->per_proc = 15000;
    o->group_size = 256;
    o->body_bytes = 100;
    o->src_ips = 200;
    o->window = 128;
    o->timeout = 10;
    o->drain = -1;
    o->settle = -1;
    o->storm_timeout = -1;
    o->storm_msgs = 1;
    o->max_fail = -1;
}


/* the command line into ctx->opt: 0, or the exit status (-1: --report) */
static int
opts_parse(bench_t *ctx, int argc, char **argv)
{
    static const struct option lo[] = {
        { "url", 1, 0, 'u' }, { "secret", 1, 0, 's' },
        { "scenario", 1, 0, 'S' }, { "quick", 0, 0, 'q' },
        { "conns", 1, 0, 'n' }, { "rate", 1, 0, 'r' },
        { "duration", 1, 0, 'd' }, { "hold", 1, 0, 'H' },
        { "probes", 1, 0, 1 }, { "probe-duration", 1, 0, 2 },
        { "procs", 1, 0, 'p' }, { "per-proc", 1, 0, 3 },
        { "group-size", 1, 0, 4 }, { "body-bytes", 1, 0, 5 },
        { "src-ips", 1, 0, 6 }, { "window", 1, 0, 7 },
        { "timeout", 1, 0, 8 }, { "drain", 1, 0, 9 },
        { "settle", 1, 0, 10 }, { "storm-timeout", 1, 0, 11 },
        { "storm-msgs", 1, 0, 12 }, { "max-fail", 1, 0, 13 },
        { "no-skip", 0, 0, 14 }, { "cpu-scope", 1, 0, 15 },
        { "prefix", 1, 0, 16 }, { "label", 1, 0, 17 },
        { "json", 1, 0, 'j' }, { "verbose", 0, 0, 'v' },
        { "report", 0, 0, 18 }, { "warmup", 1, 0, 19 },
        { "max-backlog", 1, 0, 20 }, { "deflate", 0, 0, 21 },
        { "receipts", 0, 0, 22 },
        { "help", 0, 0, 'h' },
        { 0, 0, 0, 0 }
    };
    opts_t  *o = &ctx->opt;
    char     buf[1024], *tok, *save = NULL;
    int      c, i, report = 0;

    while ((c = getopt_long(argc, argv, "u:s:S:qn:r:d:H:p:j:vh", lo, NULL))
           != -1)
    {
        switch (c) {
        case 'u': o->url = optarg; break;
        case 's': o->secret = optarg; break;
        case 'S':
            for (i = 0; i < NSCENARIOS; i++) {
                if (strcmp(optarg, bench_scenarios[i].name) == 0) {
                    o->scenario = i;
                }
            }
            if (o->scenario < 0) {
                die("--scenario: idle, dm, group or storm");
            }
            break;
        case 'q': o->quick = 1; break;
        case 'n': o->conns = (long) parse_count(optarg, "--conns"); break;
        case 'r': parse_rates(ctx, optarg); break;
        case 'd': o->duration = atof(optarg); break;
        case 'H': o->hold = atof(optarg); break;
        case 1: o->probes = atoi(optarg); break;
        case 2: o->probe_duration = atof(optarg); break;
        case 'p': o->procs = atoi(optarg); break;
        case 3: o->per_proc = (long) parse_count(optarg, "--per-proc"); break;
        case 4: o->group_size = atoi(optarg); break;
        case 5: o->body_bytes = atoi(optarg); break;
        case 6: o->src_ips = atoi(optarg); break;
        case 7: o->window = atoi(optarg); break;
        case 8: o->timeout = atof(optarg); break;
        case 9: o->drain = atof(optarg); break;
        case 10: o->settle = atof(optarg); break;
        case 11: o->storm_timeout = atof(optarg); break;
        case 12: o->storm_msgs = atoi(optarg); break;
        case 13: o->max_fail = (long) parse_count(optarg, "--max-fail"); break;
        case 14: o->no_skip = 1; break;
        case 15:
            snprintf(buf, sizeof(buf), "%s", optarg);
            for (tok = strtok_r(buf, ", ", &save); tok;
                 tok = strtok_r(NULL, ", ", &save))
            {
                if (o->nscope < MAX_SCOPE && atoi(tok) > 0) {
                    o->scope[o->nscope++] = atoi(tok);
                }
            }
            break;
        case 16: o->prefix = optarg; break;
        case 17: o->label = optarg; break;
        case 'j': o->json_path = optarg; break;
        case 'v': o->verbose = 1; break;
        case 18: report = 1; break;
        case 19: o->warmup = atof(optarg); break;
        case 20: o->max_backlog = atof(optarg); break;
        case 21: o->deflate = 1; break;
        case 22: o->receipts = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (report) {
        return -1;
    }
    if (optind < argc) {
        die("unexpected argument '%s'", argv[optind]);
    }
    if (o->scenario < 0) {
        usage(stderr);
        return 1;
    }
    return 2;
}


/* the target, the secret, and every default that depends on the scenario;
 * --quick keeps CI short */
static void
opts_finish(bench_t *ctx)
{
    opts_t  *o = &ctx->opt;
    int      scen = o->scenario;

    if (o->url == NULL) {
        o->url = getenv("CHAT_URL") ? getenv("CHAT_URL")
                                    : "ws://127.0.0.1:8080/chat";
    }
    parse_url(ctx);
    if (o->secret == NULL) {
        o->secret = getenv("CHAT_JWT_SECRET");
    }
    if (o->secret == NULL || !o->secret[0]) {
        die("no secret: pass --secret or set CHAT_JWT_SECRET");
    }

    if (o->conns < 0) {
        o->conns = o->quick ? ctx->sc->quick_conns : ctx->sc->conns;

        /*
         * idle by default: what nginx's workers can hold, or connections
         * past their fd limits wait in the listen queue and are counted as
         * failures of the server when they are the machine's
         */
        if (scen == SC_IDLE) {
            ngxmem_t  m;

            nginx_mem(ctx, &m);
            if (m.nofile > 0 && o->conns > m.nofile * 9 / 10) {
                fprintf(stderr, "chat_bench: idle: %ld connections, 90%% of"
                        " the nginx workers' fd limits (%ld)\n",
                        m.nofile * 9 / 10, m.nofile);
                o->conns = m.nofile * 9 / 10;
            }
        }
    }
    if (o->nrates == 0) {
        if (scen == SC_DM) {
            parse_rates(ctx, o->quick ? "500" : "1000,5000,20000,50000");
        } else {
            parse_rates(ctx, o->quick ? "20" : "20,100,400");
        }
    }
    if (o->duration < 0) {
        o->duration = o->quick ? 5 : 15;
    }
    if (o->hold < 0) {
        o->hold = o->quick ? 0 : 60;
    }
    if (o->probe_duration < 0) {
        o->probe_duration = o->quick ? 3 : 10;
    }
    if (o->warmup < 0) {
        o->warmup = o->quick ? 0 : 45;
    }
    if (o->drain < 0) {
        o->drain = o->quick ? 15 : 30;
    }
    if (o->settle < 0) {
        o->settle = o->quick ? 1 : 2;
    }
    if (o->storm_timeout < 0) {
        o->storm_timeout = o->quick ? 30 : 120;
    }
    if (o->max_fail < 0) {
        o->max_fail = scen == SC_IDLE
                      ? (o->conns / 50 > 200 ? o->conns / 50 : 200) : 0;
    }
    if (o->group_size < 2 || o->group_size > 4096) {
        die("--group-size: 2..4096");
    }
    if (o->body_bytes < 1 || o->body_bytes > 1000000) {
        die("--body-bytes: 1..1000000");
    }
    if (o->src_ips < 1 || o->src_ips > 253 * 256) {
        die("--src-ips: 1..%d", 253 * 256);
    }
    if (o->duration <= 0 || o->duration > 3600) {
        die("--duration: 0..3600 s");
    }
}


/* units and load processes for the fd limit; the limit, raised */
static long
plan_procs(bench_t *ctx)
{
    opts_t  *o = &ctx->opt;
    long     nofile, cap, need;

    switch (o->scenario) {
    case SC_IDLE:
        ctx->units = o->conns;
        break;
    case SC_DM:
    case SC_STORM:
        ctx->units = o->conns / 2;
        break;
    case SC_GROUP:
        ctx->units = o->conns / o->group_size;
        break;
    }
    if (ctx->units < 1) {
        die("--conns %ld is too few for %s", o->conns, ctx->sc->name);
    }
    signal(SIGPIPE, SIG_IGN);
    nofile = raise_nofile();
    cap = o->per_proc < nofile - 64 ? o->per_proc : nofile - 64;
    if (cap < 16) {
        die("RLIMIT_NOFILE %ld is too low", nofile);
    }
    need = (o->conns + cap - 1) / cap;
    ctx->nprocs = o->procs > 0 ? o->procs : 1;
    if (ctx->nprocs < need) {
        if (o->procs > 0) {
            logmsg(ctx, "--procs %d: %ld connections need %ld processes with"
                   " %ld descriptors each: using %ld", o->procs, o->conns,
                   need, nofile, need);
        }
        ctx->nprocs = (int) need;
    }
    if (ctx->nprocs > ctx->units) {
        ctx->nprocs = (int) ctx->units;
    }
    if (ctx->nprocs > MAX_PROCS) {
        die("%ld connections need %d processes, more than %d", o->conns,
            ctx->nprocs, MAX_PROCS);
    }
    if (o->scenario == SC_GROUP && o->group_size > cap) {
        die("a group of %d does not fit the fd limit %ld", o->group_size,
            nofile);
    }
    return nofile;
}


/* a fresh random prefix: the users of every run are new */
static void
set_prefix(bench_t *ctx, char *prefix, size_t size)
{
    time_t  tnow;

    if (ctx->opt.prefix == NULL) {
        tnow = time(NULL);
        snprintf(prefix, size, "b%06x_",
                 (unsigned) ((uint64_t) tnow * 2654435761u
                             ^ (uint64_t) getpid() ^ (uint64_t) now_us())
                 & 0xffffff);
        ctx->opt.prefix = prefix;
    }
    if (strlen(ctx->opt.prefix) > 24
        || strspn(ctx->opt.prefix,
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789_.@-")
           != strlen(ctx->opt.prefix))
    {
        die("--prefix: at most 24 characters of [A-Za-z0-9_.@-]");
    }
}


/* the scenario's JSON before it runs: what was asked, where */
static json_t *
result_start(bench_t *ctx, long nofile)
{
    opts_t  *o = &ctx->opt;
    json_t  *res, *params, *rates;
    char     buf[64];
    time_t   tnow;
    int      i;

    res = json_object();
    json_object_set_new(res, "scenario", json_string(ctx->sc->name));
    json_object_set_new(res, "status", json_string("running"));
    tnow = time(NULL);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", gmtime(&tnow));
    json_object_set_new(res, "started_at", json_string(buf));
    if (o->label) {
        json_object_set_new(res, "label", json_string(o->label));
    }
    params = json_object();
    json_object_set_new(params, "url", json_string(o->url));
    json_object_set_new(params, "quick", json_boolean(o->quick));
    set_int(params, "conns", o->conns);
    set_int(params, "procs", ctx->nprocs);
    set_int(params, "conns_per_proc", o->conns / ctx->nprocs);
    set_int(params, "nofile_limit", nofile);
    set_int(params, "src_ips", o->src_ips);
    json_object_set_new(params, "prefix", json_string(o->prefix));
    set_int(params, "body_bytes", o->body_bytes);
    if (o->scenario == SC_DM || o->scenario == SC_GROUP) {
        rates = json_array();
        for (i = 0; i < o->nrates; i++) {
            json_array_append_new(rates, json_real(o->rates[i]));
        }
        json_object_set_new(params, "rates", rates);
        set_real(params, "duration_s", o->duration);
    }
    if (o->scenario == SC_DM) {
        set_real(params, "hold_s", o->hold);
        set_real(params, "warmup_s", o->warmup);
        set_real(params, "max_backlog_s", o->max_backlog);
    }
    if (o->scenario == SC_GROUP) {
        set_int(params, "group_size", o->group_size);
        set_int(params, "receipts", o->receipts);
        set_int(params, "groups", ctx->units);
    }
    if (o->nscope) {
        rates = json_array();
        for (i = 0; i < o->nscope; i++) {
            json_array_append_new(rates, json_integer(o->scope[i]));
        }
        json_object_set_new(params, "cpu_scope", rates);
    }
    json_object_set_new(res, "params", params);
    json_object_set_new(res, "host", host_json());
    return res;
}


/* the status once run; the exit status (see the top of this file) */
static int
result_end(bench_t *ctx, json_t *res, int violated)
{
    int  rc = 0;

    if (strcmp(js(res, "status"), "running") == 0) {
        json_object_set_new(res, "status",
                            json_string(violated ? "integrity violation"
                                                 : "ok"));
    }
    /* nothing delivered at all is a broken tool or stack, not a slow one */
    if ((ctx->opt.scenario == SC_DM || ctx->opt.scenario == SC_GROUP)
        && strcmp(js(res, "status"), "skipped") != 0
        && jd(res, "integrity.delivered") == 0)
    {
        json_object_set_new(res, "status", json_string("failed"));
        json_object_set_new(res, "reason",
                            json_string("nothing was delivered"));
        rc = 2;
    } else if (violated) {
        rc = 3;
    }
    return rc;
}


int
main(int argc, char **argv)
{
    char      prefix[32];
    long      nofile;
    int       rc;
    bench_t  *ctx;

    /* the load processes get their copy with fork() */
    ctx = xcalloc(1, sizeof(bench_t));
    ctx->rng = 0x9e3779b97f4a7c15ULL;
    opts_defaults(&ctx->opt);

    rc = opts_parse(ctx, argc, argv);
    if (rc == -1) {
        if (optind >= argc) {
            die("--report: name the result files");
        }
        return do_report(ctx, argc - optind, argv + optind) ? 2 : 0;
    }
    if (rc != 2) {
        return rc;
    }
    ctx->sc = &bench_scenarios[ctx->opt.scenario];
    opts_finish(ctx);
    nofile = plan_procs(ctx);
    set_prefix(ctx, prefix, sizeof(prefix));

    ctx->shm = mmap(NULL, sizeof(shm_t), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctx->shm == MAP_FAILED) {
        die("mmap: %s", strerror(errno));
    }

    ctx->result = result_start(ctx, nofile);

    logmsg(ctx, "%s: %ld connections in %d process(es) (fd limit %ld)"
           " against %s, users %s*", ctx->sc->name, ctx->opt.conns,
           ctx->nprocs, nofile, ctx->opt.url, ctx->opt.prefix);

    start_kids(ctx);
    rc = ctx->sc->run(ctx, ctx->result);
    json_object_set_new(ctx->result, "errors", counts_json(ctx));
    quit_kids(ctx);

    rc = result_end(ctx, ctx->result, rc);
    print_scenario(ctx->result);
    write_json(ctx, ctx->result);
    json_decref(ctx->result);
    return rc;
}
