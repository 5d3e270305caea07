/*
 * worker_images.c: the uploaded images' sizes and thumbnails, on a thread
 * of their own (worker_images.h). The batches' thread queues an uploaded
 * record's id and goes on; this thread reads the upload's row, checks the
 * file, decodes the image (worker_thumb.c) and stores its size on its own
 * PostgreSQL connection. One lock guards the queue and the id being made,
 * which a send that needs that very image waits for.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_chat_media_sign.h"
#include "worker_images.h"
#include "worker_thumb.h"


#define CHAT_IMAGES_RECENT  256

typedef struct {
    char      id[NGX_CHAT_MEDIA_ID_LEN + 1];
    int64_t   size;
} chat_images_job_t;

struct chat_images_s {
    pthread_t            thread;
    pthread_mutex_t      lock;
    pthread_cond_t       more;          /* a job queued, or quit */
    pthread_cond_t       done;          /* the one being made is done */
    bool                 quit;

    chat_images_job_t    jobs[CHAT_IMAGES_QUEUE];   /* a ring */
    size_t               head;
    size_t               n;

    char                 busy[NGX_CHAT_MEDIA_ID_LEN + 1];  /* "": none */
    /* the last ones done: a record consumed again (its partition was cut
     * after it) is not looked at again */
    char                 recent[CHAT_IMAGES_RECENT][NGX_CHAT_MEDIA_ID_LEN + 1];
    size_t               nrecent;
    chat_images_rc_t     last;          /* what became of the last one */
    char                 last_id[NGX_CHAT_MEDIA_ID_LEN + 1];
    int                  last_width;
    int                  last_height;

    chat_store_t        *store;
    const chat_media_t  *media;
    chat_stop_t         *stop;
};


chat_images_rc_t
chat_images_make(chat_store_t *st, const chat_media_t *media, const char *id,
    int64_t size, int *width, int *height)
{
    chat_upload_row_t  *rows;
    chat_arena_t        arena = { 0 };
    chat_store_rc_t     rc;
    chat_images_rc_t    made = CHAT_IMAGES_NONE;
    int64_t             t0;
    size_t              nrows;

    rc = chat_store_upload_rows(st, &id, 1, &rows, &nrows, &arena);

    if (rc != CHAT_STORE_OK) {
        if (rc == CHAT_STORE_REFUSED) {
            log_error("uploaded %s: skipped: the store refused to read its"
                      " upload", id);
        }

        goto done;
    }

    if (nrows == 0) {
        log_warn("uploaded %s: no such upload (forgotten, or never"
                 " announced): skipped", id);
        goto done;
    }

    if (rows[0].has_dims) {
        goto done;          /* an overtaking send made them */
    }

    if (!chat_thumb_type(rows[0].content_type)) {
        log_info("uploaded %s: %s is no image type: nothing to make", id,
                 rows[0].content_type);
        goto done;
    }

    if (rows[0].size != size || media == NULL
        || !chat_media_stored(media, id, rows[0].size))
    {
        log_warn("uploaded %s: its file is missing or not of the %lld bytes"
                 " announced: skipped", id, (long long) rows[0].size);
        goto done;
    }

    t0 = chat_now_ms();

    /* bytes that are no such image: chat_thumb_make says so */
    if (!chat_thumb_make(media, id, rows[0].content_type, width, height)) {
        goto done;
    }

    rc = chat_store_upload_dims(st, id, *width, *height);

    if (rc != CHAT_STORE_OK) {
        if (rc == CHAT_STORE_REFUSED) {
            log_error("uploaded %s: the store refused its size: the send"
                      " that attaches it makes it again", id);
        }

        goto done;
    }

    made = CHAT_IMAGES_MADE;
    log_info("uploaded %s: %dx%d, thumbnail made in %lld ms", id, *width,
             *height, (long long) (chat_now_ms() - t0));

done:

    chat_arena_free(&arena);

    return made;
}


static void *
chat_images_main(void *data)
{
    chat_images_t      *im = data;
    chat_images_job_t   job;
    chat_images_rc_t    rc;
    struct timespec     until;
    int                 w = 0, h = 0;

    pthread_mutex_lock(&im->lock);

    for ( ;; ) {
        while (im->n == 0 && !im->quit && !*im->stop) {
            /* the stop flag is a signal's: looked at every 200 ms */
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 200 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }

            (void) pthread_cond_timedwait(&im->more, &im->lock, &until);
        }

        if (im->quit || *im->stop) {
            break;
        }

        job = im->jobs[im->head];
        im->head = (im->head + 1) % CHAT_IMAGES_QUEUE;
        im->n--;

        if (job.id[0] == '\0') {
            continue;       /* a send claimed it */
        }

        memcpy(im->busy, job.id, sizeof(im->busy));

        pthread_mutex_unlock(&im->lock);

        rc = chat_images_make(im->store, im->media, job.id, job.size, &w, &h);

        pthread_mutex_lock(&im->lock);

        im->busy[0] = '\0';
        memcpy(im->recent[im->nrecent++ % CHAT_IMAGES_RECENT], job.id,
               sizeof(job.id));
        im->last = rc;
        memcpy(im->last_id, job.id, sizeof(im->last_id));
        im->last_width = w;
        im->last_height = h;
        pthread_cond_broadcast(&im->done);
    }

    pthread_mutex_unlock(&im->lock);

    return NULL;
}


chat_images_t *
chat_images_start(const char *conninfo, const chat_media_t *media,
    chat_stop_t *stop)
{
    chat_images_t  *im;
    sigset_t        all, old;
    int             rc;

    im = chat_alloc(sizeof(chat_images_t));
    memset(im, 0, sizeof(*im));
    im->media = media;
    im->stop = stop;
    pthread_mutex_init(&im->lock, NULL);
    pthread_cond_init(&im->more, NULL);
    pthread_cond_init(&im->done, NULL);

    im->store = chat_store_open(conninfo, stop);
    if (im->store == NULL) {
        chat_images_stop(im);
        return NULL;
    }

    /* GraphicsMagick set up before two threads may use it */
    chat_thumb_init();

    /* the thread inherits the mask: no signal handler ever runs in it */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&im->thread, NULL, chat_images_main, im);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        log_error("images: cannot start the thread: %s", strerror(rc));
        chat_store_close(im->store);
        im->store = NULL;
        chat_images_stop(im);
        return NULL;
    }

    return im;
}


/* queued, being made or made a moment ago; under the lock */
static bool
chat_images_known(chat_images_t *im, const char *id, bool recent)
{
    size_t  i;

    if (strcmp(im->busy, id) == 0) {
        return true;
    }

    for (i = 0; i < im->n; i++) {
        if (strcmp(im->jobs[(im->head + i) % CHAT_IMAGES_QUEUE].id, id) == 0) {
            return true;
        }
    }

    for (i = 0; recent && i < CHAT_IMAGES_RECENT && i < im->nrecent; i++) {
        if (strcmp(im->recent[i], id) == 0) {
            return true;
        }
    }

    return false;
}


bool
chat_images_queue(chat_images_t *im, const char *id, int64_t size)
{
    chat_images_job_t  *job;
    bool                ok = false;

    if (!ngx_chat_media_valid_id(id, strlen(id)) || size < 1) {
        return false;
    }

    pthread_mutex_lock(&im->lock);

    if (chat_images_known(im, id, true)) {
        ok = true;

    } else if (im->n < CHAT_IMAGES_QUEUE) {
        job = &im->jobs[(im->head + im->n) % CHAT_IMAGES_QUEUE];
        memcpy(job->id, id, sizeof(job->id));
        job->size = size;
        im->n++;
        ok = true;
        pthread_cond_signal(&im->more);
    }

    pthread_mutex_unlock(&im->lock);

    return ok;
}


bool
chat_images_pending(chat_images_t *im, const char *id)
{
    bool  found;

    pthread_mutex_lock(&im->lock);
    found = chat_images_known(im, id, false);
    pthread_mutex_unlock(&im->lock);

    return found;
}


chat_images_rc_t
chat_images_claim(chat_images_t *im, const char *id, int *width,
    int *height)
{
    chat_images_rc_t  rc = CHAT_IMAGES_YOURS;
    size_t            i, k;

    pthread_mutex_lock(&im->lock);

    /* still waiting: the send makes it now, the thread need not */
    for (i = 0; i < im->n; i++) {
        k = (im->head + i) % CHAT_IMAGES_QUEUE;

        if (strcmp(im->jobs[k].id, id) == 0) {
            im->jobs[k].id[0] = '\0';
        }
    }

    if (strcmp(im->busy, id) == 0) {
        while (strcmp(im->busy, id) == 0) {
            pthread_cond_wait(&im->done, &im->lock);
        }

        if (strcmp(im->last_id, id) == 0) {
            rc = im->last;
            *width = im->last_width;
            *height = im->last_height;
        }
    }

    pthread_mutex_unlock(&im->lock);

    return rc;
}


void
chat_images_stop(chat_images_t *im)
{
    if (im == NULL) {
        return;
    }

    if (im->store) {
        pthread_mutex_lock(&im->lock);
        im->quit = true;
        pthread_cond_broadcast(&im->more);
        pthread_mutex_unlock(&im->lock);

        pthread_join(im->thread, NULL);
        chat_store_close(im->store);
    }

    pthread_cond_destroy(&im->more);
    pthread_cond_destroy(&im->done);
    pthread_mutex_destroy(&im->lock);
    free(im);
}
