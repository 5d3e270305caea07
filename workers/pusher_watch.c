/*
 * pusher_watch.c: the metrics thread's look, every few seconds: one count
 * of the outbox's rows still to push (the partial index push_outbox_due
 * holds exactly those, so the count costs little however large the
 * outbox grows) and the consumer group's lag on the push topic
 * (worker_lag.c). Each answer, or its absence, is the health of that
 * server: the loop's own connections cannot say, since the loop blocks
 * in its waits for as long as an outage lasts.
 *
 * A connection of its own, never the loop's (libpq connections are not
 * shared between threads), with short timeouts so that a server that is
 * gone costs a look seconds, not more.
 */

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pusher_watch.h"
#include "worker_lag.h"


struct chat_watch_s {
    char                   *conninfo;
    PGconn                 *pg;
    chat_lag_t             *lag;
    chat_pusher_metrics_t  *m;
};


chat_watch_t *
chat_watch_open(const char *conninfo, const char *brokers, const char *topic,
    const char *group, chat_pusher_metrics_t *m)
{
    chat_watch_t  *w;

    w = chat_alloc(sizeof(chat_watch_t));
    memset(w, 0, sizeof(*w));
    w->conninfo = chat_strdup(conninfo);
    w->m = m;
    w->lag = chat_lag_open(brokers, topic, group);

    return w;
}


static bool
chat_watch_connect(chat_watch_t *w)
{
    static const char  *keys[] = { "dbname", "connect_timeout",
                                   "application_name", NULL };
    const char         *values[] = { w->conninfo, "2", "chat_pusher_watch",
                                     NULL };
    PGresult           *res;

    if (w->pg && PQstatus(w->pg) == CONNECTION_OK) {
        return true;
    }

    if (w->pg) {
        PQfinish(w->pg);
    }

    /* the conninfo expanded first, the timeouts over it */
    w->pg = PQconnectdbParams(keys, values, 1);

    if (PQstatus(w->pg) != CONNECTION_OK) {
        PQfinish(w->pg);
        w->pg = NULL;
        return false;
    }

    res = PQexec(w->pg, "SET statement_timeout = 2000");
    PQclear(res);

    return true;
}


static void
chat_watch_count(chat_watch_t *w)
{
    PGresult  *res;
    bool       ok = false;

    if (chat_watch_connect(w)) {
        res = PQexec(w->pg,
                     "SELECT count(*) FILTER (WHERE state = 'pending'),"
                     " count(*) FILTER (WHERE state = 'sending')"
                     " FROM push_outbox WHERE state IN ('pending', 'sending')");

        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
            chat_metrics_set(&w->m->pending,
                             strtoll(PQgetvalue(res, 0, 0), NULL, 10));
            chat_metrics_set(&w->m->sending,
                             strtoll(PQgetvalue(res, 0, 1), NULL, 10));
            ok = true;
        }

        PQclear(res);
    }

    if (!ok) {
        /* not known: no figure rather than an old one */
        chat_metrics_set(&w->m->pending, -1);

        if (w->pg && PQstatus(w->pg) != CONNECTION_OK) {
            PQfinish(w->pg);
            w->pg = NULL;
        }
    }

    chat_metrics_set(&w->m->pg_up, ok ? 1 : 0);
}


void
chat_watch_look(chat_watch_t *w)
{
    int  n = -1;

    chat_watch_count(w);

    if (w->lag) {
        n = chat_lag_query(w->lag, w->m->lag, CHAT_METRICS_PARTITIONS);
    }

    chat_metrics_set(&w->m->lag_partitions, (int32_t) n);
    chat_metrics_set(&w->m->kafka_up, n >= 0 ? 1 : 0);
}


void
chat_watch_close(chat_watch_t *w)
{
    if (w == NULL) {
        return;
    }

    if (w->pg) {
        PQfinish(w->pg);
    }

    chat_lag_close(w->lag);
    free(w->conninfo);
    free(w);
}
