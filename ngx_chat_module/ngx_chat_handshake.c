
/*
 * The WebSocket opening handshake (RFC 6455 section 4.2) and the token check
 * that guards it: everything that happens while the connection is still an
 * HTTP request, up to the 101 answer that ngx_chat_session.c sends first. A
 * request that fails here gets a plain HTTP answer (400, 401, 405, 426) and
 * leaves no trace anywhere else. The permessage-deflate offers are
 * answered here too (ngx_chat_deflate.c chooses): an offer the location
 * cannot honour is not an error, the 101 just goes without the extension.
 *
 * A good token is then checked against the revocations (ngx_chat_revoke.c:
 * one Redis command, answered later): the request waits for the answer,
 * holding a reference, and is upgraded or refused with 401 from there.
 */


#include "ngx_chat.h"
#include "ngx_chat_jwt.h"

#include <ngx_sha1.h>


#define NGX_CHAT_UPGRADE_REQUIRED  426

#define NGX_CHAT_WS_GUID           "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* the 101 with every header it may have, the extension's included */
#define NGX_CHAT_RESPONSE_MAX      (256 + NGX_CHAT_DEFLATE_RESPONSE_MAX)


static ngx_table_elt_t *ngx_chat_find_header(ngx_http_request_t *r,
    char *name, size_t len);
static ngx_uint_t ngx_chat_has_token(ngx_str_t *value, char *token,
    size_t len);
static ngx_int_t ngx_chat_reject(ngx_http_request_t *r, ngx_uint_t status,
    char *why);
static ngx_int_t ngx_chat_get_token(ngx_http_request_t *r, ngx_str_t *token);
static void ngx_chat_hide_token(ngx_http_request_t *r);
/* a request waiting for its token's revocation check */
typedef struct {
    ngx_http_request_t        *request;
    ngx_str_t                  protocol;
    ngx_str_t                  key;
    ngx_chat_jwt_claims_t      claims;
} ngx_chat_handshake_wait_t;


static ngx_int_t ngx_chat_upgrade(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *device, ngx_str_t *protocol, ngx_str_t *key, int64_t expires,
    int64_t issued);
static ngx_int_t ngx_chat_handshake_revoked(ngx_http_request_t *r,
    ngx_str_t *protocol, ngx_str_t *key, ngx_chat_jwt_claims_t *claims);
static void ngx_chat_handshake_checked(void *data, ngx_int_t rc);
static ngx_int_t ngx_chat_deflate_offers(ngx_http_request_t *r,
    ngx_chat_deflate_params_t *params, char *response, size_t *len);


ngx_int_t
ngx_chat_handshake(ngx_http_request_t *r)
{
    u_char                     decoded[32];
    time_t                     now;
    ngx_str_t                  token, user, device, protocol, key, src, dst;
    const char                *why;
    ngx_table_elt_t           *h;
    ngx_chat_loc_conf_t       *lcf;
    ngx_chat_main_conf_t      *mcf;
    ngx_chat_jwt_claims_t      claims;

    ngx_chat_hide_token(r);

    if (r->method != NGX_HTTP_GET) {
        ngx_chat_stats->handshakes[NGX_CHAT_HANDSHAKE_NOT_ALLOWED]++;
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (r != r->main || r->http_version != NGX_HTTP_VERSION_11) {
        return ngx_chat_reject(r, NGX_HTTP_BAD_REQUEST,
                               "WebSocket needs an HTTP/1.1 request");
    }

    /* nginx keeps no pointer to the Connection header: look it up */
    h = ngx_chat_find_header(r, "Connection", sizeof("Connection") - 1);

    if (r->headers_in.upgrade == NULL
        || !ngx_chat_has_token(&r->headers_in.upgrade->value,
                               "websocket", sizeof("websocket") - 1)
        || h == NULL
        || !ngx_chat_has_token(&h->value, "upgrade", sizeof("upgrade") - 1))
    {
        return ngx_chat_reject(r, NGX_HTTP_BAD_REQUEST,
                               "not a WebSocket upgrade request");
    }

    h = ngx_chat_find_header(r, "Sec-WebSocket-Version",
                             sizeof("Sec-WebSocket-Version") - 1);

    if (h == NULL || h->value.len != 2
        || ngx_strncmp(h->value.data, "13", 2) != 0)
    {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Sec-WebSocket-Version");
        ngx_str_set(&h->value, "13");

        return ngx_chat_reject(r, NGX_CHAT_UPGRADE_REQUIRED,
                               "unsupported Sec-WebSocket-Version");
    }

    h = ngx_chat_find_header(r, "Sec-WebSocket-Key",
                             sizeof("Sec-WebSocket-Key") - 1);

    if (h == NULL || h->value.len != 24) {
        return ngx_chat_reject(r, NGX_HTTP_BAD_REQUEST,
                               "bad Sec-WebSocket-Key");
    }

    key = h->value;
    src = h->value;
    dst.data = decoded;

    if (ngx_decode_base64(&dst, &src) != NGX_OK || dst.len != 16) {
        return ngx_chat_reject(r, NGX_HTTP_BAD_REQUEST,
                               "bad Sec-WebSocket-Key");
    }

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        return ngx_chat_reject(r, NGX_HTTP_BAD_REQUEST,
                               "WebSocket upgrade with a body");
    }

    ngx_str_null(&protocol);

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    if (lcf->echo) {
        ngx_str_null(&user);
        ngx_str_null(&device);

        return ngx_chat_upgrade(r, &user, &device, &protocol, &key, 0, 0);
    }

    if (ngx_chat_get_token(r, &token) != NGX_OK) {
        return ngx_chat_reject(r, NGX_HTTP_UNAUTHORIZED, "no token");
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_chat_module);
    now = ngx_time();

    if (ngx_chat_jwt_verify(token.data, token.len, mcf->jwt_secret.data,
                            mcf->jwt_secret.len, (int64_t) now, &claims,
                            &why)
        != 0)
    {
        return ngx_chat_reject(r, NGX_HTTP_UNAUTHORIZED, (char *) why);
    }

    h = ngx_chat_find_header(r, "Sec-WebSocket-Protocol",
                             sizeof("Sec-WebSocket-Protocol") - 1);

    if (h && ngx_chat_has_token(&h->value, "chat.v1",
                                sizeof("chat.v1") - 1))
    {
        ngx_str_set(&protocol, "chat.v1");
    }

    return ngx_chat_handshake_revoked(r, &protocol, &key, &claims);
}


/* the revocation check: the request waits for it (NGX_DONE) unless Redis
 * is away, when the token is taken as it is */

static ngx_int_t
ngx_chat_handshake_revoked(ngx_http_request_t *r, ngx_str_t *protocol,
    ngx_str_t *key, ngx_chat_jwt_claims_t *claims)
{
    ngx_int_t                   rc;
    ngx_str_t                   user, device;
    ngx_chat_handshake_wait_t  *w;

    w = ngx_palloc(r->pool, sizeof(ngx_chat_handshake_wait_t));
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->request = r;
    w->protocol = *protocol;
    w->key = *key;
    w->claims = *claims;

    user.data = (u_char *) w->claims.sub;
    user.len = ngx_strlen(w->claims.sub);
    device.data = (u_char *) w->claims.dev;
    device.len = ngx_strlen(w->claims.dev);

    rc = ngx_chat_revoke_check(&user, &device, w->claims.iat,
                               ngx_chat_handshake_checked, w);

    switch (rc) {

    case NGX_AGAIN:
        /* held until ngx_chat_handshake_checked() finalizes it */
        r->main->count++;
        return NGX_DONE;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat: Redis is away: the token of \"%V\" taken "
                      "without its revocation check", &user);
        return ngx_chat_upgrade(r, &user, &device, &w->protocol, &w->key,
                                w->claims.exp, w->claims.iat);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static void
ngx_chat_handshake_checked(void *data, ngx_int_t rc)
{
    ngx_chat_handshake_wait_t  *w = data;

    ngx_str_t                   user, device;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;

    r = w->request;
    c = r->connection;

    user.data = (u_char *) w->claims.sub;
    user.len = ngx_strlen(w->claims.sub);
    device.data = (u_char *) w->claims.dev;
    device.len = ngx_strlen(w->claims.dev);

    if (rc == NGX_ABORT) {
        rc = ngx_chat_reject(r, NGX_HTTP_UNAUTHORIZED, "token revoked");

    } else {
        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "chat: Redis did not answer: the token of \"%V\" "
                          "taken without its revocation check", &user);
        }

        rc = ngx_chat_upgrade(r, &user, &device, &w->protocol, &w->key,
                              w->claims.exp, w->claims.iat);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* the 101 answer, Sec-WebSocket-Accept: base64(sha1(key + GUID)) */

static ngx_int_t
ngx_chat_upgrade(ngx_http_request_t *r, ngx_str_t *user, ngx_str_t *device,
    ngx_str_t *protocol, ngx_str_t *key, int64_t expires, int64_t issued)
{
    u_char                      hash[20], accept[28], *p;
    u_char                      response[NGX_CHAT_RESPONSE_MAX];
    char                        extension[NGX_CHAT_DEFLATE_RESPONSE_MAX];
    size_t                      extension_len;
    ngx_int_t                   rc, deflate;
    ngx_str_t                   src, dst;
    ngx_sha1_t                  sha1;
    ngx_chat_deflate_params_t   params;

    deflate = ngx_chat_deflate_offers(r, &params, extension, &extension_len);
    if (deflate == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key->data, key->len);
    ngx_sha1_update(&sha1, NGX_CHAT_WS_GUID, sizeof(NGX_CHAT_WS_GUID) - 1);
    ngx_sha1_final(hash, &sha1);

    src.data = hash;
    src.len = 20;
    dst.data = accept;
    ngx_encode_base64(&dst, &src);

    p = ngx_sprintf(response, "HTTP/1.1 101 Switching Protocols\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Accept: %V\r\n", &dst);

    if (protocol->len) {
        p = ngx_sprintf(p, "Sec-WebSocket-Protocol: %V\r\n", protocol);
    }

    if (deflate == NGX_OK) {
        p = ngx_sprintf(p, "Sec-WebSocket-Extensions: %*s\r\n",
                        extension_len, extension);
    }

    *p++ = CR; *p++ = LF;

    rc = ngx_chat_session_start(r, user, device, expires, issued, response,
                                p - response,
                                deflate == NGX_OK ? &params : NULL);

    ngx_chat_stats->handshakes[rc == NGX_DONE
                               ? NGX_CHAT_HANDSHAKE_OK
                               : NGX_CHAT_HANDSHAKE_UNAVAILABLE]++;

    return rc;
}


/*
 * permessage-deflate (RFC 7692): the offers of every
 * Sec-WebSocket-Extensions header, in order, against the location's
 * chat_deflate settings. NGX_OK with the parameters and the response
 * header's value, NGX_DECLINED to answer without the extension.
 */

static ngx_int_t
ngx_chat_deflate_offers(ngx_http_request_t *r,
    ngx_chat_deflate_params_t *params, char *response, size_t *len)
{
    size_t                   n;
    ngx_uint_t               i;
    const char              *why;
    ngx_list_part_t         *part;
    ngx_table_elt_t         *h;
    ngx_chat_loc_conf_t     *lcf;
    ngx_chat_deflate_str_t  *values;

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    if (!lcf->deflate_conf.enabled) {
        return NGX_DECLINED;
    }

    /* two passes over the headers: count, then collect */

    values = NULL;
    n = 0;

    for ( ;; ) {
        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */ ; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].key.len == sizeof("Sec-WebSocket-Extensions") - 1
                && ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Sec-WebSocket-Extensions",
                                   sizeof("Sec-WebSocket-Extensions") - 1)
                   == 0)
            {
                if (values) {
                    values[n].data = h[i].value.data;
                    values[n].len = h[i].value.len;
                }

                n++;
            }
        }

        if (n == 0 || values) {
            break;
        }

        values = ngx_palloc(r->pool, n * sizeof(ngx_chat_deflate_str_t));
        if (values == NULL) {
            return NGX_ERROR;
        }

        n = 0;
    }

    if (n == 0) {
        return NGX_DECLINED;
    }

    if (!ngx_chat_deflate_negotiate(&lcf->deflate_conf, values, n, params,
                                    response, len, &why))
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "chat: permessage-deflate declined: %s", why);
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "chat: permessage-deflate: \"%s\"", response);

    return NGX_OK;
}


static ngx_int_t
ngx_chat_reject(ngx_http_request_t *r, ngx_uint_t status, char *why)
{
    ngx_table_elt_t  *h;

    switch (status) {
    case NGX_HTTP_UNAUTHORIZED:
        ngx_chat_stats->handshakes[NGX_CHAT_HANDSHAKE_UNAUTHORIZED]++;
        break;
    case NGX_CHAT_UPGRADE_REQUIRED:
        ngx_chat_stats->handshakes[NGX_CHAT_HANDSHAKE_UPGRADE_REQUIRED]++;
        break;
    default:
        ngx_chat_stats->handshakes[NGX_CHAT_HANDSHAKE_BAD_REQUEST]++;
        break;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "chat: handshake refused with %ui: %s", status, why);

    if (status == NGX_HTTP_UNAUTHORIZED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        ngx_str_set(&h->value, "Bearer");
    }

    if (status == NGX_CHAT_UPGRADE_REQUIRED) {
        /* nginx has no page of its own for 426 */
        r->headers_out.status = status;
        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");
        r->headers_out.content_length_n = 0;
        r->header_only = 1;

        return ngx_http_send_header(r);
    }

    return status;
}


static ngx_int_t
ngx_chat_get_token(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h) {
        value = h->value;

        if (value.len > sizeof("Bearer ") - 1
            && ngx_strncasecmp(value.data, (u_char *) "Bearer ",
                               sizeof("Bearer ") - 1) == 0)
        {
            token->data = value.data + sizeof("Bearer ") - 1;
            token->len = value.len - (sizeof("Bearer ") - 1);

            while (token->len && *token->data == ' ') {
                token->data++;
                token->len--;
            }

            return token->len ? NGX_OK : NGX_DECLINED;
        }

        return NGX_DECLINED;
    }

    if (ngx_http_arg(r, (u_char *) "access_token",
                     sizeof("access_token") - 1, token)
        == NGX_OK && token->len)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * The request line goes into every log line about this request (and the
 * access log's $request): a token in the query must not. The arguments
 * themselves stay, for ngx_chat_get_token().
 */

static void
ngx_chat_hide_token(ngx_http_request_t *r)
{
    u_char     *p, *last, *start, *end, *line;
    ngx_str_t   name = ngx_string("access_token=");

    p = r->request_line.data;
    last = p + r->request_line.len;

    start = ngx_strlcasestrn(p, last, name.data, name.len - 1);

    while (start) {
        if (start > p && (start[-1] == '?' || start[-1] == '&')) {
            break;
        }

        start = ngx_strlcasestrn(start + 1, last, name.data, name.len - 1);
    }

    if (start == NULL) {
        return;
    }

    start += name.len;

    for (end = start; end < last && *end != '&' && *end != ' '; end++) {
        /* void */
    }

    line = ngx_pnalloc(r->pool, r->request_line.len - (end - start) + 3);
    if (line == NULL) {
        return;
    }

    p = ngx_cpymem(line, r->request_line.data, start - r->request_line.data);
    p = ngx_cpymem(p, "***", 3);
    p = ngx_cpymem(p, end, last - end);

    r->request_line.data = line;
    r->request_line.len = p - line;
}


static ngx_table_elt_t *
ngx_chat_find_header(ngx_http_request_t *r, char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/* a case-insensitive token in a comma separated header value */

static ngx_uint_t
ngx_chat_has_token(ngx_str_t *value, char *token, size_t len)
{
    u_char  *p, *last, *start, *end;

    p = value->data;
    last = p + value->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        if ((size_t) (end - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
