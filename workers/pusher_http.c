/*
 * pusher_http.c: one JSON POST per job, a batch's all at once through
 * libcurl's multi interface (the connections to one gateway are reused
 * between batches). The payload: token, conversation_id, message_id (a
 * string, as on the wire), sender_id, seq, unread and, unless configured
 * off, body.
 */

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "pusher_http.h"
#include "worker_util.h"


struct chat_http_s {
    CURLM                *multi;
    chat_http_options_t   opts;
    struct curl_slist    *headers;
};


chat_http_t *
chat_http_open(const chat_http_options_t *opts)
{
    chat_http_t  *h;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return NULL;
    }

    h = chat_alloc(sizeof(chat_http_t));
    memset(h, 0, sizeof(*h));
    h->opts = *opts;
    h->multi = curl_multi_init();
    h->headers = curl_slist_append(NULL, "Content-Type: application/json");

    if (h->multi == NULL || h->headers == NULL) {
        chat_http_close(h);
        return NULL;
    }

    return h;
}


void
chat_http_close(chat_http_t *h)
{
    if (h == NULL) {
        return;
    }

    if (h->multi) {
        curl_multi_cleanup(h->multi);
    }

    curl_slist_free_all(h->headers);
    free(h);
    curl_global_cleanup();
}


static char *
chat_http_payload(const chat_http_t *h, const chat_push_job_t *j)
{
    json_t  *o;
    char     id[24], *s;

    snprintf(id, sizeof(id), "%lld", (long long) j->message_id);

    o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}",
                  "token", j->token, "conversation_id", j->conv,
                  "message_id", id, "sender_id", j->sender,
                  "seq", (json_int_t) j->seq,
                  "unread", (json_int_t) j->unread);

    if (o && h->opts.with_body) {
        json_object_set_new(o, "body", json_string(j->body));
    }

    s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);

    return s;
}


/* the gateway's answer is not read: only its status counts */
static size_t
chat_http_discard(char *p, size_t size, size_t n, void *data)
{
    (void) p;
    (void) data;

    return size * n;
}


void
chat_http_post(chat_http_t *h, chat_push_job_t *jobs, const bool *todo,
    size_t n)
{
    CURL       **easy;
    char       **bodies;
    CURLMsg     *msg;
    curl_off_t   total;
    size_t       i;
    int          running, left, numfds;

    easy = chat_alloc((n + 1) * sizeof(CURL *));
    bodies = chat_alloc((n + 1) * sizeof(char *));
    memset(easy, 0, (n + 1) * sizeof(CURL *));
    memset(bodies, 0, (n + 1) * sizeof(char *));

    for (i = 0; i < n; i++) {
        if (!todo[i]) {
            continue;
        }

        jobs[i].status = 0;
        jobs[i].elapsed_us = 0;
        bodies[i] = chat_http_payload(h, &jobs[i]);
        easy[i] = curl_easy_init();

        if (bodies[i] == NULL || easy[i] == NULL) {
            snprintf(jobs[i].error, sizeof(jobs[i].error), "out of memory");
            continue;
        }

        curl_easy_setopt(easy[i], CURLOPT_URL, jobs[i].endpoint);
        curl_easy_setopt(easy[i], CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, bodies[i]);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, h->headers);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, h->opts.timeout_ms);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, chat_http_discard);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, (void *) &jobs[i]);
        curl_easy_setopt(easy[i], CURLOPT_USERAGENT, "chat_pusher");
        curl_multi_add_handle(h->multi, easy[i]);
    }

    running = 1;

    while (running > 0) {
        if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
            break;
        }

        while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
            chat_push_job_t  *j = NULL;

            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                              (char **) &j);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_TOTAL_TIME_T,
                              &total);
            j->elapsed_us = (int64_t) total;

            if (msg->data.result == CURLE_OK) {
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
                                  &j->status);
                if (j->status < 200 || j->status > 299) {
                    snprintf(j->error, sizeof(j->error), "HTTP %ld",
                             j->status);
                }

            } else {
                snprintf(j->error, sizeof(j->error), "%s",
                         curl_easy_strerror(msg->data.result));
            }
        }

        if (running > 0) {
            curl_multi_poll(h->multi, NULL, 0, 200, &numfds);
        }
    }

    for (i = 0; i < n; i++) {
        if (easy[i]) {
            curl_multi_remove_handle(h->multi, easy[i]);
            curl_easy_cleanup(easy[i]);
        }
        free(bodies[i]);
    }

    free(easy);
    free(bodies);
}
