/*
 * worker_pushes.c: the push topic's producer in chat_worker: the records
 * of a batch's pushes to devices without a live session, produced after
 * the batch's COMMIT and delivery, and acknowledged before its offsets
 * are committed. A worker that dies in between leaves the batch to be
 * consumed again, and the replay produces its records again: chat_pusher
 * enters each record in the push outbox, whose primary key drops the
 * second of one (at least once here, at most once there).
 *
 * The producer is idempotent with acks=all: Kafka's own retries neither
 * lose nor repeat a record. A batch without pushes costs nothing here.
 */

#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "worker_pushes.h"
#include "worker_topic.h"


/* a record's state, its delivery report's opaque */
enum {
    CHAT_PUSH_TO_PRODUCE = 0,
    CHAT_PUSH_IN_FLIGHT,
    CHAT_PUSH_ACKED
};

/* the acknowledgements come within ms; past this the wait lets the loop
 * keep its consumer alive (the meanwhile) and looks at the stop flag */
#define CHAT_PUSHES_PATIENCE_MS  1000


struct chat_pushes_s {
    rd_kafka_t      *rk;
    char            *brokers;
    char            *topic;
    chat_stop_t     *stop;
    chat_backoff_t   backoff;
    size_t           in_flight;
};


static void
chat_pushes_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
    void *opaque)
{
    chat_pushes_t  *p = opaque;
    char           *state = m->_private;

    (void) rk;

    p->in_flight--;

    if (m->err) {
        log_warn("kafka: push record not delivered: %s",
                 rd_kafka_err2str(m->err));
        *state = CHAT_PUSH_TO_PRODUCE;
        return;
    }

    *state = CHAT_PUSH_ACKED;
}


static void
chat_pushes_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void) rk;
    (void) opaque;

    log_error("kafka producer: %s: %s", rd_kafka_err2name(err), reason);
}


/* the producer's client; NULL when it could not be made */
static rd_kafka_t *
chat_pushes_client(chat_pushes_t *p)
{
    rd_kafka_t       *rk;
    rd_kafka_conf_t  *conf;
    char              errstr[512];

    conf = rd_kafka_conf_new();

    if (!chat_topic_set(conf, "bootstrap.servers", p->brokers)
        || !chat_topic_set(conf, "client.id", "chat_worker")
        /* every in-sync replica has it before the offsets move */
        || !chat_topic_set(conf, "acks", "all")
        || !chat_topic_set(conf, "enable.idempotence", "true")
        /* the batch waits for its records: they go at once */
        || !chat_topic_set(conf, "linger.ms", "0")
        || !chat_topic_set(conf, "socket.nagle.disable", "true")
        /* a record Kafka could not take in this long is reported and
         * produced again, the wait looking at the stop flag meanwhile */
        || !chat_topic_set(conf, "message.timeout.ms", "30000")
        || !chat_topic_set(conf, "reconnect.backoff.ms", "100")
        || !chat_topic_set(conf, "reconnect.backoff.max.ms", "1000")
        || !chat_topic_set(conf, "log.connection.close", "false"))
    {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, chat_pushes_delivered);
    rd_kafka_conf_set_error_cb(conf, chat_pushes_error);
    rd_kafka_conf_set_log_cb(conf, chat_topic_log);

    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        log_error("kafka: cannot create the push producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
    }

    return rk;
}


chat_pushes_t *
chat_pushes_open(const char *brokers, const char *topic, int partitions,
    chat_stop_t *stop)
{
    chat_pushes_t  *p;

    p = chat_alloc(sizeof(chat_pushes_t));
    memset(p, 0, sizeof(*p));
    p->brokers = chat_strdup(brokers);
    p->topic = chat_strdup(topic);
    p->stop = stop;
    chat_backoff_reset(&p->backoff);

    p->rk = chat_pushes_client(p);

    if (p->rk == NULL
        || !chat_topic_ensure(p->rk, p->topic, partitions, stop))
    {
        chat_pushes_close(p);
        return NULL;
    }

    log_info("kafka: producing pushes to %s", p->topic);

    return p;
}


void
chat_pushes_set_wait(chat_pushes_t *p, chat_wait_pt meanwhile, void *data)
{
    p->backoff.meanwhile = meanwhile;
    p->backoff.data = data;
}


/*
 * An idempotent producer that lost track of its sequence (a fatal error:
 * records given up while in flight, say) takes nothing more: a new one
 * takes over. Its records in flight are reported failed and produced
 * again. Returns false: the batch's records are to be produced again.
 */
static bool
chat_pushes_renew(chat_pushes_t *p)
{
    char  reason[256];

    (void) rd_kafka_fatal_error(p->rk, reason, sizeof(reason));
    log_error("kafka: the push producer failed for good (%s): a new one",
              reason);

    (void) rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE
                                 | RD_KAFKA_PURGE_F_INFLIGHT);

    while (p->in_flight > 0) {
        rd_kafka_poll(p->rk, 100);
    }

    rd_kafka_destroy(p->rk);
    p->rk = chat_pushes_client(p);

    if (p->rk == NULL) {
        /* cannot happen: the same settings made the first one */
        abort();
    }

    return false;
}


/* the records still to produce handed to the producer; false when one
 * was refused for a reason other than a full queue */
static bool
chat_pushes_send(chat_pushes_t *p, const chat_outbox_push_t *const *pushes,
    char *states, size_t n)
{
    ngx_chat_wire_push_t   rec;
    rd_kafka_resp_err_t    err;
    char                   buf[NGX_CHAT_WIRE_PUSH_RECORD_MAX];
    size_t                 i, len;
    bool                   ok = true;

    for (i = 0; i < n; i++) {
        if (states[i] != CHAT_PUSH_TO_PRODUCE) {
            continue;
        }

        rec.message_id = pushes[i]->message_id;
        rec.user = pushes[i]->user;
        rec.user_len = strlen(pushes[i]->user);
        rec.device = pushes[i]->device;
        rec.device_len = strlen(pushes[i]->device);
        rec.ts = pushes[i]->ts;
        len = ngx_chat_wire_push_record(buf, &rec);

        for ( ;; ) {
            err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(p->topic),
                                    RD_KAFKA_V_KEY(rec.user, rec.user_len),
                                    RD_KAFKA_V_VALUE(buf, len),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_OPAQUE(&states[i]),
                                    RD_KAFKA_V_END);

            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                break;
            }

            rd_kafka_poll(p->rk, 10);
        }

        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            return chat_pushes_renew(p);
        }

        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_warn("kafka: push record not produced: %s",
                     rd_kafka_err2str(err));
            ok = false;
            continue;
        }

        states[i] = CHAT_PUSH_IN_FLIGHT;
        p->in_flight++;
    }

    return ok;
}


/* the records in flight given back, so that their states may go */
static void
chat_pushes_drop(chat_pushes_t *p)
{
    (void) rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE
                                 | RD_KAFKA_PURGE_F_INFLIGHT);

    while (p->in_flight > 0) {
        rd_kafka_poll(p->rk, 100);
    }
}


bool
chat_pushes_produce(chat_pushes_t *p, const chat_outbox_push_t *const *pushes,
    size_t n)
{
    char     *states;
    int64_t   since;
    size_t    i, acked;
    bool      ok = false;

    if (n == 0) {
        return true;
    }

    states = chat_alloc(n);
    memset(states, CHAT_PUSH_TO_PRODUCE, n);
    since = chat_now_ms();

    for ( ;; ) {
        if (!chat_pushes_send(p, pushes, states, n)
            && !chat_backoff_wait(&p->backoff, p->stop))
        {
            break;
        }

        while (p->in_flight > 0) {
            rd_kafka_poll(p->rk, 50);

            if (chat_now_ms() - since >= CHAT_PUSHES_PATIENCE_MS
                && (*p->stop
                    || (p->backoff.meanwhile
                        && !p->backoff.meanwhile(p->backoff.data))))
            {
                goto done;
            }
        }

        for (i = 0, acked = 0; i < n; i++) {
            acked += states[i] == CHAT_PUSH_ACKED;
        }

        if (acked == n) {
            chat_backoff_reset(&p->backoff);
            ok = true;
            break;
        }

        /* reported failed: produced again after a while */
        if (!chat_backoff_wait(&p->backoff, p->stop)) {
            break;
        }
    }

done:

    if (!ok) {
        chat_pushes_drop(p);
    }

    free(states);

    return ok;
}


void
chat_pushes_close(chat_pushes_t *p)
{
    if (p == NULL) {
        return;
    }

    if (p->rk) {
        /* a batch given up left nothing in flight: this is quick */
        (void) rd_kafka_flush(p->rk, 5000);
        rd_kafka_destroy(p->rk);
    }

    free(p->brokers);
    free(p->topic);
    free(p);
}
