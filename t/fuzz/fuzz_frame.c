
/*
 * libFuzzer target: the WebSocket frame decoder (ngx_chat_ws_parse).
 *
 * Input layout:
 *
 *   byte 0      max_message selector (see max_message_of())
 *   byte 1      k = byte & 15: how many chunk size bytes follow;
 *               byte & 16: permessage-deflate negotiated (RSV1 allowed)
 *   k bytes     chunk sizes, used in turn (0 is allowed: an empty read);
 *               k == 0 feeds the stream one byte at a time
 *   the rest    the client byte stream
 *
 * The stream is decoded twice: whole (one buffer) and in chunks, each
 * chunk in a malloc()ed buffer of its exact size so that ASan sees any
 * read or write past it.  Both runs must give the same events once data
 * chunks are joined per message; every call must respect the API: AGAIN
 * only with *pos == end, DATA between the old and the new *pos, CONTROL
 * payloads of at most 125 bytes, errors sticky and with a known code,
 * text messages valid UTF-8 unless compressed, messages within
 * max_message (compressed ones within its DEFLATE slack), compressed only
 * with deflate negotiated.  The frame header and close payload encoders
 * are checked on the same bytes.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_chat_frame.h"


#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_frame: %s:%d: assertion failed: %s\n",      \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


typedef struct {
    unsigned char  *p;
    size_t          len;
    size_t          cap;
} bytes_t;


/*
 * The decoded stream, normalized: a data message goes in when it ends
 * (control frames may come between its fragments), its chunks joined.
 */

typedef struct {
    bytes_t         out;
    bytes_t         msg;           /* the data message in progress */
    unsigned        msg_opcode;
    unsigned        msg_compressed;
    int             in_msg;
    int             error;         /* close code of the error, 0 = none */
} trace_t;


static void
bytes_add(bytes_t *b, const void *data, size_t n)
{
    if (b->p == NULL || b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        FUZZ_ASSERT(b->p != NULL);
    }

    if (n) {
        memcpy(b->p + b->len, data, n);
        b->len += n;
    }
}


static void
trace_add(trace_t *t, const void *data, size_t n)
{
    bytes_add(&t->out, data, n);
}


static void
trace_byte(trace_t *t, unsigned c)
{
    unsigned char  b = (unsigned char) c;

    trace_add(t, &b, 1);
}


static void
trace_u64(trace_t *t, uint64_t v)
{
    trace_add(t, &v, sizeof(v));
}


static uint64_t
max_message_of(unsigned sel)
{
    switch (sel & 7) {
    case 0:
        return 0;
    case 1:
        return 1;
    case 2:
        return 125;
    case 3:
        return 126;
    case 4:
        return 65535;
    case 5:
        return 16384;                 /* the module's default */
    case 6:
        return UINT64_MAX;
    default:
        return (uint64_t) (sel >> 3) * 37;
    }
}


/* one event, checked against the API, and appended to the trace */

static void
record_event(trace_t *t, ngx_chat_ws_parser_t *p, ngx_chat_ws_rc_e rc,
    ngx_chat_ws_event_t *ev, unsigned char *old, unsigned char *pos,
    unsigned char *end, uint64_t max_message)
{
    size_t  msg_len;

    FUZZ_ASSERT(pos >= old && pos <= end);

    switch (rc) {

    case NGX_CHAT_WS_AGAIN:
        FUZZ_ASSERT(pos == end);
        return;

    case NGX_CHAT_WS_DATA:
        FUZZ_ASSERT(ev->opcode == NGX_CHAT_WS_OP_TEXT
                    || ev->opcode == NGX_CHAT_WS_OP_BINARY);
        FUZZ_ASSERT(ev->last == 0 || ev->last == 1);
        FUZZ_ASSERT(ev->compressed == 0 || ev->compressed == 1);
        FUZZ_ASSERT(!ev->compressed || p->deflate);

        /* unmasked in place, between the old and the new *pos */
        if (ev->len) {
            FUZZ_ASSERT(ev->data >= old && ev->data + ev->len <= pos);
        }

        if (!t->in_msg) {
            t->in_msg = 1;
            t->msg_opcode = ev->opcode;
            t->msg_compressed = ev->compressed;
            t->msg.len = 0;
            bytes_add(&t->msg, "", 0);   /* msg.p is never NULL */
        }

        FUZZ_ASSERT(ev->opcode == t->msg_opcode);
        FUZZ_ASSERT(ev->compressed == t->msg_compressed);

        bytes_add(&t->msg, ev->data, ev->len);

        msg_len = t->msg.len;
        FUZZ_ASSERT((uint64_t) msg_len
                    <= (ev->compressed
                        ? ngx_chat_ws_compressed_limit(max_message)
                        : max_message));

        /* compressed bytes are DEFLATE data: text only once inflated */

        if (ev->opcode == NGX_CHAT_WS_OP_TEXT && !ev->compressed) {
            uint32_t  s = NGX_CHAT_UTF8_ACCEPT;

            /* every chunk keeps the message a valid UTF-8 prefix */
            FUZZ_ASSERT(ngx_chat_utf8_validate(&s, t->msg.p, msg_len) == 0);

            if (ev->last) {
                FUZZ_ASSERT(ngx_chat_utf8_valid(t->msg.p, msg_len));
            }
        }

        if (ev->last) {
            trace_byte(t, 'M');
            trace_byte(t, ev->opcode | (ev->compressed << 6));
            trace_u64(t, msg_len);
            trace_add(t, t->msg.p, msg_len);
            t->in_msg = 0;
        }

        break;

    case NGX_CHAT_WS_CONTROL:
        FUZZ_ASSERT(ev->opcode == NGX_CHAT_WS_OP_CLOSE
                    || ev->opcode == NGX_CHAT_WS_OP_PING
                    || ev->opcode == NGX_CHAT_WS_OP_PONG);
        FUZZ_ASSERT(ev->len <= NGX_CHAT_WS_MAX_CONTROL);
        FUZZ_ASSERT(ev->last == 1);

        /* the parser's own buffer, not the caller's */
        FUZZ_ASSERT(ev->len == 0
                    || ((unsigned char *) ev->data >= p->ctrl
                        && ev->data + ev->len
                           <= p->ctrl + sizeof(p->ctrl)));

        if (ev->opcode == NGX_CHAT_WS_OP_CLOSE) {
            if (ev->len == 0) {
                FUZZ_ASSERT(ev->close_code == NGX_CHAT_WS_CLOSE_NO_STATUS);

            } else {
                FUZZ_ASSERT(ev->len >= 2);
                FUZZ_ASSERT(ev->close_code
                            == (((unsigned) ev->data[0] << 8)
                                | ev->data[1]));
                FUZZ_ASSERT(ngx_chat_ws_close_code_valid(ev->close_code));
                FUZZ_ASSERT(ngx_chat_utf8_valid(ev->data + 2, ev->len - 2));
            }

        } else {
            FUZZ_ASSERT(ev->close_code == 0);
        }

        trace_byte(t, 'C');
        trace_byte(t, ev->opcode);
        trace_u64(t, ev->len);
        trace_add(t, ev->data, ev->len);
        trace_u64(t, ev->close_code);
        break;

    case NGX_CHAT_WS_ERROR:
        FUZZ_ASSERT(ev->close_code == NGX_CHAT_WIRE_CLOSE_PROTOCOL
                    || ev->close_code == NGX_CHAT_WIRE_CLOSE_UTF8
                    || ev->close_code == NGX_CHAT_WIRE_CLOSE_TOO_BIG);
        FUZZ_ASSERT(ev->reason != NULL && ev->reason[0] != '\0');

        t->error = (int) ev->close_code;

        /*
         * A chunked decode hands out the valid start of a frame before it
         * finds the bad byte, a whole one does not: what the caller got of
         * the failed message does not count.
         */
        t->in_msg = 0;

        trace_byte(t, 'X');
        trace_u64(t, ev->close_code);
        break;

    default:
        FUZZ_ASSERT(0 && "unknown return code");
    }
}


/*
 * Runs the parser over one buffer until AGAIN or ERROR; returns 1 after
 * an error.
 */

static int
feed(trace_t *t, ngx_chat_ws_parser_t *p, unsigned char *buf, size_t n,
    uint64_t max_message)
{
    unsigned               calls;
    unsigned char         *pos, *old, *end;
    ngx_chat_ws_rc_e       rc;
    ngx_chat_ws_event_t    ev;

    pos = buf;
    end = buf + n;

    /* every event but AGAIN needs a byte or ends a frame: bounded */
    for (calls = 0; ; calls++) {
        FUZZ_ASSERT(calls <= 2 * n + 4);

        old = pos;
        rc = ngx_chat_ws_parse(p, &pos, end, &ev);

        record_event(t, p, rc, &ev, old, pos, end, max_message);

        if (rc == NGX_CHAT_WS_AGAIN) {
            return 0;
        }

        if (rc == NGX_CHAT_WS_ERROR) {
            /* sticky: the same error, no byte consumed */
            unsigned char  *again = pos;
            ngx_chat_ws_event_t  ev2;

            FUZZ_ASSERT(ngx_chat_ws_parse(p, &again, end, &ev2)
                        == NGX_CHAT_WS_ERROR);
            FUZZ_ASSERT(again == pos);
            FUZZ_ASSERT(ev2.close_code == ev.close_code);
            return 1;
        }
    }
}


/*
 * The encoders, on the same input: a server frame header for a length
 * taken from the input decodes back to it in the shortest form, and a
 * close payload keeps the code and as much of the reason as fits, cut at
 * a character boundary.
 */

static void
check_encoders(const uint8_t *data, size_t size)
{
    size_t          i, n, hlen, plen, rlen;
    char           *reason;
    unsigned        code;
    uint64_t        len, back;
    unsigned char   hdr[NGX_CHAT_WS_MAX_HEADER];
    unsigned char   pay[NGX_CHAT_WS_MAX_CONTROL];

    len = 0;
    n = size < 8 ? size : 8;
    for (i = 0; i < n; i++) {
        len = (len << 8) | data[i];
    }
    len >>= (data[0] & 63);

    hlen = ngx_chat_ws_frame_header(hdr, NGX_CHAT_WS_OP_TEXT, len);

    FUZZ_ASSERT(hdr[0] == (0x80 | NGX_CHAT_WS_OP_TEXT));

    if (len < 126) {
        FUZZ_ASSERT(hlen == 2 && hdr[1] == len);

    } else if (len <= 0xffff) {
        FUZZ_ASSERT(hlen == 4 && hdr[1] == 126);
        FUZZ_ASSERT((((uint64_t) hdr[2] << 8) | hdr[3]) == len);

    } else {
        FUZZ_ASSERT(hlen == 10 && hdr[1] == 127);

        for (back = 0, i = 2; i < 10; i++) {
            back = (back << 8) | hdr[i];
        }

        FUZZ_ASSERT(back == len);
    }

    /* close payload: the code from two bytes, the reason up to a NUL */

    code = size >= 2 ? ((unsigned) data[0] << 8) | data[1] : 0;

    reason = malloc(size + 1);
    FUZZ_ASSERT(reason != NULL);
    if (size) {
        memcpy(reason, data, size);
    }
    reason[size] = '\0';
    rlen = strlen(reason);

    plen = ngx_chat_ws_close_payload(pay, code, reason);

    if (code == 0) {
        FUZZ_ASSERT(plen == 0);

    } else {
        FUZZ_ASSERT(plen >= 2 && plen <= NGX_CHAT_WS_MAX_CONTROL);
        FUZZ_ASSERT((((unsigned) pay[0] << 8) | pay[1]) == (code & 0xffff));
        FUZZ_ASSERT(plen - 2 <= rlen);
        FUZZ_ASSERT(memcmp(pay + 2, reason, plen - 2) == 0);

        if (rlen <= NGX_CHAT_WS_MAX_CONTROL - 2) {
            FUZZ_ASSERT(plen - 2 == rlen);

        } else if (ngx_chat_utf8_valid((unsigned char *) reason, rlen)) {
            /*
             * Cut before a whole character, so less than one character
             * (4 bytes) short of the limit.  (Reasons are the module's
             * own UTF-8 strings; a bad one may be cut anywhere.)
             */
            FUZZ_ASSERT(ngx_chat_utf8_valid(pay + 2, plen - 2));
            FUZZ_ASSERT(plen - 2 + 3 >= NGX_CHAT_WS_MAX_CONTROL - 2);
        }
    }

    /* no reason at all */
    if (code) {
        FUZZ_ASSERT(ngx_chat_ws_close_payload(pay, code, NULL) == 2);
    }

    free(reason);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                 k, off, n, i, chunk;
    unsigned               deflate;
    uint64_t               max_message;
    trace_t                whole, chunked;
    unsigned char         *buf;
    const uint8_t         *sizes, *stream;
    ngx_chat_ws_parser_t   p;

    check_encoders(data, size);

    if (size < 2) {
        return 0;
    }

    max_message = max_message_of(data[0]);
    k = data[1] & 15;
    deflate = (data[1] >> 4) & 1;

    if (size < 2 + k) {
        return 0;
    }

    sizes = data + 2;
    stream = data + 2 + k;
    n = size - 2 - k;

    memset(&whole, 0, sizeof(trace_t));
    memset(&chunked, 0, sizeof(trace_t));

    /* whole: one exact-size buffer (the parser unmasks it in place) */

    buf = malloc(n ? n : 1);
    FUZZ_ASSERT(buf != NULL);
    if (n) {
        memcpy(buf, stream, n);
    }

    ngx_chat_ws_parser_init(&p, max_message);
    p.deflate = (uint8_t) deflate;
    (void) feed(&whole, &p, buf, n, max_message);
    free(buf);

    /* chunked: each chunk its own exact-size buffer */

    ngx_chat_ws_parser_init(&p, max_message);
    p.deflate = (uint8_t) deflate;

    for (off = 0, i = 0; ; i++) {
        chunk = k ? sizes[i % k] : 1;
        if (chunk > n - off) {
            chunk = n - off;
        }

        buf = malloc(chunk ? chunk : 1);
        FUZZ_ASSERT(buf != NULL);
        if (chunk) {
            memcpy(buf, stream + off, chunk);
        }

        if (feed(&chunked, &p, buf, chunk, max_message)) {
            free(buf);
            break;
        }

        free(buf);
        off += chunk;

        if (off == n) {
            break;
        }

        /* only zero sizes: feed the rest whole */
        if (i > n + 16) {
            k = 0;
        }
    }

    /*
     * The same events: both decodes see every byte, so the traces are
     * equal, including the bytes of a message left unfinished.
     */

    FUZZ_ASSERT(whole.error == chunked.error);
    FUZZ_ASSERT(whole.out.len == chunked.out.len);
    FUZZ_ASSERT(whole.out.len == 0
                || memcmp(whole.out.p, chunked.out.p, whole.out.len) == 0);

    /* an unfinished message: the same bytes so far */
    FUZZ_ASSERT(whole.in_msg == chunked.in_msg);
    if (whole.in_msg) {
        FUZZ_ASSERT(whole.msg_opcode == chunked.msg_opcode);
        FUZZ_ASSERT(whole.msg_compressed == chunked.msg_compressed);
        FUZZ_ASSERT(whole.msg.len == chunked.msg.len);
        FUZZ_ASSERT(whole.msg.len == 0
                    || memcmp(whole.msg.p, chunked.msg.p, whole.msg.len)
                       == 0);
    }

    free(whole.out.p);
    free(whole.msg.p);
    free(chunked.out.p);
    free(chunked.msg.p);

    return 0;
}
