
/*
 * chat_bench: the load generator of ngx_chat; what its files share.
 *
 * One parent process coordinates P load processes (children); each child
 * holds its share of the connections in one epoll loop. Children publish
 * counters and latency histograms in a shared memory block (shm_t, one
 * slot_t each); the parent sends commands through the same block.
 *
 *   chat_bench.c     options and main
 *   bench_run.c      the parent: commands, connecting, rate steps, drain,
 *                    integrity, the end of the load processes
 *   bench_child.c    a load process: its event loop, commands, frames
 *   bench_ws.c       the WebSocket client: connect, handshake, frames
 *   bench_idle.c     idle connections
 *   bench_dm.c       one-to-one traffic (pairs), also the storm's pairs
 *   bench_group.c    groups
 *   bench_storm.c    the reconnect storm
 *   bench_stats.c    histograms, sums over the slots
 *   bench_proc.c     /proc: CPU per component, memory, sockets, host
 *   bench_report.c   the result: the table and the JSON
 *   bench_util.c     time, logging, memory, the PRNG
 *
 * A process's state is its one context, bench_t, handed to every function
 * that needs it; the only other state is the signal number the parent's
 * handler leaves (bench_run.c).
 */


#ifndef _CHAT_BENCH_H_INCLUDED_
#define _CHAT_BENCH_H_INCLUDED_


#define _GNU_SOURCE

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>


#define MAX_PROCS    32
#define MAX_STEPS    16
#define MAX_SCOPE    64
#define IOBUF_SIZE   (256 * 1024)
#define WBUF_LIMIT   (8 * 1024 * 1024)    /* per connection, client side */
#define RBUF_LIMIT   (64 * 1024 * 1024)


typedef struct bench_s  bench_t;


enum { SC_IDLE, SC_DM, SC_GROUP, SC_STORM, NSCENARIOS };


/* ================================================================ options */

typedef struct {
    const char      *url;
    char             host[64];
    int              port;
    char             path[512];
    struct in_addr   dst;
    const char      *secret;
    int              scenario;
    int              quick;
    long             conns;
    double           rates[MAX_STEPS];
    int              nrates;
    double           duration;
    double           hold;
    int              probes;
    double           probe_duration;
    double           warmup;
    double           max_backlog;
    int              procs;
    long             per_proc;
    int              group_size;
    int              body_bytes;
    int              src_ips;
    int              window;
    double           timeout;
    double           drain;
    double           settle;
    double           storm_timeout;
    int              storm_msgs;
    long             max_fail;
    int              no_skip;
    const char      *json_path;
    const char      *prefix;
    const char      *label;
    int              scope[MAX_SCOPE];
    int              nscope;
    int              verbose;
    int              deflate;      /* offer permessage-deflate */
    int              receipts;     /* group: members send delivered+read */
} opts_t;


/* ============================================================= histogram */

/*
 * Log-linear buckets over microseconds: exact below 256, then 128
 * sub-buckets per power of two (under 0.8% error), up to 2^40 us.
 */
#define HB_LIN     256
#define HB_SUB     128
#define HB_MAXE    40
#define HBUCKETS   (HB_LIN + (HB_MAXE - 8) * HB_SUB)

typedef struct {
    uint64_t   n;
    uint64_t   max;
    uint64_t   sum;
    uint32_t   c[HBUCKETS];
} hist_t;


/* ========================================================= shared memory */

/* why a connection attempt failed (FAIL_NAMES) */
enum {
    FR_SOCKET, FR_BIND, FR_REFUSED, FR_TIMEOUT, FR_RESET, FR_HTTP401,
    FR_HTTP503, FR_HTTP_OTHER, FR_BAD_ACCEPT, FR_NO_HELLO, FR_CLOSED, NFAIL
};

#define NCLOSE  14                  /* CLOSE_CODES, the last one "other" */
#define NERR    8                   /* ERR_NAMES, the last one "other" */

extern const char  *const FAIL_NAMES[NFAIL];
extern const int          CLOSE_CODES[NCLOSE];
extern const char  *const ERR_NAMES[NERR];

typedef struct {
    uint64_t   scheduled;      /* messages the schedule asked for */
    uint64_t   sent;
    uint64_t   not_sent;       /* no live sender, or client buffer full */
    uint64_t   acked;          /* of this step's messages */
    uint64_t   errs;
    uint64_t   expected;       /* deliveries expected (dm: 1 per message) */
    uint64_t   delivered;      /* dm: messages delivered (first time) */
    uint64_t   deliveries;     /* group: single deliveries */
    uint64_t   complete;       /* group: messages delivered to every member */
    uint64_t   dups;
    uint64_t   order_err;
    uint64_t   acks_in_win;    /* received during the sending window */
    uint64_t   deliv_in_win;
    uint64_t   receipts_sent;  /* group --receipts: receipt frames sent */
    uint64_t   receipt_frames; /* and receipt frames received */
    int64_t    max_lag;        /* us the generator sent behind schedule */
    hist_t     ack;
    hist_t     deliv;
    hist_t     first;
    hist_t     last;
} step_t;

/* one load process's figures: it writes them, the parent reads them */
typedef struct {
    uint64_t   done_cmd;

    uint64_t   nconns, units, active_units;

    /* connect */
    uint64_t   conn_ok, conn_fail, fail[NFAIL];
    int64_t    t_first_start, t_last_hello;
    int        last_http;
    hist_t     conn_lat;

    /* live, sampled by the parent */
    uint64_t   live_sent, live_acked, live_errs, live_expected,
               live_delivered;

    uint64_t   pings, pongs;
    uint64_t   closes[NCLOSE];
    uint64_t   errs[NERR];
    uint64_t   proto_err, other_frames, dup_acks, unknown_ids, seq_mismatch;
    char       last_error[256];
    char       skip_reason[256];

    /* group */
    uint64_t   groups_ok, groups_failed;

    /* integrity, after CMD_FINAL */
    uint64_t   i_sent, i_acked, i_errs, i_delivered, i_lost, i_unacked,
               i_dups, i_order, i_incomplete, i_missing_deliveries;

    /* storm */
    uint64_t   st_clients, st_back, st_synced, st_failed, st_retries,
               st_sync_msgs, st_convs;
    int64_t    st_last_hello, st_last_sync;
    hist_t     st_hello, st_sync;

    step_t     steps[MAX_STEPS];
} slot_t;

enum {
    CMD_NONE, CMD_CONNECT, CMD_SETUP, CMD_RATE, CMD_DRAIN, CMD_PING,
    CMD_STORM, CMD_FINAL, CMD_QUIT
};

typedef struct {
    uint64_t   seq;
    int        code;
    int        step;
    int        window;
    int64_t    t_start, t_end, deadline;
    long       max_fail;
    double     rate[MAX_PROCS];
} cmd_t;

typedef struct {
    cmd_t      cmd;
    slot_t     slot[MAX_PROCS];
} shm_t;

/* counters in shared memory: one writer (the child), one reader */
#define LOAD(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define INC(x)     __atomic_store_n(&(x), LOAD(x) + 1, __ATOMIC_RELAXED)
#define ADD(x, v)  __atomic_store_n(&(x), LOAD(x) + (v), __ATOMIC_RELAXED)

/* a slot_t field summed over the load processes */
#define SUMF(ctx, field)  sum_field(ctx, offsetof(slot_t, field))


/* =========================================================== connections */

enum { CS_NONE, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSED, CS_FAILED,
       CS_WAIT };

typedef struct {
    int        fd;
    uint8_t    state;
    uint8_t    armed;       /* 0: IN, 1: IN|OUT, 2: OUT only (connecting) */
    uint8_t    got_hello;
    uint8_t    fop;
    uint8_t    back;        /* storm: counted back */
    uint8_t    synced;      /* storm: sync_done received */
    uint16_t   attempts;
    uint32_t   gi;
    uint32_t   li;
    int32_t    owner;       /* local pair or group */
    int32_t    member;      /* dm/storm: 0 sender, 1 receiver; group: index */
    char       key[25];
    uint8_t   *rbuf;
    uint32_t   rlen, rcap;
    uint8_t   *wbuf;
    uint32_t   woff, wlen, wcap;
    uint8_t   *fbuf;
    uint32_t   flen, fcap;
    int64_t    t_start, t_hello, deadline, retry_at;
    int64_t    last_seq;
    uint64_t   last_n;
    char       user[64];
} conn_t;

/* a message's state in its pair or group */
#define F_SENT   1
#define F_ACKED  2
#define F_ERR    4
#define F_DELIV  8
#define F_SEQ    16
#define F_DONE   32

typedef struct {
    uint32_t   gp;
    int        u, v;
    uint64_t   nsent, cap;
    int64_t   *ts;
    int32_t   *seq;
    uint8_t   *flags;
    uint8_t   *step;
} pair_t;

typedef struct {
    uint32_t   gg;
    int        first, size;
    int        state;                 /* 0 pending, 1 ready, -1 failed */
    int        named;                 /* members named so far (setup) */
    char       conv[160];
    uint64_t   nsent, cap;
    int64_t   *ts, *t_first, *t_last;
    uint16_t  *exp, *got;
    uint8_t   *flags, *step;
} group_t;

enum { PH_NORMAL, PH_STORM };


/* ============================================================= scenarios */

/*
 * What a scenario does, in the load processes and in the parent. A NULL
 * hook is a step the scenario does not have.
 */
typedef struct {
    const char  *name;
    long         conns;                  /* --conns by default */
    long         quick_conns;            /* and with --quick */

    /* a load process: its connections for units u0 .. u1 - 1 */
    void       (*layout)(bench_t *ctx, long u1);
    /* CMD_SETUP begins, then is ticked until it returns 1 */
    void       (*setup)(bench_t *ctx);
    int        (*setup_tick)(bench_t *ctx);
    /* CMD_RATE: one message, due at sched (us) */
    void       (*send)(bench_t *ctx, int64_t sched, int step);
    void       (*message)(bench_t *ctx, conn_t *c, json_t *j);
    /* units that can take part (active_units) */
    uint64_t   (*active)(bench_t *ctx);

    /* the parent: the scenario's run; 1 if integrity was violated */
    int        (*run)(bench_t *ctx, json_t *res);
} bench_scenario_t;


/* ================================================================ context */

/*
 * The one context of a chat_bench process: the options, the shared block
 * and, in the parent, the orchestration; in a load process, its
 * connections and the command it runs.
 */
struct bench_s {
    opts_t                   opt;
    const bench_scenario_t  *sc;
    shm_t                   *shm;
    int                      nprocs;
    long                     units;        /* idle: conns, dm/storm: pairs,
                                              group: groups */
    pid_t                    kids[MAX_PROCS];
    int                      is_child;
    uint64_t                 rng;          /* this process's xorshift */

    /* the parent */
    uint64_t                 cmd_seq;
    int                      had_progress;
    int64_t                  next_progress;
    json_t                  *result;       /* the scenario's JSON */

    /* a load process */
    int64_t                  now;          /* us, read once per event */
    int                      id;
    int                      ep;
    slot_t                  *slot;         /* its own, in shm */
    conn_t                  *conns;
    int                      nconns;
    pair_t                  *pairs;
    int                      npairs;
    group_t                 *groups;
    int                      ngroups;
    long                     u0;           /* first global unit */
    uint8_t                 *iobuf;
    char                    *fbuf;         /* outgoing frame text */
    size_t                   fbufsz;
    uint64_t                 cmd_seen;
    cmd_t                    cmd;          /* the one being run */
    int                      busy;
    int                      phase;
    /* connect */
    int                      next_launch;
    int                      inflight;
    int                      stop_launch;
    uint64_t                 fails;
    /* rate */
    double                   rate;
    uint64_t                 sched_k;
    int                      rr;
    int                      step;
    int64_t                  win_start, win_end;
    int64_t                  last_scan;
    int                      max_msg;
    /* permessage-deflate: one raw inflate stream, reset per message (the
     * server compresses each on its own), and its output */
    void                    *zin;
    uint8_t                 *zbuf;
    size_t                   zcap;
};


/* bench_util.c */
int64_t now_us(void);
void logmsg(bench_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void *xrealloc(void *p, size_t n);
void *xcalloc(size_t n, size_t size);
uint64_t rng(bench_t *ctx);
double parse_count(const char *s, const char *what);
int read_file(const char *path, char *buf, size_t sz);

/* bench_stats.c */
void hist_add(hist_t *h, int64_t v);
void hist_merge(hist_t *d, const hist_t *s);
double hist_pct(const hist_t *h, double p);
json_t *lat_json(const hist_t *h);
void step_merge(step_t *d, const step_t *s);
uint64_t sum_field(bench_t *ctx, size_t off);
int64_t live_outstanding(bench_t *ctx);
void set_error_from_slots(bench_t *ctx, json_t *o);
json_t *counts_json(bench_t *ctx);

/* bench_proc.c */
enum { K_NGINX, K_WORKER, K_KAFKA, K_REDIS, K_PG, K_BENCH, NCOMP };
extern const char  *const COMP_NAMES[NCOMP];

typedef struct {
    unsigned long long   ticks[NCOMP];
    int                  procs[NCOMP];
    int64_t              t;
} cpu_t;

typedef struct {
    long   rss_kb, pss_kb, nofile;
    int    workers;
} ngxmem_t;

typedef struct {
    long   sockets, tcp_inuse, tcp_alloc, tcp_tw, tcp_mem, slab_kb;
} sockstat_t;

void cpu_snap(bench_t *ctx, cpu_t *out,
    int (*each)(int pid, int comp, int worker, void *), void *arg);
json_t *cpu_json(const cpu_t *a, const cpu_t *b, double units,
    const char *unit);
void nginx_mem(bench_t *ctx, ngxmem_t *m);
void sockstat(sockstat_t *s);
void listen_drops(long *overflows, long *drops);
json_t *listen_json(long o0, long d0);
json_t *host_json(void);
long raise_nofile(void);

/* bench_ws.c */
void set_error(bench_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void proto_err(bench_t *ctx, conn_t *c, const char *what);
void conn_start(bench_t *ctx, conn_t *c);
void conn_connected(bench_t *ctx, conn_t *c);
void conn_read(bench_t *ctx, conn_t *c);
void conn_flush(bench_t *ctx, conn_t *c);
void conn_down(bench_t *ctx, conn_t *c, int reason, int code);
int conn_live(const conn_t *c);
int ws_send(bench_t *ctx, conn_t *c, int op, const void *data, size_t len);
int ws_text(bench_t *ctx, conn_t *c, const char *s, size_t len);
void close_all(bench_t *ctx, int polite);

/* bench_child.c */
void child_main(bench_t *ctx, int id);
void on_text(bench_t *ctx, conn_t *c, uint8_t *p, size_t n);
int in_window(bench_t *ctx);
int parse_cmid(const char *s, char tag, uint64_t *unit, uint64_t *n);
int64_t jint(json_t *o, const char *k);
const char *jstr(json_t *o, const char *k);
size_t put_body(bench_t *ctx, size_t len, int64_t ts);
int64_t outstanding(bench_t *ctx);
void launch(bench_t *ctx);

/* bench_idle.c */
void idle_layout(bench_t *ctx, long u1);
uint64_t idle_active(bench_t *ctx);
int scen_idle(bench_t *ctx, json_t *res);

/* bench_dm.c */
void dm_layout(bench_t *ctx, long u1);
int dm_send(bench_t *ctx, pair_t *p, int64_t sched, int step);
void dm_send_next(bench_t *ctx, int64_t sched, int step);
void dm_message(bench_t *ctx, conn_t *c, json_t *j);
void dm_ack(bench_t *ctx, conn_t *c, pair_t *p, uint64_t n, int64_t seq);
void dm_error(bench_t *ctx, pair_t *p, uint64_t n);
void dm_final(bench_t *ctx);
int pair_live(bench_t *ctx, pair_t *p);
uint64_t pairs_active(bench_t *ctx);
int scen_dm(bench_t *ctx, json_t *res);

/* bench_group.c */
void group_layout(bench_t *ctx, long u1);
void group_setup(bench_t *ctx);
int group_setup_tick(bench_t *ctx);
void group_send_next(bench_t *ctx, int64_t sched, int step);
void group_message(bench_t *ctx, conn_t *c, json_t *j);
void group_ack(bench_t *ctx, group_t *g, uint64_t n);
void group_error(bench_t *ctx, group_t *g, uint64_t n);
void group_create_error(bench_t *ctx, const char *req, const char *code,
    const char *msg);
void on_group(bench_t *ctx, conn_t *c, json_t *j);
void group_receipt(bench_t *ctx, conn_t *c, json_t *j);
void group_final(bench_t *ctx);
uint64_t groups_active(bench_t *ctx);
int scen_group(bench_t *ctx, json_t *res);

/* bench_storm.c */
void storm_setup(bench_t *ctx);
int storm_setup_tick(bench_t *ctx);
void storm_message(bench_t *ctx, conn_t *c, json_t *j);
void storm_hello(bench_t *ctx, conn_t *c);
void storm_sync_done(bench_t *ctx, conn_t *c, json_t *j);
void storm_conversations(bench_t *ctx, conn_t *c, json_t *j);
void storm_begin(bench_t *ctx);
int storm_tick(bench_t *ctx);
void storm_retry(bench_t *ctx, conn_t *c);
int scen_storm(bench_t *ctx, json_t *res);

/* bench_run.c */
typedef void (*tick_fn)(bench_t *ctx, void *arg);

void start_kids(bench_t *ctx);
void quit_kids(bench_t *ctx);
void fatal(bench_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void cmd_publish(bench_t *ctx, int code);
void wait_cmd(bench_t *ctx, tick_fn tick, void *arg);
void check_signal(bench_t *ctx);
void progress(bench_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void progress_end(bench_t *ctx);
void tick_drain(bench_t *ctx, void *arg);
json_t *do_connect(bench_t *ctx, int window, long max_fail);
int drain(bench_t *ctx, double secs);
json_t *run_step(bench_t *ctx, int idx, double rate, double dur,
    const char *kind, int *held, int *drained);
json_t *step_skipped(double rate);
int integrity(bench_t *ctx, json_t *res);

/* bench_report.c */
void set_int(json_t *o, const char *key, json_int_t v);
void set_real(json_t *o, const char *key, double v);
double jd(json_t *o, const char *path);
const char *js(json_t *o, const char *path);
void print_scenario(json_t *j);
void write_json(bench_t *ctx, json_t *j);
int do_report(bench_t *ctx, int argc, char **argv);


#endif /* _CHAT_BENCH_H_INCLUDED_ */
