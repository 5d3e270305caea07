
/*
 * chat_bench: the WebSocket client (RFC 6455) of the load processes.
 *
 * Non-blocking sockets in one epoll loop, each bound to a source address
 * in 127.0.0.0/8 before connect, so that the ephemeral ports of one
 * source address are never the limit. The upgrade carries a token signed
 * by the module's own code; client frames are masked; a fragmented
 * message is reassembled; pings are answered, closes echoed. A connection
 * that goes down is counted once, by why (FAIL_NAMES) before its hello and
 * by close code after it. With --deflate the upgrade offers
 * permessage-deflate, the 101 must agree, and the server's compressed
 * messages (RSV1) are inflated with zlib before they are read.
 */


#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "ngx_chat_jwt.h"


#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif



/* Sec-WebSocket-Accept for a key: base64(SHA-1(key GUID)) */
static void
ws_accept_for(const char *key, char *out)
{
    char          buf[128];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int  mdlen = 0;
    int           n;

    n = snprintf(buf, sizeof(buf), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                 key);
    if (!EVP_Digest(buf, (size_t) n, md, &mdlen, EVP_sha1(), NULL)) {
        die("SHA-1 failed");
    }
    EVP_EncodeBlock((unsigned char *) out, md, (int) mdlen);
}


static int
close_idx(int code)
{
    int i;

    for (i = 0; i < NCLOSE - 1; i++) {
        if (CLOSE_CODES[i] == code) {
            return i;
        }
    }
    return NCLOSE - 1;
}


void
set_error(bench_t *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx->slot->last_error[0]) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(ctx->slot->last_error, sizeof(ctx->slot->last_error), fmt, ap);
    va_end(ap);
}


void
proto_err(bench_t *ctx, conn_t *c, const char *what)
{
    INC(ctx->slot->proto_err);
    set_error(ctx, "protocol: %s (%s)", what, c->user);
    if (ctx->opt.verbose) {
        logmsg(ctx, "protocol: %s (%s)", what, c->user);
    }
}


static void
conn_free_bufs(conn_t *c)
{
    free(c->rbuf);
    free(c->wbuf);
    free(c->fbuf);
    c->rbuf = c->wbuf = c->fbuf = NULL;
    c->rlen = c->rcap = c->woff = c->wlen = c->wcap = c->flen = c->fcap = 0;
    c->fop = 0;
}


static void
conn_arm(bench_t *ctx, conn_t *c, int out)
{
    struct epoll_event e;

    if (c->fd < 0 || c->armed == out) {
        return;
    }
    e.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0);
    e.data.u64 = c->li;
    if (epoll_ctl(ctx->ep, EPOLL_CTL_MOD, c->fd, &e) < 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
    c->armed = (uint8_t) out;
}


static int
conn_write(bench_t *ctx, conn_t *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    ssize_t        n;

    if (c->fd < 0) {
        return -1;
    }
    if (c->woff == c->wlen) {
        c->woff = c->wlen = 0;
        n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t) len) {
            return 0;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                conn_down(ctx, c, FR_RESET, 1006);
                return -1;
            }
            n = 0;
        }
        p += n;
        len -= (size_t) n;
    }
    if (c->wlen + len > c->wcap) {
        if (c->woff > 0) {
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        if (c->wlen + len > c->wcap) {
            c->wcap = (uint32_t) ((c->wlen + len) * 2 + 1024);
            c->wbuf = xrealloc(c->wbuf, c->wcap);
        }
    }
    memcpy(c->wbuf + c->wlen, p, len);
    c->wlen += (uint32_t) len;
    conn_arm(ctx, c, 1);
    return 0;
}


void
conn_flush(bench_t *ctx, conn_t *c)
{
    ssize_t n;

    while (c->fd >= 0 && c->woff < c->wlen) {
        n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return;
            }
            conn_down(ctx, c, FR_RESET, 1006);
            return;
        }
        c->woff += (uint32_t) n;
    }
    if (c->fd >= 0) {
        c->woff = c->wlen = 0;
        if (c->wcap > 65536) {
            free(c->wbuf);
            c->wbuf = NULL;
            c->wcap = 0;
        }
        conn_arm(ctx, c, 0);
    }
}


/* one masked client frame */
int
ws_send(bench_t *ctx, conn_t *c, int op, const void *data, size_t len)
{
    uint8_t        stackbuf[4096], *f = stackbuf, mask[4];
    const uint8_t *p = data;
    size_t         h = 0, i;
    uint64_t       r = rng(ctx);
    int            rc;

    if (len + 14 > sizeof(stackbuf)) {
        f = xrealloc(NULL, len + 14);
    }
    f[h++] = (uint8_t) (0x80 | op);
    if (len < 126) {
        f[h++] = (uint8_t) (0x80 | len);
    } else if (len < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t) (len >> 8);
        f[h++] = (uint8_t) len;
    } else {
        f[h++] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            f[h++] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
        }
    }
    memcpy(mask, &r, 4);
    memcpy(f + h, mask, 4);
    h += 4;
    for (i = 0; i < len; i++) {
        f[h + i] = p[i] ^ mask[i & 3];
    }
    rc = conn_write(ctx, c, f, h + len);
    if (f != stackbuf) {
        free(f);
    }
    return rc;
}


int
ws_text(bench_t *ctx, conn_t *c, const char *s, size_t len)
{
    return ws_send(ctx, c, 0x1, s, len);
}


static void
src_addr(bench_t *ctx, uint32_t gi, struct sockaddr_in *sa)
{
    uint32_t s = gi % (uint32_t) ctx->opt.src_ips;

    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = 0;
    /* 127.0.0.2 .. 127.0.0.254, then 127.0.1.2 ... */
    sa->sin_addr.s_addr = htonl(0x7f000000u | ((s / 253) << 8) | (2 + s % 253));
}


/* start connecting; failures are reported through conn_down */
void
conn_start(bench_t *ctx, conn_t *c)
{
    struct sockaddr_in  src, dst;
    struct epoll_event  e;
    int                 fd, one = 1, rc;

    conn_free_bufs(c);
    c->attempts++;
    c->got_hello = 0;
    c->fop = 0;
    c->t_start = ctx->now;
    c->deadline = ctx->now + (int64_t) (ctx->opt.timeout * 1e6);
    c->state = CS_CONNECTING;
    ctx->inflight++;
    if (LOAD(ctx->slot->t_first_start) == 0) {
        __atomic_store_n(&ctx->slot->t_first_start, ctx->now, __ATOMIC_RELAXED);
    }

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_error(ctx, "socket: %s", strerror(errno));
        c->fd = -1;
        conn_down(ctx, c, FR_SOCKET, 0);
        return;
    }
    c->fd = fd;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    src_addr(ctx, c->gi, &src);
    if (bind(fd, (struct sockaddr *) &src, sizeof(src)) < 0) {
        set_error(ctx, "bind %s: %s", inet_ntoa(src.sin_addr), strerror(errno));
        conn_down(ctx, c, FR_BIND, 0);
        return;
    }
    memset(&dst, 0, sizeof(dst));
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t) ctx->opt.port);
    dst.sin_addr = ctx->opt.dst;
    rc = connect(fd, (struct sockaddr *) &dst, sizeof(dst));
    if (rc < 0 && errno != EINPROGRESS) {
        set_error(ctx, "connect: %s", strerror(errno));
        conn_down(ctx, c, errno == ECONNREFUSED ? FR_REFUSED : FR_SOCKET, 0);
        return;
    }
    e.events = EPOLLOUT;
    e.data.u64 = c->li;
    if (epoll_ctl(ctx->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        die("epoll_ctl add: %s", strerror(errno));
    }
    c->armed = 2;
}


/*
 * The connection's token: HS256 with the claims sub, dev and exp, signed
 * by the module's own code, as chatctl signs
 */
static void
conn_token(bench_t *ctx, conn_t *c, char *out, size_t size)
{
    size_t             n, len;
    char               claims[256];
    static const char  header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

    n = (size_t) snprintf(claims, sizeof(claims),
                          "{\"sub\":\"%s\",\"dev\":\"bench\",\"exp\":%" PRId64
                          "}", c->user, ctx->now / 1000000 + 86400);

    if (ngx_chat_jwt_sign(NGX_CHAT_JWT_HS256, (const unsigned char *) header,
                          sizeof(header) - 1, (const unsigned char *) claims,
                          n, (const unsigned char *) ctx->opt.secret,
                          strlen(ctx->opt.secret), (unsigned char *) out,
                          size, &len)
        != 0)
    {
        die("cannot sign a token for %s", c->user);
    }
}


void
conn_connected(bench_t *ctx, conn_t *c)
{
    char      req[2048], token[1024];
    uint8_t   raw[16];
    uint64_t  r1 = rng(ctx), r2 = rng(ctx);
    int       err = 0, n;
    socklen_t sl = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0) {
        err = errno;
    }
    if (err != 0) {
        set_error(ctx, "connect: %s", strerror(err));
        conn_down(ctx, c, err == ECONNREFUSED ? FR_REFUSED
                     : err == ETIMEDOUT ? FR_TIMEOUT : FR_RESET, 0);
        return;
    }
    memcpy(raw, &r1, 8);
    memcpy(raw + 8, &r2, 8);
    EVP_EncodeBlock((unsigned char *) c->key, raw, 16);
    conn_token(ctx, c, token, sizeof(token));
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: chat.v1\r\n"
                 "%s"
                 "Authorization: Bearer %s\r\n"
                 "User-Agent: chat_bench\r\n"
                 "\r\n",
                 ctx->opt.path, ctx->opt.host, ctx->opt.port, c->key,
                 ctx->opt.deflate ? "Sec-WebSocket-Extensions: "
                                    "permessage-deflate; "
                                    "client_max_window_bits\r\n" : "",
                 token);
    c->state = CS_HANDSHAKE;
    conn_arm(ctx, c, 0);
    conn_write(ctx, c, req, (size_t) n);
}


static int
handshake_ok(bench_t *ctx, conn_t *c, const uint8_t *buf, size_t hl)
{
    char        hdr[8192], want[64], *p, *e;
    int         status;

    if (hl >= sizeof(hdr) || hl < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0) {
        set_error(ctx, "bad HTTP answer to the upgrade");
        conn_down(ctx, c, FR_HTTP_OTHER, 0);
        return 0;
    }
    memcpy(hdr, buf, hl);
    hdr[hl] = '\0';
    status = atoi(hdr + 9);
    if (status != 101) {
        ctx->slot->last_http = status;
        set_error(ctx, "upgrade answered HTTP %d", status);
        conn_down(ctx, c, status == 401 ? FR_HTTP401
                     : status == 503 ? FR_HTTP503 : FR_HTTP_OTHER, 0);
        return 0;
    }
    ws_accept_for(c->key, want);
    p = strcasestr(hdr, "\r\nSec-WebSocket-Accept:");
    if (p == NULL) {
        set_error(ctx, "101 without Sec-WebSocket-Accept");
        conn_down(ctx, c, FR_BAD_ACCEPT, 0);
        return 0;
    }
    p += sizeof("\r\nSec-WebSocket-Accept:") - 1;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    e = strstr(p, "\r\n");
    if (e == NULL || (size_t) (e - p) != strlen(want)
        || memcmp(p, want, strlen(want)) != 0)
    {
        set_error(ctx, "wrong Sec-WebSocket-Accept");
        conn_down(ctx, c, FR_BAD_ACCEPT, 0);
        return 0;
    }
    if (ctx->opt.deflate
        && (p = strcasestr(hdr, "\r\nSec-WebSocket-Extensions:")) != NULL)
    {
        e = strstr(p + 2, "\r\n");
        if (e && memmem(p, (size_t) (e - p), "permessage-deflate",
                        sizeof("permessage-deflate") - 1))
        {
            return 1;
        }
    }
    if (ctx->opt.deflate) {
        set_error(ctx, "--deflate: the 101 has no permessage-deflate"
                       " (a location with chat_deflate on?)");
        conn_down(ctx, c, FR_HTTP_OTHER, 0);
        return 0;
    }
    return 1;
}


/* a compressed message, inflated into ctx->zbuf: its length, or -1 */
static long
ws_inflate(bench_t *ctx, const uint8_t *p, size_t n)
{
    static const uint8_t  tail[4] = { 0x00, 0x00, 0xff, 0xff };
    z_stream             *z = ctx->zin;
    size_t                out;
    int                   rc, i;

    if (z == NULL) {
        z = xcalloc(1, sizeof(z_stream));
        if (inflateInit2(z, -15) != Z_OK) {
            die("inflateInit2 failed");
        }
        ctx->zin = z;
    }
    if (ctx->zcap == 0) {
        ctx->zcap = 65536;
        ctx->zbuf = xrealloc(NULL, ctx->zcap);
    }
    out = 0;
    for (i = 0; i < 2; i++) {
        z->next_in = (Bytef *) (i == 0 ? p : tail);
        z->avail_in = (uInt) (i == 0 ? n : sizeof(tail));
        do {
            if (out == ctx->zcap) {
                ctx->zcap *= 2;
                ctx->zbuf = xrealloc(ctx->zbuf, ctx->zcap);
            }
            z->next_out = ctx->zbuf + out;
            z->avail_out = (uInt) (ctx->zcap - out);
            rc = inflate(z, Z_SYNC_FLUSH);
            out = ctx->zcap - z->avail_out;
            if ((rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
                || (rc == Z_BUF_ERROR && z->avail_in && z->avail_out))
            {
                inflateReset(z);
                return -1;
            }
        } while (z->avail_in > 0 && rc != Z_STREAM_END);
    }
    inflateReset(z);
    return (long) out;
}


static void
frag_append(conn_t *c, const uint8_t *p, size_t n)
{
    if (c->flen + n > c->fcap) {
        c->fcap = (uint32_t) ((c->flen + n) * 2);
        c->fbuf = xrealloc(c->fbuf, c->fcap);
    }
    memcpy(c->fbuf + c->flen, p, n);
    c->flen += (uint32_t) n;
}


static void
handle_frame(bench_t *ctx, conn_t *c, int fin, int rsv1, int op, uint8_t *p,
    size_t n)
{
    int   code;
    long  len;

    if (rsv1) {
        /* ngx_chat never fragments what it compresses */
        if (!ctx->opt.deflate || !fin || (op != 0x1 && op != 0x2)) {
            proto_err(ctx, c, "RSV1 where permessage-deflate allows none");
            return;
        }
        len = ws_inflate(ctx, p, n);
        if (len < 0) {
            proto_err(ctx, c, "bad compressed frame");
            return;
        }
        p = ctx->zbuf;
        n = (size_t) len;
    }

    switch (op) {
    case 0x1:
    case 0x2:
        if (c->fop) {
            proto_err(ctx, c, "new data frame inside a fragmented message");
        }
        if (op == 0x2) {
            proto_err(ctx, c, "binary frame from the server");
        }
        if (fin) {
            if (op == 0x1) {
                on_text(ctx, c, p, n);
            }
        } else {
            c->fop = (uint8_t) op;
            c->flen = 0;
            frag_append(c, p, n);
        }
        break;
    case 0x0:
        if (!c->fop) {
            proto_err(ctx, c, "continuation without a first frame");
            break;
        }
        frag_append(c, p, n);
        if (fin) {
            if (c->fop == 0x1) {
                /* on_text may close the connection; the buffer stays */
                on_text(ctx, c, c->fbuf, c->flen);
            }
            c->fop = 0;
            c->flen = 0;
        }
        break;
    case 0x8:
        code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
        ws_send(ctx, c, 0x8, p, n >= 2 ? 2 : 0);
        conn_down(ctx, c, FR_CLOSED, code);
        break;
    case 0x9:
        ws_send(ctx, c, 0xA, p, n);
        break;
    case 0xA:
        break;
    default:
        proto_err(ctx, c, "unknown opcode");
        break;
    }
}


/* bytes consumed; stops early when the connection went down */
static size_t
conn_parse(bench_t *ctx, conn_t *c, uint8_t *buf, size_t len)
{
    size_t   off = 0, h, i;
    uint64_t plen;
    uint8_t *hend, *pl;
    int      masked;

    if (c->state == CS_HANDSHAKE) {
        hend = memmem(buf, len, "\r\n\r\n", 4);
        if (hend == NULL) {
            if (len > 8192) {
                set_error(ctx, "HTTP answer too long");
                conn_down(ctx, c, FR_HTTP_OTHER, 0);
            }
            return 0;
        }
        off = (size_t) (hend - buf) + 4;
        if (!handshake_ok(ctx, c, buf, off)) {
            return off;
        }
        c->state = CS_OPEN;
    }
    while (c->fd >= 0 && len - off >= 2) {
        masked = buf[off + 1] & 0x80;
        plen = buf[off + 1] & 0x7f;
        h = 2;
        if (plen == 126) {
            if (len - off < 4) {
                break;
            }
            plen = (uint64_t) buf[off + 2] << 8 | buf[off + 3];
            h = 4;
        } else if (plen == 127) {
            if (len - off < 10) {
                break;
            }
            plen = 0;
            for (i = 0; i < 8; i++) {
                plen = plen << 8 | buf[off + 2 + i];
            }
            h = 10;
        }
        if (masked) {
            h += 4;
        }
        if (plen > RBUF_LIMIT) {
            proto_err(ctx, c, "frame too large");
            conn_down(ctx, c, FR_CLOSED, 1009);
            return off;
        }
        if ((uint64_t) (len - off) < h + plen) {
            break;
        }
        pl = buf + off + h;
        if (masked) {
            proto_err(ctx, c, "masked frame from the server");
            for (i = 0; i < plen; i++) {
                pl[i] ^= buf[off + h - 4 + (i & 3)];
            }
        }
        handle_frame(ctx, c, buf[off] & 0x80, buf[off] & 0x40,
                     buf[off] & 0x0f, pl, (size_t) plen);
        off += h + (size_t) plen;
    }
    return off;
}


static void
conn_input(bench_t *ctx, conn_t *c, uint8_t *data, size_t n)
{
    size_t used;

    if (c->rlen > 0) {
        if (c->rlen + n > c->rcap) {
            c->rcap = (uint32_t) ((c->rlen + n) * 2);
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        memcpy(c->rbuf + c->rlen, data, n);
        c->rlen += (uint32_t) n;
        used = conn_parse(ctx, c, c->rbuf, c->rlen);
        if (c->fd < 0) {
            return;
        }
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= (uint32_t) used;
        if (c->rlen == 0 && c->rcap > 65536) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
        return;
    }
    used = conn_parse(ctx, c, data, n);
    if (c->fd < 0 || used == n) {
        return;
    }
    if (n - used > c->rcap) {
        c->rcap = (uint32_t) ((n - used) * 2 + 4096);
        c->rbuf = xrealloc(c->rbuf, c->rcap);
    }
    memcpy(c->rbuf, data + used, n - used);
    c->rlen = (uint32_t) (n - used);
}


void
conn_read(bench_t *ctx, conn_t *c)
{
    ssize_t n;
    int     i;

    for (i = 0; i < 8 && c->fd >= 0; i++) {
        n = recv(c->fd, ctx->iobuf, IOBUF_SIZE, MSG_DONTWAIT);
        if (n > 0) {
            conn_input(ctx, c, ctx->iobuf, (size_t) n);
            if (n < IOBUF_SIZE) {
                break;
            }
            continue;
        }
        if (n == 0) {
            conn_down(ctx, c, c->got_hello ? FR_CLOSED : FR_RESET, 1006);
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            break;
        }
        conn_down(ctx, c, FR_RESET, 1006);
        break;
    }
    if (c->fd < 0) {
        conn_free_bufs(c);
    }
}


void
conn_down(bench_t *ctx, conn_t *c, int reason, int code)
{
    if (c->state != CS_CONNECTING && c->state != CS_HANDSHAKE
        && c->state != CS_OPEN)
    {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->woff = c->wlen = 0;
    c->armed = 0;
    if (!c->got_hello) {
        INC(ctx->slot->conn_fail);
        INC(ctx->slot->fail[reason]);
        ctx->inflight--;
        ctx->fails++;
        c->state = CS_FAILED;
        if (ctx->opt.verbose) {
            logmsg(ctx, "%s: connection failed (%s)", c->user,
                   FAIL_NAMES[reason]);
        }
    } else {
        INC(ctx->slot->closes[close_idx(code)]);
        c->state = CS_CLOSED;
        if (ctx->phase != PH_STORM || ctx->opt.verbose) {
            set_error(ctx, "%s: connection closed (%d)", c->user, code);
        }
    }
    if (ctx->phase == PH_STORM && !c->synced) {
        storm_retry(ctx, c);
    }
}


int
conn_live(const conn_t *c)
{
    return c->fd >= 0 && c->got_hello;
}


void
close_all(bench_t *ctx, int polite)
{
    int     i;
    conn_t *c;

    for (i = 0; i < ctx->nconns; i++) {
        c = &ctx->conns[i];
        if (c->fd >= 0) {
            if (polite && c->got_hello) {
                ws_send(ctx, c, 0x8, "\x03\xe8", 2);
            }
            if (c->fd >= 0) {
                close(c->fd);
            }
            c->fd = -1;
        }
        c->state = CS_NONE;
        c->got_hello = 0;
        c->armed = 0;
        conn_free_bufs(c);
    }
}
