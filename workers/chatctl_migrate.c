/*
 * chatctl_migrate.c: chatctl migrate, the schema migrations: the files
 * sql/NNN_*.sql in the order of their names, each one not yet applied in
 * one transaction together with its row in schema_migrations (version
 * NNN), so that a migration is applied whole or not at all, and once.
 *
 * An advisory lock makes two migrations at once (two hosts starting)
 * take turns; the second finds everything applied.
 */

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chatctl.h"


/* any constant: the migrations' turn among the database's sessions */
#define CHATCTL_MIGRATE_LOCK  "7432100"

#define CHATCTL_MIGRATIONS_MAX  1000


static const char  chatctl_migrate_help[] =
    "NAME\n"
    "    chatctl migrate - apply the schema migrations to PostgreSQL\n"
    "\n"
    "SYNOPSIS\n"
    "    chatctl migrate [status] [--pg CONNINFO] [--dir DIR] [--json]\n"
    "\n"
    "DESCRIPTION\n"
    "    Applies the files DIR/NNN_*.sql that schema_migrations does not\n"
    "    list, in the order of their names, each in one transaction with\n"
    "    its row (version NNN): a migration that fails leaves nothing\n"
    "    behind, and the ones after it are not tried. schema_migrations\n"
    "    is created when missing. Two migrations at once take turns.\n"
    "    With status, lists what is applied and what is pending, and\n"
    "    changes nothing.\n"
    "\n"
    "    The migrations run as the user of CONNINFO, which must own the\n"
    "    schema (the database's owner).\n"
    "\n"
    "OPTIONS\n"
    "    --dir DIR   the migrations (default: $CHAT_SQL_DIR, else\n"
    "                ../share/ngx_chat/sql beside the chatctl binary when\n"
    "                it exists, else ./sql)\n"
    "\n"
    "    --json: {\"dir\", \"applied\": [{\"version\", \"file\", \"ms\"}],\n"
    "    \"current\": [versions already there], \"pending\": [...]}\n"
    "\n"
    "EXAMPLES\n"
    "    chatctl migrate --pg 'host=db1 dbname=chat user=chat'\n"
    "    chatctl migrate status --json\n";


typedef struct {
    char  name[NAME_MAX + 1];
    char  version[32];
} chatctl_migration_t;


static int
chatctl_migration_cmp(const void *a, const void *b)
{
    return strcmp(((const chatctl_migration_t *) a)->name,
                  ((const chatctl_migration_t *) b)->name);
}


/* the directory of the migrations, as the manual says */
static const char *
chatctl_migrate_dir(const char *given, char *buf, size_t size)
{
    struct stat  st;
    char         exe[PATH_MAX];
    char        *slash;
    ssize_t      n;

    if (given) {
        return given;
    }

    if (getenv("CHAT_SQL_DIR") && getenv("CHAT_SQL_DIR")[0]) {
        return getenv("CHAT_SQL_DIR");
    }

    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (n > 0) {
        exe[n] = '\0';
        slash = strrchr(exe, '/');

        if (slash) {
            *slash = '\0';

            if (snprintf(buf, size, "%s/../share/ngx_chat/sql", exe)
                < (int) size
                && stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
            {
                return buf;
            }
        }
    }

    return "sql";
}


/* NNN_*.sql of dir, by name; -1 after saying why */
static int
chatctl_migrations(const char *dir, chatctl_migration_t *m, int max)
{
    DIR            *d;
    struct dirent  *e;
    size_t          len, digits;
    int             n = 0, i;

    d = opendir(dir);
    if (d == NULL) {
        return chatctl_fail(-1, "%s: %s", dir, strerror(errno));
    }

    while ((e = readdir(d)) != NULL) {
        len = strlen(e->d_name);
        digits = strspn(e->d_name, "0123456789");

        if (digits == 0 || digits >= sizeof(m->version)
            || e->d_name[digits] != '_' || len < 5
            || strcmp(e->d_name + len - 4, ".sql") != 0)
        {
            continue;
        }

        if (n == max) {
            closedir(d);
            return chatctl_fail(-1, "%s: more than %d migrations", dir, max);
        }

        snprintf(m[n].name, sizeof(m[n].name), "%s", e->d_name);
        snprintf(m[n].version, sizeof(m[n].version), "%.*s", (int) digits,
                 e->d_name);
        n++;
    }

    closedir(d);

    qsort(m, n, sizeof(chatctl_migration_t), chatctl_migration_cmp);

    for (i = 1; i < n; i++) {
        if (strcmp(m[i].version, m[i - 1].version) == 0) {
            return chatctl_fail(-1, "%s: %s and %s have the same version",
                                dir, m[i - 1].name, m[i].name);
        }
    }

    return n;
}


static char *
chatctl_read_file(const char *path)
{
    FILE    *f;
    char    *text;
    long     size;

    f = fopen(path, "rb");
    if (f == NULL) {
        chatctl_fail(CHATCTL_FAILED, "%s: %s", path, strerror(errno));
        return NULL;
    }

    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);

    text = malloc(size + 1);

    if (text == NULL || fread(text, 1, size, f) != (size_t) size) {
        chatctl_fail(CHATCTL_FAILED, "%s: cannot read it", path);
        free(text);
        fclose(f);
        return NULL;
    }

    text[size] = '\0';
    fclose(f);

    return text;
}


static bool
chatctl_exec(PGconn *pg, const char *sql, const char *what)
{
    PGresult  *res;
    bool       ok;

    res = PQexec(pg, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK
         || PQresultStatus(res) == PGRES_TUPLES_OK;

    if (!ok) {
        chatctl_fail(CHATCTL_FAILED, "%s: %s", what,
                     PQresultErrorMessage(res));
    }

    PQclear(res);

    return ok;
}


/* one migration and its row, in one transaction */
static bool
chatctl_apply(PGconn *pg, const char *dir, const chatctl_migration_t *m)
{
    char         path[PATH_MAX];
    char        *sql;
    const char  *params[1] = { m->version };
    PGresult    *res;
    bool         ok;

    if (snprintf(path, sizeof(path), "%s/%s", dir, m->name)
        >= (int) sizeof(path))
    {
        chatctl_fail(CHATCTL_FAILED, "%s/%s: too long a path", dir, m->name);
        return false;
    }

    sql = chatctl_read_file(path);
    if (sql == NULL) {
        return false;
    }

    ok = chatctl_exec(pg, "BEGIN", "BEGIN") && chatctl_exec(pg, sql, path);
    free(sql);

    if (ok) {
        res = chatctl_query(pg, "INSERT INTO schema_migrations (version)"
                                " VALUES ($1)", 1, params);
        ok = res != NULL;
        PQclear(res);
    }

    if (ok) {
        return chatctl_exec(pg, "COMMIT", "COMMIT");
    }

    PQclear(PQexec(pg, "ROLLBACK"));

    return false;
}


static int
chatctl_migrate(const chatctl_command_t *cmd, int argc, char **argv)
{
    chatctl_opts_t        o;
    chatctl_extra_t       x;
    chatctl_migration_t  *m = NULL;
    PGconn               *pg = NULL;
    PGresult             *res;
    json_t               *applied, *current, *pending;
    const char           *dir;
    char                  buf[PATH_MAX];
    bool                  status = false, have;
    int64_t               began;
    int                   rc, nargs, n, i, row;

    rc = chatctl_options(cmd, argc, argv, CHATCTL_OPT_DIR, &o, &x, &nargs);
    if (rc >= 0) {
        return rc;
    }

    if (nargs == 1 && strcmp(argv[1], "status") == 0) {
        status = true;

    } else if (nargs != 0) {
        return chatctl_usage_error(cmd, "unexpected argument %s", argv[1]);
    }

    dir = chatctl_migrate_dir(x.dir, buf, sizeof(buf));

    m = calloc(CHATCTL_MIGRATIONS_MAX, sizeof(chatctl_migration_t));
    if (m == NULL) {
        return chatctl_fail(CHATCTL_FAILED, "out of memory");
    }

    n = chatctl_migrations(dir, m, CHATCTL_MIGRATIONS_MAX);
    if (n < 0) {
        free(m);
        return CHATCTL_FAILED;
    }

    pg = chatctl_pg(&o, false);
    if (pg == NULL) {
        free(m);
        return CHATCTL_FAILED;
    }

    applied = json_array();
    current = json_array();
    pending = json_array();
    rc = CHATCTL_FAILED;

    if (!chatctl_exec(pg, "SELECT pg_advisory_lock(" CHATCTL_MIGRATE_LOCK ")",
                      "the migrations' lock")
        || !chatctl_exec(pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                             " version text PRIMARY KEY,"
                             " applied_at timestamptz NOT NULL"
                             " DEFAULT now())", "schema_migrations"))
    {
        goto done;
    }

    res = chatctl_query(pg, "SELECT version FROM schema_migrations", 0, NULL);
    if (res == NULL) {
        goto done;
    }

    for (i = 0; i < n; i++) {
        have = false;

        for (row = 0; row < PQntuples(res) && !have; row++) {
            have = strcmp(PQgetvalue(res, row, 0), m[i].version) == 0;
        }

        if (have) {
            json_array_append_new(current, json_string(m[i].version));
            continue;
        }

        if (status) {
            json_array_append_new(pending, json_string(m[i].name));
            continue;
        }

        began = chatctl_now_ms();

        if (!chatctl_apply(pg, dir, &m[i])) {
            chatctl_fail(CHATCTL_FAILED, "migration %s/%s failed: nothing of"
                         " it was applied", dir, m[i].name);
            PQclear(res);
            goto done;
        }

        json_array_append_new(applied,
                              json_pack("{s:s,s:s,s:I}",
                                        "version", m[i].version,
                                        "file", m[i].name,
                                        "ms", (json_int_t)
                                              (chatctl_now_ms() - began)));

        if (!o.json) {
            printf("applied %s (%lld ms)\n", m[i].name,
                   (long long) (chatctl_now_ms() - began));
            fflush(stdout);
        }
    }

    PQclear(res);
    rc = CHATCTL_OK;

    if (o.json) {
        chatctl_print_json(json_pack("{s:s,s:O,s:O,s:O}", "dir", dir,
                                     "applied", applied, "current", current,
                                     "pending", pending));

    } else if (status) {
        printf("%zu applied, %zu pending\n", json_array_size(current),
               json_array_size(pending));

        for (i = 0; i < (int) json_array_size(pending); i++) {
            printf("pending %s\n",
                   json_string_value(json_array_get(pending, i)));
        }

    } else if (json_array_size(applied) == 0) {
        printf("schema up to date (%zu migrations)\n",
               json_array_size(current));
    }

done:

    json_decref(applied);
    json_decref(current);
    json_decref(pending);
    PQfinish(pg);
    free(m);

    return rc;
}


const chatctl_command_t  chatctl_migrate_command = {
    "migrate", "apply the sql/NNN_*.sql migrations not yet applied",
    chatctl_migrate, chatctl_migrate_help
};
