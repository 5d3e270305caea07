
/*
 * ngx_chat: permessage-deflate (RFC 7692).
 *
 * This file owns the WebSocket compression extension short of its wiring:
 * the parser of Sec-WebSocket-Extensions offers and the choice of one,
 * the inflate of client messages (streamed frame by frame into a buffer
 * that may not pass the message limit) and the deflate of server messages
 * (each on its own, so that one compressed frame serves every recipient
 * that agreed to the same window).  It holds zlib streams only: deflate
 * ones cached per process by window bits, inflate ones lent to a
 * connection for the length of a message and kept on a short idle list.
 *
 * The extension, briefly (RFC 7692 sections 6 and 7):
 *
 *   offer     Sec-WebSocket-Extensions: permessage-deflate;
 *                 client_max_window_bits, permessage-deflate
 *             (a comma-separated list of offers, in order of preference;
 *             parameters after semicolons, values as tokens or quoted
 *             strings)
 *   params    server_no_context_takeover   the server compresses each
 *                                          message on its own
 *             client_no_context_takeover   the client does
 *             server_max_window_bits=N     the server's LZ77 window is
 *                                          at most 2^N bytes (8..15)
 *             client_max_window_bits[=N]   the client's is; without a
 *                                          value: it can be told one
 *   message   RSV1 on its first frame; its payload is raw DEFLATE data,
 *             the sender's Z_SYNC_FLUSH tail 00 00 ff ff removed; the
 *             receiver appends it again and inflates.
 */


#include <stdio.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#include "ngx_chat_deflate.h"


struct ngx_chat_zstream_s {
    z_stream                   z;
    ngx_chat_zstream_t        *next;
    unsigned                   bits;
};


/* one offer as parsed: -1 absent, 0 present without a value, else N */

typedef struct {
    int                        server_max_window_bits;
    int                        client_max_window_bits;
    unsigned                   server_no_context_takeover;
    unsigned                   client_no_context_takeover;
    unsigned                   deflate;     /* it is permessage-deflate */
    const char                *bad;         /* why it is invalid */
} ngx_chat_deflate_offer_t;


#define NGX_CHAT_DEFLATE_VALUE_MAX  16


static const unsigned char  ngx_chat_deflate_tail[4] = {
    0x00, 0x00, 0xff, 0xff
};


static voidpf ngx_chat_zalloc(voidpf opaque, uInt items, uInt size);
static void ngx_chat_zfree(voidpf opaque, voidpf p);
static int ngx_chat_deflate_tchar(unsigned c);
static const unsigned char *ngx_chat_deflate_ows(const unsigned char *p,
    const unsigned char *end);
static const unsigned char *ngx_chat_deflate_token(const unsigned char *p,
    const unsigned char *end);
static int ngx_chat_deflate_is(const unsigned char *p, size_t len,
    const char *name);
static const unsigned char *ngx_chat_deflate_offer(const unsigned char *p,
    const unsigned char *end, ngx_chat_deflate_offer_t *o);
static void ngx_chat_deflate_param(ngx_chat_deflate_offer_t *o,
    const unsigned char *name, size_t name_len, int has_value,
    const unsigned char *value, size_t value_len);
static int ngx_chat_deflate_bits(const unsigned char *v, size_t len);
static const char *ngx_chat_deflate_accept(
    const ngx_chat_deflate_conf_t *conf, const ngx_chat_deflate_offer_t *o,
    ngx_chat_deflate_params_t *params, char *response, size_t *response_len);
static ngx_chat_zstream_t *ngx_chat_inflate_get(ngx_chat_deflate_ctx_t *ctx,
    unsigned bits);
static void ngx_chat_inflate_put(ngx_chat_deflate_ctx_t *ctx,
    ngx_chat_zstream_t *zs);
static ngx_chat_inflate_rc_e ngx_chat_inflate_run(
    ngx_chat_deflate_ctx_t *ctx, z_stream *z, const unsigned char *in,
    size_t len, ngx_chat_deflate_buf_t *out, size_t limit, int *ended,
    int *boundary);
static int ngx_chat_inflate_grow(ngx_chat_deflate_ctx_t *ctx,
    ngx_chat_deflate_buf_t *out, size_t limit, size_t in_len);
static ngx_chat_inflate_rc_e ngx_chat_inflate_restart(
    ngx_chat_deflate_ctx_t *ctx, ngx_chat_zstream_t *zs);
static ngx_chat_zstream_t *ngx_chat_deflate_stream(
    ngx_chat_deflate_ctx_t *ctx, unsigned bits);


/* ---------------------------------------------------------- configuration */

void
ngx_chat_deflate_conf_init(ngx_chat_deflate_conf_t *conf)
{
    memset(conf, 0, sizeof(ngx_chat_deflate_conf_t));

    conf->enabled = 0;
    conf->server_max_window_bits = 15;
    conf->client_max_window_bits = 15;
    /* as nginx's gzip: chat frames shrink about as much at 1 as at 9 */
    conf->level = 1;
    conf->mem_level = 8;
    conf->client_context_takeover = 0;
    conf->min_size = 64;
}


const char *
ngx_chat_deflate_conf_check(const ngx_chat_deflate_conf_t *conf)
{
    if (conf->server_max_window_bits < 9
        || conf->server_max_window_bits > 15)
    {
        return "server_max_window_bits must be 9 to 15";
    }

    /*
     * 8 would be legal, but zlib's deflate made 9-bit windows when asked
     * for 8 until 1.2.9, so a client's "8" may not be: we inflate with 9
     * bits at least, and never ask a client for less.
     */

    if (conf->client_max_window_bits < 9
        || conf->client_max_window_bits > 15)
    {
        return "client_max_window_bits must be 9 to 15";
    }

    if (conf->level < 1 || conf->level > 9) {
        return "the compression level must be 1 to 9";
    }

    if (conf->mem_level < 1 || conf->mem_level > 9) {
        return "mem_level must be 1 to 9";
    }

    return NULL;
}


/* ------------------------------------------------------------ negotiation */

int
ngx_chat_deflate_negotiate(const ngx_chat_deflate_conf_t *conf,
    const ngx_chat_deflate_str_t *values, size_t n,
    ngx_chat_deflate_params_t *params, char *response, size_t *response_len,
    const char **reason)
{
    size_t                     i;
    const char                *why;
    const unsigned char       *p, *end;
    ngx_chat_deflate_offer_t   o;

    why = "no permessage-deflate offer";

    if (!conf->enabled) {
        why = "permessage-deflate is disabled";
        goto declined;
    }

    for (i = 0; i < n; i++) {
        p = values[i].data;
        end = p + values[i].len;

        while (p < end) {
            p = ngx_chat_deflate_offer(p, end, &o);

            if (!o.deflate) {
                continue;
            }

            why = o.bad;

            if (why == NULL) {
                why = ngx_chat_deflate_accept(conf, &o, params, response,
                                              response_len);
                if (why == NULL) {
                    if (reason) {
                        *reason = NULL;
                    }

                    return 1;
                }
            }
        }
    }

declined:

    if (reason) {
        *reason = why;
    }

    return 0;
}


/*
 * RFC 7230 tchar: the characters of a token.  The grammar here is RFC
 * 6455 section 9.1's, with optional whitespace around every separator and
 * empty list elements allowed, as RFC 7230's #rule does.
 */

static int
ngx_chat_deflate_tchar(unsigned c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    return c != '\0' && strchr("!#$%&'*+-.^_`|~", (int) c) != NULL;
}


static const unsigned char *
ngx_chat_deflate_ows(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p;
}


static const unsigned char *
ngx_chat_deflate_token(const unsigned char *p, const unsigned char *end)
{
    while (p < end && ngx_chat_deflate_tchar(*p)) {
        p++;
    }

    return p;
}


static int
ngx_chat_deflate_is(const unsigned char *p, size_t len, const char *name)
{
    size_t    i;
    unsigned  c;

    if (len != strlen(name)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = p[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (c != (unsigned char) name[i]) {
            return 0;
        }
    }

    return 1;
}


/*
 * Parses one list element from p: the extension's name and its
 * parameters, up to the comma that ends it, and returns the position past
 * that comma.  o->deflate says whether it names permessage-deflate, o->bad
 * why it cannot be accepted.  A syntax error makes the element invalid and
 * the parse go on at the next comma outside a quoted string.
 */

static const unsigned char *
ngx_chat_deflate_offer(const unsigned char *p, const unsigned char *end,
    ngx_chat_deflate_offer_t *o)
{
    int                   quoted, has_value;
    size_t                name_len, value_len;
    const unsigned char  *name, *value, *q;
    unsigned char         buf[NGX_CHAT_DEFLATE_VALUE_MAX];

    o->server_max_window_bits = -1;
    o->client_max_window_bits = -1;
    o->server_no_context_takeover = 0;
    o->client_no_context_takeover = 0;
    o->deflate = 0;
    o->bad = NULL;

    p = ngx_chat_deflate_ows(p, end);

    if (p < end && *p == ',') {
        /* an empty element */
        return p + 1;
    }

    q = ngx_chat_deflate_token(p, end);

    if (q == p) {
        goto syntax;
    }

    o->deflate = ngx_chat_deflate_is(p, q - p, "permessage-deflate");
    p = q;

    for ( ;; ) {
        p = ngx_chat_deflate_ows(p, end);

        if (p == end) {
            return p;
        }

        if (*p == ',') {
            return p + 1;
        }

        if (*p != ';') {
            goto syntax;
        }

        p = ngx_chat_deflate_ows(p + 1, end);

        name = p;
        p = ngx_chat_deflate_token(p, end);
        name_len = p - name;

        if (name_len == 0) {
            goto syntax;
        }

        p = ngx_chat_deflate_ows(p, end);

        has_value = 0;
        value = NULL;
        value_len = 0;

        if (p < end && *p == '=') {
            has_value = 1;
            p = ngx_chat_deflate_ows(p + 1, end);

            if (p < end && *p == '"') {

                /*
                 * A quoted string: its value is what is left once
                 * unescaped, kept if short (ours are two digits at most;
                 * a longer one is invalid anyway, and says so by length)
                 */

                p++;
                value = buf;

                for ( ;; ) {
                    if (p == end) {
                        goto syntax;
                    }

                    if (*p == '"') {
                        p++;
                        break;
                    }

                    if (*p == '\\') {
                        if (++p == end) {
                            goto syntax;
                        }
                    }

                    if (value_len < sizeof(buf)) {
                        buf[value_len] = *p;
                    }

                    value_len++;
                    p++;
                }

                if (value_len > sizeof(buf)) {
                    value_len = sizeof(buf);
                }

            } else {
                value = p;
                p = ngx_chat_deflate_token(p, end);
                value_len = p - value;

                if (value_len == 0) {
                    goto syntax;
                }
            }
        }

        if (o->deflate && o->bad == NULL) {
            ngx_chat_deflate_param(o, name, name_len, has_value, value,
                                   value_len);
        }
    }

syntax:

    o->bad = "malformed extension offer";

    quoted = 0;

    while (p < end) {
        if (quoted) {
            if (*p == '\\') {
                if (++p == end) {
                    break;
                }

            } else if (*p == '"') {
                quoted = 0;
            }

        } else if (*p == '"') {
            quoted = 1;

        } else if (*p == ',') {
            return p + 1;
        }

        p++;
    }

    return end;
}


/* RFC 7692 section 7: one parameter of a permessage-deflate offer */

static void
ngx_chat_deflate_param(ngx_chat_deflate_offer_t *o, const unsigned char *name,
    size_t name_len, int has_value, const unsigned char *value,
    size_t value_len)
{
    int  bits;

    if (ngx_chat_deflate_is(name, name_len, "server_no_context_takeover")) {

        if (o->server_no_context_takeover) {
            o->bad = "server_no_context_takeover given twice";

        } else if (has_value) {
            o->bad = "server_no_context_takeover with a value";
        }

        o->server_no_context_takeover = 1;
        return;
    }

    if (ngx_chat_deflate_is(name, name_len, "client_no_context_takeover")) {

        if (o->client_no_context_takeover) {
            o->bad = "client_no_context_takeover given twice";

        } else if (has_value) {
            o->bad = "client_no_context_takeover with a value";
        }

        o->client_no_context_takeover = 1;
        return;
    }

    if (ngx_chat_deflate_is(name, name_len, "server_max_window_bits")) {

        if (o->server_max_window_bits != -1) {
            o->bad = "server_max_window_bits given twice";
            return;
        }

        bits = has_value ? ngx_chat_deflate_bits(value, value_len) : -1;

        if (bits < 0) {
            o->bad = "invalid server_max_window_bits";
            return;
        }

        o->server_max_window_bits = bits;
        return;
    }

    if (ngx_chat_deflate_is(name, name_len, "client_max_window_bits")) {

        if (o->client_max_window_bits != -1) {
            o->bad = "client_max_window_bits given twice";
            return;
        }

        /* without a value: the client can work with what we say */

        bits = has_value ? ngx_chat_deflate_bits(value, value_len) : 0;

        if (bits < 0) {
            o->bad = "invalid client_max_window_bits";
            return;
        }

        o->client_max_window_bits = bits;
        return;
    }

    o->bad = "unknown permessage-deflate parameter";
}


/* 8..15 in decimal without leading zeros (RFC 7692 7.1.2), or -1 */

static int
ngx_chat_deflate_bits(const unsigned char *v, size_t len)
{
    if (len == 1 && v[0] >= '8' && v[0] <= '9') {
        return v[0] - '0';
    }

    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        return 10 + (v[1] - '0');
    }

    return -1;
}


/* a valid offer: NULL and the response if we can honour it, else why not */

static const char *
ngx_chat_deflate_accept(const ngx_chat_deflate_conf_t *conf,
    const ngx_chat_deflate_offer_t *o, ngx_chat_deflate_params_t *params,
    char *response, size_t *response_len)
{
    int       n;
    char     *p, *last;
    unsigned  sbits, cbits, takeover;

    /*
     * We may answer the offered server_max_window_bits or less, never
     * more; zlib cannot compress raw DEFLATE within 8 bits.
     */

    if (o->server_max_window_bits == -1) {
        sbits = conf->server_max_window_bits;

    } else if (o->server_max_window_bits < 9) {
        return "server_max_window_bits=8 cannot be honoured";

    } else {
        sbits = (unsigned) o->server_max_window_bits;

        if (sbits > conf->server_max_window_bits) {
            sbits = conf->server_max_window_bits;
        }
    }

    /*
     * Without client_max_window_bits in the offer the response may not
     * have it, and the client may use 15 bits: fine only if we inflate 15.
     */

    if (o->client_max_window_bits == -1) {

        if (conf->client_max_window_bits < 15) {
            return "client_max_window_bits not offered, "
                   "and ours is under 15";
        }

        cbits = 15;

    } else if (o->client_max_window_bits == 0) {
        cbits = conf->client_max_window_bits;

    } else {
        cbits = (unsigned) o->client_max_window_bits;

        if (cbits > conf->client_max_window_bits) {
            cbits = conf->client_max_window_bits;
        }
    }

    /* a client giving up takeover lets us drop the stream between messages */

    takeover = conf->client_context_takeover
               && !o->client_no_context_takeover;

    p = response;
    last = response + NGX_CHAT_DEFLATE_RESPONSE_MAX;

    n = snprintf(p, last - p, "permessage-deflate; "
                              "server_no_context_takeover");
    p += n;

    if (!takeover) {
        n = snprintf(p, last - p, "; client_no_context_takeover");
        p += n;
    }

    if (o->server_max_window_bits != -1) {
        n = snprintf(p, last - p, "; server_max_window_bits=%u", sbits);
        p += n;
    }

    if (o->client_max_window_bits != -1) {
        n = snprintf(p, last - p, "; client_max_window_bits=%u", cbits);
        p += n;
    }

    *response_len = p - response;

    params->server_window_bits = (uint8_t) sbits;
    params->client_window_bits = (uint8_t) cbits;
    params->client_takeover = (uint8_t) takeover;

    return NULL;
}


/* ---------------------------------------------------------------- context */

int
ngx_chat_deflate_ctx_init(ngx_chat_deflate_ctx_t *ctx,
    const ngx_chat_deflate_conf_t *conf, ngx_chat_deflate_alloc_pt alloc,
    ngx_chat_deflate_free_pt free, void *data)
{
    if (ngx_chat_deflate_conf_check(conf) != NULL) {
        return -1;
    }

    memset(ctx, 0, sizeof(ngx_chat_deflate_ctx_t));

    ctx->alloc = alloc;
    ctx->free = free;
    ctx->data = data;
    ctx->level = conf->level;
    ctx->mem_level = conf->mem_level;
    ctx->min_size = conf->min_size;
    ctx->idle_max = 4;

    return 0;
}


void
ngx_chat_deflate_ctx_cleanup(ngx_chat_deflate_ctx_t *ctx)
{
    unsigned             i;
    ngx_chat_zstream_t  *zs;

    for (i = 0; i < 16; i++) {

        if (ctx->deflate[i]) {
            (void) deflateEnd(&ctx->deflate[i]->z);
            ctx->free(ctx->data, ctx->deflate[i]);
            ctx->deflate[i] = NULL;
            ctx->deflate_streams--;
        }

        while (ctx->idle[i]) {
            zs = ctx->idle[i];
            ctx->idle[i] = zs->next;

            (void) inflateEnd(&zs->z);
            ctx->free(ctx->data, zs);
            ctx->inflate_idle--;
            ctx->inflate_streams--;
        }
    }

    /* a stream given back later is freed, not kept */
    ctx->idle_max = 0;
}


static voidpf
ngx_chat_zalloc(voidpf opaque, uInt items, uInt size)
{
    ngx_chat_deflate_ctx_t  *ctx = opaque;

    if (size && items > (size_t) -1 / size) {
        return Z_NULL;
    }

    return ctx->alloc(ctx->data, (size_t) items * size);
}


static void
ngx_chat_zfree(voidpf opaque, voidpf p)
{
    ngx_chat_deflate_ctx_t  *ctx = opaque;

    ctx->free(ctx->data, p);
}


/* ---------------------------------------------------------------- inflate */

void
ngx_chat_inflate_init(ngx_chat_inflater_t *inf,
    const ngx_chat_deflate_params_t *params)
{
    memset(inf, 0, sizeof(ngx_chat_inflater_t));

    /* a larger window than the client's inflates the same; see conf_check */

    inf->window_bits = params->client_window_bits < 9
                       ? 9 : params->client_window_bits > 15
                       ? 15 : params->client_window_bits;
    inf->takeover = params->client_takeover;
}


ngx_chat_inflate_rc_e
ngx_chat_inflate(ngx_chat_deflate_ctx_t *ctx, ngx_chat_inflater_t *inf,
    const unsigned char *in, size_t len, int last,
    ngx_chat_deflate_buf_t *out, size_t limit)
{
    int                     ended, boundary;
    z_stream               *z;
    ngx_chat_inflate_rc_e   rc;

    /*
     * After a final block (BFINAL) the rest of the message is not part of
     * the stream: RFC 7692 7.2.3.4 has a sender follow it with a 00 byte
     * so that, the tail appended, a decompressor that does not stop there
     * sees an empty stored block.  We stop there.
     */

    if (len && !inf->ended) {

        if (inf->stream == NULL) {
            inf->stream = ngx_chat_inflate_get(ctx, inf->window_bits);
            if (inf->stream == NULL) {
                rc = NGX_CHAT_INFLATE_NOMEM;
                goto failed;
            }
        }

        inf->fed = 1;
        z = &inf->stream->z;

        ended = 0;
        rc = ngx_chat_inflate_run(ctx, z, in, len, out, limit, &ended,
                                  &boundary);
        if (rc != NGX_CHAT_INFLATE_OK) {
            goto failed;
        }

        if (ended) {
            inf->ended = 1;
        }
    }

    if (!last) {
        return NGX_CHAT_INFLATE_OK;
    }

    /*
     * The end of the message.  No byte at all is an empty message, though
     * the RFC's is one 00 byte: nothing to inflate.  After a final block
     * the tail is not needed.
     */

    if (inf->fed && !inf->ended) {
        z = &inf->stream->z;

        ended = 0;
        rc = ngx_chat_inflate_run(ctx, z, ngx_chat_deflate_tail,
                                  sizeof(ngx_chat_deflate_tail), out, limit,
                                  &ended, &boundary);
        if (rc != NGX_CHAT_INFLATE_OK) {
            goto failed;
        }

        if (ended) {
            /* the tail finished an empty final stored block */
            inf->ended = 1;

        } else if (!boundary) {
            /* the message stopped inside a block: cut short, or not ours */
            rc = NGX_CHAT_INFLATE_CORRUPT;
            goto failed;
        }
    }

    if (inf->stream) {

        if (!inf->takeover) {
            ngx_chat_inflate_put(ctx, inf->stream);
            inf->stream = NULL;

        } else if (inf->ended) {
            rc = ngx_chat_inflate_restart(ctx, inf->stream);
            if (rc != NGX_CHAT_INFLATE_OK) {
                goto failed;
            }
        }
    }

    inf->fed = 0;
    inf->ended = 0;

    return NGX_CHAT_INFLATE_OK;

failed:

    if (inf->stream) {
        ngx_chat_inflate_put(ctx, inf->stream);
        inf->stream = NULL;
    }

    inf->fed = 0;
    inf->ended = 0;

    return rc;
}


void
ngx_chat_inflate_end(ngx_chat_deflate_ctx_t *ctx, ngx_chat_inflater_t *inf)
{
    if (inf->stream) {
        ngx_chat_inflate_put(ctx, inf->stream);
        inf->stream = NULL;
    }

    inf->fed = 0;
    inf->ended = 0;
}


const char *
ngx_chat_inflate_strerror(ngx_chat_inflate_rc_e rc)
{
    switch (rc) {
    case NGX_CHAT_INFLATE_OK:
        return "ok";
    case NGX_CHAT_INFLATE_TOO_BIG:
        return "inflated message too big";
    case NGX_CHAT_INFLATE_CORRUPT:
        return "invalid compressed data";
    default:
        return "out of memory for inflate";
    }
}


unsigned
ngx_chat_inflate_event(ngx_chat_deflate_ctx_t *ctx, ngx_chat_inflater_t *inf,
    uint32_t *utf8, const ngx_chat_ws_event_t *ev,
    ngx_chat_deflate_buf_t *out, size_t limit, const char **reason)
{
    size_t                 old;
    ngx_chat_inflate_rc_e  rc;

    old = out->len;

    rc = ngx_chat_inflate(ctx, inf, ev->data, ev->len, ev->last, out,
                          limit);

    if (rc != NGX_CHAT_INFLATE_OK) {
        /* ngx_chat_inflate() gave the stream back */
        *utf8 = NGX_CHAT_UTF8_ACCEPT;
        *reason = ngx_chat_inflate_strerror(rc);

        return rc == NGX_CHAT_INFLATE_TOO_BIG ? NGX_CHAT_WIRE_CLOSE_TOO_BIG
               : rc == NGX_CHAT_INFLATE_CORRUPT ? NGX_CHAT_WIRE_CLOSE_UTF8
               : NGX_CHAT_WIRE_CLOSE_INTERNAL;
    }

    /*
     * The parser checks no compressed byte: the text is judged here, as
     * it comes out, so that a bad byte fails the message at once.
     */

    if (ev->opcode == NGX_CHAT_WS_OP_TEXT) {

        if (ngx_chat_utf8_validate(utf8, out->data + old, out->len - old)
            != 0)
        {
            *reason = "invalid UTF-8 in a compressed text message";
            goto utf8;
        }

        if (ev->last && *utf8 != NGX_CHAT_UTF8_ACCEPT) {
            *reason = "compressed text message ends inside "
                      "a UTF-8 character";
            goto utf8;
        }
    }

    if (ev->last) {
        *utf8 = NGX_CHAT_UTF8_ACCEPT;
    }

    return 0;

utf8:

    /* the connection fails: its stream goes back now, as on other errors */
    ngx_chat_inflate_end(ctx, inf);
    *utf8 = NGX_CHAT_UTF8_ACCEPT;

    return NGX_CHAT_WIRE_CLOSE_UTF8;
}


/*
 * Inflates in[0..len) into out.  Output goes straight into out while it
 * has room below the limit; once it is full, a 1-byte probe says whether
 * anything is left to come, so that out grows only for bytes that exist
 * and the limit stops the stream at the first byte past it.  *ended is
 * set when the stream's final block is done (z->avail_in is then what
 * follows it).  *boundary says whether the stream stopped between two
 * blocks.
 */

static ngx_chat_inflate_rc_e
ngx_chat_inflate_run(ngx_chat_deflate_ctx_t *ctx, z_stream *z,
    const unsigned char *in, size_t len, ngx_chat_deflate_buf_t *out,
    size_t limit, int *ended, int *boundary)
{
    int            rc;
    size_t         room, cap;
    unsigned char  probe;

    /* every run has input, so its first inflate() call moves and sets it */
    *boundary = 0;

    z->next_in = in;
    z->avail_in = (uInt) len;

    /* a frame's chunk is never near 4 GB, but uInt is 32 bits */

    if ((size_t) z->avail_in != len) {
        return NGX_CHAT_INFLATE_TOO_BIG;
    }

    for ( ;; ) {

        /* a buffer of an earlier, larger limit is used up to this one */

        cap = out->size < limit ? out->size : limit;

        if (out->len < cap) {
            room = cap - out->len;
            if (room > UINT32_MAX) {
                room = UINT32_MAX;
            }

            z->next_out = out->data + out->len;
            z->avail_out = (uInt) room;

            rc = inflate(z, Z_SYNC_FLUSH);

            out->len += room - z->avail_out;

        } else {
            z->next_out = &probe;
            z->avail_out = 1;

            rc = inflate(z, Z_SYNC_FLUSH);

            if (z->avail_out == 0) {

                if (out->len >= limit) {
                    return NGX_CHAT_INFLATE_TOO_BIG;
                }

                if (ngx_chat_inflate_grow(ctx, out, limit, z->avail_in)
                    != 0)
                {
                    return NGX_CHAT_INFLATE_NOMEM;
                }

                out->data[out->len++] = probe;
            }
        }

        /*
         * z->data_type & 128 is zlib's "between blocks", but only from a
         * call that moved.  One that could not (Z_BUF_ERROR: no input
         * taken, no output given) still rewrites data_type, and zlib turns
         * TYPE into TYPEDO as it enters, so the bit is lost though the
         * stream is where it was.  Such calls come when out was filled to
         * the byte: the probe, or the call after a probe's byte, with no
         * input left; a message whose tail ends its last block with the
         * last byte of out (at exactly the limit, say) would be CORRUPT.
         */

        if (rc != Z_BUF_ERROR) {
            *boundary = (z->data_type & 128) != 0;
        }

        switch (rc) {

        case Z_OK:
        case Z_BUF_ERROR:

            if (z->avail_out == 0) {
                /* out is full: there may be more */
                continue;
            }

            if (z->avail_in == 0) {
                return NGX_CHAT_INFLATE_OK;
            }

            if (rc == Z_OK) {
                continue;
            }

            /* no progress with both input and room: cannot happen */
            return NGX_CHAT_INFLATE_CORRUPT;

        case Z_STREAM_END:
            *ended = 1;
            return NGX_CHAT_INFLATE_OK;

        case Z_MEM_ERROR:
            return NGX_CHAT_INFLATE_NOMEM;

        default: /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
            return NGX_CHAT_INFLATE_CORRUPT;
        }
    }
}


/*
 * out is full and needs one byte more: at least doubled, or room for
 * four times the input left (a guess that saves copies on a first frame),
 * never past limit.
 */

static int
ngx_chat_inflate_grow(ngx_chat_deflate_ctx_t *ctx, ngx_chat_deflate_buf_t *out,
    size_t limit, size_t in_len)
{
    size_t          size, guess;
    unsigned char  *p;

    size = out->size ? out->size * 2 : 256;

    guess = out->len + 4 * in_len + 64;

    if (size < guess) {
        size = guess;
    }

    if (size > limit || size < out->size) {
        size = limit;
    }

    p = ctx->alloc(ctx->data, size);
    if (p == NULL) {
        return -1;
    }

    if (out->len) {
        memcpy(p, out->data, out->len);
    }

    if (out->data) {
        ctx->free(ctx->data, out->data);
    }

    out->data = p;
    out->size = size;

    return 0;
}


/*
 * Context takeover across a message that ended its DEFLATE stream with a
 * final block: the next message starts a new stream that may still refer
 * to this one's last window of bytes.
 */

static ngx_chat_inflate_rc_e
ngx_chat_inflate_restart(ngx_chat_deflate_ctx_t *ctx, ngx_chat_zstream_t *zs)
{
    uInt            n;
    unsigned char  *dict;

    n = 1u << zs->bits;

    dict = ctx->alloc(ctx->data, n);
    if (dict == NULL) {
        return NGX_CHAT_INFLATE_NOMEM;
    }

    if (inflateGetDictionary(&zs->z, dict, &n) != Z_OK
        || inflateReset(&zs->z) != Z_OK
        || (n && inflateSetDictionary(&zs->z, dict, n) != Z_OK))
    {
        ctx->free(ctx->data, dict);
        return NGX_CHAT_INFLATE_CORRUPT;
    }

    ctx->free(ctx->data, dict);

    return NGX_CHAT_INFLATE_OK;
}


static ngx_chat_zstream_t *
ngx_chat_inflate_get(ngx_chat_deflate_ctx_t *ctx, unsigned bits)
{
    ngx_chat_zstream_t  *zs;

    zs = ctx->idle[bits];

    if (zs) {
        /* reset when it was given back: ready, its window allocated */
        ctx->idle[bits] = zs->next;
        ctx->inflate_idle--;
        zs->next = NULL;
        return zs;
    }

    zs = ctx->alloc(ctx->data, sizeof(ngx_chat_zstream_t));
    if (zs == NULL) {
        return NULL;
    }

    memset(zs, 0, sizeof(ngx_chat_zstream_t));

    zs->z.zalloc = ngx_chat_zalloc;
    zs->z.zfree = ngx_chat_zfree;
    zs->z.opaque = ctx;
    zs->bits = bits;

    if (inflateInit2(&zs->z, -(int) bits) != Z_OK) {
        ctx->free(ctx->data, zs);
        return NULL;
    }

    ctx->inflate_streams++;

    return zs;
}


static void
ngx_chat_inflate_put(ngx_chat_deflate_ctx_t *ctx, ngx_chat_zstream_t *zs)
{
    if (ctx->inflate_idle < ctx->idle_max && inflateReset(&zs->z) == Z_OK) {
        zs->next = ctx->idle[zs->bits];
        ctx->idle[zs->bits] = zs;
        ctx->inflate_idle++;
        return;
    }

    (void) inflateEnd(&zs->z);
    ctx->free(ctx->data, zs);
    ctx->inflate_streams--;
}


/* ---------------------------------------------------------------- deflate */

static ngx_chat_zstream_t *
ngx_chat_deflate_stream(ngx_chat_deflate_ctx_t *ctx, unsigned bits)
{
    ngx_chat_zstream_t  *zs;

    zs = ctx->deflate[bits];

    if (zs) {
        return zs;
    }

    zs = ctx->alloc(ctx->data, sizeof(ngx_chat_zstream_t));
    if (zs == NULL) {
        return NULL;
    }

    memset(zs, 0, sizeof(ngx_chat_zstream_t));

    zs->z.zalloc = ngx_chat_zalloc;
    zs->z.zfree = ngx_chat_zfree;
    zs->z.opaque = ctx;
    zs->bits = bits;

    if (deflateInit2(&zs->z, ctx->level, Z_DEFLATED, -(int) bits,
                     ctx->mem_level, Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        ctx->free(ctx->data, zs);
        return NULL;
    }

    ctx->deflate[bits] = zs;
    ctx->deflate_streams++;

    return zs;
}


ngx_chat_deflate_rc_e
ngx_chat_deflate_payload(ngx_chat_deflate_ctx_t *ctx, unsigned window_bits,
    const unsigned char *in, size_t len, unsigned char *out, size_t out_size,
    size_t *out_len)
{
    int                  rc;
    size_t               n;
    z_stream            *z;
    ngx_chat_zstream_t  *zs;

    if (window_bits < 9 || window_bits > 15) {
        return NGX_CHAT_DEFLATE_ERROR;
    }

    if (len < ctx->min_size || len > UINT32_MAX) {
        return NGX_CHAT_DEFLATE_DECLINED;
    }

    if (out_size > UINT32_MAX) {
        out_size = UINT32_MAX;
    }

    zs = ngx_chat_deflate_stream(ctx, window_bits);
    if (zs == NULL) {
        return NGX_CHAT_DEFLATE_ERROR;
    }

    z = &zs->z;

    z->next_in = in;
    z->avail_in = (uInt) len;
    z->next_out = out;
    z->avail_out = (uInt) out_size;

    rc = deflate(z, Z_SYNC_FLUSH);

    n = out_size - z->avail_out;

    /*
     * Reset now, whatever happened: the next message starts with an empty
     * window (server_no_context_takeover) and no half-flushed output.
     */

    (void) deflateReset(z);

    if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return NGX_CHAT_DEFLATE_ERROR;
    }

    /* a full out may hold only part of the flush */

    if (z->avail_in != 0 || n == out_size) {
        return NGX_CHAT_DEFLATE_DECLINED;
    }

    if (n < sizeof(ngx_chat_deflate_tail)
        || memcmp(out + n - sizeof(ngx_chat_deflate_tail),
                  ngx_chat_deflate_tail, sizeof(ngx_chat_deflate_tail))
           != 0)
    {
        /* a sync flush always ends so */
        return NGX_CHAT_DEFLATE_ERROR;
    }

    *out_len = n - sizeof(ngx_chat_deflate_tail);
    ctx->deflated++;

    return NGX_CHAT_DEFLATE_OK;
}


ngx_chat_deflate_rc_e
ngx_chat_deflate_frame(ngx_chat_deflate_ctx_t *ctx, unsigned window_bits,
    unsigned opcode, const unsigned char *in, size_t len, unsigned char *out,
    size_t out_size, unsigned char **frame, size_t *frame_len)
{
    size_t                 room, n, hlen;
    unsigned char         *payload;
    unsigned char          hdr[NGX_CHAT_WS_MAX_HEADER];
    ngx_chat_deflate_rc_e  rc;

    if (out_size <= NGX_CHAT_WS_MAX_HEADER) {
        return NGX_CHAT_DEFLATE_DECLINED;
    }

    /*
     * The payload goes after room for the longest header, which is then
     * written just before it once the payload's length is known.  Room
     * for len + 4 bytes: only a payload shorter than the message fits.
     */

    payload = out + NGX_CHAT_WS_MAX_HEADER;
    room = out_size - NGX_CHAT_WS_MAX_HEADER;

    if (room > len + sizeof(ngx_chat_deflate_tail)) {
        room = len + sizeof(ngx_chat_deflate_tail);
    }

    rc = ngx_chat_deflate_payload(ctx, window_bits, in, len, payload, room,
                                  &n);
    if (rc != NGX_CHAT_DEFLATE_OK) {
        return rc;
    }

    hlen = ngx_chat_ws_frame_header(hdr, NGX_CHAT_WS_RSV1 | (opcode & 0x0f),
                                    n);

    *frame = payload - hlen;
    memcpy(*frame, hdr, hlen);
    *frame_len = hlen + n;

    return NGX_CHAT_DEFLATE_OK;
}


/* ------------------------------------------------ one message, many peers */

void
ngx_chat_deflate_shared_init(ngx_chat_deflate_shared_t *sh, unsigned opcode,
    const unsigned char *in, size_t len)
{
    memset(sh, 0, sizeof(ngx_chat_deflate_shared_t));

    sh->in = in;
    sh->len = len;
    sh->opcode = opcode;
}


ngx_chat_deflate_rc_e
ngx_chat_deflate_shared_frame(ngx_chat_deflate_ctx_t *ctx,
    ngx_chat_deflate_shared_t *sh, unsigned window_bits,
    unsigned char **frame, size_t *frame_len)
{
    size_t                 size;
    unsigned               i;
    ngx_chat_deflate_rc_e  rc;

    if (window_bits < 9 || window_bits > 15) {
        return NGX_CHAT_DEFLATE_ERROR;
    }

    /* nothing to build, nothing to remember, for every window at once */

    if (sh->len < ctx->min_size) {
        return NGX_CHAT_DEFLATE_DECLINED;
    }

    i = window_bits - 9;

    if (sh->tried & (1u << i)) {

        if (sh->frame[i] == NULL) {
            /* declined or failed the first time: it would again */
            return NGX_CHAT_DEFLATE_DECLINED;
        }

        *frame = sh->frame[i];
        *frame_len = sh->frame_len[i];

        return NGX_CHAT_DEFLATE_OK;
    }

    sh->tried |= 1u << i;

    size = NGX_CHAT_DEFLATE_FRAME_SIZE(sh->len);

    if (size < sh->len) {
        return NGX_CHAT_DEFLATE_DECLINED;
    }

    sh->buf[i] = ctx->alloc(ctx->data, size);
    if (sh->buf[i] == NULL) {
        return NGX_CHAT_DEFLATE_ERROR;
    }

    rc = ngx_chat_deflate_frame(ctx, window_bits, sh->opcode, sh->in,
                                sh->len, sh->buf[i], size, &sh->frame[i],
                                &sh->frame_len[i]);

    if (rc != NGX_CHAT_DEFLATE_OK) {
        ctx->free(ctx->data, sh->buf[i]);
        sh->buf[i] = NULL;
        sh->frame[i] = NULL;
        return rc;
    }

    *frame = sh->frame[i];
    *frame_len = sh->frame_len[i];

    return NGX_CHAT_DEFLATE_OK;
}


void
ngx_chat_deflate_shared_free(ngx_chat_deflate_ctx_t *ctx,
    ngx_chat_deflate_shared_t *sh)
{
    unsigned  i;

    for (i = 0; i < 7; i++) {
        if (sh->buf[i]) {
            ctx->free(ctx->data, sh->buf[i]);
            sh->buf[i] = NULL;
            sh->frame[i] = NULL;
        }
    }

    sh->tried = 0;
}
