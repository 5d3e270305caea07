-- 043_search_attachments.sql: attachment names in the search vector.
--
-- A message keeps the names of its attachments beside its body
-- (attachment_names: one per line, in their order), written with the row
-- by the worker, so that the generated column can index them with the
-- text: a generated column sees its own row only. The parser reads
-- "quarterly-report.pdf" as one word (a file name), which nobody types;
-- the names are indexed twice, as written (a whole name still matches)
-- and with their punctuation other than '-' read as spaces
-- (chat_search_name(): quarterly-report, quarterly, report, pdf). Both
-- the vector and the worker's highlights use that function; it maps one
-- byte to one byte, so that the worker puts the marks back on the name as
-- written.
--
-- A deletion or a redaction erases the names with the text: the column
-- goes NULL, and the uploads are no one's any more (no uploader, no
-- message, no name, created at 0), so that the worker's sweep of uploads
-- never attached removes their rows and files at its next round.

CREATE FUNCTION chat_search_name(text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT translate($1, '!"#$%&''()*+,./:;<=>?@[\]^_`{|}~',
                           '                               ') $$;

ALTER TABLE messages ADD COLUMN attachment_names text;

ALTER TABLE messages DROP COLUMN search;

UPDATE messages AS m SET attachment_names = a.names
    FROM (SELECT message_id, string_agg(name, E'\n' ORDER BY position)
                 AS names
          FROM attachments WHERE message_id IS NOT NULL
          GROUP BY message_id) AS a
    WHERE m.message_id = a.message_id AND m.kind = 'text'
    AND NOT m.deleted AND m.redacted_at IS NULL;

UPDATE attachments AS a
    SET name = '', uploader_id = '', message_id = NULL, position = NULL,
        created_at = 0
    FROM messages AS m
    WHERE m.message_id = a.message_id
    AND (m.deleted OR m.redacted_at IS NOT NULL);

ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (
        CASE WHEN kind = 'text' AND body IS NOT NULL THEN
            CASE WHEN attachment_names IS NULL
                 THEN to_tsvector(chat_search_config(), body)
                 ELSE to_tsvector(chat_search_config(), body)
                      || to_tsvector(chat_search_config(),
                                     attachment_names || E'\n'
                                     || chat_search_name(attachment_names))
            END
        END
    ) STORED;

CREATE INDEX messages_search ON messages USING gin (search);
