//! The read models in SQL: dossier rows, supplement pauses, per-day
//! counters, held and parked events, and the consumer checkpoint. A batch
//! of changes and its checkpoint commit in one transaction.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlkit::{Backend, Column, JsonRows, column, select_from_json, texts_from_json};
use sqlx::{AnyPool, Row as _};
use tokio::sync::watch;

use crate::{
    apply::{Changes, CounterDelta, CounterKey, DossierRow},
    resume::Checkpoint,
};

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

/// Writes a consumer's checkpoint: `$1` consumer, `$2` stream sequence,
/// `$3` the stream's creation, `$4` the log position and `$5` the log, each
/// kept as it was when NULL (a parked events' replay or a hand-over knows
/// none of them).
const WRITE_CHECKPOINT: &str = "INSERT INTO checkpoints (consumer, stream_seq, stream_created, log_position, log_id) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer) DO UPDATE SET stream_seq = excluded.stream_seq, \
    stream_created = COALESCE(excluded.stream_created, checkpoints.stream_created), \
    log_position = COALESCE(excluded.log_position, checkpoints.log_position), \
    log_id = COALESCE(excluded.log_id, checkpoints.log_id)";

/// How a read store is being filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Serving reports while following the stream: every table logged and
    /// indexed.
    Live,
    /// A rebuild's new generation, filled from the start of the stream
    /// before anyone reads it, and by nothing else: the reports' indexes
    /// wait ([`ReadStore::finish_bulk_fill`] builds them, once, before the
    /// generation takes over), a dossier the fill never wrote is not
    /// looked up, and the counters' deltas add up in memory, each counter
    /// row written once (see [`Bulk`]). Its tables are logged as a live
    /// generation's: with its new rows copied, PostgreSQL's CPU per event
    /// was the same as into unlogged tables, whose `SET LOGGED` at the end
    /// (a rewrite of each table and its keys) took a sizeable part of a
    /// rebuild's time (BENCHMARKS.md).
    Bulk,
}

/// The indexes reports read through. A rebuild fills a new generation
/// without them and builds them once, in bulk, before it takes over.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS dossiers_office_received ON dossiers (office_code, received_day);
CREATE INDEX IF NOT EXISTS dossiers_province_received ON dossiers (province_code, received_day);
CREATE INDEX IF NOT EXISTS daily_counts_province ON daily_counts (province_code, day);
CREATE INDEX IF NOT EXISTS dossiers_office_open_due ON dossiers (office_code, due_at) WHERE closed_day IS NULL;
CREATE INDEX IF NOT EXISTS dossiers_province_open_due ON dossiers (province_code, due_at) WHERE closed_day IS NULL";

/// A dossier row's columns; `load_rows` reads them back by index, in this order.
const DOSSIER_JSON: &[Column] = &[
    Column::text("dossier_id"),
    Column::text("office_code"),
    Column::text("province_code"),
    Column::text("procedure_code"),
    Column::text("field"),
    Column::int("channel"),
    Column::int("version"),
    Column::text("status"),
    Column::int("received_day"),
    Column::int("due_at"),
    Column::int("due_day"),
    Column::int("closed_day"),
    Column::int("resolved_day"),
    Column::int("timeliness"),
    Column::int("late_at"),
    Column::int("pauses"),
];

const COUNTER_JSON: &[Column] = &[
    Column::text("office_code"),
    Column::int("day"),
    Column::text("procedure_code"),
    Column::int("channel"),
    Column::text("metric"),
    Column::text("province_code"),
    Column::text("field"),
    Column::int("n"),
];

const PAUSE_JSON: &[Column] = &[
    Column::text("dossier_id"),
    Column::int("seq"),
    Column::int("from_day"),
    Column::int("until_day"),
];

const LATE_FEED_JSON: &[Column] = &[
    Column::int("seq"),
    Column::int("change"),
    Column::text("dossier_id"),
    Column::text("office_code"),
    Column::text("province_code"),
    Column::text("procedure_code"),
    Column::text("field"),
    Column::int("channel"),
    Column::int("due_at"),
    Column::int("occurred_at"),
];

const UPSERT_DOSSIER: &str = "ON CONFLICT (dossier_id) DO UPDATE SET \
    procedure_code = excluded.procedure_code, field = excluded.field, channel = excluded.channel, \
    version = excluded.version, status = excluded.status, received_day = excluded.received_day, \
    due_at = excluded.due_at, due_day = excluded.due_day, closed_day = excluded.closed_day, \
    resolved_day = excluded.resolved_day, timeliness = excluded.timeliness, \
    late_at = excluded.late_at, pauses = excluded.pauses";
const ADD_COUNTER: &str = "ON CONFLICT (office_code, day, procedure_code, channel, metric) \
    DO UPDATE SET n = daily_counts.n + excluded.n";
const RECORD_PAUSE: &str =
    "ON CONFLICT (dossier_id, seq) DO UPDATE SET until_day = excluded.until_day";

/// A batch of dossier events on PostgreSQL, in one statement: late-feed
/// notices numbered after the feed's head, dossier rows, counters, pauses
/// and the checkpoint, each from one array per column (`UNNEST`), so the
/// batch is one round trip and one atomic statement. Returns the feed's
/// head before the batch. Batches that also hold, park or change procedure
/// streams go through [`ReadStore::commit`]'s general path.
///
/// Dossier rows not yet stored ([`DossierRow::stored`], `$40`) are plain
/// inserts: an upsert first searches the primary key for a conflicting row,
/// which for a batch of new dossiers (all of a catch-up's or a rebuild's
/// first events) is wasted work.
static COMMIT_POSTGRES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let dossier_columns = DOSSIER_JSON
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH head AS (
    SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS base FROM late_feed
), feed AS (
    INSERT INTO late_feed (seq, change, dossier_id, office_code, province_code, procedure_code, field, channel, due_at, occurred_at)
    SELECT head.base + f.n, f.change, f.dossier_id, f.office_code, f.province_code, f.procedure_code, f.field, f.channel, f.due_at, f.occurred_at
    FROM head, UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
        WITH ORDINALITY AS f(change, dossier_id, office_code, province_code, procedure_code, field, channel, due_at, occurred_at, n)
), dossier_rows AS (
    SELECT * FROM UNNEST($10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::bigint[], $16::bigint[],
        $17::text[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[],
        $25::bigint[], $40::bool[])
        AS r({dossier_columns}, stored)
), new_dossiers AS (
    INSERT INTO dossiers ({dossier_columns})
    SELECT {dossier_columns} FROM dossier_rows WHERE NOT stored
), stored_dossiers AS (
    INSERT INTO dossiers ({dossier_columns})
    SELECT {dossier_columns} FROM dossier_rows WHERE stored
    {UPSERT_DOSSIER}
), counters AS (
    INSERT INTO daily_counts (office_code, day, procedure_code, channel, metric, province_code, field, n)
    SELECT * FROM UNNEST($26::text[], $27::bigint[], $28::text[], $29::bigint[], $30::text[], $31::text[], $32::text[], $33::bigint[])
    {ADD_COUNTER}
), paused AS (
    INSERT INTO pauses (dossier_id, seq, from_day, until_day)
    SELECT * FROM UNNEST($34::text[], $35::bigint[], $36::bigint[], $37::bigint[])
    {RECORD_PAUSE}
), checkpoint AS (
    INSERT INTO checkpoints (consumer, stream_seq, stream_created, log_position, log_id)
        VALUES ($38, $39, $41::bigint, $42::bigint, $43::text)
    ON CONFLICT (consumer) DO UPDATE SET stream_seq = excluded.stream_seq,
        stream_created = COALESCE(excluded.stream_created, checkpoints.stream_created),
        log_position = COALESCE(excluded.log_position, checkpoints.log_position),
        log_id = COALESCE(excluded.log_id, checkpoints.log_id)
)
SELECT base FROM head"
    )
});

/// A batch on PostgreSQL that adds at least this many dossier rows copies
/// them (`COPY … FROM STDIN (FORMAT binary)`, [`COPY_DOSSIERS`]) before its
/// statement writes the rest, in one transaction: PostgreSQL adds copied
/// rows much faster than an `INSERT … SELECT FROM UNNEST(…)` (a catch-up's
/// and a rebuild's batches are mostly new dossiers; BENCHMARKS.md).
/// Smaller batches, as live traffic makes, stay one statement and one round
/// trip.
const COPY_MIN_ROWS: usize = 1_000;

static COPY_DOSSIERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let names: Vec<&str> = DOSSIER_JSON.iter().map(|c| c.name).collect();
    format!(
        "COPY dossiers ({}) FROM STDIN (FORMAT binary)",
        names.join(", ")
    )
});

/// Dossier rows as [`COPY_DOSSIERS`] reads them.
fn dossier_copy_rows<'a>(rows: impl Iterator<Item = &'a DossierRow>) -> Vec<u8> {
    let mut copy = sqlkit::CopyRows::new(DOSSIER_JSON.len() as u16);
    for r in rows {
        dossier_fields(&mut copy, r);
    }
    copy.finish()
}

/// A dossier row's fields, in [`DOSSIER_JSON`]'s order.
fn dossier_fields<F: sqlkit::RowFields>(out: &mut F, r: &DossierRow) {
    let day = |d: Option<i32>| d.map(i64::from);
    out.text(&r.dossier_id)
        .text(&r.office_code)
        .text(&r.province_code)
        .text(&r.procedure_code)
        .text(&r.field)
        .int(i64::from(r.channel))
        .int(r.version)
        .text(&r.status)
        .opt_int(day(r.received_day))
        .opt_int(r.due_at)
        .opt_int(day(r.due_day))
        .opt_int(day(r.closed_day))
        .opt_int(day(r.resolved_day))
        .opt_int(day(r.timeliness))
        .opt_int(r.late_at)
        .int(i64::from(r.pauses));
}

/// The batch statements, in the backend's dialect: each takes its rows as
/// one JSON parameter, so it is prepared once per connection and kept.
#[derive(Debug)]
struct Statements {
    load_dossiers: String,
    load_held: String,
    upsert_dossiers: String,
    add_counters: String,
    record_pauses: String,
    append_late_feed: String,
}

impl Statements {
    fn new(backend: Backend) -> Self {
        let names = |columns: &[Column]| {
            columns
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let insert = |table: &str, columns: &[Column]| {
            format!(
                "INSERT INTO {table} ({}) {}",
                names(columns),
                select_from_json(backend, columns, 1)
            )
        };
        Self {
            load_dossiers: format!(
                "SELECT {} FROM dossiers WHERE dossier_id IN ({})",
                names(DOSSIER_JSON),
                texts_from_json(backend, 1)
            ),
            load_held: format!(
                "SELECT dossier_id, version, payload FROM held_events WHERE dossier_id IN ({}) ORDER BY dossier_id, version",
                texts_from_json(backend, 1)
            ),
            upsert_dossiers: format!("{} {UPSERT_DOSSIER}", insert("dossiers", DOSSIER_JSON)),
            add_counters: format!("{} {ADD_COUNTER}", insert("daily_counts", COUNTER_JSON)),
            record_pauses: format!("{} {RECORD_PAUSE}", insert("pauses", PAUSE_JSON)),
            append_late_feed: insert("late_feed", LATE_FEED_JSON),
        }
    }
}

/// An event that cannot be applied, kept for operators (see `crate::parked`).
#[derive(Clone, Debug)]
pub struct Parked {
    pub stream_seq: u64,
    pub subject: String,
    /// The `Motcua-Position` header: its position in intake's log.
    pub position: Option<u64>,
    /// Known when the payload decodes far enough.
    pub dossier_id: Option<String>,
    pub version: Option<u64>,
    pub reason: String,
    /// Microseconds since the Unix epoch.
    pub parked_at: i64,
    pub payload: Vec<u8>,
}

/// Everything one batch writes.
#[derive(Debug, Default)]
pub struct BatchWrite {
    pub changes: Changes,
    pub held: Vec<(String, i64, Vec<u8>)>,
    pub released: Vec<(String, i64)>,
    pub parked: Vec<Parked>,
    /// Parked events that a replay applied: they leave `parked_events`.
    pub unparked: Vec<u64>,
    /// Parked events a replay could not apply, with the new reason.
    pub reparked: Vec<(u64, String)>,
    pub checkpoint: u64,
    /// The stream's creation, for the checkpoint ([`crate::resume`]);
    /// `None` keeps the stored one.
    pub stream_created: Option<i64>,
    /// The log position every event up to which is taken; `None` keeps
    /// the stored one.
    pub log_position: Option<u64>,
    /// The log the read store holds; `None` keeps the stored one.
    pub log: Option<uuid::Uuid>,
}

impl BatchWrite {
    /// Whether the batch changes dossiers' read models only: nothing held,
    /// released, parked or replayed, and no procedure stream written.
    pub fn only_dossier_changes(&self) -> bool {
        self.held.is_empty()
            && self.released.is_empty()
            && self.parked.is_empty()
            && self.unparked.is_empty()
            && self.reparked.is_empty()
            && self.changes.catalog.writes_nothing()
    }
}

#[derive(Clone, Debug)]
pub struct ReadStore {
    pool: AnyPool,
    backend: Backend,
    /// The same PostgreSQL schema through sqlx's native driver, for the
    /// statements that bind arrays (see [`COMMIT_POSTGRES`]).
    pg: Option<sqlx::PgPool>,
    sql: std::sync::Arc<Statements>,
    /// The late feed's last committed position, for live watchers.
    feed_head: std::sync::Arc<watch::Sender<u64>>,
    /// During a [`Fill::Bulk`]: what it keeps in memory until it ends.
    bulk: std::sync::Arc<std::sync::Mutex<Option<Bulk>>>,
}

impl ReadStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_in(url, None, None, Fill::Live).await
    }

    /// Opens the read models in `schema` (PostgreSQL) and announces late-feed
    /// heads on `feed_head` when given (generations share one announcer, so
    /// watchers follow a swap). Commits are [`sqlkit::Durability::Relaxed`]:
    /// each batch commits with its checkpoint, so a batch a crash loses is
    /// applied again from the stream.
    pub async fn open_in(
        url: &str,
        schema: Option<&str>,
        feed_head: Option<std::sync::Arc<watch::Sender<u64>>>,
        fill: Fill,
    ) -> anyhow::Result<Self> {
        let (pool, backend) =
            sqlkit::connect_in(url, schema, 8, sqlkit::Durability::Relaxed).await?;
        let pg = match backend {
            Backend::Postgres => {
                Some(sqlkit::connect_postgres(url, schema, 3, sqlkit::Durability::Relaxed).await?)
            }
            Backend::Sqlite => None,
        };
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
        sqlkit::run_ddl(&pool, &schema)
            .await
            .context("create the read models' tables")?;
        if fill == Fill::Live {
            sqlkit::run_ddl(&pool, INDEXES)
                .await
                .context("create the read models' indexes")?;
        }
        sqlkit::add_missing_columns(&pool, "checkpoints", &CHECKPOINT_COLUMNS_ADDED)
            .await
            .context("bring the checkpoints' table up to date")?;
        crate::catalog::create_schema(&pool).await?;
        crate::parked::create_schema(&pool, backend).await?;
        let head: i64 = sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM late_feed")
            .fetch_one(&pool)
            .await
            .context("read the late feed's head")?
            .try_get(0)?;
        let head = u64::try_from(head).unwrap_or(0);
        let feed_head = match feed_head {
            Some(sender) => sender,
            None => std::sync::Arc::new(watch::Sender::new(head)),
        };
        Ok(Self {
            pool,
            backend,
            pg,
            sql: std::sync::Arc::new(Statements::new(backend)),
            feed_head,
            bulk: std::sync::Arc::new(std::sync::Mutex::new((fill == Fill::Bulk).then(Bulk::new))),
        })
    }

    /// Ends a [`Fill::Bulk`]: writes the counters it held and builds the
    /// reports' indexes; from here on others may write (the live consumer,
    /// after the swap).
    pub async fn finish_bulk_fill(&self) -> anyhow::Result<()> {
        self.write_held_counts().await?;
        self.with_bulk(|bulk| *bulk = None);
        sqlkit::run_ddl(&self.pool, INDEXES)
            .await
            .context("build the read models' indexes")
    }

    /// Has a [`Fill::Bulk`] hold at most `max` counter rows before it writes
    /// them (by default [`HELD_COUNTS_MAX`]); tests make it write often.
    pub fn hold_counts_up_to(&self, max: usize) {
        self.with_bulk(|bulk| {
            if let Some(bulk) = bulk {
                bulk.counts_max = max;
            }
        });
    }

    /// The announcer of late-feed heads, to share with a new generation.
    pub fn feed_announcer(&self) -> std::sync::Arc<watch::Sender<u64>> {
        self.feed_head.clone()
    }

    /// Takes over from the serving generation `from`: its late feed (the
    /// news already sent keeps its positions) and the live consumer's
    /// checkpoint, in one transaction.
    pub async fn adopt(
        &self,
        from: &ReadStore,
        consumer: &str,
        checkpoint: u64,
    ) -> anyhow::Result<()> {
        let rows = sqlx::query(
            "SELECT seq, change, dossier_id, office_code, province_code, procedure_code, field, channel, due_at, occurred_at FROM late_feed ORDER BY seq",
        )
        .fetch_all(&from.pool)
        .await
        .context("read the serving generation's late feed")?;
        let mut tx = self.pool.begin().await.context("begin a takeover")?;
        sqlx::query("DELETE FROM late_feed")
            .execute(&mut *tx)
            .await
            .context("empty the new late feed")?;
        if !rows.is_empty() {
            let mut json = JsonRows::new(LATE_FEED_JSON);
            for r in &rows {
                json.int(r.try_get(0)?)
                    .int(r.try_get(1)?)
                    .text(r.try_get(2)?)
                    .text(r.try_get(3)?)
                    .text(r.try_get(4)?)
                    .text(r.try_get(5)?)
                    .text(r.try_get(6)?)
                    .int(r.try_get(7)?)
                    .opt_int(r.try_get(8)?)
                    .int(r.try_get(9)?);
            }
            sqlx::query(sqlx::AssertSqlSafe(self.sql.append_late_feed.as_str()))
                .bind(json.finish())
                .execute(&mut *tx)
                .await
                .context("copy the late feed")?;
        }
        let live = from.resume_point(consumer).await?;
        sqlx::query(WRITE_CHECKPOINT)
            .bind(consumer)
            .bind(checkpoint as i64)
            .bind(live.stream_created)
            .bind(live.log_position.and_then(|p| i64::try_from(p).ok()))
            .bind(live.log.map(|l| l.to_string()))
            .execute(&mut *tx)
            .await
            .context("set the live checkpoint")?;
        tx.commit().await.context("commit a takeover")?;
        Ok(())
    }

    /// The late feed's head now, and every later head as batches commit.
    pub fn feed_updates(&self) -> watch::Receiver<u64> {
        self.feed_head.subscribe()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn checkpoint(&self, consumer: &str) -> anyhow::Result<u64> {
        let row = sqlx::query("SELECT stream_seq FROM checkpoints WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(&self.pool)
            .await
            .context("read the checkpoint")?;
        Ok(match row {
            Some(row) => u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
            None => 0,
        })
    }

    /// Where `consumer` stands: its checkpoint with the stream it was taken
    /// on and the log position it holds everything up to.
    pub async fn resume_point(&self, consumer: &str) -> anyhow::Result<Checkpoint> {
        let row = sqlx::query(
            "SELECT stream_seq, stream_created, log_position, log_id FROM checkpoints WHERE consumer = $1",
        )
        .bind(consumer)
        .fetch_optional(&self.pool)
        .await
        .context("read the checkpoint")?;
        let Some(row) = row else {
            // A new consumer starts at the log's first position.
            return Ok(Checkpoint {
                log_position: Some(0),
                ..Checkpoint::default()
            });
        };
        let position: Option<i64> = row.try_get(2)?;
        let log: Option<String> = row.try_get(3)?;
        Ok(Checkpoint {
            stream_seq: u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
            stream_created: row.try_get(1)?,
            log_position: position.map(|p| u64::try_from(p).unwrap_or(0)),
            log: log
                .map(|l| uuid::Uuid::try_parse(&l))
                .transpose()
                .context("the checkpoint's log is not a UUID")?,
        })
    }

    pub async fn held_count(&self) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM held_events")
            .fetch_one(&self.pool)
            .await
            .context("count held events")?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn with_bulk<T>(&self, f: impl FnOnce(&mut Option<Bulk>) -> T) -> T {
        match self.bulk.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The current rows of these dossiers.
    pub async fn load_rows(&self, ids: &[&str]) -> anyhow::Result<HashMap<String, DossierRow>> {
        // A bulk fill looks up only the dossiers it may have written.
        let maybe_stored: Option<Vec<&str>> = self.with_bulk(|bulk| {
            bulk.as_ref().map(|b| {
                ids.iter()
                    .copied()
                    .filter(|id| b.written.may_hold(id))
                    .collect()
            })
        });
        let ids = maybe_stored.as_deref().unwrap_or(ids);
        let mut rows = HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(rows);
        }
        if let Some(pg) = &self.pg {
            static LOAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                let names: Vec<&str> = DOSSIER_JSON.iter().map(|c| c.name).collect();
                format!(
                    "SELECT {} FROM dossiers WHERE dossier_id = ANY($1::text[])",
                    names.join(", ")
                )
            });
            let found = sqlx::query(sqlx::AssertSqlSafe(LOAD.as_str()))
                .bind(ids)
                .fetch_all(pg)
                .await
                .context("load dossier rows")?;
            for r in &found {
                let row = dossier_row(r)?;
                rows.insert(row.dossier_id.clone(), row);
            }
        } else {
            let q = sqlx::query(sqlx::AssertSqlSafe(self.sql.load_dossiers.as_str()))
                .bind(sqlkit::json_texts(ids.iter().copied()));
            for r in &q.fetch_all(&self.pool).await.context("load dossier rows")? {
                let row = dossier_row(r)?;
                rows.insert(row.dossier_id.clone(), row);
            }
        }
        Ok(rows)
    }

    /// Held events of these dossiers, by dossier then version.
    pub async fn load_held(&self, ids: &[&str]) -> anyhow::Result<Vec<(String, i64, Vec<u8>)>> {
        let mut held = Vec::new();
        if ids.is_empty() {
            return Ok(held);
        }
        let q = sqlx::query(sqlx::AssertSqlSafe(self.sql.load_held.as_str()))
            .bind(sqlkit::json_texts(ids.iter().copied()));
        for r in q.fetch_all(&self.pool).await.context("load held events")? {
            held.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        Ok(held)
    }

    /// Writes a batch's changes and its checkpoint in one transaction.
    pub async fn commit(&self, consumer: &str, batch: &BatchWrite) -> anyhow::Result<()> {
        // Ids are recorded before the write: a write that fails is written
        // again or dropped, and an id recorded in vain only costs a lookup.
        let holding = self.with_bulk(|bulk| {
            bulk.as_mut().map(|bulk| {
                for id in batch.changes.rows.keys() {
                    bulk.written.record(id);
                }
                bulk.counts.len() >= bulk.counts_max
            })
        });
        // A bulk fill's batch leaves its counters to the fill, which holds
        // them until they are many (written first, then) or the fill ends.
        let none = hashbrown::HashMap::new();
        let counters = match holding {
            None => &batch.changes.counters,
            Some(full) => {
                if full {
                    self.write_held_counts().await?;
                }
                &none
            }
        };
        match &self.pg {
            Some(pg) if batch.only_dossier_changes() => {
                self.commit_postgres(pg, consumer, batch, counters).await?;
            }
            _ => self.commit_any(consumer, batch, counters).await?,
        }
        // Held only once the batch is in: a batch written again is not
        // counted twice.
        if holding.is_some() {
            self.with_bulk(|bulk| {
                if let Some(bulk) = bulk {
                    add_counts(&mut bulk.counts, &batch.changes.counters);
                }
            });
        }
        Ok(())
    }

    /// Writes the counters a bulk fill holds, in one statement; on failure
    /// it holds them still.
    async fn write_held_counts(&self) -> anyhow::Result<()> {
        let Some(counts) =
            self.with_bulk(|bulk| bulk.as_mut().map(|b| std::mem::take(&mut b.counts)))
        else {
            return Ok(());
        };
        if counts.is_empty() {
            return Ok(());
        }
        let written = sqlx::query(sqlx::AssertSqlSafe(self.sql.add_counters.as_str()))
            .bind(counter_json(&counts))
            .execute(&self.pool)
            .await
            .context("write the counters a bulk fill held");
        if written.is_err() {
            self.with_bulk(|bulk| {
                if let Some(bulk) = bulk {
                    add_counts(&mut bulk.counts, &counts);
                }
            });
        }
        written.map(drop)
    }

    /// [`ReadStore::commit`] in statements any backend runs, in one
    /// transaction, with `counters` for the batch's.
    async fn commit_any(
        &self,
        consumer: &str,
        batch: &BatchWrite,
        counters: &hashbrown::HashMap<CounterKey, CounterDelta>,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await.context("begin a batch")?;

        // Late-feed notices get positions in commit order (the consumer is
        // this database's one writer).
        let mut feed_head = None;
        if !batch.changes.late_feed.is_empty() {
            let head: i64 =
                sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM late_feed")
                    .fetch_one(&mut *tx)
                    .await
                    .context("read the late feed's head")?
                    .try_get(0)?;
            let mut json = JsonRows::new(LATE_FEED_JSON);
            for (i, n) in batch.changes.late_feed.iter().enumerate() {
                json.int(head + 1 + i as i64)
                    .int(i64::from(n.change.code()))
                    .text(&n.dossier_id)
                    .text(&n.office_code)
                    .text(&n.province_code)
                    .text(&n.procedure_code)
                    .text(&n.field)
                    .int(i64::from(n.channel))
                    .opt_int(n.due_at)
                    .int(n.occurred_at);
            }
            sqlx::query(sqlx::AssertSqlSafe(self.sql.append_late_feed.as_str()))
                .bind(json.finish())
                .execute(&mut *tx)
                .await
                .context("append to the late feed")?;
            feed_head = Some(head + batch.changes.late_feed.len() as i64);
        }

        if !batch.changes.rows.is_empty() {
            let mut json = JsonRows::new(DOSSIER_JSON);
            for r in batch.changes.rows.values() {
                dossier_fields(&mut json, r);
            }
            sqlx::query(sqlx::AssertSqlSafe(self.sql.upsert_dossiers.as_str()))
                .bind(json.finish())
                .execute(&mut *tx)
                .await
                .context("upsert dossier rows")?;
        }

        if !counters.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(self.sql.add_counters.as_str()))
                .bind(counter_json(counters))
                .execute(&mut *tx)
                .await
                .context("add to daily counters")?;
        }

        if !batch.changes.pauses.is_empty() {
            let mut json = JsonRows::new(PAUSE_JSON);
            for ((dossier_id, seq), p) in &batch.changes.pauses {
                json.text(dossier_id)
                    .int(i64::from(*seq))
                    .int(i64::from(p.from_day))
                    .opt_int(p.until_day.map(i64::from));
            }
            sqlx::query(sqlx::AssertSqlSafe(self.sql.record_pauses.as_str()))
                .bind(json.finish())
                .execute(&mut *tx)
                .await
                .context("record pauses")?;
        }

        crate::catalog::write(self.backend, &mut tx, &batch.changes.catalog).await?;
        for (dossier_id, version) in &batch.released {
            sqlx::query("DELETE FROM held_events WHERE dossier_id = $1 AND version = $2")
                .bind(dossier_id.as_str())
                .bind(*version)
                .execute(&mut *tx)
                .await
                .context("release a held event")?;
        }
        for (dossier_id, version, payload) in &batch.held {
            sqlx::query(
                "INSERT INTO held_events (dossier_id, version, payload) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(dossier_id.as_str())
            .bind(*version)
            .bind(payload.as_slice())
            .execute(&mut *tx)
            .await
            .context("hold an event")?;
        }
        for p in &batch.parked {
            sqlx::query(
                "INSERT INTO parked_events (stream_seq, subject, reason, payload, position, dossier_id, version, parked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(p.stream_seq as i64)
            .bind(p.subject.as_str())
            .bind(p.reason.as_str())
            .bind(p.payload.as_slice())
            .bind(p.position.and_then(|v| i64::try_from(v).ok()))
            .bind(p.dossier_id.as_deref())
            .bind(p.version.and_then(|v| i64::try_from(v).ok()))
            .bind(p.parked_at)
            .execute(&mut *tx)
            .await
            .context("park an event")?;
        }
        for seq in &batch.unparked {
            sqlx::query("DELETE FROM parked_events WHERE stream_seq = $1")
                .bind(*seq as i64)
                .execute(&mut *tx)
                .await
                .context("unpark an event")?;
        }
        for (seq, reason) in &batch.reparked {
            sqlx::query("UPDATE parked_events SET reason = $1 WHERE stream_seq = $2")
                .bind(reason.as_str())
                .bind(*seq as i64)
                .execute(&mut *tx)
                .await
                .context("record why a parked event still fails")?;
        }

        sqlx::query(WRITE_CHECKPOINT)
            .bind(consumer)
            .bind(batch.checkpoint as i64)
            .bind(batch.stream_created)
            .bind(batch.log_position.and_then(|p| i64::try_from(p).ok()))
            .bind(batch.log.map(|l| l.to_string()))
            .execute(&mut *tx)
            .await
            .context("advance the checkpoint")?;
        tx.commit().await.context("commit a batch")?;
        if let Some(head) = feed_head {
            self.feed_head
                .send_replace(u64::try_from(head).unwrap_or(0));
        }
        Ok(())
    }

    /// [`ReadStore::commit`] of a batch of dossier events on PostgreSQL:
    /// one statement ([`COMMIT_POSTGRES`]).
    async fn commit_postgres(
        &self,
        pg: &sqlx::PgPool,
        consumer: &str,
        batch: &BatchWrite,
        counters: &hashbrown::HashMap<CounterKey, CounterDelta>,
    ) -> anyhow::Result<()> {
        match self
            .try_commit_postgres(pg, consumer, batch, counters, true)
            .await
        {
            // A dossier taken as new has a row after all: nothing was
            // written; write every row as an upsert.
            Err(e) if is_unique_violation(&e) => {
                tracing::warn!(error = %e, "a dossier row taken as new exists; writing the batch again with upserts");
                self.try_commit_postgres(pg, consumer, batch, counters, false)
                    .await
                    .context("write a batch with upserts only")
            }
            result => result.context("write a batch"),
        }
    }

    /// One attempt of [`Self::commit_postgres`]: with `trust_stored`, rows
    /// not [`DossierRow::stored`] are inserted without an upsert.
    async fn try_commit_postgres(
        &self,
        pg: &sqlx::PgPool,
        consumer: &str,
        batch: &BatchWrite,
        counters: &hashbrown::HashMap<CounterKey, CounterDelta>,
        trust_stored: bool,
    ) -> Result<(), sqlx::Error> {
        let changes = &batch.changes;
        let feed = &changes.late_feed;
        let new_rows = || changes.rows.values().filter(|r| !r.stored);
        // Many new rows are copied first; the statement then writes the rest.
        let copy = trust_stored && new_rows().nth(COPY_MIN_ROWS - 1).is_some();
        let rows: Vec<&DossierRow> = changes
            .rows
            .values()
            .filter(|r| !copy || r.stored)
            .collect();
        let counters: Vec<_> = counters.iter().collect();
        let pauses: Vec<_> = changes.pauses.iter().collect();
        let day = |d: Option<i32>| d.map(i64::from);
        let statement = sqlx::query_scalar(sqlx::AssertSqlSafe(COMMIT_POSTGRES.as_str()))
            .bind(column(feed, |n| i64::from(n.change.code())))
            .bind(column(feed, |n| n.dossier_id.as_str()))
            .bind(column(feed, |n| n.office_code.as_str()))
            .bind(column(feed, |n| n.province_code.as_str()))
            .bind(column(feed, |n| n.procedure_code.as_str()))
            .bind(column(feed, |n| n.field.as_str()))
            .bind(column(feed, |n| i64::from(n.channel)))
            .bind(column(feed, |n| n.due_at))
            .bind(column(feed, |n| n.occurred_at))
            .bind(column(&rows, |r| r.dossier_id.as_str()))
            .bind(column(&rows, |r| r.office_code.as_str()))
            .bind(column(&rows, |r| r.province_code.as_str()))
            .bind(column(&rows, |r| r.procedure_code.as_str()))
            .bind(column(&rows, |r| r.field.as_str()))
            .bind(column(&rows, |r| i64::from(r.channel)))
            .bind(column(&rows, |r| r.version))
            .bind(column(&rows, |r| r.status.as_str()))
            .bind(column(&rows, |r| day(r.received_day)))
            .bind(column(&rows, |r| r.due_at))
            .bind(column(&rows, |r| day(r.due_day)))
            .bind(column(&rows, |r| day(r.closed_day)))
            .bind(column(&rows, |r| day(r.resolved_day)))
            .bind(column(&rows, |r| day(r.timeliness)))
            .bind(column(&rows, |r| r.late_at))
            .bind(column(&rows, |r| i64::from(r.pauses)))
            .bind(column(&counters, |(k, _)| k.office_code.as_str()))
            .bind(column(&counters, |(k, _)| i64::from(k.day)))
            .bind(column(&counters, |(k, _)| k.procedure_code.as_str()))
            .bind(column(&counters, |(k, _)| i64::from(k.channel)))
            .bind(column(&counters, |(k, _)| k.metric.as_str()))
            .bind(column(&counters, |(_, d)| d.province_code.as_str()))
            .bind(column(&counters, |(_, d)| d.field.as_str()))
            .bind(column(&counters, |(_, d)| d.n))
            .bind(column(&pauses, |((id, _), _)| id.as_str()))
            .bind(column(&pauses, |((_, seq), _)| i64::from(*seq)))
            .bind(column(&pauses, |(_, p)| i64::from(p.from_day)))
            .bind(column(&pauses, |(_, p)| day(p.until_day)))
            .bind(consumer)
            .bind(batch.checkpoint as i64)
            .bind(column(&rows, |r| r.stored || !trust_stored))
            .bind(batch.stream_created)
            .bind(batch.log_position.and_then(|p| i64::try_from(p).ok()))
            .bind(batch.log.map(|l| l.to_string()));
        let base: i64 = if copy {
            let mut tx = pg.begin().await?;
            let mut copy_in = tx.copy_in_raw(&COPY_DOSSIERS).await?;
            copy_in.send(dossier_copy_rows(new_rows())).await?;
            copy_in.finish().await?;
            let base = statement.fetch_one(&mut *tx).await?;
            tx.commit().await?;
            base
        } else {
            statement.fetch_one(pg).await?
        };
        if !feed.is_empty() {
            self.feed_head
                .send_replace(u64::try_from(base + feed.len() as i64).unwrap_or(0));
        }
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
        self.pool.close().await;
    }
}

/// Counter rows as [`Statements::add_counters`] reads them.
fn counter_json(counters: &hashbrown::HashMap<CounterKey, CounterDelta>) -> String {
    let mut json = JsonRows::new(COUNTER_JSON);
    for (k, d) in counters {
        json.text(&k.office_code)
            .int(i64::from(k.day))
            .text(&k.procedure_code)
            .int(i64::from(k.channel))
            .text(&k.metric)
            .text(&d.province_code)
            .text(&d.field)
            .int(d.n);
    }
    json.finish()
}

/// Adds counter deltas to others.
fn add_counts(
    into: &mut hashbrown::HashMap<CounterKey, CounterDelta>,
    from: &hashbrown::HashMap<CounterKey, CounterDelta>,
) {
    for (key, delta) in from {
        match into.get_mut(key) {
            Some(sum) => sum.n += delta.n,
            None => {
                into.insert(key.clone(), delta.clone());
            }
        }
    }
}

/// What a [`Fill::Bulk`] keeps in memory until it ends.
///
/// Its counters: a rebuild's batches meet the same counters again and again
/// (an office's day, procedure, channel and metric), and writing each
/// batch's deltas made PostgreSQL update every such row once per batch.
/// The deltas of the batches committed add up here instead, and are written
/// once when the fill ends, or before the next batch once they are
/// [`Bulk::counts_max`] rows. They are lost only with the process, and with
/// it the unfinished generation, which is dropped at the next start.
#[derive(Debug)]
struct Bulk {
    written: Written,
    /// Deltas of committed batches not yet in `daily_counts`.
    counts: hashbrown::HashMap<CounterKey, CounterDelta>,
    counts_max: usize,
}

/// Counter rows a bulk fill holds at most (about 300 bytes each).
pub const HELD_COUNTS_MAX: usize = 100_000;

impl Bulk {
    fn new() -> Self {
        Self {
            written: Written::new(),
            counts: hashbrown::HashMap::new(),
            counts_max: HELD_COUNTS_MAX,
        }
    }
}

/// The dossier ids a [`Fill::Bulk`] has written, as a Bloom filter. A bulk
/// fill starts from empty tables that nothing else writes until it ends, so
/// a dossier the filter has never seen has no row, and its lookup is
/// skipped: a rebuild's batch reads nothing back for the dossiers it meets
/// first, as most are (looking up a batch's new ids cost PostgreSQL time
/// for nothing; BENCHMARKS.md). A false positive costs a lookup; the filter
/// is 16 MB, so 2.5 million dossiers (10 million events) make one in 6,000
/// ids one, and 25 million still fewer than one in ten.
#[derive(Debug)]
struct Written {
    bits: Vec<u64>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Written {
    /// 2^27 bits.
    const BITS_LOG2: u32 = 27;
    /// Bits set per id.
    const PROBES: usize = 3;

    fn new() -> Self {
        Self {
            bits: vec![0; 1 << (Self::BITS_LOG2 - 6)],
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    /// The bits of `id` (word, mask): double hashing from one 64-bit hash.
    fn probes(&self, id: &str) -> [(usize, u64); Self::PROBES] {
        use std::hash::BuildHasher as _;
        let hash = self.hasher.hash_one(id);
        let step = hash.rotate_left(32) | 1;
        let mask = (1u64 << Self::BITS_LOG2) - 1;
        std::array::from_fn(|i| {
            let bit = hash.wrapping_add((i as u64).wrapping_mul(step)) & mask;
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        })
    }

    fn record(&mut self, id: &str) {
        for (word, bit) in self.probes(id) {
            self.bits[word] |= bit;
        }
    }

    fn may_hold(&self, id: &str) -> bool {
        self.probes(id)
            .iter()
            .all(|&(word, bit)| self.bits[word] & bit != 0)
    }
}

/// A dossier row read back, its columns in [`DOSSIER_JSON`]'s order.
fn dossier_row<R: sqlx::Row>(r: &R) -> anyhow::Result<DossierRow>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let int = |i: usize| -> anyhow::Result<Option<i32>> {
        Ok(r.try_get::<Option<i64>, _>(i)?.map(|v| v as i32))
    };
    Ok(DossierRow {
        dossier_id: r.try_get(0)?,
        office_code: r.try_get(1)?,
        province_code: r.try_get(2)?,
        procedure_code: r.try_get(3)?,
        field: r.try_get(4)?,
        channel: r.try_get::<i64, _>(5)? as i32,
        version: r.try_get(6)?,
        status: r.try_get(7)?,
        received_day: int(8)?,
        due_at: r.try_get(9)?,
        due_day: int(10)?,
        closed_day: int(11)?,
        resolved_day: int(12)?,
        timeliness: int(13)?,
        late_at: r.try_get(14)?,
        pauses: r.try_get::<i64, _>(15)? as i32,
        stored: true,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::{BatchWrite, ReadStore, Written};
    use crate::resume::Checkpoint;

    #[tokio::test]
    async fn an_older_checkpoint_is_kept_and_learns_its_stream() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}/p.db", dir.path().display());
        let (pool, _) = sqlkit::connect(&url, 1).await?;
        sqlkit::run_ddl(
            &pool,
            "CREATE TABLE checkpoints (consumer TEXT PRIMARY KEY, stream_seq BIGINT NOT NULL);
             INSERT INTO checkpoints VALUES ('projection', 42)",
        )
        .await?;
        pool.close().await;
        let store = ReadStore::open(&url).await?;
        let legacy = Checkpoint {
            stream_seq: 42,
            stream_created: None,
            log_position: None,
            log: None,
        };
        assert_eq!(store.resume_point("projection").await?, legacy);
        assert_eq!(
            store.resume_point("other").await?.log_position,
            Some(0),
            "a new consumer starts at the log's start"
        );
        let mut batch = BatchWrite {
            checkpoint: 50,
            stream_created: Some(7),
            log_position: Some(45),
            ..BatchWrite::default()
        };
        store.commit("projection", &batch).await?;
        // A writer that knows neither (a parked events' replay) keeps both.
        batch.stream_created = None;
        batch.log_position = None;
        store.commit("projection", &batch).await?;
        let now = Checkpoint {
            stream_seq: 50,
            stream_created: Some(7),
            log_position: Some(45),
            log: None,
        };
        assert_eq!(store.resume_point("projection").await?, now);
        store.close().await;
        Ok(())
    }

    #[test]
    fn a_bulk_fill_looks_up_every_dossier_it_wrote_and_few_others() {
        let mut written = Written::new();
        let ids: Vec<String> = (0..200_000).map(|n| format!("D{n:09}")).collect();
        for id in &ids {
            written.record(id);
        }
        // Never a false negative: a stored row is always looked up.
        assert!(ids.iter().all(|id| written.may_hold(id)));
        let others = (200_000..1_200_000)
            .filter(|n| written.may_hold(&format!("D{n:09}")))
            .count();
        assert!(
            others < 100,
            "{others} of 1,000,000 unwritten ids looked up"
        );
    }
}
