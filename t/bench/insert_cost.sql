-- t/bench/insert_cost.sql: what one row of the send path's messages INSERT
-- costs PostgreSQL, as deployed, with the search vector and its index in
-- the row as before sql/044, and without the index by Kafka position:
-- copies of the messages table (indexes, generated column and constraints
-- alike, no rows), the same 5-row INSERT into each, rounds interleaved so
-- that a busy moment hurts every variant alike. Then what the search
-- index costs per row off the send path, written as chat_worker does
-- (worker_store_index.c: 2000 ids a statement) into a copy of
-- message_search. Run by t/bench/insert_cost.sh against a database with
-- every migration applied.

\set QUIET on

CREATE TEMP TABLE insert_cost (variant text, ms numeric);

CREATE FUNCTION pg_temp.insert_rows(tbl text, n int) RETURNS numeric
    LANGUAGE plpgsql AS $$
DECLARE
    t0   timestamptz;
    i    int;
    base bigint := 1000000000 + (random() * 1e9)::bigint;
BEGIN
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP
        EXECUTE format(
            'INSERT INTO %I (conversation_id, seq, message_id, sender_id,'
            ' device_id, client_msg_id, kind, body, server_ts,'
            ' kafka_partition, kafka_offset)'
            ' SELECT ''dm:a'' || ($1 * 10 + g) || '':b'', 1, $1 * 10 + g,'
            ' ''u'' || ($1 * 10 + g), ''d'', ''c'' || ($1 * 10 + g),'
            ' ''text'', ''a chat message of about a hundred bytes, with'
            ' some words in it and a few more to fill the line up'', 1, 0,'
            ' $1 * 10 + g FROM generate_series(1, 5) g', tbl)
            USING base + i;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
$$;

CREATE FUNCTION pg_temp.drop_index_like(tbl text, def text) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE ix text;
BEGIN
    FOR ix IN SELECT indexname FROM pg_indexes
              WHERE tablename = tbl AND indexdef LIKE def
    LOOP
        EXECUTE format('DROP INDEX %I', ix);
    END LOOP;
END
$$;

-- as deployed: no search vector in the row (sql/044_search_table.sql)
CREATE TEMP TABLE c_deployed (LIKE messages INCLUDING ALL);
-- the search vector in the row and its GIN index, as sql/043 had them
CREATE TEMP TABLE c_search_in_row (LIKE messages INCLUDING ALL);
ALTER TABLE c_search_in_row ADD COLUMN search tsvector
    GENERATED ALWAYS AS (
        CASE WHEN kind = 'text' AND body IS NOT NULL
             THEN chat_search_vector(body, attachment_names) END) STORED;
CREATE INDEX ON c_search_in_row USING gin (search);
-- and no index by Kafka position either
CREATE TEMP TABLE c_no_offset (LIKE messages INCLUDING ALL);
SELECT pg_temp.drop_index_like('c_no_offset', '%kafka_offset%') \gset

SELECT pg_temp.insert_rows('c_deployed', 1000) AS warm_ms \gset

DO $$
DECLARE
    r int;
    v text;
BEGIN
    FOR r IN 1..3 LOOP
        FOREACH v IN ARRAY ARRAY['c_deployed', 'c_search_in_row',
                                 'c_no_offset']
        LOOP
            INSERT INTO insert_cost VALUES (v, pg_temp.insert_rows(v, 4000));
        END LOOP;
    END LOOP;
END
$$;

\set QUIET off
SELECT variant,
       round(avg(ms) / 20000 * 1000, 1) AS us_per_row,
       array_agg(round(ms) ORDER BY ms) AS ms_per_round_of_20000_rows
FROM insert_cost GROUP BY variant ORDER BY 2 DESC;

\set QUIET on
-- the rows of every round, indexed 2000 ids at a time
CREATE TEMP TABLE c_search (LIKE message_search INCLUDING ALL);

DO $$
DECLARE
    t0  timestamptz;
    lo  bigint;
    ids bigint[];
    n   bigint := 0;
BEGIN
    t0 := clock_timestamp();
    FOR ids IN SELECT array_agg(message_id) FROM
               (SELECT message_id, (row_number() OVER (ORDER BY message_id)
                                    - 1) / 2000 AS chunk
                FROM c_deployed) AS c GROUP BY chunk ORDER BY chunk
    LOOP
        INSERT INTO c_search (message_id, conversation_id, seq, search)
            SELECT message_id, conversation_id, seq,
                   chat_search_vector(body, attachment_names)
            FROM c_deployed
            WHERE message_id = ANY(ids) AND kind = 'text' AND NOT deleted
            AND redacted_at IS NULL AND body IS NOT NULL
            ORDER BY message_id FOR SHARE
            ON CONFLICT (message_id) DO NOTHING;
        n := n + cardinality(ids);
    END LOOP;
    INSERT INTO insert_cost VALUES ('search index, after the commit',
        extract(epoch FROM clock_timestamp() - t0) * 1000 * 20000 / n);
END
$$;

\set QUIET off
SELECT variant, round(ms / 20000 * 1000, 1) AS us_per_row
FROM insert_cost WHERE variant = 'search index, after the commit';
