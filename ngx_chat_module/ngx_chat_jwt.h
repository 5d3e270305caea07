
/*
 * ngx_chat: client token check, a JWT (RFC 7519) signed HS256.
 * Pure C (OpenSSL for the HMAC, jansson for the JSON), no nginx headers.
 */


#ifndef _NGX_CHAT_JWT_H_INCLUDED_
#define _NGX_CHAT_JWT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_chat_wire.h"


#define NGX_CHAT_JWT_MAX_LEN   4096   /* longer tokens are rejected */
#define NGX_CHAT_JWT_SKEW      60     /* seconds allowed for nbf and iat */


typedef struct {
    char                       sub[NGX_CHAT_WIRE_ID_MAX + 1];  /* user */
    char                       dev[NGX_CHAT_WIRE_ID_MAX + 1];  /* device */
    int64_t                    exp;   /* seconds; a fraction is rounded up */
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


#endif /* _NGX_CHAT_JWT_H_INCLUDED_ */
