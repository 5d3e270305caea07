
/*
 * ngx_chat: WebSocket (RFC 6455) frame codec and incremental UTF-8
 * validation.  Pure C, no nginx headers: the module calls it with the
 * bytes it has read, the unit tests call it directly.  With
 * permessage-deflate (RFC 7692) it also accepts RSV1 on the first frame of
 * a data message and reports the message as compressed (inflating it is
 * ngx_chat_deflate.c's business).
 */


#ifndef _NGX_CHAT_FRAME_H_INCLUDED_
#define _NGX_CHAT_FRAME_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_chat_wire.h"


#define NGX_CHAT_WS_OP_CONT          0x0
#define NGX_CHAT_WS_OP_TEXT          0x1
#define NGX_CHAT_WS_OP_BINARY        0x2
#define NGX_CHAT_WS_OP_CLOSE         0x8
#define NGX_CHAT_WS_OP_PING          0x9
#define NGX_CHAT_WS_OP_PONG          0xa

/* the close codes are the wire's (ngx_chat_wire.h); this one is never sent */
#define NGX_CHAT_WS_CLOSE_NO_STATUS  1005  /* "no code given" */

#define NGX_CHAT_WS_MAX_CONTROL      125   /* control frame payload limit */
#define NGX_CHAT_WS_MAX_HEADER       10    /* server frame header, unmasked */

#define NGX_CHAT_WS_RSV1             0x40  /* first header byte: compressed */


/*
 * UTF-8 validation, resumable: *state starts at NGX_CHAT_UTF8_ACCEPT and is
 * carried across calls, so a code point may be split between buffers.
 * ngx_chat_utf8_validate() returns 0 while the bytes seen so far are a
 * valid prefix and -1 (state NGX_CHAT_UTF8_REJECT, sticky) on the first
 * invalid byte: overlongs, surrogates and code points above U+10FFFF are
 * invalid.  The input is complete and valid only if it returned 0 and
 * *state == NGX_CHAT_UTF8_ACCEPT afterwards.
 */

#define NGX_CHAT_UTF8_ACCEPT         0
#define NGX_CHAT_UTF8_REJECT         8

int ngx_chat_utf8_validate(uint32_t *state, const unsigned char *p,
    size_t n);

/* 1 if p[0..n) is complete, valid UTF-8; 0 otherwise */
int ngx_chat_utf8_valid(const unsigned char *p, size_t n);


typedef enum {
    NGX_CHAT_WS_AGAIN = 0,     /* all input consumed: *pos == end */
    NGX_CHAT_WS_DATA,          /* a chunk of the current data message */
    NGX_CHAT_WS_CONTROL,       /* a complete close, ping or pong frame */
    NGX_CHAT_WS_ERROR          /* close the connection with ev->close_code */
} ngx_chat_ws_rc_e;


typedef struct {
    /*
     * DATA: a chunk of the data message in progress, unmasked in place in
     *   the caller's buffer (between the old and the new *pos); opcode is
     *   the message's (1 text, 2 binary); last is set on the chunk that
     *   ends the message (len may be 0).  Text chunks are valid UTF-8
     *   prefixes; a text message with last set is valid UTF-8 as a whole.
     *   compressed is set on every chunk of a message whose first frame
     *   had RSV1 (only when the parser's deflate flag is set): its bytes
     *   are raw DEFLATE data, not UTF-8 checked, and their limit on the
     *   wire is ngx_chat_ws_compressed_limit(max_message): the caller
     *   inflates them, limits the inflated size and checks inflated text
     *   with ngx_chat_utf8_validate() (1007 when it fails).
     * CONTROL: opcode 8, 9 or 10; data/len is the whole payload (<= 125
     *   bytes), in the parser's own buffer, valid until the next call.
     *   For a close frame close_code is the code received, or 1005 when
     *   the payload is empty; the reason is data + 2, len - 2 bytes, and
     *   it has been checked to be valid UTF-8.
     * ERROR: close_code is 1002, 1007 or 1009 and reason a static string
     *   for the log.  The parser stays in error: later calls say the same.
     */
    unsigned char             *data;
    size_t                     len;
    unsigned                   opcode;
    unsigned                   last;
    unsigned                   compressed;
    unsigned                   close_code;
    const char                *reason;
} ngx_chat_ws_event_t;


typedef struct {
    uint64_t                   max_message;    /* set by init; the caller
                                                  may change it between
                                                  messages */
    uint32_t                   max_frames;     /* frames per data message,
                                                  0: no limit (init) */
    uint32_t                   frames;         /* private: so far */

    /* private */
    uint64_t                   remaining;      /* of the current frame */
    uint64_t                   message_len;    /* data message so far */
    const char                *err_reason;
    uint32_t                   utf8_state;
    uint16_t                   err_code;
    uint8_t                    state;
    uint8_t                    hdr_len;        /* bytes saved in hdr */
    uint8_t                    hdr_need;       /* header size, once known */
    uint8_t                    opcode;         /* of the current frame */
    uint8_t                    fin;            /* of the current frame */
    uint8_t                    msg_opcode;     /* data message, 0 = none */
    uint8_t                    msg_compressed; /* its first frame had RSV1 */
    uint8_t                    mask_off;       /* payload bytes seen & 3 */
    uint8_t                    ctrl_len;

    /*
     * public, here where it costs no padding: permessage-deflate was
     * negotiated, RSV1 is allowed on the first frame of a data message;
     * 0 (init), set by the caller
     */
    uint8_t                    deflate;

    /* private */
    unsigned char              hdr[14];
    unsigned char              ctrl[NGX_CHAT_WS_MAX_CONTROL];
} ngx_chat_ws_parser_t;


void ngx_chat_ws_parser_init(ngx_chat_ws_parser_t *p, uint64_t max_message);

/*
 * 1 when the parser is between messages with no frame begun (and not in
 * error): it holds nothing a fresh parser with the same settings lacks,
 * so a caller may drop it and start the next read with a new one.
 */
int ngx_chat_ws_parser_idle(const ngx_chat_ws_parser_t *p);

/*
 * Consumes bytes from *pos up to end and returns at the first event; call
 * it again (with the advanced *pos) until it returns NGX_CHAT_WS_AGAIN.
 * Bytes of data frames are unmasked in place, so the buffer must be
 * writable.  After a close frame the caller should stop reading.
 */
ngx_chat_ws_rc_e ngx_chat_ws_parse(ngx_chat_ws_parser_t *p,
    unsigned char **pos, unsigned char *end, ngx_chat_ws_event_t *ev);

/*
 * The wire size up to which the parser lets a compressed message through
 * when the caller's limit is max_message (the limit that matters, on the
 * inflated size, is the caller's): DEFLATE expands incompressible data by
 * 5 bytes per stored block, so a message that inflates to max_message may
 * take a little more on the wire.
 */
uint64_t ngx_chat_ws_compressed_limit(uint64_t max_message);

/* 1 if a close frame may carry this code (RFC 6455 7.4, as Autobahn) */
int ngx_chat_ws_close_code_valid(unsigned code);

/*
 * Server to client frame header: FIN set, no mask.  Returns 2, 4 or 10;
 * buf has room for NGX_CHAT_WS_MAX_HEADER bytes.  opcode | NGX_CHAT_WS_RSV1
 * marks the payload of a text or binary frame as compressed
 * (permessage-deflate); other bits of opcode above the four of the opcode
 * are ignored.
 */
size_t ngx_chat_ws_frame_header(unsigned char *buf, unsigned opcode,
    uint64_t len);

/*
 * Close frame payload: the code (big endian) and the reason, cut to fit
 * 125 bytes at a UTF-8 character boundary.  code 0 gives an empty payload.
 * buf has room for NGX_CHAT_WS_MAX_CONTROL bytes; returns the length.
 */
size_t ngx_chat_ws_close_payload(unsigned char *buf, unsigned code,
    const char *reason);


#endif /* _NGX_CHAT_FRAME_H_INCLUDED_ */
