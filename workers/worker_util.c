/*
 * worker_util.c: the small tools every part of chat_worker (and
 * chat_pusher) uses: the log (JSON lines), the clock, interruptible sleeps
 * and backoff, the stop signals and the command line's numbers of a main,
 * the growable buffer, the per-batch arena and a string map.
 *
 * Nothing here touches the network, so the unit tests include this file.
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker_util.h"


/* room kept at the end of a line for what closes it: "}\n" */
#define CHAT_LOG_TAIL  2


/* the program the log lines name: set once by a main before any thread */
static const char  *chat_log_prog = "chat_worker";


void
chat_log_program(const char *name)
{
    chat_log_prog = name;
}


static void
chat_log_raw(chat_log_line_t *l, const char *s, size_t n)
{
    if (n > CHAT_LOG_LINE_MAX - CHAT_LOG_TAIL - l->len) {
        n = CHAT_LOG_LINE_MAX - CHAT_LOG_TAIL - l->len;
    }

    memcpy(l->buf + l->len, s, n);
    l->len += n;
}


/* the length of the valid UTF-8 sequence at p (up to end), or 0 */
static size_t
chat_log_utf8(const unsigned char *p, const unsigned char *end)
{
    size_t  n, i;

    if (*p < 0xc2 || *p > 0xf4) {
        return 0;
    }

    n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;

    if ((size_t) (end - p) < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }

    /* overlong forms, surrogates and beyond U+10FFFF */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0)
        || (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
    {
        return 0;
    }

    return n;
}


/*
 * A JSON string of s. A line that runs out of room ends its string
 * early, whole: what a log reader gets is always JSON. Bytes that are not
 * UTF-8 (a server's message in another encoding) become '?'.
 */
static void
chat_log_quoted(chat_log_line_t *l, const char *s)
{
    const unsigned char  *p, *end;
    char                  esc[8];
    size_t                n, room;

    /* the closing quote has its room from here on */
    room = CHAT_LOG_LINE_MAX - CHAT_LOG_TAIL - 1;
    chat_log_raw(l, "\"", 1);

    p = (const unsigned char *) s;
    end = p + strlen(s);

    while (p < end) {
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char) *p;
            n = 2;

        } else if (*p < 0x20) {
            n = (size_t) snprintf(esc, sizeof(esc), "\\u%04x", *p);

        } else if (*p < 0x80) {
            esc[0] = (char) *p;
            n = 1;

        } else if ((n = chat_log_utf8(p, end)) > 0) {
            if (l->len + n > room) {
                break;
            }

            memcpy(l->buf + l->len, p, n);
            l->len += n;
            p += n;
            continue;

        } else {
            esc[0] = '?';
            n = 1;
        }

        if (l->len + n > room) {
            break;
        }

        memcpy(l->buf + l->len, esc, n);
        l->len += n;
        p++;
    }

    l->buf[l->len++] = '"';
}


/*
 * A member is written only while this much room is left, so that its
 * name, a number or a string's quotes always fit; a line that is full
 * drops the members that come too late.
 */
#define CHAT_LOG_MEMBER_ROOM  96


static bool
chat_log_name(chat_log_line_t *l, const char *name)
{
    if (CHAT_LOG_LINE_MAX - CHAT_LOG_TAIL - l->len < CHAT_LOG_MEMBER_ROOM) {
        return false;
    }

    chat_log_raw(l, ",", 1);
    chat_log_quoted(l, name);
    chat_log_raw(l, ":", 1);

    return true;
}


void
chat_log_begin(chat_log_line_t *l, const char *level, const char *event)
{
    char             head[96];
    struct timespec  now;
    struct tm        tm;
    int              n;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);

    l->len = 0;

    n = snprintf(head, sizeof(head),
                 "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
                 "\"level\":", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
    chat_log_raw(l, head, (size_t) n);
    chat_log_quoted(l, level);
    chat_log_str(l, "event", event);
    chat_log_str(l, "program", chat_log_prog);
    chat_log_int(l, "pid", (int64_t) getpid());
}


void
chat_log_str(chat_log_line_t *l, const char *name, const char *value)
{
    if (!chat_log_name(l, name)) {
        return;
    }

    if (value == NULL) {
        chat_log_raw(l, "null", 4);
        return;
    }

    chat_log_quoted(l, value);
}


void
chat_log_int(chat_log_line_t *l, const char *name, int64_t value)
{
    char  num[24];
    int   n;

    n = snprintf(num, sizeof(num), "%lld", (long long) value);

    if (chat_log_name(l, name)) {
        chat_log_raw(l, num, (size_t) n);
    }
}


void
chat_log_ms(chat_log_line_t *l, const char *name, double ms)
{
    char  num[40];
    int   n;

    n = snprintf(num, sizeof(num), "%.3f", ms >= 0 ? ms : 0.0);

    if (chat_log_name(l, name)) {
        chat_log_raw(l, num, (size_t) n);
    }
}


/* the whole line in one write, so that the lines of several workers
 * sharing a log file do not interleave */
void
chat_log_end(chat_log_line_t *l)
{
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';

    if (write(STDERR_FILENO, l->buf, l->len) < 0) {
        /* nowhere left to complain */
    }
}


/* the part of the worker a free-form line is about, from its first word */
static const char *
chat_log_event_of(const char *text)
{
    static const char  *parts[] = { "kafka", "postgresql", "redis", NULL };
    size_t              i, n;

    for (i = 0; parts[i]; i++) {
        n = strlen(parts[i]);

        if (strncmp(text, parts[i], n) == 0
            && (text[n] == ':' || text[n] == ' '))
        {
            return parts[i];
        }
    }

    return "worker";
}


void
chat_log(const char *level, const char *fmt, ...)
{
    char             text[CHAT_LOG_LINE_MAX];
    chat_log_line_t  l;
    va_list          args;

    va_start(args, fmt);
    vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);

    chat_log_begin(&l, level, chat_log_event_of(text));
    chat_log_str(&l, "msg", text);
    chat_log_end(&l);
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


/* the process's one mutable global: only the handler writes it */
static volatile sig_atomic_t  chat_stop_flag;


static void
chat_stop_handler(int signo)
{
    (void) signo;

    chat_stop_flag = 1;
}


chat_stop_t *
chat_stop_on_signals(void)
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = chat_stop_handler;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* a socket closing under a write is an error to handle, not a reason
     * to die */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    return &chat_stop_flag;
}


bool
chat_option_long(const char *program, const char *name, const char *arg,
    long min, long max, long *out)
{
    char  *end;
    long   n;

    n = strtol(arg, &end, 10);

    if (*arg == '\0' || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "%s: --%s: %ld to %ld\n", program, name, min, max);
        return false;
    }

    *out = n;
    return true;
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
    /* nothing to add may come as (NULL, 0), which memcpy may not take */
    if (n == 0) {
        return;
    }

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
