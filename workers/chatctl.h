/*
 * chatctl.h: what the commands of chatctl share (chatctl_util.c): the
 * command table's row, the options every command takes, the output
 * (text or --json), and the three servers it talks to.
 *
 * chatctl reads PostgreSQL (read-only, but for migrate) and Redis, and
 * writes only through Kafka (the requests topic, acks=all: the workers
 * apply what it asks, in order with the clients' records) or, for kick,
 * Redis. The files, one per command group:
 *
 *   chatctl.c           main: the table of commands
 *   chatctl_token.c     token
 *   chatctl_migrate.c   migrate
 *   chatctl_sessions.c  sessions, kick
 *   chatctl_revoke.c    revoke
 *   chatctl_groups.c    groups list|show|members|promote|demote
 *   chatctl_message.c   message show|redact
 *   chatctl_stats.c     stats
 *   chatctl_util.c      options, output, connections
 */

#ifndef CHATCTL_H
#define CHATCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "ngx_chat_wire.h"


/* exit statuses */
#define CHATCTL_OK          0
#define CHATCTL_FAILED      1   /* a server refused, was away, timed out */
#define CHATCTL_USAGE       2   /* the command line is wrong */
#define CHATCTL_NOT_FOUND   3   /* no such session, group, member, message */


typedef struct chatctl_command_s  chatctl_command_t;

/* argv[0] is the command's name; returns the exit status */
typedef int (*chatctl_run_pt)(const chatctl_command_t *cmd, int argc,
    char **argv);

struct chatctl_command_s {
    const char      *name;
    const char      *summary;       /* one line, for chatctl --help */
    chatctl_run_pt   run;
    const char      *help;          /* the manual page, without the
                                     * sections every command shares */
};

extern const chatctl_command_t  chatctl_token_command;
extern const chatctl_command_t  chatctl_migrate_command;
extern const chatctl_command_t  chatctl_sessions_command;
extern const chatctl_command_t  chatctl_kick_command;
extern const chatctl_command_t  chatctl_revoke_command;
extern const chatctl_command_t  chatctl_groups_command;
extern const chatctl_command_t  chatctl_message_command;
extern const chatctl_command_t  chatctl_stats_command;


/*
 * The options the commands share; chatctl_options() takes them out of
 * argv (and --help), the rest stays for the command. Defaults come from
 * the environment chat_worker.env sets: CHAT_PG, CHAT_REDIS,
 * CHAT_BROKERS, CHAT_TOPIC, CHAT_GROUP.
 */
typedef struct {
    bool         json;
    const char  *pg;
    const char  *redis;
    const char  *brokers;
    const char  *topic;
    const char  *group;
    const char  *admin;         /* who asks, in the records and the log */
    const char  *device;        /* --device, for the commands that take it */
    double       wait;          /* seconds to wait for the workers */
    long         limit;
    bool         all;
} chatctl_opts_t;

/* the options a command takes besides --json, --help and the servers */
#define CHATCTL_OPT_DEVICE   0x01
#define CHATCTL_OPT_WAIT     0x02
#define CHATCTL_OPT_LIMIT    0x04
#define CHATCTL_OPT_ALL      0x08
#define CHATCTL_OPT_ADMIN    0x10
#define CHATCTL_OPT_USER     0x20   /* --user U, into device's neighbour */
#define CHATCTL_OPT_DIR      0x40

/*
 * Parses argv (from argv[1]) into o; the arguments that are not options
 * are moved to argv[1..*nargs]. Returns -1 to go on, or an exit status
 * (--help printed: 0; a bad option: 2). extra->user and extra->dir get
 * --user and --dir when the flags allow them.
 */
typedef struct {
    const char  *user;
    const char  *dir;
} chatctl_extra_t;

int chatctl_options(const chatctl_command_t *cmd, int argc, char **argv,
    unsigned allowed, chatctl_opts_t *o, chatctl_extra_t *extra,
    int *nargs);

/* the manual page of a command, with the shared sections */
void chatctl_help(const chatctl_command_t *cmd, FILE *f);
/* a usage error: what is wrong, and where the manual is; returns 2 */
int chatctl_usage_error(const chatctl_command_t *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* a failure to report; returns status */
int chatctl_fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* a user or device id as the wire has them, or a usage error */
bool chatctl_valid_id(const char *s);

int64_t chatctl_now_ms(void);
/* "2026-12-03T10:57:23.123Z" into buf of 32 bytes */
const char *chatctl_iso(int64_t ms, char *buf);

/* prints the document (and takes its reference) */
void chatctl_print_json(json_t *doc);


/* PostgreSQL: read_only for every command but migrate */
PGconn *chatctl_pg(const chatctl_opts_t *o, bool read_only);
/* a parameterized query; NULL after saying why */
PGresult *chatctl_query(PGconn *pg, const char *sql, int nparams,
    const char *const *params);

/* Redis: a reply checked for errors; NULL after saying why */
struct redisContext *chatctl_redis(const chatctl_opts_t *o);
struct redisReply *chatctl_redis_command(struct redisContext *c,
    const char *fmt, ...);

/*
 * One record to the requests topic, keyed by key, with acks=all: true
 * once Kafka has it (the fields op, ts and admin are added here). ts is
 * the record's time (ms), which revoke takes as the revocation's.
 */
bool chatctl_produce(const chatctl_opts_t *o, const char *key, json_t *rec,
    ngx_chat_wire_op_t op, int64_t ts);

/* polls done(data) every 100 ms for o->wait seconds: true once it is */
bool chatctl_wait(const chatctl_opts_t *o, bool (*done)(void *data),
    void *data);


#endif /* CHATCTL_H */
