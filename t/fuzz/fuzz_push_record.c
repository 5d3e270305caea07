/*
 * libFuzzer target: the push topic's record, as chat_pusher reads it
 * (ngx_chat_wire_push_parse, for each record it enters in the outbox).
 *
 * The input is one record's value, in an exact-size heap buffer without
 * a terminating NUL, so that ASan sees any read past its length.
 * Checked for every input:
 *   - the verdict is the same twice (nothing kept between calls);
 *   - an accepted record has a message id above 0, a time of at least 0,
 *     and a user and a device that are valid ids lying inside the input,
 *     in that order, separated by the single spaces of the format;
 *   - ngx_chat_wire_push_record writes it back within
 *     NGX_CHAT_WIRE_PUSH_RECORD_MAX bytes (an exact-size heap buffer),
 *     and what it writes reads the same and writes back byte for byte;
 *   - the written form equals the input when the input's numbers have no
 *     leading zeros (the format has one spelling per record).
 * Then the input is cut into fields the other way round (bytes of the id
 * alphabet taken as ids, numbers from its first bytes) and a record made
 * of them is written and must read back the same.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_chat_wire.h"


#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_push_record: %s:%d: assertion failed: %s\n",\
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


static int
fuzz_same(const ngx_chat_wire_push_t *a, const ngx_chat_wire_push_t *b)
{
    return a->message_id == b->message_id && a->ts == b->ts
           && a->user_len == b->user_len && a->device_len == b->device_len
           && memcmp(a->user, b->user, a->user_len) == 0
           && memcmp(a->device, b->device, a->device_len) == 0;
}


/* writes push into an exact-size buffer and checks that it reads back */
static void
fuzz_write_back(const ngx_chat_wire_push_t *push, const char *input,
    size_t input_len, int canonical)
{
    ngx_chat_wire_push_t   again, twice;
    char                  *buf, *buf2;
    size_t                 n, n2;

    buf = malloc(NGX_CHAT_WIRE_PUSH_RECORD_MAX);
    FUZZ_ASSERT(buf != NULL);

    n = ngx_chat_wire_push_record(buf, push);
    FUZZ_ASSERT(n > 0 && n <= NGX_CHAT_WIRE_PUSH_RECORD_MAX);

    FUZZ_ASSERT(ngx_chat_wire_push_parse(buf, n, &again) == 1);
    FUZZ_ASSERT(fuzz_same(push, &again));
    FUZZ_ASSERT(again.user > buf && again.device > again.user
                && again.device + again.device_len < buf + n);

    buf2 = malloc(NGX_CHAT_WIRE_PUSH_RECORD_MAX);
    FUZZ_ASSERT(buf2 != NULL);
    n2 = ngx_chat_wire_push_record(buf2, &again);
    FUZZ_ASSERT(n2 == n && memcmp(buf, buf2, n) == 0);
    FUZZ_ASSERT(ngx_chat_wire_push_parse(buf2, n2, &twice) == 1);
    FUZZ_ASSERT(fuzz_same(push, &twice));

    if (canonical) {
        FUZZ_ASSERT(n == input_len && memcmp(buf, input, n) == 0);
    }

    free(buf2);
    free(buf);
}


/* a number's digits start with 0 and are more than one */
static int
fuzz_leading_zero(const char *p, const char *end)
{
    return end - p > 1 && p[0] == '0';
}


/* the input's checks as a record */
static void
fuzz_parse(const char *in, size_t size)
{
    ngx_chat_wire_push_t   push, again;
    const char            *end = in + size, *ts;
    int                    rc, rc2;

    memset(&push, 0, sizeof(push));
    rc = ngx_chat_wire_push_parse(in, size, &push);
    FUZZ_ASSERT(rc == 0 || rc == 1);

    memset(&again, 0, sizeof(again));
    rc2 = ngx_chat_wire_push_parse(in, size, &again);
    FUZZ_ASSERT(rc2 == rc);

    if (rc == 0) {
        return;
    }

    FUZZ_ASSERT(fuzz_same(&push, &again));
    FUZZ_ASSERT(push.message_id > 0 && push.ts >= 0);

    FUZZ_ASSERT(push.user > in + 1 && push.user[-1] == ' ');
    FUZZ_ASSERT(push.user + push.user_len < end
                && push.user[push.user_len] == ' ');
    FUZZ_ASSERT(push.device == push.user + push.user_len + 1);
    FUZZ_ASSERT(push.device + push.device_len < end
                && push.device[push.device_len] == ' ');
    FUZZ_ASSERT(ngx_chat_wire_valid_id(push.user, push.user_len));
    FUZZ_ASSERT(ngx_chat_wire_valid_id(push.device, push.device_len));

    ts = push.device + push.device_len + 1;
    FUZZ_ASSERT(ts < end);

    fuzz_write_back(&push, in, size,
                    !fuzz_leading_zero(in, push.user - 1)
                    && !fuzz_leading_zero(ts, end));
}


/* the id alphabet's bytes of p, at most NGX_CHAT_WIRE_ID_MAX; 0 if none */
static size_t
fuzz_id(const char *p, const char *end, char *id)
{
    static const char  alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-";
    size_t             n = 0;

    for ( ; p < end && n < NGX_CHAT_WIRE_ID_MAX; p++) {
        id[n++] = alphabet[(unsigned char) *p % (sizeof(alphabet) - 1)];
    }

    return n;
}


/* the input's bytes as fields of a record made here */
static void
fuzz_make(const char *in, size_t size)
{
    ngx_chat_wire_push_t   push;
    char                   user[NGX_CHAT_WIRE_ID_MAX];
    char                   device[NGX_CHAT_WIRE_ID_MAX];
    uint64_t               a = 0, b = 0;
    size_t                 i, half;

    if (size < 18) {
        return;
    }

    for (i = 0; i < 8; i++) {
        a = a << 8 | (unsigned char) in[i];
        b = b << 8 | (unsigned char) in[8 + i];
    }

    /* every id chat_worker makes, and times of at most 18 digits (the
     * reader's limit, far beyond any clock) */
    push.message_id = (int64_t) (a & INT64_MAX);
    if (push.message_id == 0) {
        push.message_id = 1;
    }

    push.ts = (int64_t) (b % 1000000000000000000ULL);

    in += 16;
    size -= 16;
    half = (size + 1) / 2;

    push.user = user;
    push.user_len = fuzz_id(in, in + half, user);
    push.device = device;
    push.device_len = fuzz_id(in + half, in + size, device);

    if (push.user_len == 0 || push.device_len == 0) {
        return;
    }

    fuzz_write_back(&push, NULL, 0, 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *in;

    /* an exact-size copy: a read past the end is ASan's */
    in = malloc(size ? size : 1);
    FUZZ_ASSERT(in != NULL);
    memcpy(in, data, size);

    fuzz_parse(in, size);
    fuzz_make(in, size);

    free(in);

    return 0;
}
