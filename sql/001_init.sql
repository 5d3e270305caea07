-- 001_init.sql: conversations, their members and their messages.
--
-- The store of record for chat_worker. Every conversation carries its own
-- gap-free sequence (last_seq), advanced under the conversation's row lock,
-- so seqs come out in commit order without a global counter. Direct
-- conversations ('dm:<a>:<b>') come into being with their first message;
-- groups are created explicitly and record membership changes as
-- 'system' messages in the same seq stream, which is why members remember
-- the seqs at which they joined and left instead of being deleted.
--
-- Times are integer milliseconds since the epoch, as in the protocol.

CREATE TABLE conversations (
    id            text    PRIMARY KEY,
    kind          text    NOT NULL CHECK (kind IN ('direct', 'group')),
    name          text,                         -- groups only
    last_seq      bigint  NOT NULL DEFAULT 0,   -- highest seq handed out
    last_activity bigint  NOT NULL,             -- server_ts of the last one
    created_at    bigint  NOT NULL,
    CHECK (kind = 'group' OR name IS NULL)
);

CREATE TABLE members (
    conversation_id text   NOT NULL REFERENCES conversations (id),
    user_id         text   NOT NULL,
    role            text   NOT NULL DEFAULT 'member'
                           CHECK (role IN ('admin', 'member')),
    joined_seq      bigint NOT NULL DEFAULT 0,  -- the event that added it
    removed_seq     bigint,                     -- null: a current member
    delivered_seq   bigint NOT NULL DEFAULT 0,  -- receipt pointers, which
    read_seq        bigint NOT NULL DEFAULT 0,  -- only move forward
    PRIMARY KEY (conversation_id, user_id),
    CHECK (read_seq <= delivered_seq)
);

-- sync lists a user's conversations
CREATE INDEX members_by_user ON members (user_id, conversation_id);

-- message ids are global (one sequence), seqs are per conversation
CREATE SEQUENCE message_ids AS bigint;

-- No foreign key to conversations: the only writer, chat_worker, inserts
-- messages right after taking the conversation's row lock, and a per-row
-- check trigger would only slow its multi-row insert down.
CREATE TABLE messages (
    conversation_id text    NOT NULL,
    seq             bigint  NOT NULL,
    message_id      bigint  NOT NULL DEFAULT nextval('message_ids') UNIQUE,
    sender_id       text    NOT NULL,
    device_id       text    NOT NULL,
    client_msg_id   text,                       -- null for system messages
    kind            text    NOT NULL CHECK (kind IN ('text', 'system')),
    body            text    NOT NULL,           -- system: JSON object text
    server_ts       bigint  NOT NULL,
    -- The Kafka record that stored the row. A worker that died between its
    -- COMMIT and its offset commit leaves the record to be consumed again;
    -- the same partition and offset tell it apart from a client's retry, so
    -- that its answers go out if they had not yet.
    kafka_partition integer,
    kafka_offset    bigint,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id),          -- the idempotency key
    CHECK (kind = 'system' OR client_msg_id IS NOT NULL)
);

ALTER SEQUENCE message_ids OWNED BY messages.message_id;
