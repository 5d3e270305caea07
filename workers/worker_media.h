/*
 * worker_media.h: attachments' files as chat_worker sees them
 * (worker_media.c): whether an upload's bytes are stored, and the signed,
 * expiring GET URLs that members get in every answer that shows an
 * attachment.
 *
 * The store of the files is one interface, chat_media_stored(): here a
 * directory that nginx's chat_media location writes (dav PUT). An
 * S3-compatible store would answer the same question with a HEAD of the
 * object (its size), and its GET URLs would be that store's presigned
 * URLs instead of chat_media's.
 */

#ifndef CHAT_WORKER_MEDIA_H
#define CHAT_WORKER_MEDIA_H

#include <stdbool.h>
#include <stdint.h>

#include "worker_util.h"


typedef struct {
    const char  *secret;        /* nginx's chat_media_secret; NULL: none */
    const char  *url;           /* nginx's chat_media_url */
    const char  *root;          /* the directory the files are in */
    int64_t      ttl_ms;        /* how long a GET URL stays valid */
    int64_t      keep_ms;       /* an upload never attached goes after */
} chat_media_t;

/* removes an upload's file and its thumbnail (those that are there) */
void chat_media_remove(const chat_media_t *m, const char *id);

/* is the upload id stored, with exactly size bytes? */
bool chat_media_stored(const chat_media_t *m, const char *id, int64_t size);

/*
 * A message's attachments as members get them: the stored JSON array
 * (attachment_id, content_type, size, name, width, height) with a fresh
 * url each and, for those with a size in pixels, thumbnail_url; in the
 * arena. NULL in, NULL out.
 */
const char *chat_media_sign_list(const chat_media_t *m, const char *list,
    int64_t now_ms, chat_arena_t *arena);


#endif /* CHAT_WORKER_MEDIA_H */
