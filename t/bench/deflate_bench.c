
/*
 * deflate_bench: what permessage-deflate (ngx_chat_deflate.c) buys and
 * costs on chat traffic.  Bytes before and after for typical server
 * frames (a message with a 100-byte body, one with a 1 KB body, a sync of
 * 50 message frames, a history answer of 50 messages in one frame), at
 * several levels and windows, and the CPU time of one deflate of a
 * ~300-byte message frame (and of the history frame) and one inflate.
 * Not a test: it prints figures (make bench-deflate).  Timings are the
 * best of 5 rounds, as the machine may be busy.
 *
 *   deflate_bench [iterations]     (default 20000 per round)
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_chat_frame.h"
#include "ngx_chat_deflate.h"


static uint64_t  rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}


static void *
b_alloc(void *data, size_t size)
{
    (void) data;
    return malloc(size);
}


static void
b_free(void *data, void *p)
{
    (void) data;
    free(p);
}


/*
 * A message frame as chat_worker writes it (PROTOCOL.md's field order),
 * with an English-like body of about body bytes.
 */

static size_t
message_frame(char *out, size_t size, unsigned i, size_t body)
{
    int          n;
    char         text[2048];
    size_t       k;
    const char  *w;

    static const char  *words[] = {
        "hello", "the", "meeting", "is", "at", "noon", "see", "you",
        "there", "thanks", "ok", "tomorrow", "lunch", "great", "sure",
        "I", "will", "send", "it", "later", "can", "we", "move", "to",
        "friday", "sounds", "good", "what", "about", "project", "update",
        "deadline", "coffee", "?", "!", "yes", "no", "maybe", "call", "me"
    };

    for (k = 0; k + 12 < body && k + 12 < sizeof(text); k += (size_t) n) {
        w = words[rnd() % (sizeof(words) / sizeof(words[0]))];
        n = snprintf(text + k, sizeof(text) - k, "%s ", w);
    }

    text[k] = '\0';

    n = snprintf(out, size,
                 "{\"type\":\"message\",\"message_id\":\"%llu\","
                 "\"conversation_id\":\"c%llx\",\"seq\":%u,"
                 "\"sender_id\":\"user%05u\",\"client_msg_id\":"
                 "\"%08x-%04x-4%03x-a%03x-%08x%04x\",\"kind\":\"text\","
                 "\"body\":\"%s\",\"server_ts\":%llu}",
                 (unsigned long long) (7000000000000ULL + i * 7919),
                 (unsigned long long) (0x5a17000000ULL + rnd() % 4096),
                 100 + i, (unsigned) (rnd() % 50000),
                 (unsigned) rnd(), (unsigned) (rnd() & 0xffff),
                 (unsigned) (rnd() & 0xfff), (unsigned) (rnd() & 0xfff),
                 (unsigned) rnd(), (unsigned) (rnd() & 0xffff), text,
                 (unsigned long long) (1718000000000ULL + i * 137));

    return (size_t) n;
}


/* a history answer: count message objects in one frame */

static size_t
history_frame(char *out, size_t size, unsigned count)
{
    size_t    k;
    unsigned  i;

    k = (size_t) snprintf(out, size, "{\"type\":\"history\",\"req_id\":"
                          "\"r17\",\"conversation_id\":\"c5a17000be4\","
                          "\"messages\":[");

    for (i = 0; i < count && k + 600 < size; i++) {
        if (i) {
            out[k++] = ',';
        }

        /* each a message frame's object */
        k += message_frame(out + k, size - k, i, 100);
    }

    k += (size_t) snprintf(out + k, size - k, "],\"has_more\":true}");

    return k;
}


static double
cpu_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);

    return ts.tv_sec * 1e9 + ts.tv_nsec;
}


/* a frame kind of the size table: fills msg, returns its length */

typedef size_t (*frame_pt)(char *msg, size_t size, unsigned i);


static size_t
frame_100(char *msg, size_t size, unsigned i)
{
    return message_frame(msg, size, i, 100);
}


static size_t
frame_1k(char *msg, size_t size, unsigned i)
{
    return message_frame(msg, size, i, 1024);
}


static size_t
frame_history(char *msg, size_t size, unsigned i)
{
    (void) i;
    return history_frame(msg, size, 50);
}


static void
ctx_make(ngx_chat_deflate_ctx_t *ctx, int level, int mem_level)
{
    ngx_chat_deflate_conf_t  conf;

    ngx_chat_deflate_conf_init(&conf);
    conf.level = level;
    conf.mem_level = mem_level;
    conf.min_size = 0;

    if (ngx_chat_deflate_ctx_init(ctx, &conf, b_alloc, b_free, NULL) != 0) {
        exit(2);
    }
}


/* wire bytes (headers included) of count frames, plain and compressed */

static void
sizes(const char *name, frame_pt make, unsigned count, int level,
    unsigned bits)
{
    size_t                   len, flen, plain, comp;
    unsigned                 i;
    unsigned char           *frame;
    ngx_chat_deflate_ctx_t   ctx;
    static char              msg[65536];
    static unsigned char     out[NGX_CHAT_DEFLATE_FRAME_SIZE(65536)];

    ctx_make(&ctx, level, 8);

    rng_state = 0x9e3779b97f4a7c15ULL;
    plain = comp = 0;

    for (i = 0; i < count; i++) {
        len = make(msg, sizeof(msg), i);
        plain += len + (len < 126 ? 2 : len < 65536 ? 4 : 10);

        if (ngx_chat_deflate_frame(&ctx, bits, NGX_CHAT_WS_OP_TEXT,
                                   (unsigned char *) msg, len, out,
                                   sizeof(out), &frame, &flen)
            == NGX_CHAT_DEFLATE_OK)
        {
            comp += flen;

        } else {
            comp += len + (len < 126 ? 2 : len < 65536 ? 4 : 10);
        }
    }

    printf("  %-30s level %d, %2u bits: %8zu -> %7zu bytes  %5.1f%%\n",
           name, level, bits, plain, comp, 100.0 * comp / plain);

    ngx_chat_deflate_ctx_cleanup(&ctx);
}


/* the best of 5 rounds of n deflates of msg: CPU ns per call */

static double
time_deflate(ngx_chat_deflate_ctx_t *ctx, unsigned bits,
    const char *msg, size_t len, long n, size_t *flen)
{
    int                    r;
    long                   k;
    double                 t0, t, best;
    unsigned char         *frame;
    static unsigned char   out[NGX_CHAT_DEFLATE_FRAME_SIZE(65536)];

    best = 1e300;

    for (r = 0; r < 5; r++) {
        t0 = cpu_ns();

        for (k = 0; k < n; k++) {
            (void) ngx_chat_deflate_frame(ctx, bits, NGX_CHAT_WS_OP_TEXT,
                                          (const unsigned char *) msg, len,
                                          out, sizeof(out), &frame, flen);
        }

        t = (cpu_ns() - t0) / n;

        if (t < best) {
            best = t;
        }
    }

    return best;
}


static double
time_inflate(ngx_chat_deflate_ctx_t *ctx, const unsigned char *payload,
    size_t plen, long n, size_t *out_len)
{
    int                        r;
    long                       k;
    double                     t0, t, best;
    ngx_chat_inflater_t        inf;
    ngx_chat_deflate_buf_t     ib;
    ngx_chat_deflate_params_t  params = { 15, 15, 0 };

    ngx_chat_inflate_init(&inf, &params);
    memset(&ib, 0, sizeof(ib));
    best = 1e300;

    for (r = 0; r < 5; r++) {
        t0 = cpu_ns();

        for (k = 0; k < n; k++) {
            ib.len = 0;
            (void) ngx_chat_inflate(ctx, &inf, payload, plen, 1, &ib, 65536);
        }

        t = (cpu_ns() - t0) / n;

        if (t < best) {
            best = t;
        }
    }

    *out_len = ib.len;
    free(ib.data);

    return best;
}


int
main(int argc, char **argv)
{
    int                      li, ml;
    long                     iters;
    size_t                   len, hlen, flen, outl;
    double                   t;
    unsigned                 bits;
    unsigned char           *frame;
    ngx_chat_deflate_ctx_t   ctx;
    static char              msg[65536], hist[65536];
    static unsigned char     out[NGX_CHAT_DEFLATE_FRAME_SIZE(65536)];
    static const int         levels[] = { 1, 6, 9 };

    iters = argc > 1 ? atol(argv[1]) : 20000;
    if (iters < 10) {
        iters = 10;
    }

    rng_state = 0x9e3779b97f4a7c15ULL;
    len = message_frame(msg, sizeof(msg), 0, 100);
    printf("a message frame with a 100-byte body, %zu bytes:\n  %s\n\n",
           len, msg);

    printf("wire bytes, frame headers included; every frame compressed on "
           "its own\n(server_no_context_takeover), memLevel 8:\n");

    for (li = 0; li < 3; li++) {
        sizes("message, 100-byte body, x1000", frame_100, 1000, levels[li],
              15);
    }

    sizes("message, 100-byte body, x1000", frame_100, 1000, 1, 9);

    for (li = 0; li < 3; li++) {
        sizes("message, 1 KB body, x1000", frame_1k, 1000, levels[li], 15);
    }

    sizes("message, 1 KB body, x1000", frame_1k, 1000, 1, 9);
    sizes("sync: 50 message frames", frame_100, 50, 1, 15);
    sizes("sync: 50 message frames", frame_100, 50, 6, 15);
    sizes("history: 50 messages, 1 frame", frame_history, 1, 1, 15);
    sizes("history: 50 messages, 1 frame", frame_history, 1, 6, 15);
    sizes("history: 50 messages, 1 frame", frame_history, 1, 1, 9);

    rng_state = 0x9e3779b97f4a7c15ULL;
    len = message_frame(msg, sizeof(msg), 0, 100);
    rng_state = 0x9e3779b97f4a7c15ULL;
    hlen = history_frame(hist, sizeof(hist), 50);

    printf("\nCPU per call (best of 5 rounds of %ld):\n", iters);

    for (li = 0; li < 2; li++) {
        for (ml = 8; ml >= 4; ml -= 4) {
            for (bits = 15; bits >= 9; bits -= 6) {
                ctx_make(&ctx, levels[li], ml);

                t = time_deflate(&ctx, bits, msg, len, iters, &flen);
                printf("  deflate %zu-byte frame, level %d, memLevel %d, "
                       "%2u bits: %6.0f ns -> %zu bytes\n", len, levels[li],
                       ml, bits, t, flen);

                if (bits == 15) {
                    t = time_deflate(&ctx, bits, hist, hlen, iters / 50 + 1,
                                     &flen);
                    printf("  deflate %zu-byte history, level %d, memLevel "
                           "%d, %2u bits: %6.0f ns -> %zu bytes\n", hlen,
                           levels[li], ml, bits, t, flen);
                }

                ngx_chat_deflate_ctx_cleanup(&ctx);
            }
        }
    }

    /* inflate of the same frame, as if a client had sent it */

    ctx_make(&ctx, 1, 8);

    (void) ngx_chat_deflate_frame(&ctx, 15, NGX_CHAT_WS_OP_TEXT,
                                  (unsigned char *) msg, len, out,
                                  sizeof(out), &frame, &flen);

    hlen = (frame[1] & 0x7f) == 126 ? 4 : 2;

    t = time_inflate(&ctx, frame + hlen, flen - hlen, iters, &outl);
    printf("  inflate %zu -> %zu bytes, 15 bits, stream from the idle "
           "list: %6.0f ns\n", flen - hlen, outl, t);

    ctx.idle_max = 0;
    t = time_inflate(&ctx, frame + hlen, flen - hlen, iters, &outl);
    printf("  inflate %zu -> %zu bytes, 15 bits, stream allocated and "
           "freed: %6.0f ns\n", flen - hlen, outl, t);

    ngx_chat_deflate_ctx_cleanup(&ctx);

    return 0;
}
