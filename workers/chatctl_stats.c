/*
 * chatctl_stats.c: chatctl stats, the counts an operator looks at first:
 * from PostgreSQL the conversations and messages, from Redis the live
 * nodes, sessions and users online, from Kafka the consumer group's lag
 * per partition of the requests topic.
 *
 * Each is cheap on a large deployment: the message count is PostgreSQL's
 * estimate once the table is past a million rows (exact below), the
 * online figures are the nodes' own session hashes (one HLEN a node, one
 * HVALS for the distinct users), the lag two questions to Kafka per
 * partition.
 */

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include "chatctl.h"


#define CHATCTL_STATS_EXACT_MAX   1000000
#define CHATCTL_STATS_TIMEOUT_MS  5000


static const char  chatctl_stats_help[] =
    "NAME\n"
    "    chatctl stats - counts from PostgreSQL, Redis and Kafka\n"
    "\n"
    "SYNOPSIS\n"
    "    chatctl stats [--json] [--pg C] [--redis H:P] [--brokers B]\n"
    "\n"
    "DESCRIPTION\n"
    "    PostgreSQL: conversations (direct, group), messages (exact up to\n"
    "    a million, PostgreSQL's estimate beyond), revocations.\n"
    "    Redis: the live nginx worker processes (nodes), their sessions\n"
    "    and the distinct users online.\n"
    "    Kafka: per partition of the requests topic, the high watermark,\n"
    "    the workers' committed offset and the lag between them; a lag\n"
    "    that grows means too few workers or a slow PostgreSQL.\n"
    "    A part that cannot be reached is shown with its error, and the\n"
    "    exit status is 1.\n"
    "\n"
    "OPTIONS\n"
    "    Only the shared ones (below). --json: {\"postgresql\": {\"conversations\": {\"direct\",\n"
    "    \"group\"}, \"messages\", \"messages_exact\", \"revocations\"},\n"
    "    \"redis\": {\"nodes\", \"sessions\", \"users_online\"},\n"
    "    \"kafka\": {\"topic\", \"group\", \"partitions\": [{\"partition\",\n"
    "    \"high\", \"committed\", \"lag\"}], \"lag\"}}\n"
    "\n"
    "EXAMPLES\n"
    "    chatctl stats\n"
    "    chatctl stats --json | jq .kafka.lag\n";


static json_t *
chatctl_stats_error(const char *fmt, const char *what)
{
    char  text[1024];

    /* a long error is cut, which is fine for a line of status */
    if (snprintf(text, sizeof(text), fmt, what) >= (int) sizeof(text)) {
        text[sizeof(text) - 1] = '\0';
    }

    return json_pack("{s:s}", "error", text);
}


static json_t *
chatctl_stats_pg(const chatctl_opts_t *o, bool *ok)
{
    PGconn    *pg;
    PGresult  *res;
    json_t    *out, *convs;
    long long  n;
    bool       exact;
    int        row;

    pg = chatctl_pg(o, true);
    if (pg == NULL) {
        *ok = false;
        return chatctl_stats_error("cannot connect to %s", o->pg);
    }

    out = json_object();
    convs = json_pack("{s:I,s:I}", "direct", (json_int_t) 0, "group",
                      (json_int_t) 0);
    json_object_set_new(out, "conversations", convs);

    res = chatctl_query(pg, "SELECT kind, count(*) FROM conversations"
                            " GROUP BY kind", 0, NULL);
    if (res == NULL) {
        goto failed;
    }

    for (row = 0; row < PQntuples(res); row++) {
        json_object_set_new(convs, PQgetvalue(res, row, 0),
                            json_integer(atoll(PQgetvalue(res, row, 1))));
    }

    PQclear(res);

    res = chatctl_query(pg, "SELECT reltuples::bigint FROM pg_class"
                            " WHERE relname = 'messages'"
                            " AND relkind IN ('r', 'p')", 0, NULL);
    if (res == NULL) {
        goto failed;
    }

    n = PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : -1;
    PQclear(res);
    exact = n < CHATCTL_STATS_EXACT_MAX;

    if (exact) {
        res = chatctl_query(pg, "SELECT count(*) FROM messages", 0, NULL);
        if (res == NULL) {
            goto failed;
        }

        n = atoll(PQgetvalue(res, 0, 0));
        PQclear(res);
    }

    json_object_set_new(out, "messages", json_integer(n));
    json_object_set_new(out, "messages_exact", json_boolean(exact));

    res = chatctl_query(pg, "SELECT count(*) FROM revocations", 0, NULL);
    if (res == NULL) {
        goto failed;
    }

    json_object_set_new(out, "revocations",
                        json_integer(atoll(PQgetvalue(res, 0, 0))));
    PQclear(res);
    PQfinish(pg);

    return out;

failed:

    PQfinish(pg);
    json_decref(out);
    *ok = false;

    return chatctl_stats_error("%s: a query failed", "postgresql");
}


static json_t *
chatctl_stats_redis(const chatctl_opts_t *o, bool *ok)
{
    redisContext  *r;
    redisReply    *nodes, *reply;
    json_t        *users, *out;
    char           key[NGX_CHAT_WIRE_KEY_MAX], now[24];
    long long      sessions = 0;
    size_t         i, k;

    r = chatctl_redis(o);
    if (r == NULL) {
        *ok = false;
        return chatctl_stats_error("cannot connect to %s", o->redis);
    }

    snprintf(now, sizeof(now), "%lld", (long long) chatctl_now_ms());

    nodes = chatctl_redis_command(r, "ZRANGEBYSCORE %s %s +inf",
                                  NGX_CHAT_WIRE_KEY_NODES, now);
    if (nodes == NULL) {
        redisFree(r);
        *ok = false;
        return chatctl_stats_error("%s: a command failed", "redis");
    }

    /* a set of the users seen, as a JSON object's keys */
    users = json_object();

    for (i = 0; i < nodes->elements; i++) {
        ngx_chat_wire_key(key, NGX_CHAT_WIRE_KEY_NODE_SESSIONS,
                          nodes->element[i]->str, nodes->element[i]->len);

        reply = chatctl_redis_command(r, "HVALS %s", key);
        if (reply == NULL) {
            continue;
        }

        sessions += (long long) reply->elements;

        for (k = 0; k < reply->elements; k++) {
            json_object_set_new(users, reply->element[k]->str, json_true());
        }

        freeReplyObject(reply);
    }

    out = json_pack("{s:I,s:I,s:I}", "nodes", (json_int_t) nodes->elements,
                    "sessions", (json_int_t) sessions, "users_online",
                    (json_int_t) json_object_size(users));

    json_decref(users);
    freeReplyObject(nodes);
    redisFree(r);

    return out;
}


static json_t *
chatctl_stats_kafka(const chatctl_opts_t *o, bool *ok)
{
    const struct rd_kafka_metadata    *md = NULL;
    rd_kafka_topic_partition_list_t   *parts = NULL;
    rd_kafka_conf_t                   *conf;
    rd_kafka_topic_t                  *rkt = NULL;
    rd_kafka_t                        *rk;
    rd_kafka_resp_err_t                err;
    json_t                            *out = NULL, *list;
    int64_t                            lo, hi, done, total = 0;
    char                               errstr[512];
    int                                i, n;

    conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "group.id", o->group, errstr,
                             sizeof(errstr)) != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                             sizeof(errstr)) != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "log_level", "0", errstr,
                             sizeof(errstr)) != RD_KAFKA_CONF_OK)
    {
        rd_kafka_conf_destroy(conf);
        *ok = false;
        return chatctl_stats_error("kafka: %s", errstr);
    }

    /* a consumer that never subscribes: it asks, it never joins */
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        *ok = false;
        return chatctl_stats_error("kafka: %s", errstr);
    }

    rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    err = rd_kafka_metadata(rk, 0, rkt, &md, CHATCTL_STATS_TIMEOUT_MS);

    if (err || md->topic_cnt != 1 || md->topics[0].err) {
        out = chatctl_stats_error("kafka: no topic metadata: %s",
                                  err ? rd_kafka_err2str(err)
                                  : rd_kafka_err2str(md->topics[0].err));
        goto failed;
    }

    n = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(n);

    for (i = 0; i < n; i++) {
        rd_kafka_topic_partition_list_add(parts, o->topic, i);
    }

    err = rd_kafka_committed(rk, parts, CHATCTL_STATS_TIMEOUT_MS);
    if (err) {
        out = chatctl_stats_error("kafka: committed offsets: %s",
                                  rd_kafka_err2str(err));
        goto failed;
    }

    list = json_array();

    for (i = 0; i < n; i++) {
        err = rd_kafka_query_watermark_offsets(rk, o->topic, i, &lo, &hi,
                                               CHATCTL_STATS_TIMEOUT_MS);
        if (err) {
            json_decref(list);
            out = chatctl_stats_error("kafka: watermarks: %s",
                                      rd_kafka_err2str(err));
            goto failed;
        }

        done = parts->elems[i].offset >= 0 ? parts->elems[i].offset : lo;
        total += hi > done ? hi - done : 0;

        json_array_append_new(list, json_pack("{s:i,s:I,s:o,s:I}",
            "partition", i, "high", (json_int_t) hi,
            "committed", parts->elems[i].offset >= 0
                         ? json_integer(parts->elems[i].offset)
                         : json_null(),
            "lag", (json_int_t) (hi > done ? hi - done : 0)));
    }

    out = json_pack("{s:s,s:s,s:o,s:I}", "topic", o->topic, "group",
                    o->group, "partitions", list, "lag", (json_int_t) total);

    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);

    return out;

failed:

    *ok = false;

    if (parts) {
        rd_kafka_topic_partition_list_destroy(parts);
    }

    if (md) {
        rd_kafka_metadata_destroy(md);
    }

    if (rkt) {
        rd_kafka_topic_destroy(rkt);
    }

    rd_kafka_destroy(rk);

    return out;
}


static void
chatctl_stats_print(json_t *doc)
{
    json_t      *part, *p, *parts;
    const char  *key;
    size_t       i;

    json_object_foreach(doc, key, part) {
        printf("%s:\n", key);

        if (json_object_get(part, "error")) {
            printf("    error: %s\n",
                   json_string_value(json_object_get(part, "error")));
            continue;
        }

        if (strcmp(key, "kafka") == 0) {
            printf("    topic %s, group %s, lag %lld\n",
                   json_string_value(json_object_get(part, "topic")),
                   json_string_value(json_object_get(part, "group")),
                   (long long) json_integer_value(json_object_get(part,
                                                                  "lag")));
            parts = json_object_get(part, "partitions");

            json_array_foreach(parts, i, p) {
                printf("    partition %lld: high %lld, committed %s, lag"
                       " %lld\n",
                       (long long) json_integer_value(json_object_get(p,
                                                          "partition")),
                       (long long) json_integer_value(json_object_get(p,
                                                                  "high")),
                       json_is_null(json_object_get(p, "committed"))
                       ? "none" : "yes",
                       (long long) json_integer_value(json_object_get(p,
                                                                  "lag")));
            }

            continue;
        }

        {
            const char  *k;
            json_t      *v;
            char        *text;

            json_object_foreach(part, k, v) {
                text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                printf("    %-16s %s\n", k, text ? text : "?");
                free(text);
            }
        }
    }
}


static int
chatctl_stats(const chatctl_command_t *cmd, int argc, char **argv)
{
    chatctl_opts_t   o;
    chatctl_extra_t  x;
    json_t          *doc;
    bool             ok = true;
    int              rc, nargs;

    rc = chatctl_options(cmd, argc, argv, 0, &o, &x, &nargs);
    if (rc >= 0) {
        return rc;
    }

    if (nargs != 0) {
        return chatctl_usage_error(cmd, "unexpected argument %s", argv[1]);
    }

    doc = json_object();
    json_object_set_new(doc, "postgresql", chatctl_stats_pg(&o, &ok));
    json_object_set_new(doc, "redis", chatctl_stats_redis(&o, &ok));
    json_object_set_new(doc, "kafka", chatctl_stats_kafka(&o, &ok));

    if (o.json) {
        chatctl_print_json(doc);
    } else {
        chatctl_stats_print(doc);
        json_decref(doc);
    }

    return ok ? CHATCTL_OK : CHATCTL_FAILED;
}


const chatctl_command_t  chatctl_stats_command = {
    "stats", "counts: conversations, messages, sessions online, Kafka lag",
    chatctl_stats, chatctl_stats_help
};
