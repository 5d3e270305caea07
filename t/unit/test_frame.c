
/*
 * Unit tests of the WebSocket frame codec and the UTF-8 validator
 * (ngx_chat_module/ngx_chat_frame.c).  Standalone: no framework.
 *
 *   cc -std=gnu11 -Wall -Wextra -Werror -I ngx_chat_module \
 *      t/unit/test_frame.c ngx_chat_module/ngx_chat_frame.c \
 *      ngx_chat_module/ngx_chat_jwt.c -ljansson -lcrypto
 */


#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_chat_frame.h"


#include "unit.h"


/* frame bits for the first header byte */
#define FIN    0x80
#define RSV1   0x40
#define RSV2   0x20
#define RSV3   0x10

#define TEXT   NGX_CHAT_WS_OP_TEXT
#define BIN    NGX_CHAT_WS_OP_BINARY
#define CONT   NGX_CHAT_WS_OP_CONT
#define CLOSE  NGX_CHAT_WS_OP_CLOSE
#define PING   NGX_CHAT_WS_OP_PING
#define PONG   NGX_CHAT_WS_OP_PONG


/* a small deterministic PRNG (xorshift64) */

static uint64_t  rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}


/* a growing byte buffer */

typedef struct {
    unsigned char  *p;
    size_t          len;
    size_t          cap;
} buf_t;


static void
buf_add(buf_t *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) {
            perror("realloc");
            exit(2);
        }
    }

    if (n) {
        memcpy(b->p + b->len, data, n);
    }

    b->len += n;
    b->p[b->len] = '\0';
}


static void
buf_printf(buf_t *b, const char *fmt, ...)
{
    int      n;
    char     tmp[64];
    va_list  ap;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);

    buf_add(b, tmp, (size_t) n);
}


static void
buf_esc(buf_t *b, const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '|' && p[i] != '\\') {
            buf_add(b, &p[i], 1);
        } else {
            buf_printf(b, "\\x%02x", p[i]);
        }
    }
}


static void
buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}


/* client frame builder: lenform 0 = minimal, else 7, 16 or 64 */

static const unsigned char  test_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

static size_t
frame_header(unsigned char *out, unsigned b0, int masked, uint64_t len,
    int lenform)
{
    size_t  n;
    int     k;

    if (lenform == 0) {
        lenform = len < 126 ? 7 : (len <= 0xffff ? 16 : 64);
    }

    out[0] = (unsigned char) b0;
    n = 2;

    if (lenform == 7) {
        out[1] = (unsigned char) len;

    } else if (lenform == 16) {
        out[1] = 126;
        out[2] = (unsigned char) (len >> 8);
        out[3] = (unsigned char) len;
        n = 4;

    } else {
        out[1] = 127;
        for (k = 0; k < 8; k++) {
            out[2 + k] = (unsigned char) (len >> (56 - 8 * k));
        }
        n = 10;
    }

    if (masked) {
        out[1] |= 0x80;
        memcpy(out + n, test_mask, 4);
        n += 4;
    }

    return n;
}


static void
add_frame_lf(buf_t *s, unsigned b0, const void *payload, size_t len,
    int lenform)
{
    size_t          i, n;
    unsigned char   hdr[14];
    unsigned char  *p;

    n = frame_header(hdr, b0, 1, len, lenform);
    buf_add(s, hdr, n);

    buf_add(s, payload, len);
    p = s->p + s->len - len;

    for (i = 0; i < len; i++) {
        p[i] ^= test_mask[i & 3];
    }
}


static void
add_frame(buf_t *s, unsigned b0, const void *payload, size_t len)
{
    add_frame_lf(s, b0, payload, len, 0);
}


static void
add_str(buf_t *s, unsigned b0, const char *str)
{
    add_frame(s, b0, str, strlen(str));
}


static void
add_close(buf_t *s, unsigned code, const void *reason, size_t len)
{
    unsigned char  pl[256];

    pl[0] = (unsigned char) (code >> 8);
    pl[1] = (unsigned char) code;
    memcpy(pl + 2, reason, len);

    add_frame(s, FIN | CLOSE, pl, len + 2);
}


/*
 * Runs the parser over the stream cut into chunks (each chunk in its own
 * malloc'ed buffer, so that reading past it is caught by the sanitizer)
 * and writes a readable transcript of the events:
 *
 *   "T:<text>|", "B:<binary>|", "ping:<p>|", "pong:<p>|",
 *   "close<code>:<reason>|", "E<code>|", and "open:<bytes>|" when the
 *   stream ends inside a message; a compressed message is "TZ:" or "BZ:".
 *
 * Chunking: mode 0 whole, 1 byte by byte, 2 cut at `arg`, 3 random sizes
 * up to `arg`.  Also checks the invariants of each event.  run_deflate
 * sets the parser's deflate flag (permessage-deflate negotiated).
 * run_fresh swaps in a new parser after every chunk that leaves the old
 * one idle, as a session that gives its parser back between reads does:
 * the transcript must not change.
 */

static int  invariant_failed;
static int  run_deflate;
static int  run_fresh;

static void
run(const unsigned char *stream, size_t n, uint64_t max, int mode,
    size_t arg, buf_t *tr)
{
    int                   stop;
    size_t                off, c;
    unsigned              msg_op, msg_z;
    buf_t                 msg;
    unsigned char        *chunk, *pos, *old;
    ngx_chat_ws_rc_e      rc;
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_parser_t  p;

    ngx_chat_ws_parser_init(&p, max);
    p.deflate = (uint8_t) run_deflate;

    memset(&msg, 0, sizeof(buf_t));
    buf_add(&msg, "", 0);
    msg_op = 0;
    msg_z = 0;
    stop = 0;
    off = 0;

    while (!stop && off < n) {

        switch (mode) {
        case 0:
            c = n;
            break;
        case 1:
            c = 1;
            break;
        case 2:
            c = (off < arg) ? arg - off : n - off;
            break;
        default:
            c = 1 + rnd() % arg;
        }

        if (c > n - off) {
            c = n - off;
        }

        chunk = malloc(c ? c : 1);
        memcpy(chunk, stream + off, c);
        off += c;

        pos = chunk;

        for ( ;; ) {
            old = pos;
            rc = ngx_chat_ws_parse(&p, &pos, chunk + c, &ev);

            if (pos < old || pos > chunk + c) {
                invariant_failed++;
                printf("  pos out of the chunk\n");
            }

            if (rc == NGX_CHAT_WS_AGAIN) {
                if (pos != chunk + c) {
                    invariant_failed++;
                    printf("  AGAIN with bytes left\n");
                }

                if (run_fresh && ngx_chat_ws_parser_idle(&p)) {
                    if (msg_op) {
                        invariant_failed++;
                        printf("  idle inside a message\n");
                    }

                    ngx_chat_ws_parser_init(&p, max);
                    p.deflate = (uint8_t) run_deflate;
                }

                break;
            }

            if (rc == NGX_CHAT_WS_ERROR) {
                buf_printf(tr, "E%u|", ev.close_code);
                if (ev.reason == NULL) {
                    invariant_failed++;
                    printf("  ERROR without a reason\n");
                }
                stop = 1;
                break;
            }

            if (rc == NGX_CHAT_WS_CONTROL) {
                if (ev.opcode == CLOSE) {
                    buf_printf(tr, "close%u:", ev.close_code);
                    if (ev.len >= 2) {
                        buf_esc(tr, ev.data + 2, ev.len - 2);
                    }

                } else {
                    buf_printf(tr, "%s:", ev.opcode == PING ? "ping"
                                          : ev.opcode == PONG ? "pong" : "?");
                    buf_esc(tr, ev.data, ev.len);
                }

                buf_add(tr, "|", 1);
                continue;
            }

            /* NGX_CHAT_WS_DATA: the chunk must be inside what was read */

            if (ev.len && (ev.data < old || ev.data + ev.len > pos)) {
                invariant_failed++;
                printf("  DATA outside the consumed bytes\n");
            }

            if ((ev.opcode != TEXT && ev.opcode != BIN)
                || (msg_op && ev.opcode != msg_op))
            {
                invariant_failed++;
                printf("  DATA with opcode %u\n", ev.opcode);
            }

            if ((ev.compressed && !run_deflate)
                || (msg_op && ev.compressed != msg_z))
            {
                invariant_failed++;
                printf("  DATA with compressed %u\n", ev.compressed);
            }

            msg_op = ev.opcode;
            msg_z = ev.compressed;
            buf_add(&msg, ev.data, ev.len);

            if (ev.last) {
                if (msg.len > (msg_z ? ngx_chat_ws_compressed_limit(max)
                                     : max))
                {
                    invariant_failed++;
                    printf("  message over the limit\n");
                }

                if (msg_op == TEXT && !msg_z
                    && !ngx_chat_utf8_valid(msg.p, msg.len))
                {
                    invariant_failed++;
                    printf("  text message not UTF-8\n");
                }

                buf_add(tr, msg_op == TEXT ? "T" : "B", 1);
                buf_add(tr, msg_z ? "Z:" : ":", msg_z ? 2 : 1);
                buf_esc(tr, msg.p, msg.len);
                buf_add(tr, "|", 1);
                msg.len = 0;
                msg_op = 0;
                msg_z = 0;
            }
        }

        free(chunk);
    }

    if (!stop && msg_op) {
        buf_add(tr, "open:", 5);
        buf_esc(tr, msg.p, msg.len);
        buf_add(tr, "|", 1);
    }

    buf_free(&msg);
}


/*
 * The whole stream at once, byte by byte, cut at every offset and in
 * random chunks must all give the same transcript: returns it (malloc'ed)
 * and counts one check.
 */

static char *
transcript(const char *name, const buf_t *s, uint64_t max, int splits)
{
    int     bad;
    size_t  k;
    buf_t   whole, other;

    memset(&whole, 0, sizeof(buf_t));
    buf_add(&whole, "", 0);
    invariant_failed = 0;

    run(s->p, s->len, max, 0, 0, &whole);

    bad = 0;

    for (k = 0; splits && k < s->len + 220 && !bad; k++) {
        memset(&other, 0, sizeof(buf_t));
        buf_add(&other, "", 0);

        if (k == 0) {
            run(s->p, s->len, max, 1, 0, &other);

        } else if (k <= s->len) {
            run(s->p, s->len, max, 2, k, &other);

        } else {
            run(s->p, s->len, max, 3, 1 + k % 37, &other);
        }

        if (strcmp((char *) whole.p, (char *) other.p) != 0) {
            printf("  %s: chunking %zu gives \"%.200s\" not \"%.200s\"\n",
                   name, k, (char *) other.p, (char *) whole.p);
            bad = 1;
        }

        buf_free(&other);
    }

    for (k = 1; splits && k <= 3 && !bad; k += 2) {
        memset(&other, 0, sizeof(buf_t));
        buf_add(&other, "", 0);

        run_fresh = 1;
        run(s->p, s->len, max, (int) k, 7, &other);
        run_fresh = 0;

        if (strcmp((char *) whole.p, (char *) other.p) != 0) {
            printf("  %s: fresh parsers between reads give \"%.200s\" "
                   "not \"%.200s\"\n", name, (char *) other.p,
                   (char *) whole.p);
            bad = 1;
        }

        buf_free(&other);
    }

    CHECK(!bad && invariant_failed == 0, "%s: chunkings disagree", name);

    return (char *) whole.p;
}


static void
expect(const char *name, const buf_t *s, uint64_t max, const char *want)
{
    char  *got;

    got = transcript(name, s, max, 1);

    CHECK(strcmp(got, want) == 0, "%s: got \"%.300s\" want \"%.300s\"",
          name, got, want);

    free(got);
}


/* builds a stream from one frame and expects a result */

static void
expect1(const char *name, unsigned b0, const char *payload, uint64_t max,
    const char *want)
{
    buf_t  s;

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, b0, payload);
    expect(name, &s, max, want);
    buf_free(&s);
}


static void
test_basic(void)
{
    buf_t     s;
    unsigned  op;
    char      name[64];

    expect1("text", FIN | TEXT, "Hello", 100, "T:Hello|");
    expect1("binary", FIN | BIN, "\x01\x02", 100, "B:\\x01\\x02|");
    expect1("ping", FIN | PING, "abc", 100, "ping:abc|");
    expect1("pong", FIN | PONG, "abc", 100, "pong:abc|");

    /* several frames back to back in one read */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | TEXT, "one");
    add_str(&s, FIN | PING, "");
    add_str(&s, FIN | TEXT, "two");
    add_str(&s, FIN | BIN, "3");
    add_close(&s, 1000, "bye", 3);
    expect("back to back", &s, 100, "T:one|ping:|T:two|B:3|close1000:bye|");
    buf_free(&s);

    /* the stream ends inside a frame: no event for the rest */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | TEXT, "Hello");
    s.len -= 2;
    expect("partial frame", &s, 100, "open:Hel|");
    buf_free(&s);

    /* unmasked client frame */

    memset(&s, 0, sizeof(buf_t));
    buf_add(&s, "\x81\x02hi", 4);
    expect("unmasked", &s, 100, "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    buf_add(&s, "\x89\x00", 2);
    expect("unmasked ping", &s, 100, "E1002|");
    buf_free(&s);

    expect1("rsv1", FIN | RSV1 | TEXT, "x", 100, "E1002|");
    expect1("rsv2", FIN | RSV2 | TEXT, "x", 100, "E1002|");
    expect1("rsv3", FIN | RSV3 | TEXT, "x", 100, "E1002|");
    expect1("rsv on ping", FIN | RSV1 | PING, "", 100, "E1002|");

    for (op = 3; op <= 15; op++) {
        if (op >= 8 && op <= 10) {
            continue;
        }

        snprintf(name, sizeof(name), "opcode %u", op);
        expect1(name, FIN | op, "x", 100, "E1002|");
    }
}


static void
test_control(void)
{
    char           want[140];
    buf_t          s;
    unsigned char  big[200];

    memset(big, 'p', sizeof(big));

    expect1("ping without FIN", PING, "x", 100, "E1002|");
    expect1("close without FIN", CLOSE, "", 100, "E1002|");
    expect1("pong without FIN", PONG, "", 100, "E1002|");

    memset(&s, 0, sizeof(buf_t));
    add_frame(&s, FIN | PING, big, 125);
    memcpy(want, "ping:", 5);
    memcpy(want + 5, big, 125);
    memcpy(want + 130, "|", 2);
    expect("ping 125", &s, 10, want);
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_frame(&s, FIN | PING, big, 126);
    expect("ping 126", &s, 1000, "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_frame_lf(&s, FIN | PONG, big, 5, 16);
    expect("pong in 16-bit length form", &s, 1000, "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_frame(&s, FIN | CLOSE, big, 126);
    expect("close 126", &s, 1000, "E1002|");
    buf_free(&s);
}


static void
test_fragments(void)
{
    buf_t  s;

    expect1("continuation first", FIN | CONT, "x", 100, "E1002|");
    expect1("continuation, not final, first", CONT, "x", 100, "E1002|");

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "Hel");
    add_str(&s, PING, "p");
    add_str(&s, FIN | CONT, "lo");
    expect("ping without FIN inside a message", &s, 100, "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "Hel");
    add_str(&s, FIN | PING, "p");
    add_str(&s, CONT, "l");
    add_str(&s, FIN | PONG, "q");
    add_str(&s, FIN | CONT, "o");
    add_str(&s, FIN | BIN, "b");
    expect("fragments with ping and pong between", &s, 100,
           "ping:p|pong:q|T:Hello|B:b|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, BIN, "ab");
    add_str(&s, CONT, "cd");
    add_str(&s, FIN | CONT, "ef");
    expect("binary in three fragments", &s, 100, "B:abcdef|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ab");
    add_str(&s, FIN | TEXT, "cd");
    expect("text inside a fragmented message", &s, 100, "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ab");
    add_str(&s, BIN, "cd");
    expect("binary inside a fragmented message", &s, 100, "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ab");
    add_str(&s, FIN | CONT, "cd");
    add_str(&s, FIN | CONT, "ef");
    expect("continuation after the message ended", &s, 100,
           "T:abcd|E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ab");
    add_close(&s, 1001, "", 0);
    expect("close inside a message", &s, 100, "close1001:|open:ab|");
    buf_free(&s);
}


static void
test_limits(void)
{
    buf_t          s;
    unsigned char  data[100];

    memset(data, 'a', sizeof(data));

    expect1("exactly the limit", FIN | TEXT, "0123456789", 10,
            "T:0123456789|");
    expect1("limit + 1", FIN | TEXT, "0123456789X", 10, "E1009|");
    expect1("binary limit + 1", FIN | BIN, "0123456789X", 10, "E1009|");
    expect1("limit 0, empty", FIN | TEXT, "", 0, "T:|");
    expect1("limit 0, one byte", FIN | TEXT, "x", 0, "E1009|");

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | TEXT, "0123456789");
    add_str(&s, FIN | TEXT, "abcdefghij");
    expect("two messages at the limit", &s, 10, "T:0123456789|T:abcdefghij|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "01234");
    add_str(&s, FIN | PING, "ping does not count");
    add_str(&s, FIN | CONT, "56789");
    expect("fragments at the limit", &s, 10,
           "ping:ping does not count|T:0123456789|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "01234");
    add_str(&s, CONT, "56789");
    add_str(&s, FIN | CONT, "X");
    expect("fragments at limit + 1", &s, 10, "E1009|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, BIN, "01234");
    add_str(&s, CONT, "");
    add_str(&s, FIN | CONT, "56789X");
    expect("binary fragments at limit + 1", &s, 10, "E1009|");
    buf_free(&s);

    /* a declared length far beyond the limit, 16 and 64-bit forms */

    memset(&s, 0, sizeof(buf_t));
    s.len = frame_header(data, FIN | TEXT, 1, 70000, 0);
    buf_add(&s, data, 0);
    memcpy(s.p, data, s.len);
    expect("64-bit length over the limit", &s, 65536, "E1009|");
    buf_free(&s);
}


static void
test_lengths(void)
{
    int            i;
    char          *got, *want;
    buf_t          s, w;
    unsigned char  data[70000], hdr[2];

    for (i = 0; i < (int) sizeof(data); i++) {
        data[i] = (unsigned char) ('a' + i % 26);
    }

    /* 125 in the 7-bit form, 126 and 65535 in 16 bits, 65536+ in 64 */

    memset(&s, 0, sizeof(buf_t));
    add_frame(&s, FIN | TEXT, data, 125);
    add_frame(&s, FIN | TEXT, data, 126);
    add_frame(&s, FIN | TEXT, data, 300);
    CHECK(s.len == (2 + 4 + 125) + (4 + 4 + 126) + (4 + 4 + 300),
          "header sizes: %zu", s.len);

    memset(&w, 0, sizeof(buf_t));
    buf_add(&w, "T:", 2);
    buf_add(&w, data, 125);
    buf_add(&w, "|T:", 3);
    buf_add(&w, data, 126);
    buf_add(&w, "|T:", 3);
    buf_add(&w, data, 300);
    buf_add(&w, "|", 1);
    expect("7 and 16-bit lengths", &s, 1000, (char *) w.p);
    buf_free(&s);
    buf_free(&w);

    /* big frames: no need to try every cut */

    memset(&s, 0, sizeof(buf_t));
    add_frame(&s, FIN | BIN, data, 65535);
    add_frame(&s, FIN | TEXT, data, 65536);
    add_frame(&s, FIN | BIN, data, 70000);
    CHECK(s.p[1] == (0x80 | 126) && s.p[4 + 4 + 65535 + 1] == (0x80 | 127),
          "length forms");

    memset(&w, 0, sizeof(buf_t));
    buf_add(&w, "B:", 2);
    buf_add(&w, data, 65535);
    buf_add(&w, "|T:", 3);
    buf_add(&w, data, 65536);
    buf_add(&w, "|B:", 3);
    buf_add(&w, data, 70000);
    buf_add(&w, "|", 1);

    got = transcript("16 and 64-bit lengths", &s, 70000, 0);
    want = (char *) w.p;
    CHECK(strcmp(got, want) == 0, "16 and 64-bit lengths differ");
    free(got);

    got = NULL;
    {
        buf_t  o;

        memset(&o, 0, sizeof(buf_t));
        buf_add(&o, "", 0);
        run(s.p, s.len, 70000, 1, 0, &o);
        CHECK(strcmp((char *) o.p, want) == 0, "byte by byte differs");
        buf_free(&o);

        memset(&o, 0, sizeof(buf_t));
        buf_add(&o, "", 0);
        run(s.p, s.len, 70000, 3, 5000, &o);
        CHECK(strcmp((char *) o.p, want) == 0, "random chunks differ");
        buf_free(&o);
    }

    buf_free(&s);
    buf_free(&w);

    /* non-minimal length encodings are accepted */

    memset(&s, 0, sizeof(buf_t));
    add_frame_lf(&s, FIN | TEXT, "abc", 3, 16);
    add_frame_lf(&s, FIN | TEXT, "defgh", 5, 64);
    add_frame_lf(&s, FIN | TEXT, "", 0, 64);
    expect("non-minimal lengths", &s, 100, "T:abc|T:defgh|T:|");
    buf_free(&s);

    /* 64-bit length with the top bit set, whatever the limit */

    memset(&s, 0, sizeof(buf_t));
    s.len = frame_header(data, FIN | BIN, 1, 0x8000000000000001ULL, 64);
    buf_add(&s, data, 0);
    memcpy(s.p, data, s.len);
    expect("64-bit top bit", &s, UINT64_MAX, "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    s.len = frame_header(data, FIN | BIN, 1, 0x7fffffffffffffffULL, 64);
    buf_add(&s, data, 0);
    memcpy(s.p, data, s.len);
    hdr[0] = 'x' ^ test_mask[0];
    hdr[1] = 'y' ^ test_mask[1];
    buf_add(&s, hdr, 2);
    expect("64-bit max length", &s, UINT64_MAX, "open:xy|");
    buf_free(&s);
}


static void
test_zero_length(void)
{
    buf_t  s;

    expect1("empty text", FIN | TEXT, "", 10, "T:|");
    expect1("empty binary", FIN | BIN, "", 10, "B:|");
    expect1("empty ping", FIN | PING, "", 10, "ping:|");

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ab");
    add_str(&s, FIN | CONT, "");
    expect("empty final fragment", &s, 10, "T:ab|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "");
    add_str(&s, CONT, "");
    add_str(&s, FIN | PING, "");
    add_str(&s, FIN | CONT, "x");
    expect("empty first fragments", &s, 10, "ping:|T:x|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "");
    add_str(&s, FIN | CONT, "");
    expect("empty fragmented message", &s, 10, "T:|");
    buf_free(&s);
}


static void
test_utf8_frames(void)
{
    buf_t  s;

    expect1("UTF-8 text", FIN | TEXT,
            "\x48\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf",
            100, "T:H\\xc3\\xa9\\xe2\\x82\\xac\\xf0\\x9f\\x98\\x80"
                 "\\xf4\\x8f\\xbf\\xbf|");

    expect1("bad byte FF", FIN | TEXT, "ab\xff", 100, "E1007|");
    expect1("bad byte F5", FIN | TEXT, "\xf5\x80\x80\x80", 100, "E1007|");
    expect1("overlong C0 80", FIN | TEXT, "\xc0\x80", 100, "E1007|");
    expect1("overlong E0 80 80", FIN | TEXT, "\xe0\x80\x80", 100, "E1007|");
    expect1("overlong F0 80 80 80", FIN | TEXT, "\xf0\x80\x80\x80", 100,
            "E1007|");
    expect1("surrogate", FIN | TEXT, "\xed\xa0\x80", 100, "E1007|");
    expect1("above U+10FFFF", FIN | TEXT, "\xf4\x90\x80\x80", 100,
            "E1007|");
    expect1("lone continuation", FIN | TEXT, "a\x80", 100, "E1007|");
    expect1("truncated at the end", FIN | TEXT, "a\xe2\x82", 100, "E1007|");
    expect1("binary is not checked", FIN | BIN, "\xff", 100, "B:\\xff|");

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "a\xe2");
    add_str(&s, FIN | PING, "");
    add_str(&s, CONT, "\x82");
    add_str(&s, FIN | CONT, "\xac" "b");
    expect("euro sign across three fragments", &s, 100,
           "ping:|T:a\\xe2\\x82\\xacb|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "\xf0");
    add_str(&s, CONT, "\x9f");
    add_str(&s, CONT, "");
    add_str(&s, CONT, "\x98");
    add_str(&s, FIN | CONT, "\x80");
    expect("4-byte character byte by fragment", &s, 100,
           "T:\\xf0\\x9f\\x98\\x80|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ok\xe2\x82");
    add_str(&s, FIN | CONT, "");
    expect("message ends inside a character", &s, 100, "E1007|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ok\xe2\x82");
    add_str(&s, FIN | CONT, "x");
    expect("bad continuation in the next fragment", &s, 100, "E1007|");
    buf_free(&s);

    /* a bad second message after a good one */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | TEXT, "\xe2\x82\xac");
    add_str(&s, FIN | TEXT, "\xed\xbf\xbf");
    expect("second message bad", &s, 100, "T:\\xe2\\x82\\xac|E1007|");
    buf_free(&s);

    /* the UTF-8 state is per message: binary between texts */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | BIN, "\xe2");
    add_str(&s, FIN | TEXT, "\x82");
    expect("UTF-8 state reset per message", &s, 100, "B:\\xe2|E1007|");
    buf_free(&s);
}


static void
test_close_frames(void)
{
    size_t      i;
    char        name[64], want[64];
    buf_t       s;
    unsigned    code;
    static const unsigned  good[] = {
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
        3000, 3999, 4000, 4001, 4999
    };
    static const unsigned  bad[] = {
        0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016,
        1100, 2000, 2999, 5000, 65535
    };

    expect1("close, empty", FIN | CLOSE, "", 100, "close1005:|");
    expect1("close, 1 byte", FIN | CLOSE, "\x03", 100, "E1002|");

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        code = good[i];
        memset(&s, 0, sizeof(buf_t));
        add_close(&s, code, "", 0);
        snprintf(name, sizeof(name), "close code %u", code);
        snprintf(want, sizeof(want), "close%u:|", code);
        expect(name, &s, 0, want);
        buf_free(&s);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        code = bad[i];
        memset(&s, 0, sizeof(buf_t));
        add_close(&s, code, "x", 1);
        snprintf(name, sizeof(name), "close code %u", code);
        expect(name, &s, 0, "E1002|");
        buf_free(&s);
    }

    memset(&s, 0, sizeof(buf_t));
    add_close(&s, 1000, "bye \xc3\xa9", 6);
    expect("close reason", &s, 0, "close1000:bye \\xc3\\xa9|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_close(&s, 1000, "bye \xc3", 5);
    expect("close reason truncated UTF-8", &s, 0, "E1007|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_close(&s, 1001, "\xff", 1);
    expect("close reason bad UTF-8", &s, 0, "E1007|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_close(&s, 1000, "\xed\xa0\x80", 3);
    expect("close reason surrogate", &s, 0, "E1007|");
    buf_free(&s);
}


/* idle: only between messages, with no frame begun and no error */

static void
test_idle(void)
{
    size_t                i;
    buf_t                 s;
    unsigned char        *pos, *end;
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_parser_t  p;

    ngx_chat_ws_parser_init(&p, 100);
    CHECK(ngx_chat_ws_parser_idle(&p), "a new parser is idle");

    /* a fragmented message with a ping inside it, fed byte by byte */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ab");
    add_str(&s, FIN | PING, "p");
    add_str(&s, FIN | CONT, "cd");
    add_str(&s, FIN | TEXT, "e");

    pos = s.p;

    for (i = 1; i <= s.len; i++) {
        end = s.p + i;

        while (ngx_chat_ws_parse(&p, &pos, end, &ev) != NGX_CHAT_WS_AGAIN) {
            /* events are checked elsewhere */
        }

        /* frames of 8, 7, 8 and 7 bytes: idle after the 3rd and the 4th */

        CHECK(ngx_chat_ws_parser_idle(&p) == (i == 23 || i == 30),
              "idle after %zu bytes: %d", i, ngx_chat_ws_parser_idle(&p));
    }

    buf_free(&s);

    /* an error is not idle, and stays so */

    memset(&s, 0, sizeof(buf_t));
    add_frame(&s, FIN | RSV2 | TEXT, "x", 1);
    pos = s.p;
    end = s.p + s.len;
    CHECK(ngx_chat_ws_parse(&p, &pos, end, &ev) == NGX_CHAT_WS_ERROR
          && !ngx_chat_ws_parser_idle(&p), "error: not idle");
    buf_free(&s);
}


/* direct checks of the event fields and the parser's promises */

static void
test_events(void)
{
    size_t                n;
    buf_t                 s;
    unsigned char         hdr[14], *pos, *end;
    ngx_chat_ws_rc_e      rc;
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_parser_t  p;

    ngx_chat_ws_parser_init(&p, 100);

    /* no input */

    pos = hdr;
    rc = ngx_chat_ws_parse(&p, &pos, hdr, &ev);
    CHECK(rc == NGX_CHAT_WS_AGAIN && pos == hdr, "empty input: %d", rc);

    /* the payload is unmasked in place, in the caller's buffer */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | TEXT, "Hello, world");
    pos = s.p;
    end = s.p + s.len;
    rc = ngx_chat_ws_parse(&p, &pos, end, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.data == s.p + 6 && ev.len == 12
          && memcmp(ev.data, "Hello, world", 12) == 0 && ev.last
          && ev.opcode == TEXT && pos == end,
          "in place: rc %d len %zu", rc, ev.len);
    rc = ngx_chat_ws_parse(&p, &pos, end, &ev);
    CHECK(rc == NGX_CHAT_WS_AGAIN && pos == end, "then AGAIN: %d", rc);
    buf_free(&s);

    /* chunks: not last until the end; the header alone gives nothing */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | BIN, "abcdef");
    pos = s.p;
    rc = ngx_chat_ws_parse(&p, &pos, s.p + 6, &ev);
    CHECK(rc == NGX_CHAT_WS_AGAIN && pos == s.p + 6, "header: %d", rc);
    rc = ngx_chat_ws_parse(&p, &pos, s.p + 8, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.len == 2 && !ev.last
          && ev.opcode == BIN && memcmp(ev.data, "ab", 2) == 0,
          "first chunk: rc %d len %zu last %u", rc, ev.len, ev.last);
    rc = ngx_chat_ws_parse(&p, &pos, s.p + 12, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.len == 4 && ev.last
          && memcmp(ev.data, "cdef", 4) == 0,
          "second chunk: rc %d len %zu last %u", rc, ev.len, ev.last);
    buf_free(&s);

    /* a zero-length final fragment: DATA, len 0, last, message opcode */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ab");
    add_str(&s, FIN | CONT, "");
    pos = s.p;
    end = s.p + s.len;
    rc = ngx_chat_ws_parse(&p, &pos, end, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.len == 2 && !ev.last,
          "fragment: rc %d", rc);
    rc = ngx_chat_ws_parse(&p, &pos, end, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.len == 0 && ev.last
          && ev.opcode == TEXT && pos == end,
          "empty final: rc %d len %zu last %u op %u",
          rc, ev.len, ev.last, ev.opcode);
    buf_free(&s);

    /* close: the code and the whole payload */

    memset(&s, 0, sizeof(buf_t));
    add_close(&s, 4001, "replaced", 8);
    pos = s.p;
    end = s.p + s.len;
    rc = ngx_chat_ws_parse(&p, &pos, end, &ev);
    CHECK(rc == NGX_CHAT_WS_CONTROL && ev.opcode == CLOSE
          && ev.close_code == 4001 && ev.len == 10
          && memcmp(ev.data + 2, "replaced", 8) == 0 && pos == end,
          "close event: rc %d code %u", rc, ev.close_code);
    buf_free(&s);

    /* 1009 as soon as the header is in, before any payload */

    ngx_chat_ws_parser_init(&p, 16384);
    n = frame_header(hdr, FIN | TEXT, 1, 16385, 0);
    pos = hdr;
    rc = ngx_chat_ws_parse(&p, &pos, hdr + n, &ev);
    CHECK(rc == NGX_CHAT_WS_ERROR && ev.close_code == 1009
          && pos == hdr + n && ev.reason != NULL,
          "1009 early: rc %d code %u", rc, ev.close_code);

    /* the error sticks */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | TEXT, "fine");
    pos = s.p;
    rc = ngx_chat_ws_parse(&p, &pos, s.p + s.len, &ev);
    CHECK(rc == NGX_CHAT_WS_ERROR && ev.close_code == 1009,
          "sticky: rc %d code %u", rc, ev.close_code);
    buf_free(&s);

    ngx_chat_ws_parser_init(&p, 16384);
    n = frame_header(hdr, FIN | TEXT, 1, 16384, 0);
    pos = hdr;
    rc = ngx_chat_ws_parse(&p, &pos, hdr + n, &ev);
    CHECK(rc == NGX_CHAT_WS_AGAIN && pos == hdr + n, "16384 header: %d", rc);

    /* invalid UTF-8 stops at once, the rest of the frame unseen */

    ngx_chat_ws_parser_init(&p, 1000);
    memset(&s, 0, sizeof(buf_t));
    add_frame(&s, FIN | TEXT,
              "ab\xc0\xaf-this part has not arrived yet-----------", 46);
    pos = s.p;
    rc = ngx_chat_ws_parse(&p, &pos, s.p + 6 + 4, &ev);
    CHECK(rc == NGX_CHAT_WS_ERROR && ev.close_code == 1007,
          "1007 early: rc %d code %u", rc, ev.close_code);
    buf_free(&s);

    /* max_message may change between messages */

    ngx_chat_ws_parser_init(&p, 3);
    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | TEXT, "abc");
    add_str(&s, FIN | TEXT, "abcd");
    pos = s.p;
    end = s.p + s.len;
    rc = ngx_chat_ws_parse(&p, &pos, end, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.last, "first: %d", rc);
    p.max_message = 4;
    rc = ngx_chat_ws_parse(&p, &pos, end, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.last && ev.len == 4,
          "raised limit: %d", rc);
    buf_free(&s);
}


/* a reference check of UTF-8, written differently: decode, then judge */

static int
ref_utf8(const unsigned char *s, size_t n)
{
    size_t    i, k, need;
    uint32_t  cp, min;

    for (i = 0; i < n; /* void */) {

        if (s[i] < 0x80) {
            i++;
            continue;
        }

        if ((s[i] & 0xe0) == 0xc0) {
            need = 1; cp = s[i] & 0x1f; min = 0x80;

        } else if ((s[i] & 0xf0) == 0xe0) {
            need = 2; cp = s[i] & 0x0f; min = 0x800;

        } else if ((s[i] & 0xf8) == 0xf0) {
            need = 3; cp = s[i] & 0x07; min = 0x10000;

        } else {
            return 0;
        }

        if (n - i <= need) {
            return 0;
        }

        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }

        i += need + 1;
    }

    return 1;
}


static size_t
encode_utf8(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) {
        o[0] = (unsigned char) cp;
        return 1;
    }

    if (cp < 0x800) {
        o[0] = (unsigned char) (0xc0 | (cp >> 6));
        o[1] = (unsigned char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        o[0] = (unsigned char) (0xe0 | (cp >> 12));
        o[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char) (0x80 | (cp & 0x3f));
        return 3;
    }

    o[0] = (unsigned char) (0xf0 | (cp >> 18));
    o[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char) (0x80 | (cp & 0x3f));
    return 4;
}


static void
test_utf8(void)
{
    int             ok, r;
    size_t          n, i, k, len;
    uint32_t        cp, st, a, b, c;
    unsigned char   s[64], big[4096];
    static const unsigned char  edges[] = {
        0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff
    };
    unsigned long   mism;

    /* every 1, 2 and 3-byte sequence against the reference */

    mism = 0;

    for (a = 0; a < 256; a++) {
        s[0] = (unsigned char) a;
        mism += ngx_chat_utf8_valid(s, 1) != ref_utf8(s, 1);

        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char) b;
            mism += ngx_chat_utf8_valid(s, 2) != ref_utf8(s, 2);

            for (c = 0; c < 256; c++) {
                s[2] = (unsigned char) c;
                mism += ngx_chat_utf8_valid(s, 3) != ref_utf8(s, 3);
            }
        }
    }

    CHECK(mism == 0, "%lu sequences of 1-3 bytes judged wrong", mism);

    /* 4-byte sequences: every lead and second byte, edge values after */

    mism = 0;

    for (a = 0xe0; a < 256; a++) {
        for (b = 0; b < 256; b++) {
            for (c = 0; c < sizeof(edges); c++) {
                for (k = 0; k < sizeof(edges); k++) {
                    s[0] = (unsigned char) a;
                    s[1] = (unsigned char) b;
                    s[2] = edges[c];
                    s[3] = edges[k];
                    mism += ngx_chat_utf8_valid(s, 4) != ref_utf8(s, 4);
                }
            }
        }
    }

    CHECK(mism == 0, "%lu sequences of 4 bytes judged wrong", mism);

    /* every code point, whole and fed one byte at a time */

    mism = 0;

    for (cp = 0; cp <= 0x10ffff; cp++) {
        n = encode_utf8(cp, s);
        ok = !(cp >= 0xd800 && cp <= 0xdfff);

        mism += ngx_chat_utf8_valid(s, n) != ok;

        st = NGX_CHAT_UTF8_ACCEPT;
        r = 0;

        for (i = 0; i < n && r == 0; i++) {
            r = ngx_chat_utf8_validate(&st, s + i, 1);
            if (ok && i + 1 < n && st == NGX_CHAT_UTF8_ACCEPT) {
                mism++;
            }
        }

        mism += (r == 0 && st == NGX_CHAT_UTF8_ACCEPT) != ok;
    }

    CHECK(mism == 0, "%lu code points judged wrong", mism);

    /* above U+10FFFF, and the 5 and 6-byte forms */

    CHECK(!ngx_chat_utf8_valid((const unsigned char *) "\xf4\x90\x80\x80",
                               4), "U+110000");
    CHECK(!ngx_chat_utf8_valid((const unsigned char *) "\xf8\x88\x80\x80\x80",
                               5), "5-byte form");
    CHECK(!ngx_chat_utf8_valid((const unsigned char *)
                               "\xfc\x84\x80\x80\x80\x80", 6), "6-byte form");
    CHECK(ngx_chat_utf8_valid((const unsigned char *) "", 0), "empty");

    /* a bad byte at every offset, past the ASCII fast path too */

    mism = 0;

    for (len = 1; len < 40; len++) {
        for (i = 0; i < len; i++) {
            memset(s, 'a', len);
            s[i] = 0x80;
            mism += ngx_chat_utf8_valid(s, len) != 0;

            st = NGX_CHAT_UTF8_ACCEPT;
            r = ngx_chat_utf8_validate(&st, s, len);
            mism += (r != -1 || st != NGX_CHAT_UTF8_REJECT);
        }
    }

    CHECK(mism == 0, "%lu misplaced bad bytes missed", mism);

    /* the reject state sticks */

    st = NGX_CHAT_UTF8_ACCEPT;
    r = ngx_chat_utf8_validate(&st, (const unsigned char *) "\xff", 1);
    r += ngx_chat_utf8_validate(&st, (const unsigned char *) "a", 1);
    CHECK(r == -2 && st == NGX_CHAT_UTF8_REJECT, "sticky reject: %d", r);

    /* random valid text, cut at every offset: same answer */

    len = 0;

    while (len < sizeof(big) - 4) {
        do {
            cp = (uint32_t) (rnd() % 4 == 0 ? rnd() % 0x80
                                            : rnd() % 0x110000);
        } while (cp >= 0xd800 && cp <= 0xdfff);

        len += encode_utf8(cp, big + len);
    }

    CHECK(ngx_chat_utf8_valid(big, len), "random text");

    mism = 0;

    for (i = 0; i <= len; i++) {
        st = NGX_CHAT_UTF8_ACCEPT;
        r = ngx_chat_utf8_validate(&st, big, i);
        r += ngx_chat_utf8_validate(&st, big + i, len - i);
        mism += (r != 0 || st != NGX_CHAT_UTF8_ACCEPT);
    }

    CHECK(mism == 0, "%lu cuts of valid text rejected", mism);
}


static void
test_encoder(void)
{
    size_t         n, i;
    char           reason[300];
    unsigned char  b[NGX_CHAT_WS_MAX_CONTROL + 16];

    n = ngx_chat_ws_frame_header(b, TEXT, 0);
    CHECK(n == 2 && b[0] == 0x81 && b[1] == 0, "len 0");

    n = ngx_chat_ws_frame_header(b, BIN, 125);
    CHECK(n == 2 && b[0] == 0x82 && b[1] == 125, "len 125");

    n = ngx_chat_ws_frame_header(b, TEXT, 126);
    CHECK(n == 4 && b[1] == 126 && b[2] == 0 && b[3] == 126, "len 126");

    n = ngx_chat_ws_frame_header(b, TEXT, 65535);
    CHECK(n == 4 && b[1] == 126 && b[2] == 0xff && b[3] == 0xff,
          "len 65535");

    n = ngx_chat_ws_frame_header(b, TEXT, 65536);
    CHECK(n == 10 && b[1] == 127
          && memcmp(b + 2, "\0\0\0\0\0\x01\0\0", 8) == 0, "len 65536");

    n = ngx_chat_ws_frame_header(b, PING, 0x0102030405060708ULL);
    CHECK(n == 10 && b[0] == 0x89 && b[1] == 127
          && memcmp(b + 2, "\x01\x02\x03\x04\x05\x06\x07\x08", 8) == 0,
          "len 64-bit");

    n = ngx_chat_ws_frame_header(b, CLOSE, 2);
    CHECK(n == 2 && b[0] == 0x88 && b[1] == 2, "close header");

    n = ngx_chat_ws_close_payload(b, 0, "ignored");
    CHECK(n == 0, "no code: %zu", n);

    n = ngx_chat_ws_close_payload(b, 1000, NULL);
    CHECK(n == 2 && b[0] == 0x03 && b[1] == 0xe8, "code only: %zu", n);

    n = ngx_chat_ws_close_payload(b, 4009, "too slow");
    CHECK(n == 10 && b[0] == 0x0f && b[1] == 0xa9
          && memcmp(b + 2, "too slow", 8) == 0, "code and reason: %zu", n);

    memset(reason, 'r', sizeof(reason));
    reason[sizeof(reason) - 1] = '\0';
    memset(b, 0xee, sizeof(b));
    n = ngx_chat_ws_close_payload(b, 1011, reason);
    CHECK(n == 125 && b[124] == 'r' && b[125] == 0xee, "long reason: %zu", n);

    /* "é" is 2 bytes: 123 would cut one, so 122 */

    for (i = 0; i + 2 < sizeof(reason); i += 2) {
        reason[i] = (char) 0xc3;
        reason[i + 1] = (char) 0xa9;
    }
    reason[i] = '\0';

    n = ngx_chat_ws_close_payload(b, 1000, reason);
    CHECK(n == 124 && ngx_chat_utf8_valid(b + 2, n - 2),
          "long UTF-8 reason: %zu", n);

    CHECK(ngx_chat_ws_close_code_valid(1000)
          && !ngx_chat_ws_close_code_valid(1005)
          && ngx_chat_ws_close_code_valid(4999)
          && !ngx_chat_ws_close_code_valid(5000), "close_code_valid");
}


/*
 * Random streams: valid frames, then mutated bytes.  No crash, the
 * invariants hold, and every chunking gives the same transcript.
 */

static void
test_random(void)
{
    int            iter, f, nframes, bad, total;
    char          *t1;
    size_t         len, i, nmut;
    buf_t          s, other;
    unsigned       b0, ops[] = { TEXT, BIN, PING, PONG, CLOSE };
    unsigned char  pl[300];

    bad = 0;
    total = 0;

    for (iter = 0; iter < 3000; iter++) {
        memset(&s, 0, sizeof(buf_t));
        buf_add(&s, "", 0);

        nframes = 1 + (int) (rnd() % 6);

        for (f = 0; f < nframes; f++) {
            b0 = ops[rnd() % 5];
            len = (b0 >= CLOSE) ? rnd() % 20 : rnd() % 300;

            for (i = 0; i < len; i++) {
                pl[i] = (unsigned char) (rnd() % 3 ? 'a' + rnd() % 26
                                                   : rnd());
            }

            if (b0 == CLOSE && len >= 2) {
                pl[0] = 0x03;
                pl[1] = 0xe8;
            }

            if (b0 < CLOSE && rnd() % 3 == 0) {
                add_frame(&s, b0, pl, len / 2);
                add_frame(&s, FIN | CONT, pl + len / 2, len - len / 2);

            } else {
                add_frame(&s, FIN | b0, pl, len);
            }
        }

        nmut = (iter % 4 == 0) ? 0 : rnd() % 4;

        for (i = 0; i < nmut; i++) {
            s.p[rnd() % s.len] ^= (unsigned char) (1u << (rnd() % 8));
        }

        invariant_failed = 0;

        memset(&other, 0, sizeof(buf_t));
        buf_add(&other, "", 0);
        run(s.p, s.len, 200, 0, 0, &other);
        t1 = (char *) other.p;

        for (f = 0; f < 3; f++) {
            memset(&other, 0, sizeof(buf_t));
            buf_add(&other, "", 0);

            if (f == 0) {
                run(s.p, s.len, 200, 1, 0, &other);
            } else {
                run(s.p, s.len, 200, 3, 1 + rnd() % 64, &other);
            }

            total++;

            if (strcmp(t1, (char *) other.p) != 0 || invariant_failed) {
                if (bad++ < 3) {
                    printf("  random %d: \"%.200s\" vs \"%.200s\"\n",
                           iter, t1, (char *) other.p);
                }
            }

            buf_free(&other);
        }

        free(t1);
        buf_free(&s);
    }

    CHECK(bad == 0, "%d of %d random streams disagree", bad, total);

    /* pure garbage */

    for (iter = 0; iter < 2000; iter++) {
        memset(&s, 0, sizeof(buf_t));
        len = rnd() % 64;

        for (i = 0; i < len; i++) {
            pl[i] = (unsigned char) rnd();
        }

        buf_add(&s, pl, len);
        memset(&other, 0, sizeof(buf_t));
        buf_add(&other, "", 0);
        run(s.p, s.len, rnd() % 100, 3, 1 + rnd() % 8, &other);
        buf_free(&other);
        buf_free(&s);
    }

    CHECK(invariant_failed == 0, "garbage broke an invariant");
}


/*
 * permessage-deflate negotiated: RSV1 on the first frame of a data message
 * marks it compressed, nowhere else; RSV2 and RSV3 stay errors, and the
 * compressed bytes are not UTF-8 to the parser.
 */

static void
test_rsv1(void)
{
    size_t                 n;
    buf_t                  s;
    uint64_t               lim;
    unsigned char          hdr[14], *pos;
    ngx_chat_ws_rc_e       rc;
    ngx_chat_ws_event_t    ev;
    ngx_chat_ws_parser_t   p;

    run_deflate = 1;

    expect1("deflate: rsv1 text", FIN | RSV1 | TEXT, "x", 100, "TZ:x|");
    expect1("deflate: rsv1 binary", FIN | RSV1 | BIN, "\x01", 100,
            "BZ:\\x01|");
    expect1("deflate: plain text", FIN | TEXT, "x", 100, "T:x|");
    expect1("deflate: rsv2", FIN | RSV2 | TEXT, "x", 100, "E1002|");
    expect1("deflate: rsv3", FIN | RSV3 | BIN, "x", 100, "E1002|");
    expect1("deflate: rsv1 + rsv2", FIN | RSV1 | RSV2 | TEXT, "x", 100,
            "E1002|");
    expect1("deflate: rsv1 on ping", FIN | RSV1 | PING, "", 100, "E1002|");
    expect1("deflate: rsv1 on pong", FIN | RSV1 | PONG, "p", 100, "E1002|");
    expect1("deflate: rsv1 on close", FIN | RSV1 | CLOSE, "", 100,
            "E1002|");
    expect1("deflate: rsv1 on a continuation first", FIN | RSV1 | CONT, "x",
            100, "E1002|");

    /* the compressed bytes are not text: no UTF-8 check, any cut */

    expect1("deflate: non-UTF-8 compressed text", FIN | RSV1 | TEXT,
            "\xf2\x48\xcd\xc9\xc9\x07", 100,
            "TZ:\\xf2H\\xcd\\xc9\\xc9\\x07|");
    expect1("deflate: compressed text ends inside a character",
            FIN | RSV1 | TEXT, "ab\xc3", 100, "TZ:ab\\xc3|");
    expect1("deflate: bad UTF-8 in plain text still 1007", FIN | TEXT,
            "ab\xff", 100, "E1007|");

    /* fragments: RSV1 on the first only, the flag on every chunk */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, RSV1 | TEXT, "\xff\xfe");
    add_str(&s, FIN | PING, "p");
    add_str(&s, CONT, "");
    add_str(&s, FIN | CONT, "\xc0");
    add_str(&s, FIN | TEXT, "plain");
    add_str(&s, RSV1 | BIN, "a");
    add_str(&s, FIN | CONT, "b");
    expect("deflate: fragmented compressed messages", &s, 100,
           "ping:p|TZ:\\xff\\xfe\\xc0|T:plain|BZ:ab|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, RSV1 | TEXT, "ab");
    add_str(&s, FIN | RSV1 | CONT, "cd");
    expect("deflate: rsv1 on a continuation", &s, 100, "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "ab");
    add_str(&s, FIN | RSV1 | CONT, "cd");
    expect("deflate: rsv1 on the continuation of a plain message", &s, 100,
           "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, RSV1 | TEXT, "ab");
    add_str(&s, FIN | RSV1 | PING, "");
    expect("deflate: rsv1 on a ping inside a compressed message", &s, 100,
           "E1002|");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | RSV1 | TEXT, "");
    add_str(&s, RSV1 | BIN, "");
    add_str(&s, FIN | CONT, "");
    expect("deflate: empty compressed messages", &s, 100, "TZ:|BZ:|");
    buf_free(&s);

    /* the plain message after a compressed one is UTF-8 checked again */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, FIN | RSV1 | TEXT, "\xff");
    add_str(&s, FIN | TEXT, "\xff");
    expect("deflate: plain after compressed", &s, 100, "TZ:\\xff|E1007|");
    buf_free(&s);

    run_deflate = 0;

    /* the wire limit of a compressed message has DEFLATE's slack */

    CHECK(ngx_chat_ws_compressed_limit(0) == 64, "slack of 0");
    CHECK(ngx_chat_ws_compressed_limit(16384) == 16384 + 1024 + 64,
          "slack of 16384: %llu",
          (unsigned long long) ngx_chat_ws_compressed_limit(16384));
    CHECK(ngx_chat_ws_compressed_limit(UINT64_MAX) == UINT64_MAX,
          "slack saturates");
    CHECK(ngx_chat_ws_compressed_limit(UINT64_MAX - 70) == UINT64_MAX,
          "slack saturates near the top");

    lim = ngx_chat_ws_compressed_limit(100);

    ngx_chat_ws_parser_init(&p, 100);
    p.deflate = 1;
    n = frame_header(hdr, FIN | RSV1 | TEXT, 1, lim, 0);
    pos = hdr;
    rc = ngx_chat_ws_parse(&p, &pos, hdr + n, &ev);
    CHECK(rc == NGX_CHAT_WS_AGAIN, "compressed at the wire limit: %d", rc);

    ngx_chat_ws_parser_init(&p, 100);
    p.deflate = 1;
    n = frame_header(hdr, FIN | RSV1 | TEXT, 1, lim + 1, 0);
    pos = hdr;
    rc = ngx_chat_ws_parse(&p, &pos, hdr + n, &ev);
    CHECK(rc == NGX_CHAT_WS_ERROR && ev.close_code == 1009,
          "compressed over the wire limit: %d", rc);

    ngx_chat_ws_parser_init(&p, 100);
    p.deflate = 1;
    n = frame_header(hdr, FIN | TEXT, 1, 101, 0);
    pos = hdr;
    rc = ngx_chat_ws_parse(&p, &pos, hdr + n, &ev);
    CHECK(rc == NGX_CHAT_WS_ERROR && ev.close_code == 1009,
          "plain over the limit with deflate on: %d", rc);

    /* the event: compressed on every chunk, reset for the next message */

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, RSV1 | TEXT, "ab");
    add_str(&s, FIN | CONT, "c");
    add_str(&s, FIN | TEXT, "d");

    ngx_chat_ws_parser_init(&p, 100);
    p.deflate = 1;
    pos = s.p;
    rc = ngx_chat_ws_parse(&p, &pos, s.p + s.len, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.compressed && !ev.last
          && ev.len == 2, "first chunk: %d %u", rc, ev.compressed);
    rc = ngx_chat_ws_parse(&p, &pos, s.p + s.len, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && ev.compressed && ev.last
          && ev.len == 1, "last chunk: %d %u", rc, ev.compressed);
    rc = ngx_chat_ws_parse(&p, &pos, s.p + s.len, &ev);
    CHECK(rc == NGX_CHAT_WS_DATA && !ev.compressed && ev.last
          && ev.len == 1, "plain message: %d %u", rc, ev.compressed);
    buf_free(&s);

    /* compressed server headers */

    n = ngx_chat_ws_frame_header(hdr, NGX_CHAT_WS_RSV1 | TEXT, 5);
    CHECK(n == 2 && hdr[0] == 0xc1 && hdr[1] == 5, "rsv1 header");
    n = ngx_chat_ws_frame_header(hdr, NGX_CHAT_WS_RSV1 | BIN, 300);
    CHECK(n == 4 && hdr[0] == 0xc2 && hdr[1] == 126, "rsv1 header 16");
    n = ngx_chat_ws_frame_header(hdr, 0x30 | TEXT, 5);
    CHECK(n == 2 && hdr[0] == 0x81, "rsv2, rsv3 never written");
}


/* the last event of a stream, fed whole, with a fragment limit */

static unsigned
frames_limited(const buf_t *s, uint32_t max_frames, unsigned *data_events)
{
    unsigned char         *copy, *pos;
    ngx_chat_ws_rc_e       rc;
    ngx_chat_ws_event_t    ev;
    ngx_chat_ws_parser_t   p;

    copy = malloc(s->len);
    memcpy(copy, s->p, s->len);
    pos = copy;

    ngx_chat_ws_parser_init(&p, 1000);
    p.max_frames = max_frames;
    *data_events = 0;

    do {
        rc = ngx_chat_ws_parse(&p, &pos, copy + s->len, &ev);
        *data_events += (rc == NGX_CHAT_WS_DATA && ev.last);
    } while (rc != NGX_CHAT_WS_AGAIN && rc != NGX_CHAT_WS_ERROR);

    free(copy);

    return rc == NGX_CHAT_WS_ERROR ? ev.close_code : 0;
}


static void
test_max_frames(void)
{
    buf_t     s;
    unsigned  messages;

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "a");
    add_str(&s, CONT, "");
    add_str(&s, FIN | CONT, "b");
    add_str(&s, FIN | TEXT, "c");
    CHECK(frames_limited(&s, 3, &messages) == 0 && messages == 2,
          "3 fragments pass a limit of 3, and the count starts again");
    buf_free(&s);

    memset(&s, 0, sizeof(buf_t));
    add_str(&s, TEXT, "a");
    add_str(&s, CONT, "");
    add_str(&s, FIN | PING, "p");
    add_str(&s, CONT, "");
    add_str(&s, FIN | CONT, "b");
    CHECK(frames_limited(&s, 3, &messages) == 1009 && messages == 0,
          "a 4th fragment (empty ones count, pings do not) closes 1009");
    CHECK(frames_limited(&s, 0, &messages) == 0 && messages == 1,
          "0 is no limit");
    buf_free(&s);
}


int
main(void)
{
    test_basic();
    test_control();
    test_fragments();
    test_limits();
    test_lengths();
    test_zero_length();
    test_utf8_frames();
    test_close_frames();
    test_events();
    test_idle();
    test_utf8();
    test_max_frames();
    test_rsv1();
    test_encoder();
    test_random();

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
