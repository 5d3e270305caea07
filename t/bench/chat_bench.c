/*
 * chat_bench: the load generator of ngx_chat (issue #5).
 *
 * It speaks the client contract (../shared/PROTOCOL.md) with its own
 * WebSocket client (RFC 6455, masked client frames), mints its own HS256
 * tokens and runs one scenario per invocation:
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
 * One parent process coordinates P child processes; each child holds its
 * share of the connections in one epoll loop (non-blocking sockets, each
 * bound to a source address in 127.0.0.0/8 before connect so that the
 * ephemeral ports of one source address are never the limit). Children
 * publish counters and latency histograms in a shared memory block; the
 * parent sends commands through the same block, samples the backlog,
 * reads the CPU time of every stack component from /proc and writes the
 * result as a table and as JSON.
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

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_PROCS    32
#define MAX_STEPS    16
#define MAX_SCOPE    64
#define IOBUF_SIZE   (256 * 1024)
#define WBUF_LIMIT   (8 * 1024 * 1024)    /* per connection, client side */
#define RBUF_LIMIT   (64 * 1024 * 1024)

enum { SC_IDLE, SC_DM, SC_GROUP, SC_STORM };
static const char *SC_NAMES[] = { "idle", "dm", "group", "storm" };

/* ================================================================ options */

typedef struct {
    const char *url;
    char        host[64];
    int         port;
    char        path[512];
    struct in_addr dst;
    const char *secret;
    int         scenario;
    int         quick;
    long        conns;
    double      rates[MAX_STEPS];
    int         nrates;
    double      duration;
    double      hold;
    int         probes;
    double      probe_duration;
    double      warmup;
    double      max_backlog;
    int         procs;
    long        per_proc;
    int         group_size;
    int         body_bytes;
    int         src_ips;
    int         window;
    double      timeout;
    double      drain;
    double      settle;
    double      storm_timeout;
    int         storm_msgs;
    long        max_fail;
    int         no_skip;
    const char *json_path;
    const char *prefix;
    const char *label;
    int         scope[MAX_SCOPE];
    int         nscope;
    int         verbose;
} opts_t;

static opts_t O;

/* ============================================================== utilities */

static int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int is_child;

static void
logmsg(const char *fmt, ...)
{
    va_list ap;
    char    buf[1024];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "chat_bench%s: %s\n", is_child ? " (child)" : "", buf);
}

static void
die(const char *fmt, ...)
{
    va_list ap;
    char    buf[1024];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "chat_bench: error: %s\n", buf);
    exit(1);
}

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL) {
        fprintf(stderr, "chat_bench: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return q;
}

static void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL) {
        fprintf(stderr, "chat_bench: out of memory\n");
        exit(2);
    }
    return p;
}

/* counters in shared memory: one writer (the child), one reader */
#define LOAD(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define INC(x)     __atomic_store_n(&(x), LOAD(x) + 1, __ATOMIC_RELAXED)
#define ADD(x, v)  __atomic_store_n(&(x), LOAD(x) + (v), __ATOMIC_RELAXED)

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

/* "50000", "50k", "1.5m" */
static double
parse_count(const char *s, const char *what)
{
    char   *end;
    double  v = strtod(s, &end);

    if (end == s) {
        die("%s: not a number: '%s'", what, s);
    }
    if (*end == 'k' || *end == 'K') {
        v *= 1000;
        end++;
    } else if (*end == 'm' || *end == 'M') {
        v *= 1000000;
        end++;
    }
    if (*end != '\0' || v < 0) {
        die("%s: not a count: '%s'", what, s);
    }
    return v;
}

/* ================================================================ base64 */

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* url: the base64url alphabet without padding (JWT), else standard */
static size_t
b64_encode(char *out, const uint8_t *in, size_t n, int url)
{
    size_t  i, o = 0;
    uint32_t v;

    for (i = 0; i + 2 < n; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        v = (uint32_t) in[i] << 16;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        if (!url) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
        if (!url) {
            out[o++] = '=';
        }
    }
    if (url) {
        for (i = 0; i < o; i++) {
            if (out[i] == '+') {
                out[i] = '-';
            } else if (out[i] == '/') {
                out[i] = '_';
            }
        }
    }
    out[o] = '\0';
    return o;
}

/* ================================================================== JWT */

/* an HS256 token with the claims sub, dev, exp */
static size_t
jwt_make(char *out, size_t outsz, const char *sub, const char *dev,
    int64_t exp)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char          claims[256];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int  maclen = 0;
    size_t        o, cl;

    cl = (size_t) snprintf(claims, sizeof(claims),
                           "{\"sub\":\"%s\",\"dev\":\"%s\",\"exp\":%" PRId64 "}",
                           sub, dev, exp);
    if (outsz < 4 * (sizeof(header) + cl + 32) / 3 + 16) {
        die("jwt buffer too small");
    }
    o = b64_encode(out, (const uint8_t *) header, sizeof(header) - 1, 1);
    out[o++] = '.';
    o += b64_encode(out + o, (const uint8_t *) claims, cl, 1);
    if (HMAC(EVP_sha256(), O.secret, (int) strlen(O.secret),
             (const unsigned char *) out, o, mac, &maclen) == NULL)
    {
        die("HMAC failed");
    }
    out[o++] = '.';
    o += b64_encode(out + o, mac, maclen, 1);
    return o;
}

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key GUID)) */
static void
ws_accept_for(const char *key, char *out)
{
    char          buf[128];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int  mdlen = 0;
    int           n;

    n = snprintf(buf, sizeof(buf), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                 key);
    if (!EVP_Digest(buf, (size_t) n, md, &mdlen, EVP_sha1(), NULL)) {
        die("SHA-1 failed");
    }
    b64_encode(out, md, mdlen, 0);
}

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
    uint64_t n;
    uint64_t max;
    uint64_t sum;
    uint32_t c[HBUCKETS];
} hist_t;

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

static void
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

static void
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
static double
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

/* ========================================================= shared memory */

enum {
    FR_SOCKET, FR_BIND, FR_REFUSED, FR_TIMEOUT, FR_RESET, FR_HTTP401,
    FR_HTTP503, FR_HTTP_OTHER, FR_BAD_ACCEPT, FR_NO_HELLO, FR_CLOSED, NFAIL
};
static const char *FAIL_NAMES[NFAIL] = {
    "socket", "bind", "refused", "timeout", "reset", "http_401", "http_503",
    "http_other", "bad_accept", "no_hello", "closed_before_hello"
};

static const int CLOSE_CODES[] = {
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011,
    4001, 4008, 4009, 0
};
#define NCLOSE ((int) (sizeof(CLOSE_CODES) / sizeof(CLOSE_CODES[0])))

static const char *ERR_NAMES[] = {
    "bad_request", "forbidden", "not_found", "too_large", "rate_limited",
    "unavailable", "internal", "other"
};
#define NERR ((int) (sizeof(ERR_NAMES) / sizeof(ERR_NAMES[0])))

typedef struct {
    uint64_t scheduled;      /* messages the schedule asked for */
    uint64_t sent;
    uint64_t not_sent;       /* no live sender, or client buffer full */
    uint64_t acked;          /* of this step's messages */
    uint64_t errs;
    uint64_t expected;       /* deliveries expected (dm: 1 per message) */
    uint64_t delivered;      /* dm: messages delivered (first time) */
    uint64_t deliveries;     /* group: single deliveries */
    uint64_t complete;       /* group: messages delivered to every member */
    uint64_t dups;
    uint64_t order_err;
    uint64_t acks_in_win;    /* received during the sending window */
    uint64_t deliv_in_win;
    int64_t  max_lag;        /* us the generator sent behind schedule */
    hist_t   ack;
    hist_t   deliv;
    hist_t   first;
    hist_t   last;
} step_t;

typedef struct {
    uint64_t done_cmd;

    uint64_t nconns, units, active_units;

    /* connect */
    uint64_t conn_ok, conn_fail, fail[NFAIL];
    int64_t  t_first_start, t_last_hello;
    int      last_http;
    hist_t   conn_lat;

    /* live, sampled by the parent */
    uint64_t live_sent, live_acked, live_errs, live_expected, live_delivered;

    uint64_t pings, pongs;
    uint64_t closes[NCLOSE];
    uint64_t errs[NERR];
    uint64_t proto_err, other_frames, dup_acks, unknown_ids, seq_mismatch;
    char     last_error[256];
    char     skip_reason[256];

    /* group */
    uint64_t groups_ok, groups_failed;

    /* integrity, after CMD_FINAL */
    uint64_t i_sent, i_acked, i_errs, i_delivered, i_lost, i_unacked,
             i_dups, i_order, i_incomplete, i_missing_deliveries;

    /* storm */
    uint64_t st_clients, st_back, st_synced, st_failed, st_retries,
             st_sync_msgs, st_convs;
    int64_t  st_last_hello, st_last_sync;
    hist_t   st_hello, st_sync;

    step_t   steps[MAX_STEPS];
} slot_t;

enum {
    CMD_NONE, CMD_CONNECT, CMD_SETUP, CMD_RATE, CMD_DRAIN, CMD_PING,
    CMD_STORM, CMD_FINAL, CMD_QUIT
};

typedef struct {
    uint64_t seq;
    int      code;
    int      step;
    int      window;
    int64_t  t_start, t_end, deadline;
    long     max_fail;
    double   rate[MAX_PROCS];
} cmd_t;

typedef struct {
    cmd_t    cmd;
    slot_t   slot[MAX_PROCS];
} shm_t;

static shm_t *SHM;
static int    NPROCS;
static long   UNITS;            /* idle: conns, dm/storm: pairs, group: groups */

/* ================================================================ child */

enum { CS_NONE, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSED, CS_FAILED,
       CS_WAIT };

typedef struct {
    int       fd;
    uint8_t   state;
    uint8_t   armed;        /* 0: IN, 1: IN|OUT, 2: OUT only (connecting) */
    uint8_t   got_hello;
    uint8_t   fop;
    uint8_t   back;         /* storm: counted back */
    uint8_t   synced;       /* storm: sync_done received */
    uint16_t  attempts;
    uint32_t  gi;
    uint32_t  li;
    int32_t   owner;        /* local pair or group */
    int32_t   member;       /* dm/storm: 0 sender, 1 receiver; group: index */
    char      key[25];
    uint8_t  *rbuf;
    uint32_t  rlen, rcap;
    uint8_t  *wbuf;
    uint32_t  woff, wlen, wcap;
    uint8_t  *fbuf;
    uint32_t  flen, fcap;
    int64_t   t_start, t_hello, deadline, retry_at;
    int64_t   last_seq;
    uint64_t  last_n;
    char      user[64];
} conn_t;

#define F_SENT   1
#define F_ACKED  2
#define F_ERR    4
#define F_DELIV  8
#define F_SEQ    16
#define F_DONE   32

typedef struct {
    uint32_t  gp;
    int       u, v;
    uint64_t  nsent, cap;
    int64_t  *ts;
    int32_t  *seq;
    uint8_t  *flags;
    uint8_t  *step;
} pair_t;

typedef struct {
    uint32_t  gg;
    int       first, size;
    int       state;                 /* 0 pending, 1 ready, -1 failed */
    char      conv[160];
    uint64_t  nsent, cap;
    int64_t  *ts, *t_first, *t_last;
    uint16_t *exp, *got;
    uint8_t  *flags, *step;
} group_t;

enum { PH_NORMAL, PH_STORM };

static struct {
    int        id;
    int        ep;
    slot_t    *S;
    conn_t    *c;
    int        nc;
    pair_t    *pairs;
    int        np;
    group_t   *groups;
    int        ng;
    long       u0;                 /* first global unit */
    uint8_t   *iobuf;
    char      *fbuf;               /* outgoing frame text */
    size_t     fbufsz;
    uint64_t   cmd_seen;
    cmd_t      cmd;
    int        busy;
    int        phase;
    /* connect */
    int        next_launch;
    int        inflight;
    int        stop_launch;
    uint64_t   fails;
    /* rate */
    double     rate;
    uint64_t   sched_k;
    int        rr;
    int        step;
    int        in_window;
    int64_t    win_start, win_end;
    int        setup_sent;
    int64_t    last_scan;
    int        max_msg;
} C;

static int64_t NOW;

static void conn_down(conn_t *c, int reason, int code);
static void on_text(conn_t *c, uint8_t *p, size_t n);

static int
close_idx(int code)
{
    int i;

    for (i = 0; i < NCLOSE - 1; i++) {
        if (CLOSE_CODES[i] == code) {
            return i;
        }
    }
    return NCLOSE - 1;
}

static void
set_error(const char *fmt, ...)
{
    va_list ap;

    if (C.S->last_error[0]) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(C.S->last_error, sizeof(C.S->last_error), fmt, ap);
    va_end(ap);
}

static void
proto_err(conn_t *c, const char *what)
{
    INC(C.S->proto_err);
    set_error("protocol: %s (%s)", what, c->user);
    if (O.verbose) {
        logmsg("protocol: %s (%s)", what, c->user);
    }
}

static void
conn_free_bufs(conn_t *c)
{
    free(c->rbuf);
    free(c->wbuf);
    free(c->fbuf);
    c->rbuf = c->wbuf = c->fbuf = NULL;
    c->rlen = c->rcap = c->woff = c->wlen = c->wcap = c->flen = c->fcap = 0;
    c->fop = 0;
}

static void
conn_arm(conn_t *c, int out)
{
    struct epoll_event e;

    if (c->fd < 0 || c->armed == out) {
        return;
    }
    e.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0);
    e.data.u64 = c->li;
    if (epoll_ctl(C.ep, EPOLL_CTL_MOD, c->fd, &e) < 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
    c->armed = (uint8_t) out;
}

static int
conn_write(conn_t *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    ssize_t        n;

    if (c->fd < 0) {
        return -1;
    }
    if (c->woff == c->wlen) {
        c->woff = c->wlen = 0;
        n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t) len) {
            return 0;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                conn_down(c, FR_RESET, 1006);
                return -1;
            }
            n = 0;
        }
        p += n;
        len -= (size_t) n;
    }
    if (c->wlen + len > c->wcap) {
        if (c->woff > 0) {
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        if (c->wlen + len > c->wcap) {
            c->wcap = (uint32_t) ((c->wlen + len) * 2 + 1024);
            c->wbuf = xrealloc(c->wbuf, c->wcap);
        }
    }
    memcpy(c->wbuf + c->wlen, p, len);
    c->wlen += (uint32_t) len;
    conn_arm(c, 1);
    return 0;
}

static void
conn_flush(conn_t *c)
{
    ssize_t n;

    while (c->fd >= 0 && c->woff < c->wlen) {
        n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return;
            }
            conn_down(c, FR_RESET, 1006);
            return;
        }
        c->woff += (uint32_t) n;
    }
    if (c->fd >= 0) {
        c->woff = c->wlen = 0;
        if (c->wcap > 65536) {
            free(c->wbuf);
            c->wbuf = NULL;
            c->wcap = 0;
        }
        conn_arm(c, 0);
    }
}

/* one masked client frame */
static int
ws_send(conn_t *c, int op, const void *data, size_t len)
{
    uint8_t        stackbuf[4096], *f = stackbuf, mask[4];
    const uint8_t *p = data;
    size_t         h = 0, i;
    uint64_t       r = rng();
    int            rc;

    if (len + 14 > sizeof(stackbuf)) {
        f = xrealloc(NULL, len + 14);
    }
    f[h++] = (uint8_t) (0x80 | op);
    if (len < 126) {
        f[h++] = (uint8_t) (0x80 | len);
    } else if (len < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t) (len >> 8);
        f[h++] = (uint8_t) len;
    } else {
        f[h++] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            f[h++] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
        }
    }
    memcpy(mask, &r, 4);
    memcpy(f + h, mask, 4);
    h += 4;
    for (i = 0; i < len; i++) {
        f[h + i] = p[i] ^ mask[i & 3];
    }
    rc = conn_write(c, f, h + len);
    if (f != stackbuf) {
        free(f);
    }
    return rc;
}

static int
ws_text(conn_t *c, const char *s, size_t len)
{
    return ws_send(c, 0x1, s, len);
}

static void
src_addr(uint32_t gi, struct sockaddr_in *sa)
{
    uint32_t s = gi % (uint32_t) O.src_ips;

    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = 0;
    /* 127.0.0.2 .. 127.0.0.254, then 127.0.1.2 ... */
    sa->sin_addr.s_addr = htonl(0x7f000000u | ((s / 253) << 8) | (2 + s % 253));
}

/* start connecting; failures are reported through conn_down */
static void
conn_start(conn_t *c)
{
    struct sockaddr_in  src, dst;
    struct epoll_event  e;
    int                 fd, one = 1, rc;

    conn_free_bufs(c);
    c->attempts++;
    c->got_hello = 0;
    c->fop = 0;
    c->t_start = NOW;
    c->deadline = NOW + (int64_t) (O.timeout * 1e6);
    c->state = CS_CONNECTING;
    C.inflight++;
    if (LOAD(C.S->t_first_start) == 0) {
        __atomic_store_n(&C.S->t_first_start, NOW, __ATOMIC_RELAXED);
    }

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_error("socket: %s", strerror(errno));
        c->fd = -1;
        conn_down(c, FR_SOCKET, 0);
        return;
    }
    c->fd = fd;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    src_addr(c->gi, &src);
    if (bind(fd, (struct sockaddr *) &src, sizeof(src)) < 0) {
        set_error("bind %s: %s", inet_ntoa(src.sin_addr), strerror(errno));
        conn_down(c, FR_BIND, 0);
        return;
    }
    memset(&dst, 0, sizeof(dst));
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t) O.port);
    dst.sin_addr = O.dst;
    rc = connect(fd, (struct sockaddr *) &dst, sizeof(dst));
    if (rc < 0 && errno != EINPROGRESS) {
        set_error("connect: %s", strerror(errno));
        conn_down(c, errno == ECONNREFUSED ? FR_REFUSED : FR_SOCKET, 0);
        return;
    }
    e.events = EPOLLOUT;
    e.data.u64 = c->li;
    if (epoll_ctl(C.ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        die("epoll_ctl add: %s", strerror(errno));
    }
    c->armed = 2;
}

static void
conn_connected(conn_t *c)
{
    char      req[2048], token[1024];
    uint8_t   raw[16];
    uint64_t  r1 = rng(), r2 = rng();
    int       err = 0, n;
    socklen_t sl = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0) {
        err = errno;
    }
    if (err != 0) {
        set_error("connect: %s", strerror(err));
        conn_down(c, err == ECONNREFUSED ? FR_REFUSED
                     : err == ETIMEDOUT ? FR_TIMEOUT : FR_RESET, 0);
        return;
    }
    memcpy(raw, &r1, 8);
    memcpy(raw + 8, &r2, 8);
    b64_encode(c->key, raw, 16, 0);
    jwt_make(token, sizeof(token), c->user, "bench", NOW / 1000000 + 86400);
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: chat.v1\r\n"
                 "Authorization: Bearer %s\r\n"
                 "User-Agent: chat_bench\r\n"
                 "\r\n",
                 O.path, O.host, O.port, c->key, token);
    c->state = CS_HANDSHAKE;
    conn_arm(c, 0);
    conn_write(c, req, (size_t) n);
}

static int
handshake_ok(conn_t *c, const uint8_t *buf, size_t hl)
{
    char        hdr[8192], want[64], *p, *e;
    int         status;

    if (hl >= sizeof(hdr) || hl < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0) {
        set_error("bad HTTP answer to the upgrade");
        conn_down(c, FR_HTTP_OTHER, 0);
        return 0;
    }
    memcpy(hdr, buf, hl);
    hdr[hl] = '\0';
    status = atoi(hdr + 9);
    if (status != 101) {
        C.S->last_http = status;
        set_error("upgrade answered HTTP %d", status);
        conn_down(c, status == 401 ? FR_HTTP401
                     : status == 503 ? FR_HTTP503 : FR_HTTP_OTHER, 0);
        return 0;
    }
    ws_accept_for(c->key, want);
    p = strcasestr(hdr, "\r\nSec-WebSocket-Accept:");
    if (p == NULL) {
        set_error("101 without Sec-WebSocket-Accept");
        conn_down(c, FR_BAD_ACCEPT, 0);
        return 0;
    }
    p += sizeof("\r\nSec-WebSocket-Accept:") - 1;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    e = strstr(p, "\r\n");
    if (e == NULL || (size_t) (e - p) != strlen(want)
        || memcmp(p, want, strlen(want)) != 0)
    {
        set_error("wrong Sec-WebSocket-Accept");
        conn_down(c, FR_BAD_ACCEPT, 0);
        return 0;
    }
    return 1;
}

static void
frag_append(conn_t *c, const uint8_t *p, size_t n)
{
    if (c->flen + n > c->fcap) {
        c->fcap = (uint32_t) ((c->flen + n) * 2);
        c->fbuf = xrealloc(c->fbuf, c->fcap);
    }
    memcpy(c->fbuf + c->flen, p, n);
    c->flen += (uint32_t) n;
}

static void
handle_frame(conn_t *c, int fin, int op, uint8_t *p, size_t n)
{
    int code;

    switch (op) {
    case 0x1:
    case 0x2:
        if (c->fop) {
            proto_err(c, "new data frame inside a fragmented message");
        }
        if (op == 0x2) {
            proto_err(c, "binary frame from the server");
        }
        if (fin) {
            if (op == 0x1) {
                on_text(c, p, n);
            }
        } else {
            c->fop = (uint8_t) op;
            c->flen = 0;
            frag_append(c, p, n);
        }
        break;
    case 0x0:
        if (!c->fop) {
            proto_err(c, "continuation without a first frame");
            break;
        }
        frag_append(c, p, n);
        if (fin) {
            if (c->fop == 0x1) {
                /* on_text may close the connection; the buffer stays */
                on_text(c, c->fbuf, c->flen);
            }
            c->fop = 0;
            c->flen = 0;
        }
        break;
    case 0x8:
        code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
        ws_send(c, 0x8, p, n >= 2 ? 2 : 0);
        conn_down(c, FR_CLOSED, code);
        break;
    case 0x9:
        ws_send(c, 0xA, p, n);
        break;
    case 0xA:
        break;
    default:
        proto_err(c, "unknown opcode");
        break;
    }
}

/* bytes consumed; stops early when the connection went down */
static size_t
conn_parse(conn_t *c, uint8_t *buf, size_t len)
{
    size_t   off = 0, h, i;
    uint64_t plen;
    uint8_t *hend, *pl;
    int      masked;

    if (c->state == CS_HANDSHAKE) {
        hend = memmem(buf, len, "\r\n\r\n", 4);
        if (hend == NULL) {
            if (len > 8192) {
                set_error("HTTP answer too long");
                conn_down(c, FR_HTTP_OTHER, 0);
            }
            return 0;
        }
        off = (size_t) (hend - buf) + 4;
        if (!handshake_ok(c, buf, off)) {
            return off;
        }
        c->state = CS_OPEN;
    }
    while (c->fd >= 0 && len - off >= 2) {
        masked = buf[off + 1] & 0x80;
        plen = buf[off + 1] & 0x7f;
        h = 2;
        if (plen == 126) {
            if (len - off < 4) {
                break;
            }
            plen = (uint64_t) buf[off + 2] << 8 | buf[off + 3];
            h = 4;
        } else if (plen == 127) {
            if (len - off < 10) {
                break;
            }
            plen = 0;
            for (i = 0; i < 8; i++) {
                plen = plen << 8 | buf[off + 2 + i];
            }
            h = 10;
        }
        if (masked) {
            h += 4;
        }
        if (plen > RBUF_LIMIT) {
            proto_err(c, "frame too large");
            conn_down(c, FR_CLOSED, 1009);
            return off;
        }
        if ((uint64_t) (len - off) < h + plen) {
            break;
        }
        pl = buf + off + h;
        if (masked) {
            proto_err(c, "masked frame from the server");
            for (i = 0; i < plen; i++) {
                pl[i] ^= buf[off + h - 4 + (i & 3)];
            }
        }
        handle_frame(c, buf[off] & 0x80, buf[off] & 0x0f, pl, (size_t) plen);
        off += h + (size_t) plen;
    }
    return off;
}

static void
conn_input(conn_t *c, uint8_t *data, size_t n)
{
    size_t used;

    if (c->rlen > 0) {
        if (c->rlen + n > c->rcap) {
            c->rcap = (uint32_t) ((c->rlen + n) * 2);
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        memcpy(c->rbuf + c->rlen, data, n);
        c->rlen += (uint32_t) n;
        used = conn_parse(c, c->rbuf, c->rlen);
        if (c->fd < 0) {
            return;
        }
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= (uint32_t) used;
        if (c->rlen == 0 && c->rcap > 65536) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
        return;
    }
    used = conn_parse(c, data, n);
    if (c->fd < 0 || used == n) {
        return;
    }
    if (n - used > c->rcap) {
        c->rcap = (uint32_t) ((n - used) * 2 + 4096);
        c->rbuf = xrealloc(c->rbuf, c->rcap);
    }
    memcpy(c->rbuf, data + used, n - used);
    c->rlen = (uint32_t) (n - used);
}

static void
conn_read(conn_t *c)
{
    ssize_t n;
    int     i;

    for (i = 0; i < 8 && c->fd >= 0; i++) {
        n = recv(c->fd, C.iobuf, IOBUF_SIZE, MSG_DONTWAIT);
        if (n > 0) {
            conn_input(c, C.iobuf, (size_t) n);
            if (n < IOBUF_SIZE) {
                break;
            }
            continue;
        }
        if (n == 0) {
            conn_down(c, c->got_hello ? FR_CLOSED : FR_RESET, 1006);
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            break;
        }
        conn_down(c, FR_RESET, 1006);
        break;
    }
    if (c->fd < 0) {
        conn_free_bufs(c);
    }
}

/* ============================================================ child logic */

static void
storm_retry(conn_t *c)
{
    int64_t backoff;
    int     k = c->attempts > 6 ? 6 : c->attempts;

    backoff = ((int64_t) 100000 << (k > 0 ? k - 1 : 0));
    if (backoff > 5000000) {
        backoff = 5000000;
    }
    backoff += (int64_t) (rng() % 100000);
    if (NOW + backoff < C.cmd.deadline) {
        c->state = CS_WAIT;
        c->retry_at = NOW + backoff;
        INC(C.S->st_retries);
    } else {
        c->state = CS_FAILED;
        INC(C.S->st_failed);
    }
}

static void
conn_down(conn_t *c, int reason, int code)
{
    if (c->state != CS_CONNECTING && c->state != CS_HANDSHAKE
        && c->state != CS_OPEN)
    {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->woff = c->wlen = 0;
    c->armed = 0;
    if (!c->got_hello) {
        INC(C.S->conn_fail);
        INC(C.S->fail[reason]);
        C.inflight--;
        C.fails++;
        c->state = CS_FAILED;
        if (O.verbose) {
            logmsg("%s: connection failed (%s)", c->user, FAIL_NAMES[reason]);
        }
    } else {
        INC(C.S->closes[close_idx(code)]);
        c->state = CS_CLOSED;
        if (C.phase != PH_STORM || O.verbose) {
            set_error("%s: connection closed (%d)", c->user, code);
        }
    }
    if (C.phase == PH_STORM && !c->synced) {
        storm_retry(c);
    }
}

static int
conn_live(const conn_t *c)
{
    return c->fd >= 0 && c->got_hello;
}

static int
in_window(void)
{
    return NOW >= C.win_start && NOW <= C.win_end;
}

/* "p12-34" / "g3-5": tag, unit, message number */
static int
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

static int64_t
jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);

    return json_is_integer(v) ? (int64_t) json_integer_value(v) : -1;
}

static const char *
jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

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

/* the body: "<send timestamp us> xxxx..." of O.body_bytes bytes */
static size_t
put_body(size_t len, int64_t ts)
{
    size_t start = len, want = (size_t) O.body_bytes;

    len += (size_t) snprintf(C.fbuf + len, C.fbufsz - len, "%" PRId64 " ", ts);
    while (len - start < want && len + 8 < C.fbufsz) {
        C.fbuf[len++] = 'x';
    }
    C.fbuf[len++] = '"';
    C.fbuf[len++] = '}';
    C.fbuf[len] = '\0';
    return len;
}

static int
dm_send(pair_t *p, int64_t sched, int step)
{
    conn_t  *u = &C.c[p->u], *v = &C.c[p->v];
    step_t  *st = &C.S->steps[step];
    uint64_t n;
    size_t   len;

    n = ++p->nsent;
    pair_grow(p, n);
    p->ts[n] = sched;
    p->flags[n] = F_SENT;
    p->step[n] = (uint8_t) step;
    p->seq[n] = 0;
    len = (size_t) snprintf(C.fbuf, C.fbufsz,
                            "{\"type\":\"send\",\"client_msg_id\":\"p%u-%" PRIu64
                            "\",\"to\":\"%s\",\"body\":\"",
                            p->gp, n, v->user);
    len = put_body(len, sched);
    INC(st->sent);
    INC(st->expected);
    INC(C.S->live_sent);
    INC(C.S->live_expected);
    return ws_text(u, C.fbuf, len);
}

static int
pair_live(pair_t *p)
{
    conn_t *u = &C.c[p->u], *v = &C.c[p->v];

    return conn_live(u) && conn_live(v) && u->wlen - u->woff < WBUF_LIMIT;
}

static void
dm_send_next(int64_t sched, int step)
{
    int      tries;
    pair_t  *p;

    for (tries = 0; tries < C.np; tries++) {
        p = &C.pairs[C.rr];
        C.rr = (C.rr + 1) % C.np;
        if (pair_live(p)) {
            dm_send(p, sched, step);
            return;
        }
    }
    INC(C.S->steps[step].not_sent);
}

static int
group_open_members(group_t *g, int except)
{
    int k, n = 0;

    for (k = 0; k < g->size; k++) {
        if (k != except && conn_live(&C.c[g->first + k])) {
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
static void
group_send_next(int64_t sched, int step)
{
    int      tries, exp;
    group_t *g = NULL;
    conn_t  *sc = NULL;
    step_t  *st = &C.S->steps[step];
    uint64_t n;
    size_t   len;

    for (tries = 0; tries < C.ng; tries++) {
        g = &C.groups[C.rr];
        C.rr = (C.rr + 1) % C.ng;
        sc = &C.c[g->first];
        if (g->state == 1 && conn_live(sc) && sc->wlen - sc->woff < WBUF_LIMIT) {
            break;
        }
        sc = NULL;
    }
    if (sc == NULL) {
        INC(st->not_sent);
        return;
    }
    exp = group_open_members(g, 0);
    n = ++g->nsent;
    group_grow(g, n);
    g->ts[n] = sched;
    g->exp[n] = (uint16_t) exp;
    g->got[n] = 0;
    g->flags[n] = F_SENT;
    g->step[n] = (uint8_t) step;
    len = (size_t) snprintf(C.fbuf, C.fbufsz,
                            "{\"type\":\"send\",\"client_msg_id\":\"g%u-%" PRIu64
                            "\",\"conversation_id\":\"%s\",\"body\":\"",
                            g->gg, n, g->conv);
    len = put_body(len, sched);
    INC(st->sent);
    ADD(st->expected, (uint64_t) exp);
    INC(C.S->live_sent);
    ADD(C.S->live_expected, (uint64_t) exp);
    ws_text(sc, C.fbuf, len);
}

static void
on_hello(conn_t *c, json_t *j)
{
    const char *user = jstr(j, "user_id");
    int64_t     mm = jint(j, "max_message_bytes");
    char        buf[128];
    int         n;

    c->got_hello = 1;
    c->t_hello = NOW;
    C.inflight--;
    INC(C.S->conn_ok);
    hist_add(&C.S->conn_lat, NOW - c->t_start);
    if (NOW > LOAD(C.S->t_last_hello)) {
        __atomic_store_n(&C.S->t_last_hello, NOW, __ATOMIC_RELAXED);
    }
    if (mm > 0) {
        C.max_msg = (int) mm;
    }
    if (user == NULL || strcmp(user, c->user) != 0) {
        proto_err(c, "hello names another user");
    }
    if (C.phase == PH_STORM) {
        if (!c->back) {
            c->back = 1;
            INC(C.S->st_back);
            hist_add(&C.S->st_hello, NOW - C.cmd.t_start);
            __atomic_store_n(&C.S->st_last_hello, NOW, __ATOMIC_RELAXED);
        }
        n = snprintf(buf, sizeof(buf), "{\"type\":\"sync\",\"req_id\":\"st%u\"}",
                     c->li);
        ws_text(c, buf, (size_t) n);
    }
}

static void
on_ack(conn_t *c, json_t *j)
{
    const char *cmid = jstr(j, "client_msg_id");
    int64_t     seq = jint(j, "seq");
    uint64_t    unit, n;
    pair_t     *p;
    group_t    *g;
    step_t     *st;
    uint8_t     fl;

    if (parse_cmid(cmid, 'p', &unit, &n) && (C.np > 0)
        && unit >= (uint64_t) C.u0 && unit < (uint64_t) (C.u0 + C.np))
    {
        p = &C.pairs[unit - (uint64_t) C.u0];
        if (n > p->nsent || c->li != (uint32_t) p->u) {
            INC(C.S->unknown_ids);
            return;
        }
        fl = p->flags[n];
        if (fl & F_ACKED) {
            INC(C.S->dup_acks);
            return;
        }
        if (fl & F_ERR) {
            proto_err(c, "ack after an error for the same client_msg_id");
        }
        p->flags[n] |= F_ACKED;
        if (fl & F_SEQ) {
            if (p->seq[n] != (int32_t) seq) {
                INC(C.S->seq_mismatch);
            }
        } else {
            p->seq[n] = (int32_t) seq;
            p->flags[n] |= F_SEQ;
        }
        st = &C.S->steps[p->step[n]];
        INC(st->acked);
        INC(C.S->live_acked);
        if (in_window()) {
            INC(st->acks_in_win);
        }
        hist_add(&st->ack, NOW - p->ts[n]);
        return;
    }
    if (parse_cmid(cmid, 'g', &unit, &n) && C.ng > 0
        && unit >= (uint64_t) C.u0 && unit < (uint64_t) (C.u0 + C.ng))
    {
        g = &C.groups[unit - (uint64_t) C.u0];
        if (n > g->nsent) {
            INC(C.S->unknown_ids);
            return;
        }
        fl = g->flags[n];
        if (fl & F_ACKED) {
            INC(C.S->dup_acks);
            return;
        }
        g->flags[n] |= F_ACKED;
        st = &C.S->steps[g->step[n]];
        INC(st->acked);
        INC(C.S->live_acked);
        if (in_window()) {
            INC(st->acks_in_win);
        }
        hist_add(&st->ack, NOW - g->ts[n]);
        return;
    }
    INC(C.S->unknown_ids);
}

static void
dm_message(conn_t *c, json_t *j)
{
    const char *cmid = jstr(j, "client_msg_id"), *body = jstr(j, "body");
    int64_t     seq = jint(j, "seq"), ts;
    uint64_t    unit, n;
    pair_t     *p;
    step_t     *st;
    uint8_t     fl;

    if (c->member != 1 || !parse_cmid(cmid, 'p', &unit, &n)) {
        INC(C.S->unknown_ids);
        return;
    }
    p = &C.pairs[c->owner];
    if (unit != p->gp || n > p->nsent) {
        INC(C.S->unknown_ids);
        return;
    }
    st = &C.S->steps[p->step[n]];
    fl = p->flags[n];
    if (fl & F_DELIV) {
        INC(st->dups);
        return;
    }
    if (seq != c->last_seq + 1 || n <= c->last_n) {
        INC(st->order_err);
        if (O.verbose) {
            logmsg("%s: seq %" PRId64 " after %" PRId64 ", n %" PRIu64
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
            INC(C.S->seq_mismatch);
        }
    } else {
        p->seq[n] = (int32_t) seq;
        p->flags[n] |= F_SEQ;
    }
    INC(st->delivered);
    INC(C.S->live_delivered);
    if (in_window()) {
        INC(st->deliv_in_win);
    }
    ts = body ? strtoll(body, NULL, 10) : 0;
    if (ts <= 0) {
        proto_err(c, "message body without the timestamp");
        ts = p->ts[n];
    }
    hist_add(&st->deliv, NOW - ts);
}

static void
group_message(conn_t *c, json_t *j)
{
    const char *cmid = jstr(j, "client_msg_id"), *body = jstr(j, "body");
    const char *kind = jstr(j, "kind");
    int64_t     seq = jint(j, "seq"), ts;
    uint64_t    unit, n;
    group_t    *g = &C.groups[c->owner];
    step_t     *st;

    if (kind != NULL && strcmp(kind, "text") != 0) {
        /* group_created at seq 1; counted in the order check below */
        if (seq != c->last_seq + 1) {
            INC(C.S->steps[C.step].order_err);
        }
        if (seq > c->last_seq) {
            c->last_seq = seq;
        }
        return;
    }
    if (c->member == 0 || !parse_cmid(cmid, 'g', &unit, &n) || unit != g->gg
        || n > g->nsent)
    {
        INC(C.S->unknown_ids);
        return;
    }
    st = &C.S->steps[g->step[n]];
    if (seq <= c->last_seq) {
        INC(st->dups);
        return;
    }
    if (seq != c->last_seq + 1) {
        INC(st->order_err);
        if (O.verbose) {
            logmsg("%s: seq %" PRId64 " after %" PRId64, c->user, seq,
                   c->last_seq);
        }
    }
    c->last_seq = seq;
    g->got[n]++;
    if (g->got[n] == 1) {
        g->t_first[n] = NOW;
    }
    g->t_last[n] = NOW;
    INC(st->deliveries);
    INC(C.S->live_delivered);
    if (in_window()) {
        INC(st->deliv_in_win);
    }
    ts = body ? strtoll(body, NULL, 10) : 0;
    if (ts <= 0) {
        proto_err(c, "message body without the timestamp");
        ts = g->ts[n];
    }
    hist_add(&st->deliv, NOW - ts);
    if (g->got[n] >= g->exp[n] && !(g->flags[n] & F_DONE)) {
        g->flags[n] |= F_DONE;
        INC(st->complete);
        hist_add(&st->first, g->t_first[n] - g->ts[n]);
        hist_add(&st->last, g->t_last[n] - g->ts[n]);
    }
}

static void
on_message(conn_t *c, json_t *j)
{
    if (C.phase == PH_STORM) {
        INC(C.S->st_sync_msgs);
        return;
    }
    if (O.scenario == SC_GROUP) {
        group_message(c, j);
    } else if (O.scenario == SC_DM || O.scenario == SC_STORM) {
        dm_message(c, j);
    } else {
        INC(C.S->other_frames);
    }
}

static void
on_error(conn_t *c, json_t *j)
{
    const char *code = jstr(j, "code"), *msg = jstr(j, "message");
    const char *cmid = jstr(j, "client_msg_id"), *req = jstr(j, "req_id");
    uint64_t    unit, n;
    int         i;
    pair_t     *p;
    group_t    *g;
    step_t     *st;

    for (i = 0; i < NERR - 1; i++) {
        if (code && strcmp(code, ERR_NAMES[i]) == 0) {
            break;
        }
    }
    INC(C.S->errs[i]);
    set_error("server error %s: %s (%s)", code ? code : "?",
              msg ? msg : "", c->user);
    if (parse_cmid(cmid, 'p', &unit, &n) && C.np > 0
        && unit >= (uint64_t) C.u0 && unit < (uint64_t) (C.u0 + C.np))
    {
        p = &C.pairs[unit - (uint64_t) C.u0];
        if (n <= p->nsent && !(p->flags[n] & (F_ERR | F_ACKED))) {
            p->flags[n] |= F_ERR;
            st = &C.S->steps[p->step[n]];
            INC(st->errs);
            INC(C.S->live_errs);
            ADD(st->expected, (uint64_t) -1);
            ADD(C.S->live_expected, (uint64_t) -1);
        }
        return;
    }
    if (parse_cmid(cmid, 'g', &unit, &n) && C.ng > 0
        && unit >= (uint64_t) C.u0 && unit < (uint64_t) (C.u0 + C.ng))
    {
        g = &C.groups[unit - (uint64_t) C.u0];
        if (n <= g->nsent && !(g->flags[n] & (F_ERR | F_ACKED))) {
            g->flags[n] |= F_ERR;
            st = &C.S->steps[g->step[n]];
            INC(st->errs);
            INC(C.S->live_errs);
            ADD(st->expected, (uint64_t) -(int64_t) g->exp[n]);
            ADD(C.S->live_expected, (uint64_t) -(int64_t) g->exp[n]);
        }
        return;
    }
    if (req != NULL && req[0] == 'c' && req[1] == 'g' && C.ng > 0) {
        unit = strtoull(req + 2, NULL, 10);
        if (unit >= (uint64_t) C.u0 && unit < (uint64_t) (C.u0 + C.ng)) {
            g = &C.groups[unit - (uint64_t) C.u0];
            if (g->state == 0) {
                g->state = -1;
                INC(C.S->groups_failed);
                if (!C.S->skip_reason[0]) {
                    snprintf(C.S->skip_reason, sizeof(C.S->skip_reason),
                             "create_group answered error %s: %s",
                             code ? code : "?", msg ? msg : "");
                }
            }
        }
    }
}

static void
on_group(conn_t *c, json_t *j)
{
    const char *req = jstr(j, "req_id"), *conv = jstr(j, "conversation_id");
    uint64_t    unit;
    group_t    *g;

    if (req == NULL || req[0] != 'c' || req[1] != 'g' || C.ng == 0) {
        INC(C.S->other_frames);
        return;
    }
    unit = strtoull(req + 2, NULL, 10);
    if (unit < (uint64_t) C.u0 || unit >= (uint64_t) (C.u0 + C.ng)) {
        INC(C.S->unknown_ids);
        return;
    }
    g = &C.groups[unit - (uint64_t) C.u0];
    if (g->state != 0) {
        return;
    }
    if (conv == NULL || strlen(conv) >= sizeof(g->conv)) {
        proto_err(c, "group without a usable conversation_id");
        g->state = -1;
        INC(C.S->groups_failed);
        return;
    }
    strcpy(g->conv, conv);
    g->state = 1;
    INC(C.S->groups_ok);
}

static void
on_frame(conn_t *c, const char *type, json_t *j)
{
    json_t *items;

    if (strcmp(type, "ack") == 0) {
        on_ack(c, j);
    } else if (strcmp(type, "message") == 0) {
        on_message(c, j);
    } else if (strcmp(type, "error") == 0) {
        on_error(c, j);
    } else if (strcmp(type, "pong") == 0) {
        INC(C.S->pongs);
    } else if (strcmp(type, "group") == 0) {
        on_group(c, j);
    } else if (strcmp(type, "sync_done") == 0) {
        if (C.phase == PH_STORM && !c->synced) {
            c->synced = 1;
            INC(C.S->st_synced);
            hist_add(&C.S->st_sync, NOW - C.cmd.t_start);
            __atomic_store_n(&C.S->st_last_sync, NOW, __ATOMIC_RELAXED);
        }
    } else if (strcmp(type, "conversations") == 0) {
        items = json_object_get(j, "items");
        if (C.phase == PH_STORM && json_is_array(items)) {
            ADD(C.S->st_convs, json_array_size(items));
        }
    } else if (strcmp(type, "hello") == 0) {
        proto_err(c, "a second hello");
    } else {
        INC(C.S->other_frames);
    }
}

static void
on_text(conn_t *c, uint8_t *p, size_t n)
{
    json_t      *j;
    json_error_t e;
    const char  *type;

    j = json_loadb((const char *) p, n, 0, &e);
    if (j == NULL || !json_is_object(j)) {
        proto_err(c, "frame is not a JSON object");
        json_decref(j);
        return;
    }
    type = jstr(j, "type");
    if (type == NULL) {
        proto_err(c, "frame without type");
    } else if (!c->got_hello) {
        if (strcmp(type, "hello") == 0) {
            on_hello(c, j);
        } else {
            proto_err(c, "first frame is not hello");
        }
    } else {
        on_frame(c, type, j);
    }
    json_decref(j);
}

/* ------------------------------------------------------------ commands */

static int64_t
outstanding(void)
{
    int64_t a, d;

    a = (int64_t) (LOAD(C.S->live_sent) - LOAD(C.S->live_acked)
                   - LOAD(C.S->live_errs));
    d = (int64_t) (LOAD(C.S->live_expected) - LOAD(C.S->live_delivered));
    return (a > 0 ? a : 0) + (d > 0 ? d : 0);
}

static void
update_active(void)
{
    uint64_t n = 0;
    int      i;

    if (O.scenario == SC_IDLE) {
        for (i = 0; i < C.nc; i++) {
            n += conn_live(&C.c[i]);
        }
    } else if (O.scenario == SC_GROUP) {
        for (i = 0; i < C.ng; i++) {
            n += C.groups[i].state == 1;
        }
    } else {
        for (i = 0; i < C.np; i++) {
            n += pair_live(&C.pairs[i]);
        }
    }
    C.S->active_units = n;
}

static void
close_all(int polite)
{
    int     i;
    conn_t *c;

    for (i = 0; i < C.nc; i++) {
        c = &C.c[i];
        if (c->fd >= 0) {
            if (polite && c->got_hello) {
                ws_send(c, 0x8, "\x03\xe8", 2);
            }
            if (c->fd >= 0) {
                close(c->fd);
            }
            c->fd = -1;
        }
        c->state = CS_NONE;
        c->got_hello = 0;
        c->armed = 0;
        conn_free_bufs(c);
    }
}

static void
storm_begin(void)
{
    int     i;
    conn_t *c;

    close_all(0);
    C.phase = PH_STORM;
    for (i = 0; i < C.nc; i++) {
        c = &C.c[i];
        c->attempts = 0;
        c->back = 0;
        c->synced = 0;
    }
    C.next_launch = 0;
    C.inflight = 0;
    C.S->st_clients = (uint64_t) C.nc;
}

static void
final_scan(void)
{
    slot_t  *S = C.S;
    uint64_t n;
    uint8_t  fl;
    int      i;

    for (i = 0; i < C.np; i++) {
        pair_t *p = &C.pairs[i];

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
    for (i = 0; i < C.ng; i++) {
        group_t *g = &C.groups[i];

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

static void
cmd_begin(void)
{
    char     *buf;
    size_t    len, cap;
    int       i, k, m;
    group_t  *g;
    conn_t   *c;

    switch (C.cmd.code) {
    case CMD_CONNECT:
        C.next_launch = 0;
        C.inflight = 0;
        C.stop_launch = 0;
        C.fails = 0;
        break;
    case CMD_SETUP:
        if (O.scenario == SC_GROUP) {
            cap = (size_t) O.group_size * 80 + 256;
            buf = xrealloc(NULL, cap);
            for (i = 0; i < C.ng; i++) {
                g = &C.groups[i];
                c = &C.c[g->first];
                if (!conn_live(c)) {
                    g->state = -1;
                    INC(C.S->groups_failed);
                    continue;
                }
                len = (size_t) snprintf(buf, cap,
                        "{\"type\":\"create_group\",\"req_id\":\"cg%u\","
                        "\"name\":\"bench group %u\",\"members\":[",
                        g->gg, g->gg);
                for (k = 1, m = 0; k < g->size; k++) {
                    len += (size_t) snprintf(buf + len, cap - len, "%s\"%s\"",
                                             m++ ? "," : "",
                                             C.c[g->first + k].user);
                }
                len += (size_t) snprintf(buf + len, cap - len, "]}");
                ws_text(c, buf, len);
            }
            free(buf);
        } else if (O.scenario == SC_STORM) {
            for (i = 0; i < C.np; i++) {
                if (pair_live(&C.pairs[i])) {
                    for (k = 0; k < O.storm_msgs; k++) {
                        dm_send(&C.pairs[i], NOW, 0);
                    }
                }
            }
        }
        break;
    case CMD_RATE:
        C.step = C.cmd.step;
        C.rate = C.cmd.rate[C.id];
        C.win_start = C.cmd.t_start;
        C.win_end = C.cmd.t_end;
        C.sched_k = 0;
        break;
    case CMD_PING:
        for (i = 0; i < C.nc; i++) {
            if (conn_live(&C.c[i])) {
                INC(C.S->pings);
                ws_text(&C.c[i], "{\"type\":\"ping\",\"req_id\":\"bp\"}",
                        sizeof("{\"type\":\"ping\",\"req_id\":\"bp\"}") - 1);
            }
        }
        break;
    case CMD_FINAL:
        final_scan();
        break;
    case CMD_QUIT:
        close_all(1);
        exit(0);
    default:
        break;
    }
}

static void
cmd_done(void)
{
    if (C.cmd.code == CMD_CONNECT || C.cmd.code == CMD_SETUP) {
        update_active();
    }
    C.busy = 0;
    __atomic_store_n(&C.S->done_cmd, C.cmd.seq, __ATOMIC_RELEASE);
}

static void
launch(void)
{
    int window = C.cmd.window;

    while (!C.stop_launch && C.next_launch < C.nc
           && (window <= 0 || C.inflight < window))
    {
        conn_start(&C.c[C.next_launch++]);
        if (C.cmd.max_fail > 0 && (long) C.fails >= C.cmd.max_fail) {
            C.stop_launch = 1;
            set_error("stopped connecting after %" PRIu64 " failures", C.fails);
        }
    }
}

/* handshake deadlines, storm retries */
static void
scan_conns(void)
{
    int     i;
    conn_t *c;

    for (i = 0; i < C.nc; i++) {
        c = &C.c[i];
        if (c->state == CS_WAIT) {
            if (NOW >= c->retry_at) {
                conn_start(c);
            }
        } else if (!c->got_hello && c->fd >= 0 && NOW > c->deadline) {
            set_error("%s: no hello within %.0f s", c->user, O.timeout);
            conn_down(c, c->state == CS_CONNECTING ? FR_TIMEOUT : FR_NO_HELLO,
                      0);
        }
    }
}

static void
cmd_tick(void)
{
    uint64_t due, total;
    int64_t  t, sched, lag;
    double   f;
    step_t  *st;
    int      i;

    if (NOW - C.last_scan >= (C.phase == PH_STORM ? 10000 : 100000)
        && (C.inflight > 0 || C.phase == PH_STORM))
    {
        C.last_scan = NOW;
        scan_conns();
    }
    if (!C.busy) {
        return;
    }
    switch (C.cmd.code) {
    case CMD_CONNECT:
        launch();
        if ((C.next_launch >= C.nc || C.stop_launch) && C.inflight <= 0) {
            cmd_done();
        }
        break;
    case CMD_SETUP:
        if (O.scenario == SC_GROUP) {
            for (i = 0; i < C.ng; i++) {
                if (C.groups[i].state == 0) {
                    break;
                }
            }
            if (i == C.ng) {
                cmd_done();
            } else if (NOW >= C.cmd.deadline) {
                for (i = 0; i < C.ng; i++) {
                    if (C.groups[i].state == 0) {
                        C.groups[i].state = -1;
                        INC(C.S->groups_failed);
                    }
                }
                if (!C.S->skip_reason[0]) {
                    snprintf(C.S->skip_reason, sizeof(C.S->skip_reason),
                             "no answer to create_group within %.0f s",
                             (double) (C.cmd.deadline - C.cmd.t_start) / 1e6);
                }
                cmd_done();
            }
        } else if (O.scenario == SC_STORM) {
            if (outstanding() == 0 || NOW >= C.cmd.deadline) {
                cmd_done();
            }
        } else {
            cmd_done();
        }
        break;
    case CMD_RATE:
        if (NOW < C.cmd.t_start) {
            break;
        }
        st = &C.S->steps[C.step];
        /* message k is due at t_start + k / rate, for every k with a
         * time before t_end */
        f = (double) (C.cmd.t_end - C.cmd.t_start) * C.rate / 1e6;
        total = (uint64_t) f;
        if ((double) total < f) {
            total++;
        }
        t = NOW < C.cmd.t_end ? NOW : C.cmd.t_end;
        due = (uint64_t) ((double) (t - C.cmd.t_start) * C.rate / 1e6) + 1;
        if (due > total) {
            due = total;
        }
        while (C.sched_k < due) {
            sched = C.cmd.t_start + (int64_t) ((double) C.sched_k * 1e6 / C.rate);
            lag = NOW - sched;
            if (lag > st->max_lag) {
                st->max_lag = lag;
            }
            INC(st->scheduled);
            if (O.scenario == SC_GROUP) {
                group_send_next(sched, C.step);
            } else {
                dm_send_next(sched, C.step);
            }
            C.sched_k++;
        }
        if (NOW >= C.cmd.t_end && C.sched_k >= total) {
            cmd_done();
        }
        break;
    case CMD_DRAIN:
        if (outstanding() == 0 || NOW >= C.cmd.deadline) {
            cmd_done();
        }
        break;
    case CMD_PING:
        if (LOAD(C.S->pongs) >= LOAD(C.S->pings) || NOW >= C.cmd.deadline) {
            cmd_done();
        }
        break;
    case CMD_STORM:
        if (C.phase != PH_STORM) {
            if (NOW < C.cmd.t_start) {
                break;
            }
            storm_begin();
        }
        launch();
        if (LOAD(C.S->st_synced) + LOAD(C.S->st_failed) >= (uint64_t) C.nc) {
            cmd_done();
        } else if (NOW >= C.cmd.deadline) {
            for (i = 0; i < C.nc; i++) {
                if (!C.c[i].synced && C.c[i].state != CS_FAILED) {
                    INC(C.S->st_failed);
                }
            }
            cmd_done();
        }
        break;
    case CMD_FINAL:
        cmd_done();
        break;
    default:
        cmd_done();
        break;
    }
}

static void
poll_cmd(void)
{
    uint64_t seq = __atomic_load_n(&SHM->cmd.seq, __ATOMIC_ACQUIRE);

    if (seq == C.cmd_seen) {
        return;
    }
    memcpy(&C.cmd, &SHM->cmd, sizeof(C.cmd));
    C.cmd.seq = seq;
    C.cmd_seen = seq;
    C.busy = 1;
    cmd_begin();
}

static void
child_setup(int id)
{
    long     i, k, u1;
    conn_t  *c;

    C.id = id;
    C.S = &SHM->slot[id];
    C.u0 = UNITS * id / NPROCS;
    u1 = UNITS * (id + 1) / NPROCS;
    C.iobuf = xrealloc(NULL, IOBUF_SIZE);
    C.fbufsz = (size_t) O.body_bytes + 1024;
    C.fbuf = xrealloc(NULL, C.fbufsz);
    C.ep = epoll_create1(EPOLL_CLOEXEC);
    if (C.ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }

    switch (O.scenario) {
    case SC_IDLE:
        C.nc = (int) (u1 - C.u0);
        C.c = xcalloc((size_t) C.nc, sizeof(conn_t));
        for (i = 0; i < C.nc; i++) {
            c = &C.c[i];
            c->gi = (uint32_t) (C.u0 + i);
            snprintf(c->user, sizeof(c->user), "%si%ld", O.prefix, C.u0 + i);
        }
        break;
    case SC_DM:
    case SC_STORM:
        C.np = (int) (u1 - C.u0);
        C.nc = 2 * C.np;
        C.c = xcalloc((size_t) C.nc, sizeof(conn_t));
        C.pairs = xcalloc((size_t) C.np, sizeof(pair_t));
        for (i = 0; i < C.np; i++) {
            C.pairs[i].gp = (uint32_t) (C.u0 + i);
            C.pairs[i].u = (int) (2 * i);
            C.pairs[i].v = (int) (2 * i + 1);
            for (k = 0; k < 2; k++) {
                c = &C.c[2 * i + k];
                c->gi = (uint32_t) (2 * (C.u0 + i) + k);
                c->owner = (int32_t) i;
                c->member = (int32_t) k;
                snprintf(c->user, sizeof(c->user), "%s%s%ld", O.prefix,
                         O.scenario == SC_DM ? (k ? "v" : "u")
                                             : (k ? "b" : "a"),
                         C.u0 + i);
            }
        }
        break;
    case SC_GROUP:
        C.ng = (int) (u1 - C.u0);
        C.nc = C.ng * O.group_size;
        C.c = xcalloc((size_t) C.nc, sizeof(conn_t));
        C.groups = xcalloc((size_t) C.ng, sizeof(group_t));
        for (i = 0; i < C.ng; i++) {
            C.groups[i].gg = (uint32_t) (C.u0 + i);
            C.groups[i].first = (int) (i * O.group_size);
            C.groups[i].size = O.group_size;
            for (k = 0; k < O.group_size; k++) {
                c = &C.c[i * O.group_size + k];
                c->gi = (uint32_t) ((C.u0 + i) * O.group_size + k);
                c->owner = (int32_t) i;
                c->member = (int32_t) k;
                snprintf(c->user, sizeof(c->user), "%sg%ldm%ld", O.prefix,
                         C.u0 + i, k);
            }
        }
        break;
    }
    for (i = 0; i < C.nc; i++) {
        C.c[i].fd = -1;
        C.c[i].li = (uint32_t) i;
    }
    C.S->nconns = (uint64_t) C.nc;
    C.S->units = (uint64_t) (u1 - C.u0);
}

static void
child_main(int id)
{
    struct epoll_event ev[1024];
    struct timespec    ts;
    int                n, i, timeout;
    int64_t            next;
    conn_t            *c;

    is_child = 1;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_IGN);
    if (getppid() == 1) {
        exit(0);
    }
    rng_state ^= ((uint64_t) getpid() << 32) ^ (uint64_t) now_us();
    child_setup(id);

    for (;;) {
        /* wake up for the next scheduled send, to the microsecond */
        timeout = 20000;
        if (C.busy && C.cmd.code == CMD_RATE && C.rate > 0) {
            next = C.cmd.t_start
                   + (int64_t) ((double) C.sched_k * 1e6 / C.rate);
            next -= now_us();
            timeout = next < 0 ? 0 : next < timeout ? (int) next : timeout;
        } else if (C.busy && C.cmd.code == CMD_STORM) {
            timeout = 1000;
        }
        ts.tv_sec = timeout / 1000000;
        ts.tv_nsec = (long) (timeout % 1000000) * 1000;
        n = epoll_pwait2(C.ep, ev, 1024, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            die("epoll_wait: %s", strerror(errno));
        }
        NOW = now_us();
        for (i = 0; i < n; i++) {
            if (i > 0) {
                NOW = now_us();     /* a vDSO call: keep latencies exact */
            }
            c = &C.c[ev[i].data.u64];
            if (c->fd < 0) {
                continue;
            }
            if (c->state == CS_CONNECTING) {
                conn_connected(c);
                continue;
            }
            if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                conn_read(c);
            }
            if (c->fd >= 0 && (ev[i].events & EPOLLOUT)) {
                conn_flush(c);
            }
        }
        poll_cmd();
        cmd_tick();
    }
}

/* ============================================================ /proc */

enum { K_NGINX, K_WORKER, K_KAFKA, K_REDIS, K_PG, K_BENCH, NCOMP };
static const char *COMP_NAMES[NCOMP] = {
    "nginx", "chat_worker", "kafka", "redis", "postgres", "chat_bench"
};

static pid_t kids[MAX_PROCS];

typedef struct {
    int                pid, ppid, comp, nginx_worker;
    unsigned long long ticks;
} pinfo_t;

typedef struct {
    unsigned long long ticks[NCOMP];
    int                procs[NCOMP];
    int64_t            t;
} cpu_t;

static int
read_file(const char *path, char *buf, size_t sz)
{
    int     fd;
    ssize_t n, t = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    while ((size_t) t < sz - 1 && (n = read(fd, buf + t, sz - 1 - (size_t) t)) > 0) {
        t += n;
    }
    close(fd);
    buf[t] = '\0';
    return (int) t;
}

/* comm, ppid and utime+stime+cutime+cstime (the children this process
 * reaped count too: a postgres backend that ends during a scenario) */
static int
read_stat(int pid, char *comm, size_t commsz, int *ppid,
    unsigned long long *ticks)
{
    char                path[64], buf[2048], *l, *r, st;
    unsigned long long  ut, stt;
    long long           cut, cst;
    size_t              n;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (read_file(path, buf, sizeof(buf)) <= 0) {
        return -1;
    }
    l = strchr(buf, '(');
    r = strrchr(buf, ')');
    if (l == NULL || r == NULL || r < l) {
        return -1;
    }
    n = (size_t) (r - l - 1);
    if (n >= commsz) {
        n = commsz - 1;
    }
    memcpy(comm, l + 1, n);
    comm[n] = '\0';
    if (sscanf(r + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
               &st, ppid, &ut, &stt, &cut, &cst) != 6)
    {
        return -1;
    }
    *ticks = ut + stt + (unsigned long long) (cut > 0 ? cut : 0)
             + (unsigned long long) (cst > 0 ? cst : 0);
    return 0;
}

static void
read_cmdline(int pid, char *buf, size_t sz)
{
    char path[64];
    int  n, i;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    n = read_file(path, buf, sz);
    if (n < 0) {
        buf[0] = '\0';
        return;
    }
    for (i = 0; i < n; i++) {
        if (buf[i] == '\0') {
            buf[i] = ' ';
        }
    }
}

static int
is_bench_pid(int pid)
{
    int i;

    if (pid == getpid()) {
        return 1;
    }
    for (i = 0; i < NPROCS; i++) {
        if (kids[i] == pid) {
            return 1;
        }
    }
    return 0;
}

static int
pinfo_cmp(const void *a, const void *b)
{
    return ((const pinfo_t *) a)->pid - ((const pinfo_t *) b)->pid;
}

static pinfo_t *
pinfo_find(pinfo_t *v, int n, int pid)
{
    pinfo_t key;

    key.pid = pid;
    return bsearch(&key, v, (size_t) n, sizeof(pinfo_t), pinfo_cmp);
}

/* every process of the stack's components; with --cpu-scope only those
 * descending from one of the scope pids (the pids of t/stack.sh) */
static void
cpu_snap(cpu_t *out, int (*each)(int pid, int comp, int worker, void *),
    void *arg)
{
    DIR                *d;
    struct dirent      *de;
    pinfo_t            *v = NULL;
    int                 n = 0, cap = 0, i, k, pid, ppid, depth, ok;
    char                comm[64], cmd[4096];
    unsigned long long  ticks;
    pinfo_t            *a;

    memset(out, 0, sizeof(*out));
    out->t = now_us();
    d = opendir("/proc");
    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char) de->d_name[0])) {
            continue;
        }
        pid = atoi(de->d_name);
        if (read_stat(pid, comm, sizeof(comm), &ppid, &ticks) < 0) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 512;
            v = xrealloc(v, (size_t) cap * sizeof(*v));
        }
        v[n].pid = pid;
        v[n].ppid = ppid;
        v[n].comp = -1;
        v[n].nginx_worker = 0;
        if (is_bench_pid(pid)) {
            v[n].comp = K_BENCH;
        } else if (strcmp(comm, "nginx") == 0) {
            v[n].comp = K_NGINX;
            read_cmdline(pid, cmd, sizeof(cmd));
            v[n].nginx_worker = strncmp(cmd, "nginx: worker process", 21) == 0;
        } else if (strcmp(comm, "chat_worker") == 0) {
            v[n].comp = K_WORKER;
        } else if (strcmp(comm, "java") == 0) {
            read_cmdline(pid, cmd, sizeof(cmd));
            if (strstr(cmd, "kafka") != NULL) {
                v[n].comp = K_KAFKA;
            }
        } else if (strncmp(comm, "redis-server", 12) == 0) {
            v[n].comp = K_REDIS;
        } else if (strcmp(comm, "postgres") == 0
                   || strcmp(comm, "postmaster") == 0)
        {
            v[n].comp = K_PG;
        }
        v[n].ticks = ticks;
        n++;
    }
    closedir(d);
    qsort(v, (size_t) n, sizeof(*v), pinfo_cmp);
    for (i = 0; i < n; i++) {
        if (v[i].comp < 0) {
            continue;
        }
        ok = v[i].comp == K_BENCH || O.nscope == 0;
        for (a = &v[i], depth = 0; !ok && a != NULL && depth < 64; depth++) {
            for (k = 0; k < O.nscope; k++) {
                if (a->pid == O.scope[k]) {
                    ok = 1;
                }
            }
            a = a->ppid > 0 ? pinfo_find(v, n, a->ppid) : NULL;
        }
        if (!ok) {
            continue;
        }
        out->ticks[v[i].comp] += v[i].ticks;
        out->procs[v[i].comp]++;
        if (each) {
            each(v[i].pid, v[i].comp, v[i].nginx_worker, arg);
        }
    }
    free(v);
}

typedef struct {
    long rss_kb, pss_kb, nofile;
    int  workers;
} ngxmem_t;

static int
mem_each(int pid, int comp, int worker, void *arg)
{
    ngxmem_t *m = arg;
    char      path[64], buf[4096], *p;

    if (comp != K_NGINX || !worker) {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
    if (read_file(path, buf, sizeof(buf)) <= 0) {
        return 0;
    }
    m->workers++;
    if ((p = strstr(buf, "\nRss:")) != NULL) {
        m->rss_kb += strtol(p + 5, NULL, 10);
    }
    if ((p = strstr(buf, "\nPss:")) != NULL) {
        m->pss_kb += strtol(p + 5, NULL, 10);
    }
    snprintf(path, sizeof(path), "/proc/%d/limits", pid);
    if (read_file(path, buf, sizeof(buf)) > 0
        && (p = strstr(buf, "Max open files")) != NULL)
    {
        m->nofile += strtol(p + 14, NULL, 10);
    }
    return 0;
}

static void
nginx_mem(ngxmem_t *m)
{
    cpu_t c;

    memset(m, 0, sizeof(*m));
    cpu_snap(&c, mem_each, m);
}

typedef struct {
    long sockets, tcp_inuse, tcp_alloc, tcp_tw, tcp_mem, slab_kb;
} sockstat_t;

static void
sockstat(sockstat_t *s)
{
    char  buf[4096], *p;

    memset(s, 0, sizeof(*s));
    if (read_file("/proc/net/sockstat", buf, sizeof(buf)) <= 0) {
        return;
    }
    if ((p = strstr(buf, "sockets: used")) != NULL) {
        s->sockets = strtol(p + 13, NULL, 10);
    }
    if ((p = strstr(buf, "TCP:")) != NULL) {
        sscanf(p, "TCP: inuse %ld orphan %*d tw %ld alloc %ld mem %ld",
               &s->tcp_inuse, &s->tcp_tw, &s->tcp_alloc, &s->tcp_mem);
    }
    if (read_file("/proc/meminfo", buf, sizeof(buf)) > 0
        && (p = strstr(buf, "\nSlab:")) != NULL)
    {
        s->slab_kb = strtol(p + 6, NULL, 10);
    }
}

/* TcpExt ListenOverflows and ListenDrops from /proc/net/netstat: SYNs or
 * handshakes dropped because a listen queue was full */
static void
listen_drops(long *overflows, long *drops)
{
    static char buf[16384];
    char       *names, *vals, *nsave = NULL, *vsave = NULL, *n, *v, *nl;

    *overflows = *drops = 0;
    if (read_file("/proc/net/netstat", buf, sizeof(buf)) <= 0
        || (names = strstr(buf, "TcpExt:")) == NULL
        || (nl = strchr(names, '\n')) == NULL)
    {
        return;
    }
    *nl = '\0';
    vals = nl + 1;
    if (strncmp(vals, "TcpExt:", 7) != 0) {
        return;
    }
    if ((nl = strchr(vals, '\n')) != NULL) {
        *nl = '\0';
    }
    for (n = strtok_r(names, " ", &nsave), v = strtok_r(vals, " ", &vsave);
         n && v; n = strtok_r(NULL, " ", &nsave), v = strtok_r(NULL, " ", &vsave))
    {
        if (strcmp(n, "ListenOverflows") == 0) {
            *overflows = atol(v);
        } else if (strcmp(n, "ListenDrops") == 0) {
            *drops = atol(v);
        }
    }
}

static json_t *
listen_json(long o0, long d0)
{
    json_t *o = json_object();
    long    o1, d1;

    listen_drops(&o1, &d1);
    json_object_set_new(o, "listen_overflows", json_integer(o1 - o0));
    json_object_set_new(o, "listen_drops", json_integer(d1 - d0));
    return o;
}

/* ======================================================== orchestration */

static uint64_t cmd_seq;
static int      had_progress;
static json_t  *RESULT;          /* the scenario's JSON */

static void
kill_kids(void)
{
    int i;

    for (i = 0; i < NPROCS; i++) {
        if (kids[i] > 0) {
            kill(kids[i], SIGTERM);
        }
    }
    for (i = 0; i < NPROCS; i++) {
        if (kids[i] > 0) {
            waitpid(kids[i], NULL, 0);
            kids[i] = 0;
        }
    }
}

static void write_json(json_t *j);

static void
fatal(const char *fmt, ...)
{
    va_list ap;
    char    buf[1024];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (had_progress) {
        fputc('\n', stderr);
    }
    fprintf(stderr, "chat_bench: %s: FAILED: %s\n", SC_NAMES[O.scenario], buf);
    kill_kids();
    if (RESULT) {
        json_object_set_new(RESULT, "status", json_string("failed"));
        json_object_set_new(RESULT, "reason", json_string(buf));
        write_json(RESULT);
    }
    exit(2);
}

static void
cmd_publish(int code)
{
    SHM->cmd.code = code;
    cmd_seq++;
    __atomic_store_n(&SHM->cmd.seq, cmd_seq, __ATOMIC_RELEASE);
}

typedef void (*tick_fn)(void *);

static void
wait_cmd(tick_fn tick, void *arg)
{
    int   i, done, st;
    pid_t p;

    for (;;) {
        done = 1;
        for (i = 0; i < NPROCS; i++) {
            if (__atomic_load_n(&SHM->slot[i].done_cmd, __ATOMIC_ACQUIRE)
                != cmd_seq)
            {
                done = 0;
            }
        }
        if (done) {
            return;
        }
        p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            for (i = 0; i < NPROCS; i++) {
                if (kids[i] == p) {
                    kids[i] = 0;
                }
            }
            fatal("load process %d died (%s %d)", (int) p,
                  WIFSIGNALED(st) ? "signal" : "exit",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
        if (tick) {
            tick(arg);
        }
        usleep(5000);
    }
}

#define SUMF(field) sum_field(offsetof(slot_t, field))

static uint64_t
sum_field(size_t off)
{
    uint64_t s = 0;
    int      i;

    for (i = 0; i < NPROCS; i++) {
        s += __atomic_load_n((uint64_t *) ((char *) &SHM->slot[i] + off),
                             __ATOMIC_RELAXED);
    }
    return s;
}

static void
progress(const char *fmt, ...)
{
    va_list ap;

    if (!isatty(2) && !O.verbose) {
        return;
    }
    va_start(ap, fmt);
    fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    had_progress = 1;
}

static void
progress_end(void)
{
    if (had_progress) {
        fputs("\r\033[K", stderr);
        had_progress = 0;
    }
}

static int64_t next_progress;

static void
tick_connect(void *arg)
{
    int64_t now = now_us();

    (void) arg;
    if (now >= next_progress) {
        next_progress = now + 500000;
        progress("%s: connecting: %" PRIu64 " ok, %" PRIu64 " failed",
                 SC_NAMES[O.scenario], SUMF(conn_ok), SUMF(conn_fail));
    }
}

static json_t *
lat_json(const hist_t *h)
{
    json_t *o = json_object();

    json_object_set_new(o, "n", json_integer((json_int_t) h->n));
    json_object_set_new(o, "p50", json_real(hist_pct(h, 0.50) / 1000.0));
    json_object_set_new(o, "p99", json_real(hist_pct(h, 0.99) / 1000.0));
    json_object_set_new(o, "p999", json_real(hist_pct(h, 0.999) / 1000.0));
    json_object_set_new(o, "max", json_real((double) h->max / 1000.0));
    json_object_set_new(o, "mean",
                        json_real(h->n ? (double) h->sum / (double) h->n / 1000.0 : 0));
    return o;
}

static json_t *
cpu_json(const cpu_t *a, const cpu_t *b, double units, const char *unit)
{
    json_t *o = json_object(), *comps = json_object(), *c;
    double  hz = (double) sysconf(_SC_CLK_TCK), s, stack = 0;
    int     k;

    for (k = 0; k < NCOMP; k++) {
        s = b->ticks[k] >= a->ticks[k]
            ? (double) (b->ticks[k] - a->ticks[k]) / hz : 0;
        if (k != K_BENCH) {
            stack += s;
        }
        c = json_object();
        json_object_set_new(c, "cpu_s", json_real(s));
        json_object_set_new(c, "procs", json_integer(b->procs[k]));
        json_object_set_new(c, "us_per_unit",
                            units > 0 ? json_real(s * 1e6 / units) : json_null());
        json_object_set_new(comps, COMP_NAMES[k], c);
    }
    json_object_set_new(o, "unit", json_string(unit));
    json_object_set_new(o, "units", json_integer((json_int_t) units));
    json_object_set_new(o, "wall_s", json_real((double) (b->t - a->t) / 1e6));
    json_object_set_new(o, "stack_cpu_s", json_real(stack));
    json_object_set_new(o, "stack_us_per_unit",
                        units > 0 ? json_real(stack * 1e6 / units) : json_null());
    json_object_set_new(o, "components", comps);
    return o;
}

static json_t *
do_connect(int window, long max_fail)
{
    json_t  *o = json_object(), *fr = json_object();
    hist_t  *h = xcalloc(1, sizeof(hist_t));
    int64_t  t0 = now_us(), first = 0, last = 0, v;
    uint64_t ok, fail, f;
    double   secs;
    int      i, k, http = 0;

    SHM->cmd.window = window;
    SHM->cmd.max_fail = max_fail > 0 ? (max_fail + NPROCS - 1) / NPROCS : 0;
    SHM->cmd.t_start = t0;
    next_progress = t0 + 1000000;
    cmd_publish(CMD_CONNECT);
    wait_cmd(tick_connect, NULL);
    progress_end();
    ok = SUMF(conn_ok);
    fail = SUMF(conn_fail);
    for (i = 0; i < NPROCS; i++) {
        v = SHM->slot[i].t_first_start;
        if (v && (first == 0 || v < first)) {
            first = v;
        }
        if (SHM->slot[i].t_last_hello > last) {
            last = SHM->slot[i].t_last_hello;
        }
        hist_merge(h, &SHM->slot[i].conn_lat);
        if (SHM->slot[i].last_http) {
            http = SHM->slot[i].last_http;
        }
    }
    for (k = 0; k < NFAIL; k++) {
        for (f = 0, i = 0; i < NPROCS; i++) {
            f += SHM->slot[i].fail[k];
        }
        if (f) {
            json_object_set_new(fr, FAIL_NAMES[k], json_integer((json_int_t) f));
        }
    }
    secs = last > first ? (double) (last - first) / 1e6 : 0;
    json_object_set_new(o, "wanted", json_integer((json_int_t) SUMF(nconns)));
    json_object_set_new(o, "ok", json_integer((json_int_t) ok));
    json_object_set_new(o, "failed", json_integer((json_int_t) fail));
    json_object_set_new(o, "not_attempted",
                        json_integer((json_int_t) (SUMF(nconns) - ok - fail)));
    json_object_set_new(o, "fail_reasons", fr);
    if (http) {
        json_object_set_new(o, "last_http_status", json_integer(http));
    }
    json_object_set_new(o, "seconds", json_real(secs));
    json_object_set_new(o, "rate_per_s", json_real(secs > 0 ? (double) ok / secs : 0));
    json_object_set_new(o, "window_per_proc", json_integer(window));
    json_object_set_new(o, "handshake_ms", lat_json(h));
    free(h);
    return o;
}

static void
set_error_from_slots(json_t *o)
{
    int i;

    for (i = 0; i < NPROCS; i++) {
        if (SHM->slot[i].last_error[0]) {
            json_object_set_new(o, "first_error",
                                json_string(SHM->slot[i].last_error));
            return;
        }
    }
}

static json_t *
counts_json(void)
{
    json_t  *o = json_object(), *cl = json_object(), *er = json_object();
    uint64_t v;
    int      i, k;
    char     name[16];

    for (k = 0; k < NCLOSE; k++) {
        for (v = 0, i = 0; i < NPROCS; i++) {
            v += SHM->slot[i].closes[k];
        }
        if (v) {
            if (CLOSE_CODES[k]) {
                snprintf(name, sizeof(name), "%d", CLOSE_CODES[k]);
            } else {
                snprintf(name, sizeof(name), "other");
            }
            json_object_set_new(cl, name, json_integer((json_int_t) v));
        }
    }
    for (k = 0; k < NERR; k++) {
        for (v = 0, i = 0; i < NPROCS; i++) {
            v += SHM->slot[i].errs[k];
        }
        if (v) {
            json_object_set_new(er, ERR_NAMES[k], json_integer((json_int_t) v));
        }
    }
    json_object_set_new(o, "closes", cl);
    json_object_set_new(o, "server_errors", er);
    json_object_set_new(o, "protocol_errors", json_integer((json_int_t) SUMF(proto_err)));
    json_object_set_new(o, "unknown_ids", json_integer((json_int_t) SUMF(unknown_ids)));
    json_object_set_new(o, "duplicate_acks", json_integer((json_int_t) SUMF(dup_acks)));
    json_object_set_new(o, "seq_mismatch", json_integer((json_int_t) SUMF(seq_mismatch)));
    json_object_set_new(o, "other_frames", json_integer((json_int_t) SUMF(other_frames)));
    set_error_from_slots(o);
    return o;
}

/* ------------------------------------------------------------- steps */

typedef struct {
    int64_t  t_start, t_end, next;
    int      n;
    double   ack[4096];
    double   del[4096];
    double   rate;
} sampler_t;

static void
tick_step(void *arg)
{
    sampler_t *s = arg;
    int64_t    now = now_us(), a, d;

    if (now >= s->next && s->next <= s->t_end + 500000 && s->n < 4096) {
        a = (int64_t) (SUMF(live_sent) - SUMF(live_acked) - SUMF(live_errs));
        d = (int64_t) (SUMF(live_expected) - SUMF(live_delivered));
        s->ack[s->n] = (double) a;
        s->del[s->n] = (double) d;
        s->n++;
        s->next += 1000000;
        progress("%s: %.0f msg/s, %.0f s: sent %" PRIu64 ", acked %" PRIu64
                 ", ack backlog %" PRId64 ", delivery backlog %" PRId64,
                 SC_NAMES[O.scenario], s->rate,
                 (double) (now - s->t_start) / 1e6, SUMF(live_sent),
                 SUMF(live_acked), a, d);
    }
}

static void
tick_drain(void *arg)
{
    int64_t now = now_us();

    (void) arg;
    if (now >= next_progress) {
        next_progress = now + 1000000;
        progress("%s: draining: ack backlog %" PRId64 ", delivery backlog %" PRId64,
                 SC_NAMES[O.scenario],
                 (int64_t) (SUMF(live_sent) - SUMF(live_acked) - SUMF(live_errs)),
                 (int64_t) (SUMF(live_expected) - SUMF(live_delivered)));
    }
}

static int64_t
live_outstanding(void)
{
    int64_t a, d;

    a = (int64_t) (SUMF(live_sent) - SUMF(live_acked) - SUMF(live_errs));
    d = (int64_t) (SUMF(live_expected) - SUMF(live_delivered));
    return (a > 0 ? a : 0) + (d > 0 ? d : 0);
}

/* wait until nothing is in flight; 1 if drained */
static int
drain(double secs)
{
    SHM->cmd.t_start = now_us();
    SHM->cmd.deadline = SHM->cmd.t_start + (int64_t) (secs * 1e6);
    next_progress = SHM->cmd.t_start + 1000000;
    cmd_publish(CMD_DRAIN);
    wait_cmd(tick_drain, NULL);
    progress_end();
    return live_outstanding() == 0;
}

static step_t AGG;

static json_t *
run_step(int idx, double rate, double dur, const char *kind, int *held,
    int *drained)
{
    json_t    *o = json_object(), *ba, *bd, *cpu;
    sampler_t *smp = xcalloc(1, sizeof(sampler_t));
    cpu_t      a, b;
    uint64_t   active = 0, act[MAX_PROCS];
    int        i, half;
    double     ratio, slope, maxb, allowed, dps, exp_per_msg, dur_real;
    char       verdict[256];

    if (live_outstanding() > 0) {
        drain(O.drain * 4);
    }
    for (i = 0; i < NPROCS; i++) {
        act[i] = SHM->slot[i].active_units;
        active += act[i];
    }
    for (i = 0; i < NPROCS; i++) {
        SHM->cmd.rate[i] = active ? rate * (double) act[i] / (double) active : 0;
    }
    cpu_snap(&a, NULL, NULL);
    SHM->cmd.step = idx;
    SHM->cmd.t_start = now_us() + 200000;
    SHM->cmd.t_end = SHM->cmd.t_start + (int64_t) (dur * 1e6);
    smp->t_start = SHM->cmd.t_start;
    smp->t_end = SHM->cmd.t_end;
    smp->next = smp->t_start;
    smp->rate = rate;
    cmd_publish(CMD_RATE);
    wait_cmd(tick_step, smp);
    while (smp->next <= smp->t_end && now_us() < smp->t_end + 100000) {
        tick_step(smp);
        usleep(5000);
    }
    progress_end();
    *drained = drain(O.drain);
    cpu_snap(&b, NULL, NULL);

    memset(&AGG, 0, sizeof(AGG));
    for (i = 0; i < NPROCS; i++) {
        step_t *s = &SHM->slot[i].steps[idx];

        AGG.scheduled += s->scheduled;
        AGG.sent += s->sent;
        AGG.not_sent += s->not_sent;
        AGG.acked += s->acked;
        AGG.errs += s->errs;
        AGG.expected += s->expected;
        AGG.delivered += s->delivered;
        AGG.deliveries += s->deliveries;
        AGG.complete += s->complete;
        AGG.dups += s->dups;
        AGG.order_err += s->order_err;
        AGG.acks_in_win += s->acks_in_win;
        AGG.deliv_in_win += s->deliv_in_win;
        if (s->max_lag > AGG.max_lag) {
            AGG.max_lag = s->max_lag;
        }
        hist_merge(&AGG.ack, &s->ack);
        hist_merge(&AGG.deliv, &s->deliv);
        hist_merge(&AGG.first, &s->first);
        hist_merge(&AGG.last, &s->last);
    }
    dur_real = dur;
    json_object_set_new(o, "kind", json_string(kind));
    json_object_set_new(o, "offered_rate", json_real(rate));
    json_object_set_new(o, "duration_s", json_real(dur));
    json_object_set_new(o, "active_units", json_integer((json_int_t) active));
    json_object_set_new(o, "scheduled", json_integer((json_int_t) AGG.scheduled));
    json_object_set_new(o, "sent", json_integer((json_int_t) AGG.sent));
    json_object_set_new(o, "not_sent", json_integer((json_int_t) AGG.not_sent));
    json_object_set_new(o, "acked", json_integer((json_int_t) AGG.acked));
    json_object_set_new(o, "errors", json_integer((json_int_t) AGG.errs));
    json_object_set_new(o, "offered_actual_rate", json_real((double) AGG.sent / dur_real));
    json_object_set_new(o, "ack_rate", json_real((double) AGG.acks_in_win / dur_real));
    json_object_set_new(o, "duplicates", json_integer((json_int_t) AGG.dups));
    json_object_set_new(o, "out_of_order", json_integer((json_int_t) AGG.order_err));
    json_object_set_new(o, "max_generator_lag_ms", json_real((double) AGG.max_lag / 1000.0));
    if (O.scenario == SC_GROUP) {
        json_object_set_new(o, "expected_deliveries", json_integer((json_int_t) AGG.expected));
        json_object_set_new(o, "deliveries", json_integer((json_int_t) AGG.deliveries));
        json_object_set_new(o, "complete", json_integer((json_int_t) AGG.complete));
        json_object_set_new(o, "deliveries_per_s", json_real((double) AGG.deliv_in_win / dur_real));
        json_object_set_new(o, "first_member_ms", lat_json(&AGG.first));
        json_object_set_new(o, "last_member_ms", lat_json(&AGG.last));
        dps = (double) AGG.deliv_in_win / dur_real;
        exp_per_msg = AGG.sent ? (double) AGG.expected / (double) AGG.sent : 0;
    } else {
        json_object_set_new(o, "delivered", json_integer((json_int_t) AGG.delivered));
        dps = (double) AGG.deliv_in_win / dur_real;
        exp_per_msg = 1;
    }
    json_object_set_new(o, "throughput_msg_s",
                        json_real(O.scenario == SC_GROUP
                                  ? (double) AGG.acks_in_win / dur_real : dps));
    json_object_set_new(o, "ack_ms", lat_json(&AGG.ack));
    json_object_set_new(o, "deliver_ms", lat_json(&AGG.deliv));
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
    ratio = AGG.expected > 0 && AGG.sent > 0
            ? (double) AGG.deliv_in_win / ((double) AGG.sent * exp_per_msg) : 0;
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
    json_object_set_new(o, "backlog_slope_per_s", json_real(slope));
    json_object_set_new(o, "backlog_max_s",
                        json_real(rate > 0 ? maxb / (rate * exp_per_msg) : 0));
    *held = 1;
    verdict[0] = '\0';
    if (AGG.sent == 0) {
        *held = 0;
        snprintf(verdict, sizeof(verdict), "nothing sent");
    } else if (AGG.max_lag > 200000) {
        *held = 0;
        snprintf(verdict, sizeof(verdict),
                 "generator fell %.0f ms behind (client-bound)",
                 (double) AGG.max_lag / 1000.0);
    } else if ((double) AGG.errs > 0.01 * (double) AGG.sent) {
        *held = 0;
        snprintf(verdict, sizeof(verdict), "%" PRIu64 " errors", AGG.errs);
    } else if (ratio < 0.9) {
        *held = 0;
        snprintf(verdict, sizeof(verdict),
                 "deliveries kept up with %.0f%% of the offered load",
                 ratio * 100);
    } else if (maxb > O.max_backlog * rate * exp_per_msg) {
        *held = 0;
        snprintf(verdict, sizeof(verdict),
                 "delivery backlog reached %.1f s of traffic",
                 maxb / (rate * exp_per_msg));
    } else if (slope > allowed) {
        *held = 0;
        snprintf(verdict, sizeof(verdict),
                 "delivery backlog grew by %.0f per second", slope);
    } else if (AGG.not_sent > 0) {
        snprintf(verdict, sizeof(verdict), "held (%" PRIu64
                 " not sent: no live sender)", AGG.not_sent);
    } else {
        snprintf(verdict, sizeof(verdict), "held");
    }
    json_object_set_new(o, "held", json_boolean(*held));
    json_object_set_new(o, "verdict", json_string(verdict));
    if (O.scenario == SC_GROUP) {
        cpu = cpu_json(&a, &b, (double) AGG.deliveries, "delivery");
    } else {
        cpu = cpu_json(&a, &b, (double) AGG.acked, "msg");
    }
    json_object_set_new(o, "cpu", cpu);
    free(smp);
    logmsg("%s %s %.0f msg/s for %.0f s: %s", SC_NAMES[O.scenario], kind,
           rate, dur, verdict);
    return o;
}

static double
round_rate(double r)
{
    double q = r >= 5000 ? 500 : r >= 500 ? 50 : r >= 50 ? 5 : 1;

    return (double) ((long) (r / q + 0.5)) * q;
}

static int
integrity(json_t *res)
{
    json_t  *o = json_object();
    uint64_t dups = 0, order = 0, lost, unacked, mism;
    int      i, k, bad;

    SHM->cmd.t_start = now_us();
    cmd_publish(CMD_FINAL);
    wait_cmd(NULL, NULL);
    for (i = 0; i < NPROCS; i++) {
        for (k = 0; k < MAX_STEPS; k++) {
            dups += SHM->slot[i].steps[k].dups;
            order += SHM->slot[i].steps[k].order_err;
        }
    }
    lost = SUMF(i_lost);
    unacked = SUMF(i_unacked);
    mism = SUMF(seq_mismatch);
    json_object_set_new(o, "sent", json_integer((json_int_t) SUMF(i_sent)));
    json_object_set_new(o, "acked", json_integer((json_int_t) SUMF(i_acked)));
    json_object_set_new(o, "errors", json_integer((json_int_t) SUMF(i_errs)));
    json_object_set_new(o, "delivered", json_integer((json_int_t) SUMF(i_delivered)));
    json_object_set_new(o, "lost", json_integer((json_int_t) lost));
    json_object_set_new(o, "unacked", json_integer((json_int_t) unacked));
    json_object_set_new(o, "duplicates", json_integer((json_int_t) dups));
    json_object_set_new(o, "out_of_order", json_integer((json_int_t) order));
    json_object_set_new(o, "seq_mismatch", json_integer((json_int_t) mism));
    if (O.scenario == SC_GROUP) {
        json_object_set_new(o, "incomplete_messages",
                            json_integer((json_int_t) SUMF(i_incomplete)));
        json_object_set_new(o, "missing_deliveries",
                            json_integer((json_int_t) SUMF(i_missing_deliveries)));
    }
    bad = lost > 0 || dups > 0 || order > 0 || mism > 0;
    json_object_set_new(o, "ok", json_boolean(!bad));
    json_object_set_new(res, "integrity", o);
    return bad;
}

/* ------------------------------------------------------------ scenarios */

static int
scen_idle(json_t *res)
{
    cpu_t      a, b;
    ngxmem_t   m0, m1;
    sockstat_t s0, s1;
    json_t    *conn, *o;
    uint64_t   ok;
    int64_t    t;
    long       lo0, ld0;

    nginx_mem(&m0);
    sockstat(&s0);
    listen_drops(&lo0, &ld0);
    cpu_snap(&a, NULL, NULL);
    conn = do_connect(O.window, O.max_fail);
    json_object_set_new(conn, "kernel", listen_json(lo0, ld0));
    json_object_set_new(res, "connections", conn);
    ok = SUMF(conn_ok);
    if (ok == 0) {
        set_error_from_slots(res);
        fatal("no connection was established (%s)",
              json_string_value(json_object_get(res, "first_error"))
              ? json_string_value(json_object_get(res, "first_error")) : "?");
    }
    logmsg("idle: %" PRIu64 " of %ld connections established in %.2f s",
           ok, O.conns, json_real_value(json_object_get(conn, "seconds")));
    SHM->cmd.t_start = now_us();
    SHM->cmd.deadline = SHM->cmd.t_start + 10000000;
    cmd_publish(CMD_PING);
    wait_cmd(NULL, NULL);
    t = now_us() + (int64_t) (O.settle * 1e6);
    while (now_us() < t) {
        wait_cmd(NULL, NULL);
        usleep(20000);
    }
    nginx_mem(&m1);
    sockstat(&s1);
    cpu_snap(&b, NULL, NULL);
    ok = 0;
    for (int i = 0; i < NPROCS; i++) {
        ok += SHM->slot[i].conn_ok;
    }
    /* held = established and still open (closes counted separately) */
    {
        uint64_t closed = 0;
        int      i, k;

        for (i = 0; i < NPROCS; i++) {
            for (k = 0; k < NCLOSE; k++) {
                closed += SHM->slot[i].closes[k];
            }
        }
        ok = ok > closed ? ok - closed : 0;
    }
    json_object_set_new(res, "held", json_integer((json_int_t) ok));
    o = json_object();
    json_object_set_new(o, "workers", json_integer(m1.workers));
    json_object_set_new(o, "workers_fd_limit_total", json_integer(m1.nofile));
    json_object_set_new(o, "rss_kb_before", json_integer(m0.rss_kb));
    json_object_set_new(o, "rss_kb_after", json_integer(m1.rss_kb));
    json_object_set_new(o, "pss_kb_before", json_integer(m0.pss_kb));
    json_object_set_new(o, "pss_kb_after", json_integer(m1.pss_kb));
    json_object_set_new(o, "rss_bytes_per_conn",
                        json_real(ok ? (double) (m1.rss_kb - m0.rss_kb) * 1024 / (double) ok : 0));
    json_object_set_new(o, "pss_bytes_per_conn",
                        json_real(ok ? (double) (m1.pss_kb - m0.pss_kb) * 1024 / (double) ok : 0));
    json_object_set_new(res, "nginx_memory", o);
    o = json_object();
    json_object_set_new(o, "page_size", json_integer(sysconf(_SC_PAGESIZE)));
    json_object_set_new(o, "tcp_mem_pages_before", json_integer(s0.tcp_mem));
    json_object_set_new(o, "tcp_mem_pages_after", json_integer(s1.tcp_mem));
    json_object_set_new(o, "tcp_inuse_before", json_integer(s0.tcp_inuse));
    json_object_set_new(o, "tcp_inuse_after", json_integer(s1.tcp_inuse));
    json_object_set_new(o, "sockets_used_before", json_integer(s0.sockets));
    json_object_set_new(o, "sockets_used_after", json_integer(s1.sockets));
    json_object_set_new(o, "bytes_per_conn",
                        json_real(ok ? (double) (s1.tcp_mem - s0.tcp_mem)
                                       * (double) sysconf(_SC_PAGESIZE) / (double) ok : 0));
    json_object_set_new(o, "slab_kb_before", json_integer(s0.slab_kb));
    json_object_set_new(o, "slab_kb_after", json_integer(s1.slab_kb));
    json_object_set_new(o, "slab_bytes_per_conn",
                        json_real(ok ? (double) (s1.slab_kb - s0.slab_kb) * 1024
                                       / (double) ok : 0));
    json_object_set_new(o, "note", json_string(
        "both ends of each loopback connection are in this kernel; TCP mem "
        "is the socket buffers (near zero when idle), Slab (from "
        "/proc/meminfo) the socket, file and epoll structures of the whole "
        "machine"));
    json_object_set_new(res, "kernel_socket_memory", o);
    o = json_object();
    json_object_set_new(o, "sent", json_integer((json_int_t) SUMF(pings)));
    json_object_set_new(o, "answered", json_integer((json_int_t) SUMF(pongs)));
    json_object_set_new(res, "pings", o);
    json_object_set_new(res, "cpu", cpu_json(&a, &b, (double) ok, "conn"));
    return 0;
}

static int
scen_dm(json_t *res)
{
    json_t *steps = json_array(), *st, *ms;
    double  lo = 0, hi = 0, mid, rate;
    int     i, n = 0, held, drained, skip = 0, p;
    uint64_t active;

    json_object_set_new(res, "connections", do_connect(O.window, O.max_fail));
    active = SUMF(active_units);
    json_object_set_new(res, "active_pairs", json_integer((json_int_t) active));
    if (active == 0) {
        set_error_from_slots(res);
        fatal("no pair has both ends connected");
    }
    json_object_set_new(res, "steps", steps);
    if (O.warmup > 0) {
        /* JIT, caches, connection pools: not part of any verdict */
        rate = O.rates[0] < 1000 ? O.rates[0] : 1000;
        st = run_step(n++, rate, O.warmup, "warmup", &held, &drained);
        json_array_append_new(steps, st);
    }
    for (i = 0; i < O.nrates && n < MAX_STEPS; i++) {
        if (skip) {
            st = json_object();
            json_object_set_new(st, "kind", json_string("fixed"));
            json_object_set_new(st, "offered_rate", json_real(O.rates[i]));
            json_object_set_new(st, "skipped", json_string(
                "a lower rate already saturated the stack and its backlog did not drain"));
            json_array_append_new(steps, st);
            continue;
        }
        st = run_step(n++, O.rates[i], O.duration, "fixed", &held, &drained);
        json_array_append_new(steps, st);
        if (held && O.rates[i] > lo) {
            lo = O.rates[i];
        }
        if (!held && O.rates[i] > lo && (hi == 0 || O.rates[i] < hi)) {
            hi = O.rates[i];
        }
        if (!held && !drained && !O.no_skip) {
            skip = 1;
        }
    }
    if (O.hold > 0) {
        for (p = 0; p < O.probes && n < MAX_STEPS - 2; p++) {
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
            st = run_step(n++, mid, O.probe_duration, "probe", &held, &drained);
            json_array_append_new(steps, st);
            if (held) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        ms = json_object();
        json_object_set_new(ms, "hold_s", json_real(O.hold));
        rate = lo;
        held = 0;
        for (p = 0; p < 2 && rate > 0 && n < MAX_STEPS; p++) {
            st = run_step(n++, rate, O.hold, "hold", &held, &drained);
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
    drain(O.drain);
    return integrity(res);
}

static int
scen_group(json_t *res)
{
    json_t  *steps = json_array(), *st;
    uint64_t ok;
    int      i, n = 0, held, drained, skip = 0;
    char     reason[300] = "";

    json_object_set_new(res, "connections", do_connect(O.window, O.max_fail));
    if (SUMF(conn_ok) == 0) {
        set_error_from_slots(res);
        fatal("no connection was established");
    }
    SHM->cmd.t_start = now_us();
    SHM->cmd.deadline = SHM->cmd.t_start + (int64_t) (O.timeout * 1e6);
    cmd_publish(CMD_SETUP);
    wait_cmd(NULL, NULL);
    ok = SUMF(groups_ok);
    json_object_set_new(res, "groups_created", json_integer((json_int_t) ok));
    json_object_set_new(res, "groups_failed", json_integer((json_int_t) SUMF(groups_failed)));
    for (i = 0; i < NPROCS; i++) {
        if (SHM->slot[i].skip_reason[0]) {
            snprintf(reason, sizeof(reason), "%s", SHM->slot[i].skip_reason);
            break;
        }
    }
    if (ok == 0) {
        json_object_set_new(res, "status", json_string("skipped"));
        json_object_set_new(res, "reason",
                            json_string(reason[0] ? reason : "no group was created"));
        logmsg("group: skipped: %s", reason[0] ? reason : "no group was created");
        return 0;
    }
    if (reason[0]) {
        json_object_set_new(res, "group_failures", json_string(reason));
    }
    json_object_set_new(res, "steps", steps);
    for (i = 0; i < O.nrates && n < MAX_STEPS; i++) {
        if (skip) {
            st = json_object();
            json_object_set_new(st, "kind", json_string("fixed"));
            json_object_set_new(st, "offered_rate", json_real(O.rates[i]));
            json_object_set_new(st, "skipped", json_string(
                "a lower rate already saturated the stack and its backlog did not drain"));
            json_array_append_new(steps, st);
            continue;
        }
        st = run_step(n++, O.rates[i], O.duration, "fixed", &held, &drained);
        json_array_append_new(steps, st);
        if (!held && !drained && !O.no_skip) {
            skip = 1;
        }
    }
    drain(O.drain);
    return integrity(res);
}

static void
tick_storm(void *arg)
{
    int64_t now = now_us();

    (void) arg;
    if (now >= next_progress) {
        next_progress = now + 500000;
        progress("storm: %" PRIu64 " back, %" PRIu64 " synced, %" PRIu64
                 " retries, %" PRIu64 " given up",
                 SUMF(st_back), SUMF(st_synced), SUMF(st_retries),
                 SUMF(st_failed));
    }
}

static int
scen_storm(json_t *res)
{
    json_t  *o = json_object(), *fr = json_object();
    hist_t  *hh = xcalloc(1, sizeof(hist_t)), *hs = xcalloc(1, sizeof(hist_t));
    cpu_t    a, b;
    uint64_t f0[NFAIL], clients, back, synced, v;
    int64_t  t0, lh = 0, ls = 0;
    long     lo0, ld0;
    int      i, k;

    json_object_set_new(res, "connections", do_connect(O.window, O.max_fail));
    if (SUMF(conn_ok) == 0) {
        set_error_from_slots(res);
        fatal("no connection was established");
    }
    /* one message per pair, so that every sync has something to return */
    SHM->cmd.t_start = now_us();
    SHM->cmd.deadline = SHM->cmd.t_start + (int64_t) (O.drain * 1e6);
    cmd_publish(CMD_SETUP);
    wait_cmd(tick_drain, NULL);
    progress_end();
    for (k = 0; k < NFAIL; k++) {
        for (f0[k] = 0, i = 0; i < NPROCS; i++) {
            f0[k] += SHM->slot[i].fail[k];
        }
    }
    listen_drops(&lo0, &ld0);
    cpu_snap(&a, NULL, NULL);
    t0 = now_us() + 200000;
    SHM->cmd.t_start = t0;
    SHM->cmd.deadline = t0 + (int64_t) (O.storm_timeout * 1e6);
    SHM->cmd.window = 0;
    SHM->cmd.max_fail = 0;
    next_progress = t0;
    cmd_publish(CMD_STORM);
    wait_cmd(tick_storm, NULL);
    progress_end();
    cpu_snap(&b, NULL, NULL);
    for (i = 0; i < NPROCS; i++) {
        hist_merge(hh, &SHM->slot[i].st_hello);
        hist_merge(hs, &SHM->slot[i].st_sync);
        if (SHM->slot[i].st_last_hello > lh) {
            lh = SHM->slot[i].st_last_hello;
        }
        if (SHM->slot[i].st_last_sync > ls) {
            ls = SHM->slot[i].st_last_sync;
        }
    }
    for (k = 0; k < NFAIL; k++) {
        for (v = 0, i = 0; i < NPROCS; i++) {
            v += SHM->slot[i].fail[k];
        }
        if (v > f0[k]) {
            json_object_set_new(fr, FAIL_NAMES[k], json_integer((json_int_t) (v - f0[k])));
        }
    }
    clients = SUMF(st_clients);
    back = SUMF(st_back);
    synced = SUMF(st_synced);
    json_object_set_new(o, "clients", json_integer((json_int_t) clients));
    json_object_set_new(o, "back", json_integer((json_int_t) back));
    json_object_set_new(o, "synced", json_integer((json_int_t) synced));
    json_object_set_new(o, "given_up", json_integer((json_int_t) SUMF(st_failed)));
    json_object_set_new(o, "retries", json_integer((json_int_t) SUMF(st_retries)));
    json_object_set_new(o, "failed_attempts", fr);
    json_object_set_new(o, "all_back_s",
                        back == clients && lh ? json_real((double) (lh - t0) / 1e6) : json_null());
    json_object_set_new(o, "all_synced_s",
                        synced == clients && ls ? json_real((double) (ls - t0) / 1e6) : json_null());
    json_object_set_new(o, "last_back_s", lh ? json_real((double) (lh - t0) / 1e6) : json_null());
    json_object_set_new(o, "last_synced_s", ls ? json_real((double) (ls - t0) / 1e6) : json_null());
    json_object_set_new(o, "back_ms", lat_json(hh));
    json_object_set_new(o, "synced_ms", lat_json(hs));
    json_object_set_new(o, "sync_messages", json_integer((json_int_t) SUMF(st_sync_msgs)));
    json_object_set_new(o, "sync_conversations", json_integer((json_int_t) SUMF(st_convs)));
    json_object_set_new(o, "timeout_s", json_real(O.storm_timeout));
    json_object_set_new(o, "kernel", listen_json(lo0, ld0));
    json_object_set_new(res, "storm", o);
    json_object_set_new(res, "cpu", cpu_json(&a, &b, (double) clients, "client"));
    free(hh);
    free(hs);
    if (synced == 0) {
        set_error_from_slots(res);
        fatal("no client got its sync_done after the reconnect");
    }
    return 0;
}

/* ============================================================== output */

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

static double
jd(json_t *o, const char *path)
{
    json_t *v = jpath(o, path);

    return json_is_number(v) ? json_number_value(v) : 0;
}

static const char *
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
        printf("; %.0f listen queue overflows", jd(c, "kernel.listen_overflows"));
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
    printf(": %s\n", json_is_true(json_object_get(i, "ok")) ? "OK" : "VIOLATED");
}

static void
print_steps(json_t *j, int group)
{
    json_t *steps = json_object_get(j, "steps"), *s;
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
        printf(" | %7.1f %9.0f  %s", jd(s, "max_generator_lag_ms"),
               json_array_size(json_object_get(s, "backlog_deliveries"))
               ? json_number_value(json_array_get(
                     json_object_get(s, "backlog_deliveries"),
                     json_array_size(json_object_get(s, "backlog_deliveries")) - 1))
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
            printf("  %-6s %9.0f %8s |", js(s, "kind"), jd(s, "offered_rate"), "");
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

static void
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
            printf("  kernel TCP mem: %.0f -> %.0f pages = %s/conn; kernel slab:"
                   " %s/conn (both ends of each loopback connection)\n",
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

static json_t *
host_json(void)
{
    json_t        *h = json_object();
    struct utsname u;
    char           buf[256];

    if (uname(&u) == 0) {
        json_object_set_new(h, "kernel", json_string(u.release));
        json_object_set_new(h, "hostname", json_string(u.nodename));
    }
    json_object_set_new(h, "cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_set_new(h, "mem_mb", json_integer(
        (json_int_t) ((double) sysconf(_SC_PHYS_PAGES)
                      * (double) sysconf(_SC_PAGESIZE) / 1048576)));
    if (read_file("/proc/sys/net/ipv4/ip_local_port_range", buf, sizeof(buf)) > 0) {
        buf[strcspn(buf, "\n")] = '\0';
        buf[strcspn(buf, "\t ")] = '-';
        json_object_set_new(h, "ip_local_port_range", json_string(buf));
    }
    if (read_file("/proc/sys/net/core/somaxconn", buf, sizeof(buf)) > 0) {
        json_object_set_new(h, "somaxconn", json_integer(atol(buf)));
    }
    return h;
}

static void
write_json(json_t *j)
{
    char tmp[4096];

    if (!O.json_path) {
        return;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", O.json_path);
    if (json_dump_file(j, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0
        || rename(tmp, O.json_path) != 0)
    {
        fprintf(stderr, "chat_bench: cannot write %s: %s\n", O.json_path,
                strerror(errno));
    }
}

static int
do_report(int argc, char **argv)
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
    if (O.label) {
        json_object_set_new(all, "label", json_string(O.label));
    }
    json_object_set_new(all, "scenarios", arr);
    write_json(all);
    json_decref(all);
    return bad;
}

/* ================================================================ main */

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
"  --conns N           idle: connections (50k); dm: connections, 2 per pair\n"
"                      (2000); group: members, a multiple of --group-size\n"
"                      (2048); storm: clients (20k)\n"
"  --rate R[,R...]     dm: offered msg/s per step (1k,5k,20k,50k);\n"
"                      group: group messages/s per step (20,100,400)\n"
"  --duration S        seconds per step (15)\n"
"  --hold S            dm: hold the highest sustainable rate S s (60; 0: no search)\n"
"  --probes N          dm: bisection probes before the hold (3)\n"
"  --max-backlog S     a rate is held if the delivery backlog stays under S s\n"
"                      of traffic and does not grow (1)\n"
"  --probe-duration S  (10)\n"
"  --warmup S          dm: a first step at min(first rate, 1000)/s, not\n"
"                      measured: a fresh Kafka compiles its hot paths first\n"
"                      (45; quick 0)\n"
"  --procs P           load processes (default: enough for the fd limit)\n"
"  --per-proc N        connections per process at most (15000)\n"
"  --group-size N      (256)\n"
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
"  --prefix P          user id prefix (default random: users are new)\n"
"  --label TEXT        stored in the JSON\n"
"  --json FILE         write the result as JSON\n"
"  --verbose\n");
}

static void
parse_rates(const char *s)
{
    char  buf[1024], *tok, *save = NULL;

    snprintf(buf, sizeof(buf), "%s", s);
    O.nrates = 0;
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (O.nrates == MAX_STEPS) {
            die("--rate: at most %d rates", MAX_STEPS);
        }
        O.rates[O.nrates] = parse_count(tok, "--rate");
        if (O.rates[O.nrates] <= 0) {
            die("--rate: rates must be positive");
        }
        O.nrates++;
    }
}

static void
parse_url(void)
{
    const char *p = O.url, *h, *colon, *slash;
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
    if (hl == 0 || hl >= sizeof(O.host)) {
        die("--url: bad host in '%s'", p);
    }
    memcpy(O.host, h, hl);
    O.host[hl] = '\0';
    O.port = colon ? atoi(colon + 1) : 80;
    if (O.port <= 0 || O.port > 65535) {
        die("--url: bad port in '%s'", p);
    }
    snprintf(O.path, sizeof(O.path), "%s", *slash ? slash : "/");
    if (strcmp(O.host, "localhost") == 0) {
        inet_pton(AF_INET, "127.0.0.1", &O.dst);
    } else if (inet_pton(AF_INET, O.host, &O.dst) != 1) {
        die("--url: the host must be an IPv4 loopback address, not '%s'", O.host);
    }
    if ((ntohl(O.dst.s_addr) >> 24) != 127) {
        die("--url: %s is not a loopback address: this tool targets 127.0.0.0/8 only",
            O.host);
    }
}

static long
raise_nofile(void)
{
    struct rlimit rl, want;
    char          buf[64];
    long          nr_open = 1048576;

    if (read_file("/proc/sys/fs/nr_open", buf, sizeof(buf)) > 0) {
        nr_open = atol(buf);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max != RLIM_INFINITY && (long) rl.rlim_max < nr_open) {
        want.rlim_cur = want.rlim_max = (rlim_t) nr_open;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
            rl = want;
        }
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur == RLIM_INFINITY ? 1048576 : (long) rl.rlim_cur;
}

static void
on_signal(int sig)
{
    int i;

    for (i = 0; i < NPROCS; i++) {
        if (kids[i] > 0) {
            kill(kids[i], SIGTERM);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int
main(int argc, char **argv)
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
        { "max-backlog", 1, 0, 20 },
        { "help", 0, 0, 'h' },
        { 0, 0, 0, 0 }
    };
    static const long   def_conns[] = { 50000, 2000, 2048, 20000 };
    static const long   quick_conns[] = { 500, 200, 256, 200 };
    char      prefix[32], *tok, *save = NULL, buf[1024];
    int       c, report = 0, i, rc = 0, scen = -1;
    long      nofile, cap, conns_per, need;
    json_t   *params, *rates;
    pid_t     pid;
    time_t    tnow;

    memset(&O, 0, sizeof(O));
    O.conns = -1;
    O.duration = -1;
    O.hold = -1;
    O.probes = 3;
    O.probe_duration = -1;
    O.warmup = -1;
    O.max_backlog = 1;
    O.per_proc = 15000;
    O.group_size = 256;
    O.body_bytes = 100;
    O.src_ips = 200;
    O.window = 128;
    O.timeout = 10;
    O.drain = -1;
    O.settle = -1;
    O.storm_timeout = -1;
    O.storm_msgs = 1;
    O.max_fail = -1;

    while ((c = getopt_long(argc, argv, "u:s:S:qn:r:d:H:p:j:vh", lo, NULL)) != -1) {
        switch (c) {
        case 'u': O.url = optarg; break;
        case 's': O.secret = optarg; break;
        case 'S':
            for (i = 0; i < 4; i++) {
                if (strcmp(optarg, SC_NAMES[i]) == 0) {
                    scen = i;
                }
            }
            if (scen < 0) {
                die("--scenario: idle, dm, group or storm");
            }
            break;
        case 'q': O.quick = 1; break;
        case 'n': O.conns = (long) parse_count(optarg, "--conns"); break;
        case 'r': parse_rates(optarg); break;
        case 'd': O.duration = atof(optarg); break;
        case 'H': O.hold = atof(optarg); break;
        case 1: O.probes = atoi(optarg); break;
        case 2: O.probe_duration = atof(optarg); break;
        case 'p': O.procs = atoi(optarg); break;
        case 3: O.per_proc = (long) parse_count(optarg, "--per-proc"); break;
        case 4: O.group_size = atoi(optarg); break;
        case 5: O.body_bytes = atoi(optarg); break;
        case 6: O.src_ips = atoi(optarg); break;
        case 7: O.window = atoi(optarg); break;
        case 8: O.timeout = atof(optarg); break;
        case 9: O.drain = atof(optarg); break;
        case 10: O.settle = atof(optarg); break;
        case 11: O.storm_timeout = atof(optarg); break;
        case 12: O.storm_msgs = atoi(optarg); break;
        case 13: O.max_fail = (long) parse_count(optarg, "--max-fail"); break;
        case 14: O.no_skip = 1; break;
        case 15:
            snprintf(buf, sizeof(buf), "%s", optarg);
            for (tok = strtok_r(buf, ", ", &save); tok;
                 tok = strtok_r(NULL, ", ", &save))
            {
                if (O.nscope < MAX_SCOPE && atoi(tok) > 0) {
                    O.scope[O.nscope++] = atoi(tok);
                }
            }
            break;
        case 16: O.prefix = optarg; break;
        case 17: O.label = optarg; break;
        case 'j': O.json_path = optarg; break;
        case 'v': O.verbose = 1; break;
        case 18: report = 1; break;
        case 19: O.warmup = atof(optarg); break;
        case 20: O.max_backlog = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (report) {
        if (optind >= argc) {
            die("--report: name the result files");
        }
        return do_report(argc - optind, argv + optind) ? 2 : 0;
    }
    if (optind < argc) {
        die("unexpected argument '%s'", argv[optind]);
    }
    if (scen < 0) {
        usage(stderr);
        return 1;
    }
    O.scenario = scen;
    if (O.url == NULL) {
        O.url = getenv("CHAT_URL") ? getenv("CHAT_URL") : "ws://127.0.0.1:8080/chat";
    }
    parse_url();
    if (O.secret == NULL) {
        O.secret = getenv("CHAT_JWT_SECRET");
    }
    if (O.secret == NULL || !O.secret[0]) {
        die("no secret: pass --secret or set CHAT_JWT_SECRET");
    }

    /* defaults by scenario; --quick keeps CI short */
    if (O.conns < 0) {
        O.conns = O.quick ? quick_conns[scen] : def_conns[scen];
    }
    if (O.nrates == 0) {
        if (scen == SC_DM) {
            parse_rates(O.quick ? "500" : "1000,5000,20000,50000");
        } else {
            parse_rates(O.quick ? "20" : "20,100,400");
        }
    }
    if (O.duration < 0) {
        O.duration = O.quick ? 5 : 15;
    }
    if (O.hold < 0) {
        O.hold = O.quick ? 0 : 60;
    }
    if (O.probe_duration < 0) {
        O.probe_duration = O.quick ? 3 : 10;
    }
    if (O.warmup < 0) {
        O.warmup = O.quick ? 0 : 45;
    }
    if (O.drain < 0) {
        O.drain = O.quick ? 15 : 30;
    }
    if (O.settle < 0) {
        O.settle = O.quick ? 1 : 2;
    }
    if (O.storm_timeout < 0) {
        O.storm_timeout = O.quick ? 30 : 120;
    }
    if (O.max_fail < 0) {
        O.max_fail = scen == SC_IDLE ? (O.conns / 50 > 200 ? O.conns / 50 : 200) : 0;
    }
    if (O.group_size < 2 || O.group_size > 4096) {
        die("--group-size: 2..4096");
    }
    if (O.body_bytes < 1 || O.body_bytes > 1000000) {
        die("--body-bytes: 1..1000000");
    }
    if (O.src_ips < 1 || O.src_ips > 253 * 256) {
        die("--src-ips: 1..%d", 253 * 256);
    }
    if (O.duration <= 0 || O.duration > 3600) {
        die("--duration: 0..3600 s");
    }

    switch (scen) {
    case SC_IDLE:
        UNITS = O.conns;
        break;
    case SC_DM:
    case SC_STORM:
        UNITS = O.conns / 2;
        break;
    case SC_GROUP:
        UNITS = O.conns / O.group_size;
        break;
    }
    if (UNITS < 1) {
        die("--conns %ld is too few for %s", O.conns, SC_NAMES[scen]);
    }
    signal(SIGPIPE, SIG_IGN);
    nofile = raise_nofile();
    cap = O.per_proc < nofile - 64 ? O.per_proc : nofile - 64;
    if (cap < 16) {
        die("RLIMIT_NOFILE %ld is too low", nofile);
    }
    need = (O.conns + cap - 1) / cap;
    NPROCS = O.procs > 0 ? O.procs : 1;
    if (NPROCS < need) {
        if (O.procs > 0) {
            logmsg("--procs %d: %ld connections need %ld processes with"
                   " %ld descriptors each: using %ld", O.procs, O.conns,
                   need, nofile, need);
        }
        NPROCS = (int) need;
    }
    if (NPROCS > UNITS) {
        NPROCS = (int) UNITS;
    }
    if (NPROCS > MAX_PROCS) {
        die("%ld connections need %d processes, more than %d", O.conns,
            NPROCS, MAX_PROCS);
    }
    conns_per = O.conns / NPROCS;
    if (scen == SC_GROUP && O.group_size > cap) {
        die("a group of %d does not fit the fd limit %ld", O.group_size, nofile);
    }

    if (O.prefix == NULL) {
        tnow = time(NULL);
        snprintf(prefix, sizeof(prefix), "b%06x_",
                 (unsigned) ((uint64_t) tnow * 2654435761u ^ (uint64_t) getpid()
                             ^ (uint64_t) now_us()) & 0xffffff);
        O.prefix = prefix;
    }
    if (strlen(O.prefix) > 24
        || strspn(O.prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                            "0123456789_.@-") != strlen(O.prefix))
    {
        die("--prefix: at most 24 characters of [A-Za-z0-9_.@-]");
    }

    SHM = mmap(NULL, sizeof(shm_t), PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (SHM == MAP_FAILED) {
        die("mmap: %s", strerror(errno));
    }

    RESULT = json_object();
    json_object_set_new(RESULT, "scenario", json_string(SC_NAMES[scen]));
    json_object_set_new(RESULT, "status", json_string("running"));
    tnow = time(NULL);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", gmtime(&tnow));
    json_object_set_new(RESULT, "started_at", json_string(buf));
    if (O.label) {
        json_object_set_new(RESULT, "label", json_string(O.label));
    }
    params = json_object();
    json_object_set_new(params, "url", json_string(O.url));
    json_object_set_new(params, "quick", json_boolean(O.quick));
    json_object_set_new(params, "conns", json_integer(O.conns));
    json_object_set_new(params, "procs", json_integer(NPROCS));
    json_object_set_new(params, "conns_per_proc", json_integer(conns_per));
    json_object_set_new(params, "nofile_limit", json_integer(nofile));
    json_object_set_new(params, "src_ips", json_integer(O.src_ips));
    json_object_set_new(params, "prefix", json_string(O.prefix));
    json_object_set_new(params, "body_bytes", json_integer(O.body_bytes));
    if (scen == SC_DM || scen == SC_GROUP) {
        rates = json_array();
        for (i = 0; i < O.nrates; i++) {
            json_array_append_new(rates, json_real(O.rates[i]));
        }
        json_object_set_new(params, "rates", rates);
        json_object_set_new(params, "duration_s", json_real(O.duration));
    }
    if (scen == SC_DM) {
        json_object_set_new(params, "hold_s", json_real(O.hold));
        json_object_set_new(params, "warmup_s", json_real(O.warmup));
        json_object_set_new(params, "max_backlog_s", json_real(O.max_backlog));
    }
    if (scen == SC_GROUP) {
        json_object_set_new(params, "group_size", json_integer(O.group_size));
        json_object_set_new(params, "groups", json_integer(UNITS));
    }
    if (O.nscope) {
        rates = json_array();
        for (i = 0; i < O.nscope; i++) {
            json_array_append_new(rates, json_integer(O.scope[i]));
        }
        json_object_set_new(params, "cpu_scope", rates);
    }
    json_object_set_new(RESULT, "params", params);
    json_object_set_new(RESULT, "host", host_json());

    logmsg("%s: %ld connections in %d process(es) (fd limit %ld) against %s,"
           " users %s*", SC_NAMES[scen], O.conns, NPROCS, nofile, O.url,
           O.prefix);
    fflush(stdout);
    fflush(stderr);
    for (i = 0; i < NPROCS; i++) {
        pid = fork();
        if (pid < 0) {
            fatal("fork: %s", strerror(errno));
        }
        if (pid == 0) {
            child_main(i);
            _exit(0);
        }
        kids[i] = pid;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    switch (scen) {
    case SC_IDLE:
        rc = scen_idle(RESULT);
        break;
    case SC_DM:
        rc = scen_dm(RESULT);
        break;
    case SC_GROUP:
        rc = scen_group(RESULT);
        break;
    case SC_STORM:
        rc = scen_storm(RESULT);
        break;
    }
    json_object_set_new(RESULT, "errors", counts_json());

    cmd_publish(CMD_QUIT);
    for (i = 0; i < NPROCS; i++) {
        if (kids[i] > 0) {
            waitpid(kids[i], NULL, 0);
            kids[i] = 0;
        }
    }

    if (strcmp(js(RESULT, "status"), "running") == 0) {
        if (rc == 0) {
            json_object_set_new(RESULT, "status", json_string("ok"));
        } else {
            json_object_set_new(RESULT, "status", json_string("integrity violation"));
        }
    }
    /* nothing delivered at all is a broken tool or stack, not a slow one */
    if ((scen == SC_DM || scen == SC_GROUP)
        && strcmp(js(RESULT, "status"), "skipped") != 0
        && jd(RESULT, "integrity.delivered") == 0)
    {
        json_object_set_new(RESULT, "status", json_string("failed"));
        json_object_set_new(RESULT, "reason", json_string("nothing was delivered"));
        rc = 2;
    } else if (rc) {
        rc = 3;
    }
    print_scenario(RESULT);
    write_json(RESULT);
    json_decref(RESULT);
    return rc;
}
