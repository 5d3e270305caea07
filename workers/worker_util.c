/*
 * worker_util.c: the small tools every part of chat_worker uses: the log
 * line, the clock, interruptible sleeps and backoff, the growable buffer,
 * the per-batch arena and a string map.
 *
 * Nothing here touches the network, so the unit tests include this file.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker_util.h"


/* the program the log lines name: set once by a main before any thread */
static const char  *chat_log_name = "chat_worker";


void
chat_log_program(const char *name)
{
    chat_log_name = name;
}


/*
 * One line per event on stderr:
 * "2026-11-26T10:00:00.123Z chat_worker[1234] error: ..."
 * The whole line goes out in one write so that lines of several workers
 * sharing a log file do not interleave.
 */
void
chat_log(const char *level, const char *fmt, ...)
{
    char             line[2048];
    struct timespec  now;
    struct tm        tm;
    va_list          args;
    int              n, m;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);

    n = snprintf(line, sizeof(line),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000,
                 chat_log_name, (int) getpid(), level);

    va_start(args, fmt);
    m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, args);
    va_end(args);

    if (m < 0) {
        m = 0;
    }

    n += m;
    if ((size_t) n > sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }

    line[n++] = '\n';

    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to complain */
    }
}


static void
chat_out_of_memory(size_t size)
{
    chat_log("error", "out of memory allocating %zu bytes", size);
    abort();
}


void *
chat_alloc(size_t size)
{
    void  *p = malloc(size ? size : 1);

    if (p == NULL) {
        chat_out_of_memory(size);
    }

    return p;
}


void *
chat_realloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);

    if (p == NULL) {
        chat_out_of_memory(size);
    }

    return p;
}


char *
chat_strdup(const char *s)
{
    size_t  n = strlen(s) + 1;

    return memcpy(chat_alloc(n), s, n);
}


int64_t
chat_now_ms(void)
{
    struct timespec  now;

    clock_gettime(CLOCK_REALTIME, &now);

    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}


bool
chat_sleep_ms(long ms, chat_stop_t *stop)
{
    struct timespec  slice;
    long             step;

    /* in slices of at most 50 ms so that SIGTERM is seen promptly even when
     * the signal lands on another thread */
    while (ms > 0) {
        if (*stop) {
            return false;
        }

        step = ms < 50 ? ms : 50;
        slice.tv_sec = 0;
        slice.tv_nsec = step * 1000000L;

        while (nanosleep(&slice, &slice) == -1 && errno == EINTR) {
            if (*stop) {
                return false;
            }
        }

        ms -= step;
    }

    return !*stop;
}


void
chat_backoff_reset(chat_backoff_t *b)
{
    b->next_ms = 100;

    if (b->seed == 0) {
        b->seed = (unsigned) getpid() ^ (unsigned) chat_now_ms();
    }
}


bool
chat_backoff_wait(chat_backoff_t *b, chat_stop_t *stop)
{
    long  wait;

    if (b->next_ms <= 0) {
        chat_backoff_reset(b);
    }

    /* jitter of up to a half, so that several workers do not hammer a
     * restarting server in step */
    wait = b->next_ms / 2 + rand_r(&b->seed) % (b->next_ms / 2 + 1);

    b->next_ms *= 2;
    if (b->next_ms > 2000) {
        b->next_ms = 2000;
    }

    return chat_backoff_pause(b, wait, stop);
}


bool
chat_backoff_pause(chat_backoff_t *b, long ms, chat_stop_t *stop)
{
    long  step;

    for ( ;; ) {
        if (b->meanwhile && !b->meanwhile(b->data)) {
            return false;
        }

        if (ms <= 0) {
            return !*stop;
        }

        step = ms < CHAT_WAIT_SLICE_MS ? ms : CHAT_WAIT_SLICE_MS;

        if (!chat_sleep_ms(step, stop)) {
            return false;
        }

        ms -= step;
    }
}


void
chat_buf_reserve(chat_buf_t *b, size_t extra)
{
    size_t  need = b->len + extra + 1;      /* room for chat_buf_cstr */

    if (need <= b->cap) {
        return;
    }

    if (b->cap == 0) {
        b->cap = 256;
    }

    while (b->cap < need) {
        b->cap *= 2;
    }

    b->data = chat_realloc(b->data, b->cap);
}


void
chat_buf_add(chat_buf_t *b, const void *p, size_t n)
{
    chat_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}


void
chat_buf_adds(chat_buf_t *b, const char *s)
{
    chat_buf_add(b, s, strlen(s));
}


void
chat_buf_addc(chat_buf_t *b, char c)
{
    chat_buf_reserve(b, 1);
    b->data[b->len++] = c;
}


void
chat_buf_printf(chat_buf_t *b, const char *fmt, ...)
{
    va_list  args;
    int      n;

    va_start(args, fmt);
    n = vsnprintf(NULL, 0, fmt, args);
    va_end(args);

    if (n < 0) {
        return;
    }

    chat_buf_reserve(b, n);

    va_start(args, fmt);
    vsnprintf(b->data + b->len, n + 1, fmt, args);
    va_end(args);

    b->len += n;
}


const char *
chat_buf_cstr(chat_buf_t *b)
{
    chat_buf_reserve(b, 0);
    b->data[b->len] = '\0';

    return b->data;
}


void
chat_buf_free(chat_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


struct chat_arena_chunk_s {
    chat_arena_chunk_t  *next;
    size_t               used;
    size_t               size;
    max_align_t          data[];
};


void *
chat_arena_alloc(chat_arena_t *a, size_t size)
{
    chat_arena_chunk_t  *c = a->chunks;
    size_t               chunk;
    void                *p;

    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);

    if (c == NULL || c->size - c->used < size) {
        chunk = size > 60000 ? size : 60000;
        c = chat_alloc(sizeof(chat_arena_chunk_t) + chunk);
        c->used = 0;
        c->size = chunk;
        c->next = a->chunks;
        a->chunks = c;
    }

    p = (char *) c->data + c->used;
    c->used += size;

    return p;
}


char *
chat_arena_strndup(chat_arena_t *a, const char *s, size_t n)
{
    char  *p = chat_arena_alloc(a, n + 1);

    memcpy(p, s, n);
    p[n] = '\0';

    return p;
}


char *
chat_arena_strdup(chat_arena_t *a, const char *s)
{
    return chat_arena_strndup(a, s, strlen(s));
}


void
chat_arena_free(chat_arena_t *a)
{
    chat_arena_chunk_t  *c, *next;

    for (c = a->chunks; c; c = next) {
        next = c->next;
        free(c);
    }

    a->chunks = NULL;
}


static uint64_t
chat_map_hash(const char *key)
{
    uint64_t  h = 14695981039346656037ULL;

    while (*key) {
        h ^= (unsigned char) *key++;
        h *= 1099511628211ULL;
    }

    return h;
}


static void
chat_map_grow(chat_map_t *m)
{
    chat_map_t  bigger;
    size_t      i;

    bigger.cap = m->cap ? m->cap * 2 : 64;
    bigger.count = 0;
    bigger.keys = chat_alloc(bigger.cap * sizeof(const char *));
    bigger.values = chat_alloc(bigger.cap * sizeof(size_t));
    memset(bigger.keys, 0, bigger.cap * sizeof(const char *));

    for (i = 0; i < m->cap; i++) {
        if (m->keys[i]) {
            chat_map_put(&bigger, m->keys[i], m->values[i]);
        }
    }

    chat_map_free(m);
    *m = bigger;
}


size_t
chat_map_put(chat_map_t *m, const char *key, size_t value)
{
    size_t  i;

    /* at most half full, so probes stay short */
    if ((m->count + 1) * 2 > m->cap) {
        chat_map_grow(m);
    }

    for (i = chat_map_hash(key) & (m->cap - 1);
         m->keys[i];
         i = (i + 1) & (m->cap - 1))
    {
        if (strcmp(m->keys[i], key) == 0) {
            return m->values[i];
        }
    }

    m->keys[i] = key;
    m->values[i] = value;
    m->count++;

    return value;
}


bool
chat_map_get(const chat_map_t *m, const char *key, size_t *value)
{
    size_t  i;

    if (m->cap == 0) {
        return false;
    }

    for (i = chat_map_hash(key) & (m->cap - 1);
         m->keys[i];
         i = (i + 1) & (m->cap - 1))
    {
        if (strcmp(m->keys[i], key) == 0) {
            *value = m->values[i];
            return true;
        }
    }

    return false;
}


void
chat_map_free(chat_map_t *m)
{
    free(m->keys);
    free(m->values);
    m->keys = NULL;
    m->values = NULL;
    m->cap = 0;
    m->count = 0;
}


/* "a\nb": a key of two strings, unambiguous while a holds no newline
 * (user ids and conversation ids do not) */
const char *
chat_map_pair(chat_arena_t *arena, const char *a, const char *b)
{
    size_t   alen = strlen(a), blen = strlen(b);
    char    *key = chat_arena_alloc(arena, alen + blen + 2);

    memcpy(key, a, alen);
    key[alen] = '\n';
    memcpy(key + alen + 1, b, blen + 1);

    return key;
}
