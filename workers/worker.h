/*
 * worker.h: what every part of chat_worker shares, and only that: the wire
 * contract (ngx_chat_wire.h), the stop flag and the size of a batch. Each
 * file has its own header for the rest.
 *
 * chat_worker takes batches of client requests from Kafka, stores and
 * reads them in PostgreSQL and answers through Redis pub/sub. The parts,
 * each with its own header:
 *
 *   chat_worker.c      the command line, signals, the batch loop
 *   worker_kafka.c     records from the consumer group, offset commits
 *   worker_batch.c     one batch: records to requests, their order, the
 *                      sends' answers, delivery
 *   worker_events.c    the batch's group changes, receipts and typing
 *   worker_store*.c    PostgreSQL (worker_store.h lists the files)
 *   worker_outbox.c    which frame goes to which session or user
 *   worker_payload.c   the outbox as one payload per nginx node
 *   worker_redis.c     sessions, the PUBLISHes, the delivered marks
 *   worker_request.c   one Kafka record as a checked request (pure)
 *   worker_frame.c     the protocol frames (pure)
 *   worker_members.c   the membership cache (pure)
 *   worker_util.c      log, clock, buffers, arena, map (pure)
 *
 * The only mutable global is the stop flag in chat_worker.c; everything
 * else hangs off the objects the parts return. Allocation failures abort:
 * a worker without memory cannot do anything useful, and at-least-once
 * processing with idempotent writes makes a restart safe.
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
