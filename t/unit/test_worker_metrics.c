/*
 * test_worker_metrics.c: unit tests of chat_worker's log lines (JSON, one
 * a line, whatever the text: worker_util.c) and of its figures in
 * Prometheus's text format (worker_metrics.c).
 *
 * The worker's files are included, not linked: cc test_worker_metrics.c
 * -ljansson. Prints "N passed, N failed" and exits 1 on a failure.
 */

#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "../../workers/worker_util.c"
#include "../../workers/worker_metrics.c"

/* worker_unit.h's checks need the ops; these are the same, alone */
static int  passed, failed;

#define check(cond)                                                        \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                  \
    } while (0)

#define check_str(got, want)                                               \
    do {                                                                   \
        const char  *g_ = (got), *w_ = (want);                             \
        if (g_ && strcmp(g_, w_) == 0) {                                   \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            printf("FAIL %s:%d: got %s, want %s\n", __FILE__, __LINE__,    \
                   g_ ? g_ : "(null)", w_);                                \
        }                                                                  \
    } while (0)


/* what the log wrote to stderr while f ran, one line */
static char  logged[2 * CHAT_LOG_LINE_MAX];

static json_t *
capture(void (*f)(void))
{
    int      fds[2], saved;
    ssize_t  n;

    check(pipe(fds) == 0);
    saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);

    f();

    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    n = read(fds[0], logged, sizeof(logged) - 1);
    close(fds[0]);
    logged[n > 0 ? n : 0] = '\0';

    /* exactly one line */
    check(n > 0 && logged[n - 1] == '\n' && strchr(logged, '\n')
                                            == logged + n - 1);

    return json_loads(logged, 0, NULL);
}


static void
log_kafka(void)
{
    log_warn("kafka: broker %s: \"down\"\t\x01", "b1");
}


static void
log_other(void)
{
    log_info("partition 3 offset 7: skipped");
}


static void
log_fields(void)
{
    chat_log_line_t  l;

    chat_log_begin(&l, "info", "revoked");
    chat_log_str(&l, "user", "bob");
    chat_log_str(&l, "device", NULL);
    chat_log_int(&l, "revoked_at", 1700000000000);
    chat_log_ms(&l, "duration_ms", 1.5);
    chat_log_end(&l);
}


/* bytes that are not UTF-8, and a line far over the limit */
static void
log_bad_bytes(void)
{
    static char  big[3 * CHAT_LOG_LINE_MAX];

    memset(big, 'x', sizeof(big) - 1);
    big[10] = (char) 0xff;
    big[11] = (char) 0xc3;      /* a lead byte without its follower */
    big[20] = (char) 0xc3;
    big[21] = (char) 0xa9;      /* e acute, kept */
    big[30] = (char) 0xed;      /* a surrogate */
    big[31] = (char) 0xa0;
    big[32] = (char) 0x80;
    big[sizeof(big) - 1] = '\0';

    log_error("redis %s", big);
}


static void
log_full(void)
{
    static char      big[3 * CHAT_LOG_LINE_MAX];
    chat_log_line_t  l;

    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

    chat_log_begin(&l, "info", "full");
    chat_log_str(&l, "a", big);
    chat_log_int(&l, "dropped", 1);
    chat_log_end(&l);
}


static void
test_log(void)
{
    json_t      *j;
    const char  *msg;

    j = capture(log_kafka);
    check(j != NULL);
    check_str(json_string_value(json_object_get(j, "level")), "warn");
    check_str(json_string_value(json_object_get(j, "event")), "kafka");
    check_str(json_string_value(json_object_get(j, "msg")),
              "kafka: broker b1: \"down\"\t\x01");
    check(json_integer_value(json_object_get(j, "pid")) == getpid());
    msg = json_string_value(json_object_get(j, "time"));
    check(msg && strlen(msg) == 24 && msg[10] == 'T' && msg[23] == 'Z');
    json_decref(j);

    j = capture(log_other);
    check(j && strcmp(json_string_value(json_object_get(j, "event")),
                      "worker") == 0);
    json_decref(j);

    j = capture(log_fields);
    check(j != NULL);
    check_str(json_string_value(json_object_get(j, "event")), "revoked");
    check_str(json_string_value(json_object_get(j, "user")), "bob");
    check(json_is_null(json_object_get(j, "device")));
    check(json_integer_value(json_object_get(j, "revoked_at"))
          == 1700000000000);
    check(json_real_value(json_object_get(j, "duration_ms")) == 1.5);
    json_decref(j);

    j = capture(log_bad_bytes);
    check(j != NULL);
    check(strlen(logged) <= CHAT_LOG_LINE_MAX);
    msg = j ? json_string_value(json_object_get(j, "msg")) : NULL;
    check(msg && strncmp(msg, "redis xxxxxxxxxx??x", 19) == 0);
    check(msg && strstr(msg, "\xc3\xa9") != NULL);
    check(msg && strstr(msg, "\xed") == NULL);
    json_decref(j);

    /* a string that fills the line leaves it whole; later members go */
    j = capture(log_full);
    check(j != NULL);
    check(strlen(logged) <= CHAT_LOG_LINE_MAX);
    check(j && json_object_get(j, "dropped") == NULL);
    check(j && json_string_length(json_object_get(j, "a")) > 1000);
    json_decref(j);
}


/* the value of the sample line that starts with name (labels included) */
static double
sample(const char *text, const char *name)
{
    const char  *p = text;
    size_t       n = strlen(name);

    while ((p = strstr(p, name)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        p += n;
    }

    return -1;
}


static void
test_metrics(void)
{
    chat_metrics_t   m;
    chat_buf_t       b = { 0 };
    const char      *t, *p;

    chat_metrics_init(&m);

    chat_metrics_record(&m, NGX_CHAT_WIRE_OP_SEND);
    chat_metrics_record(&m, NGX_CHAT_WIRE_OP_SEND);
    chat_metrics_record(&m, NGX_CHAT_WIRE_OP_COUNT);
    chat_metrics_record(&m, -1);
    chat_metrics_replay(&m);
    chat_metrics_retry(&m, CHAT_RETRY_CONFLICT);
    chat_metrics_observe(&m, CHAT_HIST_PG_COMMIT, 1500);      /* 1.5 ms */
    chat_metrics_observe(&m, CHAT_HIST_PG_COMMIT, 3000000);   /* 3 s */
    chat_metrics_observe(&m, CHAT_HIST_PG_COMMIT, 60000000);  /* 60 s */
    chat_metrics_batch(&m, 7, 0, 2000, 4);

    /* NULL counts nothing, and fails nothing */
    chat_metrics_record(NULL, 0);
    chat_metrics_observe(NULL, CHAT_HIST_BATCH, 1);

    chat_metrics_text(&m, &b);
    t = chat_buf_cstr(&b);

    check(sample(t, "chat_worker_records_total{op=\"send\"}") == 2);
    check(sample(t, "chat_worker_records_total{op=\"none\"}") == 2);
    check(sample(t, "chat_worker_records_total{op=\"revoke\"}") == 0);
    check(sample(t, "chat_worker_replays_total") == 1);
    check(sample(t, "chat_worker_pg_retries_total{reason=\"conflict\"}")
          == 1);

    /* cumulative buckets, in seconds; +Inf is the count */
    check(sample(t, "chat_worker_pg_commit_duration_seconds_bucket"
                    "{le=\"0.001\"}") == 0);
    check(sample(t, "chat_worker_pg_commit_duration_seconds_bucket"
                    "{le=\"0.002\"}") == 1);
    check(sample(t, "chat_worker_pg_commit_duration_seconds_bucket"
                    "{le=\"5\"}") == 2);
    check(sample(t, "chat_worker_pg_commit_duration_seconds_bucket"
                    "{le=\"10\"}") == 2);
    check(sample(t, "chat_worker_pg_commit_duration_seconds_bucket"
                    "{le=\"+Inf\"}") == 3);
    check(sample(t, "chat_worker_pg_commit_duration_seconds_count") == 3);
    check(sample(t, "chat_worker_pg_commit_duration_seconds_sum")
          == 63.0015);

    check(sample(t, "chat_worker_batch_records_bucket{le=\"5\"}") == 0);
    check(sample(t, "chat_worker_batch_records_bucket{le=\"10\"}") == 1);
    check(sample(t, "chat_worker_batch_records_sum") == 7);
    check(sample(t, "chat_worker_batch_duration_seconds_sum") == 0.002);
    check(sample(t, "chat_worker_queue_wait_seconds_sum") == 0.004);
    check(sample(t, "chat_worker_last_batch_time_seconds") > 1.7e9);

    /* no lag asked yet: no lag shown */
    check(strstr(t, "chat_worker_kafka_lag_records") == NULL);

    /* every counter ends with _total, every family has HELP and TYPE */
    for (p = t; (p = strstr(p, "# TYPE ")) != NULL; p++) {
        const char  *name = p + 7, *sp = strchr(name, ' ');

        if (strncmp(sp + 1, "counter", 7) == 0) {
            check(strncmp(sp - 6, "_total", 6) == 0);
        }
    }

    chat_buf_free(&b);

    m.lag_partitions = 2;
    m.lag[0] = 5;
    m.lag[1] = 0;
    chat_metrics_text(&m, &b);
    t = chat_buf_cstr(&b);
    check(sample(t, "chat_worker_kafka_lag_records{partition=\"0\"}") == 5);
    check(sample(t, "chat_worker_kafka_lag_records{partition=\"1\"}") == 0);
    chat_buf_free(&b);
}


int
main(void)
{
    test_log();
    test_metrics();

    printf("%d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
