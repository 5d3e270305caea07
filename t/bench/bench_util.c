
/*
 * chat_bench: what every part uses: the clock, logging, memory, the
 * PRNG, counts on the command line, small /proc files.
 */


#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


void
logmsg(bench_t *ctx, const char *fmt, ...)
{
    va_list ap;
    char    buf[1024];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "chat_bench%s: %s\n", ctx->is_child ? " (child)" : "", buf);
}


void
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


void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL) {
        fprintf(stderr, "chat_bench: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return q;
}


void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL) {
        fprintf(stderr, "chat_bench: out of memory\n");
        exit(2);
    }
    return p;
}


uint64_t
rng(bench_t *ctx)
{
    uint64_t x = ctx->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ctx->rng = x;
    return x;
}


/* "50000", "50k", "1.5m" */
double
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


int
read_file(const char *path, char *buf, size_t sz)
{
    int     fd;
    ssize_t n, t = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    while ((size_t) t < sz - 1
           && (n = read(fd, buf + t, sz - 1 - (size_t) t)) > 0)
    {
        t += n;
    }
    close(fd);
    buf[t] = '\0';
    return (int) t;
}
