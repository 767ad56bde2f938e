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
--
-- Text compares byte by byte (COLLATE "C"), as SQLite's does: UTF-8's byte
-- order is its code points' order, the order a `C.UTF-8` database gives
-- through `strcoll`, so no answer changes, and keys compare and indexes
-- build without `strcoll` (BENCHMARKS.md). Every batch adds to counters
-- already there: half-empty pages (fillfactor 50) let PostgreSQL update
-- them in place (HOT), without new index entries.
CREATE TABLE IF NOT EXISTS dossiers (
    dossier_id     TEXT COLLATE "C" PRIMARY KEY,
    office_code    TEXT COLLATE "C" NOT NULL,
    province_code  TEXT COLLATE "C" NOT NULL,
    procedure_code TEXT COLLATE "C" NOT NULL,
    field          TEXT COLLATE "C" NOT NULL,
    channel        BIGINT NOT NULL,
    version        BIGINT NOT NULL,
    status         TEXT COLLATE "C" NOT NULL,
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
    dossier_id TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    from_day   BIGINT NOT NULL,
    until_day  BIGINT,
    PRIMARY KEY (dossier_id, seq)
);
CREATE TABLE IF NOT EXISTS daily_counts (
    office_code    TEXT COLLATE "C" NOT NULL,
    day            BIGINT NOT NULL,
    procedure_code TEXT COLLATE "C" NOT NULL,
    channel        BIGINT NOT NULL,
    metric         TEXT COLLATE "C" NOT NULL,
    province_code  TEXT COLLATE "C" NOT NULL,
    field          TEXT COLLATE "C" NOT NULL,
    n              BIGINT NOT NULL,
    PRIMARY KEY (office_code, day, procedure_code, channel, metric)
);
CREATE TABLE IF NOT EXISTS held_events (
    dossier_id TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    payload    BYTEA NOT NULL,
    PRIMARY KEY (dossier_id, version)
);
CREATE TABLE IF NOT EXISTS late_feed (
    seq            BIGINT PRIMARY KEY,
    change         BIGINT NOT NULL,
    dossier_id     TEXT COLLATE "C" NOT NULL,
    office_code    TEXT COLLATE "C" NOT NULL,
    province_code  TEXT COLLATE "C" NOT NULL,
    procedure_code TEXT COLLATE "C" NOT NULL,
    field          TEXT COLLATE "C" NOT NULL,
    channel        BIGINT NOT NULL,
    due_at         BIGINT,
    occurred_at    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS late_feed_office ON late_feed (office_code, seq);
CREATE INDEX IF NOT EXISTS late_feed_province ON late_feed (province_code, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer       TEXT COLLATE "C" PRIMARY KEY,
    stream_seq     BIGINT NOT NULL
);
ALTER TABLE daily_counts SET (fillfactor = 50);
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
    payload    BYTEA NOT NULL
);
