-- t/bench/insert_cost.sql: what one row of the send path's messages INSERT
-- costs PostgreSQL, as deployed and without each of the parts a feature
-- added: copies of the messages table (indexes, generated column and
-- constraints alike, no rows), the same 5-row INSERT into each, rounds
-- interleaved so that a busy moment hurts every variant alike. Run by
-- t/bench/insert_cost.sh against a database with every migration applied.

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

-- as deployed
CREATE TEMP TABLE c_deployed (LIKE messages INCLUDING ALL);
-- the search vector kept, its GIN index not
CREATE TEMP TABLE c_no_gin (LIKE messages INCLUDING ALL);
SELECT pg_temp.drop_index_like('c_no_gin', '%USING gin%') \gset
-- no search at all
CREATE TEMP TABLE c_no_search (LIKE messages INCLUDING ALL);
ALTER TABLE c_no_search DROP COLUMN search;
-- and no index by Kafka position either
CREATE TEMP TABLE c_no_search_no_offset (LIKE messages INCLUDING ALL);
ALTER TABLE c_no_search_no_offset DROP COLUMN search;
SELECT pg_temp.drop_index_like('c_no_search_no_offset', '%kafka_offset%') \gset

SELECT pg_temp.insert_rows('c_deployed', 1000) AS warm_ms \gset

DO $$
DECLARE
    r int;
    v text;
BEGIN
    FOR r IN 1..3 LOOP
        FOREACH v IN ARRAY ARRAY['c_deployed', 'c_no_gin', 'c_no_search',
                                 'c_no_search_no_offset']
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
