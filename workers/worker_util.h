/*
 * worker_util.h: the small tools every part of chat_worker uses
 * (worker_util.c): the log line, allocation that cannot fail, the clock,
 * interruptible sleeps and backoff, the stop signals, the command line's
 * numbers, the growable buffer, the per-batch arena and a string map.
 */

#ifndef CHAT_WORKER_UTIL_H
#define CHAT_WORKER_UTIL_H

#include <stdarg.h>
#include <string.h>

#include "worker.h"


/*
 * The log: one JSON object per line on stderr, written whole in one
 * write(2): {"time":"2026-11-26T10:00:00.123Z","level":"info",
 * "event":"stats","pid":1234,...}. An event says what happened; its
 * other members are ids (partition, offset, user, conv, admin) and
 * durations (*_ms). Never a message body, never a token.
 *
 * chat_log() is the short form: the event is the part of the worker the
 * text names first ("kafka: ...", "postgresql: ...", "redis ...";
 * "worker" otherwise) and the text goes in "msg".
 */
void chat_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* the name in the lines (chat_worker unless a main says otherwise) */
void chat_log_program(const char *name);

#define CHAT_LOG_LINE_MAX  4096

typedef struct {
    char    buf[CHAT_LOG_LINE_MAX];
    size_t  len;
} chat_log_line_t;

void chat_log_begin(chat_log_line_t *l, const char *level,
    const char *event);
/* a string member; NULL is written as null */
void chat_log_str(chat_log_line_t *l, const char *name, const char *value);
void chat_log_int(chat_log_line_t *l, const char *name, int64_t value);
/* a duration in milliseconds, to the microsecond */
void chat_log_ms(chat_log_line_t *l, const char *name, double ms);
void chat_log_end(chat_log_line_t *l);

#define log_error(...)  chat_log("error", __VA_ARGS__)
#define log_warn(...)   chat_log("warn", __VA_ARGS__)
#define log_info(...)   chat_log("info", __VA_ARGS__)

void *chat_alloc(size_t size);
void *chat_realloc(void *p, size_t size);
char *chat_strdup(const char *s);

int64_t chat_now_ms(void);

/* sleeps, waking early on stop; false when stop was requested */
bool chat_sleep_ms(long ms, chat_stop_t *stop);

/* SIGTERM and SIGINT set the flag returned (and do nothing else), SIGPIPE
 * is ignored; a main calls it once, before it opens anything */
chat_stop_t *chat_stop_on_signals(void);

/* a command line's number: arg, whole, within [min, max]; false after
 * saying "<program>: --<name>: <min> to <max>" on stderr */
bool chat_option_long(const char *program, const char *name,
    const char *arg, long min, long max, long *out);

/*
 * What a part does while it waits for PostgreSQL or Redis: chat_worker.c
 * gives the loop's keepalive (the consumer polled, its partitions paused,
 * so that a long outage does not cost the worker its place in the group).
 * false gives the wait up: stop was requested, or the batch's partitions
 * went to another worker meanwhile.
 */
typedef bool (*chat_wait_pt)(void *data);

/* exponential backoff with jitter for reconnects: 100 ms doubling to 2 s;
 * the waits call meanwhile (if set) every CHAT_WAIT_SLICE_MS */
typedef struct {
    long          next_ms;
    unsigned      seed;
    chat_wait_pt  meanwhile;
    void         *data;
} chat_backoff_t;

#define CHAT_WAIT_SLICE_MS  200

void chat_backoff_reset(chat_backoff_t *b);
bool chat_backoff_wait(chat_backoff_t *b, chat_stop_t *stop);
/* ms of waiting, meanwhile called as for a backoff; false: given up */
bool chat_backoff_pause(chat_backoff_t *b, long ms, chat_stop_t *stop);


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} chat_buf_t;

void chat_buf_reserve(chat_buf_t *b, size_t extra);
void chat_buf_add(chat_buf_t *b, const void *p, size_t n);
void chat_buf_adds(chat_buf_t *b, const char *s);
void chat_buf_addc(chat_buf_t *b, char c);
void chat_buf_printf(chat_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *chat_buf_cstr(chat_buf_t *b);   /* NUL-terminated view */
void chat_buf_free(chat_buf_t *b);


/* bump allocator for strings that live as long as one batch */
typedef struct chat_arena_chunk_s  chat_arena_chunk_t;

typedef struct {
    chat_arena_chunk_t  *chunks;
} chat_arena_t;

void *chat_arena_alloc(chat_arena_t *a, size_t size);
char *chat_arena_strdup(chat_arena_t *a, const char *s);
char *chat_arena_strndup(chat_arena_t *a, const char *s, size_t n);
void chat_arena_free(chat_arena_t *a);


/* string -> size_t map with borrowed keys (open addressing, FNV-1a) */
typedef struct {
    const char  **keys;
    size_t       *values;
    size_t        cap;
    size_t        count;
} chat_map_t;

/* stores key -> value unless present; returns the value now stored */
size_t chat_map_put(chat_map_t *m, const char *key, size_t value);
bool chat_map_get(const chat_map_t *m, const char *key, size_t *value);
void chat_map_free(chat_map_t *m);

/* "a\nb" in the arena: a map key of two ids, which hold no newline */
const char *chat_map_pair(chat_arena_t *arena, const char *a, const char *b);


#endif /* CHAT_WORKER_UTIL_H */
