#!/usr/bin/env python3
"""Search on 1,000,000 messages: how long the worker's own search query
takes in PostgreSQL.

Starts a PostgreSQL of its own with t/stack.sh (the project's migrations
applied, nothing else started), fills it with generate_series (10,000 group
conversations of 100 messages each, their activity interleaved in time as
in real life: message n goes to conversation n mod 10,000; 8 words a
message out of 20,000, the word "hello" in every tenth message and "zebra"
in ten messages in all; with sql/043 one message in 100 attaches
"quarterly-report-<n>.pdf"),
then runs the statement "search" exactly as workers/worker_store_search.c
prepares it (its text is read from that file) under EXPLAIN ANALYZE, each
case RUNS times, and prints the median and worst execution time.

The users: "heavy" is a member of 1,000 of the conversations (100,000
messages), "light" of 10 (1,000 messages), "left" was removed from 500
conversations at their 50th message.

    flock /tmp/ngx-chat-stack.lock python3 t/bench/search_bench.py

MESSAGES (default 1000000) and RUNS (default 5) change the size;
LAYOUT=contiguous gives each conversation a run of consecutive message ids
instead (the worst case for a user whose conversations are all old);
KEEP=1 keeps the scratch directory (and its database) for a look.
"""

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MESSAGES = int(os.environ.get("MESSAGES", "1000000"))
RUNS = int(os.environ.get("RUNS", "5"))
LAYOUT = os.environ.get("LAYOUT", "interleaved")
PER_CONV = 100


def c_statement(name):
    """The SQL text of a prepared statement of the search file, with the
    column list macro expanded: the very query the worker runs."""
    with open(os.path.join(ROOT, "workers", "worker_pg.h")) as f:
        pg_h = f.read()
    cols = re.search(r'#define CHAT_PG_MESSAGE_COLUMNS\s*\\\s*((?:"[^"]*"\s*'
                     r'\\?\s*)+)', pg_h).group(1)
    cols = "".join(re.findall(r'"([^"]*)"', cols))
    with open(os.path.join(ROOT, "workers", "worker_store_search.c")) as f:
        src = f.read()
    body = re.search(r'\{ "%s",\s*((?:"[^"]*"\s*|CHAT_PG_MESSAGE_COLUMNS\s*)+)'
                     r'\}' % re.escape(name), src).group(1)
    out = []
    for tok in re.findall(r'"[^"]*"|CHAT_PG_MESSAGE_COLUMNS', body):
        out.append(cols if tok == "CHAT_PG_MESSAGE_COLUMNS" else tok[1:-1])
    return "".join(out)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Pg:
    def __init__(self, port):
        self.port = port

    def run(self, sql, timeout=3600):
        p = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "chat", "-d", "chat", "-X", "-At", "-q",
                            "-v", "ON_ERROR_STOP=1"],
                           input=sql.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if p.returncode != 0:
            raise SystemExit("psql failed: %s" % p.stderr.decode())
        return p.stdout.decode()


FILL = """
SET synchronous_commit = off;
DROP INDEX IF EXISTS message_search_search;
INSERT INTO conversations (id, kind, name, last_seq, last_activity, created_at)
SELECT 'g:' || c, 'group', 'bench ' || c, {per}, 0, 0
FROM generate_series(1, GREATEST({nconv}, 1000)) AS c;
INSERT INTO members (conversation_id, user_id, role, joined_seq)
SELECT 'g:' || c, 'heavy', 'admin', 1 FROM generate_series(1, 1000) AS c
UNION ALL
SELECT 'g:' || c, 'light', 'member', 1 FROM generate_series(1, 10) AS c
UNION ALL
SELECT 'g:' || c, 'u' || (c % 997), 'member', 1
FROM generate_series(1, {nconv}) AS c;
INSERT INTO members (conversation_id, user_id, role, joined_seq, removed_seq)
SELECT 'g:' || c, 'left', 'member', 1, 50 FROM generate_series(1, 500) AS c;
INSERT INTO messages (conversation_id, seq, sender_id, device_id,
                      client_msg_id, kind, body, server_ts{names_col})
SELECT 'g:' || {conv_of_g}, {seq_of_g},
       'u' || (g % 997), 'd', 'b' || g, 'text',
       array_to_string(ARRAY(
           SELECT 'w' || floor(random() * 20000)::int
           FROM generate_series(1, 8) WHERE g > 0), ' ')
       || CASE WHEN ((g - 1) / {nconv} + g) % 10 = 0 THEN ' hello'
               ELSE '' END
       || CASE WHEN g % ({n} / 10) = 7 THEN ' zebra' ELSE '' END,
       1714128000000 + g{names_val}
FROM generate_series(1, {n}) AS g;
{attachments}
INSERT INTO message_search (message_id, conversation_id, seq, search)
SELECT message_id, conversation_id, seq,
       chat_search_vector(body, attachment_names)
FROM messages WHERE kind = 'text';
CREATE INDEX message_search_search ON message_search USING gin (search);
VACUUM ANALYZE messages;
VACUUM ANALYZE message_search;
VACUUM ANALYZE members;
"""


# with sql/043_search_attachments.sql: one message in 100 has an attachment
# "quarterly-report-<n>.pdf", in the attachments table and in the names the
# vector indexes; the vectors go into message_search (sql/044) as the
# worker writes them after the sends
NAMES_COL = ", attachment_names"
NAMES_VAL = """,
       CASE WHEN g % 100 = 3 THEN 'quarterly-report-' || g || '.pdf' END"""
ATTACHMENTS = """
INSERT INTO attachments (attachment_id, conversation_id, uploader_id,
                         device_id, content_type, size, name, created_at,
                         message_id, position)
SELECT 'a' || message_id, conversation_id, sender_id, 'd', 'application/pdf',
       1000, attachment_names, 0, message_id, 0
FROM messages WHERE attachment_names IS NOT NULL;
VACUUM ANALYZE attachments;
"""


def main():
    d = tempfile.mkdtemp(prefix="ngx_chat_search.", dir="/tmp")
    os.chmod(d, 0o755)
    port = free_port()
    env = dict(os.environ, PG_PORT=str(port),
               STACK_SKIP="redis kafka worker nginx")
    stack = os.path.join(ROOT, "t", "stack.sh")
    t0 = time.monotonic()
    subprocess.run(["bash", stack, "start", d], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    try:
        pg = Pg(port)
        nconv = MESSAGES // PER_CONV
        if LAYOUT == "contiguous":
            conv_of_g, seq_of_g = ("((g - 1) / %d + 1)" % PER_CONV,
                                   "((g - 1) %% %d + 1)" % PER_CONV)
        else:
            conv_of_g, seq_of_g = ("((g - 1) %% %d + 1)" % nconv,
                                   "((g - 1) / %d + 1)" % nconv)
        names = pg.run("SELECT count(*) FROM information_schema.columns"
                       " WHERE table_name = 'messages'"
                       " AND column_name = 'attachment_names'").strip() == "1"
        pg.run(FILL.format(per=PER_CONV, nconv=nconv, n=MESSAGES,
                           conv_of_g=conv_of_g, seq_of_g=seq_of_g,
                           names_col=NAMES_COL if names else "",
                           names_val=NAMES_VAL if names else "",
                           attachments=ATTACHMENTS if names else ""))
        print("layout %s; attachment names %s" % (
            LAYOUT, "in 1 message of 100" if names else "not searched"))
        fill_s = time.monotonic() - t0
        total = pg.run("SELECT count(*) FROM messages").strip()
        size = pg.run("SELECT pg_size_pretty(pg_relation_size("
                      "'message_search_search'))").strip()
        print("filled %s messages in %d conversations in %.0f s; GIN index"
              " %s" % (total, nconv, fill_s, size))
        print("PostgreSQL %s" % pg.run("SHOW server_version").strip())

        sql = c_statement("search")
        # an old id for the second page: the newest hello of heavy's first
        # page is near the top
        cases = [
            ("heavy, rare word (zebra)", "heavy", "zebra", None, None, 20),
            ("heavy, common word (hello)", "heavy", "hello", None, None, 20),
            ("heavy, common word, page 2", "heavy", "hello", None,
             "PAGE2", 20),
            ("heavy, medium word (w4242)", "heavy", "w4242", None, None, 20),
            ("heavy, two words (hello w77)", "heavy", "hello w77", None,
             None, 20),
            ("heavy, one conversation", "heavy", "hello", "g:500", None, 20),
            ("light, common word (hello)", "light", "hello", None, None, 20),
            ("left (removed), common word", "left", "hello", None, None, 20),
            ("heavy, absent word", "heavy", "nosuchword", None, None, 20),
        ]
        if names:
            cases += [
                ("heavy, attachment name word", "heavy", "quarterly", None,
                 None, 20),
                ("heavy, name word and text", "heavy", "report hello", None,
                 None, 20),
            ]
        page2 = pg.run("SELECT message_id FROM messages m JOIN members b ON"
                       " b.conversation_id = m.conversation_id AND"
                       " b.user_id = 'heavy' WHERE m.body LIKE '%hello%'"
                       " ORDER BY message_id DESC OFFSET 20 LIMIT 1").strip()
        print("\n%-32s %10s %10s %6s" % ("case", "median ms", "max ms",
                                        "rows"))
        for label, user, q, conv, before, limit in cases:
            before_id = page2 if before == "PAGE2" else "9223372036854775807"
            params = "'%s', '%s', %s, %s, %d" % (
                user, q, "'%s'" % conv if conv else "NULL", before_id,
                limit + 1)
            script = ("PREPARE search (text, text, text, bigint, bigint) AS "
                      "%s;\n" % sql)
            for _ in range(RUNS):
                script += ("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) "
                           "EXECUTE search (%s);\n" % params)
            out = pg.run(script)
            times = [float(x) for x in
                     re.findall(r'"Execution Time": ([0-9.]+)', out)]
            rows = re.findall(r'"Plan": \{[^{]*?"Actual Rows": (\d+)', out)
            print("%-32s %10.2f %10.2f %6s" % (
                label, statistics.median(times), max(times),
                rows[0] if rows else "?"))
        if os.environ.get("PLAN"):
            print(pg.run("PREPARE s (text, text, text, bigint, bigint) AS "
                         "%s;\nEXPLAIN (ANALYZE, BUFFERS) EXECUTE s ('heavy',"
                         " 'hello', NULL, 9223372036854775807, 21);" % sql))
    finally:
        if os.environ.get("KEEP"):
            print("kept %s (t/stack.sh stop %s)" % (d, d))
        else:
            subprocess.run(["bash", stack, "destroy", d], env=env,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
