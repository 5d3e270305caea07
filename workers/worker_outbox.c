/*
 * worker_outbox.c: the outbox of a batch: which frame goes to which
 * session, or to every session of which user. A frame is stored once
 * however many get it; the order of the deliveries is the order in which
 * each node will see the frames. Pure code: the unit tests include this
 * file.
 */

#include <stdlib.h>
#include <string.h>

#include "worker_frame.h"
#include "worker_outbox.h"


size_t
chat_outbox_frame(chat_outbox_t *out, json_t *frame)
{
    char    *bytes;
    size_t   len;

    bytes = chat_frame_dump(frame, &len);

    return chat_outbox_bytes(out, bytes, len);
}


size_t
chat_outbox_bytes(chat_outbox_t *out, char *bytes, size_t len)
{
    chat_frame_t  *f;

    if (out->nframes == out->frames_cap) {
        out->frames_cap = out->frames_cap ? out->frames_cap * 2 : 256;
        out->frames = chat_realloc(out->frames,
                                   out->frames_cap * sizeof(chat_frame_t));
    }

    f = &out->frames[out->nframes];
    f->bytes = bytes;
    f->len = len;
    f->type = NGX_CHAT_WIRE_RECORD_FRAME;

    return out->nframes++;
}


static chat_delivery_t *
chat_outbox_add(chat_outbox_t *out, size_t frame, const char *user,
    const char *node, const char *sid)
{
    chat_delivery_t  *d;

    if (out->ndeliveries == out->deliveries_cap) {
        out->deliveries_cap = out->deliveries_cap
                              ? out->deliveries_cap * 2 : 256;
        out->deliveries = chat_realloc(out->deliveries,
                              out->deliveries_cap * sizeof(chat_delivery_t));
    }

    d = &out->deliveries[out->ndeliveries++];
    d->frame = frame;
    d->user = user;
    d->node = node;
    d->sid = sid;
    d->skip_dev = NULL;
    d->partition = out->partition;
    d->repair = out->repair;
    d->ack_ms = -1;

    return d;
}


void
chat_outbox_to_session(chat_outbox_t *out, size_t frame, const char *node,
    const char *sid)
{
    (void) chat_outbox_add(out, frame, NULL, node, sid);
}


void
chat_outbox_ack(chat_outbox_t *out, size_t frame, const char *node,
    const char *sid, int64_t ts)
{
    chat_outbox_add(out, frame, NULL, node, sid)->ack_ms = ts > 0 ? ts : 0;
}


void
chat_outbox_stream(chat_outbox_t *out, const char *key, size_t key_len,
    const char *node, const char *sid)
{
    char    *bytes;
    size_t   frame;

    bytes = chat_alloc(key_len + 1);
    memcpy(bytes, key, key_len);
    bytes[key_len] = '\0';

    frame = chat_outbox_bytes(out, bytes, key_len);
    out->frames[frame].type = NGX_CHAT_WIRE_RECORD_STREAM;

    chat_outbox_add(out, frame, NULL, node, sid);
}


void
chat_outbox_to_user(chat_outbox_t *out, size_t frame, const char *user,
    const char *skip_node, const char *skip_sid)
{
    (void) chat_outbox_add(out, frame, user, skip_node, skip_sid);
}


void
chat_outbox_to_user_but_device(chat_outbox_t *out, size_t frame,
    const char *user, const char *skip_dev)
{
    chat_outbox_add(out, frame, user, NULL, NULL)->skip_dev = skip_dev;
}


void
chat_outbox_from(chat_outbox_t *out, int32_t partition)
{
    out->partition = partition;
    out->repair = -1;
}


void
chat_outbox_repair(chat_outbox_t *out, const char *node, int32_t partition,
    int64_t after, int64_t upto)
{
    chat_outbox_repair_t  *r;

    if (out->nrepairs == out->repairs_cap) {
        out->repairs_cap = out->repairs_cap ? out->repairs_cap * 2 : 8;
        out->repairs = chat_realloc(out->repairs, out->repairs_cap
                                    * sizeof(chat_outbox_repair_t));
    }

    r = &out->repairs[out->nrepairs];
    r->node = node;
    r->partition = partition;
    r->after = after;
    r->upto = upto;

    out->repair = (int32_t) out->nrepairs++;
}


void
chat_outbox_member(chat_outbox_t *out, const char *user, const char *conv,
    bool joined)
{
    chat_outbox_member_t  *m;

    if (out->nmembers == out->members_cap) {
        out->members_cap = out->members_cap ? out->members_cap * 2 : 8;
        out->members = chat_realloc(out->members, out->members_cap
                                    * sizeof(chat_outbox_member_t));
    }

    m = &out->members[out->nmembers++];
    m->user = user;
    m->conv = conv;
    m->joined = joined;
    m->block = false;
}


void
chat_outbox_push(chat_outbox_t *out, int64_t message_id, const char *user,
    const char *device, int64_t ts)
{
    chat_outbox_push_t  *p;

    if (out->npushes == out->pushes_cap) {
        out->pushes_cap = out->pushes_cap ? out->pushes_cap * 2 : 8;
        out->pushes = chat_realloc(out->pushes, out->pushes_cap
                                   * sizeof(chat_outbox_push_t));
    }

    p = &out->pushes[out->npushes++];
    p->message_id = message_id;
    p->user = user;
    p->device = device;
    p->ts = ts;
    p->partition = out->partition;
    p->online = false;
}


void
chat_outbox_block(chat_outbox_t *out, const char *user, const char *other,
    bool blocked)
{
    chat_outbox_member(out, user, other, blocked);
    out->members[out->nmembers - 1].block = true;
}


void
chat_outbox_truncate(chat_outbox_t *out, size_t nframes, size_t ndeliveries)
{
    size_t  i;

    for (i = nframes; i < out->nframes; i++) {
        free(out->frames[i].bytes);
    }

    out->nframes = nframes;
    out->ndeliveries = ndeliveries;
}


void
chat_outbox_free(chat_outbox_t *out)
{
    chat_outbox_reset(out);
    free(out->frames);
    free(out->deliveries);
    free(out->repairs);
    free(out->members);
    free(out->pushes);
    memset(out, 0, sizeof(*out));
}


void
chat_outbox_reset(chat_outbox_t *out)
{
    chat_outbox_truncate(out, 0, 0);
    out->nrepairs = 0;
    out->nmembers = 0;
    out->npushes = 0;
    out->partition = -1;
    out->repair = -1;
}

