-- A generation's read models, first version: dossier rows, supplement
-- pauses, per-day counters, held events, the late feed, the consumer's
-- checkpoint, the reports' indexes, parked events and the procedure
-- catalog.
--
-- Every CREATE says IF NOT EXISTS: a database made before migrations is
-- adopted by running them over its tables (sqlkit::migrate,
-- ARCHITECTURE.md "Schema migrations"). The reports' indexes are
-- store::schema::REPORT_INDEXES: a rebuild's bulk fill sets them aside
-- and builds them once it ends.
CREATE TABLE IF NOT EXISTS dossiers (
    dossier_id     TEXT PRIMARY KEY,
    office_code    TEXT NOT NULL,
    province_code  TEXT NOT NULL,
    procedure_code TEXT NOT NULL,
    field          TEXT NOT NULL,
    channel        BIGINT NOT NULL,
    version        BIGINT NOT NULL,
    status         TEXT NOT NULL,
    received_day   BIGINT,
    due_at         BIGINT,
    due_day        BIGINT,
    closed_day     BIGINT,
    resolved_day   BIGINT,
    timeliness     BIGINT,
    late_at        BIGINT,
    pauses         BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS pauses (
    dossier_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    from_day   BIGINT NOT NULL,
    until_day  BIGINT,
    PRIMARY KEY (dossier_id, seq)
);
CREATE TABLE IF NOT EXISTS daily_counts (
    office_code    TEXT NOT NULL,
    day            BIGINT NOT NULL,
    procedure_code TEXT NOT NULL,
    channel        BIGINT NOT NULL,
    metric         TEXT NOT NULL,
    province_code  TEXT NOT NULL,
    field          TEXT NOT NULL,
    n              BIGINT NOT NULL,
    PRIMARY KEY (office_code, day, procedure_code, channel, metric)
);
CREATE TABLE IF NOT EXISTS held_events (
    dossier_id TEXT NOT NULL,
    version    BIGINT NOT NULL,
    payload    BLOB NOT NULL,
    PRIMARY KEY (dossier_id, version)
);
CREATE TABLE IF NOT EXISTS late_feed (
    seq            BIGINT PRIMARY KEY,
    change         BIGINT NOT NULL,
    dossier_id     TEXT NOT NULL,
    office_code    TEXT NOT NULL,
    province_code  TEXT NOT NULL,
    procedure_code TEXT NOT NULL,
    field          TEXT NOT NULL,
    channel        BIGINT NOT NULL,
    due_at         BIGINT,
    occurred_at    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS late_feed_office ON late_feed (office_code, seq);
CREATE INDEX IF NOT EXISTS late_feed_province ON late_feed (province_code, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer       TEXT PRIMARY KEY,
    stream_seq     BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS dossiers_office_received ON dossiers (office_code, received_day);
CREATE INDEX IF NOT EXISTS dossiers_province_received ON dossiers (province_code, received_day);
CREATE INDEX IF NOT EXISTS daily_counts_province ON daily_counts (province_code, day);
CREATE INDEX IF NOT EXISTS dossiers_office_open_due ON dossiers (office_code, due_at) WHERE closed_day IS NULL;
CREATE INDEX IF NOT EXISTS dossiers_province_open_due ON dossiers (province_code, due_at) WHERE closed_day IS NULL;
CREATE TABLE IF NOT EXISTS procedures (
    stream_id     TEXT PRIMARY KEY,
    code          TEXT NOT NULL,
    province_code TEXT NOT NULL,
    version       BIGINT NOT NULL,
    withdrawn     BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS procedure_periods (
    code              TEXT NOT NULL,
    seq               BIGINT NOT NULL,
    province_code     TEXT NOT NULL,
    from_day          BIGINT NOT NULL,
    until_day         BIGINT,
    name              TEXT NOT NULL,
    field             TEXT NOT NULL,
    level             BIGINT NOT NULL,
    online_level      BIGINT NOT NULL,
    working_days      BIGINT NOT NULL,
    working_hours     BIGINT NOT NULL,
    supplement_pauses BIGINT NOT NULL,
    PRIMARY KEY (code, seq)
);
CREATE INDEX IF NOT EXISTS procedure_periods_province ON procedure_periods (province_code, from_day);
CREATE TABLE IF NOT EXISTS parked_events (
    stream_seq BIGINT PRIMARY KEY,
    subject    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    payload    BLOB NOT NULL
);
