
/*
 * libFuzzer target: permessage-deflate's inflate of client messages
 * (ngx_chat_inflate) and deflate of server messages, against zlib used
 * directly.
 *
 * Input layout:
 *
 *   byte 0      & 7: client window bits - 8 (8..15); & 8: client context
 *               takeover; >> 4 & 7: the message limit (limit_of());
 *               & 128: no idle list (every stream freed at once)
 *   byte 1      k = byte & 15: how many chunk bytes follow; >> 4: the
 *               deflate level - 1 of the round trip (9 and up: 9)
 *   k bytes     chunks, used in turn: & 63 is a size, times 16 with
 *               & 64; & 128 ends the message with this chunk.  k == 0:
 *               the rest is one message in one chunk
 *   the rest    the compressed bytes, the payloads of the chunks in a row
 *               (a message left open at the end is ended by an empty
 *               last chunk)
 *
 * Each message is inflated by ngx_chat_inflate chunk by chunk (each chunk
 * in its own exact-size heap buffer) and, as a reference, by zlib in one
 * call over the whole payload and the 00 00 ff ff tail, with a 15-bit
 * window, the output capped at limit + 1, the same context takeover.
 * They must agree on the result (OK, TOO_BIG, CORRUPT) and the bytes,
 * except that a window under 15 bits may make ours CORRUPT where the
 * reference's larger window is not.  The first error ends the run, as it
 * ends a connection.  Checked too: the output never passes the limit nor
 * its buffer; no stream is held between messages without takeover; at
 * most one stream exists; every byte allocated is freed.
 *
 * Then the input, whole, is deflated as a server message at the same
 * window bits: it must inflate back (ours and zlib's), compress the same
 * twice, and as a frame carry FIN, RSV1 and a length that matches; as a
 * message shared by many recipients (ngx_chat_deflate_shared_*), the same
 * frame, built once per window bits value however often it is asked for.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#include "ngx_chat_frame.h"
#include "ngx_chat_deflate.h"


#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_inflate: %s:%d: assertion failed: %s\n",    \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


typedef struct {
    size_t    live;
} mem_t;


static void *
f_alloc(void *data, size_t size)
{
    mem_t  *m = data;

    m->live++;

    return malloc(size ? size : 1);
}


static void
f_free(void *data, void *p)
{
    mem_t  *m = data;

    if (p) {
        m->live--;
        free(p);
    }
}


static size_t
limit_of(unsigned sel)
{
    static const size_t  limits[8] = {
        0, 1, 64, 300, 1000, 16384, 65536, 1 << 20
    };

    return limits[sel & 7];
}


/* the reference: zlib over a whole message, the tail appended */

typedef struct {
    z_stream        z;
    int             takeover;
    unsigned char  *out;
    size_t          len;
} ref_t;


static void
ref_init(ref_t *r, int takeover, size_t limit)
{
    memset(r, 0, sizeof(ref_t));

    FUZZ_ASSERT(inflateInit2(&r->z, -15) == Z_OK);

    r->takeover = takeover;
    r->out = malloc(limit + 1);
    FUZZ_ASSERT(r->out != NULL);
}


static ngx_chat_inflate_rc_e
ref_message(ref_t *r, const unsigned char *in, size_t len, size_t limit)
{
    int             rc, end;
    uInt            dlen;
    unsigned char  *buf, *dict;

    r->len = 0;

    if (len == 0) {
        return NGX_CHAT_INFLATE_OK;
    }

    buf = malloc(len + 4);
    FUZZ_ASSERT(buf != NULL);
    memcpy(buf, in, len);
    memcpy(buf + len, "\x00\x00\xff\xff", 4);

    r->z.next_in = buf;
    r->z.avail_in = (uInt) (len + 4);
    r->z.next_out = r->out;
    r->z.avail_out = (uInt) (limit + 1);

    rc = inflate(&r->z, Z_SYNC_FLUSH);

    r->len = limit + 1 - r->z.avail_out;
    end = 0;

    free(buf);

    if (r->len > limit) {
        return NGX_CHAT_INFLATE_TOO_BIG;
    }

    if (rc == Z_STREAM_END) {
        end = 1;

    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return NGX_CHAT_INFLATE_CORRUPT;

    } else if (!(r->z.data_type & 128)) {
        return NGX_CHAT_INFLATE_CORRUPT;
    }

    if (!r->takeover) {
        FUZZ_ASSERT(inflateReset(&r->z) == Z_OK);

    } else if (end) {
        dict = malloc(32768);
        FUZZ_ASSERT(dict != NULL);
        dlen = 32768;
        FUZZ_ASSERT(inflateGetDictionary(&r->z, dict, &dlen) == Z_OK);
        FUZZ_ASSERT(inflateReset(&r->z) == Z_OK);
        if (dlen) {
            FUZZ_ASSERT(inflateSetDictionary(&r->z, dict, dlen) == Z_OK);
        }
        free(dict);
    }

    return NGX_CHAT_INFLATE_OK;
}


static void
ref_free(ref_t *r)
{
    inflateEnd(&r->z);
    free(r->out);
}


/* one message through both, compared; returns 0 when the run goes on */

static int
message(ngx_chat_deflate_ctx_t *ctx, ngx_chat_inflater_t *inf, ref_t *ref,
    const unsigned char *chunks, const size_t *sizes, size_t n,
    size_t limit, ngx_chat_deflate_buf_t *out, unsigned client_bits)
{
    size_t                 i, off, total;
    unsigned char         *copy;
    ngx_chat_inflate_rc_e  rc, want;

    out->len = 0;
    rc = NGX_CHAT_INFLATE_OK;
    off = 0;

    for (i = 0; i < n && rc == NGX_CHAT_INFLATE_OK; i++) {
        copy = malloc(sizes[i] ? sizes[i] : 1);
        FUZZ_ASSERT(copy != NULL);
        memcpy(copy, chunks + off, sizes[i]);

        rc = ngx_chat_inflate(ctx, inf, copy, sizes[i], i + 1 == n, out,
                              limit);
        free(copy);

        off += sizes[i];

        FUZZ_ASSERT(out->len <= limit);
        FUZZ_ASSERT(out->len <= out->size);
        FUZZ_ASSERT(out->size <= limit);
        FUZZ_ASSERT(ctx->inflate_streams <= 1);
    }

    /* the reference gets the whole message, even after our error */

    for (total = 0, i = 0; i < n; i++) {
        total += sizes[i];
    }

    want = ref_message(ref, chunks, total, limit);

    if (rc != want) {
        /* a window smaller than the reference's: ours may refuse more */
        FUZZ_ASSERT(client_bits < 15 && rc == NGX_CHAT_INFLATE_CORRUPT
                    && want != NGX_CHAT_INFLATE_CORRUPT);
        FUZZ_ASSERT(inf->stream == NULL);
        return 1;
    }

    if (rc != NGX_CHAT_INFLATE_OK) {
        FUZZ_ASSERT(inf->stream == NULL);
        return 1;
    }

    FUZZ_ASSERT(out->len == ref->len);
    FUZZ_ASSERT(out->len == 0 || memcmp(out->data, ref->out, out->len) == 0);

    if (!inf->takeover) {
        FUZZ_ASSERT(inf->stream == NULL);
    }

    return 0;
}


/*
 * The same message for recipients at bits and at 15 bits, in turn: the
 * frame at bits is the one ngx_chat_deflate_frame() made (frame, or NULL
 * if it declined), and each window size is compressed once.
 */

static void
shared(ngx_chat_deflate_ctx_t *ctx, unsigned bits, const uint8_t *data,
    size_t len, const unsigned char *frame, size_t flen)
{
    size_t                      got_len, first_len[2];
    uint64_t                    before;
    unsigned                    i, w, distinct;
    unsigned char              *got, *first[2];
    ngx_chat_deflate_rc_e       rc;
    ngx_chat_deflate_shared_t   sh;

    ngx_chat_deflate_shared_init(&sh, NGX_CHAT_WS_OP_BINARY, data, len);

    before = ctx->deflated;
    first[0] = first[1] = NULL;
    first_len[0] = first_len[1] = 0;
    distinct = bits == 15 ? 1 : 2;

    for (i = 0; i < 8; i++) {
        w = (i & 1) ? 15 : bits;

        rc = ngx_chat_deflate_shared_frame(ctx, &sh, w, &got, &got_len);
        FUZZ_ASSERT(rc == NGX_CHAT_DEFLATE_OK
                    || rc == NGX_CHAT_DEFLATE_DECLINED);

        if (w == bits) {
            FUZZ_ASSERT((rc == NGX_CHAT_DEFLATE_OK) == (frame != NULL));

            if (frame) {
                FUZZ_ASSERT(got_len == flen
                            && memcmp(got, frame, flen) == 0);
            }
        }

        if (rc == NGX_CHAT_DEFLATE_OK) {
            if (first[i & 1] == NULL) {
                first[i & 1] = got;
                first_len[i & 1] = got_len;
            }

            FUZZ_ASSERT(got == first[i & 1] && got_len == first_len[i & 1]);
        }
    }

    FUZZ_ASSERT(ctx->deflated - before <= distinct);

    ngx_chat_deflate_shared_free(ctx, &sh);
}


/* our deflate of the input as a server message: it comes back */

static void
round_trip(ngx_chat_deflate_ctx_t *ctx, unsigned bits, const uint8_t *data,
    size_t len)
{
    int                        rc;
    long                       got;
    size_t                     size, n, n2, flen, hlen, wire, min_size;
    z_stream                   z;
    unsigned char             *c1, *c2, *back, *frame, *tail;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_params_t  params;

    if (len > 65536) {
        len = 65536;
    }

    /* deflateBound's conservative form */
    size = NGX_CHAT_DEFLATE_FRAME_SIZE(len) + len / 8 + len / 64 + 64;
    c1 = malloc(size);
    c2 = malloc(size);
    back = malloc(len + 1);
    FUZZ_ASSERT(c1 != NULL && c2 != NULL && back != NULL);

    /* min_size aside, every message compresses */

    min_size = ctx->min_size;
    ctx->min_size = 0;

    FUZZ_ASSERT(ngx_chat_deflate_payload(ctx, bits, data, len, c1, size, &n)
                == NGX_CHAT_DEFLATE_OK);
    FUZZ_ASSERT(ngx_chat_deflate_payload(ctx, bits, data, len, c2, size, &n2)
                == NGX_CHAT_DEFLATE_OK);
    FUZZ_ASSERT(n == n2 && memcmp(c1, c2, n) == 0);

    ctx->min_size = min_size;

    if (len < min_size) {
        FUZZ_ASSERT(ngx_chat_deflate_payload(ctx, bits, data, len, c2, size,
                                             &n2)
                    == NGX_CHAT_DEFLATE_DECLINED);
    }

    /* ours, in one chunk, limit exactly the length */

    params.server_window_bits = (uint8_t) bits;
    params.client_window_bits = (uint8_t) bits;
    params.client_takeover = 0;
    ngx_chat_inflate_init(&inf, &params);
    memset(&out, 0, sizeof(out));

    FUZZ_ASSERT(ngx_chat_inflate(ctx, &inf, c1, n, 1, &out, len)
                == NGX_CHAT_INFLATE_OK);
    FUZZ_ASSERT(out.len == len);
    FUZZ_ASSERT(len == 0 || memcmp(out.data, data, len) == 0);
    FUZZ_ASSERT(inf.stream == NULL);

    if (len) {
        out.len = 0;
        FUZZ_ASSERT(ngx_chat_inflate(ctx, &inf, c1, n, 1, &out, len - 1)
                    == NGX_CHAT_INFLATE_TOO_BIG);
    }

    ngx_chat_inflate_end(ctx, &inf);

    if (out.data) {
        ctx->free(ctx->data, out.data);
    }

    /* zlib's, with the window we said */

    tail = malloc(n + 4);
    FUZZ_ASSERT(tail != NULL);
    memcpy(tail, c1, n);
    memcpy(tail + n, "\x00\x00\xff\xff", 4);

    memset(&z, 0, sizeof(z_stream));
    FUZZ_ASSERT(inflateInit2(&z, -(int) bits) == Z_OK);
    z.next_in = tail;
    z.avail_in = (uInt) (n + 4);
    z.next_out = back;
    z.avail_out = (uInt) (len + 1);
    rc = inflate(&z, Z_SYNC_FLUSH);
    got = (long) (len + 1 - z.avail_out);
    FUZZ_ASSERT(rc == Z_OK || rc == Z_BUF_ERROR);
    FUZZ_ASSERT(z.avail_in == 0 && got == (long) len);
    FUZZ_ASSERT(len == 0 || memcmp(back, data, len) == 0);
    inflateEnd(&z);
    free(tail);

    /* as a frame: header, RSV1, and smaller than the message or declined */

    rc = ngx_chat_deflate_frame(ctx, bits, NGX_CHAT_WS_OP_BINARY, data, len,
                                c2, NGX_CHAT_DEFLATE_FRAME_SIZE(len), &frame,
                                &flen);

    if (len < ctx->min_size) {
        FUZZ_ASSERT(rc == NGX_CHAT_DEFLATE_DECLINED);
    }

    if (rc == NGX_CHAT_DEFLATE_OK) {
        FUZZ_ASSERT(frame >= c2
                    && frame + flen <= c2 + NGX_CHAT_DEFLATE_FRAME_SIZE(len));
        FUZZ_ASSERT(frame[0] == (0x80 | NGX_CHAT_WS_RSV1
                                 | NGX_CHAT_WS_OP_BINARY));

        wire = frame[1] & 0x7f;
        hlen = 2;

        if (wire == 126) {
            wire = ((size_t) frame[2] << 8) | frame[3];
            hlen = 4;

        } else {
            FUZZ_ASSERT(wire < 126);
        }

        FUZZ_ASSERT(hlen + wire == flen);
        FUZZ_ASSERT(wire == n && wire < len);
        FUZZ_ASSERT(memcmp(frame + hlen, c1, n) == 0);

    } else {
        FUZZ_ASSERT(rc == NGX_CHAT_DEFLATE_DECLINED);
        FUZZ_ASSERT(len < ctx->min_size || n >= len);
    }

    shared(ctx, bits, data, len, rc == NGX_CHAT_DEFLATE_OK ? frame : NULL,
           flen);

    free(c1);
    free(c2);
    free(back);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                        takeover, stop;
    size_t                     k, limit, off, n, i, chunk, count;
    size_t                     sizes[64];
    mem_t                      mem;
    ref_t                      ref;
    unsigned                   bits, level, c;
    const uint8_t             *spec, *stream, *msg;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_deflate_conf_t    conf;
    ngx_chat_deflate_params_t  params;

    if (size < 2) {
        return 0;
    }

    bits = 8 + (data[0] & 7);
    takeover = (data[0] >> 3) & 1;
    limit = limit_of(data[0] >> 4);
    level = 1 + (data[1] >> 4);
    k = data[1] & 15;

    if (level > 9) {
        level = 9;
    }

    if (size < 2 + k) {
        return 0;
    }

    spec = data + 2;
    stream = data + 2 + k;
    n = size - 2 - k;

    memset(&mem, 0, sizeof(mem_t));

    ngx_chat_deflate_conf_init(&conf);
    conf.level = (int) level;
    conf.min_size = (size_t) (data[1] & 3) * 40;
    FUZZ_ASSERT(ngx_chat_deflate_ctx_init(&ctx, &conf, f_alloc, f_free, &mem)
                == 0);

    if (data[0] & 128) {
        ctx.idle_max = 0;
    }

    params.server_window_bits = 15;
    params.client_window_bits = (uint8_t) bits;
    params.client_takeover = (uint8_t) takeover;
    ngx_chat_inflate_init(&inf, &params);
    FUZZ_ASSERT(inf.window_bits == (bits < 9 ? 9 : bits));

    ref_init(&ref, takeover, limit);
    memset(&out, 0, sizeof(out));

    /* cut the stream into messages of chunks */

    off = 0;
    stop = 0;
    i = 0;

    while (!stop && off < n) {
        msg = stream + off;
        count = 0;

        for ( ;; ) {

            if (k == 0) {
                chunk = n - off;
                c = 0x80;

            } else {
                c = spec[i++ % k];
                chunk = (c & 63) * ((c & 64) ? 16 : 1);
            }

            if (chunk > n - off) {
                chunk = n - off;
            }

            sizes[count++] = chunk;
            off += chunk;

            if ((c & 128) || off == n || count == 64) {
                break;
            }
        }

        if (!(c & 128) && off == n && count < 64) {
            /* the end of the input ends the message */
            sizes[count++] = 0;
        }

        stop = message(&ctx, &inf, &ref, msg, sizes, count, limit, &out,
                       bits);

        /* only empty chunks: the rest in one */
        if (msg == stream + off) {
            k = 0;
        }
    }

    ngx_chat_inflate_end(&ctx, &inf);
    FUZZ_ASSERT(inf.stream == NULL);

    if (out.data) {
        ctx.free(ctx.data, out.data);
    }

    ref_free(&ref);

    round_trip(&ctx, bits < 9 ? 9 : bits, data, size);

    ngx_chat_deflate_ctx_cleanup(&ctx);

    FUZZ_ASSERT(ctx.inflate_streams == 0 && ctx.deflate_streams == 0);
    FUZZ_ASSERT(mem.live == 0);

    return 0;
}
