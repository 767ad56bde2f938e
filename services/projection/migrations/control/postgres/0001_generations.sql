-- The projection's control table, in the configured database: which
-- generation (a PostgreSQL schema motcua_g<N> or an SQLite file
-- <name>.g<N>.db) serves, and which is being built.
--
-- CREATE ... IF NOT EXISTS: a database made before migrations is adopted
-- by running them over its tables (sqlkit::migrate).
CREATE TABLE IF NOT EXISTS projection_generations (
    id    BIGINT PRIMARY KEY,
    state TEXT NOT NULL
);
