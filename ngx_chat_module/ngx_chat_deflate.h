
/*
 * ngx_chat: permessage-deflate (RFC 7692), the pure C part: negotiation of
 * the Sec-WebSocket-Extensions header, inflate of client messages under
 * the message size limit, deflate of server messages.  Pure C and zlib,
 * no nginx headers: the module calls it, the unit tests and a fuzz target
 * call it directly.  The frame codec (ngx_chat_frame.h) says which
 * messages are compressed (ev->compressed, RSV1).
 *
 * How the module uses it:
 *
 *   configuration   ngx_chat_deflate_conf_init(), then the directives,
 *                   then ngx_chat_deflate_conf_check() for nginx -t;
 *   init_process    ngx_chat_deflate_ctx_init(): one context per worker
 *                   process (its stream caches, its allocator);
 *   handshake       ngx_chat_deflate_negotiate() over the request's
 *                   Sec-WebSocket-Extensions values: accepted, the
 *                   response value goes into the 101's header of the same
 *                   name, the parser gets p->deflate = 1 and the session
 *                   ngx_chat_inflate_init();
 *   client message  for every DATA event with ev->compressed:
 *                   ngx_chat_inflate_event(), which is
 *                   ngx_chat_inflate(ev->data, ev->len, ev->last) into the
 *                   message buffer and, for text, ngx_chat_utf8_validate()
 *                   over the bytes it added, the state ACCEPT at the end
 *                   (1007 otherwise);
 *   server message  to one connection: ngx_chat_deflate_frame(); to many
 *                   (a delivery's recipients): ngx_chat_deflate_shared_*,
 *                   which calls it once per distinct server_window_bits
 *                   among them, the same bytes written to each;
 *   close           ngx_chat_inflate_end();
 *   exit_process    ngx_chat_deflate_ctx_cleanup().
 *
 * Memory (zlib 1.2.13, x86-64, as t/unit/test_deflate.c measures it):
 *
 *   idle connection   sizeof(ngx_chat_inflater_t), 16 bytes; nothing
 *                     allocated between messages unless client context
 *                     takeover was agreed
 *   inflating         while a compressed message is in progress, one
 *                     stream: 128 bytes of ours, 7,160 of zlib's state and
 *                     its window of 1 << bits, allocated at the first
 *                     output: 7,800 bytes at 9 bits, 40,056 at 15.  At the
 *                     message's end it goes to the context's idle list
 *                     (ctx->idle_max streams per process, 4 by default)
 *                     or is freed; with client context takeover the
 *                     connection keeps it for its life
 *   deflating         one stream per window bits value in use, per
 *                     process, kept: 128 + 5,952 bytes, 4 << bits of
 *                     window and chains, 512 << mem_level of hash heads
 *                     and pending output: 268,224 bytes at 15 bits and
 *                     memLevel 8, 9,152 at 9 bits and memLevel 1
 *   context           sizeof(ngx_chat_deflate_ctx_t), 320 bytes
 */


#ifndef _NGX_CHAT_DEFLATE_H_INCLUDED_
#define _NGX_CHAT_DEFLATE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_chat_frame.h"


/* the longest response value, its NUL included */
#define NGX_CHAT_DEFLATE_RESPONSE_MAX  160

/* the out_size ngx_chat_deflate_frame() needs to compress len bytes */
#define NGX_CHAT_DEFLATE_FRAME_SIZE(len)                                      \
    (NGX_CHAT_WS_MAX_HEADER + (size_t) (len) + 4)


typedef struct {
    unsigned                   enabled;
    /* the window we compress with, 9..15 (zlib has no raw 8) */
    unsigned                   server_max_window_bits;
    /* the largest client window we inflate, 9..15 */
    unsigned                   client_max_window_bits;
    /* zlib's compression level (1..9) and memLevel (1..9) */
    int                        level;
    int                        mem_level;
    /*
     * 1: a client may keep its compression context across messages (we
     * then keep an inflate stream per connection for its life); 0: the
     * response says client_no_context_takeover
     */
    unsigned                   client_context_takeover;
    /* messages shorter than this go out uncompressed */
    size_t                     min_size;
} ngx_chat_deflate_conf_t;


/* what a connection agreed to (we always use server_no_context_takeover) */

typedef struct {
    uint8_t                    server_window_bits;   /* 9..15 */
    uint8_t                    client_window_bits;   /* 8..15 */
    uint8_t                    client_takeover;      /* 0 or 1 */
} ngx_chat_deflate_params_t;


/* one Sec-WebSocket-Extensions header value */

typedef struct {
    const unsigned char       *data;
    size_t                     len;
} ngx_chat_deflate_str_t;


/*
 * The caller's allocator: every byte this file allocates, zlib's state
 * included, comes from alloc(data, size) and goes back through
 * free(data, p).  alloc returns NULL on failure; its memory is aligned for
 * any type, as malloc's.
 */

typedef void *(*ngx_chat_deflate_alloc_pt)(void *data, size_t size);
typedef void (*ngx_chat_deflate_free_pt)(void *data, void *p);

typedef struct ngx_chat_zstream_s  ngx_chat_zstream_t;


/*
 * A worker process's context: the allocator, the compression settings of
 * the configuration, the per-process caches of zlib streams (deflate ones
 * by window bits, reset between messages; idle inflate ones), and their
 * counts.  The caller owns it (one per process: zlib streams are not
 * shared between threads) and nothing here is global.
 */

typedef struct {
    ngx_chat_deflate_alloc_pt  alloc;
    ngx_chat_deflate_free_pt   free;
    void                      *data;

    int                        level;
    int                        mem_level;
    size_t                     min_size;
    /* idle inflate streams kept for reuse (init: 4) */
    unsigned                   idle_max;

    /* read only: streams allocated, messages compressed */
    unsigned                   inflate_streams;  /* in use and idle */
    unsigned                   inflate_idle;
    unsigned                   deflate_streams;
    uint64_t                   deflated;

    /* private */
    ngx_chat_zstream_t        *deflate[16];      /* by window bits */
    ngx_chat_zstream_t        *idle[16];         /* by window bits */
} ngx_chat_deflate_ctx_t;


/* a growing output buffer: data from ctx->alloc, size bytes of it */

typedef struct {
    unsigned char             *data;
    size_t                     len;
    size_t                     size;
} ngx_chat_deflate_buf_t;


/* the per-connection inflate state: 16 bytes, a stream only when needed */

typedef struct {
    ngx_chat_zstream_t        *stream;
    uint8_t                    window_bits;  /* of the stream (9..15) */
    uint8_t                    takeover;     /* client context takeover */
    uint8_t                    fed;          /* private */
    uint8_t                    ended;        /* private */
} ngx_chat_inflater_t;


typedef enum {
    NGX_CHAT_INFLATE_OK = 0,
    NGX_CHAT_INFLATE_TOO_BIG,   /* inflated past the limit: close 1009 */
    NGX_CHAT_INFLATE_CORRUPT,   /* not DEFLATE data: close 1007 */
    NGX_CHAT_INFLATE_NOMEM      /* the allocator failed: close 1011 */
} ngx_chat_inflate_rc_e;


typedef enum {
    NGX_CHAT_DEFLATE_OK = 0,
    NGX_CHAT_DEFLATE_DECLINED,  /* send it uncompressed: short, or would
                                   not be smaller */
    NGX_CHAT_DEFLATE_ERROR      /* out of memory (or zlib refused) */
} ngx_chat_deflate_rc_e;


/* ---------------------------------------------------------- configuration */

/*
 * Defaults: disabled; 15-bit windows both ways, level 1 (as nginx's gzip:
 * a chat frame shrinks about as much as at 6 or 9, a 15 KB history frame
 * 10% less for half the CPU), memLevel 8, no client context takeover,
 * min_size 64.
 */
void ngx_chat_deflate_conf_init(ngx_chat_deflate_conf_t *conf);

/* NULL if conf is usable, else what is wrong with it (for nginx -t) */
const char *ngx_chat_deflate_conf_check(const ngx_chat_deflate_conf_t *conf);


/* ------------------------------------------------------------ negotiation */

/*
 * RFC 7692 sections 5 and 7, server side.  values are the request's
 * Sec-WebSocket-Extensions header values in order (one or several headers,
 * each a comma-separated list of offers, or all of them joined by commas:
 * the result is the same).  Picks the first permessage-deflate offer that
 * is valid (known parameters, each at most once, with valid values) and
 * that conf can honour; returns 1 with params filled and the response
 * header value in response (NUL-terminated, *response_len bytes, at most
 * NGX_CHAT_DEFLATE_RESPONSE_MAX with the NUL).  Returns 0 when every offer
 * is declined, or there is none, or conf is disabled: the handshake then
 * answers without the header; *reason (if reason is not NULL) says why,
 * for a debug log.  Names are compared without regard to case.
 *
 * The response always has server_no_context_takeover (each message
 * compressed on its own, so one compressed frame serves every recipient);
 * client_no_context_takeover unless conf allows client context takeover
 * and the offer did not give it up; server_max_window_bits and
 * client_max_window_bits when the offer had them, with the value agreed.
 * Declined besides invalid offers: server_max_window_bits=8 (zlib cannot
 * compress within 256 bytes, and the RFC allows only the offered value or
 * less), and offers without client_max_window_bits when conf's is under
 * 15 (the client may then use 15 bits).
 */
int ngx_chat_deflate_negotiate(const ngx_chat_deflate_conf_t *conf,
    const ngx_chat_deflate_str_t *values, size_t n,
    ngx_chat_deflate_params_t *params, char *response, size_t *response_len,
    const char **reason);


/* ---------------------------------------------------------------- context */

/*
 * Takes the compression settings of conf (level, mem_level, min_size) and
 * the allocator; allocates nothing yet (streams are made on first use).
 * Returns -1 if conf_check would refuse conf.
 */
int ngx_chat_deflate_ctx_init(ngx_chat_deflate_ctx_t *ctx,
    const ngx_chat_deflate_conf_t *conf, ngx_chat_deflate_alloc_pt alloc,
    ngx_chat_deflate_free_pt free, void *data);

/*
 * Frees the cached streams.  Streams still held by inflaters are theirs:
 * ngx_chat_inflate_end() them first (it works after cleanup too).
 */
void ngx_chat_deflate_ctx_cleanup(ngx_chat_deflate_ctx_t *ctx);


/* ---------------------------------------------------------------- inflate */

void ngx_chat_inflate_init(ngx_chat_inflater_t *inf,
    const ngx_chat_deflate_params_t *params);

/*
 * Inflates one chunk of a compressed client message (each DATA event's
 * data and len, last on the one that ends the message), appending to out,
 * which grows (through ctx->alloc and ctx->free, so out->data must come
 * from ctx->alloc or be NULL with size 0) up to limit bytes and no more:
 * the inflated message may be limit bytes long, and TOO_BIG comes as soon
 * as one byte more would come out, without inflating further (a small
 * input that inflates to gigabytes costs limit bytes of work).  At the
 * end of the message it appends the 00 00 ff ff that the client stripped
 * (RFC 7692 7.2.2): a message that does not then end on a DEFLATE block
 * boundary is CORRUPT.  Bytes after a final block (BFINAL) are ignored,
 * as a decompressor does (RFC 7692 7.2.3.4 puts a 00 byte there).  A
 * client that uses a larger window than it agreed to is CORRUPT where a
 * distance reaches past the window and what this call has inflated
 * (zlib's check): never a memory risk, the window being ours.
 *
 * The stream is taken (from ctx's idle list or allocated) at the first
 * byte of a message and given back when it ends, unless client context
 * takeover was agreed.  After an error it is given back too and the
 * caller fails the connection; out stays the caller's to free.
 */
ngx_chat_inflate_rc_e ngx_chat_inflate(ngx_chat_deflate_ctx_t *ctx,
    ngx_chat_inflater_t *inf, const unsigned char *in, size_t len,
    int last, ngx_chat_deflate_buf_t *out, size_t limit);

/* gives back the inflater's stream, if any: at the connection's close */
void ngx_chat_inflate_end(ngx_chat_deflate_ctx_t *ctx,
    ngx_chat_inflater_t *inf);

/* a static string for a log line */
const char *ngx_chat_inflate_strerror(ngx_chat_inflate_rc_e rc);


/*
 * One DATA event of a compressed message (ev->compressed), as a session
 * reads it: ngx_chat_inflate() of its bytes into out under limit and, for
 * a text message, ngx_chat_utf8_validate() of the bytes that added, *utf8
 * carried across the message's events (NGX_CHAT_UTF8_ACCEPT at its start,
 * and again after its last event).  Returns 0, or the close code to fail
 * the connection with: 1009 past the limit, 1007 for data that is not
 * DEFLATE or text that is not UTF-8, 1011 out of memory; *reason is then
 * a static string for the log.  The inflater's stream is given back on
 * an error, as ngx_chat_inflate() does; out stays the caller's to free.
 */
unsigned ngx_chat_inflate_event(ngx_chat_deflate_ctx_t *ctx,
    ngx_chat_inflater_t *inf, uint32_t *utf8, const ngx_chat_ws_event_t *ev,
    ngx_chat_deflate_buf_t *out, size_t limit, const char **reason);


/* ---------------------------------------------------------------- deflate */

/*
 * Compresses one message payload on its own (raw DEFLATE with window_bits,
 * Z_SYNC_FLUSH, the trailing 00 00 ff ff removed) into out[0..out_size):
 * OK with *out_len bytes; DECLINED if len < ctx->min_size or the result
 * and its 4-byte tail (written, then removed) do not fit in out_size.
 * No allocation once the stream for window_bits exists.
 */
ngx_chat_deflate_rc_e ngx_chat_deflate_payload(ngx_chat_deflate_ctx_t *ctx,
    unsigned window_bits, const unsigned char *in, size_t len,
    unsigned char *out, size_t out_size, size_t *out_len);

/*
 * A complete compressed server frame for one message: header (FIN, RSV1,
 * opcode) and compressed payload, built in out[0..out_size), starting at
 * *frame, *frame_len bytes; the same bytes go to every connection that
 * agreed to window_bits.  DECLINED when the message is shorter than
 * ctx->min_size or would not shrink (with out_size of
 * NGX_CHAT_DEFLATE_FRAME_SIZE(len)): send it uncompressed then.
 */
ngx_chat_deflate_rc_e ngx_chat_deflate_frame(ngx_chat_deflate_ctx_t *ctx,
    unsigned window_bits, unsigned opcode, const unsigned char *in,
    size_t len, unsigned char *out, size_t out_size, unsigned char **frame,
    size_t *frame_len);


/*
 * One server message for many connections (the recipients of a delivery):
 * its compressed frame is built once per window bits value among them, at
 * the first connection that needs it, and the same bytes serve every other
 * connection of that value.  The message itself (in, len) is the caller's
 * and must stay until ngx_chat_deflate_shared_free(); nothing is
 * allocated until a frame is asked for.
 */

typedef struct {
    const unsigned char       *in;
    size_t                     len;
    unsigned                   opcode;

    /* private: by window bits, at [bits - 9] */
    unsigned                   tried;        /* one bit per window bits */
    unsigned char             *buf[7];
    unsigned char             *frame[7];
    size_t                     frame_len[7];
} ngx_chat_deflate_shared_t;


void ngx_chat_deflate_shared_init(ngx_chat_deflate_shared_t *sh,
    unsigned opcode, const unsigned char *in, size_t len);

/*
 * The compressed frame for connections that agreed to window_bits: OK
 * with *frame and *frame_len (valid until shared_free), DECLINED (short,
 * or would not shrink) or ERROR (out of memory): send the message
 * uncompressed then.  A second call for the same window bits returns
 * what the first one did, without compressing again.
 */
ngx_chat_deflate_rc_e ngx_chat_deflate_shared_frame(
    ngx_chat_deflate_ctx_t *ctx, ngx_chat_deflate_shared_t *sh,
    unsigned window_bits, unsigned char **frame, size_t *frame_len);

void ngx_chat_deflate_shared_free(ngx_chat_deflate_ctx_t *ctx,
    ngx_chat_deflate_shared_t *sh);


#endif /* _NGX_CHAT_DEFLATE_H_INCLUDED_ */
