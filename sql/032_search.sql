-- 032_search.sql: full-text search over text messages.
--
-- The text search configuration (the language whose stemming and stop
-- words apply) is this database's: chat_search_config(), 'simple' by
-- default (every language alike: words as written, lowercased, no
-- stemming). The generated column and the worker's query both call it, so
-- they cannot disagree. To use another one (say 'english'), redefine the
-- function and rebuild the column, as docs/protocol.md describes.
--
-- The searchable text is a text message's body; a deleted message has
-- none (its body is NULL), nor have changes and system messages. The
-- names of a message's attachments are to be added to the same vector
-- (concatenated with ||) when messages get them.

CREATE FUNCTION chat_search_config() RETURNS regconfig
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 'simple'::regconfig $$;

ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (
        CASE WHEN kind = 'text' AND body IS NOT NULL
             THEN to_tsvector(chat_search_config(), body)
        END
    ) STORED;

CREATE INDEX messages_search ON messages USING gin (search);
