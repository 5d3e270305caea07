/*
 * worker.h: what every part of chat_worker shares, and only that: the wire
 * contract (ngx_chat_wire.h), the stop flag and the size of a batch. Each
 * file has its own header for the rest.
 *
 * chat_worker takes batches of client requests from Kafka, stores and
 * reads them in PostgreSQL, answers through Redis pub/sub and leaves the
 * pushes for chat_pusher on a topic of their own. Data flows
 * one way through its parts, each with its own header: a part calls only
 * those after it, never one before.
 *
 *   worker_kafka.c     records from the consumer group, offset commits
 *   worker_batch.c     one batch: its order, its stages, its delivery
 *   worker_ops.c       the table of ops: a record's fields -> a request;
 *                      the request -> the store (worker_item.h: what
 *                      travels from here on)
 *   worker_images.c    uploaded images' sizes and thumbnails, on a
 *                      thread with its own store connection
 *   worker_store*.c    PostgreSQL: results, never frames
 *   worker_answer.c    results -> frames for the requester
 *   worker_fanout.c    results -> frames for everyone else
 *   worker_outbox.c    which frame goes to which session or user
 *   worker_stream.c    an answer too large to publish -> pieces of a list
 *   worker_lists.c     those pieces -> Redis lists (its own connection)
 *   worker_payload.c   the outbox -> one payload per nginx node, in
 *                      sections chained per partition
 *   worker_redis.c     sessions, the fenced publish, the delivered marks,
 *                      the chain heads, the users' sets of conversations
 *                      and the groups' sets of members
 *   worker_pushes.c    the pushes to devices without a live session ->
 *                      the push topic, acknowledged before the batch's
 *                      offsets are committed
 *
 * Beside the batches, worker_contacts.c writes those sets again from the
 * store after Redis lost them, and the loop writes the search index after
 * the sends committed, from worker_index.c's to-do list (which the sends'
 * store step fills) through worker_store_index.c, on a connection of its
 * own while the batches go on.
 *
 * The operators' revocations leave the store for Redis through a part of
 * their own, which the revoke op's store step and the loop call:
 *
 *   worker_control.c   chat:revoked and chat:control, its own connection
 *
 * Each of worker_lists.c, worker_redis.c and worker_control.c keeps a
 * connection of its own, made by the one below them all that reaches
 * Redis: worker_redis_link.c (the --redis address, the timeouts, the
 * keepalive, the scripts loaded and named by their SHA1).
 *
 * Under them, pure helpers: worker_request.c (a record's envelope and
 * fields), worker_frame.c (the protocol frames), worker_members.c (the
 * membership cache), worker_media.c (attachments' files and their signed
 * URLs), worker_thumb.c (images' sizes and thumbnails, GraphicsMagick),
 * worker_chain.c (per partition held: its epoch, its delivered mark, its
 * chain heads per node), worker_util.c (log: JSON lines, clock, buffers,
 * arena, map, the waits, a main's stop signals and option numbers),
 * worker_index.c (what the search index has still to get),
 * worker_metrics.h (the figures, atomic counters), and worker_topic.c (the
 * Kafka clients' settings, a topic made sure of).
 * chat_worker.c is the command line and the loop that ties them, and
 * worker_stats.c the line the loop logs about its batches. The metrics
 * endpoint is a thread: worker_httpd.c (the server), worker_metrics.c
 * (the text), worker_lag.c (the consumer group's lag, asked of Kafka).
 *
 * The only mutable global is the stop flag, which worker_util.c's signal
 * handler sets (chat_stop_on_signals, called by the main); everything
 * else hangs off the objects the parts return (the figures too: the
 * metrics thread gets them from the loop's worker object). Allocation
 * failures abort: a worker without memory cannot do anything useful, and
 * at-least-once processing with idempotent writes makes a restart safe.
 */

#ifndef CHAT_WORKER_H
#define CHAT_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ngx_chat_wire.h"


/* records per batch: Kafka collects at most this many, and the store
 * looks this far back for a change a batch stored before a crash */
#define CHAT_BATCH_MAX  1000


/* the SIGTERM/SIGINT flag, set by the handler and only read elsewhere */
typedef const volatile sig_atomic_t  chat_stop_t;


#endif /* CHAT_WORKER_H */
