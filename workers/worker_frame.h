/*
 * worker_frame.h: the protocol frames chat_worker writes
 * (worker_frame.c), exactly as ../shared/PROTOCOL.md spells them.
 */

#ifndef CHAT_WORKER_FRAME_H
#define CHAT_WORKER_FRAME_H

#include <jansson.h>

#include "worker_store.h"


/* the frames as objects; the callers serialize them with chat_frame_dump
 * (or chat_outbox_frame), which takes the reference */
json_t *chat_frame_message_object(const chat_message_t *m, bool with_type);
json_t *chat_frame_ack(const chat_message_t *m);
json_t *chat_frame_error(const char *code, const char *message,
    const char *tag_name, json_t *tag);
json_t *chat_frame_error_for(const chat_request_t *req, const char *code,
    const char *message);
json_t *chat_frame_receipt(const char *conv, const char *user,
    const char *state, int64_t seq, int64_t server_ts);
json_t *chat_frame_typing(const char *conv, const char *user,
    const char *state);
json_t *chat_frame_group(json_t *req_id, const char *conv, const char *name,
    const chat_member_t *members, size_t n);
json_t *chat_frame_history(json_t *req_id, const char *conv,
    const chat_history_rows_t *h);
json_t *chat_frame_conversation_item(const chat_sync_conv_t *c, bool sync);
json_t *chat_frame_receipts(json_t *req_id, const char *conv,
    const chat_receipts_rows_t *r);
json_t *chat_frame_sync_done(json_t *req_id);
json_t *chat_frame_push_registered(json_t *req_id);
json_t *chat_frame_upload(const chat_request_t *req);
json_t *chat_frame_blocked(json_t *req_id, const char *const *users,
    size_t n);
json_t *chat_frame_search(json_t *req_id, const chat_search_rows_t *s);
char *chat_frame_dump(json_t *frame, size_t *len);

/* the two frames of every message, written straight to bytes (the same
 * bytes chat_frame_dump makes of the objects above, without building them) */
char *chat_frame_ack_text(const chat_message_t *m, size_t *len);
char *chat_frame_message_text(const chat_message_t *m, size_t *len);

/* a conversations frame of the rows (at most their limit) that fit in max
 * bytes: how many it lists in *listed, "has_more" when not all */
char *chat_frame_conversations_text(json_t *req_id,
    const chat_sync_rows_t *s, bool sync, size_t max, size_t *listed,
    size_t *len);


#endif /* CHAT_WORKER_FRAME_H */
