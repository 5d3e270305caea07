-- 010_messages_by_offset.sql: the messages of a range of Kafka offsets.
--
-- A nginx node that missed sections of a partition's chain asks the
-- partition's worker to repair the gap (the wire's `repair` record): the
-- worker reads the messages that the records (after, upto] of that
-- partition stored (worker_store_repairs.c). Numbered apart from the
-- migrations other branches add after 001, so that none takes another's
-- number (schema_migrations keys on it).

CREATE INDEX messages_by_offset ON messages (kafka_partition, kafka_offset);
