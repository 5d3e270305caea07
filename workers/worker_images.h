/*
 * worker_images.h: the uploaded images' sizes and thumbnails, made on a
 * thread of chat_worker's own (worker_images.c), with a PostgreSQL
 * connection of its own, so that decoding an image never holds up the
 * batches: the uploaded records' step hands their ids over and goes on.
 *
 * The queue is in memory only: what a stop or a crash leaves in it is
 * made by the send that attaches the upload (worker_ops.c), as is what
 * the queue had no room for. A send that finds its image being made
 * waits for it rather than decoding it a second time.
 */

#ifndef CHAT_WORKER_IMAGES_H
#define CHAT_WORKER_IMAGES_H

#include "worker_media.h"
#include "worker_store.h"


/* uploads waiting for the thread at most */
#define CHAT_IMAGES_QUEUE  1024

typedef struct chat_images_s  chat_images_t;

typedef enum {
    CHAT_IMAGES_YOURS,          /* neither queued nor being made: the
                                 * caller makes it */
    CHAT_IMAGES_MADE,           /* made (waited for): width and height */
    CHAT_IMAGES_NONE            /* looked at: no size to have */
} chat_images_rc_t;

/*
 * One upload's size in pixels and thumbnail, from its row (id) checked
 * against the size announced: made and stored (MADE, with them), or
 * logged and skipped when the row, the file or the image is not what it
 * should be (NONE; also on a stop). On whichever thread calls it, with
 * that thread's store.
 */
chat_images_rc_t chat_images_make(chat_store_t *st, const chat_media_t *media,
    const char *id, int64_t size, int *width, int *height);

/* the thread, its store connected with conninfo; NULL when it could not
 * start (logged) */
chat_images_t *chat_images_start(const char *conninfo,
    const chat_media_t *media, chat_stop_t *stop);

/* an uploaded record's upload for the thread; false when the queue is
 * full (then the send makes it) */
bool chat_images_queue(chat_images_t *im, const char *id, int64_t size);

/* is the upload queued or being made? */
bool chat_images_pending(chat_images_t *im, const char *id);

/* a send's image without a size yet: taken out of the queue when it
 * waits there, waited for when the thread is making it */
chat_images_rc_t chat_images_claim(chat_images_t *im, const char *id,
    int *width, int *height);

/* stops the thread (what is queued is left) and closes its store */
void chat_images_stop(chat_images_t *im);


#endif /* CHAT_WORKER_IMAGES_H */
