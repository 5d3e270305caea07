
/*
 * ngx_chat: client tokens, JWTs (RFC 7519) signed HS256: the check nginx
 * makes, and the signing chatctl and the load generator do.
 * Pure C (OpenSSL for the HMAC, jansson for the JSON), no nginx headers.
 */


#ifndef _NGX_CHAT_JWT_H_INCLUDED_
#define _NGX_CHAT_JWT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_chat_wire.h"


#define NGX_CHAT_JWT_MAX_LEN   4096   /* longer tokens are rejected */
#define NGX_CHAT_JWT_SKEW      60     /* seconds allowed for nbf and iat */
#define NGX_CHAT_JWT_MAC_MAX   64     /* the longest signature, HS512 */


/* base64url of n bytes, without padding, is this many characters */
#define ngx_chat_b64url_len(n)  ((n) / 3 * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))


/*
 * The signatures ngx_chat_jwt_sign() makes.  Only HS256 passes
 * ngx_chat_jwt_verify(); the others exist so that tests can forge the
 * tokens a client might try.
 */
typedef enum {
    NGX_CHAT_JWT_HS256 = 0,
    NGX_CHAT_JWT_HS384,
    NGX_CHAT_JWT_HS512,
    NGX_CHAT_JWT_UNSIGNED     /* an empty signature, as alg "none" has */
} ngx_chat_jwt_alg_e;


typedef struct {
    char                       sub[NGX_CHAT_WIRE_ID_MAX + 1];  /* user */
    char                       dev[NGX_CHAT_WIRE_ID_MAX + 1];  /* device */
    int64_t                    exp;   /* seconds; a fraction is rounded up */
    int64_t                    iat;   /* the same; 0 when absent */
} ngx_chat_jwt_claims_t;


/*
 * Checks the token (the compact serialization, without "Bearer ") against
 * the secret at time now_sec (seconds since the epoch).  Returns 0 and
 * fills *out when the token is good; returns -1 and points *why at a
 * static reason (for the log, not for the client) when it is not: a
 * header alg other than exactly "HS256", a crit header, bad base64url
 * (padding included), a bad signature, a sub or dev that is not a valid
 * id, exp missing or now >= exp, nbf or iat more than NGX_CHAT_JWT_SKEW
 * seconds in the future.  out and why may be NULL.
 */
int ngx_chat_jwt_verify(const unsigned char *token, size_t len,
    const unsigned char *secret, size_t secret_len, int64_t now_sec,
    ngx_chat_jwt_claims_t *out, const char **why);

/*
 * Mints a token: base64url(header) "." base64url(payload) "." base64url(the
 * MAC over the first two parts as encoded), NUL-terminated in out (size
 * bytes).  The header and the payload are signed as given, normally compact
 * JSON; nothing in them is checked, so that tests can forge tokens too.
 * Returns 0 and the length in *len, or -1 when out is too small or the HMAC
 * failed.
 */
int ngx_chat_jwt_sign(ngx_chat_jwt_alg_e alg, const unsigned char *header,
    size_t header_len, const unsigned char *payload, size_t payload_len,
    const unsigned char *secret, size_t secret_len, unsigned char *out,
    size_t size, size_t *len);

/*
 * base64url without padding (RFC 7515 2).  encode writes
 * ngx_chat_b64url_len(n) characters and a NUL to dst and returns their
 * count.  decode refuses padding, white space, other alphabets, a length
 * of 4k+1 and non-zero unused bits (so each value has one encoding);
 * dst needs n * 3 / 4 bytes.  Returns 0, or -1 on bad input.
 */
size_t ngx_chat_b64url_encode(const unsigned char *src, size_t n,
    unsigned char *dst);
int ngx_chat_b64url_decode(const unsigned char *s, size_t n,
    unsigned char *dst, size_t *dst_len);


#endif /* _NGX_CHAT_JWT_H_INCLUDED_ */
