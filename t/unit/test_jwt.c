
/*
 * Unit tests of client tokens (ngx_chat_module/ngx_chat_jwt.c): signing,
 * checked against published and independently computed tokens, then the
 * check nginx makes, on tokens that signing makes.  Standalone: no
 * framework.
 *
 *   cc -std=gnu11 -Wall -Wextra -Werror -I ngx_chat_module \
 *      t/unit/test_jwt.c ngx_chat_module/ngx_chat_frame.c \
 *      ngx_chat_module/ngx_chat_jwt.c -ljansson -lcrypto
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_chat_jwt.h"


#include "unit.h"


#define NOW     1714128000LL
#define SECRET  "s3cret-for-the-tests"

#define HS256   "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"


static const char  b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


/* header.payload signed HS256 with secret; returns a static buffer */

static char *
mk(const char *header, const char *payload, const char *secret)
{
    size_t       n;
    static char  tok[16384];

    if (ngx_chat_jwt_sign(NGX_CHAT_JWT_HS256, (const unsigned char *) header,
                          strlen(header), (const unsigned char *) payload,
                          strlen(payload), (const unsigned char *) secret,
                          strlen(secret), (unsigned char *) tok, sizeof(tok),
                          &n)
        != 0)
    {
        /* every verify test below depends on it */
        printf("FAIL %s:%d: ngx_chat_jwt_sign failed\n", __FILE__, __LINE__);
        exit(1);
    }

    return tok;
}


static int
verify(const char *tok, const char **why, ngx_chat_jwt_claims_t *c)
{
    return ngx_chat_jwt_verify((const unsigned char *) tok, strlen(tok),
                               (const unsigned char *) SECRET,
                               strlen(SECRET), NOW, c, why);
}


static void
accept_tok(const char *name, const char *tok, const char *sub,
    const char *dev)
{
    int                     rc;
    const char             *why;
    ngx_chat_jwt_claims_t   c;

    memset(&c, 0x5a, sizeof(c));
    why = "unset";

    rc = verify(tok, &why, &c);

    CHECK(rc == 0 && why == NULL && strcmp(c.sub, sub) == 0
          && strcmp(c.dev, dev) == 0,
          "%s: rc %d why \"%s\" sub \"%.70s\" dev \"%.70s\"",
          name, rc, why ? why : "(null)", rc ? "" : c.sub, rc ? "" : c.dev);
}


/* want: a piece of the expected reason, so a test hits the right check */

static void
reject_tok(const char *name, const char *tok, const char *want)
{
    int                     rc;
    const char             *why;
    ngx_chat_jwt_claims_t   c;

    why = NULL;
    rc = verify(tok, &why, &c);

    CHECK(rc == -1 && why != NULL && strstr(why, want) != NULL,
          "%s: rc %d why \"%s\", want \"%s\"",
          name, rc, why ? why : "(null)", want);
}


static char *
claims(const char *fmt, long long a, long long b)
{
    static char  buf[4096];

    snprintf(buf, sizeof(buf), fmt, a, b);

    return buf;
}


static void
test_valid(void)
{
    int                     rc;
    char                    tok[16384];
    const char             *why;
    ngx_chat_jwt_claims_t   c;

    accept_tok("minimal", mk(HS256, claims("{\"sub\":\"alice\",\"exp\":%lld}",
                                           NOW + 3600, 0), SECRET),
               "alice", "default");

    accept_tok("no typ", mk("{\"alg\":\"HS256\"}",
                            claims("{\"sub\":\"bob\",\"exp\":%lld}",
                                   NOW + 1, 0), SECRET),
               "bob", "default");

    accept_tok("all claims",
               mk("{\"typ\":\"JWT\",\"alg\":\"HS256\",\"kid\":\"k1\"}",
                  claims("{\"iss\":\"x\",\"sub\":\"carol@example.org\","
                         "\"dev\":\"phone-1\",\"iat\":%lld,\"nbf\":%lld,"
                         "\"exp\":9999999999,\"extra\":[1,{\"a\":null}]}",
                         NOW - 10, NOW - 10), SECRET),
               "carol@example.org", "phone-1");

    accept_tok("every id character",
               mk(HS256, claims("{\"sub\":\"ABCXYZabcxyz0189_.@-\","
                                "\"dev\":\"_\",\"exp\":%lld}",
                                NOW + 60, 0), SECRET),
               "ABCXYZabcxyz0189_.@-", "_");

    accept_tok("64-character sub and dev",
               mk(HS256, claims("{\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
                                "\"dev\":\"dddddddddddddddddddddddddddddddd"
                                "dddddddddddddddddddddddddddddddd\","
                                "\"exp\":%lld}", NOW + 60, 0), SECRET),
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
               "dddddddddddddddddddddddddddddddd"
               "dddddddddddddddddddddddddddddddd");

    accept_tok("exp as a real, half a second left",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld.5}", NOW, 0),
                  SECRET), "a", "default");

    accept_tok("nbf within the skew",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}",
                                NOW + 3600, NOW + 60), SECRET),
               "a", "default");

    accept_tok("iat within the skew",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"iat\":%lld}",
                                NOW + 3600, NOW + 30), SECRET),
               "a", "default");

    accept_tok("escaped sub",
               mk(HS256, claims("{\"sub\":\"\\u0061lice\",\"exp\":%lld}",
                                NOW + 60, 0), SECRET),
               "alice", "default");

    /* exp is returned; out and why may be NULL */

    strcpy(tok, mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld}", NOW + 7, 0),
                   SECRET));
    rc = verify(tok, &why, &c);
    CHECK(rc == 0 && c.exp == NOW + 7, "exp out: %lld", (long long) c.exp);
    CHECK(rc == 0 && c.iat == 0, "iat out when absent: %lld",
          (long long) c.iat);

    /* iat is returned too: revocations compare it */

    strcpy(tok, mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"iat\":%lld}",
                                 NOW + 7, NOW - 5), SECRET));
    rc = verify(tok, &why, &c);
    CHECK(rc == 0 && c.iat == NOW - 5, "iat out: %lld", (long long) c.iat);

    rc = ngx_chat_jwt_verify((const unsigned char *) tok, strlen(tok),
                             (const unsigned char *) SECRET, strlen(SECRET),
                             NOW, NULL, NULL);
    CHECK(rc == 0, "NULL out and why: %d", rc);

    /* the example token from jwt.io: an independent HMAC; it has no exp */

    why = NULL;
    rc = ngx_chat_jwt_verify((const unsigned char *)
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5"
        "MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", 155,
        (const unsigned char *) "your-256-bit-secret", 19, NOW, &c, &why);
    CHECK(rc == -1 && why != NULL && strcmp(why, "exp missing") == 0,
          "jwt.io example: why \"%s\"", why ? why : "(null)");
}


static void
test_alg(void)
{
    char  *t, tok[16384];
    char  *pl;

    pl = claims("{\"sub\":\"alice\",\"exp\":%lld}", NOW + 3600, 0);

    reject_tok("alg none", mk("{\"alg\":\"none\"}", pl, SECRET), "alg");
    reject_tok("alg HS512", mk("{\"alg\":\"HS512\"}", pl, SECRET), "alg");
    reject_tok("alg RS256", mk("{\"alg\":\"RS256\"}", pl, SECRET), "alg");
    reject_tok("alg hs256", mk("{\"alg\":\"hs256\"}", pl, SECRET), "alg");
    reject_tok("alg HS2560", mk("{\"alg\":\"HS2560\"}", pl, SECRET), "alg");
    reject_tok("alg HS25", mk("{\"alg\":\"HS25\"}", pl, SECRET), "alg");
    reject_tok("alg missing", mk("{\"typ\":\"JWT\"}", pl, SECRET), "alg");
    reject_tok("alg null", mk("{\"alg\":null}", pl, SECRET), "alg");
    reject_tok("alg number", mk("{\"alg\":256}", pl, SECRET), "alg");
    reject_tok("alg array", mk("{\"alg\":[\"HS256\"]}", pl, SECRET), "alg");
    reject_tok("alg twice", mk("{\"alg\":\"none\",\"alg\":\"HS256\"}", pl,
                               SECRET), "header");
    reject_tok("typ not a string", mk("{\"alg\":\"HS256\",\"typ\":1}", pl,
                                      SECRET), "typ");
    reject_tok("crit", mk("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", pl,
                          SECRET), "crit");
    reject_tok("header an array", mk("[\"HS256\"]", pl, SECRET), "header");
    reject_tok("header a string", mk("\"HS256\"", pl, SECRET), "header");
    reject_tok("header not JSON", mk("{alg:HS256}", pl, SECRET), "header");
    reject_tok("header with trailing bytes",
               mk("{\"alg\":\"HS256\"}x", pl, SECRET), "header");

    /* alg none, unsigned: an empty third part */

    t = mk("{\"alg\":\"none\"}", pl, SECRET);
    *(strrchr(t, '.') + 1) = '\0';
    reject_tok("alg none unsigned", t, "empty");

    t = mk(HS256, pl, SECRET);
    *(strrchr(t, '.') + 1) = '\0';
    reject_tok("HS256 unsigned", t, "empty");

    t = mk(HS256, pl, SECRET);
    *strrchr(t, '.') = '\0';
    reject_tok("two parts", t, "three");

    strcpy(tok, mk(HS256, pl, SECRET));
    strcat(tok, ".e30");
    reject_tok("four parts", tok, "three");
}


static void
test_signature(void)
{
    int     rc;
    char   *pl, tok[16384], other[16384], *sig;
    size_t  i, n, bad;
    const char  *p;

    pl = claims("{\"sub\":\"alice\",\"exp\":%lld}", NOW + 3600, 0);

    reject_tok("wrong secret", mk(HS256, pl, "another secret"), "signature");
    reject_tok("secret with one more byte", mk(HS256, pl, SECRET "x"),
               "signature");

    /* the signature of another payload */

    strcpy(tok, mk(HS256, pl, SECRET));
    strcpy(other, mk(HS256, claims("{\"sub\":\"mallory\",\"exp\":%lld}",
                                   NOW + 3600, 0), SECRET));
    strcpy(strrchr(other, '.'), strrchr(tok, '.'));
    reject_tok("signature of another payload", other, "signature");

    /* flip each character of a valid token to each other base64url one */

    strcpy(tok, mk(HS256, pl, SECRET));
    n = strlen(tok);
    bad = 0;

    for (i = 0; i < n; i++) {
        if (tok[i] == '.') {
            continue;
        }

        for (p = b64url; *p; p++) {
            if (*p == tok[i]) {
                continue;
            }

            strcpy(other, tok);
            other[i] = *p;

            rc = ngx_chat_jwt_verify((const unsigned char *) other, n,
                                     (const unsigned char *) SECRET,
                                     strlen(SECRET), NOW, NULL, NULL);
            bad += (rc != -1);
        }
    }

    CHECK(bad == 0, "%zu one-character changes accepted", bad);

    /* every truncation, read from an exact-size heap copy */

    bad = 0;

    for (i = 0; i < n; i++) {
        unsigned char  *copy = malloc(i ? i : 1);

        memcpy(copy, tok, i);
        rc = ngx_chat_jwt_verify(copy, i, (const unsigned char *) SECRET,
                                 strlen(SECRET), NOW, NULL, NULL);
        bad += (rc != -1);
        free(copy);
    }

    CHECK(bad == 0, "%zu truncations accepted", bad);

    /* non-canonical: same bytes, unused low bits of the last char set */

    strcpy(tok, mk(HS256, pl, SECRET));
    sig = strrchr(tok, '.') + 1;
    CHECK(strlen(sig) == 43, "signature length %zu", strlen(sig));
    p = strchr(b64url, sig[42]);
    sig[42] = b64url[((p - b64url) & ~3) | 1];
    reject_tok("non-zero unused bits", tok, "signature");

    strcpy(tok, mk(HS256, pl, SECRET));
    strcat(tok, "A");
    reject_tok("signature with one more character", tok, "signature");

    strcpy(tok, mk(HS256, pl, SECRET));
    strcat(tok, "AA");
    reject_tok("signature with two more characters", tok, "signature");

    /* padding, standard alphabet, white space */

    strcpy(tok, mk(HS256, pl, SECRET));
    strcat(tok, "=");
    reject_tok("padded signature", tok, "signature");

    strcpy(tok, mk(HS256, pl, SECRET));
    n = strchr(tok, '.') - tok;
    memmove(tok + n + 2, tok + n, strlen(tok + n) + 1);
    tok[n] = '=';
    tok[n + 1] = '=';
    reject_tok("padded header", tok, "header");

    /* {"alg":"HS256"} is 15 bytes: 20 characters, padding would add one */

    strcpy(tok, mk("{\"alg\":\"HS256\"}", pl, SECRET));
    n = strchr(tok, '.') - tok;
    CHECK(n == 20, "header length %zu", n);
    memmove(tok + n + 1, tok + n, strlen(tok + n) + 1);
    tok[n] = '=';
    reject_tok("padded header, one =", tok, "header");

    strcpy(tok, mk(HS256, pl, SECRET));
    sig = strrchr(tok, '.') + 1;
    for (i = 0; sig[i]; i++) {
        if (sig[i] == '-' || sig[i] == '_') {
            break;
        }
    }
    if (sig[i] == '\0') {
        /* no - or _ in this one: put a + anywhere */
        i = 0;
    }
    sig[i] = (sig[i] == '-') ? '+' : '/';
    reject_tok("standard base64 alphabet", tok, "signature");

    strcpy(tok, mk(HS256, pl, SECRET));
    sig = strrchr(tok, '.') + 1;
    sig[10] = ' ';
    reject_tok("space in signature", tok, "signature");

    strcpy(tok, mk(HS256, pl, SECRET));
    sig = strrchr(tok, '.') + 1;
    sig[20] = '\0';
    reject_tok("short signature", tok, "signature");

    /* a valid token with a NUL byte in the middle of its length */

    strcpy(tok, mk(HS256, pl, SECRET));
    n = strlen(tok);
    tok[5] = '\0';
    rc = ngx_chat_jwt_verify((const unsigned char *) tok, n,
                             (const unsigned char *) SECRET, strlen(SECRET),
                             NOW, NULL, NULL);
    CHECK(rc == -1, "NUL inside: %d", rc);

    /* the secret */

    strcpy(tok, mk(HS256, pl, SECRET));
    rc = ngx_chat_jwt_verify((const unsigned char *) tok, strlen(tok),
                             (const unsigned char *) "", 0, NOW, NULL, NULL);
    CHECK(rc == -1, "empty secret: %d", rc);

    strcpy(tok, mk(HS256, pl, ""));
    rc = ngx_chat_jwt_verify((const unsigned char *) tok, strlen(tok),
                             (const unsigned char *) "", 0, NOW, NULL, NULL);
    CHECK(rc == -1, "empty secret, signed with it: %d", rc);
}


static void
test_times(void)
{
    reject_tok("exp now", mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld}",
                                           NOW, 0), SECRET), "expired");
    reject_tok("exp past", mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld}",
                                            NOW - 3600, 0), SECRET),
               "expired");
    reject_tok("exp real, half a second ago",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld.5}", NOW - 1, 0),
                  SECRET), "expired");
    reject_tok("exp missing", mk(HS256, "{\"sub\":\"a\"}", SECRET), "exp");
    reject_tok("exp null", mk(HS256, "{\"sub\":\"a\",\"exp\":null}", SECRET),
               "exp");
    reject_tok("exp string", mk(HS256, "{\"sub\":\"a\",\"exp\":\"9999999999\"}",
                                SECRET), "exp");
    reject_tok("exp true", mk(HS256, "{\"sub\":\"a\",\"exp\":true}", SECRET),
               "exp");
    reject_tok("exp huge", mk(HS256, "{\"sub\":\"a\",\"exp\":1e300}", SECRET),
               "exp");
    reject_tok("exp too big an integer",
               mk(HS256, "{\"sub\":\"a\",\"exp\":99999999999999999999}",
                  SECRET), "payload");
    reject_tok("exp INT64_MAX",
               mk(HS256, "{\"sub\":\"a\",\"exp\":9223372036854775807}",
                  SECRET), "exp");

    reject_tok("nbf in the future",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}",
                                NOW + 7200, NOW + 3600), SECRET), "nbf");
    reject_tok("nbf just beyond the skew",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}",
                                NOW + 7200, NOW + 61), SECRET), "nbf");
    reject_tok("nbf string",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"nbf\":\"0\"}",
                                NOW + 7200, 0), SECRET), "nbf");
    reject_tok("nbf most negative", mk(HS256, claims(
               "{\"sub\":\"a\",\"exp\":%lld,\"nbf\":-9223372036854775807}",
               NOW + 7200, 0), SECRET), "nbf");

    reject_tok("iat in the future",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"iat\":%lld}",
                                NOW + 7200, NOW + 3600), SECRET), "iat");
    reject_tok("iat just beyond the skew",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"iat\":%lld}",
                                NOW + 7200, NOW + 61), SECRET), "iat");
    reject_tok("iat object",
               mk(HS256, claims("{\"sub\":\"a\",\"exp\":%lld,\"iat\":{}}",
                                NOW + 7200, 0), SECRET), "iat");
}


static void
test_ids(void)
{
    char  *t;

    reject_tok("sub missing", mk(HS256, claims("{\"exp\":%lld}",
                                               NOW + 60, 0), SECRET), "sub");
    reject_tok("sub number", mk(HS256, claims("{\"sub\":42,\"exp\":%lld}",
                                              NOW + 60, 0), SECRET), "sub");
    reject_tok("sub null", mk(HS256, claims("{\"sub\":null,\"exp\":%lld}",
                                            NOW + 60, 0), SECRET), "sub");
    reject_tok("sub empty", mk(HS256, claims("{\"sub\":\"\",\"exp\":%lld}",
                                             NOW + 60, 0), SECRET), "sub");
    reject_tok("sub with a space",
               mk(HS256, claims("{\"sub\":\"al ice\",\"exp\":%lld}",
                                NOW + 60, 0), SECRET), "sub");
    reject_tok("sub with a slash",
               mk(HS256, claims("{\"sub\":\"al/ice\",\"exp\":%lld}",
                                NOW + 60, 0), SECRET), "sub");
    reject_tok("sub with a colon",
               mk(HS256, claims("{\"sub\":\"dm:a\",\"exp\":%lld}",
                                NOW + 60, 0), SECRET), "sub");
    reject_tok("sub not ASCII",
               mk(HS256, claims("{\"sub\":\"al\xc3\xaf" "ce\",\"exp\":%lld}",
                                NOW + 60, 0), SECRET), "sub");
    reject_tok("sub 65 characters",
               mk(HS256, claims("{\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
                                "\"exp\":%lld}", NOW + 60, 0), SECRET),
               "sub");
    reject_tok("sub twice",
               mk(HS256, claims("{\"sub\":\"a\",\"sub\":\"b\",\"exp\":%lld}",
                                NOW + 60, 0), SECRET), "payload");

    reject_tok("dev empty",
               mk(HS256, claims("{\"sub\":\"a\",\"dev\":\"\",\"exp\":%lld}",
                                NOW + 60, 0), SECRET), "dev");
    reject_tok("dev null",
               mk(HS256, claims("{\"sub\":\"a\",\"dev\":null,\"exp\":%lld}",
                                NOW + 60, 0), SECRET), "dev");
    reject_tok("dev number",
               mk(HS256, claims("{\"sub\":\"a\",\"dev\":1,\"exp\":%lld}",
                                NOW + 60, 0), SECRET), "dev");
    reject_tok("dev with a space",
               mk(HS256, claims("{\"sub\":\"a\",\"dev\":\"my phone\","
                                "\"exp\":%lld}", NOW + 60, 0), SECRET),
               "dev");
    reject_tok("dev 65 characters",
               mk(HS256, claims("{\"sub\":\"a\",\"dev\":\""
                                "ddddddddddddddddddddddddddddddddd"
                                "dddddddddddddddddddddddddddddddd\","
                                "\"exp\":%lld}", NOW + 60, 0), SECRET),
               "dev");

    reject_tok("payload an array", mk(HS256, "[1]", SECRET), "payload");
    reject_tok("payload not JSON", mk(HS256, "sub=alice", SECRET), "payload");
    reject_tok("payload empty object", mk(HS256, "{}", SECRET), "sub");

    t = mk(HS256, "{\"sub\":\"a\",\"exp\":9999999999}", SECRET);
    CHECK(verify(t, NULL, NULL) == 0, "sanity");

    CHECK(ngx_chat_wire_valid_id((const char *) "a", 1), "id a");
    CHECK(!ngx_chat_wire_valid_id((const char *) "", 0), "id empty");
    CHECK(!ngx_chat_wire_valid_id(NULL, 3), "id NULL");
    CHECK(ngx_chat_wire_valid_id((const char *) "0123456789012345678901234567890123456789"
                            "012345678901234567890123", 64), "id 64");
    CHECK(!ngx_chat_wire_valid_id((const char *) "0123456789012345678901234567890123456789"
                             "0123456789012345678901234", 65), "id 65");
    CHECK(!ngx_chat_wire_valid_id((const char *) "a\0b", 3), "id NUL");
    CHECK(!ngx_chat_wire_valid_id((const char *) "a+b", 3), "id +");
    CHECK(ngx_chat_wire_valid_id((const char *) "a+b", 1),
          "id: only len bytes are read");
}


static void
test_garbage(void)
{
    int            rc;
    char           tok[8192];
    size_t         i, n, bad;
    uint64_t       x;
    unsigned char  *copy;
    static const char  *junk[] = {
        "", ".", "..", "...", "a", "a.b", "a.b.", ".b.c", "a..c", "a.b.c.d",
        "Bearer x.y.z", "e30.e30.e30", "e30.e30.", "!!!.@@@.###",
        "eyJhbGciOiJIUzI1NiJ9.e30.AAAA"
    };

    for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        rc = verify(junk[i], NULL, NULL);
        CHECK(rc == -1, "junk \"%s\": %d", junk[i], rc);
    }

    /* too long: 4097 bytes, the limit itself does not matter much */

    memset(tok, 'A', 4097);
    tok[100] = '.';
    tok[200] = '.';
    tok[4097] = '\0';
    reject_tok("4097 bytes", tok, "too long");

    /* a valid token with a payload padding it out to near the limit */

    {
        char  pl[4096];

        n = (size_t) snprintf(pl, sizeof(pl),
                              "{\"sub\":\"a\",\"exp\":%lld,\"pad\":\"",
                              NOW + 60);
        memset(pl + n, 'p', 2800 - n);
        strcpy(pl + 2800, "\"}");
        strcpy(tok, mk(HS256, pl, SECRET));
        CHECK(strlen(tok) > 3800 && strlen(tok) <= 4096, "long token %zu",
              strlen(tok));
        accept_tok("long token", tok, "a", "default");

        memset(pl + n, 'p', 3100 - n);
        strcpy(pl + 3100, "\"}");
        strcpy(tok, mk(HS256, pl, SECRET));
        CHECK(strlen(tok) > 4096, "longer token %zu", strlen(tok));
        reject_tok("too long token", tok, "too long");
    }

    /* random bytes and random base64url, in exact-size heap buffers */

    x = 88172645463325252ULL;
    bad = 0;

    for (i = 0; i < 20000; i++) {
        size_t  k;

        n = (size_t) (x % 200);
        copy = malloc(n ? n : 1);

        for (k = 0; k < n; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            copy[k] = (i & 1) ? (unsigned char) x
                              : (unsigned char) ((x % 23 == 0) ? '.'
                                                 : b64url[x % 64]);
        }

        rc = ngx_chat_jwt_verify(copy, n, (const unsigned char *) SECRET,
                                 strlen(SECRET), NOW, NULL, NULL);
        bad += (rc != -1);
        free(copy);

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }

    CHECK(bad == 0, "%zu random tokens accepted", bad);
}


/* an expected token, from outside this code: a published or a Python one */

static void
sign_is(const char *name, ngx_chat_jwt_alg_e alg, const char *header,
    size_t header_len, const char *payload, size_t payload_len,
    const unsigned char *secret, size_t secret_len, const char *want)
{
    int            rc;
    size_t         n;
    unsigned char  tok[4096];

    n = 0;
    rc = ngx_chat_jwt_sign(alg, (const unsigned char *) header, header_len,
                           (const unsigned char *) payload, payload_len,
                           secret, secret_len, tok, sizeof(tok), &n);

    CHECK(rc == 0 && n == strlen(want) && strlen((char *) tok) == n
          && memcmp(tok, want, n) == 0,
          "%s: rc %d, got \"%s\", want \"%s\"", name, rc,
          rc ? "" : (char *) tok, want);
}


static void
test_sign(void)
{
    int            rc;
    char          *t;
    size_t         i, k, n, len, bad;
    uint64_t       x;
    unsigned char  key[64], in[100], enc[200], dec[100], tok[512];

    static const char  rfc_header[] =
        "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
    static const char  rfc_payload[] =
        "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n"
        " \"http://example.com/is_root\":true}";
    static const char  rfc_key[] =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4h"
        "cgUuTwjAzZr1Z9CAow";
    static const char  pl[] = "{\"sub\":\"alice\",\"exp\":1714131600}";

    /* RFC 7515 appendix A.1, the header and payload with their CR LFs */

    rc = ngx_chat_b64url_decode((const unsigned char *) rfc_key,
                                sizeof(rfc_key) - 1, key, &n);
    CHECK(rc == 0 && n == 64, "RFC 7515 A.1 key: rc %d, %zu bytes", rc, n);

    sign_is("RFC 7515 A.1", NGX_CHAT_JWT_HS256, rfc_header,
            sizeof(rfc_header) - 1, rfc_payload, sizeof(rfc_payload) - 1,
            key, n,
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
            "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
            "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");

    /* computed with Python's hmac and base64 */

    sign_is("HS384", NGX_CHAT_JWT_HS384, "{\"alg\":\"HS384\"}", 15,
            pl, sizeof(pl) - 1, (const unsigned char *) SECRET,
            strlen(SECRET),
            "eyJhbGciOiJIUzM4NCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcxNDEzMTYwMH0."
            "pGKH4aOrY67064BXFdqX5_Zx1lFbyT8DrMztWUXd4cj1kUP0sdXvKzzmUJmfZx40");

    sign_is("HS512", NGX_CHAT_JWT_HS512, "{\"alg\":\"HS512\"}", 15,
            pl, sizeof(pl) - 1, (const unsigned char *) SECRET,
            strlen(SECRET),
            "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcxNDEzMTYwMH0."
            "WxIh34xmK69tD6gtIbqek9LKJj7oAxDEkEaxDkwAW9L_kLRlvH8scYw9crhra7nS"
            "wSYF4NikrkqQ1J1LMNg_5Q");

    sign_is("unsigned", NGX_CHAT_JWT_UNSIGNED, "{\"alg\":\"none\"}", 14,
            pl, sizeof(pl) - 1, (const unsigned char *) SECRET,
            strlen(SECRET),
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcxNDEzMTYwMH0.");

    /* what signing makes, the check takes, and only HS256 */

    t = mk(HS256, claims("{\"sub\":\"alice\",\"dev\":\"d\",\"exp\":%lld}",
                         NOW + 60, 0), SECRET);
    accept_tok("signed HS256", t, "alice", "d");

    rc = ngx_chat_jwt_sign(NGX_CHAT_JWT_HS512,
                           (const unsigned char *) HS256, strlen(HS256),
                           (const unsigned char *) pl, sizeof(pl) - 1,
                           (const unsigned char *) SECRET, strlen(SECRET),
                           tok, sizeof(tok), &n);
    CHECK(rc == 0, "HS512 under an HS256 header: rc %d", rc);
    reject_tok("HS512 under an HS256 header", (char *) tok, "32 bytes");

    /* the output size, to the byte: the token and its NUL */

    rc = ngx_chat_jwt_sign(NGX_CHAT_JWT_HS256,
                           (const unsigned char *) HS256, strlen(HS256),
                           (const unsigned char *) pl, sizeof(pl) - 1,
                           (const unsigned char *) SECRET, strlen(SECRET),
                           tok, sizeof(tok), &len);
    CHECK(rc == 0 && len == ngx_chat_b64url_len(strlen(HS256)) + 1
                            + ngx_chat_b64url_len(sizeof(pl) - 1) + 1 + 43,
          "token length %zu", len);

    rc = ngx_chat_jwt_sign(NGX_CHAT_JWT_HS256,
                           (const unsigned char *) HS256, strlen(HS256),
                           (const unsigned char *) pl, sizeof(pl) - 1,
                           (const unsigned char *) SECRET, strlen(SECRET),
                           tok, len + 1, &n);
    CHECK(rc == 0 && n == len, "exact size: rc %d", rc);

    memset(tok, 'X', sizeof(tok));
    rc = ngx_chat_jwt_sign(NGX_CHAT_JWT_HS256,
                           (const unsigned char *) HS256, strlen(HS256),
                           (const unsigned char *) pl, sizeof(pl) - 1,
                           (const unsigned char *) SECRET, strlen(SECRET),
                           tok, len, &n);
    CHECK(rc == -1 && tok[0] == 'X', "one byte short: rc %d", rc);

    rc = ngx_chat_jwt_sign((ngx_chat_jwt_alg_e) 7,
                           (const unsigned char *) HS256, strlen(HS256),
                           (const unsigned char *) pl, sizeof(pl) - 1,
                           (const unsigned char *) SECRET, strlen(SECRET),
                           tok, sizeof(tok), &n);
    CHECK(rc == -1, "unknown alg: rc %d", rc);

    /* base64url: every length from 0 to 100 round-trips, at its length */

    x = 0x2545f4914f6cdd1dULL;
    bad = 0;

    for (n = 0; n <= sizeof(in); n++) {
        for (i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            in[i] = (unsigned char) x;
        }

        memset(enc, 0xff, sizeof(enc));
        k = ngx_chat_b64url_encode(in, n, enc);

        if (k != ngx_chat_b64url_len(n) || enc[k] != '\0'
            || strspn((char *) enc, b64url) != k
            || ngx_chat_b64url_decode(enc, k, dec, &len) != 0
            || len != n || memcmp(dec, in, n) != 0)
        {
            bad++;
        }
    }

    CHECK(bad == 0, "%zu base64url lengths do not round-trip", bad);

    k = ngx_chat_b64url_encode((const unsigned char *) "\xfb\xff", 2, enc);
    CHECK(k == 3 && strcmp((char *) enc, "-_8") == 0,
          "the URL alphabet: \"%s\"", enc);
}


int
main(void)
{
    test_sign();
    test_valid();
    test_alg();
    test_signature();
    test_times();
    test_ids();
    test_garbage();

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
