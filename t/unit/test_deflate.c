
/*
 * Unit tests of permessage-deflate (ngx_chat_module/ngx_chat_deflate.c):
 * the negotiation of offers, inflate of client messages against zlib's
 * own deflate (fragmented, at the limit, bombs, corrupt data, context
 * takeover), deflate of server messages against zlib's own inflate, the
 * allocation behaviour, and the parser and UTF-8 check around them.
 * Standalone: no framework.  Prints the memory sizes it measures.
 */


#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#include "ngx_chat_frame.h"
#include "ngx_chat_deflate.h"


#include "unit.h"


/* a small deterministic PRNG (xorshift64) */

static uint64_t  rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t
rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}


/*
 * The allocator given to the context: malloc with a header that keeps
 * the size, so that live bytes and blocks are counted; fail_after makes
 * the n-th allocation from now fail.
 */

typedef struct {
    size_t    live_bytes;
    size_t    live_blocks;
    size_t    peak_bytes;
    size_t    allocs;
    long      fail_after;      /* -1: never */
} mem_t;

static mem_t  mem;


static void *
t_alloc(void *data, size_t size)
{
    mem_t          *m = data;
    unsigned char  *p;

    if (m->fail_after == 0) {
        return NULL;
    }

    if (m->fail_after > 0) {
        m->fail_after--;
    }

    p = malloc(size + 16);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, &size, sizeof(size_t));

    m->live_bytes += size;
    m->live_blocks++;
    m->allocs++;

    if (m->live_bytes > m->peak_bytes) {
        m->peak_bytes = m->live_bytes;
    }

    return p + 16;
}


static void
t_free(void *data, void *p)
{
    mem_t   *m = data;
    size_t   size;

    if (p == NULL) {
        return;
    }

    memcpy(&size, (unsigned char *) p - 16, sizeof(size_t));

    m->live_bytes -= size;
    m->live_blocks--;

    free((unsigned char *) p - 16);
}


static void
mem_reset(void)
{
    memset(&mem, 0, sizeof(mem_t));
    mem.fail_after = -1;
}


static void
ctx_make(ngx_chat_deflate_ctx_t *ctx, unsigned min_size)
{
    ngx_chat_deflate_conf_t  conf;

    ngx_chat_deflate_conf_init(&conf);
    conf.min_size = min_size;

    if (ngx_chat_deflate_ctx_init(ctx, &conf, t_alloc, t_free, &mem) != 0) {
        printf("ctx_init failed\n");
        exit(2);
    }
}


static void
buf_free(ngx_chat_deflate_ctx_t *ctx, ngx_chat_deflate_buf_t *b)
{
    if (b->data) {
        ctx->free(ctx->data, b->data);
    }

    b->data = NULL;
    b->len = 0;
    b->size = 0;
}


/* ------------------------------------------------------------ negotiation */

static ngx_chat_deflate_conf_t  nconf;


/*
 * Negotiates over the values (NULL-terminated list of strings) and checks
 * the answer: want NULL for declined, else the response value exactly.
 */

static void
nego(const char *name, const char *want, ngx_chat_deflate_params_t *out,
    ...)
{
    int                        ok;
    char                       resp[NGX_CHAT_DEFLATE_RESPONSE_MAX];
    size_t                     n, len;
    va_list                    ap;
    const char                *v, *why;
    ngx_chat_deflate_str_t     values[8];
    ngx_chat_deflate_params_t  params;

    va_start(ap, out);

    for (n = 0; n < 8 && (v = va_arg(ap, const char *)) != NULL; n++) {
        values[n].data = (const unsigned char *) v;
        values[n].len = strlen(v);
    }

    va_end(ap);

    memset(&params, 0xee, sizeof(params));
    memset(resp, 'x', sizeof(resp));
    len = 0;
    why = "unset";

    ok = ngx_chat_deflate_negotiate(&nconf, values, n, &params, resp, &len,
                                    &why);

    if (want == NULL) {
        CHECK(ok == 0 && why != NULL && why[0] != '\0',
              "%s: accepted as \"%.*s\"", name, (int) len, resp);
        return;
    }

    CHECK(ok == 1 && why == NULL, "%s: declined: %s", name,
          why ? why : "(null)");

    if (ok != 1) {
        return;
    }

    CHECK(len == strlen(want) && memcmp(resp, want, len) == 0
          && resp[len] == '\0' && len < NGX_CHAT_DEFLATE_RESPONSE_MAX,
          "%s: response \"%.*s\" want \"%s\"", name, (int) len, resp, want);

    if (out) {
        *out = params;
    }
}


#define PMD_ANSWER  "permessage-deflate; server_no_context_takeover; " \
                    "client_no_context_takeover"


static void
test_negotiate(void)
{
    const char                *why;
    ngx_chat_deflate_params_t  p;
    ngx_chat_deflate_conf_t    bad;

    ngx_chat_deflate_conf_init(&nconf);

    CHECK(nconf.enabled == 0 && nconf.server_max_window_bits == 15
          && nconf.client_max_window_bits == 15 && nconf.level == 1
          && nconf.mem_level == 8 && !nconf.client_context_takeover
          && nconf.min_size == 64, "defaults");
    CHECK(ngx_chat_deflate_conf_check(&nconf) == NULL, "defaults valid");

    bad = nconf;
    bad.server_max_window_bits = 8;
    CHECK(ngx_chat_deflate_conf_check(&bad) != NULL, "server bits 8");
    bad = nconf;
    bad.server_max_window_bits = 16;
    CHECK(ngx_chat_deflate_conf_check(&bad) != NULL, "server bits 16");
    bad = nconf;
    bad.client_max_window_bits = 8;
    CHECK(ngx_chat_deflate_conf_check(&bad) != NULL, "client bits 8");
    bad = nconf;
    bad.level = 0;
    CHECK(ngx_chat_deflate_conf_check(&bad) != NULL, "level 0");
    bad = nconf;
    bad.mem_level = 10;
    CHECK(ngx_chat_deflate_conf_check(&bad) != NULL, "mem_level 10");

    nego("disabled", NULL, NULL, "permessage-deflate", NULL);

    why = NULL;
    CHECK(ngx_chat_deflate_negotiate(&nconf, NULL, 0, &p, NULL, NULL, &why)
          == 0 && why != NULL && strstr(why, "disabled"), "disabled: why");

    nconf.enabled = 1;

    nego("no header", NULL, NULL, NULL);
    nego("empty header", NULL, NULL, "", NULL);
    nego("another extension", NULL, NULL, "x-webkit-deflate-frame", NULL);
    nego("a longer name", NULL, NULL, "permessage-deflatex", NULL);
    nego("a shorter name", NULL, NULL, "permessage", NULL);

    /* what browsers send */

    nego("bare offer (Firefox)", PMD_ANSWER, &p, "permessage-deflate",
         NULL);
    CHECK(p.server_window_bits == 15 && p.client_window_bits == 15
          && p.client_takeover == 0, "bare offer: params %u %u %u",
          p.server_window_bits, p.client_window_bits, p.client_takeover);

    nego("client_max_window_bits (Chrome)",
         PMD_ANSWER "; client_max_window_bits=15", &p,
         "permessage-deflate; client_max_window_bits", NULL);

    /* RFC 7692 section 5's and 7's examples */

    nego("RFC: two offers, the first has server_max_window_bits=10",
         PMD_ANSWER "; server_max_window_bits=10; client_max_window_bits=15",
         &p,
         "permessage-deflate; client_max_window_bits; "
         "server_max_window_bits=10, permessage-deflate; "
         "client_max_window_bits",
         NULL);
    CHECK(p.server_window_bits == 10 && p.client_window_bits == 15,
          "RFC two offers: params %u %u", p.server_window_bits,
          p.client_window_bits);

    nego("RFC: both no_context_takeover",
         PMD_ANSWER, &p,
         "permessage-deflate; server_no_context_takeover; "
         "client_no_context_takeover", NULL);

    nego("RFC: quoted server_max_window_bits",
         PMD_ANSWER "; server_max_window_bits=10", &p,
         "permessage-deflate; server_max_window_bits=\"10\"", NULL);

    nego("all four parameters",
         PMD_ANSWER "; server_max_window_bits=12; client_max_window_bits=11",
         &p,
         "permessage-deflate; server_no_context_takeover; "
         "client_no_context_takeover; server_max_window_bits=12; "
         "client_max_window_bits=11", NULL);
    CHECK(p.server_window_bits == 12 && p.client_window_bits == 11,
          "all four: params %u %u", p.server_window_bits,
          p.client_window_bits);

    /* server_max_window_bits=8 cannot be honoured: the next offer can */

    nego("server_max_window_bits=8 alone", NULL, NULL,
         "permessage-deflate; server_max_window_bits=8", NULL);
    nego("server_max_window_bits=8, then a bare offer", PMD_ANSWER, &p,
         "permessage-deflate; server_max_window_bits=8, permessage-deflate",
         NULL);
    CHECK(p.server_window_bits == 15, "fallback: %u", p.server_window_bits);
    nego("server_max_window_bits=9", PMD_ANSWER "; server_max_window_bits=9",
         &p, "permessage-deflate; server_max_window_bits=9", NULL);
    CHECK(p.server_window_bits == 9, "9: %u", p.server_window_bits);
    nego("client_max_window_bits=8 is the client's own business",
         PMD_ANSWER "; client_max_window_bits=8", &p,
         "permessage-deflate; client_max_window_bits=8", NULL);
    CHECK(p.client_window_bits == 8, "client 8: %u", p.client_window_bits);

    /* invalid offers are declined, whatever follows them in the list */

    nego("unknown parameter", NULL, NULL,
         "permessage-deflate; mux", NULL);
    nego("unknown parameter with a value", NULL, NULL,
         "permessage-deflate; client_max_window_bits; x=1", NULL);
    nego("unknown parameter, then a good offer", PMD_ANSWER, NULL,
         "permessage-deflate; foo, permessage-deflate", NULL);
    nego("duplicate server_no_context_takeover", NULL, NULL,
         "permessage-deflate; server_no_context_takeover; "
         "server_no_context_takeover", NULL);
    nego("duplicate client_no_context_takeover", NULL, NULL,
         "permessage-deflate; client_no_context_takeover; "
         "client_no_context_takeover", NULL);
    nego("duplicate client_max_window_bits", NULL, NULL,
         "permessage-deflate; client_max_window_bits; "
         "client_max_window_bits=10", NULL);
    nego("duplicate server_max_window_bits", NULL, NULL,
         "permessage-deflate; server_max_window_bits=10; "
         "server_max_window_bits=10", NULL);
    nego("duplicate in another case", NULL, NULL,
         "permessage-deflate; client_max_window_bits; "
         "Client_Max_Window_Bits", NULL);
    nego("server_max_window_bits without a value", NULL, NULL,
         "permessage-deflate; server_max_window_bits", NULL);
    nego("server_max_window_bits=16", NULL, NULL,
         "permessage-deflate; server_max_window_bits=16", NULL);
    nego("server_max_window_bits=7", NULL, NULL,
         "permessage-deflate; server_max_window_bits=7", NULL);
    nego("server_max_window_bits=08", NULL, NULL,
         "permessage-deflate; server_max_window_bits=08", NULL);
    nego("server_max_window_bits=010", NULL, NULL,
         "permessage-deflate; server_max_window_bits=010", NULL);
    nego("server_max_window_bits=+9", NULL, NULL,
         "permessage-deflate; server_max_window_bits=+9", NULL);
    nego("client_max_window_bits=abc", NULL, NULL,
         "permessage-deflate; client_max_window_bits=abc", NULL);
    nego("client_max_window_bits=\"\"", NULL, NULL,
         "permessage-deflate; client_max_window_bits=\"\"", NULL);
    nego("client_max_window_bits=\"1 0\" (not a token)", NULL, NULL,
         "permessage-deflate; client_max_window_bits=\"1 0\"", NULL);
    nego("a long quoted value", NULL, NULL,
         "permessage-deflate; client_max_window_bits="
         "\"10000000000000000000000000000000000\"", NULL);
    nego("server_no_context_takeover=1", NULL, NULL,
         "permessage-deflate; server_no_context_takeover=1", NULL);
    nego("client_no_context_takeover=\"\"", NULL, NULL,
         "permessage-deflate; client_no_context_takeover=\"\"", NULL);

    nego("quoted with an escape", PMD_ANSWER "; client_max_window_bits=10",
         &p, "permessage-deflate; client_max_window_bits=\"1\\0\"", NULL);
    CHECK(p.client_window_bits == 10, "escaped: %u", p.client_window_bits);

    /* syntax: whitespace, case, empty elements, commas in quotes */

    nego("whitespace everywhere",
         PMD_ANSWER "; server_max_window_bits=11; client_max_window_bits=10",
         &p,
         " \t permessage-deflate \t;\tclient_max_window_bits = 10 ; "
         "server_max_window_bits= \"11\"  , ", NULL);
    CHECK(p.server_window_bits == 11 && p.client_window_bits == 10,
          "whitespace: params %u %u", p.server_window_bits,
          p.client_window_bits);
    nego("names in another case", PMD_ANSWER "; client_max_window_bits=15",
         NULL, "PerMessage-Deflate; Client_Max_Window_Bits", NULL);
    nego("empty elements", PMD_ANSWER, NULL, ", ,, permessage-deflate ,",
         NULL);
    nego("a comma in a quoted value of another extension", PMD_ANSWER,
         NULL, "foo; bar=\"a, permessage-deflate; x\", permessage-deflate",
         NULL);
    nego("an escaped quote in a quoted value", PMD_ANSWER, NULL,
         "foo; bar=\"a\\\", permessage-deflate; x\", permessage-deflate",
         NULL);
    nego("empty parameter", NULL, NULL, "permessage-deflate; ; x", NULL);
    nego("trailing semicolon", NULL, NULL, "permessage-deflate;", NULL);
    nego("missing semicolon", NULL, NULL,
         "permessage-deflate client_max_window_bits", NULL);
    nego("missing value", NULL, NULL,
         "permessage-deflate; client_max_window_bits=", NULL);
    nego("garbage after a value", NULL, NULL,
         "permessage-deflate; client_max_window_bits=10 10", NULL);
    nego("unterminated quote swallows the rest", NULL, NULL,
         "permessage-deflate; x=\"10, permessage-deflate", NULL);
    nego("syntax error, then a good offer", PMD_ANSWER, NULL,
         "permessage-deflate; =, permessage-deflate", NULL);
    nego("a name that is not a token", NULL, NULL, "(permessage-deflate)",
         NULL);
    nego("a syntax error in another extension first", PMD_ANSWER, NULL,
         "foo bar baz, permessage-deflate", NULL);

    /* several headers: the same as their values joined by commas */

    nego("several headers",
         PMD_ANSWER "; client_max_window_bits=12", &p,
         "x-webkit-deflate-frame",
         "permessage-deflate; foo=1",
         "permessage-deflate; client_max_window_bits=12, permessage-deflate",
         NULL);
    CHECK(p.client_window_bits == 12, "several headers: %u",
          p.client_window_bits);
    nego("several headers joined",
         PMD_ANSWER "; client_max_window_bits=12", NULL,
         "x-webkit-deflate-frame, permessage-deflate; foo=1, "
         "permessage-deflate; client_max_window_bits=12, permessage-deflate",
         NULL);
    nego("an offer per header, the first invalid", PMD_ANSWER, NULL,
         "permessage-deflate; server_max_window_bits=20", "",
         "permessage-deflate", NULL);

    /* the server's own limits */

    nconf.server_max_window_bits = 10;
    nconf.client_max_window_bits = 12;

    nego("smaller server window, not offered", PMD_ANSWER
         "; client_max_window_bits=12", &p,
         "permessage-deflate; client_max_window_bits", NULL);
    CHECK(p.server_window_bits == 10 && p.client_window_bits == 12,
          "limits: params %u %u", p.server_window_bits,
          p.client_window_bits);
    nego("offered 13 and 14, we say 10 and 12",
         PMD_ANSWER "; server_max_window_bits=10; client_max_window_bits=12",
         &p, "permessage-deflate; server_max_window_bits=13; "
         "client_max_window_bits=14", NULL);
    nego("offered 9 and 9, we say 9 and 9",
         PMD_ANSWER "; server_max_window_bits=9; client_max_window_bits=9",
         &p, "permessage-deflate; server_max_window_bits=9; "
         "client_max_window_bits=9", NULL);
    CHECK(p.server_window_bits == 9 && p.client_window_bits == 9,
          "9 and 9: params %u %u", p.server_window_bits,
          p.client_window_bits);
    nego("no client_max_window_bits while ours is 12", NULL, NULL,
         "permessage-deflate", NULL);
    nego("no client_max_window_bits, then an offer with it",
         PMD_ANSWER "; client_max_window_bits=12", NULL,
         "permessage-deflate, permessage-deflate; client_max_window_bits",
         NULL);

    nconf.server_max_window_bits = 15;
    nconf.client_max_window_bits = 15;

    /* client context takeover allowed */

    nconf.client_context_takeover = 1;

    nego("takeover allowed",
         "permessage-deflate; server_no_context_takeover", &p,
         "permessage-deflate", NULL);
    CHECK(p.client_takeover == 1, "takeover: %u", p.client_takeover);
    nego("takeover allowed, the client gives it up", PMD_ANSWER, &p,
         "permessage-deflate; client_no_context_takeover", NULL);
    CHECK(p.client_takeover == 0, "given up: %u", p.client_takeover);

    nconf.client_context_takeover = 0;
}


/* ------------------------------------------------------ zlib, client side */

/*
 * What a client does: raw deflate, sync flush, tail stripped.  z keeps
 * its context between calls unless the caller resets it.
 */

static size_t
client_deflate(z_stream *z, const unsigned char *in, size_t len,
    unsigned char *out, size_t size)
{
    size_t  n;

    z->next_in = in;
    z->avail_in = (uInt) len;
    z->next_out = out;
    z->avail_out = (uInt) size;

    if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0
        || z->avail_out == 0)
    {
        printf("client_deflate failed\n");
        exit(2);
    }

    n = size - z->avail_out;

    if (n < 4 || memcmp(out + n - 4, "\x00\x00\xff\xff", 4) != 0) {
        printf("client_deflate: no sync tail\n");
        exit(2);
    }

    return n - 4;
}


static void
client_init(z_stream *z, int level, int bits)
{
    memset(z, 0, sizeof(z_stream));

    if (deflateInit2(z, level, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        printf("deflateInit2 failed\n");
        exit(2);
    }
}


/* what a client does with our frames: raw inflate, the tail appended */

static long
client_inflate(int bits, const unsigned char *in, size_t len,
    unsigned char *out, size_t size)
{
    int             rc;
    size_t          n;
    z_stream        z;
    unsigned char  *buf;

    buf = malloc(len + 4);
    memcpy(buf, in, len);
    memcpy(buf + len, "\x00\x00\xff\xff", 4);

    memset(&z, 0, sizeof(z_stream));
    if (inflateInit2(&z, -bits) != Z_OK) {
        exit(2);
    }

    z.next_in = buf;
    z.avail_in = (uInt) (len + 4);
    z.next_out = out;
    z.avail_out = (uInt) size;

    rc = inflate(&z, Z_SYNC_FLUSH);
    n = size - z.avail_out;

    if ((rc != Z_OK && rc != Z_BUF_ERROR) || z.avail_in != 0) {
        n = (size_t) -1;
    }

    inflateEnd(&z);
    free(buf);

    return (long) n;
}


/* typical chat text: JSON with some varying fields */

static size_t
chat_json(unsigned char *out, size_t size, unsigned i, size_t body)
{
    int     n;
    char    text[4096];
    size_t  k;

    static const char  *words[] = {
        "hello", "the", "meeting", "is", "at", "noon", "see", "you",
        "there", "thanks", "ok", "tomorrow", "lunch", "great", "sure"
    };

    for (k = 0; k < body && k < sizeof(text) - 16; /* void */) {
        n = snprintf(text + k, sizeof(text) - k, "%s ",
                     words[(i * 7 + k * 13 + rnd() % 3) % 15]);
        k += (size_t) n;
    }

    text[body < sizeof(text) ? body : sizeof(text) - 1] = '\0';

    n = snprintf((char *) out, size,
                 "{\"type\":\"message\",\"message_id\":\"01HZX%08uQ7P\","
                 "\"conversation_id\":\"c_%06u\",\"seq\":%u,"
                 "\"sender_id\":\"u_%05u\",\"client_msg_id\":"
                 "\"m-%08x-%04x\",\"kind\":\"text\",\"body\":\"%s\","
                 "\"server_ts\":%llu}",
                 i * 7919, 1000 + i % 50, 100 + i, 4000 + i % 20,
                 (unsigned) rnd(), (unsigned) (rnd() & 0xffff), text,
                 1718000000000ULL + i * 137);

    return (size_t) n;
}


/* ---------------------------------------------------------------- inflate */

/* a whole message given in one chunk; returns the result */

static ngx_chat_inflate_rc_e
inflate_msg(ngx_chat_deflate_ctx_t *ctx, ngx_chat_inflater_t *inf,
    const void *in, size_t len, ngx_chat_deflate_buf_t *out, size_t limit)
{
    return ngx_chat_inflate(ctx, inf, in, len, 1, out, limit);
}


static ngx_chat_deflate_params_t  params15 = { 15, 15, 0 };


static void
check_msg(const char *name, ngx_chat_inflate_rc_e rc,
    ngx_chat_deflate_buf_t *out, const char *want)
{
    CHECK(rc == NGX_CHAT_INFLATE_OK, "%s: rc %d (%s)", name, rc,
          ngx_chat_inflate_strerror(rc));
    CHECK(out->len == strlen(want)
          && (out->len == 0 || memcmp(out->data, want, out->len) == 0),
          "%s: got \"%.*s\"", name, (int) out->len,
          out->data ? (char *) out->data : "");
}


static void
test_rfc_examples(void)
{
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_deflate_params_t  tk = { 15, 15, 1 };

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));

    ngx_chat_inflate_init(&inf, &params15);

    /* 7.2.3.1: "Hello" in one compressed block, whole and in two frames */

    check_msg("RFC Hello",
              inflate_msg(&ctx, &inf, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7,
                          &out, 100),
              &out, "Hello");
    CHECK(inf.stream == NULL, "no stream kept");
    out.len = 0;

    CHECK(ngx_chat_inflate(&ctx, &inf, (const unsigned char *) "\xf2\x48\xcd",
                           3, 0, &out, 100) == NGX_CHAT_INFLATE_OK
          && inf.stream != NULL, "RFC fragmented Hello, first frame");
    check_msg("RFC fragmented Hello",
              ngx_chat_inflate(&ctx, &inf,
                               (const unsigned char *) "\xc9\xc9\x07\x00", 4,
                               1, &out, 100),
              &out, "Hello");
    out.len = 0;

    /* 7.2.3.3: a stored block */

    check_msg("RFC stored block",
              inflate_msg(&ctx, &inf,
                          "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 11,
                          &out, 100),
              &out, "Hello");
    out.len = 0;

    /* 7.2.3.4: a final block (BFINAL), then a 00 byte */

    check_msg("RFC BFINAL",
              inflate_msg(&ctx, &inf, "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8,
                          &out, 100),
              &out, "Hello");
    out.len = 0;

    check_msg("BFINAL without the 00",
              inflate_msg(&ctx, &inf, "\xf3\x48\xcd\xc9\xc9\x07\x00", 7,
                          &out, 100),
              &out, "Hello");
    out.len = 0;

    /* 7.2.3.5: two blocks in one message */

    check_msg("RFC two blocks",
              inflate_msg(&ctx, &inf,
                          "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07"
                          "\x00", 13, &out, 100),
              &out, "Hello");
    out.len = 0;

    /* 7.2.3.6: an empty message is one 00 byte; no byte at all is too */

    check_msg("RFC empty message", inflate_msg(&ctx, &inf, "\x00", 1, &out, 0),
              &out, "");
    check_msg("no byte at all", inflate_msg(&ctx, &inf, "", 0, &out, 0),
              &out, "");
    check_msg("empty fragments", ngx_chat_inflate(&ctx, &inf, NULL, 0, 0,
                                                  &out, 0), &out, "");
    check_msg("empty fragments, last", inflate_msg(&ctx, &inf, "", 0, &out,
                                                   0), &out, "");

    /* 7.2.3.2: the second message refers to the first's window */

    ngx_chat_inflate_init(&inf, &tk);

    check_msg("RFC takeover, first",
              inflate_msg(&ctx, &inf, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7,
                          &out, 100),
              &out, "Hello");
    CHECK(inf.stream != NULL, "takeover keeps the stream");
    out.len = 0;

    check_msg("RFC takeover, second",
              inflate_msg(&ctx, &inf, "\xf2\x00\x11\x00\x00", 5, &out, 100),
              &out, "Hello");
    out.len = 0;

    ngx_chat_inflate_end(&ctx, &inf);
    CHECK(inf.stream == NULL, "end gives it back");

    /* without takeover the second one cannot be inflated */

    ngx_chat_inflate_init(&inf, &params15);

    check_msg("no takeover, first",
              inflate_msg(&ctx, &inf, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7,
                          &out, 100),
              &out, "Hello");
    out.len = 0;

    CHECK(inflate_msg(&ctx, &inf, "\xf2\x00\x11\x00\x00", 5, &out, 100)
          == NGX_CHAT_INFLATE_CORRUPT, "no takeover, second: corrupt");
    CHECK(inf.stream == NULL, "no stream after an error");

    buf_free(&ctx, &out);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "RFC examples: %zu blocks leaked",
          mem.live_blocks);
}


/*
 * Messages made by zlib as a client would, inflated by us in random
 * fragments (byte by byte too), at every window size.
 */

static void
test_round_trip_inflate(void)
{
    int                        bits, level, m, k, takeover;
    size_t                     len, clen, off, n;
    z_stream                   cz;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_inflate_rc_e      rc;
    ngx_chat_deflate_params_t  pp;
    static unsigned char       msg[70000], comp[80000];
    unsigned                   bad;

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));
    bad = 0;

    for (takeover = 0; takeover < 2; takeover++) {
        for (bits = 9; bits <= 15; bits++) {
            level = 1 + (bits % 9);
            client_init(&cz, level, bits);

            pp.server_window_bits = 15;
            pp.client_window_bits = (uint8_t) bits;
            pp.client_takeover = (uint8_t) takeover;
            ngx_chat_inflate_init(&inf, &pp);

            for (m = 0; m < 12; m++) {

                if (m % 4 == 3) {
                    /* a long one, some of it incompressible */
                    len = 20000 + rnd() % 40000;
                    for (n = 0; n < len; n++) {
                        msg[n] = (unsigned char) (n % 3 ? 'a' + rnd() % 26
                                                        : rnd());
                    }

                } else {
                    len = chat_json(msg, sizeof(msg), (unsigned) m,
                                    (size_t) (rnd() % 1000));
                }

                if (!takeover) {
                    deflateReset(&cz);
                }

                clen = client_deflate(&cz, msg, len, comp, sizeof(comp));

                /* cut into k fragments; k == 0: one byte at a time */

                k = (int) (rnd() % 5);
                off = 0;
                rc = NGX_CHAT_INFLATE_OK;
                out.len = 0;

                while (rc == NGX_CHAT_INFLATE_OK) {
                    n = k == 0 ? 1 : 1 + rnd() % (clen / k + 1);
                    if (n > clen - off) {
                        n = clen - off;
                    }

                    rc = ngx_chat_inflate(&ctx, &inf, comp + off, n,
                                          off + n == clen, &out,
                                          sizeof(msg));
                    off += n;

                    if (off == clen) {
                        break;
                    }
                }

                if (rc != NGX_CHAT_INFLATE_OK || out.len != len
                    || memcmp(out.data, msg, len) != 0)
                {
                    if (bad++ < 3) {
                        printf("  round trip bits %d takeover %d msg %d: "
                               "rc %d len %zu/%zu\n", bits, takeover, m, rc,
                               out.len, len);
                    }
                }

                if ((inf.stream != NULL) != takeover) {
                    bad++;
                    printf("  bits %d takeover %d: stream %p\n", bits,
                           takeover, (void *) inf.stream);
                }
            }

            ngx_chat_inflate_end(&ctx, &inf);
            deflateEnd(&cz);
        }
    }

    CHECK(bad == 0, "%u zlib-compressed messages inflated wrong", bad);

    buf_free(&ctx, &out);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "round trip: %zu blocks leaked",
          mem.live_blocks);
}


/* a window too small for the data: the client lied, corrupt */

static void
test_window_too_small(void)
{
    size_t                     n, clen;
    z_stream                   cz;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_deflate_params_t  p9 = { 15, 9, 0 };
    static unsigned char       msg[8192], comp[9000];

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));

    /* 2 KB of noise twice: the repeat is 2 KB back, past a 512-byte window */

    for (n = 0; n < 2048; n++) {
        msg[n] = (unsigned char) rnd();
    }
    memcpy(msg + 2048, msg, 2048);

    client_init(&cz, 6, 15);
    clen = client_deflate(&cz, msg, 4096, comp, sizeof(comp));
    deflateEnd(&cz);

    CHECK(clen < 3000, "the repeat was found: %zu", clen);

    /*
     * zlib checks a distance against its window and the output of the
     * same call: whole, the repeat is still in out and passes; a byte at
     * a time, it is not.
     */

    ngx_chat_inflate_init(&inf, &p9);
    for (n = 0; n < clen; n++) {
        if (ngx_chat_inflate(&ctx, &inf, comp + n, 1, n + 1 == clen, &out,
                             sizeof(msg))
            != NGX_CHAT_INFLATE_OK)
        {
            break;
        }
    }
    CHECK(n < clen && inf.stream == NULL, "15-bit data in a 9-bit window, "
          "byte by byte: corrupt at %zu of %zu", n, clen);

    ngx_chat_inflate_init(&inf, &params15);
    out.len = 0;
    CHECK(inflate_msg(&ctx, &inf, comp, clen, &out, sizeof(msg))
          == NGX_CHAT_INFLATE_OK && out.len == 4096
          && memcmp(out.data, msg, 4096) == 0, "the same in 15 bits");

    /* client_max_window_bits=8 inflates with 9 bits */

    {
        ngx_chat_deflate_params_t  p8 = { 15, 8, 0 };

        ngx_chat_deflate_params_t  p16 = { 15, 16, 0 };

        ngx_chat_inflate_init(&inf, &p8);
        CHECK(inf.window_bits == 9, "8 bits inflate with %u",
              inf.window_bits);
        ngx_chat_inflate_init(&inf, &p16);
        CHECK(inf.window_bits == 15, "16 bits inflate with %u",
              inf.window_bits);
    }

    buf_free(&ctx, &out);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "window: %zu blocks leaked", mem.live_blocks);
}


static void
test_limits(void)
{
    size_t                     len, clen, off, n;
    z_stream                   cz;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_inflate_rc_e      rc;
    static unsigned char       msg[20000], comp[30000];

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));
    ngx_chat_inflate_init(&inf, &params15);

    len = 16384;
    for (n = 0; n < len; n++) {
        msg[n] = (unsigned char) ('a' + (n * n + n / 7) % 26);
    }

    client_init(&cz, 6, 15);
    clen = client_deflate(&cz, msg, len, comp, sizeof(comp));

    rc = inflate_msg(&ctx, &inf, comp, clen, &out, len);
    CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == len
          && memcmp(out.data, msg, len) == 0 && out.size <= len,
          "exactly the limit: rc %d len %zu size %zu", rc, out.len,
          out.size);

    out.len = 0;
    rc = inflate_msg(&ctx, &inf, comp, clen, &out, len - 1);
    CHECK(rc == NGX_CHAT_INFLATE_TOO_BIG && out.len == len - 1,
          "limit - 1: rc %d len %zu", rc, out.len);
    CHECK(inf.stream == NULL, "too big: stream given back");
    buf_free(&ctx, &out);

    /* one byte over in a fragmented message, at every cut */

    deflateReset(&cz);
    clen = client_deflate(&cz, msg, 1001, comp, sizeof(comp));

    for (off = 0; off <= clen; off++) {
        rc = ngx_chat_inflate(&ctx, &inf, comp, off, 0, &out, 1000);

        if (rc == NGX_CHAT_INFLATE_OK) {
            rc = ngx_chat_inflate(&ctx, &inf, comp + off, clen - off, 1,
                                  &out, 1000);
        }

        if (rc != NGX_CHAT_INFLATE_TOO_BIG || out.len != 1000
            || out.size > 1000)
        {
            break;
        }

        out.len = 0;
    }

    CHECK(off == clen + 1, "1001 bytes in 1000, cut at %zu: rc %d len %zu",
          off, rc, out.len);
    buf_free(&ctx, &out);

    /* the same at exactly the limit */

    for (off = 0; off <= clen; off++) {
        rc = ngx_chat_inflate(&ctx, &inf, comp, off, 0, &out, 1001);

        if (rc == NGX_CHAT_INFLATE_OK) {
            rc = ngx_chat_inflate(&ctx, &inf, comp + off, clen - off, 1,
                                  &out, 1001);
        }

        if (rc != NGX_CHAT_INFLATE_OK || out.len != 1001
            || memcmp(out.data, msg, 1001) != 0)
        {
            break;
        }

        out.len = 0;
    }

    CHECK(off == clen + 1, "1001 bytes in 1001, cut at %zu: rc %d", off, rc);
    buf_free(&ctx, &out);

    /* limit 0: only empty messages */

    deflateReset(&cz);
    clen = client_deflate(&cz, msg, 0, comp, sizeof(comp));
    CHECK(clen == 1 && comp[0] == 0, "zlib's empty message: %zu", clen);
    CHECK(inflate_msg(&ctx, &inf, comp, clen, &out, 0) == NGX_CHAT_INFLATE_OK
          && out.len == 0 && out.data == NULL, "empty in limit 0");

    deflateReset(&cz);
    clen = client_deflate(&cz, msg, 1, comp, sizeof(comp));
    CHECK(inflate_msg(&ctx, &inf, comp, clen, &out, 0)
          == NGX_CHAT_INFLATE_TOO_BIG && out.data == NULL,
          "one byte in limit 0");

    deflateEnd(&cz);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "limits: %zu blocks leaked", mem.live_blocks);
}


/*
 * A message whose appended tail is data of its last block and ends it: a
 * stored block of 8 bytes with 4 in the message, 00 00 ff ff the rest.
 * After the tail the stream is between blocks (zlib says so over the
 * whole), so it is OK by 7.2.2, whatever out's size.  It used to be
 * CORRUPT when the tail's output filled out to the byte (at exactly the
 * limit, or in a buffer of 7 or 8 bytes): the 1-byte probe after it, or
 * the call after the probe's byte, moved nothing and zlib then cleared
 * the "between blocks" bit of data_type.
 */

static void
test_tail_ends_block(void)
{
    int                        rc_z;
    size_t                     size, off, n;
    z_stream                   z;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_inflate_rc_e      rc;
    unsigned char              back[16];

    static const unsigned char  msg[] = "\x00\x08\x00\xf7\xff" "chat";
    static const unsigned char  want[] = "chat\x00\x00\xff\xff";
    static const unsigned char  full[] = "\x00\x08\x00\xf7\xff" "chat"
                                         "\x00\x00\xff\xff";

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));
    ngx_chat_inflate_init(&inf, &params15);

    /* the reference: zlib over the message and its tail in one call */

    memset(&z, 0, sizeof(z_stream));
    CHECK(inflateInit2(&z, -15) == Z_OK, "inflateInit2");
    z.next_in = full;
    z.avail_in = 13;
    z.next_out = back;
    z.avail_out = sizeof(back);
    rc_z = inflate(&z, Z_SYNC_FLUSH);
    CHECK(rc_z == Z_OK && z.avail_in == 0 && (z.data_type & 128)
          && sizeof(back) - z.avail_out == 8 && memcmp(back, want, 8) == 0,
          "zlib: rc %d, data_type %d, %u bytes", rc_z, z.data_type,
          (unsigned) (sizeof(back) - z.avail_out));
    inflateEnd(&z);

    /* exactly the limit, fresh buffer: whole, and one byte at a time */

    rc = inflate_msg(&ctx, &inf, msg, 9, &out, 8);
    CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == 8
          && memcmp(out.data, want, 8) == 0 && inf.stream == NULL,
          "tail at the limit: rc %d len %zu", rc, out.len);
    buf_free(&ctx, &out);

    rc = NGX_CHAT_INFLATE_OK;

    for (off = 0; off < 9 && rc == NGX_CHAT_INFLATE_OK; off++) {
        rc = ngx_chat_inflate(&ctx, &inf, msg + off, 1, off == 8, &out, 8);
    }

    CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == 8
          && memcmp(out.data, want, 8) == 0,
          "tail at the limit, byte by byte: rc %d len %zu", rc, out.len);
    buf_free(&ctx, &out);

    /* one byte under: the tail's last byte is one too many */

    rc = inflate_msg(&ctx, &inf, msg, 9, &out, 7);
    CHECK(rc == NGX_CHAT_INFLATE_TOO_BIG && out.len == 7,
          "tail past the limit: rc %d len %zu", rc, out.len);
    buf_free(&ctx, &out);

    /* a buffer of every size up to past the message, the limit far away */

    for (size = 1; size <= 12; size++) {
        out.data = ctx.alloc(ctx.data, size);
        out.size = size;
        out.len = 0;

        rc = inflate_msg(&ctx, &inf, msg, 9, &out, 1000);
        CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == 8
              && memcmp(out.data, want, 8) == 0,
              "tail in a buffer of %zu: rc %d len %zu", size, rc, out.len);

        /* one byte short, the tail does not end the block: CORRUPT still */

        out.len = 0;
        rc = inflate_msg(&ctx, &inf, msg, 8, &out, 1000);
        CHECK(rc == NGX_CHAT_INFLATE_CORRUPT,
              "tail inside the block, buffer of %zu: rc %d", size, rc);

        buf_free(&ctx, &out);
    }

    /* the same through the idle list and a second message */

    n = ctx.inflate_streams;
    rc = inflate_msg(&ctx, &inf, msg, 9, &out, 8);
    CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == 8,
          "tail at the limit again: rc %d len %zu", rc, out.len);
    CHECK(ctx.inflate_streams == n && ctx.inflate_streams == 1,
          "one stream reused: %u", ctx.inflate_streams);
    buf_free(&ctx, &out);

    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "tail ends block: %zu blocks leaked",
          mem.live_blocks);
}


/* 10 MB of zeros in about 10 KB: stopped at 16 KB of output */

static void
test_bomb(void)
{
    size_t                     len, clen, off, n, frames;
    z_stream                   cz;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_inflate_rc_e      rc;
    unsigned char             *zeros, *comp;

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));
    ngx_chat_inflate_init(&inf, &params15);

    len = 10 * 1024 * 1024;
    zeros = calloc(len, 1);
    comp = malloc(len / 100);

    client_init(&cz, 9, 15);
    clen = client_deflate(&cz, zeros, len, comp, len / 100);
    deflateEnd(&cz);

    printf("  bomb: %zu bytes of zeros in %zu compressed bytes\n", len, clen);
    CHECK(clen < 11000, "the bomb is small: %zu", clen);

    rc = NGX_CHAT_INFLATE_OK;
    frames = 0;

    for (off = 0; off < clen && rc == NGX_CHAT_INFLATE_OK; off += n) {
        n = clen - off < 1024 ? clen - off : 1024;
        rc = ngx_chat_inflate(&ctx, &inf, comp + off, n, off + n == clen,
                              &out, 16384);
        frames++;
    }

    CHECK(rc == NGX_CHAT_INFLATE_TOO_BIG && frames == 1,
          "bomb: rc %d after %zu frames", rc, frames);
    CHECK(out.len == 16384 && out.size == 16384 && mem.peak_bytes < 80000,
          "bomb: len %zu size %zu peak memory %zu", out.len, out.size,
          mem.peak_bytes);

    /* one compressed byte at a time: still stopped at the first byte over */

    buf_free(&ctx, &out);
    rc = NGX_CHAT_INFLATE_OK;

    for (off = 0; off < clen && rc == NGX_CHAT_INFLATE_OK; off++) {
        rc = ngx_chat_inflate(&ctx, &inf, comp + off, 1, off + 1 == clen,
                              &out, 16384);
    }

    CHECK(rc == NGX_CHAT_INFLATE_TOO_BIG && off < 100 && out.len == 16384,
          "bomb byte by byte: rc %d after %zu bytes", rc, off);

    buf_free(&ctx, &out);
    free(zeros);
    free(comp);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "bomb: %zu blocks leaked", mem.live_blocks);
}


static void
test_corrupt(void)
{
    int                        i, corrupt, other;
    size_t                     n, len, clen;
    z_stream                   cz;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_inflate_rc_e      rc;
    unsigned char              junk[300], msg[2000], comp[2100];

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));
    ngx_chat_inflate_init(&inf, &params15);

    /* block type 3 is reserved */

    CHECK(inflate_msg(&ctx, &inf, "\xff\xff\xff", 3, &out, 100)
          == NGX_CHAT_INFLATE_CORRUPT, "reserved block type");
    out.len = 0;

    /* a stored block whose length does not match its complement */

    CHECK(inflate_msg(&ctx, &inf, "\x00\x05\x00\xfa\xfe" "Hello\x00", 11,
                      &out, 100) == NGX_CHAT_INFLATE_CORRUPT,
          "stored length check");
    out.len = 0;

    /* the error comes with the frame that has it, not at the end */

    CHECK(ngx_chat_inflate(&ctx, &inf, (const unsigned char *) "\x07", 1, 0,
                           &out, 100) == NGX_CHAT_INFLATE_CORRUPT,
          "reserved block type, first frame");
    out.len = 0;

    /* cut short: the tail does not end a block */

    len = chat_json(msg, sizeof(msg), 1, 300);
    client_init(&cz, 6, 15);
    clen = client_deflate(&cz, msg, len, comp, sizeof(comp));
    deflateEnd(&cz);

    rc = inflate_msg(&ctx, &inf, comp, clen - 3, &out, sizeof(msg));
    CHECK(rc == NGX_CHAT_INFLATE_CORRUPT, "cut short: rc %d", rc);
    out.len = 0;

    /*
     * A sender that left its tail in (RFC 7692 7.2.1 says to remove it):
     * ours then starts a stored block that never ends.
     */

    memcpy(comp + clen, "\x00\x00\xff\xff", 4);
    rc = inflate_msg(&ctx, &inf, comp, clen + 4, &out, sizeof(msg));
    CHECK(rc == NGX_CHAT_INFLATE_CORRUPT && out.len == len,
          "the tail left in: rc %d len %zu", rc, out.len);
    out.len = 0;

    rc = inflate_msg(&ctx, &inf, comp, clen, &out, sizeof(msg));
    CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == len, "intact: rc %d", rc);
    out.len = 0;

    /* noise: mostly corrupt, never a crash, never past the limit */

    corrupt = other = 0;

    for (i = 0; i < 3000; i++) {
        n = 1 + rnd() % sizeof(junk);

        for (len = 0; len < n; len++) {
            junk[len] = (unsigned char) rnd();
        }

        rc = inflate_msg(&ctx, &inf, junk, n, &out, 500);

        corrupt += rc == NGX_CHAT_INFLATE_CORRUPT;
        other += rc != NGX_CHAT_INFLATE_CORRUPT;

        if (out.len > 500 || inf.stream != NULL) {
            break;
        }

        out.len = 0;
    }

    CHECK(i == 3000, "noise broke the limit at %d", i);
    CHECK(corrupt > 2500, "noise: %d corrupt, %d not", corrupt, other);

    buf_free(&ctx, &out);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "corrupt: %zu blocks leaked",
          mem.live_blocks);
}


/*
 * Context takeover: a client that keeps its window compresses better, and
 * we follow it only when takeover was agreed; across a final block the
 * window survives too.
 */

static void
test_takeover(void)
{
    int                        m;
    size_t                     len, clen, total_tk, total_reset;
    z_stream                   cz;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_inflate_rc_e      rc;
    ngx_chat_deflate_params_t  tk = { 15, 15, 1 };
    unsigned char              msg[2000], comp[2100];
    unsigned                   bad;

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));

    client_init(&cz, 6, 15);
    ngx_chat_inflate_init(&inf, &tk);
    total_tk = total_reset = 0;
    bad = 0;

    for (m = 0; m < 20; m++) {
        len = chat_json(msg, sizeof(msg), (unsigned) m, 100);
        clen = client_deflate(&cz, msg, len, comp, sizeof(comp));
        total_tk += clen;

        out.len = 0;
        rc = inflate_msg(&ctx, &inf, comp, clen, &out, sizeof(msg));
        bad += rc != NGX_CHAT_INFLATE_OK || out.len != len
               || memcmp(out.data, msg, len) != 0;
    }

    CHECK(bad == 0, "takeover: %u messages wrong", bad);
    CHECK(inf.stream != NULL && ctx.inflate_streams == 1,
          "takeover: one stream kept");

    /* the same with a reset client: larger */

    for (m = 0; m < 20; m++) {
        len = chat_json(msg, sizeof(msg), (unsigned) m, 100);
        deflateReset(&cz);
        total_reset += client_deflate(&cz, msg, len, comp, sizeof(comp));
    }

    printf("  20 chat messages: %zu bytes with context takeover, %zu "
           "without\n", total_tk, total_reset);
    CHECK(total_tk < total_reset, "takeover compresses better");

    /*
     * A final block ends a message; the client's next message is a new
     * DEFLATE stream that may refer to the old window.
     */

    deflateReset(&cz);
    len = chat_json(msg, sizeof(msg), 99, 200);

    cz.next_in = msg;
    cz.avail_in = (uInt) len;
    cz.next_out = comp;
    cz.avail_out = sizeof(comp);
    CHECK(deflate(&cz, Z_FINISH) == Z_STREAM_END, "Z_FINISH");
    clen = sizeof(comp) - cz.avail_out;
    comp[clen++] = 0x00;   /* as RFC 7692 7.2.3.4 does */

    out.len = 0;
    rc = inflate_msg(&ctx, &inf, comp, clen, &out, sizeof(msg));
    CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == len
          && memcmp(out.data, msg, len) == 0, "BFINAL with takeover: rc %d",
          rc);

    deflateReset(&cz);
    deflateSetDictionary(&cz, msg, (uInt) len);
    clen = client_deflate(&cz, msg, len, comp, sizeof(comp));
    CHECK(clen < 20, "the repeat refers to the dictionary: %zu", clen);

    out.len = 0;
    rc = inflate_msg(&ctx, &inf, comp, clen, &out, sizeof(msg));
    CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == len
          && memcmp(out.data, msg, len) == 0,
          "after BFINAL the window survives: rc %d", rc);

    /* a message of two frames, BFINAL in the first: the second is ignored */

    ngx_chat_inflate_end(&ctx, &inf);
    ngx_chat_inflate_init(&inf, &params15);
    out.len = 0;
    rc = ngx_chat_inflate(&ctx, &inf, (const unsigned char *)
                          "\xf3\x48\xcd\xc9\xc9\x07\x00", 7, 0, &out, 100);
    if (rc == NGX_CHAT_INFLATE_OK) {
        rc = ngx_chat_inflate(&ctx, &inf, (const unsigned char *) "\x00\x42",
                              2, 1, &out, 100);
    }
    CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == 5
          && memcmp(out.data, "Hello", 5) == 0 && inf.stream == NULL,
          "bytes after BFINAL: rc %d len %zu", rc, out.len);

    deflateEnd(&cz);
    ngx_chat_inflate_end(&ctx, &inf);
    buf_free(&ctx, &out);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "takeover: %zu blocks leaked",
          mem.live_blocks);
}


/*
 * Allocation: no state between messages without takeover, streams reused
 * from the idle list, nothing allocated on the deflate hot path; the
 * sizes are printed.
 */

static void
test_allocation(void)
{
    int                        bits;
    size_t                     len, clen, before, blocks, n, plen;
    z_stream                   cz;
    ngx_chat_inflater_t        inf, inf2;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_deflate_conf_t    conf;
    ngx_chat_inflate_rc_e      rc;
    ngx_chat_deflate_params_t  pp;
    unsigned char              msg[2000], comp[2100];

    printf("  sizeof(ngx_chat_inflater_t) %zu, ngx_chat_deflate_ctx_t %zu,"
           " z_stream %zu\n", sizeof(ngx_chat_inflater_t),
           sizeof(ngx_chat_deflate_ctx_t), sizeof(z_stream));
    CHECK(sizeof(ngx_chat_inflater_t) <= 16, "inflater: %zu bytes",
          sizeof(ngx_chat_inflater_t));

    len = chat_json(msg, sizeof(msg), 3, 100);
    client_init(&cz, 6, 15);
    clen = client_deflate(&cz, msg, len, comp, sizeof(comp));
    deflateEnd(&cz);

    /* the inflate stream's size at each window */

    for (bits = 9; bits <= 15; bits++) {
        mem_reset();
        ctx_make(&ctx, 0);
        ctx.idle_max = 0;
        memset(&out, 0, sizeof(out));

        pp.server_window_bits = 15;
        pp.client_window_bits = (uint8_t) bits;
        pp.client_takeover = 0;
        ngx_chat_inflate_init(&inf, &pp);

        rc = ngx_chat_inflate(&ctx, &inf, comp, clen / 2, 0, &out,
                              sizeof(msg));
        before = mem.live_bytes - out.size;
        blocks = mem.live_blocks - (out.data != NULL);

        if (bits == 9 || bits == 15) {
            printf("  inflate at %d bits: %zu bytes in %zu blocks while "
                   "a message is in progress\n", bits, before, blocks);
        }

        CHECK(rc == NGX_CHAT_INFLATE_OK && before > (1u << bits)
              && before < (1u << bits) + 8192,
              "inflate at %d bits: %zu bytes", bits, before);

        rc = ngx_chat_inflate(&ctx, &inf, comp + clen / 2, clen - clen / 2,
                              1, &out, sizeof(msg));
        CHECK(rc == NGX_CHAT_INFLATE_OK && out.len == len
              && inf.stream == NULL && mem.live_bytes == out.size
              && ctx.inflate_streams == 0,
              "bits %d: nothing but the message left: %zu bytes", bits,
              mem.live_bytes - out.size);

        buf_free(&ctx, &out);
        ngx_chat_deflate_ctx_cleanup(&ctx);
    }

    /* the idle list: the second message allocates no zlib state */

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&out, 0, sizeof(out));
    ngx_chat_inflate_init(&inf, &params15);
    ngx_chat_inflate_init(&inf2, &params15);

    rc = inflate_msg(&ctx, &inf, comp, clen, &out, sizeof(msg));
    CHECK(rc == NGX_CHAT_INFLATE_OK && ctx.inflate_streams == 1
          && ctx.inflate_idle == 1 && inf.stream == NULL,
          "first message: %u streams, %u idle", ctx.inflate_streams,
          ctx.inflate_idle);

    buf_free(&ctx, &out);
    before = mem.allocs;
    rc = inflate_msg(&ctx, &inf2, comp, clen, &out, sizeof(msg));
    CHECK(rc == NGX_CHAT_INFLATE_OK && mem.allocs == before + 1
          && ctx.inflate_streams == 1,
          "another connection's message: %zu allocations (the buffer)",
          mem.allocs - before);

    /* two messages in progress at once take two streams */

    rc = ngx_chat_inflate(&ctx, &inf, comp, 5, 0, &out, sizeof(msg));
    rc += ngx_chat_inflate(&ctx, &inf2, comp, 5, 0, &out, sizeof(msg));
    CHECK(rc == 0 && ctx.inflate_streams == 2 && ctx.inflate_idle == 0
          && inf.stream && inf2.stream && inf.stream != inf2.stream,
          "two at once: %u streams", ctx.inflate_streams);

    /* the idle list is bounded */

    ctx.idle_max = 1;
    ngx_chat_inflate_end(&ctx, &inf);
    ngx_chat_inflate_end(&ctx, &inf2);
    CHECK(ctx.inflate_streams == 1 && ctx.inflate_idle == 1,
          "idle_max 1: %u streams, %u idle", ctx.inflate_streams,
          ctx.inflate_idle);

    buf_free(&ctx, &out);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0 && ctx.inflate_streams == 0,
          "cleanup: %zu blocks left", mem.live_blocks);

    /* ngx_chat_inflate_end after cleanup frees instead of keeping */

    ngx_chat_inflate_init(&inf, &params15);
    rc = ngx_chat_inflate(&ctx, &inf, comp, 5, 0, &out, sizeof(msg));
    ngx_chat_inflate_end(&ctx, &inf);
    buf_free(&ctx, &out);
    CHECK(mem.live_blocks == 0, "end after cleanup: %zu blocks",
          mem.live_blocks);

    /* deflate: one stream per window bits, then no allocation at all */

    ngx_chat_deflate_conf_init(&conf);

    for (bits = 9; bits <= 15; bits++) {
        int  ml;

        for (ml = 1; ml <= 9; ml += 7) {
            mem_reset();
            conf.mem_level = ml;
            conf.min_size = 0;
            ngx_chat_deflate_ctx_init(&ctx, &conf, t_alloc, t_free, &mem);

            ngx_chat_deflate_payload(&ctx, (unsigned) bits, msg, len, comp,
                                     sizeof(comp), &plen);
            before = mem.live_bytes;
            blocks = mem.allocs;

            for (n = 0; n < 100; n++) {
                ngx_chat_deflate_payload(&ctx, (unsigned) bits, msg, len,
                                         comp, sizeof(comp), &plen);
            }

            if ((bits == 9 || bits == 15) && (ml == 1 || ml == 8)) {
                printf("  deflate at %d bits, mem_level %d: %zu bytes in "
                       "%zu blocks\n", bits, ml, before, blocks);
            }

            CHECK(mem.allocs == blocks && ctx.deflate_streams == 1,
                  "deflate %d/%d: %zu allocations on the hot path", bits,
                  ml, mem.allocs - blocks);

            ngx_chat_deflate_ctx_cleanup(&ctx);
            CHECK(mem.live_blocks == 0, "deflate cleanup: %zu blocks",
                  mem.live_blocks);
        }
    }
}


/* every allocation failing in turn: NOMEM or ERROR, never a leak */

static void
test_nomem(void)
{
    long                       k;
    size_t                     len, clen, plen;
    z_stream                   cz;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     out;
    ngx_chat_deflate_ctx_t     ctx;
    ngx_chat_inflate_rc_e      rc;
    ngx_chat_deflate_rc_e      drc;
    ngx_chat_deflate_params_t  tk = { 15, 15, 1 };
    unsigned char              msg[3000], comp[3100], ours[3100];
    unsigned                   nomem, ok;

    len = chat_json(msg, sizeof(msg), 5, 1500);
    client_init(&cz, 6, 15);
    cz.next_in = msg;
    cz.avail_in = (uInt) len;
    cz.next_out = comp;
    cz.avail_out = sizeof(comp);
    deflate(&cz, Z_FINISH);      /* BFINAL: takeover needs its dictionary */
    clen = sizeof(comp) - cz.avail_out;
    deflateEnd(&cz);

    nomem = ok = 0;

    for (k = 0; k < 12; k++) {
        mem_reset();
        ctx_make(&ctx, 0);
        memset(&out, 0, sizeof(out));
        ngx_chat_inflate_init(&inf, &tk);

        mem.fail_after = k;
        rc = ngx_chat_inflate(&ctx, &inf, comp, clen / 2, 0, &out, 100000);
        if (rc == NGX_CHAT_INFLATE_OK) {
            rc = ngx_chat_inflate(&ctx, &inf, comp + clen / 2,
                                  clen - clen / 2, 1, &out, 100000);
        }

        nomem += rc == NGX_CHAT_INFLATE_NOMEM;
        ok += rc == NGX_CHAT_INFLATE_OK && out.len == len
              && memcmp(out.data, msg, len) == 0;

        if (rc != NGX_CHAT_INFLATE_OK) {
            CHECK(rc == NGX_CHAT_INFLATE_NOMEM && inf.stream == NULL,
                  "failing allocation %ld: rc %d", k, rc);
        }

        mem.fail_after = -1;
        ngx_chat_inflate_end(&ctx, &inf);
        buf_free(&ctx, &out);

        mem.fail_after = k;
        drc = ngx_chat_deflate_payload(&ctx, 15, msg, len, ours, sizeof(ours),
                                       &plen);
        CHECK(drc == NGX_CHAT_DEFLATE_OK || drc == NGX_CHAT_DEFLATE_ERROR,
              "deflate, failing allocation %ld: %d", k, drc);

        mem.fail_after = -1;
        ngx_chat_deflate_ctx_cleanup(&ctx);
        CHECK(mem.live_blocks == 0, "failing allocation %ld: %zu leaked",
              k, mem.live_blocks);
    }

    CHECK(nomem >= 3 && ok >= 3 && nomem + ok == 12,
          "allocation failures: %u NOMEM, %u OK", nomem, ok);
}


/* ---------------------------------------------------------------- deflate */

static void
test_deflate(void)
{
    int                     bits, m, i;
    char                    name[64];
    long                    back;
    size_t                  len, plen, plen2, flen, hlen;
    uint64_t                wire;
    ngx_chat_deflate_ctx_t  ctx;
    ngx_chat_deflate_rc_e   rc;
    unsigned                bad;
    unsigned char          *frame;
    static unsigned char    msg[70000], comp[80000], comp2[80000],
                            back_buf[80000];

    mem_reset();
    ctx_make(&ctx, 0);
    bad = 0;

    /* our messages inflate with zlib, each on its own (no takeover) */

    for (bits = 9; bits <= 15; bits++) {
        for (m = 0; m < 8; m++) {

            if (m == 7) {
                len = 30000 + rnd() % 30000;
                for (i = 0; i < (int) len; i++) {
                    msg[i] = (unsigned char) ('a' + rnd() % 4);
                }

            } else {
                len = chat_json(msg, sizeof(msg), (unsigned) m,
                                (size_t) (rnd() % 2000));
            }

            rc = ngx_chat_deflate_payload(&ctx, (unsigned) bits, msg, len,
                                          comp, sizeof(comp), &plen);

            back = client_inflate(bits, comp, plen, back_buf,
                                  sizeof(back_buf));

            if (rc != NGX_CHAT_DEFLATE_OK || back != (long) len
                || memcmp(back_buf, msg, len) != 0)
            {
                if (bad++ < 3) {
                    printf("  deflate bits %d msg %d: rc %d back %ld/%zu\n",
                           bits, m, rc, back, len);
                }
            }

            /* the same bytes again: the stream was reset */

            rc = ngx_chat_deflate_payload(&ctx, (unsigned) bits, msg, len,
                                          comp2, sizeof(comp2), &plen2);
            bad += rc != NGX_CHAT_DEFLATE_OK || plen2 != plen
                   || memcmp(comp, comp2, plen) != 0;
        }
    }

    CHECK(bad == 0, "%u deflated messages wrong", bad);
    CHECK(ctx.deflate_streams == 7, "one stream per window: %u",
          ctx.deflate_streams);

    /* an empty message is one 00 byte (RFC 7692 7.2.3.6) */

    rc = ngx_chat_deflate_payload(&ctx, 15, msg, 0, comp, sizeof(comp),
                                  &plen);
    CHECK(rc == NGX_CHAT_DEFLATE_OK && plen == 1 && comp[0] == 0,
          "empty: rc %d len %zu", rc, plen);

    /* "Hello" as in RFC 7692 7.2.3.1 */

    rc = ngx_chat_deflate_payload(&ctx, 15, (const unsigned char *) "Hello",
                                  5, comp, sizeof(comp), &plen);
    CHECK(rc == NGX_CHAT_DEFLATE_OK && plen == 7
          && memcmp(comp, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7) == 0,
          "Hello: %zu bytes", plen);

    /* out too small: declined, and the stream still works */

    len = chat_json(msg, sizeof(msg), 1, 500);
    rc = ngx_chat_deflate_payload(&ctx, 15, msg, len, comp, 20, &plen);
    CHECK(rc == NGX_CHAT_DEFLATE_DECLINED, "out too small: %d", rc);
    rc = ngx_chat_deflate_payload(&ctx, 15, msg, len, comp, sizeof(comp),
                                  &plen);
    back = client_inflate(15, comp, plen, back_buf, sizeof(back_buf));
    CHECK(rc == NGX_CHAT_DEFLATE_OK && back == (long) len
          && memcmp(back_buf, msg, len) == 0, "after a decline: %d", rc);

    CHECK(ngx_chat_deflate_payload(&ctx, 8, msg, len, comp, sizeof(comp),
                                   &plen) == NGX_CHAT_DEFLATE_ERROR,
          "8 bits refused");
    CHECK(ngx_chat_deflate_payload(&ctx, 16, msg, len, comp, sizeof(comp),
                                   &plen) == NGX_CHAT_DEFLATE_ERROR,
          "16 bits refused");

    /* frames: FIN, RSV1, the opcode, the length, the payload after */

    for (i = 0; i < 3; i++) {
        len = i == 0 ? chat_json(msg, sizeof(msg), 2, 60)
                     : i == 1 ? chat_json(msg, sizeof(msg), 2, 1500) : 66000;

        if (i == 2) {
            memset(msg, 'z', len);
        }

        rc = ngx_chat_deflate_frame(&ctx, 12, NGX_CHAT_WS_OP_TEXT, msg, len,
                                    comp, NGX_CHAT_DEFLATE_FRAME_SIZE(len),
                                    &frame, &flen);

        snprintf(name, sizeof(name), "frame %d", i);
        CHECK(rc == NGX_CHAT_DEFLATE_OK && frame >= comp
              && frame + flen <= comp + NGX_CHAT_DEFLATE_FRAME_SIZE(len),
              "%s: rc %d", name, rc);

        if (rc != NGX_CHAT_DEFLATE_OK) {
            continue;
        }

        CHECK(frame[0] == (0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT),
              "%s: first byte %02x", name, frame[0]);

        wire = frame[1] & 0x7f;
        hlen = 2;

        if (wire == 126) {
            wire = ((uint64_t) frame[2] << 8) | frame[3];
            hlen = 4;
        }

        CHECK(!(frame[1] & 0x80) && hlen + wire == flen && wire < len,
              "%s: header says %llu of %zu", name,
              (unsigned long long) wire, flen);

        back = client_inflate(12, frame + hlen, (size_t) wire, back_buf,
                              sizeof(back_buf));
        CHECK(back == (long) len && memcmp(back_buf, msg, len) == 0,
              "%s: inflates back: %ld", name, back);
    }

    /* binary opcode; opcode bits beyond the four are not trusted */

    len = chat_json(msg, sizeof(msg), 4, 300);
    rc = ngx_chat_deflate_frame(&ctx, 15, 0x30 | NGX_CHAT_WS_OP_BINARY, msg,
                                len, comp, NGX_CHAT_DEFLATE_FRAME_SIZE(len),
                                &frame, &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_OK && frame[0] == 0xc2, "binary frame");

    /* incompressible: declined, send it plain */

    for (i = 0; i < 1000; i++) {
        msg[i] = (unsigned char) rnd();
    }

    rc = ngx_chat_deflate_frame(&ctx, 15, NGX_CHAT_WS_OP_BINARY, msg, 1000,
                                comp, NGX_CHAT_DEFLATE_FRAME_SIZE(1000),
                                &frame, &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_DECLINED, "noise declined: %d", rc);

    rc = ngx_chat_deflate_frame(&ctx, 15, NGX_CHAT_WS_OP_BINARY, msg, 1000,
                                comp, NGX_CHAT_WS_MAX_HEADER, &frame, &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_DECLINED, "no room: %d", rc);

    ngx_chat_deflate_ctx_cleanup(&ctx);

    /* min_size */

    ctx_make(&ctx, 64);
    len = chat_json(msg, sizeof(msg), 4, 300);

    rc = ngx_chat_deflate_frame(&ctx, 15, NGX_CHAT_WS_OP_TEXT, msg, 63, comp,
                                NGX_CHAT_DEFLATE_FRAME_SIZE(63), &frame,
                                &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_DECLINED && ctx.deflate_streams == 0,
          "under min_size: %d", rc);
    rc = ngx_chat_deflate_frame(&ctx, 15, NGX_CHAT_WS_OP_TEXT, msg, 64, comp,
                                NGX_CHAT_DEFLATE_FRAME_SIZE(64), &frame,
                                &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_OK, "at min_size: %d", rc);

    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "deflate: %zu blocks leaked",
          mem.live_blocks);
}


/* ---------------------------------------------- the parser around inflate */

/* a masked client frame */

static size_t
client_frame(unsigned char *out, unsigned b0, const unsigned char *p,
    size_t len)
{
    size_t                      i, n;
    static const unsigned char  mask[4] = { 0x11, 0x22, 0x33, 0x44 };

    out[0] = (unsigned char) b0;

    if (len < 126) {
        out[1] = (unsigned char) (0x80 | len);
        n = 2;

    } else {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char) (len >> 8);
        out[3] = (unsigned char) len;
        n = 4;
    }

    memcpy(out + n, mask, 4);
    n += 4;

    for (i = 0; i < len; i++) {
        out[n + i] = p[i] ^ mask[i & 3];
    }

    return n + len;
}


/*
 * What the session will do: parse, inflate compressed chunks, check the
 * inflated text.  Returns the close code, 0 when the stream ended well,
 * and the last message in *msg.
 */

static unsigned
session(ngx_chat_deflate_ctx_t *ctx, unsigned char *stream, size_t n,
    size_t limit, ngx_chat_deflate_buf_t *msg, unsigned *messages)
{
    uint32_t               utf8;
    unsigned               code, msg_start;
    const char            *reason;
    unsigned char         *pos;
    ngx_chat_ws_rc_e       rc;
    ngx_chat_ws_event_t    ev;
    ngx_chat_inflater_t    inf;
    ngx_chat_ws_parser_t   p;

    ngx_chat_ws_parser_init(&p, limit);
    p.deflate = 1;
    ngx_chat_inflate_init(&inf, &params15);
    utf8 = NGX_CHAT_UTF8_ACCEPT;
    *messages = 0;
    msg->len = 0;
    msg_start = 1;
    reason = NULL;
    pos = stream;

    for ( ;; ) {
        rc = ngx_chat_ws_parse(&p, &pos, stream + n, &ev);

        if (rc == NGX_CHAT_WS_AGAIN) {
            ngx_chat_inflate_end(ctx, &inf);
            return 0;
        }

        if (rc == NGX_CHAT_WS_ERROR) {
            ngx_chat_inflate_end(ctx, &inf);
            return ev.close_code;
        }

        if (rc != NGX_CHAT_WS_DATA) {
            continue;
        }

        if (!ev.compressed) {
            msg->len = 0;
            *messages += ev.last;
            continue;
        }

        if (msg_start) {
            msg->len = 0;
            msg_start = 0;
        }

        code = ngx_chat_inflate_event(ctx, &inf, &utf8, &ev, msg, limit,
                                      &reason);

        if (code != 0) {
            /* the stream is back already: nothing to end */
            if (inf.stream != NULL || utf8 != NGX_CHAT_UTF8_ACCEPT
                || reason == NULL)
            {
                return 9998;
            }

            return code;
        }

        if (ev.last) {
            (*messages)++;
            msg_start = 1;

            if (inf.stream != NULL) {
                ngx_chat_inflate_end(ctx, &inf);
                return 9999;    /* no takeover: no stream between messages */
            }
        }
    }
}


static void
test_session(void)
{
    size_t                  n, clen, len;
    z_stream                cz;
    unsigned                code, messages;
    ngx_chat_deflate_buf_t  msg;
    ngx_chat_deflate_ctx_t  ctx;
    static unsigned char    stream[40000], comp[20000], text[20000];

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&msg, 0, sizeof(msg));
    client_init(&cz, 6, 15);

    /* a compressed text message in three frames, a ping between */

    len = chat_json(text, sizeof(text), 8, 400);
    clen = client_deflate(&cz, text, len, comp, sizeof(comp));

    n = client_frame(stream, NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT, comp,
                     10);
    n += client_frame(stream + n, 0x80 | NGX_CHAT_WS_OP_PING,
                      (const unsigned char *) "p", 1);
    n += client_frame(stream + n, NGX_CHAT_WS_OP_CONT, comp + 10, 20);
    n += client_frame(stream + n, 0x80 | NGX_CHAT_WS_OP_CONT, comp + 30,
                      clen - 30);
    n += client_frame(stream + n, 0x80 | NGX_CHAT_WS_OP_TEXT,
                      (const unsigned char *) "plain", 5);

    code = session(&ctx, stream, n, 16384, &msg, &messages);
    CHECK(code == 0 && messages == 2, "session: code %u, %u messages", code,
          messages);

    /* invalid UTF-8 once inflated: 1007 */

    deflateReset(&cz);
    clen = client_deflate(&cz, (const unsigned char *) "caf\xc3\x28", 5,
                          comp, sizeof(comp));
    n = client_frame(stream, 0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT,
                     comp, clen);
    CHECK(session(&ctx, stream, n, 16384, &msg, &messages) == 1007,
          "bad UTF-8 inside a compressed message");

    /* text that ends inside a character, once inflated: 1007 */

    deflateReset(&cz);
    clen = client_deflate(&cz, (const unsigned char *) "caf\xc3", 4, comp,
                          sizeof(comp));
    n = client_frame(stream, 0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT,
                     comp, clen);
    CHECK(session(&ctx, stream, n, 16384, &msg, &messages) == 1007,
          "compressed text ends inside a character");

    /* binary is not UTF-8 checked */

    n = client_frame(stream, 0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_BINARY,
                     comp, clen);
    CHECK(session(&ctx, stream, n, 16384, &msg, &messages) == 0
          && messages == 1 && msg.len == 4, "compressed binary");

    /* the limit applies to the inflated size */

    memset(text, 'a', 16385);
    deflateReset(&cz);
    clen = client_deflate(&cz, text, 16385, comp, sizeof(comp));
    n = client_frame(stream, 0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT,
                     comp, clen);
    CHECK(session(&ctx, stream, n, 16384, &msg, &messages) == 1009,
          "16385 inflated bytes over 16384");

    deflateReset(&cz);
    clen = client_deflate(&cz, text, 16384, comp, sizeof(comp));
    n = client_frame(stream, 0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT,
                     comp, clen);
    CHECK(session(&ctx, stream, n, 16384, &msg, &messages) == 0
          && msg.len == 16384, "16384 inflated bytes");

    /* incompressible, at the limit: the wire slack lets it through */

    for (n = 0; n < 16384; n++) {
        text[n] = (unsigned char) ('0' + rnd() % 75);
    }
    deflateEnd(&cz);
    client_init(&cz, 0, 15);     /* level 0: stored blocks only */
    clen = client_deflate(&cz, text, 16384, comp, sizeof(comp));
    CHECK(clen > 16384, "stored: %zu bytes on the wire", clen);
    n = client_frame(stream, 0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT,
                     comp, clen);
    CHECK(session(&ctx, stream, n, 16384, &msg, &messages) == 0
          && msg.len == 16384, "stored at the limit");

    /* corrupt data: 1007 */

    n = client_frame(stream, 0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT,
                     (const unsigned char *) "\xff\xff", 2);
    CHECK(session(&ctx, stream, n, 16384, &msg, &messages) == 1007,
          "corrupt");

    deflateEnd(&cz);
    buf_free(&ctx, &msg);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "session: %zu blocks leaked",
          mem.live_blocks);
}


/* -------------------------------------------- one message, many recipients */

/* the payload of a server frame and its header's first byte */

static const unsigned char *
frame_payload(const unsigned char *f, size_t len, unsigned *b0, size_t *plen)
{
    size_t  n, h;

    *b0 = f[0];
    n = f[1] & 0x7f;
    h = 2;

    if (n == 126) {
        n = ((size_t) f[2] << 8) | f[3];
        h = 4;

    } else if (n == 127) {
        n = 0;
        for (h = 2; h < 10; h++) {
            n = (n << 8) | f[h];
        }
    }

    *plen = n;

    return h + n == len ? f + h : NULL;
}


static void
test_shared(void)
{
    long                        n;
    size_t                      len, flen, plen, allocs, blocks;
    unsigned                    i, b0, bits, distinct;
    unsigned char              *frame, *first[16];
    const unsigned char        *pl;
    ngx_chat_deflate_rc_e       rc;
    ngx_chat_deflate_ctx_t      ctx;
    ngx_chat_deflate_shared_t   sh;
    static unsigned char        msg[4096], out[8192];

    mem_reset();
    ctx_make(&ctx, 64);

    /* 256 recipients over three window sizes: three deflates, no more */

    len = chat_json(msg, sizeof(msg), 3, 100);
    ngx_chat_deflate_shared_init(&sh, NGX_CHAT_WS_OP_TEXT, msg, len);
    memset(first, 0, sizeof(first));
    distinct = 0;

    for (i = 0; i < 256; i++) {
        bits = i % 7 == 0 ? 10 : i % 5 == 0 ? 12 : 15;

        rc = ngx_chat_deflate_shared_frame(&ctx, &sh, bits, &frame, &flen);
        CHECK(rc == NGX_CHAT_DEFLATE_OK, "shared: recipient %u: rc %d", i,
              rc);
        if (rc != NGX_CHAT_DEFLATE_OK) {
            break;
        }

        if (first[bits] == NULL) {
            first[bits] = frame;
            distinct++;

            pl = frame_payload(frame, flen, &b0, &plen);
            CHECK(pl != NULL && b0 == (0x80 | NGX_CHAT_WS_RSV1
                                       | NGX_CHAT_WS_OP_TEXT)
                  && plen < len,
                  "shared: %u bits: a compressed text frame (%zu of %zu)",
                  bits, plen, len);

            n = pl ? client_inflate((int) bits, pl, plen, out, sizeof(out))
                   : -1;
            CHECK(n == (long) len && memcmp(out, msg, len) == 0,
                  "shared: %u bits: inflates to the message (%ld)", bits, n);
        }

        CHECK(frame == first[bits], "shared: recipient %u: the same bytes",
              i);
    }

    CHECK(distinct == 3 && ctx.deflated == 3,
          "shared: %llu deflates for %u window sizes",
          (unsigned long long) ctx.deflated, distinct);

    rc = ngx_chat_deflate_shared_frame(&ctx, &sh, 8, &frame, &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_ERROR, "shared: 8 bits: rc %d", rc);

    ngx_chat_deflate_shared_free(&ctx, &sh);
    blocks = mem.live_blocks;
    CHECK(ctx.deflate_streams == 3 && blocks > 0,
          "shared: the streams stay in the context (%u)",
          ctx.deflate_streams);

    /* shorter than min_size: declined, nothing allocated */

    allocs = mem.allocs;
    ngx_chat_deflate_shared_init(&sh, NGX_CHAT_WS_OP_TEXT, msg, 63);
    rc = ngx_chat_deflate_shared_frame(&ctx, &sh, 15, &frame, &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_DECLINED && mem.allocs == allocs,
          "shared: short: rc %d, %zu allocations", rc, mem.allocs - allocs);
    ngx_chat_deflate_shared_free(&ctx, &sh);

    /* incompressible: declined once per window size, tried once */

    for (i = 0; i < 300; i++) {
        msg[i] = (unsigned char) rnd();
    }

    ngx_chat_deflate_shared_init(&sh, NGX_CHAT_WS_OP_BINARY, msg, 300);
    allocs = mem.allocs;

    for (i = 0; i < 10; i++) {
        rc = ngx_chat_deflate_shared_frame(&ctx, &sh, 15, &frame, &flen);
        CHECK(rc == NGX_CHAT_DEFLATE_DECLINED,
              "shared: incompressible: rc %d", rc);
    }

    CHECK(mem.allocs == allocs + 1 && mem.live_blocks == blocks,
          "shared: incompressible: %zu allocations, %zu blocks left",
          mem.allocs - allocs, mem.live_blocks - blocks);
    ngx_chat_deflate_shared_free(&ctx, &sh);

    /* out of memory: an error once, then declined without trying again */

    len = chat_json(msg, sizeof(msg), 4, 100);
    ngx_chat_deflate_shared_init(&sh, NGX_CHAT_WS_OP_TEXT, msg, len);
    mem.fail_after = 0;
    rc = ngx_chat_deflate_shared_frame(&ctx, &sh, 15, &frame, &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_ERROR, "shared: no memory: rc %d", rc);
    mem.fail_after = -1;
    allocs = mem.allocs;
    rc = ngx_chat_deflate_shared_frame(&ctx, &sh, 15, &frame, &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_DECLINED && mem.allocs == allocs,
          "shared: after no memory: rc %d", rc);

    /* another window size is tried on its own */
    rc = ngx_chat_deflate_shared_frame(&ctx, &sh, 12, &frame, &flen);
    CHECK(rc == NGX_CHAT_DEFLATE_OK, "shared: 12 bits after: rc %d", rc);
    ngx_chat_deflate_shared_free(&ctx, &sh);

    CHECK(mem.live_blocks == blocks, "shared: %zu blocks left by free",
          mem.live_blocks - blocks);

    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "shared: %zu blocks leaked",
          mem.live_blocks);
}


/* a bad UTF-8 byte fails a compressed text message at its first frame */

static void
test_event_utf8(void)
{
    size_t                  clen, n;
    uint32_t                utf8;
    unsigned                code;
    z_stream                cz;
    const char             *reason;
    unsigned char          *pos;
    ngx_chat_ws_rc_e        rc;
    ngx_chat_ws_event_t     ev;
    ngx_chat_inflater_t     inf;
    ngx_chat_ws_parser_t    p;
    ngx_chat_deflate_buf_t  msg;
    ngx_chat_deflate_ctx_t  ctx;
    static unsigned char    stream[4096], comp[2048], text[1024];

    mem_reset();
    ctx_make(&ctx, 0);
    memset(&msg, 0, sizeof(msg));
    client_init(&cz, 6, 15);

    memset(text, 'a', sizeof(text));
    text[3] = 0xff;
    clen = client_deflate(&cz, text, sizeof(text), comp, sizeof(comp));

    /* the first frame only: the message's end never comes */
    n = client_frame(stream, NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT, comp,
                     clen);

    ngx_chat_ws_parser_init(&p, 16384);
    p.deflate = 1;
    ngx_chat_inflate_init(&inf, &params15);
    utf8 = NGX_CHAT_UTF8_ACCEPT;
    pos = stream;
    code = 0;
    reason = NULL;

    while ((rc = ngx_chat_ws_parse(&p, &pos, stream + n, &ev))
           == NGX_CHAT_WS_DATA)
    {
        code = ngx_chat_inflate_event(&ctx, &inf, &utf8, &ev, &msg, 16384,
                                      &reason);
        if (code) {
            break;
        }
    }

    CHECK(code == 1007 && reason != NULL && inf.stream == NULL
          && utf8 == NGX_CHAT_UTF8_ACCEPT,
          "event: bad UTF-8 in the first frame: %u (%s)", code,
          reason ? reason : "-");

    /* a limit passed is 1009, and says so */

    memset(text, 'a', sizeof(text));
    deflateReset(&cz);
    clen = client_deflate(&cz, text, sizeof(text), comp, sizeof(comp));
    n = client_frame(stream, 0x80 | NGX_CHAT_WS_RSV1 | NGX_CHAT_WS_OP_TEXT,
                     comp, clen);

    ngx_chat_ws_parser_init(&p, 1000);
    p.deflate = 1;
    pos = stream;
    code = 0;
    msg.len = 0;

    while ((rc = ngx_chat_ws_parse(&p, &pos, stream + n, &ev))
           == NGX_CHAT_WS_DATA)
    {
        code = ngx_chat_inflate_event(&ctx, &inf, &utf8, &ev, &msg, 1000,
                                      &reason);
        if (code) {
            break;
        }
    }

    CHECK(code == 1009 && msg.len == 1000 && inf.stream == NULL,
          "event: 1024 inflated bytes over 1000: %u, %zu", code, msg.len);

    deflateEnd(&cz);
    buf_free(&ctx, &msg);
    ngx_chat_deflate_ctx_cleanup(&ctx);
    CHECK(mem.live_blocks == 0, "event: %zu blocks leaked",
          mem.live_blocks);
}


int
main(void)
{
    test_negotiate();
    test_rfc_examples();
    test_round_trip_inflate();
    test_window_too_small();
    test_limits();
    test_tail_ends_block();
    test_bomb();
    test_corrupt();
    test_takeover();
    test_allocation();
    test_nomem();
    test_deflate();
    test_session();
    test_shared();
    test_event_utf8();

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
