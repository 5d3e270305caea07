-- 031_blocks.sql: whom each user blocks.
--
-- A blocked user's direct sends to its blocker are refused
-- (worker_store_sends.c asks this table for the batch's direct sends);
-- group messages are not affected. The rows are the store of record;
-- the workers answer `blocked` with a user's whole list.

CREATE TABLE blocks (
    user_id    text   NOT NULL,     -- who blocks
    blocked_id text   NOT NULL,     -- whom
    created_at bigint NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
