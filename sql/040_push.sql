-- 040_push.sql: push registrations and the push outbox.
--
-- A device registers an endpoint (a push gateway's URL) and a token; a
-- text message stored for a member whose registered device may be offline
-- leaves one outbox row per (message, device), written by a trigger in the
-- very transaction that stores the message: nothing stored is missed, and
-- the primary key makes a second row for the same message and device
-- impossible. chat_pusher claims due rows, asks Redis whether the device
-- has a live session (then it needs no push), POSTs the others and records
-- the outcome; a failure is retried later with backoff.

CREATE TABLE push_devices (
    user_id       text   NOT NULL,
    device_id     text   NOT NULL,
    endpoint      text   NOT NULL,
    token         text   NOT NULL,
    registered_at bigint NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- state: pending (due at next_at), sending (claimed by a pusher: it has
-- or is about to POST), sent, skipped (the device was online, or it
-- unregistered), failed (attempts exhausted), unknown (a pusher died
-- while sending: never sent again, so never twice)
CREATE TABLE push_outbox (
    message_id  bigint  NOT NULL,
    user_id     text    NOT NULL,
    device_id   text    NOT NULL,
    state       text    NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sending', 'sent',
                                         'skipped', 'failed', 'unknown')),
    attempts    integer NOT NULL DEFAULT 0,
    next_at     bigint  NOT NULL,           -- ms: due, or the lease's end
    created_at  bigint  NOT NULL,
    done_at     bigint,
    last_error  text,
    PRIMARY KEY (message_id, user_id, device_id)
);

CREATE INDEX push_outbox_due ON push_outbox (next_at)
    WHERE state IN ('pending', 'sending');

-- The recipients of a batch of text messages that have a registered
-- device: a direct conversation's other member (named by its id, since
-- its members row may come later in the transaction) or a group's current
-- members; never the sender itself. A statement trigger sees the batch's
-- rows at once; without any registration it costs one empty probe.
CREATE FUNCTION push_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM push_devices) THEN
        RETURN NULL;
    END IF;

    INSERT INTO push_outbox (message_id, user_id, device_id, next_at,
                             created_at)
    SELECT n.message_id, d.user_id, d.device_id, n.server_ts, n.server_ts
    FROM new_rows n
    JOIN LATERAL (
        SELECT split_part(n.conversation_id, ':', 2) AS user_id
        WHERE n.conversation_id LIKE 'dm:%'
        UNION ALL
        SELECT split_part(n.conversation_id, ':', 3)
        WHERE n.conversation_id LIKE 'dm:%'
        UNION ALL
        SELECT m.user_id FROM members m
        WHERE m.conversation_id = n.conversation_id
          AND m.removed_seq IS NULL
          AND n.conversation_id NOT LIKE 'dm:%'
    ) r ON r.user_id <> n.sender_id
    JOIN push_devices d ON d.user_id = r.user_id
    WHERE n.kind = 'text'
    ON CONFLICT DO NOTHING;

    RETURN NULL;
END
$$;

CREATE TRIGGER messages_push AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION push_enqueue();
