
/*
 * chat_bench: what /proc says: the CPU time of each stack component
 * (nginx, chat_worker, Kafka, Redis, PostgreSQL and chat_bench itself),
 * nginx workers' memory, kernel socket figures, the host.
 */


#include "bench.h"

#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>


const char  *const COMP_NAMES[NCOMP] = {
    "nginx", "chat_worker", "kafka", "redis", "postgres", "chat_bench"
};


typedef struct {
    int                  pid, ppid, comp, nginx_worker;
    unsigned long long   ticks;
} pinfo_t;


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
    if (sscanf(r + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u"
               " %llu %llu %lld %lld",
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
is_bench_pid(bench_t *ctx, int pid)
{
    int i;

    if (pid == getpid()) {
        return 1;
    }
    for (i = 0; i < ctx->nprocs; i++) {
        if (ctx->kids[i] == pid) {
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
void
cpu_snap(bench_t *ctx, cpu_t *out,
    int (*each)(int pid, int comp, int worker, void *),
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
        if (is_bench_pid(ctx, pid)) {
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
        ok = v[i].comp == K_BENCH || ctx->opt.nscope == 0;
        for (a = &v[i], depth = 0; !ok && a != NULL && depth < 64; depth++) {
            for (k = 0; k < ctx->opt.nscope; k++) {
                if (a->pid == ctx->opt.scope[k]) {
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


json_t *
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
        set_real(c, "cpu_s", s);
        set_int(c, "procs", b->procs[k]);
        json_object_set_new(c, "us_per_unit",
                            units > 0 ? json_real(s * 1e6 / units)
                                      : json_null());
        json_object_set_new(comps, COMP_NAMES[k], c);
    }
    json_object_set_new(o, "unit", json_string(unit));
    set_int(o, "units", units);
    set_real(o, "wall_s", (double) (b->t - a->t) / 1e6);
    set_real(o, "stack_cpu_s", stack);
    json_object_set_new(o, "stack_us_per_unit",
                        units > 0 ? json_real(stack * 1e6 / units)
                                  : json_null());
    json_object_set_new(o, "components", comps);
    return o;
}


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


void
nginx_mem(bench_t *ctx, ngxmem_t *m)
{
    cpu_t c;

    memset(m, 0, sizeof(*m));
    cpu_snap(ctx, &c, mem_each, m);
}


void
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
void
listen_drops(long *overflows, long *drops)
{
    char        buf[16384];
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
         n && v;
         n = strtok_r(NULL, " ", &nsave), v = strtok_r(NULL, " ", &vsave))
    {
        if (strcmp(n, "ListenOverflows") == 0) {
            *overflows = atol(v);
        } else if (strcmp(n, "ListenDrops") == 0) {
            *drops = atol(v);
        }
    }
}


json_t *
listen_json(long o0, long d0)
{
    json_t *o = json_object();
    long    o1, d1;

    listen_drops(&o1, &d1);
    set_int(o, "listen_overflows", o1 - o0);
    set_int(o, "listen_drops", d1 - d0);
    return o;
}


json_t *
host_json(void)
{
    json_t        *h = json_object();
    struct utsname u;
    char           buf[256];

    if (uname(&u) == 0) {
        json_object_set_new(h, "kernel", json_string(u.release));
        json_object_set_new(h, "hostname", json_string(u.nodename));
    }
    set_int(h, "cpus", sysconf(_SC_NPROCESSORS_ONLN));
    set_int(h, "mem_mb", (double) sysconf(_SC_PHYS_PAGES)
                         * (double) sysconf(_SC_PAGESIZE) / 1048576);
    if (read_file("/proc/sys/net/ipv4/ip_local_port_range", buf,
                  sizeof(buf))
        > 0)
    {
        buf[strcspn(buf, "\n")] = '\0';
        buf[strcspn(buf, "\t ")] = '-';
        json_object_set_new(h, "ip_local_port_range", json_string(buf));
    }
    if (read_file("/proc/sys/net/core/somaxconn", buf, sizeof(buf)) > 0) {
        set_int(h, "somaxconn", atol(buf));
    }
    return h;
}


long
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
