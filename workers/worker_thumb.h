/*
 * worker_thumb.h: an image attachment's size in pixels and its thumbnail
 * (worker_thumb.c, GraphicsMagick).
 */

#ifndef CHAT_WORKER_THUMB_H
#define CHAT_WORKER_THUMB_H

#include <stdbool.h>

#include "worker_media.h"


/* the longest side of a thumbnail, in pixels */
#define CHAT_THUMB_SIDE  256

/* GraphicsMagick set up, once whatever the threads (chat_thumb_make does
 * it too) */
void chat_thumb_init(void);

/* is content_type one whose images chat_thumb_make decodes? */
bool chat_thumb_type(const char *content_type);

/*
 * For an upload stored under m->root of a decodable image type: its width
 * and height, and a PNG thumbnail written next to it as <id>.t. false for
 * another type, or when the bytes are not such an image (the attachment
 * then has no size in pixels).
 */
bool chat_thumb_make(const chat_media_t *m, const char *id,
    const char *content_type, int *width, int *height);


#endif /* CHAT_WORKER_THUMB_H */
