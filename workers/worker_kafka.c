/*
 * worker_kafka.c: the Kafka consumer of chat_worker (and of chat_pusher):
 * the topic made sure of (worker_topic.c), the consumer group membership,
 * collecting batches, rebalances and offset commits.
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
 * Closing the consumer waits for the commit in flight. The assignments and
 * revocations are also kept, in order, for the loop (chat_kafka_events),
 * which takes a new epoch for every partition assigned (worker_chain.c).
 *
 * Outages: while a batch waits for PostgreSQL or Redis, the waits call
 * chat_kafka_hold, which pauses the assignment and polls the consumer, so
 * that a worker waiting out a long outage stays in its group (librdkafka
 * leaves the group when the application does not poll for
 * max.poll.interval.ms). Should a rebalance take a partition of the batch
 * meanwhile, the batch is given up (chat_kafka_abandon): nothing of it is
 * published or committed, and what the worker still holds is consumed
 * again from the batch's first record. A partition fenced by a newer owner
 * (chat_kafka_fence) is neither committed nor consumed until assigned
 * again.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "worker_kafka.h"
#include "worker_topic.h"
#include "worker_util.h"


#define CHAT_POLL_IDLE_MS      100     /* how soon an idle loop sees stop */
#define CHAT_BATCH_WINDOW_MS   1       /* wait for more after the first */
/* a fetch waits this long at most for this many bytes: a light load pays
 * a few ms of latency for batches several records large; measured at
 * 1,000 msg/s, the whole stack used a third less CPU */
#define CHAT_FETCH_WAIT_MS     8
#define CHAT_FETCH_MIN_BYTES   "65536"
/* an OffsetCommit costs the broker a write to __consumer_offsets and a group
 * coordinator event: once per batch it was most of the broker's CPU at low
 * rates. Positions wait this long at most; after a crash the records of that
 * window are consumed again, and the store and the delivered marks
 * recognise them. */
#define CHAT_COMMIT_EVERY_MS   200


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
    chat_kafka_event_t                *events;
    size_t                             nevents;
    size_t                             events_cap;

    /* a hold: the assignment paused, what the polls returned meanwhile
     * (kept for the next batch), the partitions fenced */
    bool                               paused;
    rd_kafka_message_t               **stash;
    size_t                             nstash;
    size_t                             stash_cap;
    rd_kafka_topic_partition_list_t   *fenced;

    /* partitions whose records from an offset on the batch left for a
     * later one: not committed, consumed again from there */
    rd_kafka_topic_partition_list_t   *deferred;
    int                                idle_ms;     /* an idle poll's wait */

    int64_t                            commit_every;
};


static int64_t
chat_monotonic_ms(void)
{
    struct timespec  now;

    clock_gettime(CLOCK_MONOTONIC, &now);

    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
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
        || chat_monotonic_ms() - k->last_commit < k->commit_every)
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
chat_kafka_event(chat_kafka_t *k, const rd_kafka_topic_partition_list_t *l,
    bool assigned)
{
    int  i;

    for (i = 0; i < l->cnt; i++) {
        if (k->nevents == k->events_cap) {
            k->events_cap = k->events_cap ? 2 * k->events_cap : 64;
            k->events = chat_realloc(k->events, k->events_cap
                                                * sizeof(chat_kafka_event_t));
        }

        k->events[k->nevents].partition = l->elems[i].partition;
        k->events[k->nevents].assigned = assigned;
        k->nevents++;

    }
}


/* the fenced partitions assigned again are ours again: consumed again
 * (a pause outlives a reassignment) */
static void
chat_kafka_unfence(chat_kafka_t *k, const rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_topic_partition_list_t  *again;
    int                               i;

    if (k->fenced == NULL) {
        return;
    }

    again = rd_kafka_topic_partition_list_new(l->cnt);

    for (i = 0; i < l->cnt; i++) {
        if (rd_kafka_topic_partition_list_del(k->fenced, l->elems[i].topic,
                                              l->elems[i].partition))
        {
            rd_kafka_topic_partition_list_add(again, l->elems[i].topic,
                                              l->elems[i].partition);
        }
    }

    if (again->cnt && !k->paused) {
        (void) rd_kafka_resume_partitions(k->rk, again);
    }

    rd_kafka_topic_partition_list_destroy(again);
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
        chat_kafka_event(k, parts, true);

        if (cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
        } else {
            rc = rd_kafka_assign(rk, parts);
        }

        chat_kafka_unfence(k, parts);

        /* a pause outlives a reassignment: a partition cut for an image
         * and taken from this worker before it was resumed would come
         * back paused for good */
        if (!k->paused && parts->cnt) {
            (void) rd_kafka_resume_partitions(rk, parts);
        }
        break;

    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        chat_kafka_log_partitions("revoked", parts);
        chat_kafka_event(k, parts, false);

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


chat_kafka_t *
chat_kafka_open(const char *brokers, const char *topic, const char *group,
    int partitions, const chat_kafka_tuning_t *tuning, chat_stop_t *stop)
{
    chat_kafka_t                     *k;
    rd_kafka_conf_t                  *conf;
    rd_kafka_topic_partition_list_t  *subscription;
    rd_kafka_resp_err_t               err;
    char                              errstr[512], poll_interval[24];
    char                              fetch_wait[24];

    k = chat_alloc(sizeof(chat_kafka_t));
    memset(k, 0, sizeof(*k));
    k->topic = chat_strdup(topic);
    k->stop = stop;
    k->commit_every = tuning && tuning->commit_every_ms > 0
                      ? tuning->commit_every_ms : CHAT_COMMIT_EVERY_MS;
    snprintf(poll_interval, sizeof(poll_interval), "%d",
             tuning && tuning->max_poll_interval_ms > 0
             ? tuning->max_poll_interval_ms : 300000);
    snprintf(fetch_wait, sizeof(fetch_wait), "%d",
             tuning && tuning->fetch_wait_ms > 0
             ? tuning->fetch_wait_ms : CHAT_FETCH_WAIT_MS);
    k->held = chat_alloc(CHAT_BATCH_MAX * sizeof(rd_kafka_message_t *));

    conf = rd_kafka_conf_new();

    if (!chat_topic_set(conf, "bootstrap.servers", brokers)
        || !chat_topic_set(conf, "group.id", group)
        || !chat_topic_set(conf, "client.id",
                           tuning && tuning->client_id ? tuning->client_id
                                                       : "chat_worker")
        /* offsets are committed by hand after the store and the publish */
        || !chat_topic_set(conf, "enable.auto.commit", "false")
        || !chat_topic_set(conf, "enable.auto.offset.store", "false")
        || !chat_topic_set(conf, "auto.offset.reset", "earliest")
        /* a fetch returns when it has a batch's worth of bytes or after
         * the wait: under load batches fill at once; a light load comes
         * in one fetch, one store transaction and one fsync every few ms,
         * not one per record or two (each costs the broker, PostgreSQL
         * and this worker the same whatever it carries) */
        || !chat_topic_set(conf, "fetch.wait.max.ms", fetch_wait)
        || !chat_topic_set(conf, "fetch.min.bytes", CHAT_FETCH_MIN_BYTES)
        || !chat_topic_set(conf, "socket.nagle.disable", "true")
        /* a worker killed outright hands its partitions on after 6 s, not
         * the default 45. The same timeout bounds a broker restart: a
         * consumer whose coordinator was away longer rejoins the group,
         * and the restarted coordinator waits for its old membership to
         * time out (measured: the first ack 10.2 s after the broker was
         * back with 10 s, about 6 with 6 s). 6 s is the brokers' least
         * (group.min.session.timeout.ms) */
        || !chat_topic_set(conf, "session.timeout.ms", "6000")
        || !chat_topic_set(conf, "heartbeat.interval.ms", "1000")
        /* a worker that waits out an outage keeps polling (the holds):
         * this only catches one that is stuck; tests set it low */
        || !chat_topic_set(conf, "max.poll.interval.ms", poll_interval)
        /* a broker that restarts is reconnected within a second of its
         * coming back, not after the default backoff of up to 10 s */
        || !chat_topic_set(conf, "reconnect.backoff.ms", "100")
        || !chat_topic_set(conf, "reconnect.backoff.max.ms", "1000")
        /* and a lost leader looked up again that often */
        || !chat_topic_set(conf, "topic.metadata.refresh.fast.interval.ms",
                           "100")
        || !chat_topic_set(conf, "log.connection.close", "false"))
    {
        rd_kafka_conf_destroy(conf);
        goto failed;
    }

    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_rebalance_cb(conf, chat_kafka_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, chat_kafka_commit_cb);
    rd_kafka_conf_set_error_cb(conf, chat_kafka_error_cb);
    rd_kafka_conf_set_log_cb(conf, chat_topic_log);

    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (k->rk == NULL) {
        log_error("kafka: cannot create the consumer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        goto failed;
    }

    /* the rebalance and error callbacks are served by consumer_poll */
    rd_kafka_poll_set_consumer(k->rk);

    if (!chat_topic_ensure(k->rk, k->topic, partitions, k->stop)) {
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

    /* what the polls of a hold returned comes first, in order */
    for (i = 0; i < k->nstash && k->nheld < max; i++) {
        k->held[k->nheld++] = k->stash[i];
    }

    if (i) {
        memmove(k->stash, k->stash + i,
                (k->nstash - i) * sizeof(k->stash[0]));
        k->nstash -= i;
    }

    if (k->nheld) {
        deadline = chat_monotonic_ms();
    }

    while (k->nheld < max) {
        if (k->nheld == 0) {
            if (*k->stop) {
                break;
            }

            m = rd_kafka_consumer_poll(k->rk, k->idle_ms
                                              ? k->idle_ms
                                              : CHAT_POLL_IDLE_MS);

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


static bool
chat_kafka_is_deferred(chat_kafka_t *k, rd_kafka_message_t *m)
{
    rd_kafka_topic_partition_t  *p;

    if (k->deferred == NULL) {
        return false;
    }

    p = rd_kafka_topic_partition_list_find(k->deferred,
                                           rd_kafka_topic_name(m->rkt),
                                           m->partition);

    return p != NULL && m->offset >= p->offset;
}


void
chat_kafka_defer(chat_kafka_t *k, int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_t  *p;

    if (k->deferred == NULL) {
        k->deferred = rd_kafka_topic_partition_list_new(4);
    }

    p = rd_kafka_topic_partition_list_find(k->deferred, k->topic, partition);
    if (p == NULL) {
        p = rd_kafka_topic_partition_list_add(k->deferred, k->topic,
                                              partition);
        p->offset = offset;

    } else if (offset < p->offset) {
        p->offset = offset;
    }
}


/* the deferred partitions read again from their cut: what a hold had
 * polled of them goes, the seek brings it back */
static void
chat_kafka_seek_deferred(chat_kafka_t *k)
{
    rd_kafka_topic_partition_list_t  *assigned = NULL, *seek;
    rd_kafka_error_t                 *error;
    size_t                            i, kept;
    int                               j;

    if (k->deferred == NULL) {
        return;
    }

    for (i = 0, kept = 0; i < k->nstash; i++) {
        if (chat_kafka_is_deferred(k, k->stash[i])) {
            rd_kafka_message_destroy(k->stash[i]);
        } else {
            k->stash[kept++] = k->stash[i];
        }
    }

    k->nstash = kept;

    seek = rd_kafka_topic_partition_list_new(k->deferred->cnt);

    if (rd_kafka_assignment(k->rk, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (j = 0; j < k->deferred->cnt; j++) {
            if (rd_kafka_topic_partition_list_find(assigned,
                    k->deferred->elems[j].topic,
                    k->deferred->elems[j].partition))
            {
                rd_kafka_topic_partition_list_add(seek,
                    k->deferred->elems[j].topic,
                    k->deferred->elems[j].partition)->offset =
                    k->deferred->elems[j].offset;
            }
        }

        rd_kafka_topic_partition_list_destroy(assigned);
    }

    if (seek->cnt) {
        /* paused first: nothing of them is fetched again until the loop
         * says (chat_kafka_undefer) */
        (void) rd_kafka_pause_partitions(k->rk, seek);

        error = rd_kafka_seek_partitions(k->rk, seek, 5000);

        if (error) {
            log_error("kafka: seeking back to a cut: %s",
                      rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    }

    rd_kafka_topic_partition_list_destroy(seek);
    rd_kafka_topic_partition_list_destroy(k->deferred);
    k->deferred = NULL;
}


void
chat_kafka_undefer(chat_kafka_t *k, int32_t partition)
{
    rd_kafka_topic_partition_list_t  *one;

    if (k->fenced
        && rd_kafka_topic_partition_list_find(k->fenced, k->topic, partition))
    {
        return;
    }

    one = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(one, k->topic, partition);
    (void) rd_kafka_resume_partitions(k->rk, one);
    rd_kafka_topic_partition_list_destroy(one);
}


void
chat_kafka_set_idle(chat_kafka_t *k, int ms)
{
    k->idle_ms = ms > 0 ? ms : CHAT_POLL_IDLE_MS;
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

        if (k->fenced
            && rd_kafka_topic_partition_list_find(k->fenced, topic,
                                                  m->partition))
        {
            continue;       /* its successor's to commit */
        }

        if (chat_kafka_is_deferred(k, m)) {
            continue;       /* a later batch's */
        }

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
    chat_kafka_seek_deferred(k);
}


unsigned
chat_kafka_rebalances(chat_kafka_t *k)
{
    return k->rebalances;
}


size_t
chat_kafka_events(chat_kafka_t *k, chat_kafka_event_t *ev, size_t max)
{
    size_t  n;

    n = k->nevents < max ? k->nevents : max;

    if (n == 0) {
        return 0;
    }

    memcpy(ev, k->events, n * sizeof(chat_kafka_event_t));
    memmove(k->events, k->events + n,
            (k->nevents - n) * sizeof(chat_kafka_event_t));
    k->nevents -= n;

    return n;
}


/* pauses (or resumes) the assignment, the fenced partitions left paused */
static void
chat_kafka_pause(chat_kafka_t *k, bool pause)
{
    rd_kafka_topic_partition_list_t  *parts, *fenced;
    int                               i;

    if (rd_kafka_assignment(k->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return;
    }

    if (!pause && k->fenced) {
        fenced = parts;
        parts = rd_kafka_topic_partition_list_new(fenced->cnt);

        for (i = 0; i < fenced->cnt; i++) {
            if (!rd_kafka_topic_partition_list_find(k->fenced,
                    fenced->elems[i].topic, fenced->elems[i].partition))
            {
                rd_kafka_topic_partition_list_add(parts,
                    fenced->elems[i].topic, fenced->elems[i].partition);
            }
        }

        rd_kafka_topic_partition_list_destroy(fenced);
    }

    if (parts->cnt) {
        if (pause) {
            (void) rd_kafka_pause_partitions(k->rk, parts);
        } else {
            (void) rd_kafka_resume_partitions(k->rk, parts);
        }
    }

    rd_kafka_topic_partition_list_destroy(parts);
}


static bool
chat_kafka_revoked(chat_kafka_t *k, rd_kafka_message_t *m)
{
    return k->revoked
           && rd_kafka_topic_partition_list_find(k->revoked,
                  rd_kafka_topic_name(m->rkt), m->partition) != NULL;
}


bool
chat_kafka_hold(chat_kafka_t *k)
{
    rd_kafka_message_t  *m;
    size_t               i;

    if (!k->paused) {
        chat_kafka_pause(k, true);
        k->paused = true;
        log_info("kafka: consumption paused while the batch waits");
    }

    /* serves the group: the rebalance callback, max.poll.interval.ms */
    while ((m = rd_kafka_consumer_poll(k->rk, 0)) != NULL) {
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }

        /* a partition assigned meanwhile: its records wait their turn */
        if (k->nstash == k->stash_cap) {
            k->stash_cap = k->stash_cap ? 2 * k->stash_cap : 64;
            k->stash = chat_realloc(k->stash,
                                    k->stash_cap * sizeof(k->stash[0]));
        }

        k->stash[k->nstash++] = m;
    }

    for (i = 0; i < k->nheld; i++) {
        if (chat_kafka_revoked(k, k->held[i])) {
            log_warn("kafka: partition %d was revoked while its batch"
                     " waited", k->held[i]->partition);
            return false;
        }
    }

    return !*k->stop;
}


void
chat_kafka_resume(chat_kafka_t *k)
{
    if (!k->paused) {
        return;
    }

    chat_kafka_pause(k, false);
    k->paused = false;
    log_info("kafka: consumption resumed");
}


/* the lowest offset per partition of these records into l */
static void
chat_kafka_lowest(rd_kafka_topic_partition_list_t *l,
    rd_kafka_message_t **m, size_t n)
{
    rd_kafka_topic_partition_t  *p;
    size_t                       i;

    for (i = 0; i < n; i++) {
        p = rd_kafka_topic_partition_list_find(l, rd_kafka_topic_name(m[i]->rkt),
                                               m[i]->partition);
        if (p == NULL) {
            p = rd_kafka_topic_partition_list_add(l,
                    rd_kafka_topic_name(m[i]->rkt), m[i]->partition);
            p->offset = m[i]->offset;

        } else if (m[i]->offset < p->offset) {
            p->offset = m[i]->offset;
        }
    }
}


void
chat_kafka_abandon(chat_kafka_t *k)
{
    rd_kafka_topic_partition_list_t  *lowest, *assigned = NULL, *seek;
    rd_kafka_error_t                 *error;
    int                               i;

    lowest = rd_kafka_topic_partition_list_new(16);
    chat_kafka_lowest(lowest, k->held, k->nheld);
    chat_kafka_lowest(lowest, k->stash, k->nstash);

    chat_kafka_release(k);

    for (i = 0; (size_t) i < k->nstash; i++) {
        rd_kafka_message_destroy(k->stash[i]);
    }

    k->nstash = 0;

    /* what is still ours is read again from the batch's first record; a
     * revoked partition is read by its next owner from the committed
     * offset */
    seek = rd_kafka_topic_partition_list_new(lowest->cnt);

    if (rd_kafka_assignment(k->rk, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (i = 0; i < lowest->cnt; i++) {
            if (rd_kafka_topic_partition_list_find(assigned,
                    lowest->elems[i].topic, lowest->elems[i].partition))
            {
                rd_kafka_topic_partition_list_add(seek,
                    lowest->elems[i].topic, lowest->elems[i].partition)
                    ->offset = lowest->elems[i].offset;
            }
        }

        rd_kafka_topic_partition_list_destroy(assigned);
    }

    if (seek->cnt) {
        error = rd_kafka_seek_partitions(k->rk, seek, 5000);

        if (error) {
            log_error("kafka: seeking back: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    }

    rd_kafka_topic_partition_list_destroy(seek);
    rd_kafka_topic_partition_list_destroy(lowest);

    if (k->deferred) {
        rd_kafka_topic_partition_list_destroy(k->deferred);
        k->deferred = NULL;
    }

    if (k->revoked) {
        rd_kafka_topic_partition_list_destroy(k->revoked);
        k->revoked = NULL;
    }
}


void
chat_kafka_fence(chat_kafka_t *k, int32_t partition)
{
    rd_kafka_topic_partition_list_t  *one;

    if (k->fenced == NULL) {
        k->fenced = rd_kafka_topic_partition_list_new(4);
    }

    if (rd_kafka_topic_partition_list_find(k->fenced, k->topic, partition)) {
        return;
    }

    rd_kafka_topic_partition_list_add(k->fenced, k->topic, partition);

    one = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(one, k->topic, partition);
    (void) rd_kafka_pause_partitions(k->rk, one);
    rd_kafka_topic_partition_list_destroy(one);

    log_warn("kafka: partition %d not consumed until assigned again",
             (int) partition);
}


void
chat_kafka_close(chat_kafka_t *k)
{
    rd_kafka_resp_err_t  err;
    size_t               i;

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

    if (k->fenced) {
        rd_kafka_topic_partition_list_destroy(k->fenced);
    }

    if (k->deferred) {
        rd_kafka_topic_partition_list_destroy(k->deferred);
    }

    for (i = 0; i < k->nstash; i++) {
        rd_kafka_message_destroy(k->stash[i]);
    }

    free(k->stash);
    free(k->events);
    free(k->held);
    free(k->topic);
    free(k);
}
