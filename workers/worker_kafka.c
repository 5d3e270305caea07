/*
 * worker_kafka.c: the Kafka side of chat_worker: creating the requests
 * topic, the consumer group membership, collecting batches, rebalances and
 * offset commits.
 *
 * Offsets are committed by hand (enable.auto.commit=false), only after the
 * batch's PostgreSQL COMMIT and its Redis PUBLISH: a worker that dies in
 * between leaves the records to be consumed again, and the store recognises
 * them (at-least-once, deduplicated).
 *
 * Commits are asynchronous and coalesced: at most one OffsetCommit is in
 * flight, at most one goes out every CHAT_COMMIT_EVERY_MS, and the positions
 * of the batches processed meanwhile go out in the next one (sent after a
 * batch, from the offset commit callback served by consumer_poll, or when
 * the consumer is idle). Committing every small batch cost the broker more
 * than the records themselves, and would queue requests faster than a
 * broker with an append linger answers them.
 *
 * Rebalances: the rebalance callback also runs inside consumer_poll, so
 * everything processed is committed, in flight or pending then; revoking
 * commits what is pending synchronously, while the partitions are still
 * ours. Records of a revoked partition that the collection had already
 * picked up are dropped unprocessed and left to the partition's next owner.
 * Closing the consumer waits for the commit in flight.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "worker_kafka.h"
#include "worker_util.h"


#define CHAT_POLL_IDLE_MS      100     /* how soon an idle loop sees stop */
#define CHAT_BATCH_WINDOW_MS   2       /* wait for more after the first */
/* an OffsetCommit costs the broker a write to __consumer_offsets and a group
 * coordinator event: once per batch it was most of the broker's CPU at low
 * rates. Positions wait this long at most; after a crash the records of that
 * window are consumed again, and the store and the delivered marks
 * recognise them. */
#define CHAT_COMMIT_EVERY_MS   200
#define CHAT_ADMIN_TIMEOUT_MS  15000


struct chat_kafka_s {
    rd_kafka_t                        *rk;
    char                              *topic;
    chat_stop_t                       *stop;

    rd_kafka_message_t               **held;      /* the current batch */
    size_t                             nheld;

    /* set by the rebalance callback while a batch is being collected */
    rd_kafka_topic_partition_list_t   *revoked;

    /* positions processed but not yet sent in a commit, and whether a
     * commit is in flight (since when, in case its answer never comes) */
    rd_kafka_topic_partition_list_t   *pending;
    bool                               in_flight;
    int64_t                            in_flight_since;
    int64_t                            last_commit;

    /* every assignment and revocation: the membership cache is only
     * right for partitions held all along (worker_members.c) */
    unsigned                           rebalances;
};


static int64_t
chat_monotonic_ms(void)
{
    struct timespec  now;

    clock_gettime(CLOCK_MONOTONIC, &now);

    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}


static void
chat_kafka_log_cb(const rd_kafka_t *rk, int level, const char *facility,
    const char *message)
{
    (void) rk;

    chat_log(level <= 3 ? "error" : level <= 4 ? "warn" : "info",
             "kafka %s: %s", facility, message);
}


static void
chat_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void) rk;
    (void) opaque;

    log_error("kafka: %s: %s", rd_kafka_err2name(err), reason);
}


static void
chat_kafka_log_partitions(const char *what,
    const rd_kafka_topic_partition_list_t *parts)
{
    chat_buf_t  b = { 0 };
    int         i;

    for (i = 0; i < parts->cnt; i++) {
        chat_buf_printf(&b, "%s%d", i ? "," : "", parts->elems[i].partition);
    }

    log_info("kafka: %s partitions [%s]", what, b.len ? chat_buf_cstr(&b) : "");
    chat_buf_free(&b);
}


/* keeps the highest offset per partition of from in into */
static void
chat_kafka_merge_offsets(rd_kafka_topic_partition_list_t *into,
    const rd_kafka_topic_partition_list_t *from)
{
    rd_kafka_topic_partition_t  *p;
    int                          i;

    for (i = 0; i < from->cnt; i++) {
        if (from->elems[i].offset < 0) {
            continue;
        }

        p = rd_kafka_topic_partition_list_find(into, from->elems[i].topic,
                                               from->elems[i].partition);
        if (p == NULL) {
            p = rd_kafka_topic_partition_list_add(into, from->elems[i].topic,
                                                  from->elems[i].partition);
            p->offset = from->elems[i].offset;

        } else if (from->elems[i].offset > p->offset) {
            p->offset = from->elems[i].offset;
        }
    }
}


/* adds positions to those waiting for the next commit */
static void
chat_kafka_pend(chat_kafka_t *k, const rd_kafka_topic_partition_list_t *l)
{
    if (l->cnt == 0) {
        return;
    }

    if (k->pending == NULL) {
        k->pending = rd_kafka_topic_partition_list_new(l->cnt);
    }

    chat_kafka_merge_offsets(k->pending, l);
}


/* sends the pending positions unless a commit is in flight */
static void
chat_kafka_send_commit(chat_kafka_t *k)
{
    rd_kafka_resp_err_t  err;

    if (k->pending == NULL
        || chat_monotonic_ms() - k->last_commit < CHAT_COMMIT_EVERY_MS)
    {
        return;
    }

    if (k->in_flight) {
        /* an answer that never came must not stop committing for good */
        if (chat_monotonic_ms() - k->in_flight_since < 30000) {
            return;
        }

        log_warn("kafka: no answer to an offset commit for 30 s");
    }

    err = rd_kafka_commit(k->rk, k->pending, 1 /* asynchronous */);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* kept pending, sent with the next batch's commit */
        log_warn("kafka: offset commit not sent: %s", rd_kafka_err2str(err));
        return;
    }

    rd_kafka_topic_partition_list_destroy(k->pending);
    k->pending = NULL;
    k->in_flight = true;
    k->in_flight_since = chat_monotonic_ms();
    k->last_commit = k->in_flight_since;
}


/*
 * The answer to an asynchronous commit. A failed commit's positions go back
 * to pending, under newer ones, for the partitions still assigned; those
 * that moved meanwhile are their new owner's, who sees the records again
 * and whose store recognises them.
 */
static void
chat_kafka_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    chat_kafka_t                     *k = opaque;
    rd_kafka_topic_partition_list_t  *assigned = NULL, *retry;
    int                               i;

    k->in_flight = false;

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR
        && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
    {
        log_warn("kafka: offset commit failed: %s", rd_kafka_err2str(err));

        if (offsets && rd_kafka_assignment(rk, &assigned) == 0) {
            retry = rd_kafka_topic_partition_list_new(offsets->cnt);

            for (i = 0; i < offsets->cnt; i++) {
                rd_kafka_topic_partition_t  *p = &offsets->elems[i];

                if (rd_kafka_topic_partition_list_find(assigned, p->topic,
                                                       p->partition))
                {
                    rd_kafka_topic_partition_list_add(retry, p->topic,
                        p->partition)->offset = p->offset;
                }
            }

            chat_kafka_pend(k, retry);
            rd_kafka_topic_partition_list_destroy(retry);
            rd_kafka_topic_partition_list_destroy(assigned);
        }
    }

    chat_kafka_send_commit(k);
}


static void
chat_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    chat_kafka_t        *k = opaque;
    rd_kafka_error_t    *error = NULL;
    rd_kafka_resp_err_t  rc = RD_KAFKA_RESP_ERR_NO_ERROR;
    bool                 cooperative;
    int                  i;

    cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    k->rebalances++;

    switch (err) {

    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        chat_kafka_log_partitions("assigned", parts);

        if (cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
        } else {
            rc = rd_kafka_assign(rk, parts);
        }

        break;

    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        chat_kafka_log_partitions("revoked", parts);

        /* what is processed but not yet committed goes now, while the
         * partitions are still ours; after that, it is the next owner's */
        if (k->pending) {
            rc = rd_kafka_commit(rk, k->pending, 0 /* synchronous */);

            if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
                log_warn("kafka: offset commit on revoke failed: %s",
                         rd_kafka_err2str(rc));
                rc = RD_KAFKA_RESP_ERR_NO_ERROR;
            }

            rd_kafka_topic_partition_list_destroy(k->pending);
            k->pending = NULL;
        }

        if (k->revoked == NULL) {
            k->revoked = rd_kafka_topic_partition_list_new(parts->cnt);
        }

        for (i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_list_add(k->revoked, parts->elems[i].topic,
                                              parts->elems[i].partition);
        }

        if (cooperative) {
            error = rd_kafka_incremental_unassign(rk, parts);
        } else {
            rc = rd_kafka_assign(rk, NULL);
        }

        break;

    default:
        log_error("kafka: rebalance failed: %s", rd_kafka_err2str(err));
        rc = rd_kafka_assign(rk, NULL);
        break;
    }

    if (error) {
        log_error("kafka: incremental assignment failed: %s",
                  rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }

    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error("kafka: assignment failed: %s", rd_kafka_err2str(rc));
    }
}


static bool
chat_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char  errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        log_error("kafka: cannot set %s=%s: %s", name, value, errstr);
        return false;
    }

    return true;
}


static bool
chat_kafka_topic_once(chat_kafka_t *k, int partitions)
{
    rd_kafka_NewTopic_t                  *topic;
    rd_kafka_AdminOptions_t              *options;
    rd_kafka_queue_t                     *queue;
    rd_kafka_event_t                     *event;
    const rd_kafka_CreateTopics_result_t *result;
    const rd_kafka_topic_result_t       **topics;
    rd_kafka_resp_err_t                   err;
    size_t                                ntopics;
    int                                   waited;
    char                                  errstr[512];
    bool                                  ok = false;

    topic = rd_kafka_NewTopic_new(k->topic, partitions, 1, errstr,
                                  sizeof(errstr));
    if (topic == NULL) {
        log_error("kafka: topic %s: %s", k->topic, errstr);
        return false;
    }

    options = rd_kafka_AdminOptions_new(k->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);

    if (rd_kafka_AdminOptions_set_operation_timeout(options,
            CHAT_ADMIN_TIMEOUT_MS, errstr, sizeof(errstr))
        || rd_kafka_AdminOptions_set_request_timeout(options,
            CHAT_ADMIN_TIMEOUT_MS, errstr, sizeof(errstr)))
    {
        log_error("kafka: admin options: %s", errstr);
    }

    queue = rd_kafka_queue_new(k->rk);
    rd_kafka_CreateTopics(k->rk, &topic, 1, options, queue);

    /* in slices, so that SIGTERM does not wait for the admin timeout */
    event = NULL;

    for (waited = 0;
         event == NULL && waited < CHAT_ADMIN_TIMEOUT_MS + 5000 && !*k->stop;
         waited += 200)
    {
        event = rd_kafka_queue_poll(queue, 200);
    }

    if (event == NULL) {
        log_error("kafka: creating topic %s: %s", k->topic,
                  *k->stop ? "stopped" : "no answer");

    } else if (rd_kafka_event_error(event)) {
        log_error("kafka: creating topic %s: %s", k->topic,
                  rd_kafka_event_error_string(event));

    } else {
        result = rd_kafka_event_CreateTopics_result(event);
        topics = rd_kafka_CreateTopics_result_topics(result, &ntopics);
        err = ntopics ? rd_kafka_topic_result_error(topics[0])
                      : RD_KAFKA_RESP_ERR_UNKNOWN;

        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_info("kafka: created topic %s with %d partitions", k->topic,
                     partitions);
            ok = true;

        } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            ok = true;

        } else {
            log_error("kafka: creating topic %s: %s", k->topic,
                      ntopics ? rd_kafka_topic_result_error_string(topics[0])
                              : "no result");
        }
    }

    if (event) {
        rd_kafka_event_destroy(event);
    }

    rd_kafka_queue_destroy(queue);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_NewTopic_destroy(topic);

    return ok;
}


/* the topic's partition count once the broker's metadata shows it; 0 while
 * it does not yet */
static int
chat_kafka_partition_count(chat_kafka_t *k)
{
    const struct rd_kafka_metadata  *md;
    rd_kafka_topic_t                *rkt;
    rd_kafka_resp_err_t              err;
    int                              count = 0;

    rkt = rd_kafka_topic_new(k->rk, k->topic, NULL);
    if (rkt == NULL) {
        return 0;
    }

    err = rd_kafka_metadata(k->rk, 0, rkt, &md, 5000);

    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == 0) {
            count = md->topics[0].partition_cnt;
        }

        rd_kafka_metadata_destroy(md);
    }

    rd_kafka_topic_destroy(rkt);

    return count;
}


/* creates the topic unless it exists and waits until it is usable: a
 * consumer subscribed to a topic it cannot see yet would only look again
 * minutes later */
static bool
chat_kafka_ensure_topic(chat_kafka_t *k, int partitions)
{
    chat_backoff_t  backoff = { 0 };
    int             count, tries;

    while (!chat_kafka_topic_once(k, partitions)) {
        if (!chat_backoff_wait(&backoff, k->stop)) {
            return false;
        }
    }

    for (tries = 0; (count = chat_kafka_partition_count(k)) == 0; tries++) {
        if (tries == 100 || !chat_sleep_ms(100, k->stop)) {
            log_error("kafka: topic %s does not show in the metadata",
                      k->topic);
            return false;
        }
    }

    if (count != partitions) {
        /* adding partitions would move conversations between partitions
         * and break their order: that is an operator's decision */
        log_warn("kafka: topic %s has %d partitions, not %d", k->topic,
                 count, partitions);
    }

    return true;
}


chat_kafka_t *
chat_kafka_open(const char *brokers, const char *topic, const char *group,
    int partitions, chat_stop_t *stop)
{
    chat_kafka_t                     *k;
    rd_kafka_conf_t                  *conf;
    rd_kafka_topic_partition_list_t  *subscription;
    rd_kafka_resp_err_t               err;
    char                              errstr[512];

    k = chat_alloc(sizeof(chat_kafka_t));
    memset(k, 0, sizeof(*k));
    k->topic = chat_strdup(topic);
    k->stop = stop;
    k->held = chat_alloc(CHAT_BATCH_MAX * sizeof(rd_kafka_message_t *));

    conf = rd_kafka_conf_new();

    if (!chat_kafka_set(conf, "bootstrap.servers", brokers)
        || !chat_kafka_set(conf, "group.id", group)
        || !chat_kafka_set(conf, "client.id", "chat_worker")
        /* offsets are committed by hand after the store and the publish */
        || !chat_kafka_set(conf, "enable.auto.commit", "false")
        || !chat_kafka_set(conf, "enable.auto.offset.store", "false")
        || !chat_kafka_set(conf, "auto.offset.reset", "earliest")
        /* a fetch returns as soon as there is a byte (fetch.min.bytes 1);
         * the wait only bounds how often an idle consumer asks */
        || !chat_kafka_set(conf, "fetch.wait.max.ms", "100")
        || !chat_kafka_set(conf, "socket.nagle.disable", "true")
        /* a worker killed outright hands its partitions on after 10 s, not
         * the default 45 */
        || !chat_kafka_set(conf, "session.timeout.ms", "10000")
        || !chat_kafka_set(conf, "heartbeat.interval.ms", "1000")
        || !chat_kafka_set(conf, "log.connection.close", "false"))
    {
        rd_kafka_conf_destroy(conf);
        goto failed;
    }

    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_rebalance_cb(conf, chat_kafka_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, chat_kafka_commit_cb);
    rd_kafka_conf_set_error_cb(conf, chat_kafka_error_cb);
    rd_kafka_conf_set_log_cb(conf, chat_kafka_log_cb);

    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (k->rk == NULL) {
        log_error("kafka: cannot create the consumer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        goto failed;
    }

    /* the rebalance and error callbacks are served by consumer_poll */
    rd_kafka_poll_set_consumer(k->rk);

    if (!chat_kafka_ensure_topic(k, partitions)) {
        goto failed;
    }

    subscription = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subscription, topic,
                                      RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(k->rk, subscription);
    rd_kafka_topic_partition_list_destroy(subscription);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error("kafka: cannot subscribe to %s: %s", topic,
                  rd_kafka_err2str(err));
        goto failed;
    }

    log_info("kafka: consuming %s in group %s", topic, group);

    return k;

failed:

    chat_kafka_close(k);

    return NULL;
}


/* forgets the held records of partitions revoked during the collection */
static void
chat_kafka_drop_revoked(chat_kafka_t *k)
{
    size_t  i, kept = 0;

    for (i = 0; i < k->nheld; i++) {
        rd_kafka_message_t  *m = k->held[i];

        if (rd_kafka_topic_partition_list_find(k->revoked,
                rd_kafka_topic_name(m->rkt), m->partition))
        {
            rd_kafka_message_destroy(m);
            continue;
        }

        k->held[kept++] = m;
    }

    if (kept < k->nheld) {
        log_info("kafka: dropped %zu records of revoked partitions",
                 k->nheld - kept);
    }

    k->nheld = kept;
    rd_kafka_topic_partition_list_destroy(k->revoked);
    k->revoked = NULL;
}


size_t
chat_kafka_collect(chat_kafka_t *k, chat_record_t *records, size_t max)
{
    rd_kafka_message_t  *m;
    int64_t              deadline = 0, left;
    size_t               i;

    if (max > CHAT_BATCH_MAX) {
        max = CHAT_BATCH_MAX;
    }

    k->nheld = 0;

    while (k->nheld < max) {
        if (k->nheld == 0) {
            if (*k->stop) {
                break;
            }

            m = rd_kafka_consumer_poll(k->rk, CHAT_POLL_IDLE_MS);

        } else {
            left = deadline - chat_monotonic_ms();
            m = rd_kafka_consumer_poll(k->rk, left > 0 ? (int) left : 0);
        }

        if (k->revoked) {
            chat_kafka_drop_revoked(k);
        }

        if (m == NULL) {
            if (k->nheld == 0) {
                /* idle: positions held back by the interval go now */
                chat_kafka_send_commit(k);
                break;
            }

            if (chat_monotonic_ms() >= deadline) {
                break;
            }
            continue;
        }

        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                log_error("kafka: partition %d: %s", m->partition,
                          rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            continue;
        }

        if (k->nheld == 0) {
            deadline = chat_monotonic_ms() + CHAT_BATCH_WINDOW_MS;
        }

        k->held[k->nheld++] = m;
    }

    for (i = 0; i < k->nheld; i++) {
        m = k->held[i];
        records[i].payload = m->payload;
        records[i].len = m->len;
        records[i].partition = m->partition;
        records[i].offset = m->offset;
        records[i].timestamp = rd_kafka_message_timestamp(m, NULL);
    }

    return k->nheld;
}


void
chat_kafka_release(chat_kafka_t *k)
{
    size_t  i;

    for (i = 0; i < k->nheld; i++) {
        rd_kafka_message_destroy(k->held[i]);
    }

    k->nheld = 0;
}


void
chat_kafka_commit(chat_kafka_t *k)
{
    rd_kafka_topic_partition_list_t  *offsets;
    rd_kafka_topic_partition_t       *p;
    size_t                            i;

    if (k->nheld == 0) {
        return;
    }

    /* the position after each partition's last record of the batch */
    offsets = rd_kafka_topic_partition_list_new(16);

    for (i = 0; i < k->nheld; i++) {
        rd_kafka_message_t  *m = k->held[i];
        const char          *topic = rd_kafka_topic_name(m->rkt);

        p = rd_kafka_topic_partition_list_find(offsets, topic, m->partition);
        if (p == NULL) {
            p = rd_kafka_topic_partition_list_add(offsets, topic,
                                                  m->partition);
            p->offset = m->offset + 1;

        } else if (m->offset + 1 > p->offset) {
            p->offset = m->offset + 1;
        }
    }

    chat_kafka_release(k);
    chat_kafka_pend(k, offsets);
    rd_kafka_topic_partition_list_destroy(offsets);
    chat_kafka_send_commit(k);
}


unsigned
chat_kafka_rebalances(chat_kafka_t *k)
{
    return k->rebalances;
}


void
chat_kafka_close(chat_kafka_t *k)
{
    rd_kafka_resp_err_t  err;

    if (k == NULL) {
        return;
    }

    chat_kafka_release(k);

    if (k->rk) {
        /* leaves the group right away instead of after the session
         * timeout; the revoke callback commits what is pending */
        err = rd_kafka_consumer_close(k->rk);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_error("kafka: closing the consumer: %s",
                      rd_kafka_err2str(err));
        }

        rd_kafka_destroy(k->rk);
    }

    if (k->revoked) {
        rd_kafka_topic_partition_list_destroy(k->revoked);
    }

    if (k->pending) {
        rd_kafka_topic_partition_list_destroy(k->pending);
    }

    free(k->held);
    free(k->topic);
    free(k);
}
