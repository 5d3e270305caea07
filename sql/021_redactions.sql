-- 021_redactions.sql: a message an operator redacted (chatctl message
-- redact) keeps its row, its seq and its id; its body is erased (the
-- empty string) and these say when and by whom. A system message
-- {"event":"message_redacted",...} in the same conversation tells its
-- members' devices.

ALTER TABLE messages
    ADD COLUMN redacted_at bigint,          -- ms; null: not redacted
    ADD COLUMN redacted_by text;
