/*
 * worker_events.c: a batch's group changes, receipts and typing, from
 * records to frames in the outbox (worker_batch.c decides when each runs;
 * worker_store_groups.c and worker_store_receipts.c store them).
 *
 * Who hears of what (../shared/PROTOCOL.md):
 *   - a change: the requester gets "group" (the members now); the system
 *     message goes to every device of every member after the change, the
 *     requesting one included, and to the members it removed;
 *   - a receipt that moved a pointer: every device of every member, the
 *     reader's included (read state syncs across its devices);
 *   - typing: the other members' devices, none of the typer's.
 * Members come from the membership cache (worker_members.c), which the
 * change sets in the same code path that stored it.
 */

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "worker_events.h"
#include "worker_frame.h"


static void
chat_events_error(chat_outbox_t *out, const chat_request_t *req,
    const char *code, const char *message)
{
    chat_outbox_to_session(out,
        chat_outbox_frame(out, chat_frame_error_for(req, code, message)),
        req->node, req->sid);
}


/* frame to every device of every current member of conv but skip's */
static void
chat_events_to_members(chat_batch_ctx_t *ctx, chat_outbox_t *out,
    chat_arena_t *arena, size_t frame, const char *conv, const char *skip)
{
    const chat_members_t  *g;
    size_t               i;
    char                 a[NGX_CHAT_WIRE_ID_MAX + 1];
    char                 b[NGX_CHAT_WIRE_ID_MAX + 1];

    if (chat_parse_dm(conv, a, b)) {
        if (skip == NULL || strcmp(a, skip) != 0) {
            chat_outbox_to_user(out, frame, chat_arena_strdup(arena, a),
                                NULL, NULL);
        }

        if (strcmp(a, b) != 0 && (skip == NULL || strcmp(b, skip) != 0)) {
            chat_outbox_to_user(out, frame, chat_arena_strdup(arena, b),
                                NULL, NULL);
        }

        return;
    }

    g = chat_members_find(ctx->members, conv);
    if (g == NULL) {
        return;
    }

    for (i = 0; i < g->n; i++) {
        if (g->members[i].removed_seq < 0
            && (skip == NULL || strcmp(g->members[i].user, skip) != 0))
        {
            chat_outbox_to_user(out, frame, g->members[i].user, NULL, NULL);
        }
    }
}


bool
chat_events_group_op(chat_batch_ctx_t *ctx, chat_request_t *req,
    chat_outbox_t *out, chat_arena_t *arena)
{
    chat_group_op_t   op;
    chat_store_rc_t   rc;
    size_t            frame, i;

    memset(&op, 0, sizeof(op));
    op.req = req;
    op.max_members = ctx->max_group_members;

    rc = chat_store_group_op(ctx->store, &op, arena);

    if (rc == CHAT_STORE_STOPPED) {
        return false;
    }

    if (rc == CHAT_STORE_REFUSED) {
        log_error("partition %d offset %" PRId64 ": conversation %s: the"
                  " store refused the change", req->partition, req->offset,
                  req->conv);
        chat_events_error(out, req, "internal", "the change failed");
        return true;
    }

    switch (op.rc) {

    case CHAT_GROUP_FORBIDDEN:
        chat_events_error(out, req, "forbidden",
                          "not a member or not an admin of this group");
        return true;

    case CHAT_GROUP_TOO_LARGE:
        chat_events_error(out, req, "too_large",
                          "the group would have too many members");
        return true;

    case CHAT_GROUP_DONE:
        break;
    }

    chat_members_set(ctx->members, req->conv, op.members, op.nmembers);

    chat_outbox_to_session(out,
        chat_outbox_frame(out, chat_frame_group(req->req_id, req->conv,
                                                op.name, op.members,
                                                op.nmembers)),
        req->node, req->sid);

    if (!op.changed) {
        return true;
    }

    frame = chat_outbox_frame(out,
                              chat_frame_message_object(&op.msg, true));

    chat_events_to_members(ctx, out, arena, frame, req->conv, NULL);

    /* the removed hear of it too: their last message */
    for (i = 0; i < op.nmembers; i++) {
        if (op.members[i].removed_seq == op.msg.seq) {
            chat_outbox_to_user(out, frame,
                                chat_arena_strdup(arena, op.members[i].user),
                                NULL, NULL);
        }
    }

    return true;
}


/* the group conversations of reqs, into the cache; false on stop */
static bool
chat_events_load(chat_batch_ctx_t *ctx, chat_request_t **reqs, size_t n,
    chat_arena_t *arena)
{
    const char  **convs;
    size_t        i;

    convs = chat_arena_alloc(arena, (n + 1) * sizeof(char *));

    for (i = 0; i < n; i++) {
        convs[i] = reqs[i]->conv;
    }

    return chat_store_load_members(ctx->store, ctx->members, convs, n)
           != CHAT_STORE_STOPPED;
}


bool
chat_events_receipts(chat_batch_ctx_t *ctx, chat_request_t **reqs, size_t n,
    chat_outbox_t *out, chat_arena_t *arena)
{
    chat_receipt_t   *r;
    chat_store_rc_t   rc;
    int64_t           now;
    size_t            i;

    if (n == 0) {
        return true;
    }

    r = chat_arena_alloc(arena, n * sizeof(chat_receipt_t));

    for (i = 0; i < n; i++) {
        r[i].req = reqs[i];
        r[i].rc = CHAT_RECEIPT_FORBIDDEN;
    }

    rc = chat_store_receipts(ctx->store, r, n, arena);

    if (rc == CHAT_STORE_STOPPED || !chat_events_load(ctx, reqs, n, arena)) {
        return false;
    }

    now = chat_now_ms();

    for (i = 0; i < n; i++) {
        chat_request_t  *req = reqs[i];

        if (rc == CHAT_STORE_REFUSED) {
            chat_events_error(out, req, "internal",
                              "the receipt could not be stored");
            continue;
        }

        switch (r[i].rc) {

        case CHAT_RECEIPT_FORBIDDEN:
            chat_events_error(out, req, "forbidden",
                              "not a member of this conversation");
            break;

        case CHAT_RECEIPT_BEYOND:
            chat_events_error(out, req, "bad_request",
                              "seq is beyond the conversation's last");
            break;

        case CHAT_RECEIPT_IGNORED:
            break;

        case CHAT_RECEIPT_MOVED:
            chat_events_to_members(ctx, out, arena,
                chat_outbox_frame(out, chat_frame_receipt(req->conv,
                                      req->user, req->state, req->seq, now)),
                req->conv, NULL);
            break;
        }
    }

    return true;
}


bool
chat_events_typing(chat_batch_ctx_t *ctx, chat_request_t **reqs, size_t n,
    chat_outbox_t *out, chat_arena_t *arena)
{
    chat_members_t  *g;
    size_t         i;

    if (n == 0) {
        return true;
    }

    if (!chat_events_load(ctx, reqs, n, arena)) {
        return false;
    }

    for (i = 0; i < n; i++) {
        chat_request_t  *req = reqs[i];

        switch (chat_direct_access(req->conv, req->user)) {

        case NGX_CHAT_WIRE_FORBIDDEN:
            chat_events_error(out, req, "forbidden",
                              "not a member of this conversation");
            continue;

        case NGX_CHAT_WIRE_ASK_STORE:
            g = chat_members_find(ctx->members, req->conv);

            if (g == NULL || !chat_members_has(g, req->user)) {
                chat_events_error(out, req, "forbidden",
                                  "not a member of this conversation");
                continue;
            }

            break;

        case NGX_CHAT_WIRE_ALLOWED:
            break;
        }

        chat_events_to_members(ctx, out, arena,
            chat_outbox_frame(out, chat_frame_typing(req->conv, req->user,
                                                     req->state)),
            req->conv, req->user);
    }

    return true;
}
