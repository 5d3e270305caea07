/*
 * chatctl_util.c: what chatctl's commands share: the shared options and
 * the manual's shared sections, the output, and the connections to
 * PostgreSQL (read-only unless asked), Redis and Kafka (a producer with
 * acks=all and idempotence: a record it says is taken is in every
 * in-sync replica, once).
 */

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include "chatctl.h"


static const char  chatctl_shared_help[] =
    "SHARED OPTIONS\n"
    "    --json             print one JSON document instead of text\n"
    "    --pg CONNINFO      PostgreSQL (libpq connection string or URL;\n"
    "                       $CHAT_PG, else dbname=chat)\n"
    "    --redis HOST:PORT  Redis, or a unix socket path ($CHAT_REDIS, else\n"
    "                       127.0.0.1:6379)\n"
    "    --brokers LIST     Kafka bootstrap servers ($CHAT_BROKERS, else\n"
    "                       127.0.0.1:9092)\n"
    "    --topic NAME       the requests topic ($CHAT_TOPIC, else "
    NGX_CHAT_WIRE_TOPIC ")\n"
    "    --group NAME       the workers' consumer group ($CHAT_GROUP, else\n"
    "                       chat-workers)\n"
    "    --help             this page\n"
    "\n"
    "    A command uses only the servers it needs. Reads from PostgreSQL\n"
    "    run in read-only transactions; changes go through Kafka to the\n"
    "    workers (acks=all), as the clients' requests do, or for kick to\n"
    "    Redis. The settings of chat_worker.env serve chatctl as well:\n"
    "    set -a; . /etc/ngx_chat/chat_worker.env; set +a\n"
    "\n"
    "EXIT STATUS\n"
    "    0  done\n"
    "    1  a server was away, refused, or the workers did not apply the\n"
    "       change in time\n"
    "    2  the command line is wrong\n"
    "    3  no such session, group, member or message\n";


static const char *
chatctl_env(const char *name, const char *dflt)
{
    const char  *v = getenv(name);

    return v && v[0] ? v : dflt;
}


bool
chatctl_valid_id(const char *s)
{
    return s != NULL && ngx_chat_wire_valid_id(s, strlen(s));
}


/* who asks: --admin, $CHATCTL_ADMIN, the login that sudo came from, the
 * login; "operator" when none is an id */
static const char *
chatctl_admin(void)
{
    static const char  *names[] = { "CHATCTL_ADMIN", "SUDO_USER", "USER",
                                    "LOGNAME", NULL };
    const char         *v;
    int                 i;

    for (i = 0; names[i]; i++) {
        v = getenv(names[i]);

        if (chatctl_valid_id(v)) {
            return v;
        }
    }

    return "operator";
}


void
chatctl_help(const chatctl_command_t *cmd, FILE *f)
{
    fputs(cmd->help, f);
    fputs("\n", f);
    fputs(chatctl_shared_help, f);
}


int
chatctl_usage_error(const chatctl_command_t *cmd, const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "chatctl %s: ", cmd->name);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\n(chatctl %s --help for its manual)\n", cmd->name);

    return CHATCTL_USAGE;
}


int
chatctl_fail(int status, const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "chatctl: ");
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\n");

    return status;
}


int
chatctl_options(const chatctl_command_t *cmd, int argc, char **argv,
    unsigned allowed, chatctl_opts_t *o, chatctl_extra_t *extra, int *nargs)
{
    static const struct option  longopts[] = {
        { "json",    no_argument,       NULL, 'j' },
        { "help",    no_argument,       NULL, 'h' },
        { "pg",      required_argument, NULL, 'p' },
        { "redis",   required_argument, NULL, 'r' },
        { "brokers", required_argument, NULL, 'b' },
        { "topic",   required_argument, NULL, 't' },
        { "group",   required_argument, NULL, 'g' },
        { "admin",   required_argument, NULL, 'A' },
        { "device",  required_argument, NULL, 'd' },
        { "wait",    required_argument, NULL, 'w' },
        { "limit",   required_argument, NULL, 'l' },
        { "all",     no_argument,       NULL, 'a' },
        { "user",    required_argument, NULL, 'u' },
        { "dir",     required_argument, NULL, 'D' },
        { NULL, 0, NULL, 0 }
    };

    char      *end;
    unsigned   need;
    int        c, i;

    memset(o, 0, sizeof(*o));
    memset(extra, 0, sizeof(*extra));
    o->pg = chatctl_env("CHAT_PG", "dbname=chat");
    o->redis = chatctl_env("CHAT_REDIS", "127.0.0.1:6379");
    o->brokers = chatctl_env("CHAT_BROKERS", "127.0.0.1:9092");
    o->topic = chatctl_env("CHAT_TOPIC", NGX_CHAT_WIRE_TOPIC);
    o->group = chatctl_env("CHAT_GROUP", "chat-workers");
    o->admin = chatctl_admin();
    o->wait = 10;
    o->limit = 100;

    optind = 1;
    opterr = 0;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        need = 0;

        switch (c) {

        case 'j':
            o->json = true;
            break;

        case 'h':
            chatctl_help(cmd, stdout);
            return CHATCTL_OK;

        case 'p':
            o->pg = optarg;
            break;

        case 'r':
            o->redis = optarg;
            break;

        case 'b':
            o->brokers = optarg;
            break;

        case 't':
            o->topic = optarg;
            break;

        case 'g':
            o->group = optarg;
            break;

        case 'A':
            need = CHATCTL_OPT_ADMIN;
            o->admin = optarg;
            if (!chatctl_valid_id(optarg)) {
                return chatctl_usage_error(cmd, "--admin: 1-%d characters of"
                                           " [A-Za-z0-9_.@-]",
                                           NGX_CHAT_WIRE_ID_MAX);
            }
            break;

        case 'd':
            need = CHATCTL_OPT_DEVICE;
            o->device = optarg;
            if (!chatctl_valid_id(optarg) || strcmp(optarg, "-") == 0) {
                return chatctl_usage_error(cmd, "--device: not a device id:"
                                           " %s", optarg);
            }
            break;

        case 'w':
            need = CHATCTL_OPT_WAIT;
            errno = 0;
            o->wait = strtod(optarg, &end);
            if (errno || *end || o->wait < 0 || o->wait > 3600) {
                return chatctl_usage_error(cmd, "--wait: seconds, 0 to 3600");
            }
            break;

        case 'l':
            need = CHATCTL_OPT_LIMIT;
            o->limit = strtol(optarg, &end, 10);
            if (*end || o->limit < 1 || o->limit > 100000) {
                return chatctl_usage_error(cmd, "--limit: 1 to 100000");
            }
            break;

        case 'a':
            need = CHATCTL_OPT_ALL;
            o->all = true;
            break;

        case 'u':
            need = CHATCTL_OPT_USER;
            extra->user = optarg;
            if (!chatctl_valid_id(optarg)) {
                return chatctl_usage_error(cmd, "--user: not a user id: %s",
                                           optarg);
            }
            break;

        case 'D':
            need = CHATCTL_OPT_DIR;
            extra->dir = optarg;
            break;

        default:
            return chatctl_usage_error(cmd, "unknown option %s",
                                       argv[optind - 1]);
        }

        if (need && !(allowed & need)) {
            return chatctl_usage_error(cmd, "%s takes no %s", cmd->name,
                                       argv[optind - 1]);
        }
    }

    /* GNU getopt moved the arguments behind the options */
    *nargs = 0;

    for (i = optind; i < argc; i++) {
        argv[1 + (*nargs)++] = argv[i];
    }

    return -1;
}


int64_t
chatctl_now_ms(void)
{
    struct timespec  now;

    clock_gettime(CLOCK_REALTIME, &now);

    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}


const char *
chatctl_iso(int64_t ms, char *buf)
{
    time_t     t = (time_t) (ms / 1000);
    struct tm  tm;

    gmtime_r(&t, &tm);

    /* 24 bytes for any year of four digits: 32 is room enough */
    if (snprintf(buf, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int) (ms % 1000)) >= 32)
    {
        buf[31] = '\0';
    }

    return buf;
}


void
chatctl_print_json(json_t *doc)
{
    char  *text;

    text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if (text) {
        puts(text);
        free(text);
    }

    json_decref(doc);
}


/* ---- PostgreSQL ---- */

PGconn *
chatctl_pg(const chatctl_opts_t *o, bool read_only)
{
    const char  *keys[] = { "dbname", "application_name", "connect_timeout",
                            "options", NULL };
    const char  *values[] = { o->pg, "chatctl", "10",
                              read_only ? "-c default_transaction_read_only=on"
                                          " -c client_min_messages=warning"
                                        : "-c client_min_messages=warning",
                              NULL };
    PGconn      *pg;

    pg = PQconnectdbParams(keys, values, 1);

    if (PQstatus(pg) != CONNECTION_OK) {
        chatctl_fail(CHATCTL_FAILED, "postgresql: %s",
                     PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }

    return pg;
}


PGresult *
chatctl_query(PGconn *pg, const char *sql, int nparams,
    const char *const *params)
{
    PGresult  *res;

    res = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK
        && PQresultStatus(res) != PGRES_COMMAND_OK)
    {
        chatctl_fail(CHATCTL_FAILED, "postgresql: %s",
                     PQresultErrorMessage(res));
        PQclear(res);
        return NULL;
    }

    return res;
}


/* ---- Redis ---- */

redisContext *
chatctl_redis(const chatctl_opts_t *o)
{
    struct timeval   timeout = { 5, 0 };
    redisContext    *c;
    const char      *colon;
    char             host[256];
    long             port;

    if (o->redis[0] == '/') {
        c = redisConnectUnixWithTimeout(o->redis, timeout);

    } else {
        colon = strrchr(o->redis, ':');
        port = colon ? strtol(colon + 1, NULL, 10) : 6379;

        snprintf(host, sizeof(host), "%.*s",
                 colon ? (int) (colon - o->redis) : (int) strlen(o->redis),
                 o->redis);

        if (port < 1 || port > 65535) {
            chatctl_fail(CHATCTL_USAGE, "--redis %s: bad port", o->redis);
            return NULL;
        }

        c = redisConnectWithTimeout(host, (int) port, timeout);
    }

    if (c == NULL || c->err) {
        chatctl_fail(CHATCTL_FAILED, "redis %s: %s", o->redis,
                     c ? c->errstr : "out of memory");
        if (c) {
            redisFree(c);
        }
        return NULL;
    }

    redisSetTimeout(c, timeout);

    return c;
}


redisReply *
chatctl_redis_command(redisContext *c, const char *fmt, ...)
{
    redisReply  *reply;
    va_list      args;

    va_start(args, fmt);
    reply = redisvCommand(c, fmt, args);
    va_end(args);

    if (reply == NULL) {
        chatctl_fail(CHATCTL_FAILED, "redis: %s", c->errstr);
        return NULL;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        chatctl_fail(CHATCTL_FAILED, "redis: %s", reply->str);
        freeReplyObject(reply);
        return NULL;
    }

    return reply;
}


/* ---- Kafka ---- */

static void
chatctl_kafka_log(const rd_kafka_t *rk, int level, const char *facility,
    const char *message)
{
    (void) rk;

    if (level <= 3) {
        fprintf(stderr, "chatctl: kafka %s: %s\n", facility, message);
    }
}


static void
chatctl_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void) rk;
    (void) opaque;

    *(rd_kafka_resp_err_t *) m->_private = m->err;
}


bool
chatctl_produce(const chatctl_opts_t *o, const char *key, json_t *rec,
    ngx_chat_wire_op_t op, int64_t ts)
{
    rd_kafka_conf_t      *conf;
    rd_kafka_t           *rk;
    rd_kafka_resp_err_t   err, result = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    char                  errstr[512], *payload;
    bool                  ok = false;
    size_t                i;

    static const char  *settings[][2] = {
        { "acks", "all" },
        { "enable.idempotence", "true" },
        { "message.timeout.ms", "15000" },
        { "client.id", "chatctl" },
        { "log.connection.close", "false" },
    };

    json_object_set_new(rec, NGX_CHAT_WIRE_F_OP,
                        json_string(ngx_chat_wire_op_name(op)));
    json_object_set_new(rec, NGX_CHAT_WIRE_F_TS, json_integer(ts));
    json_object_set_new(rec, NGX_CHAT_WIRE_F_ADMIN, json_string(o->admin));

    payload = json_dumps(rec, JSON_COMPACT);
    if (payload == NULL) {
        chatctl_fail(CHATCTL_FAILED, "cannot write the record");
        return false;
    }

    conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK)
    {
        goto conf_failed;
    }

    for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK)
        {
            goto conf_failed;
        }
    }

    rd_kafka_conf_set_dr_msg_cb(conf, chatctl_delivered);
    rd_kafka_conf_set_log_cb(conf, chatctl_kafka_log);

    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        goto conf_failed;
    }

    err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o->topic),
                            RD_KAFKA_V_KEY(key, strlen(key)),
                            RD_KAFKA_V_VALUE(payload, strlen(payload)),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_OPAQUE(&result),
                            RD_KAFKA_V_END);

    if (err) {
        chatctl_fail(CHATCTL_FAILED, "kafka: %s", rd_kafka_err2str(err));

    } else {
        rd_kafka_flush(rk, 20000);

        if (result == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ok = true;

        } else {
            chatctl_fail(CHATCTL_FAILED, "kafka %s: the record was not"
                         " taken: %s", o->brokers,
                         result == RD_KAFKA_RESP_ERR__IN_PROGRESS
                         ? "no answer" : rd_kafka_err2str(result));
        }
    }

    rd_kafka_destroy(rk);
    free(payload);

    return ok;

conf_failed:

    chatctl_fail(CHATCTL_FAILED, "kafka: %s", errstr);
    rd_kafka_conf_destroy(conf);
    free(payload);

    return false;
}


bool
chatctl_wait(const chatctl_opts_t *o, bool (*done)(void *data), void *data)
{
    int64_t          deadline = chatctl_now_ms() + (int64_t) (o->wait * 1000);
    struct timespec  step = { 0, 100 * 1000000L };

    for ( ;; ) {
        if (done(data)) {
            return true;
        }

        if (chatctl_now_ms() >= deadline) {
            return false;
        }

        nanosleep(&step, NULL);
    }
}
