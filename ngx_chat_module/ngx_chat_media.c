
/*
 * ngx_chat_media.c: attachments' files, served by this nginx. A module of
 * its own (ngx_chat_media_module) in the same addon:
 *
 *   - the upload settings (chat_media_secret, chat_media_url,
 *     chat_media_max_bytes, chat_media_types, chat_media_url_ttl), which
 *     the protocol layer uses to sign an upload's PUT URL
 *     (ngx_chat_media_conf);
 *   - "chat_media" on the location that stores the files: an access-phase
 *     check of every request's signature and expiry. A PUT must carry
 *     exactly the signed size; a GET needs a GET signature. What passes is
 *     nginx's own to serve: dav_methods PUT writes the file (under a
 *     temporary name, renamed when complete) and the static module reads
 *     it back, both under the location's root;
 *   - on the same location, a log-phase handler: a PUT answered 201 or
 *     204 stored the file whole, and the workers are told so with an
 *     "uploaded" record (ngx_chat_wire.h), so that an image's size and
 *     thumbnail are made before any send attaches it rather than inside
 *     the send's batch. Producing is handing the record to librdkafka's
 *     queue: nothing waits.
 *
 * The store is therefore a directory that nginx writes and reads; another
 * store (an S3-compatible one) would take the same signed requests in
 * another location (proxy_pass to it, with its own credentials).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_chat.h"
#include "ngx_chat_media_sign.h"


typedef struct {
    ngx_str_t               secret;
    ngx_str_t               url;
    off_t                   max_bytes;
    ngx_str_t               types;
    ngx_msec_t              ttl;
    ngx_chat_media_conf_t   conf;       /* the above, for the protocol */
    ngx_flag_t              enabled;    /* a secret and a URL are set */
} ngx_chat_media_main_conf_t;


typedef struct {
    ngx_flag_t              check;      /* "chat_media" */
} ngx_chat_media_loc_conf_t;


static void *ngx_chat_media_create_main_conf(ngx_conf_t *cf);
static char *ngx_chat_media_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_chat_media_create_loc_conf(ngx_conf_t *cf);
static char *ngx_chat_media_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_chat_media_init(ngx_conf_t *cf);
static ngx_int_t ngx_chat_media_access(ngx_http_request_t *r);
static ngx_int_t ngx_chat_media_stored(ngx_http_request_t *r);


static char *ngx_chat_media_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_chat_media_commands[] = {

    { ngx_string("chat_media"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_media_check,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_media_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_media_main_conf_t, secret),
      NULL },

    { ngx_string("chat_media_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_media_main_conf_t, url),
      NULL },

    { ngx_string("chat_media_max_bytes"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_media_main_conf_t, max_bytes),
      NULL },

    { ngx_string("chat_media_types"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_media_main_conf_t, types),
      NULL },

    { ngx_string("chat_media_url_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_media_main_conf_t, ttl),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_chat_media_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_chat_media_init,                   /* postconfiguration */

    ngx_chat_media_create_main_conf,       /* create main configuration */
    ngx_chat_media_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_chat_media_create_loc_conf,        /* create location configuration */
    ngx_chat_media_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_chat_media_module = {
    NGX_MODULE_V1,
    &ngx_chat_media_module_ctx,            /* module context */
    ngx_chat_media_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* what the types default to: images, PDF, plain text */
#define NGX_CHAT_MEDIA_TYPES                                                \
    "image/png image/jpeg image/gif image/webp application/pdf text/plain"


static void *
ngx_chat_media_create_main_conf(ngx_conf_t *cf)
{
    ngx_chat_media_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool, sizeof(ngx_chat_media_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    mmcf->max_bytes = NGX_CONF_UNSET;
    mmcf->ttl = NGX_CONF_UNSET_MSEC;

    return mmcf;
}


static char *
ngx_chat_media_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_chat_media_main_conf_t  *mmcf = conf;

    ngx_conf_init_value(mmcf->max_bytes, 10 * 1024 * 1024);
    ngx_conf_init_msec_value(mmcf->ttl, 15 * 60 * 1000);

    if (mmcf->types.data == NULL) {
        ngx_str_set(&mmcf->types, NGX_CHAT_MEDIA_TYPES);
    }

    if (mmcf->max_bytes < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_media_max_bytes must be at least 1");
        return NGX_CONF_ERROR;
    }

    if ((mmcf->secret.len == 0) != (mmcf->url.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_media_secret and chat_media_url go "
                           "together");
        return NGX_CONF_ERROR;
    }

    if (mmcf->secret.len > 0 && mmcf->secret.len < 16) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_media_secret must be at least 16 bytes");
        return NGX_CONF_ERROR;
    }

    mmcf->enabled = mmcf->secret.len > 0;

    mmcf->conf.secret = (const char *) mmcf->secret.data;
    mmcf->conf.secret_len = mmcf->secret.len;
    mmcf->conf.base = (const char *) mmcf->url.data;
    mmcf->conf.base_len = mmcf->url.len;
    mmcf->conf.max_bytes = (int64_t) mmcf->max_bytes;
    mmcf->conf.types = (const char *) mmcf->types.data;
    mmcf->conf.types_len = mmcf->types.len;
    mmcf->conf.ttl_ms = (int64_t) mmcf->ttl;

    return NGX_CONF_OK;
}


static void *
ngx_chat_media_create_loc_conf(ngx_conf_t *cf)
{
    ngx_chat_media_loc_conf_t  *mlcf;

    mlcf = ngx_pcalloc(cf->pool, sizeof(ngx_chat_media_loc_conf_t));
    if (mlcf == NULL) {
        return NULL;
    }

    mlcf->check = NGX_CONF_UNSET;

    return mlcf;
}


static char *
ngx_chat_media_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_chat_media_loc_conf_t  *prev = parent;
    ngx_chat_media_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->check, prev->check, 0);

    return NGX_CONF_OK;
}


static char *
ngx_chat_media_check(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_media_loc_conf_t  *mlcf = conf;

    if (mlcf->check != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    mlcf->check = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_chat_media_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_chat_media_access;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_chat_media_stored;

    return NGX_OK;
}


const ngx_chat_media_conf_t *
ngx_chat_media_conf(void)
{
    ngx_chat_media_main_conf_t  *mmcf;

    mmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_chat_media_module);

    return mmcf != NULL && mmcf->enabled ? &mmcf->conf : NULL;
}


/* a decimal argument of the query string, or -1 */
static int64_t
ngx_chat_media_arg(ngx_http_request_t *r, const char *name, size_t len)
{
    ngx_str_t  v;
    ngx_int_t  n;

    if (ngx_http_arg(r, (u_char *) name, len, &v) != NGX_OK
        || v.len == 0 || v.len > 18)
    {
        return -1;
    }

    n = ngx_atoof(v.data, v.len);

    return n == NGX_ERROR ? -1 : (int64_t) n;
}


/* the URI's last segment: the attachment id, or its thumbnail's name */
static u_char *
ngx_chat_media_name(ngx_http_request_t *r, size_t *len)
{
    u_char  *p;

    p = r->uri.data + r->uri.len;
    while (p > r->uri.data && p[-1] != '/') {
        p--;
    }

    *len = r->uri.data + r->uri.len - p;

    return p;
}


/*
 * The signature, the expiry and, for a PUT, the size, of a request for
 * <location>/<attachment_id> or its thumbnail <attachment_id>.t; a GET of
 * a file that is not there is the static module's 404.
 */
static ngx_int_t
ngx_chat_media_access(ngx_http_request_t *r)
{
    ngx_chat_media_loc_conf_t   *mlcf;
    ngx_chat_media_main_conf_t  *mmcf;
    ngx_str_t                    sig;
    ngx_time_t                  *tp;
    u_char                      *name;
    size_t                       len;
    int64_t                      size, expires, now;
    const char                  *method;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_chat_media_module);

    if (!mlcf->check || r != r->main) {
        return NGX_DECLINED;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_chat_media_module);

    if (!mmcf->enabled) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "chat_media: no chat_media_secret configured");
        return NGX_HTTP_FORBIDDEN;
    }

    if (r->method & NGX_HTTP_PUT) {
        method = "PUT";

    } else if (r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)) {
        method = "GET";

    } else {
        return NGX_HTTP_NOT_ALLOWED;
    }

    name = ngx_chat_media_name(r, &len);

    if (!(ngx_chat_media_valid_id((char *) name, len)
          || (len == NGX_CHAT_MEDIA_ID_LEN + 2 && method[0] == 'G'
              && ngx_chat_media_valid_id((char *) name,
                                         NGX_CHAT_MEDIA_ID_LEN)
              && name[NGX_CHAT_MEDIA_ID_LEN] == '.'
              && name[NGX_CHAT_MEDIA_ID_LEN + 1] == 't')))
    {
        return NGX_HTTP_FORBIDDEN;
    }

    size = ngx_chat_media_arg(r, "n", 1);
    expires = ngx_chat_media_arg(r, "e", 1);

    if (size < 0 || expires < 0
        || ngx_http_arg(r, (u_char *) "s", 1, &sig) != NGX_OK
        || !ngx_chat_media_verify(mmcf->conf.secret, mmcf->conf.secret_len,
                                  method, (char *) name, len, size, expires,
                                  (char *) sig.data, sig.len))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "chat_media: bad signature for \"%V\"", &r->uri);
        return NGX_HTTP_FORBIDDEN;
    }

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    if (expires <= now) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "chat_media: expired URL for \"%V\"", &r->uri);
        return NGX_HTTP_FORBIDDEN;
    }

    if (method[0] == 'P') {
        if (r->headers_in.content_length_n > size) {
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }

        if (r->headers_in.content_length_n != size) {
            /* chunked, or fewer bytes than announced */
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    return NGX_DECLINED;
}


/*
 * A PUT that passed the access check and that the dav module answered 201
 * or 204 has its file in place under the announced name and size: the
 * workers hear of it through Kafka, keyed by the attachment id (a PUT
 * names nothing else, and the images' work spreads over the partitions).
 * A record Kafka does not take costs only time: the send that attaches
 * the upload makes what is missing itself.
 */
static ngx_int_t
ngx_chat_media_stored(ngx_http_request_t *r)
{
    ngx_chat_media_loc_conf_t  *mlcf;
    ngx_chat_main_conf_t       *mcf;
    ngx_time_t                 *tp;
    ngx_uint_t                  status;
    u_char                     *name, *record;
    size_t                      len, n;
    int64_t                     size;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_chat_media_module);

    if (!mlcf->check || r != r->main || !(r->method & NGX_HTTP_PUT)) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status != NGX_HTTP_CREATED && status != NGX_HTTP_NO_CONTENT) {
        return NGX_OK;
    }

    name = ngx_chat_media_name(r, &len);
    size = ngx_chat_media_arg(r, "n", 1);

    mcf = ngx_http_get_module_main_conf(r, ngx_chat_module);

    /* the access check let only an attachment id through */
    if (!ngx_chat_media_valid_id((char *) name, len) || size < 1
        || mcf == NULL || !mcf->enabled || mcf->node.len == 0)
    {
        return NGX_OK;
    }

    /* handed to Kafka, which frees it */
    record = malloc(NGX_CHAT_WIRE_UPLOADED_MAX);
    if (record == NULL) {
        return NGX_OK;
    }

    tp = ngx_timeofday();

    n = ngx_chat_wire_uploaded_record((char *) record,
                                      (char *) mcf->node.data, mcf->node.len,
                                      (int64_t) tp->sec * 1000 + tp->msec,
                                      (char *) name, len, size);

    if (ngx_chat_kafka_produce(name, len, record, n) != NGX_OK) {
        free(record);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat_media: the workers were not told that \"%*s\" "
                      "is stored: its first send makes its thumbnail",
                      len, name);
    }

    return NGX_OK;
}
