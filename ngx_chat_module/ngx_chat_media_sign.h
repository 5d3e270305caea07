
/*
 * Signed media URLs, as pure C (ngx_chat_media_sign.c): the module signs
 * the PUT URL of an upload and checks every PUT and GET of a file against
 * its signature and expiry (ngx_chat_media.c). A URL is
 *
 *     <base><attachment_id>?n=<size>&e=<expires_ms>&s=<signature>
 *
 * the signature being HMAC-SHA256, in lowercase hex, of
 * "<method>\n<attachment_id>\n<size>\n<expires_ms>" under the media
 * secret: a PUT URL cannot be used to GET, nor for other bytes than the
 * announced size, nor after it expires.
 */


#ifndef _NGX_CHAT_MEDIA_SIGN_H_INCLUDED_
#define _NGX_CHAT_MEDIA_SIGN_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* an attachment id: 32 lowercase hex digits */
#define NGX_CHAT_MEDIA_ID_LEN     32
#define NGX_CHAT_MEDIA_SIG_LEN    64
/* upload: content_type and name, bytes / characters at most */
#define NGX_CHAT_MEDIA_TYPE_MAX   127
#define NGX_CHAT_MEDIA_NAME_MAX   255


/* the upload settings the protocol layer needs (the module's directives) */
typedef struct ngx_chat_media_conf_s {
    const char   *secret;
    size_t        secret_len;
    const char   *base;          /* URL prefix the file location serves */
    size_t        base_len;
    int64_t       max_bytes;
    const char   *types;         /* allowed content types, space separated */
    size_t        types_len;
    int64_t       ttl_ms;        /* how long a URL stays valid */
} ngx_chat_media_conf_t;


/* sig gets NGX_CHAT_MEDIA_SIG_LEN hex digits and a NUL */
void ngx_chat_media_sign(const char *secret, size_t secret_len,
    const char *method, const char *id, size_t id_len, int64_t size,
    int64_t expires_ms, char *sig);

/* 1 when sig (sig_len bytes) is the signature of these, else 0; in
 * constant time */
int ngx_chat_media_verify(const char *secret, size_t secret_len,
    const char *method, const char *id, size_t id_len, int64_t size,
    int64_t expires_ms, const char *sig, size_t sig_len);

/* the URL into buf of room bytes (NUL-terminated); its length, or 0 if
 * it does not fit */
size_t ngx_chat_media_url(char *buf, size_t room,
    const ngx_chat_media_conf_t *conf, const char *method, const char *id,
    size_t id_len, int64_t size, int64_t expires_ms);

/* is type (len bytes) one of conf's types? (ASCII case ignored) */
int ngx_chat_media_type_allowed(const ngx_chat_media_conf_t *conf,
    const char *type, size_t len);

/* 1 when p is a well-formed attachment id */
int ngx_chat_media_valid_id(const char *p, size_t len);


#endif /* _NGX_CHAT_MEDIA_SIGN_H_INCLUDED_ */
