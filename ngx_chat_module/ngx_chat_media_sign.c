
/*
 * Signed media URLs (ngx_chat_media_sign.h). Pure C over OpenSSL's HMAC:
 * the module, the unit tests and the workers link it.
 */


#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_chat_media_sign.h"


void
ngx_chat_media_sign(const char *secret, size_t secret_len,
    const char *method, const char *id, size_t id_len, int64_t size,
    int64_t expires_ms, char *sig)
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      mac[EVP_MAX_MD_SIZE];
    unsigned int       mac_len = 0, i;
    char               text[256];
    int                n;

    n = snprintf(text, sizeof(text), "%s\n%.*s\n%lld\n%lld", method,
                 (int) (id_len > 64 ? 64 : id_len), id, (long long) size,
                 (long long) expires_ms);

    if (n < 0 || (size_t) n >= sizeof(text)
        || HMAC(EVP_sha256(), secret, (int) secret_len,
                (const unsigned char *) text, (size_t) n, mac, &mac_len)
           == NULL)
    {
        /* never valid: a signature has no 'x' */
        memset(sig, 'x', NGX_CHAT_MEDIA_SIG_LEN);
        sig[NGX_CHAT_MEDIA_SIG_LEN] = '\0';
        return;
    }

    for (i = 0; i < mac_len && i * 2 < NGX_CHAT_MEDIA_SIG_LEN; i++) {
        sig[i * 2] = hex[mac[i] >> 4];
        sig[i * 2 + 1] = hex[mac[i] & 0xf];
    }

    sig[NGX_CHAT_MEDIA_SIG_LEN] = '\0';
}


int
ngx_chat_media_verify(const char *secret, size_t secret_len,
    const char *method, const char *id, size_t id_len, int64_t size,
    int64_t expires_ms, const char *sig, size_t sig_len)
{
    char  want[NGX_CHAT_MEDIA_SIG_LEN + 1];

    if (sig_len != NGX_CHAT_MEDIA_SIG_LEN || secret_len == 0) {
        return 0;
    }

    ngx_chat_media_sign(secret, secret_len, method, id, id_len, size,
                        expires_ms, want);

    return CRYPTO_memcmp(want, sig, NGX_CHAT_MEDIA_SIG_LEN) == 0;
}


size_t
ngx_chat_media_url(char *buf, size_t room, const ngx_chat_media_conf_t *conf,
    const char *method, const char *id, size_t id_len, int64_t size,
    int64_t expires_ms)
{
    char  sig[NGX_CHAT_MEDIA_SIG_LEN + 1];
    int   n;

    ngx_chat_media_sign(conf->secret, conf->secret_len, method, id, id_len,
                        size, expires_ms, sig);

    n = snprintf(buf, room, "%.*s%.*s?n=%lld&e=%lld&s=%s",
                 (int) conf->base_len, conf->base, (int) id_len, id,
                 (long long) size, (long long) expires_ms, sig);

    return n < 0 || (size_t) n >= room ? 0 : (size_t) n;
}


int
ngx_chat_media_type_allowed(const ngx_chat_media_conf_t *conf,
    const char *type, size_t len)
{
    const char  *p, *end, *word;
    size_t       i;

    if (len == 0) {
        return 0;
    }

    p = conf->types;
    end = conf->types + conf->types_len;

    while (p < end) {
        while (p < end && *p == ' ') {
            p++;
        }

        word = p;

        while (p < end && *p != ' ') {
            p++;
        }

        if ((size_t) (p - word) != len) {
            continue;
        }

        for (i = 0; i < len; i++) {
            char  a = word[i], b = type[i];

            if (a >= 'A' && a <= 'Z') {
                a = (char) (a - 'A' + 'a');
            }

            if (b >= 'A' && b <= 'Z') {
                b = (char) (b - 'A' + 'a');
            }

            if (a != b) {
                break;
            }
        }

        if (i == len) {
            return 1;
        }
    }

    return 0;
}


int
ngx_chat_media_valid_id(const char *p, size_t len)
{
    size_t  i;

    if (len != NGX_CHAT_MEDIA_ID_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}
