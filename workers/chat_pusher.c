/*
 * chat_pusher.c: the command line, the signals and the loop of
 * chat_pusher (pusher.h lists the parts).
 *
 *   the push topic's records -> the outbox, then their offsets committed;
 *   claim due outbox rows -> skip the online and the unregistered ->
 *   POST the rest at once -> record each outcome
 *
 * SIGTERM and SIGINT only set a flag: the batch in hand is finished (its
 * POSTs are bounded by the timeout) and recorded, then the pusher leaves
 * its consumer group and exits 0. Any number of pushers may run in one
 * group against one database: the topic's partitions are spread over
 * them, and a row of the outbox is claimed by one of them only.
 *
 * --metrics starts worker_httpd.c's thread: /metrics from the loop's
 * counters (pusher_metrics.h) and the look of pusher_watch.c every few
 * seconds, /health from that look (PostgreSQL and Kafka answering).
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher_http.h"
#include "pusher_jobs.h"
#include "pusher_metrics.h"
#include "pusher_online.h"
#include "pusher_watch.h"
#include "worker_httpd.h"
#include "worker_kafka.h"
#include "worker_util.h"


/* how often the metrics thread looks at the outbox, PostgreSQL and Kafka */
#define CHAT_PUSHER_LOOK_MS  2000


typedef struct {
    const char           *brokers;
    const char           *topic;
    const char           *group;
    long                  partitions;
    const char           *pg;
    const char           *redis;
    long                  batch;
    long                  poll_ms;
    const char           *metrics;
    chat_http_options_t   http;
    chat_push_policy_t    policy;
} chat_pusher_options_t;


static void
chat_usage(FILE *f)
{
    fprintf(f,
        "usage: chat_pusher [options]\n"
        "  --brokers HOST:PORT[,...]  Kafka bootstrap servers"
        " (127.0.0.1:9092)\n"
        "  --topic NAME           the push topic (" NGX_CHAT_WIRE_PUSH_TOPIC
        ")\n"
        "  --group NAME           consumer group (chat-pushers)\n"
        "  --partitions N         partitions when creating the topic (4)\n"
        "  --pg CONNINFO          PostgreSQL connection string (dbname=chat)\n"
        "  --redis HOST:PORT|PATH Redis of the session registry"
        " (127.0.0.1:6379)\n"
        "  --batch N              POSTs at once (64)\n"
        "  --poll-ms N            how often the outbox is looked at when"
        " idle (200)\n"
        "  --timeout-ms N         one POST's whole time (5000)\n"
        "  --retry-ms N           the first retry's delay, doubling (1000)\n"
        "  --retry-max-ms N       the longest delay (300000)\n"
        "  --max-attempts N       POSTs of one push at most (8)\n"
        "  --no-body              leave the message's text out\n"
        "  --metrics HOST:PORT    serve Prometheus metrics on"
        " http://HOST:PORT/metrics\n"
        "                         and PostgreSQL's and Kafka's health on"
        " /health\n"
        "  --help\n");
}


static bool
chat_parse_options(int argc, char **argv, chat_pusher_options_t *o)
{
    static const struct option  longopts[] = {
        { "brokers",      required_argument, NULL, 'k' },
        { "topic",        required_argument, NULL, 'T' },
        { "group",        required_argument, NULL, 'g' },
        { "partitions",   required_argument, NULL, 'n' },
        { "pg",           required_argument, NULL, 'p' },
        { "redis",        required_argument, NULL, 'r' },
        { "batch",        required_argument, NULL, 'b' },
        { "poll-ms",      required_argument, NULL, 'P' },
        { "timeout-ms",   required_argument, NULL, 't' },
        { "retry-ms",     required_argument, NULL, 'R' },
        { "retry-max-ms", required_argument, NULL, 'M' },
        { "max-attempts", required_argument, NULL, 'a' },
        { "no-body",      no_argument,       NULL, 'B' },
        { "metrics",      required_argument, NULL, 'm' },
        { "help",         no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    static const char  prog[] = "chat_pusher";

    long  n;
    int   c;

    o->brokers = "127.0.0.1:9092";
    o->topic = NGX_CHAT_WIRE_PUSH_TOPIC;
    o->group = "chat-pushers";
    o->partitions = 4;
    o->pg = "dbname=chat";
    o->redis = "127.0.0.1:6379";
    o->batch = 64;
    o->poll_ms = 200;
    o->metrics = NULL;
    o->http.timeout_ms = 5000;
    o->http.with_body = true;
    o->policy.retry_ms = 1000;
    o->policy.retry_max_ms = 300000;
    o->policy.max_attempts = 8;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {

        case 'k':
            o->brokers = optarg;
            break;

        case 'T':
            o->topic = optarg;
            break;

        case 'g':
            o->group = optarg;
            break;

        case 'n':
            if (!chat_option_long(prog, "partitions", optarg, 1, 10000,
                                  &o->partitions))
            {
                return false;
            }
            break;

        case 'p':
            o->pg = optarg;
            break;

        case 'r':
            o->redis = optarg;
            break;

        case 'b':
            if (!chat_option_long(prog, "batch", optarg, 1, 10000,
                                  &o->batch))
            {
                return false;
            }
            break;

        case 'P':
            if (!chat_option_long(prog, "poll-ms", optarg, 1, 60000,
                                  &o->poll_ms))
            {
                return false;
            }
            break;

        case 't':
            if (!chat_option_long(prog, "timeout-ms", optarg, 10, 600000,
                                  &o->http.timeout_ms))
            {
                return false;
            }
            break;

        case 'R':
            if (!chat_option_long(prog, "retry-ms", optarg, 1, 3600000,
                                  &o->policy.retry_ms))
            {
                return false;
            }
            break;

        case 'M':
            if (!chat_option_long(prog, "retry-max-ms", optarg, 1, 86400000,
                                  &o->policy.retry_max_ms))
            {
                return false;
            }
            break;

        case 'a':
            if (!chat_option_long(prog, "max-attempts", optarg, 1, 100, &n)) {
                return false;
            }
            o->policy.max_attempts = (int) n;
            break;

        case 'B':
            o->http.with_body = false;
            break;

        case 'm':
            o->metrics = optarg;
            break;

        case 'h':
            chat_usage(stdout);
            exit(0);

        default:
            chat_usage(stderr);
            return false;
        }
    }

    if (optind < argc) {
        fprintf(stderr, "chat_pusher: unexpected argument %s\n",
                argv[optind]);
        chat_usage(stderr);
        return false;
    }

    /* a claim outlives its POST by far: only a dead pusher lets it lapse */
    o->policy.lease_ms = o->http.timeout_ms + 30000;

    return true;
}


/* what became of a job whose device was asked about and, maybe, POSTed */
static chat_push_outcome_t
chat_outcome(const chat_push_job_t *j, bool posted, int max_attempts)
{
    if (!posted) {
        return CHAT_PUSH_SKIPPED;
    }

    if (j->status >= 200 && j->status <= 299) {
        return CHAT_PUSH_SENT;
    }

    /* a gateway that refuses the request itself will refuse it again
     * (an unknown token, a bad URL); timeouts, 408, 429 and 5xx pass */
    if (j->status >= 400 && j->status <= 499 && j->status != 408
        && j->status != 429)
    {
        return CHAT_PUSH_FAILED;
    }

    return j->attempts >= max_attempts ? CHAT_PUSH_FAILED : CHAT_PUSH_RETRY;
}


/* one batch; the number of rows claimed, -1 on stop */
static long
chat_pusher_round(const chat_pusher_options_t *o, chat_stop_t *stop,
    chat_store_t *st, chat_online_t *online, chat_http_t *http,
    chat_push_job_t *jobs, bool *todo, chat_push_outcome_t *outcomes,
    chat_pusher_metrics_t *m)
{
    long           n, i, lapsed, sent = 0, skipped = 0, retried = 0,
                   failed = 0;
    chat_pushed_e  counted;
    bool           ok;

    n = chat_jobs_claim(st, &o->policy, jobs, (size_t) o->batch, &lapsed);

    if (lapsed > 0) {
        chat_metrics_add(&m->pushed[CHAT_PUSHED_UNKNOWN], (uint64_t) lapsed);
    }

    if (n <= 0) {
        return n;
    }

    if (!chat_online_check(online, jobs, (size_t) n)) {
        log_warn("redis unavailable: %ld pushes put back", n);
        ok = chat_jobs_release(st, jobs, (size_t) n);
        chat_jobs_free(jobs, (size_t) n);
        chat_sleep_ms(1000, stop);
        return ok ? 0 : -1;
    }

    for (i = 0; i < n; i++) {
        todo[i] = jobs[i].registered && !jobs[i].online;
        if (!jobs[i].registered) {
            snprintf(jobs[i].error, sizeof(jobs[i].error), "unregistered");
        } else if (jobs[i].online) {
            snprintf(jobs[i].error, sizeof(jobs[i].error), "online");
        }
    }

    chat_http_post(http, jobs, todo, (size_t) n);

    for (i = 0; i < n; i++) {
        outcomes[i] = chat_outcome(&jobs[i], todo[i], o->policy.max_attempts);

        if (todo[i]) {
            chat_pusher_metrics_post(m, jobs[i].status, jobs[i].elapsed_us);
        }

        switch (outcomes[i]) {
        case CHAT_PUSH_SENT:    sent++;    break;
        case CHAT_PUSH_SKIPPED: skipped++; break;
        case CHAT_PUSH_RETRY:   retried++; break;
        case CHAT_PUSH_FAILED:  failed++;  break;
        }
    }

    ok = chat_jobs_finish(st, &o->policy, jobs, outcomes, (size_t) n);

    /* counted once recorded: a scrape that sees them sees the outbox so */
    for (i = 0; ok && i < n; i++) {
        switch (outcomes[i]) {
        case CHAT_PUSH_SENT:
            counted = CHAT_PUSHED_DELIVERED;
            break;
        case CHAT_PUSH_SKIPPED:
            counted = jobs[i].registered ? CHAT_PUSHED_ONLINE
                                         : CHAT_PUSHED_UNREGISTERED;
            break;
        case CHAT_PUSH_RETRY:
            counted = CHAT_PUSHED_RETRY;
            break;
        default:
            counted = CHAT_PUSHED_GIVEN_UP;
            break;
        }

        chat_metrics_add(&m->pushed[counted], 1);
    }

    log_info("pushes: %ld claimed, %ld sent, %ld skipped, %ld to retry,"
             " %ld failed", n, sent, skipped, retried, failed);

    chat_jobs_free(jobs, (size_t) n);

    return ok ? n : -1;
}


/* what the waits for PostgreSQL do meanwhile: the consumer kept in its
 * group, its partitions paused */
static bool
chat_pusher_keepalive(void *data)
{
    return chat_kafka_hold(data);
}


/* the topic's records in hand into the outbox, then their offsets
 * committed; false on stop */
static bool
chat_pusher_enter(chat_kafka_t *kafka, chat_store_t *st,
    const chat_record_t *records, size_t n, chat_stop_t *stop,
    chat_pusher_metrics_t *m)
{
    long  entered, fresh = 0;

    chat_metrics_add(&m->records, n);
    chat_metrics_set(&m->last_record_ms, chat_now_ms());

    entered = chat_jobs_enter(st, records, n, &fresh);

    if (entered < 0) {
        if (*stop) {
            /* not committed: the group's next owner enters them */
            chat_kafka_release(kafka);
            return false;
        }

        log_warn("%zu push records given up: partitions moved while"
                 " PostgreSQL was away", n);
        chat_kafka_abandon(kafka);
        chat_kafka_resume(kafka);
        return true;
    }

    chat_metrics_add(&m->malformed, n - (size_t) entered);
    chat_metrics_add(&m->entered_new, (uint64_t) fresh);
    chat_metrics_add(&m->entered_known, (uint64_t) (entered - fresh));

    chat_kafka_commit(kafka);
    chat_kafka_resume(kafka);

    return true;
}


/* the metrics thread's pages (worker_httpd.h) */
static void
chat_pusher_metrics_page(void *data, chat_buf_t *b)
{
    chat_pusher_metrics_text(data, b);
}


static bool
chat_pusher_health_page(void *data, chat_buf_t *b)
{
    return chat_pusher_metrics_health(data, b);
}


static chat_watch_t  *chat_pusher_watch;

static void
chat_pusher_look(void *data)
{
    (void) data;
    chat_watch_look(chat_pusher_watch);
}


int
main(int argc, char **argv)
{
    chat_pusher_options_t   o;
    chat_stop_t            *stop;
    chat_kafka_tuning_t     tuning;
    chat_kafka_event_t      ev[64];
    chat_kafka_t           *kafka;
    chat_record_t          *records;
    chat_store_t           *st;
    chat_online_t          *online;
    chat_http_t            *http;
    chat_push_job_t        *jobs;
    chat_push_outcome_t    *outcomes;
    chat_pusher_metrics_t   metrics;
    chat_httpd_t           *httpd = NULL;
    bool                   *todo, due = true;
    int64_t                 last_claim = 0;
    size_t                  n;
    long                    claimed;

    if (!chat_parse_options(argc, argv, &o)) {
        return 2;
    }

    chat_log_program("chat_pusher");
    stop = chat_stop_on_signals();
    srand((unsigned) chat_now_ms());

    log_info("starting: brokers %s, topic %s, group %s, redis %s, batch %ld,"
             " timeout %ld ms, retries from %ld ms, %d attempts, bodies %s",
             o.brokers, o.topic, o.group, o.redis, o.batch,
             o.http.timeout_ms, o.policy.retry_ms, o.policy.max_attempts,
             o.http.with_body ? "in" : "left out");

    chat_pusher_metrics_init(&metrics);

    /* first, so that /health answers while the rest waits for servers */
    if (o.metrics) {
        chat_httpd_site_t  site = { chat_pusher_metrics_page,
                                    chat_pusher_health_page,
                                    chat_pusher_look, CHAT_PUSHER_LOOK_MS,
                                    &metrics };

        chat_pusher_watch = chat_watch_open(o.pg, o.brokers, o.topic,
                                            o.group, &metrics);
        httpd = chat_httpd_start(o.metrics, &site);

        if (httpd == NULL) {
            chat_watch_close(chat_pusher_watch);
            return 1;
        }
    }

    st = chat_jobs_open(o.pg, stop);
    if (st == NULL) {
        chat_httpd_stop(httpd);
        chat_watch_close(chat_pusher_watch);
        return *stop ? 0 : 1;
    }

    http = chat_http_open(&o.http);
    if (http == NULL) {
        log_error("libcurl could not be initialised");
        chat_jobs_close(st);
        return 1;
    }

    memset(&tuning, 0, sizeof(tuning));
    tuning.client_id = "chat_pusher";
    /* an idle consumer costs the broker a fetch per wait; a push is for a
     * phone that is away, which a tenth of a second more does not change */
    tuning.fetch_wait_ms = 100;

    kafka = chat_kafka_open(o.brokers, o.topic, o.group, (int) o.partitions,
                            &tuning, stop);
    if (kafka == NULL) {
        chat_http_close(http);
        chat_jobs_close(st);
        return *stop ? 0 : 1;
    }

    chat_jobs_set_wait(st, chat_pusher_keepalive, kafka);

    online = chat_online_open(o.redis);
    if (online == NULL) {
        chat_kafka_close(kafka);
        chat_http_close(http);
        chat_jobs_close(st);
        return 1;
    }

    records = chat_alloc(CHAT_BATCH_MAX * sizeof(chat_record_t));
    jobs = chat_alloc((size_t) o.batch * sizeof(chat_push_job_t));
    memset(jobs, 0, (size_t) o.batch * sizeof(chat_push_job_t));
    todo = chat_alloc((size_t) o.batch * sizeof(bool));
    outcomes = chat_alloc((size_t) o.batch * sizeof(chat_push_outcome_t));

    log_info("ready");

    while (!*stop) {
        /* waits a moment when there is nothing */
        n = chat_kafka_collect(kafka, records, CHAT_BATCH_MAX);

        /* the pusher keeps nothing per partition */
        while (chat_kafka_events(kafka, ev, 64) > 0) {
            /* nothing */
        }

        if (n > 0) {
            if (!chat_pusher_enter(kafka, st, records, n, stop, &metrics)) {
                break;
            }

            due = true;
        }

        /* the outbox: at once after new records or a full batch, else
         * every poll-ms for the retries that fall due */
        if (!due && chat_now_ms() - last_claim < o.poll_ms) {
            continue;
        }

        last_claim = chat_now_ms();
        claimed = chat_pusher_round(&o, stop, st, online, http, jobs, todo,
                                    outcomes, &metrics);
        chat_kafka_resume(kafka);

        if (claimed < 0) {
            break;
        }

        due = claimed == o.batch;
    }

    log_info("stopping");

    free(records);
    free(jobs);
    free(todo);
    free(outcomes);
    chat_kafka_close(kafka);
    chat_online_close(online);
    chat_http_close(http);
    chat_jobs_close(st);
    chat_httpd_stop(httpd);
    chat_watch_close(chat_pusher_watch);

    return 0;
}
