
/*
 * libFuzzer target: the UTF-8 validator (ngx_chat_utf8_validate and
 * ngx_chat_utf8_valid).
 *
 * The input is the text.  Checked:
 *   - the whole-buffer validator agrees with a reference decoder written
 *     here differently (code point ranges, not a state table);
 *   - fed one byte at a time, the resumable validator first fails exactly
 *     at the byte where the reference says no valid text can start so;
 *   - split in two at every offset (a sample of them for long inputs),
 *     the resumable validator gives the same answer as the whole one;
 *   - a rejected state stays rejected.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_chat_frame.h"


#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_utf8: %s:%d: assertion failed: %s\n",       \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


/*
 * Can a code point of a len-byte sequence lie in [lo, hi]?  Scalar values
 * only, each in its shortest form.
 */

static int
ref_feasible(unsigned len, uint32_t lo, uint32_t hi)
{
    uint32_t  min, max;

    switch (len) {
    case 2:
        min = 0x80;
        max = 0x7ff;
        break;
    case 3:
        min = 0x800;
        max = 0xffff;
        break;
    default:
        min = 0x10000;
        max = 0x10ffff;
        break;
    }

    if (lo < min) {
        lo = min;
    }

    if (hi > max) {
        hi = max;
    }

    if (lo > hi) {
        return 0;
    }

    /* something outside the surrogates D800-DFFF */
    return lo < 0xd800 || hi > 0xdfff;
}


/*
 * The offset of the first byte after which the input can no longer be the
 * start of valid UTF-8, or n; *complete says whether no character is left
 * open at the end.
 */

static size_t
ref_reject_at(const unsigned char *p, size_t n, int *complete)
{
    size_t    i;
    unsigned  c, len, have, rest;
    uint32_t  cp, lo, hi;

    len = 0;
    have = 0;
    cp = 0;

    for (i = 0; i < n; i++) {
        c = p[i];

        if (have == len) {
            /* a new character */

            if (c < 0x80) {
                len = have = 0;
                continue;
            }

            if ((c & 0xe0) == 0xc0) {
                len = 2;
                cp = c & 0x1f;

            } else if ((c & 0xf0) == 0xe0) {
                len = 3;
                cp = c & 0x0f;

            } else if ((c & 0xf8) == 0xf0) {
                len = 4;
                cp = c & 0x07;

            } else {
                *complete = 0;
                return i;
            }

            have = 1;

        } else {
            if ((c & 0xc0) != 0x80) {
                *complete = 0;
                return i;
            }

            cp = (cp << 6) | (c & 0x3f);
            have++;
        }

        rest = 6 * (len - have);
        lo = cp << rest;
        hi = lo | ((1u << rest) - 1);

        if (!ref_feasible(len, lo, hi)) {
            *complete = 0;
            return i;
        }
    }

    *complete = (have == len);

    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int       complete, whole, rc, rc2;
    size_t    i, bad, step;
    uint32_t  s, s2;

    bad = ref_reject_at(data, size, &complete);

    whole = ngx_chat_utf8_valid(data, size);
    FUZZ_ASSERT(whole == (bad == size && complete));

    /* one call over everything */

    s = NGX_CHAT_UTF8_ACCEPT;
    rc = ngx_chat_utf8_validate(&s, data, size);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    FUZZ_ASSERT((rc == -1) == (bad < size));
    FUZZ_ASSERT((rc == -1) == (s == NGX_CHAT_UTF8_REJECT));
    FUZZ_ASSERT(whole == (rc == 0 && s == NGX_CHAT_UTF8_ACCEPT));

    /* byte by byte: the first failure is at the reference's offset */

    s = NGX_CHAT_UTF8_ACCEPT;

    for (i = 0; i < size; i++) {
        rc = ngx_chat_utf8_validate(&s, data + i, 1);

        if (rc != 0) {
            break;
        }
    }

    FUZZ_ASSERT(i == bad);

    if (i < size) {
        /* sticky: any further byte fails too */
        FUZZ_ASSERT(s == NGX_CHAT_UTF8_REJECT);
        s2 = s;
        FUZZ_ASSERT(ngx_chat_utf8_validate(&s2, (const unsigned char *) "a",
                                           1) == -1);
        FUZZ_ASSERT(s2 == NGX_CHAT_UTF8_REJECT);

    } else {
        FUZZ_ASSERT((s == NGX_CHAT_UTF8_ACCEPT) == complete);
    }

    /* two pieces, at every offset (sampled past 256 bytes) */

    step = size <= 256 ? 1 : size / 256;

    for (i = 0; i <= size; i += step) {
        s = NGX_CHAT_UTF8_ACCEPT;
        rc = ngx_chat_utf8_validate(&s, data, i);

        FUZZ_ASSERT((rc == -1) == (bad < i));

        rc2 = rc == 0 ? ngx_chat_utf8_validate(&s, data + i, size - i) : -1;

        FUZZ_ASSERT((rc2 == -1) == (bad < size));
        FUZZ_ASSERT(whole == (rc2 == 0 && s == NGX_CHAT_UTF8_ACCEPT));
    }

    return 0;
}
