
/*
 * A store and a Redis in memory for chat_worker's unit tests: the
 * functions of worker_store.h and worker_redis.h that the ops and the
 * batch call, answering from a small script and writing down what they
 * were asked (fake.trace) and what a delivery carried (fake.sent). Include
 * it after the worker's sources; no PostgreSQL, no Redis.
 *
 * The script, set by a test:
 *   refuse      the store refuses every call that names this conversation
 *   replay_at   a send at this offset was stored by this very record
 *   delivered   the delivered mark of every partition (-1: none)
 *   messages    what a sync's chunks find (each conversation's in its
 *               range); fake.chunks counts the chunks read
 *   push_fail   the push of this number (1: the first) fails, once
 *   groups      what the membership loads find (conv, then its members);
 *               a repair's member lists too
 *   repair_rows what a repair reads (every repair the same)
 *   push_devices the push devices every send stored (or replayed) finds
 *   online_device the device that the delivery finds with a session
 *   produce_fail the producer of pushes gives its wait up
 * Sends into "g:none" are forbidden; receipts beyond seq 100 too far;
 * a change of message 1 finds no such message, of message 2 is not the
 * user's to make.
 * The pushes to streamed answers' lists are written down in fake.pushed,
 * one line each: "RPUSH key bytes", "EXPIRE key", "DEL key".
 * The push records produced go to fake.sent, "push <record>" a line.
 */


#ifndef CHAT_WORKER_FAKE_H
#define CHAT_WORKER_FAKE_H


#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../../workers/worker_lists.h"
#include "../../workers/worker_pushes.h"
#include "../../workers/worker_redis.h"
#include "../../workers/worker_store.h"

/* not every test calls every helper */
#define FAKE_HELPER  static __attribute__((unused))


typedef struct {
    const char     *conv;
    chat_member_t   members[4];
    size_t          n;
} chat_fake_group_t;

static struct {
    chat_buf_t                trace;
    chat_buf_t                sent;
    const char               *refuse;
    int64_t                   replay_at;
    int64_t                   delivered;
    int64_t                   seq;
    const chat_fake_group_t  *groups;
    size_t                    ngroups;
    const chat_message_t     *messages;
    size_t                    nmessages;
    size_t                    chunks;
    chat_buf_t                pushed;
    chat_buf_t                pieces;         /* their bytes, back to back */
    size_t                    piece_end[256]; /* where each one ends */
    size_t                    pushes;
    size_t                    push_fail;
    size_t                    waits;
    const chat_repair_row_t  *repair_rows;
    size_t                    nrepair_rows;
    chat_push_device_t       *push_devices;
    size_t                    npush_devices;
    const char               *online_device;
    bool                      produce_fail;
    const char               *pending;        /* the images' thread's */
} fake;


FAKE_HELPER void
fake_reset(void)
{
    chat_buf_free(&fake.trace);
    chat_buf_free(&fake.sent);
    chat_buf_free(&fake.pushed);
    chat_buf_free(&fake.pieces);
    memset(&fake, 0, sizeof(fake));
    fake.replay_at = -1;
    fake.delivered = -1;
}


static void
fake_trace(const char *what, size_t n)
{
    chat_buf_printf(&fake.trace, "%s%s %zu", fake.trace.len ? "|" : "",
                    what, n);
}


static bool
fake_refused(const char *conv)
{
    return fake.refuse && conv && strcmp(conv, fake.refuse) == 0;
}


/* the store */

chat_store_rc_t
chat_store_sends(chat_store_t *st, chat_send_t **sends, size_t n,
    chat_arena_t *arena)
{
    chat_send_t  *s;
    size_t        i;

    (void) st;
    (void) arena;

    fake_trace("sends", n);

    for (i = 0; i < n; i++) {
        if (fake_refused(sends[i]->req->conv)) {
            return CHAT_STORE_REFUSED;
        }
    }

    for (i = 0; i < n; i++) {
        s = sends[i];

        if (s->direct_forbidden || strcmp(s->req->conv, "g:none") == 0) {
            s->state = CHAT_SEND_FORBIDDEN;
            continue;
        }

        s->state = s->req->offset == fake.replay_at ? CHAT_SEND_REPLAY
                                                    : CHAT_SEND_NEW;
        s->msg.conv = s->req->conv;
        s->msg.seq = ++fake.seq;
        s->msg.message_id = 100 + fake.seq;
        s->msg.sender = s->req->user;
        s->msg.cmid = s->req->cmid;
        s->msg.kind = "text";
        s->msg.body = s->req->body;
        s->msg.server_ts = 5;
        s->push = fake.push_devices;
        s->npush = fake.npush_devices;
    }

    return CHAT_STORE_OK;
}


chat_store_rc_t
chat_store_reads(chat_store_t *st, chat_read_t **reads, size_t n,
    chat_arena_t *arena)
{
    static chat_message_t    m = { "dm:alice:bob", 1, 101, "bob", "c9",
                                   "text", "old", 4, 0, 0, 0, false, NULL, NULL };
    static chat_sync_conv_t  c = { "dm:alice:bob", "direct", NULL, 2, 1, 1,
                                   0, 1, true,
                                   { "dm:alice:bob", 1, 101, "bob", "c9",
                                     "text", "old", 4, 0, 0, 0, false, NULL, NULL },
                                   0, 1, false, 0, 0, 0, 0, 0 };
    size_t                   i;

    (void) st;
    (void) arena;

    fake_trace("reads", n);

    for (i = 0; i < n; i++) {
        if (fake_refused(reads[i]->req->conv)) {
            return CHAT_STORE_REFUSED;
        }
    }

    for (i = 0; i < n; i++) {
        if (reads[i]->req->op == NGX_CHAT_WIRE_OP_SYNC) {
            reads[i]->sync.convs = &c;
            reads[i]->sync.nconvs = 1;

            /* its message comes with the chunks */
            if (fake.messages == NULL) {
                fake.messages = &m;
                fake.nmessages = 1;
            }

        } else if (strcmp(reads[i]->req->conv, "g:none") == 0) {
            reads[i]->history.forbidden = true;

        } else {
            reads[i]->history.messages = &m;
            reads[i]->history.n = 1;
        }
    }

    return CHAT_STORE_OK;
}


/* the messages of fake.messages in each conversation's range */
chat_store_rc_t
chat_store_sync_messages(chat_store_t *st, chat_sync_conv_t *convs, size_t n,
    chat_sync_rows_t *s, chat_arena_t *arena)
{
    const chat_message_t  *m;
    size_t                 i, k;
    int64_t                from;

    (void) st;

    fake.chunks++;
    s->messages = chat_arena_alloc(arena,
                                   (fake.nmessages + 1)
                                   * sizeof(chat_message_t));
    s->nmessages = 0;

    for (i = 0; i < n; i++) {
        if (fake_refused(convs[i].conv)) {
            return CHAT_STORE_REFUSED;
        }

        from = convs[i].after_seq;
        if (convs[i].last_seq - from > NGX_CHAT_WIRE_SYNC_CAP) {
            from = convs[i].last_seq - NGX_CHAT_WIRE_SYNC_CAP;
        }

        convs[i].first = s->nmessages;

        for (k = 0; k < fake.nmessages; k++) {
            m = &fake.messages[k];

            if (strcmp(m->conv, convs[i].conv) == 0 && m->seq > from
                && m->seq <= convs[i].last_seq)
            {
                s->messages[s->nmessages++] = *m;
            }
        }

        convs[i].n = s->nmessages - convs[i].first;
    }

    return CHAT_STORE_OK;
}


/* a user whose name begins with "blocked" is blocked by everyone */
chat_store_rc_t
chat_store_blocked_pairs(chat_store_t *st, const char **a, const char **b,
    size_t n, bool *blocked)
{
    size_t  i;

    (void) st;

    fake_trace("blocked_pairs", n);

    for (i = 0; i < n; i++) {
        blocked[i] = strncmp(a[i], "blocked", 7) == 0
                     || strncmp(b[i], "blocked", 7) == 0;
    }

    return CHAT_STORE_OK;
}


/* a block or unblock: the list is the other user alone, or empty */
chat_store_rc_t
chat_store_block(chat_store_t *st, chat_block_t *b, chat_arena_t *arena)
{
    (void) st;

    fake_trace("block", 1);

    b->blocked = chat_arena_alloc(arena, sizeof(char *));
    b->n = 0;

    if (b->req->op == NGX_CHAT_WIRE_OP_BLOCK) {
        b->blocked[b->n++] = b->req->other;
    }

    return CHAT_STORE_OK;
}


/* an edit, delete or react: see the script above */
chat_store_rc_t
chat_store_change(chat_store_t *st, chat_send_t *s, chat_arena_t *arena)
{
    (void) st;
    (void) arena;

    fake_trace("change", 1);

    if (fake_refused(s->req->conv)) {
        return CHAT_STORE_REFUSED;
    }

    if (s->direct_forbidden || strcmp(s->req->conv, "g:none") == 0) {
        s->state = CHAT_SEND_FORBIDDEN;
        return CHAT_STORE_OK;
    }

    if (s->req->target_mid == 1 || s->req->target_mid == 2) {
        s->state = CHAT_SEND_REFUSED;
        s->error_code = s->req->target_mid == 1 ? "not_found" : "forbidden";
        s->error_message = "no";
        return CHAT_STORE_OK;
    }

    s->state = s->req->offset == fake.replay_at ? CHAT_SEND_REPLAY
                                                : CHAT_SEND_NEW;
    s->msg.conv = s->req->conv;
    s->msg.seq = ++fake.seq;
    s->msg.message_id = 100 + fake.seq;
    s->msg.sender = s->req->user;
    s->msg.cmid = s->req->cmid;
    s->msg.kind = s->req->op == NGX_CHAT_WIRE_OP_EDIT ? "edit"
                  : s->req->op == NGX_CHAT_WIRE_OP_DELETE ? "delete"
                  : "reaction";
    s->msg.body = s->req->op == NGX_CHAT_WIRE_OP_EDIT ? s->req->body
                  : s->req->op == NGX_CHAT_WIRE_OP_REACT ? s->req->emoji
                  : NULL;
    s->msg.server_ts = 5;
    s->msg.target_id = s->req->target_mid;

    return CHAT_STORE_OK;
}


/* a change adds or removes whom it names; the creator is the admin */
chat_store_rc_t
chat_store_group_op(chat_store_t *st, chat_group_op_t *op,
    chat_arena_t *arena)
{
    const chat_request_t  *req = op->req;
    size_t                 i, n;

    (void) st;

    fake_trace(ngx_chat_wire_op_name(req->op), 1);

    if (fake_refused(req->conv)) {
        return CHAT_STORE_REFUSED;
    }

    n = json_array_size(req->user_ids);

    if (n + 1 > op->max_members) {
        op->rc = CHAT_GROUP_TOO_LARGE;
        return CHAT_STORE_OK;
    }

    op->rc = CHAT_GROUP_DONE;
    op->changed = true;
    op->name = req->name ? req->name : "T";
    op->msg.conv = req->conv;
    op->msg.seq = ++fake.seq;
    op->msg.message_id = 100 + fake.seq;
    op->msg.sender = req->user;
    op->msg.kind = "system";
    op->msg.body = "{\"event\":\"x\"}";
    op->msg.server_ts = 5;

    op->members = chat_arena_alloc(arena, (n + 1) * sizeof(chat_member_t));
    op->members[0].user = (char *) req->user;
    op->members[0].admin = true;
    op->members[0].joined_seq = 1;
    op->members[0].removed_seq = -1;

    for (i = 0; i < n; i++) {
        op->members[i + 1].user =
            (char *) json_string_value(json_array_get(req->user_ids, i));
        op->members[i + 1].admin = false;
        op->members[i + 1].joined_seq = 1;
        op->members[i + 1].removed_seq =
            req->op == NGX_CHAT_WIRE_OP_REMOVE_MEMBERS ? op->msg.seq : -1;
    }

    op->nmembers = n + 1;

    return CHAT_STORE_OK;
}


chat_store_rc_t
chat_store_receipts(chat_store_t *st, chat_receipt_t **r, size_t n,
    chat_arena_t *arena)
{
    size_t  i;

    (void) st;
    (void) arena;

    fake_trace("receipts", n);

    for (i = 0; i < n; i++) {
        if (fake_refused(r[i]->req->conv)) {
            return CHAT_STORE_REFUSED;
        }
    }

    for (i = 0; i < n; i++) {
        r[i]->rc = strcmp(r[i]->req->conv, "g:none") == 0
                   ? CHAT_RECEIPT_FORBIDDEN
                   : r[i]->req->seq > 100 ? CHAT_RECEIPT_BEYOND
                   : CHAT_RECEIPT_MOVED;
    }

    return CHAT_STORE_OK;
}


/* a coalesced receipt covers messages of "carol" and of the reader */
chat_store_rc_t
chat_store_receipt_senders(chat_store_t *st, chat_receipt_t **r, size_t n,
    chat_arena_t *arena)
{
    size_t  i, k = 0;

    (void) st;

    for (i = 0; i < n; i++) {
        if (r[i]->coalesce && r[i]->rc == CHAT_RECEIPT_MOVED
            && !r[i]->superseded)
        {
            r[i]->senders = chat_arena_alloc(arena, 2 * sizeof(char *));
            r[i]->senders[0] = "carol";
            r[i]->senders[1] = r[i]->req->user;
            r[i]->nsenders = 2;
            k++;
        }
    }

    if (k > 0) {
        fake_trace("senders", k);
    }

    return CHAT_STORE_OK;
}


chat_store_rc_t
chat_store_load_members(chat_store_t *st, chat_members_cache_t *c,
    const char *const *convs, size_t n)
{
    size_t  i, k;

    (void) st;

    if (n == 0) {
        return CHAT_STORE_OK;
    }

    fake_trace("load", n);

    for (i = 0; i < n; i++) {
        if (chat_is_dm_id(convs[i]) || chat_members_find(c, convs[i])) {
            continue;
        }

        for (k = 0; k < fake.ngroups; k++) {
            if (strcmp(fake.groups[k].conv, convs[i]) == 0) {
                break;
            }
        }

        if (k < fake.ngroups) {
            chat_members_set(c, convs[i], fake.groups[k].members,
                             fake.groups[k].n);
        } else {
            chat_members_set(c, convs[i], NULL, 0);
        }
    }

    return CHAT_STORE_OK;
}


/* the operators' ops: a revocation is written down; a redaction of
 * message 7 is done, of any other not found */

chat_store_rc_t
chat_store_revoke(chat_store_t *st, const chat_request_t *const *reqs,
    size_t n)
{
    size_t  i;

    (void) st;

    fake_trace("revoke", n);

    for (i = 0; i < n; i++) {
        chat_buf_printf(&fake.sent, "stored revoke %s %s %" PRId64 " by %s\n",
                        reqs[i]->target,
                        reqs[i]->target_dev ? reqs[i]->target_dev : "-",
                        reqs[i]->ts, reqs[i]->admin);
    }

    return CHAT_STORE_OK;
}


chat_store_rc_t
chat_store_redact(chat_store_t *st, chat_redact_t *r, chat_arena_t *arena)
{
    (void) st;
    (void) arena;

    fake_trace("redact", 1);

    if (fake_refused(r->req->conv)) {
        return CHAT_STORE_REFUSED;
    }

    if (r->req->message_id != 7) {
        r->rc = CHAT_REDACT_NOT_FOUND;
        return CHAT_STORE_OK;
    }

    r->rc = CHAT_REDACT_DONE;
    r->msg.conv = r->req->conv;
    r->msg.seq = ++fake.seq;
    r->msg.message_id = 100 + fake.seq;
    r->msg.sender = r->req->user;
    r->msg.kind = "system";
    r->msg.body = "{\"event\":\"message_redacted\"}";
    r->msg.server_ts = 5;

    return CHAT_STORE_OK;
}


bool
chat_control_revoked(chat_control_t *c, const char *admin, const char *user,
    const char *dev, int64_t ms)
{
    (void) c;

    chat_buf_printf(&fake.sent, "control revoke %s %s %" PRId64 " by %s\n",
                    user, dev ? dev : "-", ms, admin);

    return true;
}


/* the lists of streamed answers */

bool
chat_lists_push(chat_lists_t *l, const char *key, size_t key_len,
    const char *piece, size_t len, bool first)
{
    (void) l;

    if (++fake.pushes == fake.push_fail) {
        return false;
    }

    chat_buf_add(&fake.pieces, piece, len);
    if (fake.pushes <= 256) {
        fake.piece_end[fake.pushes - 1] = fake.pieces.len;
    }

    chat_buf_printf(&fake.pushed, "RPUSH %.*s %zu\n", (int) key_len, key,
                    len);

    if (first) {
        chat_buf_printf(&fake.pushed, "EXPIRE %.*s\n", (int) key_len, key);
    }

    return true;
}


bool
chat_lists_finish(chat_lists_t *l, const char *key, size_t key_len)
{
    (void) l;

    chat_buf_printf(&fake.pushed, "EXPIRE %.*s\n", (int) key_len, key);

    return true;
}


void
chat_lists_drop(chat_lists_t *l, const char *key, size_t key_len)
{
    (void) l;

    chat_buf_printf(&fake.pushed, "DEL %.*s\n", (int) key_len, key);
}


bool
chat_lists_wait(chat_lists_t *l)
{
    (void) l;

    fake.waits++;

    return true;
}


chat_images_rc_t
chat_images_make(chat_store_t *st, const chat_media_t *media, const char *id,
    int64_t size, int *width, int *height)
{
    (void) st;
    (void) media;
    (void) id;
    (void) size;
    (void) width;
    (void) height;

    fake_trace("images", 1);

    return CHAT_IMAGES_NONE;
}


bool
chat_images_queue(chat_images_t *im, const char *id, int64_t size)
{
    (void) im;
    (void) id;
    (void) size;

    return false;
}


bool
chat_images_pending(chat_images_t *im, const char *id)
{
    (void) im;

    return fake.pending != NULL && strstr(fake.pending, id) != NULL;
}


chat_images_rc_t
chat_images_claim(chat_images_t *im, const char *id, int *width,
    int *height)
{
    (void) im;
    (void) id;
    (void) width;
    (void) height;

    return CHAT_IMAGES_YOURS;
}


bool
chat_thumb_type(const char *content_type)
{
    return content_type != NULL && strncmp(content_type, "image/", 6) == 0;
}


bool
chat_thumb_make(const chat_media_t *m, const char *id,
    const char *content_type, int *width, int *height)
{
    (void) m;
    (void) id;
    (void) content_type;
    (void) width;
    (void) height;

    return false;
}


chat_store_rc_t
chat_store_upload_dims(chat_store_t *st, const char *id, int width,
    int height)
{
    (void) st;
    (void) id;
    (void) width;
    (void) height;

    return CHAT_STORE_OK;
}


chat_store_rc_t
chat_store_upload_rows(chat_store_t *st, const char **ids, size_t n,
    chat_upload_row_t **rows, size_t *nrows, chat_arena_t *arena)
{
    (void) st;
    (void) ids;
    (void) arena;

    fake_trace("upload_rows", n);
    *rows = NULL;
    *nrows = 0;

    return CHAT_STORE_OK;
}


chat_store_rc_t
chat_store_uploads(chat_store_t *st, chat_upload_op_t **ops, size_t n)
{
    (void) st;
    (void) ops;

    fake_trace("uploads", n);

    return fake_refused("uploads") ? CHAT_STORE_REFUSED : CHAT_STORE_OK;
}


chat_store_rc_t
chat_store_push(chat_store_t *st, chat_push_op_t **ops, size_t n)
{
    (void) st;
    (void) ops;

    fake_trace("push", n);

    return fake_refused("push") ? CHAT_STORE_REFUSED : CHAT_STORE_OK;
}


chat_store_rc_t
chat_store_repairs(chat_store_t *st, chat_repair_t **r, size_t n,
    chat_arena_t *arena)
{
    size_t  i, k;

    (void) st;

    fake_trace("repairs", n);

    for (i = 0; i < n; i++) {
        if (fake_refused("repairs")) {
            return CHAT_STORE_REFUSED;
        }

        r[i]->rows = (chat_repair_row_t *) fake.repair_rows;
        r[i]->n = fake.nrepair_rows;
        r[i]->groups = chat_arena_alloc(arena, (fake.ngroups + 1)
                                               * sizeof(chat_members_t));
        r[i]->ngroups = fake.ngroups;

        for (k = 0; k < fake.ngroups; k++) {
            r[i]->groups[k].conv = (char *) fake.groups[k].conv;
            r[i]->groups[k].members = (chat_member_t *)
                                      fake.groups[k].members;
            r[i]->groups[k].n = fake.groups[k].n;
        }
    }

    return CHAT_STORE_OK;
}


/* Redis */

bool
chat_redis_delivered(chat_redis_t *r, const int32_t *partitions, size_t n,
    int64_t *offsets)
{
    size_t  i;

    (void) r;
    (void) partitions;

    fake_trace("delivered", n);

    for (i = 0; i < n; i++) {
        offsets[i] = fake.delivered;
    }

    return true;
}


/*
 * what the outbox holds, one delivery a line: "node/sid frame" to a
 * session, "@user -node/sid frame" to a user but one session
 */
FAKE_HELPER void
fake_outbox(chat_buf_t *b, const chat_outbox_t *out)
{
    const chat_delivery_t  *d;
    const chat_frame_t     *f;
    size_t                  i;

    for (i = 0; i < out->ndeliveries; i++) {
        d = &out->deliveries[i];
        f = &out->frames[d->frame];

        if (f->type == NGX_CHAT_WIRE_RECORD_STREAM) {
            chat_buf_printf(b, "%s/%s stream ", d->node, d->sid);

        } else if (d->user == NULL) {
            chat_buf_printf(b, "%s/%s ", d->node, d->sid);

        } else if (d->sid) {
            chat_buf_printf(b, "@%s -%s/%s ", d->user, d->node, d->sid);

        } else {
            chat_buf_printf(b, "@%s ", d->user);
        }

        chat_buf_add(b, f->bytes, f->len);
        chat_buf_addc(b, '\n');
    }

    /* the joins and leaves for the sets of conversations */
    for (i = 0; i < out->nmembers; i++) {
        chat_buf_printf(b, "%s%c%s %s\n", out->members[i].block ? "b" : "",
                        out->members[i].joined ? '+' : '-',
                        out->members[i].user, out->members[i].conv);
    }
}


bool
chat_redis_deliver(chat_redis_t *r, chat_outbox_t *out, chat_arena_t *arena,
    const chat_position_t *done, size_t ndone)
{
    size_t  i;

    (void) r;
    (void) arena;

    fake_trace("deliver", out->ndeliveries);

    for (i = 0; i < ndone; i++) {
        chat_buf_printf(&fake.sent, "position %d %" PRId64 "\n",
                        (int) done[i].partition, done[i].offset);
    }

    fake_outbox(&fake.sent, out);

    for (i = 0; i < out->npushes; i++) {
        out->pushes[i].online = fake.online_device
                                && strcmp(out->pushes[i].device,
                                          fake.online_device) == 0;
    }

    return true;
}


/* Kafka */

bool
chat_pushes_produce(chat_pushes_t *p, const chat_outbox_push_t *const *pushes,
    size_t n)
{
    ngx_chat_wire_push_t  rec;
    char                  buf[NGX_CHAT_WIRE_PUSH_RECORD_MAX];
    size_t                i, len;

    (void) p;

    if (n == 0) {
        return true;
    }

    fake_trace("pushes", n);

    if (fake.produce_fail) {
        return false;
    }

    for (i = 0; i < n; i++) {
        rec.message_id = pushes[i]->message_id;
        rec.user = pushes[i]->user;
        rec.user_len = strlen(pushes[i]->user);
        rec.device = pushes[i]->device;
        rec.device_len = strlen(pushes[i]->device);
        rec.ts = pushes[i]->ts;
        len = ngx_chat_wire_push_record(buf, &rec);
        chat_buf_printf(&fake.sent, "push %.*s\n", (int) len, buf);
    }

    return true;
}


#endif /* CHAT_WORKER_FAKE_H */
