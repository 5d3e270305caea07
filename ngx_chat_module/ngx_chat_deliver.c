
/*
 * What arrives from Redis for this process: payloads on its node channel
 * (ngx_chat_wire.h: frames for local sessions, kicks of replaced ones,
 * streamed answers) and presence events, handed to the sessions they name
 * and to the watchers of the user they are about. The one place the
 * subscription's messages go.
 *
 * What comes from a partition's Kafka records comes in sections that
 * chain (ngx_chat_chain.c), so a payload lost between the publisher and
 * this process (a Redis restart, a subscription dropped or slowed until
 * Redis closed it) is a gap this process sees: either a section that
 * starts beyond what it holds, or the chain's head in Redis, which it
 * audits every few seconds, beyond it. A gap is asked to be repaired
 * through Kafka, on the gap's own partition, so that the worker answers
 * after it has stored every record of the gap; the sections that come
 * meanwhile wait for the repair, so each session still sees one
 * conversation's messages in order and each once. A repair that does not
 * come in time is asked again; when holding on costs too much, the gap is
 * given up and every session here is told to reconnect and sync.
 */


#include "ngx_chat.h"
#include "ngx_chat_chain.h"

#include <hiredis/hiredis.h>


#define NGX_CHAT_DELIVER_PARTITIONS   4096
#define NGX_CHAT_DELIVER_AUDIT        2000      /* ms */
#define NGX_CHAT_DELIVER_REPAIR_AGAIN 5000
#define NGX_CHAT_DELIVER_GIVE_UP      60000
#define NGX_CHAT_DELIVER_HOLD_MAX     (16 * 1024 * 1024)


typedef struct {
    ngx_chat_chain_t           chain;
    u_char                    *held;        /* P records, back to back */
    size_t                     held_len;
    size_t                     held_size;
    ngx_msec_t                 asked;       /* the repair, last asked */
    ngx_msec_t                 gap_since;
} ngx_chat_deliver_part_t;


static void ngx_chat_deliver_payload(const char *p, const char *last,
    ngx_uint_t sections);
static void ngx_chat_deliver_section(const ngx_chat_wire_record_t *rec,
    const char *start, const char *end);
static void ngx_chat_deliver_repair(const ngx_chat_wire_record_t *rec);
static ngx_int_t ngx_chat_deliver_hold(ngx_chat_deliver_part_t *part,
    const char *start, const char *end);
static void ngx_chat_deliver_release(ngx_chat_deliver_part_t *part);
static void ngx_chat_deliver_ask(int32_t partition,
    ngx_chat_deliver_part_t *part);
static void ngx_chat_deliver_give_up(int32_t partition,
    ngx_chat_deliver_part_t *part);
static ngx_chat_deliver_part_t *ngx_chat_deliver_part(int32_t partition);
static void ngx_chat_deliver_audit_handler(ngx_event_t *ev);
static void ngx_chat_deliver_audited(void *reply, void *data);
static void ngx_chat_deliver_to_sessions(const ngx_chat_wire_record_t *rec);
static void ngx_chat_deliver_ack(const ngx_chat_wire_record_t *rec);


static ngx_chat_main_conf_t     *ngx_chat_deliver_conf;
static ngx_chat_deliver_part_t  *ngx_chat_deliver_parts;
static ngx_uint_t                ngx_chat_deliver_nparts;
static ngx_event_t               ngx_chat_deliver_audit;
static int64_t                   ngx_chat_deliver_started;   /* ms */
static char                      ngx_chat_deliver_chain_key[
                                     NGX_CHAT_WIRE_KEY_MAX];
static size_t                    ngx_chat_deliver_chain_key_len;


ngx_int_t
ngx_chat_deliver_init(ngx_cycle_t *cycle, ngx_chat_main_conf_t *mcf)
{
    ngx_time_t  *tp;

    ngx_chat_deliver_conf = mcf;

    tp = ngx_timeofday();
    ngx_chat_deliver_started = (int64_t) tp->sec * 1000 + tp->msec;

    ngx_chat_deliver_chain_key_len = ngx_chat_wire_key(
                                         ngx_chat_deliver_chain_key,
                                         NGX_CHAT_WIRE_KEY_CHAIN,
                                         (char *) mcf->node.data,
                                         mcf->node.len);

    ngx_chat_deliver_audit.handler = ngx_chat_deliver_audit_handler;
    ngx_chat_deliver_audit.log = cycle->log;
    ngx_chat_deliver_audit.cancelable = 1;
    ngx_add_timer(&ngx_chat_deliver_audit, NGX_CHAT_DELIVER_AUDIT);

    return NGX_OK;
}


void
ngx_chat_deliver_exit(ngx_cycle_t *cycle)
{
    if (ngx_chat_deliver_audit.timer_set) {
        ngx_del_timer(&ngx_chat_deliver_audit);
    }
}


void
ngx_chat_deliver(const u_char *channel, size_t channel_len,
    const u_char *data, size_t len)
{
    if (channel_len > sizeof(NGX_CHAT_WIRE_CHANNEL_PRESENCE) - 1
        && ngx_strncmp(channel, NGX_CHAT_WIRE_CHANNEL_PRESENCE,
                       sizeof(NGX_CHAT_WIRE_CHANNEL_PRESENCE) - 1) == 0)
    {
        ngx_chat_presence_event(data, len);
        return;
    }

    if (channel_len == sizeof(NGX_CHAT_WIRE_CHANNEL_CONTROL) - 1
        && ngx_strncmp(channel, NGX_CHAT_WIRE_CHANNEL_CONTROL,
                       channel_len) == 0)
    {
        ngx_chat_revoke_control(data, len);
        return;
    }

    /* the node channel is the only other one subscribed */
    ngx_chat_deliver_payload((const char *) data, (const char *) data + len,
                             1);
}


static void
ngx_chat_deliver_payload(const char *p, const char *last,
    ngx_uint_t sections)
{
    int                      rc;
    const char              *start;
    ngx_chat_wire_record_t   rec;

    for ( ;; ) {
        start = p;

        rc = ngx_chat_wire_record_next(&p, last, &rec);
        if (rc != 1) {
            break;
        }

        switch (rec.type) {

        case NGX_CHAT_WIRE_RECORD_FRAME:
        case NGX_CHAT_WIRE_RECORD_KICK:
        case NGX_CHAT_WIRE_RECORD_STREAM:
            ngx_chat_deliver_to_sessions(&rec);
            break;

        case NGX_CHAT_WIRE_RECORD_ACK:
            ngx_chat_deliver_ack(&rec);
            break;

        case NGX_CHAT_WIRE_RECORD_SECTION:
        case NGX_CHAT_WIRE_RECORD_REPAIR:
            if (!sections) {
                goto invalid;       /* sections do not nest */
            }

            if (rec.type == NGX_CHAT_WIRE_RECORD_SECTION) {
                ngx_chat_deliver_section(&rec, start, p);

            } else {
                ngx_chat_deliver_repair(&rec);
            }

            break;

        default:
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "chat: a delivery record of unknown type \"%c\" "
                          "from redis", rec.type);
            break;
        }
    }

    if (rc == -1) {
        goto invalid;
    }

    return;

invalid:

    ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                  "chat: invalid delivery payload from redis");
}


static void
ngx_chat_deliver_to_sessions(const ngx_chat_wire_record_t *rec)
{
    int                         rc;
    const char                 *sids, *sid;
    ngx_chat_session_t         *s;
    ngx_chat_deflate_shared_t   sh;

    /* a frame is compressed once per window size among its recipients */
    ngx_chat_deflate_shared_init(&sh, NGX_CHAT_WS_OP_TEXT,
                                 (u_char *) rec->body, rec->body_len);

    sids = rec->args;

    while ((rc = ngx_chat_wire_sids_next(&sids, rec->args + rec->args_len,
                                         &sid))
           == 1)
    {
        s = ngx_chat_session_find((const u_char *) sid);
        if (s == NULL) {
            continue;       /* gone meanwhile */
        }

        switch (rec->type) {

        case NGX_CHAT_WIRE_RECORD_FRAME:
            (void) ngx_chat_session_send_shared(s, &sh);
            break;

        case NGX_CHAT_WIRE_RECORD_KICK:
            ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_REPLACED,
                                   "replaced by a newer connection");
            break;

        default: /* NGX_CHAT_WIRE_RECORD_STREAM */
            ngx_chat_stream_announce(s, (u_char *) rec->body, rec->body_len);
            break;
        }
    }

    ngx_chat_session_shared_free(&sh);

    if (rc == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: invalid session list from redis");
    }
}


/* an ack: a frame for one session, and the send-to-ack time measured */

static void
ngx_chat_deliver_ack(const ngx_chat_wire_record_t *rec)
{
    int64_t              ms, now;
    ngx_time_t          *tp;
    const char          *sid;
    ngx_chat_session_t  *s;

    if (!ngx_chat_wire_ack_parse(rec->args, rec->args_len, &ms, &sid)) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: invalid ack record from redis");
        return;
    }

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    ngx_chat_metrics_ack(now > ms ? (ngx_msec_t) (now - ms) : 0);

    s = ngx_chat_session_find((const u_char *) sid);

    if (s) {
        (void) ngx_chat_session_send_text(s, (u_char *) rec->body,
                                          rec->body_len);
    }
}


static void
ngx_chat_deliver_section(const ngx_chat_wire_record_t *rec,
    const char *start, const char *end)
{
    ngx_chat_wire_range_t     range;
    ngx_chat_deliver_part_t  *part;

    if (!ngx_chat_wire_range_parse(rec->args, rec->args_len, &range)) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: invalid section from redis");
        return;
    }

    part = ngx_chat_deliver_part(range.partition);
    if (part == NULL) {
        /* beyond any partition count: deliver, unchecked */
        ngx_chat_deliver_payload(rec->body, rec->body + rec->body_len, 0);
        return;
    }

    switch (ngx_chat_chain_section(&part->chain, range.from, range.to)) {

    case NGX_CHAT_CHAIN_DELIVER:
        ngx_chat_deliver_payload(rec->body, rec->body + rec->body_len, 0);
        return;

    case NGX_CHAT_CHAIN_DROP:
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "chat: a section of partition %D up to %L came "
                      "again", range.partition, range.to);
        return;

    case NGX_CHAT_CHAIN_GAP:
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: partition %D: sections after %L up to %L "
                      "never came: asking for them", range.partition,
                      part->chain.last, part->chain.repair);
        part->gap_since = ngx_current_msec;
        ngx_chat_stats->gaps++;
        ngx_chat_deliver_ask(range.partition, part);

        /* fall through */

    default: /* NGX_CHAT_CHAIN_HOLD */
        if (ngx_chat_deliver_hold(part, start, end) != NGX_OK) {
            ngx_chat_deliver_give_up(range.partition, part);
        }

        return;
    }
}


static void
ngx_chat_deliver_repair(const ngx_chat_wire_record_t *rec)
{
    ngx_chat_wire_range_t     range;
    ngx_chat_deliver_part_t  *part;

    if (!ngx_chat_wire_range_parse(rec->args, rec->args_len, &range)) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: invalid repair from redis");
        return;
    }

    part = ngx_chat_deliver_part(range.partition);
    if (part == NULL) {
        return;
    }

    if (ngx_chat_chain_repaired(&part->chain, range.from, range.to)
        != NGX_CHAT_CHAIN_DELIVER)
    {
        return;     /* asked twice, answered twice: the first one did it */
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "chat: partition %D repaired after %L up to %L in %M ms",
                  range.partition, range.from, range.to,
                  ngx_current_msec - part->gap_since);

    ngx_chat_stats->repairs++;

    ngx_chat_deliver_payload(rec->body, rec->body + rec->body_len, 0);
    ngx_chat_deliver_release(part);
}


static ngx_int_t
ngx_chat_deliver_hold(ngx_chat_deliver_part_t *part, const char *start,
    const char *end)
{
    u_char  *p;
    size_t   len, size;

    len = end - start;

    if (part->held_len + len > NGX_CHAT_DELIVER_HOLD_MAX) {
        return NGX_ERROR;
    }

    if (part->held_len + len > part->held_size) {
        size = ngx_max(part->held_len + len, 2 * part->held_size);
        size = ngx_max(size, 4096);

        p = ngx_alloc(size, ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (part->held) {
            ngx_memcpy(p, part->held, part->held_len);
            ngx_free(part->held);
        }

        part->held = p;
        part->held_size = size;
    }

    ngx_memcpy(part->held + part->held_len, start, len);
    part->held_len += len;

    return NGX_OK;
}


/* the held sections, in order, as if they came now (another gap among
 * them holds the rest again) */

static void
ngx_chat_deliver_release(ngx_chat_deliver_part_t *part)
{
    u_char  *held;
    size_t   len;

    held = part->held;
    len = part->held_len;

    if (held == NULL) {
        return;
    }

    part->held = NULL;
    part->held_len = 0;
    part->held_size = 0;

    ngx_chat_deliver_payload((char *) held, (char *) held + len, 1);

    ngx_free(held);
}


static void
ngx_chat_deliver_ask(int32_t partition, ngx_chat_deliver_part_t *part)
{
    u_char       *record, *p;
    size_t        size;
    ngx_time_t   *tp;

    size = sizeof("{\"\":\"\",\"\":\"\",\"\":,\"\":,\"\":,\"\":,\"\":}")
           + sizeof(NGX_CHAT_WIRE_F_OP NGX_CHAT_WIRE_F_NODE
                    NGX_CHAT_WIRE_F_PARTITION NGX_CHAT_WIRE_F_AFTER
                    NGX_CHAT_WIRE_F_UPTO NGX_CHAT_WIRE_F_SINCE
                    NGX_CHAT_WIRE_F_TS "repair")
           + ngx_chat_deliver_conf->node.len + 5 * NGX_INT64_LEN;

    /* handed to Kafka, which frees it */
    record = malloc(size);
    if (record == NULL) {
        return;
    }

    tp = ngx_timeofday();

    p = ngx_sprintf(record, "{\"" NGX_CHAT_WIRE_F_OP "\":\"%s\","
                            "\"" NGX_CHAT_WIRE_F_NODE "\":\"%V\","
                            "\"" NGX_CHAT_WIRE_F_PARTITION "\":%D,"
                            "\"" NGX_CHAT_WIRE_F_AFTER "\":%L,"
                            "\"" NGX_CHAT_WIRE_F_UPTO "\":%L,"
                            "\"" NGX_CHAT_WIRE_F_SINCE "\":%L,"
                            "\"" NGX_CHAT_WIRE_F_TS "\":%L}",
                    ngx_chat_wire_op_name(NGX_CHAT_WIRE_OP_REPAIR),
                    &ngx_chat_deliver_conf->node, partition,
                    part->chain.last, part->chain.repair,
                    ngx_chat_deliver_started,
                    (int64_t) tp->sec * 1000 + tp->msec);

    part->asked = ngx_current_msec;

    if (ngx_chat_kafka_produce_to(partition, record, p - record) != NGX_OK) {
        free(record);       /* asked again at the next audit */
    }
}


/*
 * Holding on costs too much (or the repair never comes): what is held
 * goes out, and every session here is told to come back and sync, since
 * any of them may have missed something.
 */

static void
ngx_chat_deliver_give_up(int32_t partition, ngx_chat_deliver_part_t *part)
{
    u_char               buf[64], *p;
    ngx_chat_session_t  *s;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "chat: partition %D: the gap after %L was not repaired: "
                  "the sessions here reconnect", partition,
                  part->chain.last);

    ngx_chat_chain_give_up(&part->chain, part->chain.repair);
    ngx_chat_stats->gaps_given_up++;

    ngx_chat_deliver_release(part);

    p = ngx_sprintf(buf, "{\"type\":\"reconnect\",\"retry_after_ms\":%d}",
                    NGX_CHAT_DELIVER_REPAIR_AGAIN);

    for (s = ngx_chat_session_first(); s; s = ngx_chat_session_next(s)) {
        (void) ngx_chat_session_send_text(s, buf, p - buf);
        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_RESTART,
                               "missed messages: reconnect and sync");
    }
}


static ngx_chat_deliver_part_t *
ngx_chat_deliver_part(int32_t partition)
{
    ngx_uint_t                i, n;
    ngx_chat_deliver_part_t  *parts;

    if (partition < 0 || partition >= NGX_CHAT_DELIVER_PARTITIONS) {
        return NULL;
    }

    if ((ngx_uint_t) partition < ngx_chat_deliver_nparts) {
        return &ngx_chat_deliver_parts[partition];
    }

    n = ngx_max((ngx_uint_t) partition + 1, 2 * ngx_chat_deliver_nparts);
    n = ngx_min(n, NGX_CHAT_DELIVER_PARTITIONS);

    parts = ngx_alloc(n * sizeof(ngx_chat_deliver_part_t), ngx_cycle->log);
    if (parts == NULL) {
        return NULL;
    }

    if (ngx_chat_deliver_parts) {
        ngx_memcpy(parts, ngx_chat_deliver_parts,
                   ngx_chat_deliver_nparts * sizeof(ngx_chat_deliver_part_t));
        ngx_free(ngx_chat_deliver_parts);
    }

    for (i = ngx_chat_deliver_nparts; i < n; i++) {
        ngx_memzero(&parts[i], sizeof(ngx_chat_deliver_part_t));
        ngx_chat_chain_init(&parts[i].chain);
    }

    ngx_chat_deliver_parts = parts;
    ngx_chat_deliver_nparts = n;

    return &parts[partition];
}


/*
 * The audit: the heads the publishers wrote for this node, against what
 * arrived, so that the loss of the newest payloads is seen too; and the
 * repairs that have not come, asked again or given up.
 */

static void
ngx_chat_deliver_audit_handler(ngx_event_t *ev)
{
    ngx_uint_t                i;
    const char               *argv[2];
    size_t                    argvlen[2];
    ngx_chat_deliver_part_t  *part;

    for (i = 0; i < ngx_chat_deliver_nparts; i++) {
        part = &ngx_chat_deliver_parts[i];

        if (part->chain.repair < 0) {
            continue;
        }

        if (ngx_current_msec - part->gap_since >= NGX_CHAT_DELIVER_GIVE_UP) {
            ngx_chat_deliver_give_up((int32_t) i, part);

        } else if (ngx_current_msec - part->asked
                   >= NGX_CHAT_DELIVER_REPAIR_AGAIN)
        {
            ngx_chat_deliver_ask((int32_t) i, part);
        }
    }

    argv[0] = "HGETALL";
    argvlen[0] = sizeof("HGETALL") - 1;
    argv[1] = ngx_chat_deliver_chain_key;
    argvlen[1] = ngx_chat_deliver_chain_key_len;

    (void) ngx_chat_redis_command(ngx_chat_deliver_audited, NULL, 2, argv,
                                  argvlen);

    ngx_add_timer(ev, NGX_CHAT_DELIVER_AUDIT);
}


static void
ngx_chat_deliver_audited(void *reply, void *data)
{
    size_t                    i;
    ngx_int_t                 partition;
    int64_t                   head;
    redisReply               *r = reply, *field, *value;
    ngx_chat_deliver_part_t  *part;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        return;
    }

    for (i = 0; i + 1 < r->elements; i += 2) {
        field = r->element[i];
        value = r->element[i + 1];

        if (field->type != REDIS_REPLY_STRING
            || value->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        partition = ngx_atoi((u_char *) field->str, field->len);
        head = ngx_atoof((u_char *) value->str, value->len);

        if (partition == NGX_ERROR || head == NGX_ERROR) {
            continue;
        }

        part = ngx_chat_deliver_part((int32_t) partition);
        if (part == NULL) {
            continue;
        }

        if (ngx_chat_chain_audit(&part->chain, head) == NGX_CHAT_CHAIN_GAP) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "chat: partition %D: the newest sections up to "
                          "%L never came: asking for them",
                          (int32_t) partition, head);
            part->gap_since = ngx_current_msec;
            ngx_chat_stats->gaps++;
            ngx_chat_deliver_ask((int32_t) partition, part);
        }
    }
}
