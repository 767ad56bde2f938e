//! The read models' DDL, in one place: every table and index a generation
//! holds (dossiers, pauses, counters, held, parked and late-feed events,
//! checkpoints, the procedure catalog), and the columns added to tables
//! made by earlier versions.

use anyhow::Context as _;
use sqlkit::Backend;
use sqlx::AnyPool;

use super::Fill;

const SCHEMA: &str = "
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
    payload    BYTEA NOT NULL,
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
    stream_seq     BIGINT NOT NULL,
    stream_created BIGINT,
    log_position   BIGINT,
    log_id         TEXT
)";

/// Columns added to `checkpoints` after its first version (see
/// [`crate::resume`]); NULL in a row written before them.
const CHECKPOINT_COLUMNS_ADDED: [(&str, &str); 3] = [
    ("stream_created", "BIGINT"),
    ("log_position", "BIGINT"),
    ("log_id", "TEXT"),
];

/// The indexes reports read through. A rebuild fills a new generation
/// without them and builds them once, in bulk, before it takes over.
pub(super) const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS dossiers_office_received ON dossiers (office_code, received_day);
CREATE INDEX IF NOT EXISTS dossiers_province_received ON dossiers (province_code, received_day);
CREATE INDEX IF NOT EXISTS daily_counts_province ON daily_counts (province_code, day);
CREATE INDEX IF NOT EXISTS dossiers_office_open_due ON dossiers (office_code, due_at) WHERE closed_day IS NULL;
CREATE INDEX IF NOT EXISTS dossiers_province_open_due ON dossiers (province_code, due_at) WHERE closed_day IS NULL";

const PARKED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS parked_events (
    stream_seq BIGINT PRIMARY KEY,
    subject    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    payload    BYTEA NOT NULL,
    position   BIGINT,
    dossier_id TEXT,
    version    BIGINT,
    parked_at  BIGINT NOT NULL DEFAULT 0
)";

/// Columns added after the first version of `parked_events`.
const PARKED_COLUMNS_ADDED: [(&str, &str); 4] = [
    ("position", "BIGINT"),
    ("dossier_id", "TEXT"),
    ("version", "BIGINT"),
    ("parked_at", "BIGINT NOT NULL DEFAULT 0"),
];

/// The procedure catalog's tables (see `crate::catalog`).
const CATALOG_SCHEMA: &str = "
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
CREATE INDEX IF NOT EXISTS procedure_periods_province ON procedure_periods (province_code, from_day)";

/// Creates a generation's tables when absent, and its reports' indexes
/// unless a bulk fill builds them at its end ([`Fill`]); brings tables made
/// by earlier versions up to date.
pub(crate) async fn create(pool: &AnyPool, backend: Backend, fill: Fill) -> anyhow::Result<()> {
    let schema = match backend {
        // Text compares byte by byte, as SQLite's does: UTF-8's byte
        // order is its code points' order, the order a `C.UTF-8`
        // database gives through `strcoll`, so no answer changes, and
        // keys compare and indexes build without `strcoll`
        // (BENCHMARKS.md).
        // Every batch adds to counters already there: half-empty pages
        // let PostgreSQL update them in place (HOT), without new index
        // entries.
        Backend::Postgres => format!(
            "{};\nALTER TABLE daily_counts SET (fillfactor = 50)",
            SCHEMA.replace(" TEXT ", " TEXT COLLATE \"C\" ")
        ),
        Backend::Sqlite => SCHEMA.replace("BYTEA", "BLOB"),
    };
    sqlkit::run_ddl(pool, &schema)
        .await
        .context("create the read models' tables")?;
    if fill == Fill::Live {
        sqlkit::run_ddl(pool, INDEXES)
            .await
            .context("create the read models' indexes")?;
    }
    sqlkit::add_missing_columns(pool, "checkpoints", &CHECKPOINT_COLUMNS_ADDED)
        .await
        .context("bring the checkpoints' table up to date")?;
    sqlkit::run_ddl(pool, CATALOG_SCHEMA)
        .await
        .context("create the procedure catalog's tables")?;
    create_parked(pool, backend).await
}

/// Creates `parked_events`, and adds the columns a database made by an
/// earlier version lacks.
pub(crate) async fn create_parked(pool: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    let schema = match backend {
        Backend::Postgres => PARKED_SCHEMA.to_owned(),
        Backend::Sqlite => PARKED_SCHEMA.replace("BYTEA", "BLOB"),
    };
    sqlkit::run_ddl(pool, &schema)
        .await
        .context("create the parked events' table")?;
    sqlkit::add_missing_columns(pool, "parked_events", &PARKED_COLUMNS_ADDED)
        .await
        .context("add columns to the parked events' table")?;
    Ok(())
}
