/*
 * worker_outbox.h: the outbox of a batch (worker_outbox.c): the frames the
 * batch answers with, and which of them goes to which session or to every
 * session of which user. The frames are complete protocol frames, made
 * once; worker_payload.c later turns the outbox into node payloads.
 *
 * Every delivery remembers the Kafka record it comes from (its partition,
 * for the P section it travels in; chat_outbox_from sets it per record),
 * whether it is an ack (an A record, with the record's ts), and the repair
 * it answers, if any: a repair's frames go to its node only, in its R
 * record, which goes out even when it holds no frame.
 *
 * Beside the frames, the pushes: a text message's recipient devices
 * registered for push, to go to the push topic unless the delivery's
 * lookup of the sessions finds the device live (worker_pushes.c).
 */

#ifndef CHAT_WORKER_OUTBOX_H
#define CHAT_WORKER_OUTBOX_H

#include <jansson.h>

#include "worker_util.h"


typedef struct {
    char    *bytes;
    size_t   len;
    int      type;          /* the record that carries it: F, or S for
                             * the key of a streamed answer */
} chat_frame_t;

/* one frame to one session, or to every session of a user but one */
typedef struct {
    size_t       frame;
    const char  *user;          /* NULL: to node/sid only */
    const char  *node;          /* the target, or the session to skip */
    const char  *sid;
    const char  *skip_dev;      /* to a user: a device to skip, or NULL */
    int32_t      partition;     /* the record's; -1: none */
    int32_t      repair;        /* index into repairs; -1: none */
    int64_t      ack_ms;        /* an ack: the record's ts; -1: not one */
} chat_delivery_t;

/* an R record to a node: the messages of (after, upto] of a partition */
typedef struct {
    const char  *node;
    int32_t      partition;
    int64_t      after;
    int64_t      upto;
} chat_outbox_repair_t;

/* a user joined or left a conversation (or blocked or unblocked another
 * user): its set of conversations (of blocked users) in Redis, which says
 * who sees its presence, changes with the delivery */
typedef struct {
    const char  *user;
    const char  *conv;          /* or the user blocked */
    bool         joined;        /* or blocked */
    bool         block;         /* the set of blocked users */
} chat_outbox_member_t;

/* a push record to produce unless the device is online */
typedef struct {
    int64_t      message_id;
    const char  *user;
    const char  *device;
    int64_t      ts;            /* the message's server_ts */
    int32_t      partition;     /* the record's */
    bool         online;        /* the device has a live session: set by
                                 * the delivery's lookup */
} chat_outbox_push_t;

typedef struct {
    chat_frame_t     *frames;
    size_t            nframes;
    size_t            frames_cap;
    chat_delivery_t  *deliveries;
    size_t            ndeliveries;
    size_t            deliveries_cap;
    chat_outbox_repair_t  *repairs;
    size_t            nrepairs;
    size_t            repairs_cap;
    chat_outbox_member_t  *members;
    size_t            nmembers;
    size_t            members_cap;
    chat_outbox_push_t    *pushes;
    size_t            npushes;
    size_t            pushes_cap;

    /* what the deliveries added now come from (chat_outbox_from) */
    int32_t           partition;
    int32_t           repair;
} chat_outbox_t;

/* serializes the frame and takes its reference; returns its index */
size_t chat_outbox_frame(chat_outbox_t *out, json_t *frame);
/* a frame already serialized; the outbox takes the malloc'ed bytes */
size_t chat_outbox_bytes(chat_outbox_t *out, char *bytes, size_t len);
void chat_outbox_to_session(chat_outbox_t *out, size_t frame,
    const char *node, const char *sid);
/* an S record for one session: its answer is in the list key */
void chat_outbox_stream(chat_outbox_t *out, const char *key, size_t key_len,
    const char *node, const char *sid);
void chat_outbox_to_user(chat_outbox_t *out, size_t frame, const char *user,
    const char *skip_node, const char *skip_sid);
/* an ack to its session: an A record with the record's ts */
void chat_outbox_ack(chat_outbox_t *out, size_t frame, const char *node,
    const char *sid, int64_t ts);
/* to every session of a user but those of one device (a repair) */
void chat_outbox_to_user_but_device(chat_outbox_t *out, size_t frame,
    const char *user, const char *skip_dev);
/* the deliveries added from now on come from a record of this partition
 * (-1: none) and answer no repair */
void chat_outbox_from(chat_outbox_t *out, int32_t partition);
/* an R record to node; the deliveries added until the next
 * chat_outbox_from belong to it (to its node's sessions only) */
void chat_outbox_repair(chat_outbox_t *out, const char *node,
    int32_t partition, int64_t after, int64_t upto);
/* user joined (or left) conv; both strings outlive the outbox's use */
void chat_outbox_member(chat_outbox_t *out, const char *user,
    const char *conv, bool joined);
/* a push of message_id to user's device, unless it is online; the
 * strings outlive the outbox's use */
void chat_outbox_push(chat_outbox_t *out, int64_t message_id,
    const char *user, const char *device, int64_t ts);
/* user blocked (or unblocked) other */
void chat_outbox_block(chat_outbox_t *out, const char *user,
    const char *other, bool blocked);
void chat_outbox_reset(chat_outbox_t *out);
void chat_outbox_free(chat_outbox_t *out);
/* forgets what was added after the outbox held nframes and ndeliveries */
void chat_outbox_truncate(chat_outbox_t *out, size_t nframes,
    size_t ndeliveries);


#endif /* CHAT_WORKER_OUTBOX_H */
