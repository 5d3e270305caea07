/*
 * worker_httpd.c: the metrics endpoint, chat_worker --metrics ADDR:PORT:
 * a small non-blocking HTTP/1.x server that answers GET /metrics with
 * the program's text (worker_metrics.c's for chat_worker), GET /health
 * when the program has one (chat_pusher), and closes every connection
 * after its answer.
 *
 * It runs in a thread of its own, not in the worker's loop: the loop
 * blocks by design (a Kafka poll; the waits for PostgreSQL or Redis,
 * which last as long as an outage does), and an outage is when a scrape
 * matters most. The thread shares nothing with the loop but the atomic
 * figures (worker_metrics.h, pusher_metrics.h) and the stop pipe; it blocks
 * every signal, so that SIGTERM reaches the loop's handler. Between
 * requests it runs the program's tick (Kafka asked for the group's lag,
 * worker_lag.c; PostgreSQL for the outbox's count) every tick_ms.
 *
 * One poll() over the listening socket, the connections (at most
 * CHAT_HTTPD_CONNS, each with a deadline) and the stop pipe. A request
 * is read up to its blank line (CHAT_HTTPD_REQUEST_MAX at most), then
 * the whole answer is written as the socket takes it.
 */

#define _GNU_SOURCE     /* memmem, pipe2 */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "worker_httpd.h"


#define CHAT_HTTPD_CONNS        16
#define CHAT_HTTPD_REQUEST_MAX  8192
#define CHAT_HTTPD_DEADLINE_MS  10000


typedef struct {
    int          fd;            /* -1: a free slot */
    int64_t      deadline;
    chat_buf_t   in;
    chat_buf_t   out;
    size_t       sent;          /* of out */
} chat_httpd_conn_t;

struct chat_httpd_s {
    int                 listen_fd;
    int                 wake[2];        /* a byte: stop */
    pthread_t           thread;
    bool                running;
    chat_httpd_site_t   site;
    int64_t             tick_next;
    chat_httpd_conn_t   conns[CHAT_HTTPD_CONNS];
};


static bool
chat_httpd_nonblocking(int fd)
{
    int  flags = fcntl(fd, F_GETFL, 0);

    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}


/* "HOST:PORT" (an IPv4 address) into sa; false after saying why */
static bool
chat_httpd_address(const char *addr, struct sockaddr_in *sa)
{
    const char  *colon;
    char         host[64], *end;
    long         port;

    colon = strrchr(addr, ':');

    if (colon == NULL || (size_t) (colon - addr) >= sizeof(host)) {
        log_error("--metrics %s: not HOST:PORT", addr);
        return false;
    }

    memcpy(host, addr, colon - addr);
    host[colon - addr] = '\0';

    port = strtol(colon + 1, &end, 10);

    if (*end || port < 1 || port > 65535) {
        log_error("--metrics %s: bad port", addr);
        return false;
    }

    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t) port);

    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa->sin_addr) != 1) {
        log_error("--metrics %s: not an IPv4 address", addr);
        return false;
    }

    return true;
}


static void
chat_httpd_close_conn(chat_httpd_conn_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }

    c->fd = -1;
    chat_buf_free(&c->in);
    chat_buf_free(&c->out);
    c->sent = 0;
}


static void
chat_httpd_answer(chat_httpd_t *h, chat_httpd_conn_t *c, int status,
    const char *reason, const char *type, const char *body, size_t len)
{
    chat_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n"
                    "Content-Type: %s\r\n"
                    "Content-Length: %zu\r\n"
                    "Connection: close\r\n\r\n", status, reason, type, len);

    if (body) {
        chat_buf_add(&c->out, body, len);
    }

    (void) h;
}


/* a whole request head is in: what it asks decides the answer */
static void
chat_httpd_request(chat_httpd_t *h, chat_httpd_conn_t *c)
{
    chat_buf_t   body = { 0 };
    const char  *req = chat_buf_cstr(&c->in);
    bool         head, well;
    int          status;

    head = strncmp(req, "HEAD ", 5) == 0;

    if (strncmp(req, "GET ", 4) != 0 && !head) {
        chat_httpd_answer(h, c, 405, "Method Not Allowed", "text/plain",
                          "GET only\n", 9);
        return;
    }

    req += head ? 5 : 4;

    if (strncmp(req, "/metrics", 8) == 0 && (req[8] == ' ' || req[8] == '?'))
    {
        h->site.metrics(h->site.data, &body);
        chat_httpd_answer(h, c, 200, "OK", "text/plain; version=0.0.4", NULL,
                          body.len);

    } else if (h->site.health && strncmp(req, "/health", 7) == 0
               && (req[7] == ' ' || req[7] == '?'))
    {
        well = h->site.health(h->site.data, &body);
        status = well ? 200 : 503;
        chat_httpd_answer(h, c, status, well ? "OK" : "Service Unavailable",
                          "text/plain", NULL, body.len);

    } else {
        chat_httpd_answer(h, c, 404, "Not Found", "text/plain",
                          "not found\n", 10);
        return;
    }

    if (!head) {
        chat_buf_add(&c->out, body.data, body.len);
    }

    chat_buf_free(&body);
}


static void
chat_httpd_read(chat_httpd_t *h, chat_httpd_conn_t *c)
{
    char     buf[2048];
    ssize_t  n;

    for ( ;; ) {
        n = read(c->fd, buf, sizeof(buf));

        if (n > 0) {
            chat_buf_add(&c->in, buf, (size_t) n);

            if (c->in.len > CHAT_HTTPD_REQUEST_MAX) {
                chat_httpd_answer(h, c, 431, "Request Header Fields Too "
                                  "Large", "text/plain", NULL, 0);
                return;
            }

            if (memmem(c->in.data, c->in.len, "\r\n\r\n", 4)
                || memmem(c->in.data, c->in.len, "\n\n", 2))
            {
                chat_httpd_request(h, c);
                return;
            }

            continue;
        }

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }

        /* closed before a whole request, or failed */
        chat_httpd_close_conn(c);
        return;
    }
}


static void
chat_httpd_write(chat_httpd_conn_t *c)
{
    ssize_t  n;

    while (c->sent < c->out.len) {
        n = write(c->fd, c->out.data + c->sent, c->out.len - c->sent);

        if (n > 0) {
            c->sent += (size_t) n;
            continue;
        }

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }

        break;
    }

    chat_httpd_close_conn(c);
}


static void
chat_httpd_accept(chat_httpd_t *h)
{
    chat_httpd_conn_t  *c;
    int                 fd, i;

    for ( ;; ) {
        fd = accept(h->listen_fd, NULL, NULL);

        if (fd < 0) {
            return;
        }

        for (i = 0; i < CHAT_HTTPD_CONNS && h->conns[i].fd >= 0; i++) {
            /* void */
        }

        if (i == CHAT_HTTPD_CONNS || !chat_httpd_nonblocking(fd)) {
            /* more scrapers than that at once is a mistake: refuse */
            close(fd);
            continue;
        }

        c = &h->conns[i];
        c->fd = fd;
        c->deadline = chat_now_ms() + CHAT_HTTPD_DEADLINE_MS;
    }
}


static void *
chat_httpd_main(void *data)
{
    chat_httpd_t       *h = data;
    chat_httpd_conn_t  *c;
    struct pollfd       fds[CHAT_HTTPD_CONNS + 2];
    int                 slot[CHAT_HTTPD_CONNS + 2];
    int64_t             now, wait;
    int                 i, n;

    for ( ;; ) {
        now = chat_now_ms();

        if (h->site.tick && now >= h->tick_next) {
            h->site.tick(h->site.data);
            now = chat_now_ms();
            h->tick_next = now + h->site.tick_ms;
        }

        wait = h->site.tick ? h->tick_next - now : 5000;

        fds[0].fd = h->wake[0];
        fds[0].events = POLLIN;
        fds[1].fd = h->listen_fd;
        fds[1].events = POLLIN;
        n = 2;

        for (i = 0; i < CHAT_HTTPD_CONNS; i++) {
            c = &h->conns[i];

            if (c->fd < 0) {
                continue;
            }

            if (now >= c->deadline) {
                chat_httpd_close_conn(c);
                continue;
            }

            if (c->deadline - now < wait) {
                wait = c->deadline - now;
            }

            fds[n].fd = c->fd;
            fds[n].events = c->out.len ? POLLOUT : POLLIN;
            slot[n++] = i;
        }

        if (poll(fds, n, (int) (wait > 0 ? wait : 0)) < 0 && errno != EINTR) {
            log_error("metrics: poll: %s", strerror(errno));
            break;
        }

        if (fds[0].revents) {
            break;
        }

        for (i = 2; i < n; i++) {
            if (fds[i].revents == 0) {
                continue;
            }

            c = &h->conns[slot[i]];

            if (c->out.len == 0) {
                chat_httpd_read(h, c);
            }

            if (c->fd >= 0 && c->out.len) {
                chat_httpd_write(c);
            }
        }

        if (fds[1].revents) {
            chat_httpd_accept(h);
        }
    }

    for (i = 0; i < CHAT_HTTPD_CONNS; i++) {
        chat_httpd_close_conn(&h->conns[i]);
    }

    return NULL;
}


chat_httpd_t *
chat_httpd_start(const char *addr, const chat_httpd_site_t *site)
{
    chat_httpd_t        *h;
    chat_log_line_t      l;
    struct sockaddr_in   sa;
    sigset_t             all, old;
    int                  one = 1, i, rc;

    if (!chat_httpd_address(addr, &sa)) {
        return NULL;
    }

    h = chat_alloc(sizeof(chat_httpd_t));
    memset(h, 0, sizeof(*h));
    h->site = *site;
    h->wake[0] = h->wake[1] = -1;

    for (i = 0; i < CHAT_HTTPD_CONNS; i++) {
        h->conns[i].fd = -1;
    }

    h->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (h->listen_fd < 0
        || setsockopt(h->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one,
                      sizeof(one)) != 0
        || bind(h->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) != 0
        || listen(h->listen_fd, 64) != 0
        || !chat_httpd_nonblocking(h->listen_fd)
        || pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) != 0)
    {
        log_error("metrics: cannot listen on %s: %s", addr, strerror(errno));
        chat_httpd_stop(h);
        return NULL;
    }

    /* the thread inherits the mask: no signal handler ever runs in it */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&h->thread, NULL, chat_httpd_main, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        log_error("metrics: cannot start the thread: %s", strerror(rc));
        chat_httpd_stop(h);
        return NULL;
    }

    h->running = true;

    chat_log_begin(&l, "info", "metrics_listening");
    chat_log_str(&l, "address", addr);
    chat_log_end(&l);

    return h;
}


void
chat_httpd_stop(chat_httpd_t *h)
{
    if (h == NULL) {
        return;
    }

    if (h->running) {
        if (write(h->wake[1], "x", 1) < 0) {
            /* the pipe is ours and empty: cannot fail */
        }

        pthread_join(h->thread, NULL);
    }

    if (h->listen_fd >= 0) {
        close(h->listen_fd);
    }

    if (h->wake[0] >= 0) {
        close(h->wake[0]);
        close(h->wake[1]);
    }

    free(h);
}
