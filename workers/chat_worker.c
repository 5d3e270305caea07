/*
 * chat_worker.c: the command line, the signals and the batch loop of
 * chat_worker, the consumer of the requests topic (worker.h lists the
 * parts).
 *
 *   collect a batch -> store and answer it -> commit its offsets
 *
 * SIGTERM and SIGINT only set a flag: the batch in hand is finished and its
 * offsets committed, then the worker leaves the consumer group and exits 0.
 * If the flag comes while the worker waits for PostgreSQL or Redis, the
 * batch is abandoned uncommitted: the next owner of its partitions gets it
 * again, and the store recognises what was already stored.
 */

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_batch.h"


#define CHAT_STATS_INTERVAL_MS  10000


static volatile sig_atomic_t  stop_requested;


static void
chat_on_signal(int signo)
{
    (void) signo;

    stop_requested = 1;
}


typedef struct {
    const char  *brokers;
    const char  *topic;
    const char  *group;
    const char  *pg;
    const char  *redis;
    int          partitions;
    long         max_group_members;
} chat_options_t;


static void
chat_usage(FILE *f)
{
    fprintf(f,
        "usage: chat_worker [options]\n"
        "  --brokers HOST:PORT[,...]  Kafka bootstrap servers"
        " (127.0.0.1:9092)\n"
        "  --topic NAME               requests topic ("
        NGX_CHAT_WIRE_TOPIC ")\n"
        "  --group NAME               consumer group (chat-workers)\n"
        "  --pg CONNINFO              PostgreSQL connection string"
        " (dbname=chat)\n"
        "  --redis HOST:PORT|PATH     Redis (127.0.0.1:6379)\n"
        "  --partitions N             partitions when creating the topic"
        " (4)\n"
        "  --max-group-members N      group size limit, creator included"
        " (256, at most 1024)\n"
        "  --help\n");
}


static bool
chat_parse_options(int argc, char **argv, chat_options_t *o)
{
    static const struct option  longopts[] = {
        { "brokers",    required_argument, NULL, 'b' },
        { "topic",      required_argument, NULL, 't' },
        { "group",      required_argument, NULL, 'g' },
        { "pg",         required_argument, NULL, 'p' },
        { "redis",      required_argument, NULL, 'r' },
        { "partitions", required_argument, NULL, 'n' },
        { "max-group-members", required_argument, NULL, 'm' },
        { "help",       no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    char  *end;
    long   n;
    int    c;

    o->brokers = "127.0.0.1:9092";
    o->topic = NGX_CHAT_WIRE_TOPIC;
    o->group = "chat-workers";
    o->pg = "dbname=chat";
    o->redis = "127.0.0.1:6379";
    o->partitions = 4;
    o->max_group_members = NGX_CHAT_WIRE_GROUP_MEMBERS;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {

        case 'b':
            o->brokers = optarg;
            break;

        case 't':
            o->topic = optarg;
            break;

        case 'g':
            o->group = optarg;
            break;

        case 'p':
            o->pg = optarg;
            break;

        case 'r':
            o->redis = optarg;
            break;

        case 'n':
            n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 10000) {
                fprintf(stderr, "chat_worker: --partitions: 1 to 10000\n");
                return false;
            }
            o->partitions = (int) n;
            break;

        case 'm':
            n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > NGX_CHAT_WIRE_GROUP_MEMBERS_MAX) {
                fprintf(stderr, "chat_worker: --max-group-members: 1 to %d\n",
                        NGX_CHAT_WIRE_GROUP_MEMBERS_MAX);
                return false;
            }
            o->max_group_members = n;
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
        fprintf(stderr, "chat_worker: unexpected argument %s\n", argv[optind]);
        chat_usage(stderr);
        return false;
    }

    return true;
}


static void
chat_signals(void)
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = chat_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* a Redis or PostgreSQL socket closing under a write is an error to
     * handle, not a reason to die */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}


/* what the batches of one stats interval did, and where their time went */
typedef struct {
    uint64_t  records;
    uint64_t  batches;
    int64_t   queued_sum;
    int64_t   queued_max;
    uint64_t  queued_n;
    int64_t   batch_sum;
    int64_t   batch_max;
} chat_batch_stats_t;


static int64_t
chat_oldest_record(const chat_record_t *records, size_t n)
{
    int64_t  oldest = -1;
    size_t   i;

    for (i = 0; i < n; i++) {
        if (records[i].timestamp >= 0
            && (oldest < 0 || records[i].timestamp < oldest))
        {
            oldest = records[i].timestamp;
        }
    }

    return oldest;
}


static void
chat_stats_add(chat_batch_stats_t *stats, size_t records, int64_t queued,
    int64_t batch)
{
    stats->records += records;
    stats->batches++;

    if (queued >= 0) {
        stats->queued_sum += queued;
        stats->queued_n++;
        if (queued > stats->queued_max) {
            stats->queued_max = queued;
        }
    }

    stats->batch_sum += batch;
    if (batch > stats->batch_max) {
        stats->batch_max = batch;
    }
}

int
main(int argc, char **argv)
{
    chat_options_t    o;
    chat_batch_ctx_t  ctx;
    chat_kafka_t     *kafka = NULL;
    chat_members_cache_t  members;
    unsigned          rebalances = 0;
    chat_record_t    *records;
    size_t            n;
    int64_t           since, now, started, oldest;
    chat_batch_stats_t  stats;
    int               rc = 1;
    char              delivered_key[NGX_CHAT_WIRE_KEY_MAX];

    if (!chat_parse_options(argc, argv, &o)) {
        return 2;
    }

    chat_signals();

    memset(&ctx, 0, sizeof(ctx));
    memset(&members, 0, sizeof(members));
    ctx.stop = &stop_requested;
    ctx.members = &members;
    ctx.max_group_members = (size_t) o.max_group_members;
    records = chat_alloc(CHAT_BATCH_MAX * sizeof(chat_record_t));

    log_info("starting: brokers %s topic %s group %s redis %s", o.brokers,
             o.topic, o.group, o.redis);

    ctx.store = chat_store_open(o.pg, ctx.stop);
    if (ctx.store == NULL) {
        goto done;
    }

    snprintf(delivered_key, sizeof(delivered_key),
             NGX_CHAT_WIRE_KEY_DELIVERED "%s:%s",
             o.topic, o.group);

    ctx.redis = chat_redis_open(o.redis, delivered_key, ctx.stop);
    if (ctx.redis == NULL) {
        goto done;
    }

    kafka = chat_kafka_open(o.brokers, o.topic, o.group, o.partitions,
                            ctx.stop);
    if (kafka == NULL) {
        goto done;
    }

    since = chat_now_ms();
    memset(&stats, 0, sizeof(stats));

    while (!stop_requested) {
        n = chat_kafka_collect(kafka, records, CHAT_BATCH_MAX);

        if (chat_kafka_rebalances(kafka) != rebalances) {
            /* partitions moved: another worker may have changed groups
             * this one has cached */
            rebalances = chat_kafka_rebalances(kafka);
            chat_members_clear(&members);
            chat_members_release(&members);
        }

        if (n > 0) {
            started = chat_now_ms();
            oldest = chat_oldest_record(records, n);

            if (!chat_batch_process(&ctx, records, n)) {
                /* stopped while PostgreSQL or Redis was away: nothing of
                 * this batch is committed */
                chat_kafka_release(kafka);
                break;
            }

            chat_kafka_commit(kafka);
            chat_stats_add(&stats, n, oldest >= 0 ? started - oldest : -1,
                           chat_now_ms() - started);
        }

        now = chat_now_ms();

        if (now - since >= CHAT_STATS_INTERVAL_MS) {
            if (stats.batches) {
                /* "queued": produced until picked up (nginx, Kafka and
                 * this worker's previous batches); "batch": stored,
                 * answered and delivered */
                log_info("%" PRIu64 " records in %" PRIu64 " batches,"
                         " %.0f records/s; ms queued avg %.1f max %" PRId64
                         ", batch avg %.1f max %" PRId64, stats.records,
                         stats.batches,
                         (double) stats.records * 1000.0
                         / (double) (now - since),
                         stats.queued_n ? (double) stats.queued_sum
                                          / (double) stats.queued_n : 0.0,
                         stats.queued_max,
                         (double) stats.batch_sum / (double) stats.batches,
                         stats.batch_max);
            }

            memset(&stats, 0, sizeof(stats));
            since = now;
        }
    }

    log_info("stopping");
    rc = 0;

done:

    if (rc && stop_requested) {
        rc = 0;     /* asked to stop while still starting */
    }

    chat_kafka_close(kafka);
    chat_redis_close(ctx.redis);
    chat_store_close(ctx.store);
    chat_members_clear(&members);
    chat_members_release(&members);
    free(members.retired);
    free(records);

    return rc;
}
