/*
 * worker_fanout.c: who, besides the requesting session, gets which frame
 * (../shared/PROTOCOL.md), decided here and nowhere else:
 *
 *   - a message: every device of every member, the sender's other
 *     devices included, not the sending one (it has its ack);
 *   - a membership change: its system message to every device of every
 *     member after the change, the requesting one included, and to the
 *     members it removed (their last message);
 *   - a receipt that moved a pointer: every device of every member, the
 *     reader's included (read state syncs across its devices); in a
 *     group over the receipt fan-out limit, the reader's devices and the
 *     current members who sent the messages it covers, and only the last
 *     move of the batch for the reader and that state (the others ask
 *     with receipts or read others_*_seq in their conversation lists);
 *   - typing: the other members' devices, none of the typer's;
 *   - a redaction: its system message to every device of every member.
 *   - a repair: the messages of the gap again, each as its first fan-out
 *     had it (the members as of its seq, the sending device excluded from
 *     a text), to the sessions on the node that asked only.
 *
 * The members of a direct conversation are in its id; a group's come from
 * the membership cache (worker_members.c), which holds them as of this
 * point of the batch: the store step of a change sets it, and the store
 * steps of the others load what it lacks. Pure code: the unit tests
 * include this file.
 */

#include "worker_fanout.h"
#include "worker_frame.h"


/*
 * frame to every device of every current member of conv, but those of
 * skip_user and the one session (skip_node, skip_sid); either skip may be
 * NULL
 */
static void
chat_fanout_members(chat_op_ctx_t *ctx, size_t frame, const char *conv,
    const char *skip_user, const char *skip_node, const char *skip_sid)
{
    const chat_members_t  *g;
    size_t                 i;
    char                   a[NGX_CHAT_WIRE_ID_MAX + 1];
    char                   b[NGX_CHAT_WIRE_ID_MAX + 1];

    if (chat_parse_dm(conv, a, b)) {
        if (skip_user == NULL || strcmp(a, skip_user) != 0) {
            chat_outbox_to_user(ctx->out, frame,
                                chat_arena_strdup(ctx->arena, a),
                                skip_node, skip_sid);
        }

        /* a conversation with oneself has one member */
        if (strcmp(a, b) != 0
            && (skip_user == NULL || strcmp(b, skip_user) != 0))
        {
            chat_outbox_to_user(ctx->out, frame,
                                chat_arena_strdup(ctx->arena, b),
                                skip_node, skip_sid);
        }

        return;
    }

    g = chat_members_find(ctx->members, conv);
    if (g == NULL) {
        return;
    }

    for (i = 0; i < g->n; i++) {
        if (g->members[i].removed_seq < 0
            && (skip_user == NULL
                || strcmp(g->members[i].user, skip_user) != 0))
        {
            chat_outbox_to_user(ctx->out, frame, g->members[i].user,
                                skip_node, skip_sid);
        }
    }
}


void
chat_fanout_send(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_send_t  *s = &item->u.send;
    char               *bytes;
    size_t              len;
    char                a[NGX_CHAT_WIRE_ID_MAX + 1];
    char                b[NGX_CHAT_WIRE_ID_MAX + 1];

    /* a retry was delivered when it was new */
    if (s->state != CHAT_SEND_NEW && s->state != CHAT_SEND_REPLAY) {
        return;
    }

    bytes = chat_frame_message_text(&s->msg, &len);

    chat_fanout_members(ctx, chat_outbox_bytes(ctx->out, bytes, len),
                        s->msg.conv, NULL, item->req->node, item->req->sid);

    /* a direct conversation's members join with its first message */
    if (s->msg.seq == 1 && chat_parse_dm(s->msg.conv, a, b)) {
        chat_outbox_member(ctx->out, chat_arena_strdup(ctx->arena, a),
                           s->msg.conv, true);
        chat_outbox_member(ctx->out, chat_arena_strdup(ctx->arena, b),
                           s->msg.conv, true);
    }
}


void
chat_fanout_push(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_send_t  *s = &item->u.send;
    size_t              i;

    if (s->state != CHAT_SEND_NEW && s->state != CHAT_SEND_REPLAY) {
        return;
    }

    for (i = 0; i < s->npush; i++) {
        chat_outbox_push(ctx->out, s->msg.message_id, s->push[i].user,
                         s->push[i].device, s->msg.server_ts);
    }
}


void
chat_fanout_group(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_group_op_t  *op = &item->u.group;
    size_t                  frame, i;

    if (op->rc != CHAT_GROUP_DONE || !op->changed) {
        return;
    }

    frame = chat_outbox_frame(ctx->out,
                              chat_frame_message_object(&op->msg, true));

    chat_fanout_members(ctx, frame, item->req->conv, NULL, NULL, NULL);

    /* the removed hear of it too: their last message */
    for (i = 0; i < op->nmembers; i++) {
        if (op->members[i].removed_seq == op->msg.seq) {
            chat_outbox_to_user(ctx->out, frame,
                                chat_arena_strdup(ctx->arena,
                                                  op->members[i].user),
                                NULL, NULL);
            chat_outbox_member(ctx->out, op->members[i].user,
                               item->req->conv, false);

        } else if (op->members[i].joined_seq == op->msg.seq
                   && op->members[i].removed_seq < 0)
        {
            chat_outbox_member(ctx->out, op->members[i].user,
                               item->req->conv, true);
        }
    }
}


/* was user a member at seq (it heard of its own removal, at seq)? */
static bool
chat_fanout_member_at(const chat_member_t *m, int64_t seq)
{
    return m->joined_seq <= seq
           && (m->removed_seq < 0 || m->removed_seq >= seq);
}


void
chat_fanout_repair(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_repair_t      *r = &item->u.repair;
    const chat_repair_row_t  *row;
    const chat_members_t     *g;
    char                     *bytes;
    size_t                    i, k, frame, len;
    bool                      text;
    char                      a[NGX_CHAT_WIRE_ID_MAX + 1];
    char                      b[NGX_CHAT_WIRE_ID_MAX + 1];

    if (r->too_large || ctx->out->repair < 0) {
        return;
    }

    for (i = 0; i < r->n; i++) {
        row = &r->rows[i];
        text = strcmp(row->msg.kind, "system") != 0;

        if (text) {
            bytes = chat_frame_message_text(&row->msg, &len);
            frame = chat_outbox_bytes(ctx->out, bytes, len);

        } else {
            frame = chat_outbox_frame(ctx->out,
                              chat_frame_message_object(&row->msg, true));
        }

        /* the sender's other devices hear of a text, not the sending one */
#define chat_fanout_skip(user)                                                     (text && row->device && row->msg.sender                                     && strcmp(user, row->msg.sender) == 0 ? row->device : NULL)

        if (chat_parse_dm(row->msg.conv, a, b)) {
            chat_outbox_to_user_but_device(ctx->out, frame,
                                           chat_arena_strdup(ctx->arena, a),
                                           chat_fanout_skip(a));

            if (strcmp(a, b) != 0) {
                chat_outbox_to_user_but_device(ctx->out, frame,
                                             chat_arena_strdup(ctx->arena, b),
                                             chat_fanout_skip(b));
            }

            continue;
        }

        for (k = 0, g = NULL; k < r->ngroups; k++) {
            if (strcmp(r->groups[k].conv, row->msg.conv) == 0) {
                g = &r->groups[k];
                break;
            }
        }

        for (k = 0; g && k < g->n; k++) {
            if (chat_fanout_member_at(&g->members[k], row->msg.seq)) {
                chat_outbox_to_user_but_device(ctx->out, frame,
                                               g->members[k].user,
                                               chat_fanout_skip(
                                                   g->members[k].user));
            }
        }

#undef chat_fanout_skip
    }
}


void
chat_fanout_receipt(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t  *req = item->req;
    const chat_receipt_t  *r = &item->u.receipt;
    const chat_members_t  *g;
    size_t                 frame, i;

    if (r->rc != CHAT_RECEIPT_MOVED || (r->coalesce && r->superseded)) {
        return;
    }

    frame = chat_outbox_frame(ctx->out,
                              chat_frame_receipt(req->conv, req->user,
                                                 req->state, req->seq,
                                                 chat_now_ms()));

    if (!r->coalesce) {
        chat_fanout_members(ctx, frame, req->conv, NULL, NULL, NULL);
        return;
    }

    chat_outbox_to_user(ctx->out, frame, req->user, NULL, NULL);

    g = chat_members_find(ctx->members, req->conv);

    for (i = 0; g && i < r->nsenders; i++) {
        if (strcmp(r->senders[i], req->user) != 0
            && chat_members_has(g, r->senders[i]))
        {
            chat_outbox_to_user(ctx->out, frame, r->senders[i], NULL, NULL);
        }
    }
}


void
chat_fanout_typing(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t  *req = item->req;

    if (!item->u.typing.allowed || item->u.typing.hidden) {
        return;
    }

    chat_fanout_members(ctx,
        chat_outbox_frame(ctx->out,
                          chat_frame_typing(req->conv, req->user,
                                            req->state)),
        req->conv, req->user, NULL, NULL);
}


void
chat_fanout_redact(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_redact_t  *r = &item->u.redact;

    if (r->rc != CHAT_REDACT_DONE) {
        return;
    }

    chat_fanout_members(ctx,
        chat_outbox_frame(ctx->out, chat_frame_message_object(&r->msg, true)),
        r->msg.conv, NULL, NULL, NULL);
}


void
chat_fanout_block(chat_op_ctx_t *ctx, const chat_item_t *item)
{
    const chat_request_t  *req = item->req;

    chat_outbox_block(ctx->out, req->user, req->other,
                      req->op == NGX_CHAT_WIRE_OP_BLOCK);
}
