/*
 * chatctl_groups.c: chatctl groups: the groups, one group and its members
 * as PostgreSQL has them (read-only), and an operator's promote and
 * demote: a set_role record to the requests topic, keyed by the group so
 * that it is ordered with the group's messages, which a worker applies as
 * an admin's set_role (a role_changed event in the group), without
 * asking whether the operator is a member. chatctl then waits until
 * PostgreSQL shows the new role.
 */

#include <stdlib.h>
#include <string.h>

#include "chatctl.h"


static const char  chatctl_groups_help[] =
    "NAME\n"
    "    chatctl groups - list and inspect groups, change roles\n"
    "\n"
    "SYNOPSIS\n"
    "    chatctl groups list [--user U] [--limit N] [--json]\n"
    "    chatctl groups show <conversation> [--json]\n"
    "    chatctl groups members <conversation> [--all] [--json]\n"
    "    chatctl groups promote <conversation> <user> [--wait S] [--json]\n"
    "    chatctl groups demote <conversation> <user> [--wait S] [--json]\n"
    "\n"
    "DESCRIPTION\n"
    "    list: the groups, newest activity first (with --user, those U is\n"
    "    a member of, and its role); show: one group; members: its\n"
    "    current members with their roles and read pointers (--all: the\n"
    "    removed ones too, with the seq of their removal). These read\n"
    "    PostgreSQL.\n"
    "\n"
    "    promote and demote make a member an admin or a plain member. The\n"
    "    change goes through Kafka to the workers as a set_role request,\n"
    "    in order with the group's messages; the members' devices get a\n"
    "    role_changed event with \"by\" the operator's name and\n"
    "    \"operator\": true. chatctl waits until PostgreSQL shows it. An\n"
    "    operator may leave a group without an admin, which an admin\n"
    "    cannot.\n"
    "\n"
    "OPTIONS\n"
    "    --user U      list: only U's groups\n"
    "    --limit N     list: at most N groups (100)\n"
    "    --all         members: the removed ones too\n"
    "    --wait S      promote, demote: how long to wait (10; 0: not)\n"
    "    --admin NAME  promote, demote: who asks (default $CHATCTL_ADMIN,\n"
    "                  $SUDO_USER or $USER)\n"
    "\n"
    "    --json: list {\"groups\": [{\"conversation_id\", \"name\",\n"
    "    \"members\", \"last_seq\", \"created_at\", \"last_activity\"[,\n"
    "    \"role\"]}]}; show the same for one, with \"admins\"; members\n"
    "    {\"conversation_id\", \"members\": [{\"user_id\", \"role\",\n"
    "    \"joined_seq\", \"removed_seq\", \"delivered_seq\", \"read_seq\"}]};\n"
    "    promote, demote {\"conversation_id\", \"user_id\", \"role\",\n"
    "    \"changed\"}\n"
    "\n"
    "EXAMPLES\n"
    "    chatctl groups list --user alice\n"
    "    chatctl groups members g:0123456789abcdef1 --json\n"
    "    chatctl groups promote g:0123456789abcdef1 bob\n";


#define CHATCTL_GROUP_COLUMNS                                               \
    "c.id, c.name, (SELECT count(*) FROM members m"                          \
    " WHERE m.conversation_id = c.id AND m.removed_seq IS NULL),"            \
    " c.last_seq, c.created_at, c.last_activity"


static json_t *
chatctl_group_row(PGresult *res, int row)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}",
                     "conversation_id", PQgetvalue(res, row, 0),
                     "name", PQgetvalue(res, row, 1),
                     "members", (json_int_t) atoll(PQgetvalue(res, row, 2)),
                     "last_seq", (json_int_t) atoll(PQgetvalue(res, row, 3)),
                     "created_at", (json_int_t) atoll(PQgetvalue(res, row, 4)),
                     "last_activity",
                     (json_int_t) atoll(PQgetvalue(res, row, 5)));
}


static void
chatctl_group_print(json_t *g)
{
    char  when[32];

    printf("%-36s %-24s %7lld %9lld  %s\n",
           json_string_value(json_object_get(g, "conversation_id")),
           json_string_value(json_object_get(g, "name")),
           (long long) json_integer_value(json_object_get(g, "members")),
           (long long) json_integer_value(json_object_get(g, "last_seq")),
           chatctl_iso(json_integer_value(json_object_get(g,
                                                          "last_activity")),
                       when));
}


static int
chatctl_groups_list(const chatctl_opts_t *o, const char *user, PGconn *pg)
{
    PGresult    *res;
    json_t      *list, *g;
    char         limit[24];
    const char  *params[2];
    int          row;

    snprintf(limit, sizeof(limit), "%ld", o->limit);
    params[0] = limit;
    params[1] = user;

    if (user) {
        res = chatctl_query(pg, "SELECT " CHATCTL_GROUP_COLUMNS ", me.role"
                                " FROM conversations c JOIN members me"
                                " ON me.conversation_id = c.id"
                                " AND me.user_id = $2"
                                " AND me.removed_seq IS NULL"
                                " WHERE c.kind = 'group'"
                                " ORDER BY c.last_activity DESC, c.id"
                                " LIMIT $1", 2, params);
    } else {
        res = chatctl_query(pg, "SELECT " CHATCTL_GROUP_COLUMNS
                                " FROM conversations c"
                                " WHERE c.kind = 'group'"
                                " ORDER BY c.last_activity DESC, c.id"
                                " LIMIT $1", 1, params);
    }

    if (res == NULL) {
        return CHATCTL_FAILED;
    }

    list = json_array();

    if (!o->json) {
        printf("%-36s %-24s %7s %9s  %s\n", "GROUP", "NAME", "MEMBERS",
               "LAST SEQ", "LAST ACTIVITY");
    }

    for (row = 0; row < PQntuples(res); row++) {
        g = chatctl_group_row(res, row);

        if (user) {
            json_object_set_new(g, "role",
                                json_string(PQgetvalue(res, row, 6)));
        }

        if (!o->json) {
            chatctl_group_print(g);
        }

        json_array_append_new(list, g);
    }

    PQclear(res);

    if (o->json) {
        chatctl_print_json(json_pack("{s:o}", "groups", list));
    } else {
        json_decref(list);
    }

    return CHATCTL_OK;
}


static int
chatctl_groups_show(const chatctl_opts_t *o, const char *conv, PGconn *pg)
{
    PGresult    *res;
    json_t      *g, *admins;
    const char  *params[1] = { conv };
    int          row;

    res = chatctl_query(pg, "SELECT " CHATCTL_GROUP_COLUMNS
                            " FROM conversations c"
                            " WHERE c.id = $1 AND c.kind = 'group'", 1,
                        params);
    if (res == NULL) {
        return CHATCTL_FAILED;
    }

    if (PQntuples(res) == 0) {
        PQclear(res);
        return chatctl_fail(CHATCTL_NOT_FOUND, "no group %s", conv);
    }

    g = chatctl_group_row(res, 0);
    PQclear(res);

    res = chatctl_query(pg, "SELECT user_id FROM members"
                            " WHERE conversation_id = $1 AND role = 'admin'"
                            " AND removed_seq IS NULL ORDER BY user_id", 1,
                        params);
    if (res == NULL) {
        json_decref(g);
        return CHATCTL_FAILED;
    }

    admins = json_array();

    for (row = 0; row < PQntuples(res); row++) {
        json_array_append_new(admins, json_string(PQgetvalue(res, row, 0)));
    }

    PQclear(res);
    json_object_set_new(g, "admins", admins);

    if (o->json) {
        chatctl_print_json(g);
        return CHATCTL_OK;
    }

    printf("%-36s %-24s %7s %9s  %s\n", "GROUP", "NAME", "MEMBERS",
           "LAST SEQ", "LAST ACTIVITY");
    chatctl_group_print(g);
    printf("admins:");

    for (row = 0; row < (int) json_array_size(admins); row++) {
        printf(" %s", json_string_value(json_array_get(admins, row)));
    }

    printf("\n");
    json_decref(g);

    return CHATCTL_OK;
}


/* 1: a group, 0: none, -1: failed */
static int
chatctl_group_exists(PGconn *pg, const char *conv)
{
    const char  *params[1] = { conv };
    PGresult    *res;
    int          found;

    res = chatctl_query(pg, "SELECT 1 FROM conversations"
                            " WHERE id = $1 AND kind = 'group'", 1, params);
    if (res == NULL) {
        return -1;
    }

    found = PQntuples(res) > 0;
    PQclear(res);

    return found;
}


static int
chatctl_groups_members(const chatctl_opts_t *o, const char *conv,
    PGconn *pg)
{
    PGresult    *res;
    json_t      *list;
    const char  *params[1] = { conv };
    int          row, found;

    found = chatctl_group_exists(pg, conv);
    if (found <= 0) {
        return found < 0 ? CHATCTL_FAILED
                         : chatctl_fail(CHATCTL_NOT_FOUND, "no group %s",
                                        conv);
    }

    res = chatctl_query(pg, o->all
                            ? "SELECT user_id, role, joined_seq, removed_seq,"
                              " delivered_seq, read_seq FROM members"
                              " WHERE conversation_id = $1 ORDER BY user_id"
                            : "SELECT user_id, role, joined_seq, removed_seq,"
                              " delivered_seq, read_seq FROM members"
                              " WHERE conversation_id = $1"
                              " AND removed_seq IS NULL ORDER BY user_id",
                        1, params);
    if (res == NULL) {
        return CHATCTL_FAILED;
    }

    list = json_array();

    if (!o->json) {
        printf("%-32s %-7s %8s %8s %10s %9s\n", "USER", "ROLE", "JOINED",
               "REMOVED", "DELIVERED", "READ");
    }

    for (row = 0; row < PQntuples(res); row++) {
        json_array_append_new(list, json_pack("{s:s,s:s,s:I,s:o,s:I,s:I}",
            "user_id", PQgetvalue(res, row, 0),
            "role", PQgetvalue(res, row, 1),
            "joined_seq", (json_int_t) atoll(PQgetvalue(res, row, 2)),
            "removed_seq", PQgetisnull(res, row, 3)
                           ? json_null()
                           : json_integer(atoll(PQgetvalue(res, row, 3))),
            "delivered_seq", (json_int_t) atoll(PQgetvalue(res, row, 4)),
            "read_seq", (json_int_t) atoll(PQgetvalue(res, row, 5))));

        if (!o->json) {
            printf("%-32s %-7s %8s %8s %10s %9s\n", PQgetvalue(res, row, 0),
                   PQgetvalue(res, row, 1), PQgetvalue(res, row, 2),
                   PQgetisnull(res, row, 3) ? "-" : PQgetvalue(res, row, 3),
                   PQgetvalue(res, row, 4), PQgetvalue(res, row, 5));
        }
    }

    PQclear(res);

    if (o->json) {
        chatctl_print_json(json_pack("{s:s,s:o}", "conversation_id", conv,
                                     "members", list));
    } else {
        json_decref(list);
    }

    return CHATCTL_OK;
}


typedef struct {
    PGconn          *pg;
    const char      *params[2];
    const char      *role;
    bool             failed;
} chatctl_role_wait_t;


/* the member's current role, NULL when it is none (or on failure) */
static char *
chatctl_role_of(chatctl_role_wait_t *w)
{
    PGresult  *res;
    char      *role = NULL;

    res = chatctl_query(w->pg, "SELECT role FROM members"
                               " WHERE conversation_id = $1 AND user_id = $2"
                               " AND removed_seq IS NULL", 2, w->params);
    if (res == NULL) {
        w->failed = true;
        return NULL;
    }

    if (PQntuples(res) > 0) {
        role = strdup(PQgetvalue(res, 0, 0));
    }

    PQclear(res);

    return role;
}


static bool
chatctl_role_applied(void *data)
{
    chatctl_role_wait_t  *w = data;
    char                 *role = chatctl_role_of(w);
    bool                  done;

    done = w->failed || (role && strcmp(role, w->role) == 0);
    free(role);

    return done;
}


static int
chatctl_groups_role(const chatctl_opts_t *o, const char *conv,
    const char *user, const char *role, PGconn *pg)
{
    chatctl_role_wait_t   w;
    json_t               *rec;
    char                 *now;
    bool                  changed = false;
    int                   found, rc = CHATCTL_OK;

    found = chatctl_group_exists(pg, conv);
    if (found <= 0) {
        return found < 0 ? CHATCTL_FAILED
                         : chatctl_fail(CHATCTL_NOT_FOUND, "no group %s",
                                        conv);
    }

    memset(&w, 0, sizeof(w));
    w.pg = pg;
    w.params[0] = conv;
    w.params[1] = user;
    w.role = role;

    now = chatctl_role_of(&w);

    if (w.failed) {
        return CHATCTL_FAILED;
    }

    if (now == NULL) {
        return chatctl_fail(CHATCTL_NOT_FOUND, "%s is not a member of %s",
                            user, conv);
    }

    if (strcmp(now, role) != 0) {
        rec = json_pack("{s:s,s:s,s:s}", NGX_CHAT_WIRE_F_CONV, conv,
                        NGX_CHAT_WIRE_F_USER_ID, user, NGX_CHAT_WIRE_F_ROLE,
                        role);

        if (!chatctl_produce(o, conv, rec, NGX_CHAT_WIRE_OP_SET_ROLE,
                             chatctl_now_ms()))
        {
            json_decref(rec);
            free(now);
            return CHATCTL_FAILED;
        }

        json_decref(rec);
        changed = true;

        if (o->wait > 0
            && (!chatctl_wait(o, chatctl_role_applied, &w) || w.failed))
        {
            rc = chatctl_fail(CHATCTL_FAILED, "the workers have not applied"
                              " the change after %g s", o->wait);
        }
    }

    free(now);

    if (o->json) {
        chatctl_print_json(json_pack("{s:s,s:s,s:s,s:b}", "conversation_id",
                                     conv, "user_id", user, "role", role,
                                     "changed", changed));

    } else if (rc == CHATCTL_OK) {
        printf("%s in %s: %s%s\n", user, conv, role,
               changed ? "" : " already");
    }

    return rc;
}


static int
chatctl_groups(const chatctl_command_t *cmd, int argc, char **argv)
{
    chatctl_opts_t    o;
    chatctl_extra_t   x;
    PGconn           *pg;
    const char       *what;
    int               rc, nargs, want;

    rc = chatctl_options(cmd, argc, argv,
                         CHATCTL_OPT_USER | CHATCTL_OPT_LIMIT
                         | CHATCTL_OPT_ALL | CHATCTL_OPT_WAIT
                         | CHATCTL_OPT_ADMIN, &o, &x, &nargs);
    if (rc >= 0) {
        return rc;
    }

    if (nargs < 1) {
        return chatctl_usage_error(cmd, "list, show, members, promote or"
                                   " demote?");
    }

    what = argv[1];

    want = strcmp(what, "list") == 0 ? 0
           : strcmp(what, "show") == 0 || strcmp(what, "members") == 0 ? 1
           : strcmp(what, "promote") == 0 || strcmp(what, "demote") == 0 ? 2
           : -1;

    if (want < 0) {
        return chatctl_usage_error(cmd, "no groups %s", what);
    }

    if (nargs != 1 + want) {
        return chatctl_usage_error(cmd, "groups %s takes %s", what,
                                   want == 0 ? "no argument"
                                   : want == 1 ? "a conversation"
                                   : "a conversation and a user");
    }

    if (want == 2 && !chatctl_valid_id(argv[3])) {
        return chatctl_usage_error(cmd, "not a user id: %s", argv[3]);
    }

    if (x.user && want != 0) {
        return chatctl_usage_error(cmd, "--user goes with list");
    }

    if (want > 0 && strlen(argv[2]) > NGX_CHAT_WIRE_CONV_MAX) {
        return chatctl_usage_error(cmd, "not a conversation id: %s",
                                   argv[2]);
    }

    pg = chatctl_pg(&o, true);
    if (pg == NULL) {
        return CHATCTL_FAILED;
    }

    if (want == 0) {
        rc = chatctl_groups_list(&o, x.user, pg);

    } else if (strcmp(what, "show") == 0) {
        rc = chatctl_groups_show(&o, argv[2], pg);

    } else if (strcmp(what, "members") == 0) {
        rc = chatctl_groups_members(&o, argv[2], pg);

    } else {
        rc = chatctl_groups_role(&o, argv[2], argv[3],
                                 strcmp(what, "promote") == 0
                                 ? NGX_CHAT_WIRE_ROLE_ADMIN
                                 : NGX_CHAT_WIRE_ROLE_MEMBER, pg);
    }

    PQfinish(pg);

    return rc;
}


const chatctl_command_t  chatctl_groups_command = {
    "groups", "list groups, show one and its members, promote or demote",
    chatctl_groups, chatctl_groups_help
};
