-- The event store's first version: the log (positions in commit order,
-- unique (dossier, version)), the commands' replies by request id, the
-- deadline index, and the head row that hands out positions.
--
-- CREATE ... IF NOT EXISTS and ON CONFLICT DO NOTHING: a database made
-- before migrations is adopted by running them over its tables
-- (sqlkit::migrate, ARCHITECTURE.md "Schema migrations").
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    dossier_id  TEXT   NOT NULL,
    version     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    CONSTRAINT events_dossier_version UNIQUE (dossier_id, version)
);
CREATE TABLE IF NOT EXISTS command_replies (
    request_id  TEXT    PRIMARY KEY,
    position    INTEGER NOT NULL,
    reply       BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS deadlines (
    dossier_id  TEXT   PRIMARY KEY,
    due_at      BIGINT NOT NULL,
    deadline_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS deadlines_at ON deadlines (deadline_at);
CREATE TABLE IF NOT EXISTS log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT  NOT NULL
);
INSERT INTO log_head (id, position)
    SELECT 1, COALESCE(MAX(position), 0) FROM events WHERE true
    ON CONFLICT (id) DO NOTHING;
