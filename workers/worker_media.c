/*
 * worker_media.c: the files of attachments, on local disk under the
 * directory nginx stores them in, and their signed GET URLs (the
 * signature is the module's, ngx_chat_media_sign.c, under the same
 * secret).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ngx_chat_media_sign.h"
#include "worker_media.h"


bool
chat_media_stored(const chat_media_t *m, const char *id, int64_t size)
{
    struct stat  sb;
    char         path[4096];
    int          n;

    if (m->root == NULL
        || !ngx_chat_media_valid_id(id, strlen(id)))
    {
        return false;
    }

    n = snprintf(path, sizeof(path), "%s/%s", m->root, id);
    if (n < 0 || (size_t) n >= sizeof(path)) {
        return false;
    }

    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode)
           && (int64_t) sb.st_size == size;
}


void
chat_media_remove(const chat_media_t *m, const char *id)
{
    char  path[4096];

    if (m->root == NULL || !ngx_chat_media_valid_id(id, strlen(id))) {
        return;
    }

    snprintf(path, sizeof(path), "%s/%s", m->root, id);
    (void) unlink(path);
    snprintf(path, sizeof(path), "%s/%s.t", m->root, id);
    (void) unlink(path);
}


static json_t *
chat_media_url(const chat_media_t *m, const char *name, int64_t size,
    int64_t expires)
{
    ngx_chat_media_conf_t  conf;
    char                   url[4096];

    memset(&conf, 0, sizeof(conf));
    conf.secret = m->secret;
    conf.secret_len = strlen(m->secret);
    conf.base = m->url;
    conf.base_len = strlen(m->url);

    if (ngx_chat_media_url(url, sizeof(url), &conf, "GET", name,
                           strlen(name), size, expires)
        == 0)
    {
        return json_null();
    }

    return json_string(url);
}


const char *
chat_media_sign_list(const chat_media_t *m, const char *list, int64_t now_ms,
    chat_arena_t *arena)
{
    json_t      *a, *item;
    const char  *id, *out;
    char        *text, thumb[NGX_CHAT_MEDIA_ID_LEN + 3];
    int64_t      size, expires;
    size_t       i;

    if (list == NULL) {
        return NULL;
    }

    a = json_loads(list, 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        return NULL;
    }

    expires = now_ms + m->ttl_ms;

    json_array_foreach(a, i, item) {
        id = json_string_value(json_object_get(item, "attachment_id"));
        size = (int64_t) json_integer_value(json_object_get(item, "size"));

        if (id == NULL || m->secret == NULL || m->url == NULL) {
            continue;
        }

        json_object_set_new(item, "url", chat_media_url(m, id, size,
                                                        expires));

        if (json_is_integer(json_object_get(item, "width"))) {
            snprintf(thumb, sizeof(thumb), "%s.t", id);
            json_object_set_new(item, "thumbnail_url",
                                chat_media_url(m, thumb, 0, expires));
        } else {
            json_object_del(item, "width");
            json_object_del(item, "height");
        }
    }

    text = json_dumps(a, JSON_COMPACT);
    json_decref(a);

    if (text == NULL) {
        return NULL;
    }

    out = chat_arena_strdup(arena, text);
    free(text);

    return out;
}
