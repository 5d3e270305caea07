/*
 * worker_thumb.c: image attachments looked at with GraphicsMagick. The
 * decoder is the one of the announced type only ("png:" and so on before
 * the path), never one that GraphicsMagick would guess from the bytes,
 * so an upload cannot reach the decoders of formats nobody announced.
 * The thumbnail keeps the image's proportions, its longest side at most
 * CHAT_THUMB_SIDE, and is a PNG whatever the original.
 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <magick/api.h>

#include "ngx_chat_media_sign.h"
#include "worker_thumb.h"


static const struct {
    const char  *type;
    const char  *magick;
} chat_thumb_types[] = {
    { "image/png", "png" },
    { "image/jpeg", "jpeg" },
    { "image/gif", "gif" },
    { "image/webp", "webp" },
};


static const char *
chat_thumb_decoder(const char *content_type)
{
    size_t  i;

    for (i = 0; i < sizeof(chat_thumb_types) / sizeof(chat_thumb_types[0]);
         i++)
    {
        if (strcasecmp(content_type, chat_thumb_types[i].type) == 0) {
            return chat_thumb_types[i].magick;
        }
    }

    return NULL;
}


static void
chat_thumb_once(void)
{
    InitializeMagick(NULL);
}


void
chat_thumb_init(void)
{
    static pthread_once_t  once = PTHREAD_ONCE_INIT;

    (void) pthread_once(&once, chat_thumb_once);
}


bool
chat_thumb_type(const char *content_type)
{
    return content_type != NULL && chat_thumb_decoder(content_type) != NULL;
}


bool
chat_thumb_make(const chat_media_t *m, const char *id,
    const char *content_type, int *width, int *height)
{
    const char     *decoder;
    ImageInfo      *info;
    Image          *img, *thumb = NULL;
    ExceptionInfo   ex;
    unsigned long   tw, th;
    bool            ok = false;
    char            tmp[MaxTextExtent - 8], path[MaxTextExtent];

    decoder = chat_thumb_decoder(content_type);

    if (decoder == NULL || m->root == NULL
        || !ngx_chat_media_valid_id(id, strlen(id)))
    {
        return false;
    }

    chat_thumb_init();

    GetExceptionInfo(&ex);
    info = CloneImageInfo(NULL);
    snprintf(info->filename, sizeof(info->filename), "%s:%s/%s", decoder,
             m->root, id);

    img = ReadImage(info, &ex);

    if (img == NULL || img->columns == 0 || img->rows == 0) {
        log_warn("attachment %s: not a readable %s: %s", id, content_type,
                 ex.reason ? ex.reason : "no image");
        goto done;
    }

    *width = (int) img->columns;
    *height = (int) img->rows;

    if (img->columns >= img->rows) {
        tw = img->columns < CHAT_THUMB_SIDE ? img->columns : CHAT_THUMB_SIDE;
        th = img->rows * tw / img->columns;
    } else {
        th = img->rows < CHAT_THUMB_SIDE ? img->rows : CHAT_THUMB_SIDE;
        tw = img->columns * th / img->rows;
    }

    thumb = ThumbnailImage(img, tw ? tw : 1, th ? th : 1, &ex);
    if (thumb == NULL) {
        log_warn("attachment %s: no thumbnail: %s", id,
                 ex.reason ? ex.reason : "?");
        goto done;
    }

    /* under a name of this process, then renamed: a GET never reads half
     * a thumbnail, nor two workers making the same one (the uploaded
     * record's and an overtaking send's) each other's */
    snprintf(tmp, sizeof(tmp), "%s/%s.t.%ld", m->root, id, (long) getpid());
    snprintf(path, sizeof(path), "%s/%s.t", m->root, id);
    snprintf(thumb->filename, sizeof(thumb->filename), "png:%s", tmp);

    if (!WriteImage(info, thumb)) {
        log_warn("attachment %s: thumbnail not written: %s", id,
                 thumb->exception.reason ? thumb->exception.reason : "?");
        (void) unlink(tmp);
        goto done;
    }

    if (rename(tmp, path) != 0) {
        log_warn("attachment %s: thumbnail not renamed: %s", id,
                 strerror(errno));
        (void) unlink(tmp);
        goto done;
    }

    ok = true;

done:

    if (thumb) {
        DestroyImage(thumb);
    }

    if (img) {
        DestroyImage(img);
    }

    DestroyImageInfo(info);
    DestroyExceptionInfo(&ex);

    return ok;
}
