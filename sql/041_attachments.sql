-- 041_attachments.sql: uploads announced with the upload request.
--
-- The module signs the PUT URL and nginx stores the bytes; this row is
-- what the worker recorded of the announcement: who may attach it (the
-- uploader, in this conversation), what it is, and to which message it
-- went once attached. Rows never attached are cleaned up after a while
-- (their created_at tells), with their files.

CREATE TABLE attachments (
    attachment_id   text    PRIMARY KEY,
    conversation_id text    NOT NULL,
    uploader_id     text    NOT NULL,
    device_id       text    NOT NULL,
    content_type    text    NOT NULL,
    size            bigint  NOT NULL CHECK (size > 0),
    name            text    NOT NULL,
    created_at      bigint  NOT NULL,
    message_id      bigint,                     -- null until attached
    position        integer,                    -- its place in the message
    width           integer,                    -- images, once looked at
    height          integer
);

CREATE INDEX attachments_by_message ON attachments (message_id)
    WHERE message_id IS NOT NULL;

CREATE INDEX attachments_unattached ON attachments (created_at)
    WHERE message_id IS NULL;
