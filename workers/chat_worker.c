/*
 * chat_worker.c: the command line, the signals and the batch loop of
 * chat_worker, the consumer of the requests topic (worker.h lists the
 * parts).
 *
 *   collect a batch -> store and answer it -> its pushes acknowledged by
 *   Kafka -> commit its offsets
 *
 * SIGTERM and SIGINT only set a flag: the batch in hand is finished and its
 * offsets committed, then the worker leaves the consumer group and exits 0.
 * If the flag comes while the worker waits for PostgreSQL or Redis, the
 * batch is abandoned uncommitted: the next owner of its partitions gets it
 * again, and the store recognises what was already stored.
 *
 * Beside the batches, the loop has chat:revoked written again when its
 * Redis is new or lost the hash (worker_control.c), writes the search
 * index after the sends, one statement a turn at most (worker_index.c),
 * and --metrics starts the metrics endpoint's thread (worker_httpd.c),
 * which reads the figures the parts count and never touches the loop's
 * objects.
 *
 * While it waits, the consumer is kept alive (chat_kafka_hold: paused and
 * polled), however long the outage; a rebalance that takes a partition of
 * the batch meanwhile makes the worker give the batch up and go on with
 * what it still holds. The partitions' epochs, marks and chain heads
 * (worker_chain.c) follow the assignments; a partition fenced by a newer
 * owner is left to it.
 */

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_batch.h"
#include "worker_contacts.h"
#include "worker_httpd.h"
#include "worker_lag.h"
#include "worker_metrics.h"
#include "worker_stats.h"


typedef struct {
    const char  *brokers;
    const char  *topic;
    const char  *group;
    const char  *pg;
    const char  *redis;
    int          partitions;
    long         max_group_members;
    long         receipt_fanout_max;
    const char  *push_endpoints;
    const char  *push_topic;
    chat_media_t media;
    const char  *metrics;
    long         search_index_ms;
    chat_kafka_tuning_t  kafka;
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
        "  --receipt-fanout-max N     groups of more members hear of a"
        " receipt only as its\n"
        "                             reader's devices and the senders it"
        " covers (256)\n"
        "  --max-poll-interval-ms N   Kafka's max.poll.interval.ms (300000;"
        " tests set it low)\n"
        "  --commit-every-ms N        offset commits at most this often"
        " (200)\n"
        "  --fetch-wait-ms N          a fetch waits this long at most for a"
        " fuller batch (8):\n"
        "                             lower is less latency, more Kafka"
        " requests at light load\n"
        "  --push-endpoints P[,P...]  the URL prefixes push_register may"
        " name (any http(s) URL)\n"
        "  --push-topic NAME          where pushes to offline devices go ("
        NGX_CHAT_WIRE_PUSH_TOPIC ";\n"
        "                             created with --partitions)\n"
        "  --media-secret S           nginx's chat_media_secret (attachments"
        " off without it)\n"
        "  --media-url URL            nginx's chat_media_url\n"
        "  --media-root DIR           where nginx stores the files\n"
        "  --media-url-ttl-ms N       how long a GET URL holds (900000)\n"
        "  --media-keep-ms N          uploads never attached go after this"
        " (86400000)\n"
        "  --metrics HOST:PORT        serve Prometheus metrics on"
        " http://HOST:PORT/metrics\n"
        "  --search-index-ms N        sent messages wait at most this long"
        " for the search\n"
        "                             index (250; less when many are"
        " waiting)\n"
        "  --help\n"
        "\n"
        "Logs one JSON object per line on stderr. SIGTERM or SIGINT: the"
        " batch in\n"
        "hand is finished and committed, then the worker leaves the group"
        " and\n"
        "exits 0.\n");
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
        { "receipt-fanout-max", required_argument, NULL, 'F' },
        { "metrics",    required_argument, NULL, 'M' },
        { "max-poll-interval-ms", required_argument, NULL, 'P' },
        { "commit-every-ms", required_argument, NULL, 'C' },
        { "fetch-wait-ms", required_argument, NULL, 'W' },
        { "push-endpoints", required_argument, NULL, 'E' },
        { "push-topic", required_argument, NULL, 'Q' },
        { "media-secret", required_argument, NULL, 'S' },
        { "media-url", required_argument, NULL, 'U' },
        { "media-root", required_argument, NULL, 'R' },
        { "media-url-ttl-ms", required_argument, NULL, 'T' },
        { "media-keep-ms", required_argument, NULL, 'K' },
        { "search-index-ms", required_argument, NULL, 'I' },
        { "help",       no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    static const char  prog[] = "chat_worker";

    long  n;
    int   c;

    o->brokers = "127.0.0.1:9092";
    o->topic = NGX_CHAT_WIRE_TOPIC;
    o->group = "chat-workers";
    o->pg = "dbname=chat";
    o->redis = "127.0.0.1:6379";
    o->partitions = 4;
    o->max_group_members = NGX_CHAT_WIRE_GROUP_MEMBERS;
    o->receipt_fanout_max = NGX_CHAT_WIRE_RECEIPT_FANOUT;
    o->push_endpoints = NULL;
    o->push_topic = NGX_CHAT_WIRE_PUSH_TOPIC;
    memset(&o->media, 0, sizeof(o->media));
    o->media.ttl_ms = 900000;
    o->media.keep_ms = 86400000;
    o->metrics = NULL;
    o->search_index_ms = 250;
    o->kafka.max_poll_interval_ms = 0;
    o->kafka.commit_every_ms = 0;
    o->kafka.client_id = NULL;
    o->kafka.fetch_wait_ms = 0;

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
            if (!chat_option_long(prog, "partitions", optarg, 1, 10000, &n)) {
                return false;
            }
            o->partitions = (int) n;
            break;

        case 'm':
            if (!chat_option_long(prog, "max-group-members", optarg, 1,
                                  NGX_CHAT_WIRE_GROUP_MEMBERS_MAX,
                                  &o->max_group_members))
            {
                return false;
            }
            break;

        case 'F':
            if (!chat_option_long(prog, "receipt-fanout-max", optarg, 1,
                                  NGX_CHAT_WIRE_GROUP_MEMBERS_MAX,
                                  &o->receipt_fanout_max))
            {
                return false;
            }
            break;

        case 'M':
            o->metrics = optarg;
            break;

        case 'P':
        case 'C':
            /* Kafka itself refuses a poll interval below the session
             * timeout (6 s) */
            if (!chat_option_long(prog, c == 'P' ? "max-poll-interval-ms"
                                                 : "commit-every-ms",
                                  optarg, c == 'P' ? 6000 : 1, 86400000, &n))
            {
                return false;
            }

            if (c == 'P') {
                o->kafka.max_poll_interval_ms = (int) n;
            } else {
                o->kafka.commit_every_ms = (int) n;
            }
            break;

        case 'W':
            if (!chat_option_long(prog, "fetch-wait-ms", optarg, 1, 1000,
                                  &n))
            {
                return false;
            }
            o->kafka.fetch_wait_ms = (int) n;
            break;

        case 'E':
            o->push_endpoints = optarg;
            break;

        case 'Q':
            o->push_topic = optarg;
            break;

        case 'S':
            o->media.secret = optarg;
            break;

        case 'U':
            o->media.url = optarg;
            break;

        case 'R':
            o->media.root = optarg;
            break;

        case 'T':
            if (!chat_option_long(prog, "media-url-ttl-ms", optarg, 1000,
                                  604800000, &n))
            {
                return false;
            }
            o->media.ttl_ms = n;
            break;

        case 'K':
            if (!chat_option_long(prog, "media-keep-ms", optarg, 1000,
                                  31536000000L, &n))
            {
                return false;
            }
            o->media.keep_ms = n;
            break;

        case 'I':
            if (!chat_option_long(prog, "search-index-ms", optarg, 1,
                                  86400000, &o->search_index_ms))
            {
                return false;
            }
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


/* the parts, opened in the order data flows back: the store and Redis
 * before the consumer, so that no record is taken before it can be
 * answered */
typedef struct {
    chat_batch_ctx_t      ctx;
    chat_members_cache_t  members;
    chat_lists_t         *lists;
    chat_stream_t         stream;
    chat_chain_t          chain;
    chat_contacts_t       contacts;
    chat_pushes_t        *pushes;
    chat_kafka_t         *kafka;
    chat_record_t        *records;
    chat_metrics_t        metrics;
    chat_lag_t           *lag;
    chat_httpd_t         *httpd;
    chat_index_t          index;
    chat_store_t         *index_store;  /* the search index's connection */
    /* partitions cut for an image (paused until it is made), and cuts
     * resumed a moment ago: how long their sends have waited */
    chat_batch_cut_t      waiting[CHAT_BATCH_CUTS_MAX];
    size_t                nwaiting;
} chat_worker_t;


static void
chat_worker_log_start(const chat_options_t *o)
{
    chat_log_line_t  l;

    chat_log_begin(&l, "info", "starting");
    chat_log_str(&l, "brokers", o->brokers);
    chat_log_str(&l, "topic", o->topic);
    chat_log_str(&l, "push_topic", o->push_topic);
    chat_log_str(&l, "group", o->group);
    chat_log_str(&l, "redis", o->redis);
    chat_log_str(&l, "metrics", o->metrics);
    chat_log_int(&l, "max_group_members", o->max_group_members);
    chat_log_int(&l, "receipt_fanout_max", o->receipt_fanout_max);
    chat_log_int(&l, "search_index_ms", o->search_index_ms);
    chat_log_end(&l);
}


/* what the waits for PostgreSQL and Redis do meanwhile */
static bool
chat_worker_keepalive(void *data)
{
    chat_worker_t  *w = data;

    return chat_kafka_hold(w->kafka);
}


/* the metrics thread's pages (worker_httpd.h) */
static void
chat_worker_metrics_page(void *data, chat_buf_t *b)
{
    chat_worker_t  *w = data;

    chat_metrics_text(&w->metrics, b);
}


static void
chat_worker_metrics_tick(void *data)
{
    chat_worker_t  *w = data;

    chat_lag_refresh(w->lag, &w->metrics);
}


static bool
chat_worker_open(chat_worker_t *w, const chat_options_t *o,
    chat_stop_t *stop)
{
    char  delivered_key[NGX_CHAT_WIRE_KEY_MAX];
    char  epoch_key[NGX_CHAT_WIRE_KEY_MAX];

    memset(w, 0, sizeof(*w));
    w->ctx.stop = stop;
    w->ctx.members = &w->members;
    w->ctx.chain = &w->chain;
    chat_contacts_init(&w->contacts);
    w->ctx.max_group_members = (size_t) o->max_group_members;
    w->ctx.receipt_fanout_max = (size_t) o->receipt_fanout_max;
    w->ctx.push_endpoints = o->push_endpoints;
    w->ctx.media = o->media.secret && o->media.url && o->media.root
                   ? &o->media : NULL;
    w->records = chat_alloc(CHAT_BATCH_MAX * sizeof(chat_record_t));
    chat_metrics_init(&w->metrics);
    w->ctx.metrics = &w->metrics;
    chat_index_init(&w->index, o->search_index_ms, CHAT_INDEX_MAX,
                    CHAT_INDEX_SWEEP_MS);
    w->ctx.index = &w->index;

    chat_worker_log_start(o);

    /* first, so that a scrape answers while the rest waits for servers */
    if (o->metrics) {
        chat_httpd_site_t  site = { chat_worker_metrics_page, NULL, NULL,
                                    5000, w };

        w->lag = chat_lag_open(o->brokers, o->topic, o->group);
        if (w->lag) {
            site.tick = chat_worker_metrics_tick;
        }

        w->httpd = chat_httpd_start(o->metrics, &site);

        if (w->httpd == NULL) {
            return false;
        }
    }

    w->ctx.store = chat_store_open(o->pg, w->ctx.stop);
    if (w->ctx.store == NULL) {
        return false;
    }

    chat_store_set_metrics(w->ctx.store, &w->metrics);

    /* its statements are not the send path's: not in its figures */
    w->index_store = chat_store_open(o->pg, w->ctx.stop);
    if (w->index_store == NULL) {
        return false;
    }

    /* uploaded images decoded beside the batches, not in them */
    if (w->ctx.media) {
        w->ctx.images = chat_images_start(o->pg, w->ctx.media, w->ctx.stop);
        if (w->ctx.images == NULL) {
            return false;
        }
    }

    w->ctx.control = chat_control_open(o->redis, w->ctx.stop, &w->metrics);
    if (w->ctx.control == NULL) {
        return false;
    }

    /* the revocations into Redis before the first record: a start may
     * follow a Redis that lost them */
    chat_control_tick(w->ctx.control, w->ctx.store);

    snprintf(delivered_key, sizeof(delivered_key),
             NGX_CHAT_WIRE_KEY_DELIVERED "%s:%s", o->topic, o->group);

    snprintf(epoch_key, sizeof(epoch_key),
             NGX_CHAT_WIRE_KEY_EPOCH "%s:%s", o->topic, o->group);

    w->ctx.redis = chat_redis_open(o->redis, delivered_key, epoch_key,
                                   &w->chain, w->ctx.stop);
    if (w->ctx.redis == NULL) {
        return false;
    }

    w->lists = chat_lists_open(o->redis, w->ctx.stop);
    if (w->lists == NULL) {
        return false;
    }

    chat_stream_init(&w->stream, w->lists);
    w->ctx.stream = &w->stream;

    /* before the consumer: a batch's pushes need the topic */
    w->pushes = chat_pushes_open(o->brokers, o->push_topic, o->partitions,
                                 w->ctx.stop);
    if (w->pushes == NULL) {
        return false;
    }

    w->ctx.pushes = w->pushes;

    w->kafka = chat_kafka_open(o->brokers, o->topic, o->group,
                               o->partitions, &o->kafka, w->ctx.stop);
    if (w->kafka == NULL) {
        return false;
    }

    chat_store_set_wait(w->ctx.store, chat_worker_keepalive, w);
    chat_store_set_wait(w->index_store, chat_worker_keepalive, w);
    chat_redis_set_wait(w->ctx.redis, chat_worker_keepalive, w);
    chat_pushes_set_wait(w->pushes, chat_worker_keepalive, w);

    return true;
}


/* the assignments since the last look: each partition taken gets a new
 * epoch, its mark and heads to be loaded; each one lost is forgotten */
static void
chat_worker_rebalanced(chat_worker_t *w)
{
    chat_kafka_event_t  ev[64];
    int64_t             now_us;
    size_t              n, i;

    while ((n = chat_kafka_events(w->kafka, ev, 64)) > 0) {
        now_us = chat_now_ms() * 1000;

        for (i = 0; i < n; i++) {
            if (ev[i].assigned) {
                chat_chain_assign(&w->chain, ev[i].partition, now_us);
                chat_index_assign(&w->index, ev[i].partition);
            } else {
                chat_chain_revoke(&w->chain, ev[i].partition);
                chat_index_revoke(&w->index, ev[i].partition);
            }
        }
    }
}


/* the partitions a newer owner fenced: not committed, not consumed */
static void
chat_worker_fenced(chat_worker_t *w)
{
    size_t  i;

    for (i = 0; i < w->chain.nparts; i++) {
        if (w->chain.parts[i].fenced) {
            chat_kafka_fence(w->kafka, w->chain.parts[i].partition);
        }
    }
}


/* uploads never attached, and their files, once they are older than
 * keep_ms; every worker sweeps, a row goes to one of them */
static void
chat_worker_sweep(chat_worker_t *w)
{
    chat_arena_t   arena;
    char         **ids;
    size_t         n, i;

    memset(&arena, 0, sizeof(arena));

    if (chat_store_stale_uploads(w->ctx.store,
                                 chat_now_ms() - w->ctx.media->keep_ms,
                                 &ids, &n, &arena)
        == CHAT_STORE_OK)
    {
        for (i = 0; i < n; i++) {
            chat_media_remove(w->ctx.media, ids[i]);
        }

        if (n > 0) {
            log_info("media: %zu uploads never attached removed", n);
        }
    }

    chat_arena_free(&arena);
}


/*
 * The search index, at each turn of the loop, on its own connection: the
 * statement running asked how it went, or the next one started (its ids
 * are indexed while the batches go on). A partition taken is looked over
 * for what a predecessor stored and never indexed, waited for: one
 * statement, rarely. On a stop, what runs and what is pending are waited
 * for.
 */
static void
chat_worker_index(chat_worker_t *w, bool stopping)
{
    chat_index_t           *ix = &w->index;
    chat_store_rc_t         rc;
    chat_store_index_rc_t   irc;
    int64_t                 indexed = 0;
    int32_t                 partition;

    if (ix->running) {
        irc = chat_store_index_poll(w->index_store, stopping, &indexed);

        if (irc == CHAT_STORE_INDEX_RUNNING) {
            return;
        }

        if (irc == CHAT_STORE_INDEX_FAILED) {
            log_error("search: %zu messages not indexed: their partitions"
                      " are looked over instead", ix->nrun);
        }

        chat_index_flushed(ix, irc == CHAT_STORE_INDEX_DONE);

        if (!stopping) {
            return;
        }
    }

    switch (chat_index_next(ix, chat_now_ms(), stopping, &partition)) {

    case CHAT_INDEX_PARTITION:
        rc = chat_store_index_partition(w->index_store, partition, &indexed);

        if (rc == CHAT_STORE_OK) {
            chat_index_looked_over(ix, partition);

            if (indexed > 0) {
                log_info("search: %" PRId64 " messages of partition %d"
                         " indexed late", indexed, (int) partition);
            }

        } else if (rc == CHAT_STORE_REFUSED) {
            log_error("search: partition %d could not be looked over",
                      (int) partition);
            chat_index_looked_over(ix, partition);
        }

        break;

    case CHAT_INDEX_FLUSH:
        chat_index_take(ix);

        if (!chat_store_index_start(w->index_store, ix->run_ids, ix->nrun,
                                    ix->run_parts, ix->run_offsets,
                                    ix->nrun_parts))
        {
            log_error("search: %zu messages not indexed: their partitions"
                      " are looked over instead", ix->nrun);
            chat_index_flushed(ix, false);

        } else if (stopping) {
            irc = chat_store_index_poll(w->index_store, true, &indexed);
            chat_index_flushed(ix, irc == CHAT_STORE_INDEX_DONE);
        }

        break;

    case CHAT_INDEX_IDLE:
        break;
    }
}


/* collect a batch -> process it -> commit it, until stopped */
/* the batch's cuts, paused now, among those waited on */
static void
chat_worker_cuts(chat_worker_t *w)
{
    chat_batch_cut_t  *c;
    size_t             i, k;

    for (i = 0; i < w->ctx.ncuts; i++) {
        c = &w->ctx.cuts[i];

        for (k = 0; k < w->nwaiting; k++) {
            if (w->waiting[k].partition == c->partition) {
                break;
            }
        }

        if (k == w->nwaiting) {
            if (w->nwaiting == CHAT_BATCH_CUTS_MAX) {
                continue;   /* resumed at once: cut again, or taken */
            }

            w->nwaiting++;
        }

        w->waiting[k] = *c;
        w->waiting[k].paused = true;
    }
}


/*
 * The partitions paused for an image are consumed again once it is made
 * (or they have waited long enough); a resumed one is remembered a while
 * for its since. While any is paused, an idle poll waits little, so that
 * the image's send follows its image closely.
 */
static void
chat_worker_waiting(chat_worker_t *w)
{
    chat_batch_cut_t  *c;
    int64_t            now = chat_now_ms();
    size_t             i, kept, paused = 0;

    for (i = 0, kept = 0; i < w->nwaiting; i++) {
        c = &w->waiting[i];

        if (c->paused
            && (!chat_images_pending(w->ctx.images, c->id)
                || now - c->since >= CHAT_BATCH_CUT_MAX_MS))
        {
            chat_kafka_undefer(w->kafka, c->partition);
            c->paused = false;
        }

        if (!c->paused && now - c->since >= 2 * CHAT_BATCH_CUT_MAX_MS) {
            continue;
        }

        paused += c->paused;
        w->waiting[kept++] = *c;
    }

    w->nwaiting = kept;
    w->ctx.waiting = w->waiting;
    w->ctx.nwaiting = w->nwaiting;
    chat_kafka_set_idle(w->kafka, paused ? 5 : 0);
}


static void
chat_worker_run(chat_worker_t *w)
{
    chat_stats_t  stats;
    unsigned      rebalances = 0;
    int64_t       started, started_us, sweep_every, next_sweep = 0;
    size_t        n, i;

    chat_stats_start(&stats, chat_now_ms());

    /* a quarter of the time an upload is kept, between 1 s and 1 min */
    sweep_every = w->ctx.media ? w->ctx.media->keep_ms / 4 : 0;
    sweep_every = sweep_every < 1000 ? 1000
                  : sweep_every > 60000 ? 60000 : sweep_every;

    while (!*w->ctx.stop) {
        if (w->ctx.media && chat_now_ms() >= next_sweep) {
            chat_worker_sweep(w);
            next_sweep = chat_now_ms() + sweep_every;
        }

        if (w->nwaiting) {
            chat_worker_waiting(w);
        }

        n = chat_kafka_collect(w->kafka, w->records, CHAT_BATCH_MAX);

        chat_worker_rebalanced(w);

        if (chat_kafka_rebalances(w->kafka) != rebalances) {
            /* partitions moved: another worker may have changed groups
             * this one has cached */
            rebalances = chat_kafka_rebalances(w->kafka);
            chat_members_clear(&w->members);
            chat_members_release(&w->members);
        }

        if (n > 0) {
            started = chat_now_ms();
            started_us = chat_metrics_now_us();

            if (!chat_batch_process(&w->ctx, w->records, n)) {
                if (*w->ctx.stop) {
                    /* stopped while PostgreSQL or Redis was away: nothing
                     * of this batch is committed */
                    chat_kafka_release(w->kafka);
                    break;
                }

                /* its partitions moved while it waited: its new owners
                 * answer it */
                log_warn("a batch of %zu records given up: partitions moved"
                         " while it waited", n);
                chat_kafka_abandon(w->kafka);
                chat_worker_rebalanced(w);
                chat_kafka_resume(w->kafka);
                continue;
            }

            chat_worker_fenced(w);

            for (i = 0; i < w->ctx.ncuts; i++) {
                chat_kafka_defer(w->kafka, w->ctx.cuts[i].partition,
                                 w->ctx.cuts[i].offset);
            }

            chat_kafka_commit(w->kafka);
            chat_worker_cuts(w);
            chat_kafka_resume(w->kafka);
            chat_stats_batch(&stats, w->records, n, started, chat_now_ms());
            chat_metrics_batch(&w->metrics, n, started_us,
                               chat_metrics_now_us(),
                               chat_stats_queued(w->records, n, started));

        } else {
            /* idle: a Redis that restarted is noticed, and the chain
             * heads written again, within a second */
            chat_redis_tick(w->ctx.redis);
            chat_worker_fenced(w);
            chat_kafka_resume(w->kafka);
        }

        chat_worker_index(w, false);
        chat_contacts_tick(&w->contacts, w->ctx.store, w->ctx.redis,
                           chat_now_ms());
        chat_stats_tick(&stats, chat_now_ms());
        chat_control_tick(w->ctx.control, w->ctx.store);
    }
}


static void
chat_worker_close(chat_worker_t *w)
{
    chat_httpd_stop(w->httpd);
    chat_lag_close(w->lag);
    chat_kafka_close(w->kafka);
    chat_pushes_close(w->pushes);
    chat_control_close(w->ctx.control);
    chat_stream_free(&w->stream);
    chat_lists_close(w->lists);
    chat_redis_close(w->ctx.redis);
    chat_images_stop(w->ctx.images);
    chat_store_close(w->ctx.store);
    chat_store_close(w->index_store);
    chat_members_clear(&w->members);
    chat_members_release(&w->members);
    chat_chain_free(&w->chain);
    chat_contacts_free(&w->contacts);
    chat_index_free(&w->index);
    free(w->members.retired);
    free(w->records);
}


int
main(int argc, char **argv)
{
    chat_options_t   o;
    chat_worker_t    w;
    chat_stop_t     *stop;
    chat_log_line_t  line;
    int              rc = 0;

    if (!chat_parse_options(argc, argv, &o)) {
        return 2;
    }

    stop = chat_stop_on_signals();

    if (chat_worker_open(&w, &o, stop)) {
        chat_worker_run(&w);
        /* what runs and what is pending, if PostgreSQL answers; else the
         * partitions' next owners index it */
        chat_worker_index(&w, true);
        chat_log_begin(&line, "info", "stopping");
        chat_log_end(&line);

    } else if (!*stop) {
        rc = 1;     /* a stop while still starting is no failure */
    }

    chat_worker_close(&w);

    return rc;
}
