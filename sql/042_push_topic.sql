-- 042_push_topic.sql: pushes come through the push topic, not a trigger.
--
-- chat_worker now finds a text message's recipient devices registered for
-- push in the transaction that stores the message (one statement a batch,
-- in a round trip the send path makes anyway), and after the commit and
-- the delivery it produces a record to the push topic (chat.push) for
-- each device the session registry shows without a live session; the
-- batch's Kafka offsets are committed only once those records are
-- acknowledged, so a worker that dies in between replays the batch and
-- produces them again. chat_pusher's consumer group enters each record
-- into push_outbox with ON CONFLICT DO NOTHING: the table stays the retry
-- schedule, and its primary key still makes a second push of one message
-- to one device impossible, replays included.
--
-- The trigger would now write a second, earlier row for every device,
-- including those with a live session (which the worker leaves out), and
-- cost every batch of sends a statement trigger: it goes.

DROP TRIGGER IF EXISTS messages_push ON messages;
DROP FUNCTION IF EXISTS push_enqueue();
