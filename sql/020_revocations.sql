-- 020_revocations.sql: operators' revocations of a user's tokens
-- (chatctl revoke, through Kafka and chat_worker).
--
-- The store of record behind Redis's chat:revoked hash: every worker
-- writes that hash again from here when it starts and whenever its Redis
-- was restarted or flushed, so Redis may lose it without losing anything.
-- A token issued before revoked_at (or without iat) is refused.
--
-- Keyed by (user, device, time): the worker that consumes a record again
-- after a crash stores nothing twice.

CREATE TABLE revocations (
    user_id         text    NOT NULL,
    device_id       text    NOT NULL DEFAULT '',    -- '': every device
    revoked_at      bigint  NOT NULL,               -- ms since the epoch
    admin           text    NOT NULL,               -- who asked (chatctl)
    kafka_partition integer,
    kafka_offset    bigint,
    PRIMARY KEY (user_id, device_id, revoked_at)
);
