
/*
 * ngx_chat: client tokens.
 *
 * This file owns the verification of the JWT a client presents before the
 * WebSocket upgrade (RFC 7519, JWS compact serialization, RFC 7515), and
 * the one implementation of signing such tokens, shared by chatctl, the
 * load generator and, through chatctl, the integration tests:
 *
 *   base64url(header) "." base64url(payload) "." base64url(signature)
 *
 * The header must say alg "HS256", the signature is HMAC-SHA256 with the
 * configured secret over the first two parts as sent, and the payload
 * carries the claims: sub (the user id, required), exp (required), nbf
 * and iat (checked when present), dev (the device id, default "default").
 * Nothing here allocates beyond jansson's own parse, and nothing reads
 * past token + len.  Signing takes the header and payload bytes as given
 * and never parses them.
 */


#include <limits.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_chat_jwt.h"


#define NGX_CHAT_JWT_SIG_LEN   32      /* SHA-256 */

/* numeric dates beyond this many seconds either way are nonsense */
#define NGX_CHAT_JWT_TIME_MAX  1000000000000000LL


static int ngx_chat_b64url_value(unsigned c);
static json_t *ngx_chat_jwt_json(const unsigned char *s, size_t n,
    unsigned char *buf);
static int ngx_chat_jwt_time(json_t *root, const char *name, int64_t *t);


int
ngx_chat_jwt_verify(const unsigned char *token, size_t len,
    const unsigned char *secret, size_t secret_len, int64_t now_sec,
    ngx_chat_jwt_claims_t *out, const char **why)
{
    int                     rc;
    size_t                  n, sub_len, dev_len;
    int64_t                 exp, nbf, iat;
    json_t                 *root, *v;
    const char             *w, *alg, *sub, *dev;
    unsigned int            mac_len;
    const unsigned char    *d1, *d2, *end;
    unsigned char           mac[EVP_MAX_MD_SIZE];
    unsigned char           buf[NGX_CHAT_JWT_MAX_LEN / 4 * 3 + 3];

    root = NULL;
    rc = -1;

    if (len == 0 || token == NULL) {
        w = "no token";
        goto done;
    }

    if (len > NGX_CHAT_JWT_MAX_LEN) {
        w = "token too long";
        goto done;
    }

    if (secret == NULL || secret_len == 0 || secret_len > INT_MAX) {
        w = "no usable secret";
        goto done;
    }

    end = token + len;

    d1 = memchr(token, '.', len);
    if (d1 == NULL) {
        w = "token is not three dot-separated parts";
        goto done;
    }

    d2 = memchr(d1 + 1, '.', end - (d1 + 1));
    if (d2 == NULL || memchr(d2 + 1, '.', end - (d2 + 1)) != NULL) {
        w = "token is not three dot-separated parts";
        goto done;
    }

    if (d1 == token || d2 == d1 + 1 || d2 + 1 == end) {
        w = "empty part in token";
        goto done;
    }

    /* header */

    root = ngx_chat_jwt_json(token, d1 - token, buf);
    if (root == NULL) {
        w = "header is not base64url JSON object";
        goto done;
    }

    v = json_object_get(root, "alg");
    alg = json_is_string(v) ? json_string_value(v) : NULL;

    if (alg == NULL
        || json_string_length(v) != 5
        || memcmp(alg, "HS256", 5) != 0)
    {
        w = "alg is not HS256";
        goto done;
    }

    v = json_object_get(root, "typ");
    if (v != NULL && !json_is_string(v)) {
        w = "typ is not a string";
        goto done;
    }

    if (json_object_get(root, "crit") != NULL) {
        /* RFC 7515 4.1.11: extensions we do not know must fail */
        w = "crit header not supported";
        goto done;
    }

    json_decref(root);
    root = NULL;

    /* signature */

    if (ngx_chat_b64url_decode(d2 + 1, end - (d2 + 1), buf, &n) != 0
        || n != NGX_CHAT_JWT_SIG_LEN)
    {
        w = "signature is not 32 bytes of base64url";
        goto done;
    }

    mac_len = 0;

    if (HMAC(EVP_sha256(), secret, (int) secret_len, token, d2 - token,
             mac, &mac_len)
        == NULL
        || mac_len != NGX_CHAT_JWT_SIG_LEN)
    {
        w = "HMAC-SHA256 failed";
        goto done;
    }

    if (CRYPTO_memcmp(mac, buf, NGX_CHAT_JWT_SIG_LEN) != 0) {
        w = "bad signature";
        goto done;
    }

    /* claims */

    root = ngx_chat_jwt_json(d1 + 1, d2 - (d1 + 1), buf);
    if (root == NULL) {
        w = "payload is not base64url JSON object";
        goto done;
    }

    v = json_object_get(root, "sub");
    if (!json_is_string(v)) {
        w = "sub missing or not a string";
        goto done;
    }

    sub = json_string_value(v);
    sub_len = json_string_length(v);

    if (!ngx_chat_wire_valid_id(sub, sub_len)) {
        w = "sub is not a valid user id";
        goto done;
    }

    v = json_object_get(root, "dev");

    if (v == NULL) {
        dev = NGX_CHAT_WIRE_DEFAULT_DEVICE;
        dev_len = sizeof(NGX_CHAT_WIRE_DEFAULT_DEVICE) - 1;

    } else {
        if (!json_is_string(v)) {
            w = "dev is not a string";
            goto done;
        }

        dev = json_string_value(v);
        dev_len = json_string_length(v);

        if (!ngx_chat_wire_valid_id(dev, dev_len)) {
            w = "dev is not a valid device id";
            goto done;
        }
    }

    switch (ngx_chat_jwt_time(root, "exp", &exp)) {
    case 0:
        break;
    case 1:
        w = "exp missing";
        goto done;
    default:
        w = "exp is not a number of seconds";
        goto done;
    }

    if (now_sec >= exp) {
        w = "token expired";
        goto done;
    }

    /* (uint64_t) a - (uint64_t) b is a - b without overflow when a > b */

    switch (ngx_chat_jwt_time(root, "nbf", &nbf)) {
    case 0:
        if (nbf > now_sec
            && (uint64_t) nbf - (uint64_t) now_sec > NGX_CHAT_JWT_SKEW)
        {
            w = "token not yet valid (nbf)";
            goto done;
        }
        break;
    case 1:
        break;
    default:
        w = "nbf is not a number of seconds";
        goto done;
    }

    switch (ngx_chat_jwt_time(root, "iat", &iat)) {
    case 0:
        if (iat > now_sec
            && (uint64_t) iat - (uint64_t) now_sec > NGX_CHAT_JWT_SKEW)
        {
            w = "token issued in the future (iat)";
            goto done;
        }
        break;
    case 1:
        iat = 0;
        break;
    default:
        w = "iat is not a number of seconds";
        goto done;
    }

    if (out) {
        memcpy(out->sub, sub, sub_len);
        out->sub[sub_len] = '\0';
        memcpy(out->dev, dev, dev_len);
        out->dev[dev_len] = '\0';
        out->exp = exp;
        out->iat = iat;
    }

    w = NULL;
    rc = 0;

done:

    if (root) {
        json_decref(root);
    }

    if (why) {
        *why = w;
    }

    return rc;
}


int
ngx_chat_jwt_sign(ngx_chat_jwt_alg_e alg, const unsigned char *header,
    size_t header_len, const unsigned char *payload, size_t payload_len,
    const unsigned char *secret, size_t secret_len, unsigned char *out,
    size_t size, size_t *len)
{
    size_t          n, need;
    unsigned int    mac_len;
    const EVP_MD   *md;
    unsigned char   mac[EVP_MAX_MD_SIZE];

    switch (alg) {
    case NGX_CHAT_JWT_HS256:
        md = EVP_sha256();
        break;
    case NGX_CHAT_JWT_HS384:
        md = EVP_sha384();
        break;
    case NGX_CHAT_JWT_HS512:
        md = EVP_sha512();
        break;
    case NGX_CHAT_JWT_UNSIGNED:
        md = NULL;
        break;
    default:
        return -1;
    }

    /*
     * far beyond the tokens nginx accepts (tests forge oversized ones too),
     * and small enough that the sum below cannot wrap
     */

    if (header_len > NGX_CHAT_JWT_MAX_LEN * 4
        || payload_len > NGX_CHAT_JWT_MAX_LEN * 4
        || secret_len > INT_MAX)
    {
        return -1;
    }

    need = ngx_chat_b64url_len(header_len) + 1
           + ngx_chat_b64url_len(payload_len) + 1
           + (md ? ngx_chat_b64url_len((size_t) EVP_MD_size(md)) : 0) + 1;

    if (out == NULL || size < need) {
        return -1;
    }

    n = ngx_chat_b64url_encode(header, header_len, out);
    out[n++] = '.';
    n += ngx_chat_b64url_encode(payload, payload_len, out + n);

    mac_len = 0;

    if (md != NULL
        && HMAC(md, secret, (int) secret_len, out, n, mac, &mac_len) == NULL)
    {
        return -1;
    }

    out[n++] = '.';
    n += ngx_chat_b64url_encode(mac, mac_len, out + n);

    *len = n;

    return 0;
}


static int
ngx_chat_b64url_value(unsigned c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '-') {
        return 62;
    }

    if (c == '_') {
        return 63;
    }

    return -1;
}


size_t
ngx_chat_b64url_encode(const unsigned char *src, size_t n,
    unsigned char *dst)
{
    size_t             i, o;
    uint32_t           v;
    static const char  alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    o = 0;

    for (i = 0; i + 3 <= n; i += 3) {
        v = (uint32_t) src[i] << 16 | (uint32_t) src[i + 1] << 8 | src[i + 2];
        dst[o++] = alphabet[v >> 18];
        dst[o++] = alphabet[v >> 12 & 63];
        dst[o++] = alphabet[v >> 6 & 63];
        dst[o++] = alphabet[v & 63];
    }

    if (n - i == 1) {
        v = (uint32_t) src[i] << 16;
        dst[o++] = alphabet[v >> 18];
        dst[o++] = alphabet[v >> 12 & 63];

    } else if (n - i == 2) {
        v = (uint32_t) src[i] << 16 | (uint32_t) src[i + 1] << 8;
        dst[o++] = alphabet[v >> 18];
        dst[o++] = alphabet[v >> 12 & 63];
        dst[o++] = alphabet[v >> 6 & 63];
    }

    dst[o] = '\0';

    return o;
}


/*
 * '=', '+', '/', white space and a length of 4k+1 are errors, and so are
 * non-zero unused bits at the end, so that each value has exactly one
 * encoding.
 */

int
ngx_chat_b64url_decode(const unsigned char *s, size_t n, unsigned char *dst,
    size_t *dst_len)
{
    int       v;
    size_t    i, o;
    uint32_t  acc;
    unsigned  bits;

    if (n % 4 == 1) {
        return -1;
    }

    acc = 0;
    bits = 0;
    o = 0;

    for (i = 0; i < n; i++) {
        v = ngx_chat_b64url_value(s[i]);
        if (v < 0) {
            return -1;
        }

        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            dst[o++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    if (acc != 0) {
        return -1;
    }

    *dst_len = o;

    return 0;
}


/* decodes one part into buf and parses it: a JSON object, or NULL */

static json_t *
ngx_chat_jwt_json(const unsigned char *s, size_t n, unsigned char *buf)
{
    size_t        len;
    json_t       *root;
    json_error_t  err;

    if (ngx_chat_b64url_decode(s, n, buf, &len) != 0) {
        return NULL;
    }

    root = json_loadb((const char *) buf, len, JSON_REJECT_DUPLICATES, &err);

    if (root != NULL && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }

    return root;
}


/*
 * A NumericDate claim: 0 and *t on success, 1 if absent, -1 if not a
 * number or out of range.  A fraction is rounded up, which keeps the
 * comparisons with a whole now_sec exact.
 */

static int
ngx_chat_jwt_time(json_t *root, const char *name, int64_t *t)
{
    double   d;
    int64_t  i;
    json_t  *v;

    v = json_object_get(root, name);

    if (v == NULL) {
        return 1;
    }

    if (json_is_integer(v)) {
        i = (int64_t) json_integer_value(v);

    } else if (json_is_real(v)) {
        d = json_real_value(v);

        if (!(d > -(double) NGX_CHAT_JWT_TIME_MAX
              && d < (double) NGX_CHAT_JWT_TIME_MAX))
        {
            return -1;
        }

        i = (int64_t) d;

        if ((double) i < d) {
            i++;
        }

    } else {
        return -1;
    }

    if (i > NGX_CHAT_JWT_TIME_MAX || i < -NGX_CHAT_JWT_TIME_MAX) {
        return -1;
    }

    *t = i;

    return 0;
}
