
/*
 * ngx_chat: the WebSocket frame codec.
 *
 * This file owns the server side of RFC 6455 framing: a resumable decoder
 * of client frames (validating everything the RFC asks of a server,
 * including UTF-8 in text messages, checked incrementally), and the
 * encoder of server frame headers and close payloads.  It holds no
 * buffers of its own besides a frame header and one control payload:
 * data is unmasked in place and handed back to the caller in chunks.
 *
 * RSV1 is the one reserved bit an extension may claim here: once the
 * caller has negotiated permessage-deflate (RFC 7692) it sets p->deflate,
 * and RSV1 on the first frame of a text or binary message marks the whole
 * message as compressed (RFC 7692 section 6: never on a continuation or a
 * control frame, which stay 1002).  Such a message's bytes are DEFLATE
 * data, so its UTF-8 can only be judged once inflated: the parser hands
 * them out unchecked, flagged compressed, and the caller validates the
 * inflated text.
 *
 * Base framing protocol (RFC 6455, section 5.2):
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-------+-+-------------+-------------------------------+
 *   |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *   |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *   |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *   | |1|2|3|       |K|             |                               |
 *   +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *   |     Extended payload length continued, if payload len == 127  |
 *   + - - - - - - - - - - - - - - - +-------------------------------+
 *   |                               |Masking-key, if MASK set to 1  |
 *   +-------------------------------+-------------------------------+
 *   | Masking-key (continued)       |          Payload Data         |
 *   +-------------------------------- - - - - - - - - - - - - - - - +
 *   :                     Payload Data continued ...                :
 *   + - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - +
 *   |                     Payload Data continued ...                |
 *   +---------------------------------------------------------------+
 *
 *   opcode: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong;
 *   3-7 and 11-15 are reserved.  Client frames are always masked
 *   (payload byte i is XORed with masking-key byte i % 4); server frames
 *   never are.  Control frames (8-15) are never fragmented and carry at
 *   most 125 bytes; they may come between the fragments of a message.
 *   The length is big endian; a 64-bit length has its top bit clear.
 *
 * Close codes (a close payload is a 2-byte big endian code and an
 * optional UTF-8 reason, 125 bytes in all):
 *
 *   1000  normal closure
 *   1001  going away (server shutting down)
 *   1002  protocol error
 *   1003  unacceptable data type (here: a binary message)
 *   1005  no status code (never on the wire: an empty close payload)
 *   1007  invalid UTF-8 in a text message or close reason
 *   1008  policy violation (here: the token expired while connected)
 *   1009  message too big (over chat_max_message_bytes)
 *   1011  internal server error
 *   4001  replaced by a newer connection of the same user and device
 *   4008  rate limit abuse
 *   4009  client too slow (its send buffer overflowed)
 *
 *   Valid in a close frame received: 1000-1003, 1007-1011, 3000-4999.
 *   1004-1006, 1015 and the rest of 0-2999 are reserved or must not be
 *   sent, and close the connection with 1002.
 */


#include <string.h>

#include "ngx_chat_frame.h"


enum {
    ngx_chat_ws_st_header = 0,
    ngx_chat_ws_st_data,
    ngx_chat_ws_st_control,
    ngx_chat_ws_st_error
};


/* UTF-8 validator states: bytes still expected, and their constraints */
enum {
    ngx_chat_utf8_cont1 = 1,     /* one more 80-BF */
    ngx_chat_utf8_cont2,         /* two more 80-BF */
    ngx_chat_utf8_cont3,         /* three more 80-BF */
    ngx_chat_utf8_e0,            /* A0-BF, then one more (no overlongs) */
    ngx_chat_utf8_ed,            /* 80-9F, then one more (no surrogates) */
    ngx_chat_utf8_f0,            /* 90-BF, then two more (no overlongs) */
    ngx_chat_utf8_f4             /* 80-8F, then two more (<= U+10FFFF) */
};


static uint32_t ngx_chat_utf8_step(uint32_t s, unsigned c);
static ngx_chat_ws_rc_e ngx_chat_ws_fail(ngx_chat_ws_parser_t *p,
    ngx_chat_ws_event_t *ev, unsigned code, const char *reason);
static ngx_chat_ws_rc_e ngx_chat_ws_header_start(ngx_chat_ws_parser_t *p,
    ngx_chat_ws_event_t *ev);
static ngx_chat_ws_rc_e ngx_chat_ws_header_done(ngx_chat_ws_parser_t *p,
    ngx_chat_ws_event_t *ev);
static ngx_chat_ws_rc_e ngx_chat_ws_control_done(ngx_chat_ws_parser_t *p,
    ngx_chat_ws_event_t *ev);
static void ngx_chat_ws_unmask(unsigned char *d, size_t n,
    const unsigned char *mask, unsigned off);


static uint32_t
ngx_chat_utf8_step(uint32_t s, unsigned c)
{
    switch (s) {

    case NGX_CHAT_UTF8_ACCEPT:
        if (c < 0x80) {
            return NGX_CHAT_UTF8_ACCEPT;
        }

        if (c < 0xc2) {
            /* a stray continuation byte, or C0/C1: always overlong */
            return NGX_CHAT_UTF8_REJECT;
        }

        if (c < 0xe0) {
            return ngx_chat_utf8_cont1;
        }

        if (c == 0xe0) {
            return ngx_chat_utf8_e0;
        }

        if (c == 0xed) {
            return ngx_chat_utf8_ed;
        }

        if (c < 0xf0) {
            return ngx_chat_utf8_cont2;
        }

        if (c == 0xf0) {
            return ngx_chat_utf8_f0;
        }

        if (c < 0xf4) {
            return ngx_chat_utf8_cont3;
        }

        if (c == 0xf4) {
            return ngx_chat_utf8_f4;
        }

        return NGX_CHAT_UTF8_REJECT;

    case ngx_chat_utf8_cont1:
        return (c & 0xc0) == 0x80 ? NGX_CHAT_UTF8_ACCEPT
                                  : NGX_CHAT_UTF8_REJECT;

    case ngx_chat_utf8_cont2:
        return (c & 0xc0) == 0x80 ? ngx_chat_utf8_cont1
                                  : NGX_CHAT_UTF8_REJECT;

    case ngx_chat_utf8_cont3:
        return (c & 0xc0) == 0x80 ? ngx_chat_utf8_cont2
                                  : NGX_CHAT_UTF8_REJECT;

    case ngx_chat_utf8_e0:
        return (c >= 0xa0 && c <= 0xbf) ? ngx_chat_utf8_cont1
                                        : NGX_CHAT_UTF8_REJECT;

    case ngx_chat_utf8_ed:
        return (c >= 0x80 && c <= 0x9f) ? ngx_chat_utf8_cont1
                                        : NGX_CHAT_UTF8_REJECT;

    case ngx_chat_utf8_f0:
        return (c >= 0x90 && c <= 0xbf) ? ngx_chat_utf8_cont2
                                        : NGX_CHAT_UTF8_REJECT;

    case ngx_chat_utf8_f4:
        return (c >= 0x80 && c <= 0x8f) ? ngx_chat_utf8_cont2
                                        : NGX_CHAT_UTF8_REJECT;

    default:
        return NGX_CHAT_UTF8_REJECT;
    }
}


int
ngx_chat_utf8_validate(uint32_t *state, const unsigned char *p, size_t n)
{
    uint32_t               s;
    uint64_t               w;
    const unsigned char   *end;

    s = *state;
    end = p + n;

    while (p < end) {

        if (s == NGX_CHAT_UTF8_ACCEPT) {

            /* skip ASCII eight bytes at a time */

            while (end - p >= 8) {
                memcpy(&w, p, 8);

                if (w & 0x8080808080808080ULL) {
                    break;
                }

                p += 8;
            }

            if (p == end) {
                break;
            }
        }

        s = ngx_chat_utf8_step(s, *p++);

        if (s == NGX_CHAT_UTF8_REJECT) {
            *state = s;
            return -1;
        }
    }

    *state = s;

    return 0;
}


int
ngx_chat_utf8_valid(const unsigned char *p, size_t n)
{
    uint32_t  s;

    s = NGX_CHAT_UTF8_ACCEPT;

    return ngx_chat_utf8_validate(&s, p, n) == 0
           && s == NGX_CHAT_UTF8_ACCEPT;
}


void
ngx_chat_ws_parser_init(ngx_chat_ws_parser_t *p, uint64_t max_message)
{
    memset(p, 0, sizeof(ngx_chat_ws_parser_t));

    p->max_message = max_message;
    p->state = ngx_chat_ws_st_header;
    p->hdr_need = 2;
}


int
ngx_chat_ws_parser_idle(const ngx_chat_ws_parser_t *p)
{
    return p->state == ngx_chat_ws_st_header && p->hdr_len == 0
           && p->msg_opcode == 0;
}


ngx_chat_ws_rc_e
ngx_chat_ws_parse(ngx_chat_ws_parser_t *p, unsigned char **pos,
    unsigned char *end, ngx_chat_ws_event_t *ev)
{
    size_t            n;
    unsigned char    *b;
    ngx_chat_ws_rc_e  rc;

    b = *pos;

    ev->data = NULL;
    ev->len = 0;
    ev->opcode = 0;
    ev->last = 0;
    ev->compressed = 0;
    ev->close_code = 0;
    ev->reason = NULL;

    for ( ;; ) {

        switch (p->state) {

        case ngx_chat_ws_st_header:

            /*
             * The header (2 to 14 bytes) is saved byte by byte, so that it
             * may be split across reads; the first two bytes are checked
             * as soon as they are in, the length before any payload.
             */

            if (b == end) {
                goto again;
            }

            p->hdr[p->hdr_len++] = *b++;

            if (p->hdr_len == 2) {
                rc = ngx_chat_ws_header_start(p, ev);
                if (rc != NGX_CHAT_WS_AGAIN) {
                    goto done;
                }
            }

            if (p->hdr_len < p->hdr_need) {
                break;
            }

            rc = ngx_chat_ws_header_done(p, ev);
            if (rc != NGX_CHAT_WS_AGAIN) {
                goto done;
            }

            break;

        case ngx_chat_ws_st_data:

            if (p->remaining == 0) {

                /* an empty frame: only the end of a message is news */

                p->state = ngx_chat_ws_st_header;

                if (!p->fin) {
                    break;
                }

                n = 0;

            } else {

                if (b == end) {
                    goto again;
                }

                n = (uint64_t) (end - b) < p->remaining
                    ? (size_t) (end - b) : (size_t) p->remaining;

                ngx_chat_ws_unmask(b, n, p->hdr, p->mask_off);
                p->mask_off = (p->mask_off + n) & 3;
                p->remaining -= n;

                if (p->msg_opcode == NGX_CHAT_WS_OP_TEXT
                    && !p->msg_compressed
                    && ngx_chat_utf8_validate(&p->utf8_state, b, n) != 0)
                {
                    rc = ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_UTF8,
                                          "invalid UTF-8 in a text message");
                    goto done;
                }

                if (p->remaining == 0) {
                    p->state = ngx_chat_ws_st_header;
                }
            }

            ev->data = b;
            ev->len = n;
            ev->opcode = p->msg_opcode;
            ev->compressed = p->msg_compressed;
            b += n;

            if (p->remaining == 0 && p->fin) {

                if (p->msg_opcode == NGX_CHAT_WS_OP_TEXT
                    && !p->msg_compressed
                    && p->utf8_state != NGX_CHAT_UTF8_ACCEPT)
                {
                    ev->data = NULL;
                    ev->len = 0;
                    ev->opcode = 0;
                    ev->compressed = 0;
                    rc = ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_UTF8,
                                          "text message ends inside "
                                          "a UTF-8 character");
                    goto done;
                }

                ev->last = 1;
                p->msg_opcode = 0;
                p->msg_compressed = 0;
                p->message_len = 0;
            }

            rc = NGX_CHAT_WS_DATA;
            goto done;

        case ngx_chat_ws_st_control:

            n = (uint64_t) (end - b) < p->remaining
                ? (size_t) (end - b) : (size_t) p->remaining;

            if (n) {
                memcpy(p->ctrl + p->ctrl_len, b, n);
                ngx_chat_ws_unmask(p->ctrl + p->ctrl_len, n, p->hdr,
                                   p->mask_off);
                p->mask_off = (p->mask_off + n) & 3;
                p->ctrl_len = (uint8_t) (p->ctrl_len + n);
                p->remaining -= n;
                b += n;
            }

            if (p->remaining) {
                goto again;
            }

            p->state = ngx_chat_ws_st_header;

            rc = ngx_chat_ws_control_done(p, ev);
            goto done;

        default: /* ngx_chat_ws_st_error */
            ev->close_code = p->err_code;
            ev->reason = p->err_reason;
            rc = NGX_CHAT_WS_ERROR;
            goto done;
        }
    }

again:

    rc = NGX_CHAT_WS_AGAIN;

done:

    *pos = b;

    return rc;
}


static ngx_chat_ws_rc_e
ngx_chat_ws_fail(ngx_chat_ws_parser_t *p, ngx_chat_ws_event_t *ev,
    unsigned code, const char *reason)
{
    p->state = ngx_chat_ws_st_error;
    p->err_code = (uint16_t) code;
    p->err_reason = reason;

    ev->close_code = code;
    ev->reason = reason;

    return NGX_CHAT_WS_ERROR;
}


/* the first two header bytes are in: everything but the length */

static ngx_chat_ws_rc_e
ngx_chat_ws_header_start(ngx_chat_ws_parser_t *p, ngx_chat_ws_event_t *ev)
{
    unsigned  op, len7, rsv;

    op = p->hdr[0] & 0x0f;
    len7 = p->hdr[1] & 0x7f;
    rsv = p->hdr[0] & 0x70;

    /* RSV2 and RSV3 belong to no extension we negotiate */

    if (rsv != 0 && (rsv != NGX_CHAT_WS_RSV1 || !p->deflate)) {
        return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                "reserved bits set");
    }

    if (!(p->hdr[1] & 0x80)) {
        return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                "unmasked client frame");
    }

    switch (op) {

    case NGX_CHAT_WS_OP_CONT:
        if (p->msg_opcode == 0) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                    "continuation frame without a message");
        }

        /* the first frame says it for the whole message */

        if (rsv) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                    "RSV1 set on a continuation frame");
        }
        break;

    case NGX_CHAT_WS_OP_TEXT:
    case NGX_CHAT_WS_OP_BINARY:
        if (p->msg_opcode != 0) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                    "new message inside a fragmented one");
        }
        break;

    case NGX_CHAT_WS_OP_CLOSE:
    case NGX_CHAT_WS_OP_PING:
    case NGX_CHAT_WS_OP_PONG:
        if (!(p->hdr[0] & 0x80)) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                    "fragmented control frame");
        }

        if (len7 > NGX_CHAT_WS_MAX_CONTROL) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                    "control frame over 125 bytes");
        }

        /* permessage-deflate compresses data messages only */

        if (rsv) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                    "RSV1 set on a control frame");
        }
        break;

    default:
        return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                "unknown opcode");
    }

    p->opcode = (uint8_t) op;
    p->fin = p->hdr[0] >> 7;

    p->hdr_need = 2 + 4 + (len7 == 126 ? 2 : (len7 == 127 ? 8 : 0));

    return NGX_CHAT_WS_AGAIN;
}


/* the whole header is in: the length, then the masking key */

static ngx_chat_ws_rc_e
ngx_chat_ws_header_done(ngx_chat_ws_parser_t *p, ngx_chat_ws_event_t *ev)
{
    unsigned   i, k;
    uint64_t   len, max;

    len = p->hdr[1] & 0x7f;
    i = 2;

    if (len == 126) {
        len = ((uint64_t) p->hdr[2] << 8) | p->hdr[3];
        i = 4;

    } else if (len == 127) {
        len = 0;

        for (k = 2; k < 10; k++) {
            len = (len << 8) | p->hdr[k];
        }

        if (len >> 63) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                    "64-bit length with the top bit set");
        }

        i = 10;
    }

    if (p->opcode < NGX_CHAT_WS_OP_CLOSE) {

        if (p->opcode != NGX_CHAT_WS_OP_CONT) {
            p->msg_opcode = p->opcode;
            p->msg_compressed = (p->hdr[0] & NGX_CHAT_WS_RSV1) != 0;
            p->message_len = 0;
            p->utf8_state = NGX_CHAT_UTF8_ACCEPT;
            p->frames = 0;
        }

        /* empty fragments cost no memory, but each costs a pass here */

        if (p->max_frames && ++p->frames > p->max_frames) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_TOO_BIG,
                                    "too many fragments in a message");
        }

        /* the limit is checked before a byte of the payload is read */

        max = p->msg_compressed ? ngx_chat_ws_compressed_limit(p->max_message)
                                : p->max_message;

        if (p->message_len > max || len > max - p->message_len) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_TOO_BIG,
                                    "message too big");
        }

        p->message_len += len;
        p->state = ngx_chat_ws_st_data;

    } else {
        p->ctrl_len = 0;
        p->state = ngx_chat_ws_st_control;
    }

    /* the masking key moves to hdr[0..3], the header is no longer needed */

    memmove(p->hdr, p->hdr + i, 4);

    p->remaining = len;
    p->mask_off = 0;
    p->hdr_len = 0;
    p->hdr_need = 2;

    return NGX_CHAT_WS_AGAIN;
}


static ngx_chat_ws_rc_e
ngx_chat_ws_control_done(ngx_chat_ws_parser_t *p, ngx_chat_ws_event_t *ev)
{
    unsigned  code;

    code = 0;

    if (p->opcode == NGX_CHAT_WS_OP_CLOSE) {

        if (p->ctrl_len == 1) {
            return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                    "close frame with a 1-byte payload");
        }

        if (p->ctrl_len == 0) {
            code = NGX_CHAT_WS_CLOSE_NO_STATUS;

        } else {
            code = ((unsigned) p->ctrl[0] << 8) | p->ctrl[1];

            if (!ngx_chat_ws_close_code_valid(code)) {
                return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_PROTOCOL,
                                        "invalid close code");
            }

            if (!ngx_chat_utf8_valid(p->ctrl + 2, p->ctrl_len - 2)) {
                return ngx_chat_ws_fail(p, ev, NGX_CHAT_WIRE_CLOSE_UTF8,
                                        "close reason is not UTF-8");
            }
        }
    }

    ev->data = p->ctrl;
    ev->len = p->ctrl_len;
    ev->opcode = p->opcode;
    ev->last = 1;
    ev->close_code = code;

    return NGX_CHAT_WS_CONTROL;
}


static void
ngx_chat_ws_unmask(unsigned char *d, size_t n, const unsigned char *mask,
    unsigned off)
{
    size_t         i;
    uint64_t       w, x;
    unsigned char  m[8];

    for (i = 0; i < 8; i++) {
        m[i] = mask[(off + i) & 3];
    }

    memcpy(&w, m, 8);

    for (i = 0; i + 8 <= n; i += 8) {
        memcpy(&x, d + i, 8);
        x ^= w;
        memcpy(d + i, &x, 8);
    }

    for ( /* void */ ; i < n; i++) {
        d[i] ^= m[i & 7];
    }
}


uint64_t
ngx_chat_ws_compressed_limit(uint64_t max_message)
{
    uint64_t  slack;

    /*
     * A sixteenth covers stored blocks of 80 bytes and more (zlib makes
     * them of 16 KB at its default memLevel); 64 bytes more, tiny limits
     * and the blocks that start and end a message.
     */

    slack = max_message / 16 + 64;

    return max_message > UINT64_MAX - slack ? UINT64_MAX
                                            : max_message + slack;
}


int
ngx_chat_ws_close_code_valid(unsigned code)
{
    if (code >= 1000 && code <= 1003) {
        return 1;
    }

    if (code >= 1007 && code <= 1011) {
        return 1;
    }

    return code >= 3000 && code <= 4999;
}


size_t
ngx_chat_ws_frame_header(unsigned char *buf, unsigned opcode, uint64_t len)
{
    unsigned  k;

    buf[0] = (unsigned char) (0x80 | (opcode & (NGX_CHAT_WS_RSV1 | 0x0f)));

    if (len < 126) {
        buf[1] = (unsigned char) len;
        return 2;
    }

    if (len <= 0xffff) {
        buf[1] = 126;
        buf[2] = (unsigned char) (len >> 8);
        buf[3] = (unsigned char) len;
        return 4;
    }

    buf[1] = 127;

    for (k = 0; k < 8; k++) {
        buf[2 + k] = (unsigned char) (len >> (56 - 8 * k));
    }

    return 10;
}


size_t
ngx_chat_ws_close_payload(unsigned char *buf, unsigned code,
    const char *reason)
{
    size_t  n;

    if (code == 0) {
        return 0;
    }

    buf[0] = (unsigned char) (code >> 8);
    buf[1] = (unsigned char) code;

    n = (reason == NULL) ? 0 : strlen(reason);

    if (n > NGX_CHAT_WS_MAX_CONTROL - 2) {
        n = NGX_CHAT_WS_MAX_CONTROL - 2;

        /* do not cut a character in two: back up to its first byte */

        while (n > 0 && ((unsigned char) reason[n] & 0xc0) == 0x80) {
            n--;
        }
    }

    if (n) {
        memcpy(buf + 2, reason, n);
    }

    return 2 + n;
}
