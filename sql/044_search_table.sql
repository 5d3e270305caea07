-- 044_search_table.sql: the search vectors in a table of their own, written
-- after a send's commit instead of inside it.
--
-- A generated column and its GIN index made every message row of a send's
-- transaction cost PostgreSQL the vector and the index entry before the
-- send could be acknowledged. message_search holds the same vector (the
-- body, then the attachment names twice, as 043 wrote it:
-- chat_search_vector()) for the text messages that are neither deleted
-- nor redacted, with the conversation and seq that the search query
-- filters on before it reads the messages rows. chat_worker fills it in
-- bulk after the sends commit (worker_store_index.c), a few hundred ms
-- behind them; an edit rewrites its row, and a deletion or a redaction
-- removes it, in their own transactions.
--
-- search_positions says, per Kafka partition of the requests topic, up to
-- which offset every text message stored by that partition's records is
-- in message_search (or deleted). A worker that takes a partition
-- indexes what is missing after that offset (through messages_by_offset),
-- so that a worker killed between a send's commit and its indexing leaves
-- nothing out for longer than it takes its partitions to move.

CREATE FUNCTION chat_search_vector(body text, names text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN names IS NULL
                      THEN to_tsvector(chat_search_config(), body)
                      ELSE to_tsvector(chat_search_config(), body)
                           || to_tsvector(chat_search_config(),
                                          names || E'\n'
                                          || chat_search_name(names))
                 END $$;

ALTER TABLE messages DROP COLUMN search;

CREATE TABLE message_search (
    message_id      bigint   PRIMARY KEY,
    conversation_id text     NOT NULL,
    seq             bigint   NOT NULL,
    search          tsvector NOT NULL
);

INSERT INTO message_search (message_id, conversation_id, seq, search)
    SELECT message_id, conversation_id, seq,
           chat_search_vector(body, attachment_names)
    FROM messages
    WHERE kind = 'text' AND NOT deleted AND redacted_at IS NULL
    AND body IS NOT NULL;

CREATE INDEX message_search_search ON message_search USING gin (search);

CREATE TABLE search_positions (
    kafka_partition integer PRIMARY KEY,
    kafka_offset    bigint  NOT NULL
);

INSERT INTO search_positions (kafka_partition, kafka_offset)
    SELECT kafka_partition, max(kafka_offset) FROM messages
    WHERE kafka_partition IS NOT NULL AND kafka_offset IS NOT NULL
    GROUP BY kafka_partition;
