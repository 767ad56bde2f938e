//! The read models in SQL: dossier rows, supplement pauses, per-day
//! counters, held and parked events, and the consumer checkpoint. A batch
//! of changes and its checkpoint commit in one transaction.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlkit::{Backend, list_placeholders, push, values_placeholders};
use sqlx::{AnyPool, Row as _, any::AnyArguments};
use tokio::sync::watch;

use crate::apply::{Changes, DossierRow};

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
CREATE INDEX IF NOT EXISTS dossiers_office_received ON dossiers (office_code, received_day);
CREATE INDEX IF NOT EXISTS dossiers_province_received ON dossiers (province_code, received_day);
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
CREATE INDEX IF NOT EXISTS daily_counts_province ON daily_counts (province_code, day);
CREATE TABLE IF NOT EXISTS held_events (
    dossier_id TEXT NOT NULL,
    version    BIGINT NOT NULL,
    payload    BYTEA NOT NULL,
    PRIMARY KEY (dossier_id, version)
);
CREATE INDEX IF NOT EXISTS dossiers_office_open_due ON dossiers (office_code, due_at) WHERE closed_day IS NULL;
CREATE INDEX IF NOT EXISTS dossiers_province_open_due ON dossiers (province_code, due_at) WHERE closed_day IS NULL;
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
    consumer   TEXT PRIMARY KEY,
    stream_seq BIGINT NOT NULL
)";

const DOSSIER_COLUMNS: &str = "dossier_id, office_code, province_code, procedure_code, field, channel, version, status, received_day, due_at, due_day, closed_day, resolved_day, timeliness, late_at, pauses";

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
}

#[derive(Clone, Debug)]
pub struct ReadStore {
    pool: AnyPool,
    backend: Backend,
    /// The late feed's last committed position, for live watchers.
    feed_head: std::sync::Arc<watch::Sender<u64>>,
}

impl ReadStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_in(url, None, None).await
    }

    /// Opens the read models in `schema` (PostgreSQL) and announces late-feed
    /// heads on `feed_head` when given (generations share one announcer, so
    /// watchers follow a swap).
    pub async fn open_in(
        url: &str,
        schema: Option<&str>,
        feed_head: Option<std::sync::Arc<watch::Sender<u64>>>,
    ) -> anyhow::Result<Self> {
        let (pool, backend) = sqlkit::connect_in(url, schema, 8).await?;
        let schema = match backend {
            Backend::Postgres => SCHEMA.to_owned(),
            Backend::Sqlite => SCHEMA.replace("BYTEA", "BLOB"),
        };
        sqlkit::run_ddl(&pool, &schema)
            .await
            .context("create the read models' tables")?;
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
            feed_head,
        })
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
        for chunk in rows.chunks(500) {
            let sql = format!(
                "INSERT INTO late_feed (seq, change, dossier_id, office_code, province_code, procedure_code, field, channel, due_at, occurred_at) VALUES {}",
                values_placeholders(self.backend, chunk.len(), 10)
            );
            let mut args = AnyArguments::default();
            for r in chunk {
                push(&mut args, r.try_get::<i64, _>(0)?)?;
                push(&mut args, r.try_get::<i64, _>(1)?)?;
                push(&mut args, r.try_get::<String, _>(2)?)?;
                push(&mut args, r.try_get::<String, _>(3)?)?;
                push(&mut args, r.try_get::<String, _>(4)?)?;
                push(&mut args, r.try_get::<String, _>(5)?)?;
                push(&mut args, r.try_get::<String, _>(6)?)?;
                push(&mut args, r.try_get::<i64, _>(7)?)?;
                push(&mut args, r.try_get::<Option<i64>, _>(8)?)?;
                push(&mut args, r.try_get::<i64, _>(9)?)?;
            }
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .context("copy the late feed")?;
        }
        sqlx::query(
            "INSERT INTO checkpoints (consumer, stream_seq) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET stream_seq = excluded.stream_seq",
        )
        .bind(consumer)
        .bind(checkpoint as i64)
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

    pub async fn held_count(&self) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM held_events")
            .fetch_one(&self.pool)
            .await
            .context("count held events")?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The current rows of these dossiers.
    pub async fn load_rows(&self, ids: &[&str]) -> anyhow::Result<HashMap<String, DossierRow>> {
        let mut rows = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(900) {
            let sql = format!(
                "SELECT {DOSSIER_COLUMNS} FROM dossiers WHERE dossier_id IN ({})",
                list_placeholders(self.backend, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await.context("load dossier rows")? {
                let int = |i: usize| -> anyhow::Result<Option<i32>> {
                    Ok(r.try_get::<Option<i64>, _>(i)?.map(|v| v as i32))
                };
                let row = DossierRow {
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
                };
                rows.insert(row.dossier_id.clone(), row);
            }
        }
        Ok(rows)
    }

    /// Held events of these dossiers, by dossier then version.
    pub async fn load_held(&self, ids: &[&str]) -> anyhow::Result<Vec<(String, i64, Vec<u8>)>> {
        let mut held = Vec::new();
        for chunk in ids.chunks(900) {
            let sql = format!(
                "SELECT dossier_id, version, payload FROM held_events WHERE dossier_id IN ({}) ORDER BY dossier_id, version",
                list_placeholders(self.backend, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await.context("load held events")? {
                held.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
        }
        Ok(held)
    }

    /// Writes a batch's changes and its checkpoint in one transaction.
    pub async fn commit(&self, consumer: &str, batch: &BatchWrite) -> anyhow::Result<()> {
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
            let notices: Vec<_> = batch.changes.late_feed.iter().enumerate().collect();
            for chunk in notices.chunks(1000) {
                let sql = format!(
                    "INSERT INTO late_feed (seq, change, dossier_id, office_code, province_code, procedure_code, field, channel, due_at, occurred_at) VALUES {}",
                    values_placeholders(self.backend, chunk.len(), 10)
                );
                let mut args = AnyArguments::default();
                for (i, n) in chunk {
                    push(&mut args, head + 1 + *i as i64)?;
                    push(&mut args, i64::from(n.change.code()))?;
                    push(&mut args, n.dossier_id.as_str())?;
                    push(&mut args, n.office_code.as_str())?;
                    push(&mut args, n.province_code.as_str())?;
                    push(&mut args, n.procedure_code.as_str())?;
                    push(&mut args, n.field.as_str())?;
                    push(&mut args, i64::from(n.channel))?;
                    push(&mut args, n.due_at)?;
                    push(&mut args, n.occurred_at)?;
                }
                sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                    .persistent(false)
                    .execute(&mut *tx)
                    .await
                    .context("append to the late feed")?;
            }
            feed_head = Some(head + batch.changes.late_feed.len() as i64);
        }

        let rows: Vec<&DossierRow> = batch.changes.rows.values().collect();
        for chunk in rows.chunks(1000) {
            let sql = format!(
                "INSERT INTO dossiers ({DOSSIER_COLUMNS}) VALUES {} ON CONFLICT (dossier_id) DO UPDATE SET \
                 procedure_code = excluded.procedure_code, field = excluded.field, channel = excluded.channel, \
                 version = excluded.version, status = excluded.status, received_day = excluded.received_day, \
                 due_at = excluded.due_at, due_day = excluded.due_day, closed_day = excluded.closed_day, \
                 resolved_day = excluded.resolved_day, timeliness = excluded.timeliness, \
                 late_at = excluded.late_at, pauses = excluded.pauses",
                values_placeholders(self.backend, chunk.len(), 16)
            );
            let mut args = AnyArguments::default();
            for r in chunk {
                push(&mut args, r.dossier_id.as_str())?;
                push(&mut args, r.office_code.as_str())?;
                push(&mut args, r.province_code.as_str())?;
                push(&mut args, r.procedure_code.as_str())?;
                push(&mut args, r.field.as_str())?;
                push(&mut args, i64::from(r.channel))?;
                push(&mut args, r.version)?;
                push(&mut args, r.status.as_str())?;
                push(&mut args, r.received_day.map(i64::from))?;
                push(&mut args, r.due_at)?;
                push(&mut args, r.due_day.map(i64::from))?;
                push(&mut args, r.closed_day.map(i64::from))?;
                push(&mut args, r.resolved_day.map(i64::from))?;
                push(&mut args, r.timeliness.map(i64::from))?;
                push(&mut args, r.late_at)?;
                push(&mut args, i64::from(r.pauses))?;
            }
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .context("upsert dossier rows")?;
        }

        let counters: Vec<_> = batch.changes.counters.iter().collect();
        for chunk in counters.chunks(2000) {
            let sql = format!(
                "INSERT INTO daily_counts (office_code, day, procedure_code, channel, metric, province_code, field, n) VALUES {} \
                 ON CONFLICT (office_code, day, procedure_code, channel, metric) DO UPDATE SET n = daily_counts.n + excluded.n",
                values_placeholders(self.backend, chunk.len(), 8)
            );
            let mut args = AnyArguments::default();
            for (k, d) in chunk {
                push(&mut args, k.office_code.as_str())?;
                push(&mut args, i64::from(k.day))?;
                push(&mut args, k.procedure_code.as_str())?;
                push(&mut args, i64::from(k.channel))?;
                push(&mut args, k.metric.as_str())?;
                push(&mut args, d.province_code.as_str())?;
                push(&mut args, d.field.as_str())?;
                push(&mut args, d.n)?;
            }
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .context("add to daily counters")?;
        }

        let pauses: Vec<_> = batch.changes.pauses.iter().collect();
        for chunk in pauses.chunks(2000) {
            let sql = format!(
                "INSERT INTO pauses (dossier_id, seq, from_day, until_day) VALUES {} \
                 ON CONFLICT (dossier_id, seq) DO UPDATE SET until_day = excluded.until_day",
                values_placeholders(self.backend, chunk.len(), 4)
            );
            let mut args = AnyArguments::default();
            for ((dossier_id, seq), p) in chunk {
                push(&mut args, dossier_id.as_str())?;
                push(&mut args, i64::from(*seq))?;
                push(&mut args, i64::from(p.from_day))?;
                push(&mut args, p.until_day.map(i64::from))?;
            }
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .persistent(false)
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

        sqlx::query(
            "INSERT INTO checkpoints (consumer, stream_seq) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET stream_seq = excluded.stream_seq",
        )
        .bind(consumer)
        .bind(batch.checkpoint as i64)
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

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
