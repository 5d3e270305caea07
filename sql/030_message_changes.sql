-- 030_message_changes.sql: edits, deletions, reactions and replies.
--
-- A change to a message is itself a row of messages, with the next seq of
-- its conversation (kind 'edit', 'delete' or 'reaction', target_id the
-- message it changes), so that sync and history replay it in order; the
-- same transaction applies it to the target, whose row keeps its current
-- state for history and sync: edited_at, deleted, reactions. A deletion
-- erases the text: the target's body and the bodies of its edits become
-- NULL. Reactions have their own table (one per user and message), of
-- which the target's reactions column is the summary the reads return.

ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('text', 'system', 'edit', 'delete', 'reaction'));

-- erased by a deletion; a reaction taken back has none either
ALTER TABLE messages ALTER COLUMN body DROP NOT NULL;

ALTER TABLE messages
    ADD COLUMN target_id bigint,                -- a change: what it changes
    ADD COLUMN reply_to  bigint,                -- a text: what it answers
    ADD COLUMN edited_at bigint,                -- ms of the last edit
    ADD COLUMN deleted   boolean NOT NULL DEFAULT false,
    ADD COLUMN reactions jsonb;                 -- emoji -> [user ids]

-- a deletion finds the edits of its target
CREATE INDEX messages_by_target ON messages (target_id)
    WHERE target_id IS NOT NULL;

CREATE TABLE reactions (
    message_id bigint NOT NULL,
    user_id    text   NOT NULL,
    emoji      text   NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
