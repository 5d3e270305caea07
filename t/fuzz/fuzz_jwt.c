
/*
 * libFuzzer target: the token check (ngx_chat_jwt_verify).
 *
 * Input: byte 0 picks the mode (low two bits), the rest is:
 *
 *   mode 0   a token, as the client sends it
 *   mode 1   header JSON, a 0xff byte, claims JSON: both encoded and
 *            properly signed with the secret
 *   mode 2   claims JSON, signed under the header {"alg":"HS256","typ":"JWT"}
 *   mode 3   header JSON, signed over good claims
 *
 * Every token lies in a malloc()ed buffer of its exact size (ASan sees any
 * read past token + len).  Checked: a verdict is deterministic; why is
 * set exactly on failure; accepted claims are valid ids and not expired;
 * a signed token never fails on its signature, and does as soon as the
 * signature or the secret changes; claims that are plainly good under a
 * good header are accepted.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include "ngx_chat_jwt.h"


#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_jwt: %s:%d: assertion failed: %s\n",        \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


#define NOW      1700000000LL

static const unsigned char  secret[] = "0123456789abcdef0123456789abcdef";
#define SECRET_LEN  (sizeof(secret) - 1)

static const char  good_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char  good_claims[] =
    "{\"sub\":\"alice\",\"dev\":\"phone\",\"exp\":1700003600,"
    "\"iat\":1700000000}";


/* verifies a token kept in an exact-size heap copy, twice */

static int
verify(const unsigned char *tok, size_t len, const unsigned char *key,
    size_t key_len, ngx_chat_jwt_claims_t *out, const char **why)
{
    int                     rc, rc2;
    const char             *why2;
    unsigned char          *copy;
    ngx_chat_jwt_claims_t   out2;

    copy = malloc(len ? len : 1);
    FUZZ_ASSERT(copy != NULL);
    if (len) {
        memcpy(copy, tok, len);
    }

    memset(out, 0xa5, sizeof(ngx_chat_jwt_claims_t));
    *why = NULL;

    rc = ngx_chat_jwt_verify(copy, len, key, key_len, NOW, out, why);

    FUZZ_ASSERT(rc == 0 || rc == -1);
    FUZZ_ASSERT((rc == 0) == (*why == NULL));

    if (rc == 0) {
        FUZZ_ASSERT(memchr(out->sub, '\0', sizeof(out->sub)) != NULL);
        FUZZ_ASSERT(memchr(out->dev, '\0', sizeof(out->dev)) != NULL);
        FUZZ_ASSERT(ngx_chat_wire_valid_id((const char *) out->sub,
                                      strlen(out->sub)));
        FUZZ_ASSERT(ngx_chat_wire_valid_id((const char *) out->dev,
                                      strlen(out->dev)));
        FUZZ_ASSERT(out->exp > NOW);
    }

    /* the same verdict again, and without out and why */

    rc2 = ngx_chat_jwt_verify(copy, len, key, key_len, NOW, &out2, &why2);
    FUZZ_ASSERT(rc2 == rc);
    FUZZ_ASSERT(why2 == *why);
    if (rc == 0) {
        FUZZ_ASSERT(strcmp(out2.sub, out->sub) == 0);
        FUZZ_ASSERT(strcmp(out2.dev, out->dev) == 0);
        FUZZ_ASSERT(out2.exp == out->exp);
    }

    FUZZ_ASSERT(ngx_chat_jwt_verify(copy, len, key, key_len, NOW, NULL, NULL)
                == rc);

    /* no secret: nothing passes */
    FUZZ_ASSERT(ngx_chat_jwt_verify(copy, len, key, 0, NOW, NULL, NULL)
                == -1);

    free(copy);

    return rc;
}


/*
 * Claims that are plainly good: a JSON object with a valid sub, no dev or
 * a valid one, an integer exp after NOW (and sane), no nbf or iat.
 */

static int
plainly_good(const unsigned char *claims, size_t n,
    ngx_chat_jwt_claims_t *want)
{
    int          ok;
    json_t      *root, *sub, *dev, *exp;
    json_int_t   e;

    root = json_loadb((const char *) claims, n, JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL) {
        return 0;
    }

    ok = 0;

    if (!json_is_object(root)) {
        goto done;
    }

    sub = json_object_get(root, "sub");
    dev = json_object_get(root, "dev");
    exp = json_object_get(root, "exp");

    if (!json_is_string(sub)
        || !ngx_chat_wire_valid_id((const char *) json_string_value(sub),
                              json_string_length(sub)))
    {
        goto done;
    }

    if (dev != NULL
        && (!json_is_string(dev)
            || !ngx_chat_wire_valid_id((const char *) json_string_value(dev),
                                  json_string_length(dev))))
    {
        goto done;
    }

    if (!json_is_integer(exp)) {
        goto done;
    }

    e = json_integer_value(exp);

    if (e <= NOW || e > 1000000000000LL) {
        goto done;
    }

    if (json_object_get(root, "nbf") || json_object_get(root, "iat")) {
        goto done;
    }

    snprintf(want->sub, sizeof(want->sub), "%s", json_string_value(sub));
    snprintf(want->dev, sizeof(want->dev), "%s",
             dev ? json_string_value(dev) : "default");
    want->exp = e;
    ok = 1;

done:

    json_decref(root);

    return ok;
}


/* a header that is plainly good: alg "HS256", typ a string or absent */

static int
header_plainly_good(const unsigned char *hdr, size_t n)
{
    int      ok;
    json_t  *root, *alg, *typ;

    root = json_loadb((const char *) hdr, n, JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL) {
        return 0;
    }

    alg = json_object_get(root, "alg");
    typ = json_object_get(root, "typ");

    ok = json_is_object(root)
         && json_is_string(alg)
         && json_string_length(alg) == 5
         && memcmp(json_string_value(alg), "HS256", 5) == 0
         && (typ == NULL || json_is_string(typ))
         && json_object_get(root, "crit") == NULL;

    json_decref(root);

    return ok;
}


static void
signed_token(const unsigned char *hdr, size_t hdr_len,
    const unsigned char *claims, size_t claims_len, int header_good)
{
    int                     rc, good;
    size_t                  len, size, sig_at;
    const char             *why;
    unsigned char          *tok;
    ngx_chat_jwt_claims_t   out, want;

    size = ngx_chat_b64url_len(hdr_len) + 1 + ngx_chat_b64url_len(claims_len)
           + 1 + ngx_chat_b64url_len(32) + 1;
    tok = malloc(size);
    FUZZ_ASSERT(tok != NULL);

    /* signed by the implementation chatctl and the load generator use */

    if (ngx_chat_jwt_sign(NGX_CHAT_JWT_HS256, hdr, hdr_len, claims,
                          claims_len, secret, SECRET_LEN, tok, size, &len)
        != 0)
    {
        /* it refuses only parts far longer than any token verify takes */
        FUZZ_ASSERT(hdr_len > 4 * NGX_CHAT_JWT_MAX_LEN
                    || claims_len > 4 * NGX_CHAT_JWT_MAX_LEN);
        free(tok);
        return;
    }

    FUZZ_ASSERT(len == size - 1);
    sig_at = len - ngx_chat_b64url_len(32);

    rc = verify(tok, len, secret, SECRET_LEN, &out, &why);

    if (rc != 0) {
        /* the signature is right, whatever else is wrong */
        FUZZ_ASSERT(strcmp(why, "bad signature") != 0);
        FUZZ_ASSERT(strcmp(why, "signature is not 32 bytes of base64url")
                    != 0);
        FUZZ_ASSERT(strcmp(why, "HMAC-SHA256 failed") != 0);
    }

    good = len <= NGX_CHAT_JWT_MAX_LEN
           && (header_good || header_plainly_good(hdr, hdr_len))
           && plainly_good(claims, claims_len, &want);

    if (good) {
        if (rc != 0) {
            fprintf(stderr, "fuzz_jwt: good token refused: %s\n", why);
        }
        FUZZ_ASSERT(rc == 0);
        FUZZ_ASSERT(strcmp(out.sub, want.sub) == 0);
        FUZZ_ASSERT(strcmp(out.dev, want.dev) == 0);
        FUZZ_ASSERT(out.exp == want.exp);
    }

    if (rc == 0 && len <= NGX_CHAT_JWT_MAX_LEN) {
        /* another secret, or one signature character changed: refused */

        FUZZ_ASSERT(verify(tok, len, secret, SECRET_LEN - 1, &out, &why)
                    == -1);

        tok[sig_at] = (tok[sig_at] == 'A') ? 'B' : 'A';
        FUZZ_ASSERT(verify(tok, len, secret, SECRET_LEN, &out, &why) == -1);
    }

    free(tok);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char             *why;
    const uint8_t          *ff;
    ngx_chat_jwt_claims_t   out;

    if (size < 1) {
        return 0;
    }

    switch (data[0] & 3) {

    case 0:
        (void) verify(data + 1, size - 1, secret, SECRET_LEN, &out, &why);
        break;

    case 1:
        ff = memchr(data + 1, 0xff, size - 1);
        if (ff == NULL) {
            return 0;
        }

        signed_token(data + 1, ff - (data + 1), ff + 1,
                     size - (ff + 1 - data), 0);
        break;

    case 2:
        signed_token((const unsigned char *) good_header,
                     sizeof(good_header) - 1, data + 1, size - 1, 1);
        break;

    default:
        signed_token(data + 1, size - 1,
                     (const unsigned char *) good_claims,
                     sizeof(good_claims) - 1, 0);
        break;
    }

    return 0;
}
