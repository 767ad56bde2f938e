//! The PostgreSQL fast path: a batch of dossier events written in one
//! statement binding one array per column, through the native `PgPool`,
//! with many new dossier rows copied first.

use anyhow::Context as _;
use sqlkit::column;
use sqlx::{postgres::PgArguments, query::QueryScalar};

use super::{
    BatchWrite, ReadStore,
    rows::dossier_fields,
    sql::{ADD_COUNTER, DOSSIER_JSON, RECORD_PAUSE, UPSERT_DOSSIER},
};
use crate::apply::{CounterDelta, CounterKey, DossierRow, Pause};

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

impl ReadStore {
    /// [`ReadStore::commit`] of a batch of dossier events on PostgreSQL:
    /// one statement ([`COMMIT_POSTGRES`]).
    pub(super) async fn commit_postgres(
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
        let statement = commit_statement(batch, consumer, &rows, &counters, &pauses, trust_stored);
        let base: i64 = if copy {
            copy_then_run(pg, new_rows(), statement).await?
        } else {
            statement.fetch_one(pg).await?
        };
        if !feed.is_empty() {
            self.feed_head
                .send_replace(u64::try_from(base + feed.len() as i64).unwrap_or(0));
        }
        Ok(())
    }
}

/// [`COMMIT_POSTGRES`] with a batch's columns bound: its late-feed notices,
/// `rows` (the dossier rows the statement writes), `counters`, `pauses` and
/// `consumer`'s checkpoint.
fn commit_statement<'q>(
    batch: &'q BatchWrite,
    consumer: &'q str,
    rows: &'q [&'q DossierRow],
    counters: &'q [(&'q CounterKey, &'q CounterDelta)],
    pauses: &'q [(&'q (String, i32), &'q Pause)],
    trust_stored: bool,
) -> QueryScalar<'q, sqlx::Postgres, i64, PgArguments> {
    let feed = &batch.changes.late_feed;
    let day = |d: Option<i32>| d.map(i64::from);
    sqlx::query_scalar(sqlx::AssertSqlSafe(COMMIT_POSTGRES.as_str()))
        .bind(column(feed, |n| i64::from(n.change.code())))
        .bind(column(feed, |n| n.dossier_id.as_str()))
        .bind(column(feed, |n| n.office_code.as_str()))
        .bind(column(feed, |n| n.province_code.as_str()))
        .bind(column(feed, |n| n.procedure_code.as_str()))
        .bind(column(feed, |n| n.field.as_str()))
        .bind(column(feed, |n| i64::from(n.channel)))
        .bind(column(feed, |n| n.due_at))
        .bind(column(feed, |n| n.occurred_at))
        .bind(column(rows, |r| r.dossier_id.as_str()))
        .bind(column(rows, |r| r.office_code.as_str()))
        .bind(column(rows, |r| r.province_code.as_str()))
        .bind(column(rows, |r| r.procedure_code.as_str()))
        .bind(column(rows, |r| r.field.as_str()))
        .bind(column(rows, |r| i64::from(r.channel)))
        .bind(column(rows, |r| r.version))
        .bind(column(rows, |r| r.status.as_str()))
        .bind(column(rows, |r| day(r.received_day)))
        .bind(column(rows, |r| r.due_at))
        .bind(column(rows, |r| day(r.due_day)))
        .bind(column(rows, |r| day(r.closed_day)))
        .bind(column(rows, |r| day(r.resolved_day)))
        .bind(column(rows, |r| day(r.timeliness)))
        .bind(column(rows, |r| r.late_at))
        .bind(column(rows, |r| i64::from(r.pauses)))
        .bind(column(counters, |(k, _)| k.office_code.as_str()))
        .bind(column(counters, |(k, _)| i64::from(k.day)))
        .bind(column(counters, |(k, _)| k.procedure_code.as_str()))
        .bind(column(counters, |(k, _)| i64::from(k.channel)))
        .bind(column(counters, |(k, _)| k.metric.as_str()))
        .bind(column(counters, |(_, d)| d.province_code.as_str()))
        .bind(column(counters, |(_, d)| d.field.as_str()))
        .bind(column(counters, |(_, d)| d.n))
        .bind(column(pauses, |((id, _), _)| id.as_str()))
        .bind(column(pauses, |((_, seq), _)| i64::from(*seq)))
        .bind(column(pauses, |(_, p)| i64::from(p.from_day)))
        .bind(column(pauses, |(_, p)| day(p.until_day)))
        .bind(consumer)
        .bind(batch.checkpoint as i64)
        .bind(column(rows, |r| r.stored || !trust_stored))
        .bind(batch.stream_created)
        .bind(batch.log_position.and_then(|p| i64::try_from(p).ok()))
        .bind(batch.log.map(|l| l.to_string()))
}

/// Copies `new_rows` into `dossiers`, then runs the batch's statement, in
/// one transaction; returns what the statement returns.
async fn copy_then_run<'a>(
    pg: &sqlx::PgPool,
    new_rows: impl Iterator<Item = &'a DossierRow>,
    statement: QueryScalar<'_, sqlx::Postgres, i64, PgArguments>,
) -> Result<i64, sqlx::Error> {
    let mut tx = pg.begin().await?;
    let mut copy_in = tx.copy_in_raw(&COPY_DOSSIERS).await?;
    copy_in.send(dossier_copy_rows(new_rows)).await?;
    copy_in.finish().await?;
    let base = statement.fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(base)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
