-- 001_init.sql: conversations, their members and their messages.
--
-- The store of record for chat_worker. Every conversation carries its own
-- gap-free sequence (last_seq), advanced under the conversation's row lock, so
-- seqs come out in commit order without a global counter. Direct
-- conversations ('dm:<a>:<b>') come into being with their first message;
-- groups (issue 3) are created explicitly and record membership changes as
-- 'system' messages in the same seq stream, which is why members remember the
-- seq at which they joined and left instead of being deleted.
--
-- Times are integer milliseconds since the epoch, like everywhere in the
-- protocol.

CREATE TABLE conversations (
    id            text    PRIMARY KEY,
    kind          text    NOT NULL CHECK (kind IN ('direct', 'group')),
    name          text,                          -- groups only; null for direct
    last_seq      bigint  NOT NULL DEFAULT 0,    -- highest seq handed out
    last_activity bigint  NOT NULL,              -- server_ts of the last message
    created_at    bigint  NOT NULL,
    CHECK (kind = 'group' OR name IS NULL)
);

CREATE TABLE members (
    conversation_id text   NOT NULL REFERENCES conversations (id),
    user_id         text   NOT NULL,
    role            text   NOT NULL DEFAULT 'member'
                           CHECK (role IN ('admin', 'member')),
    joined_seq      bigint NOT NULL DEFAULT 0,   -- seq of the event that added it
    removed_seq     bigint,                      -- null while a current member
    delivered_seq   bigint NOT NULL DEFAULT 0,   -- receipt pointers, only move up
    read_seq        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id),
    CHECK (read_seq <= delivered_seq)
);

-- sync lists a user's conversations
CREATE INDEX members_by_user ON members (user_id, conversation_id);

-- message ids are global (one sequence), seqs are per conversation
CREATE SEQUENCE message_ids AS bigint;

-- no foreign key to conversations: the only writer, chat_worker, inserts
-- messages under the conversation's row lock it has just taken, and a
-- per-row check trigger would cost a third of the insert
CREATE TABLE messages (
    conversation_id text    NOT NULL,
    seq             bigint  NOT NULL,
    message_id      bigint  NOT NULL DEFAULT nextval('message_ids') UNIQUE,
    sender_id       text    NOT NULL,
    device_id       text    NOT NULL,
    client_msg_id   text,                        -- null only for system messages
    kind            text    NOT NULL CHECK (kind IN ('text', 'system')),
    body            text    NOT NULL,            -- system: a JSON object as text
    server_ts       bigint  NOT NULL,
    -- the Kafka record that created the row: a worker that died between its
    -- COMMIT and its offset commit recognises its own rows when it sees the
    -- same record again, and delivers them instead of treating them as retries
    kafka_partition integer,
    kafka_offset    bigint,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id),           -- the idempotency key
    CHECK (kind = 'system' OR client_msg_id IS NOT NULL)
);

ALTER SEQUENCE message_ids OWNED BY messages.message_id;
