-- What an upsert costs over a plain insert when every row is new (a
-- catch-up's or a rebuild's dossier rows), on PostgreSQL. The two run in
-- turn, 12,500 rows a statement (a 50,000-event batch of 4-event dossiers),
-- 40 times each; sum the timings of each kind:
--
--   psql -h 127.0.0.1 -U postgres -d test -q -f tests/bench/insert-vs-upsert.sql 2>/dev/null \
--     | awk '/^Time/ && n++ < 80 { t[n % 2] += $2 } END { print "upsert", t[1], "ms; insert", t[0], "ms" }'
--
-- (the 81st timing is the query that generated the 80 statements)
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_upsert, bench_insert;
CREATE UNLOGGED TABLE bench_upsert (dossier_id TEXT PRIMARY KEY, office_code TEXT NOT NULL,
    version BIGINT NOT NULL, status TEXT NOT NULL, received_day BIGINT, due_at BIGINT, closed_day BIGINT);
CREATE UNLOGGED TABLE bench_insert (LIKE bench_upsert INCLUDING ALL);
\timing on
SELECT
    format('INSERT INTO bench_upsert SELECT ''D'' || lpad(g::text, 9, ''0''), ''OFFICE-'' || g %% 120, 4, ''returned'', g, g, g '
           'FROM generate_series(%1$s, %1$s + 12499) g '
           'ON CONFLICT (dossier_id) DO UPDATE SET version = excluded.version, status = excluded.status',
           i * 12500),
    format('INSERT INTO bench_insert SELECT ''D'' || lpad(g::text, 9, ''0''), ''OFFICE-'' || g %% 120, 4, ''returned'', g, g, g '
           'FROM generate_series(%1$s, %1$s + 12499) g',
           i * 12500)
FROM generate_series(0, 39) i \gexec
\timing off
DROP TABLE bench_upsert, bench_insert;
