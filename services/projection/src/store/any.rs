//! The general batch write: statements any backend runs, each taking its
//! rows as one JSON parameter, in one transaction. It writes every kind of
//! batch (held, released, parked and replayed events, procedure streams);
//! on PostgreSQL, batches of dossier events only take the fast path
//! (`super::postgres`).

use anyhow::Context as _;
use sqlkit::JsonRows;
use sqlx::Row as _;

use super::{
    BatchWrite, ReadStore,
    rows::{counter_json, dossier_fields},
    sql::{DOSSIER_JSON, LATE_FEED_JSON, PAUSE_JSON, WRITE_CHECKPOINT},
};
use crate::apply::{Changes, CounterDelta, CounterKey, LateNotice};

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

impl ReadStore {
    /// [`ReadStore::commit`] in statements any backend runs, in one
    /// transaction, with `counters` for the batch's.
    pub(super) async fn commit_any(
        &self,
        consumer: &str,
        batch: &BatchWrite,
        counters: &hashbrown::HashMap<CounterKey, CounterDelta>,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await.context("begin a batch")?;
        let feed_head = self
            .append_late_feed(&mut tx, &batch.changes.late_feed)
            .await?;
        self.write_changes(&mut tx, &batch.changes, counters)
            .await?;
        crate::catalog::write(self.backend, &mut tx, &batch.changes.catalog).await?;
        release_and_hold(&mut tx, batch).await?;
        park_and_unpark(&mut tx, batch).await?;
        write_checkpoint(&mut tx, consumer, batch).await?;
        tx.commit().await.context("commit a batch")?;
        if let Some(head) = feed_head {
            self.feed_head
                .send_replace(u64::try_from(head).unwrap_or(0));
        }
        Ok(())
    }

    /// Appends the batch's late-feed notices; returns the feed's new head
    /// when there were any. Notices get positions in commit order (the
    /// consumer is this database's one writer).
    async fn append_late_feed(
        &self,
        tx: &mut Tx<'_>,
        late_feed: &[LateNotice],
    ) -> anyhow::Result<Option<i64>> {
        if late_feed.is_empty() {
            return Ok(None);
        }
        let head: i64 = sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM late_feed")
            .fetch_one(&mut **tx)
            .await
            .context("read the late feed's head")?
            .try_get(0)?;
        let mut json = JsonRows::new(LATE_FEED_JSON);
        for (i, n) in late_feed.iter().enumerate() {
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
            .execute(&mut **tx)
            .await
            .context("append to the late feed")?;
        Ok(Some(head + late_feed.len() as i64))
    }

    /// Writes the batch's dossier rows, `counters` and pauses.
    async fn write_changes(
        &self,
        tx: &mut Tx<'_>,
        changes: &Changes,
        counters: &hashbrown::HashMap<CounterKey, CounterDelta>,
    ) -> anyhow::Result<()> {
        if !changes.rows.is_empty() {
            let mut json = JsonRows::new(DOSSIER_JSON);
            for r in changes.rows.values() {
                dossier_fields(&mut json, r);
            }
            sqlx::query(sqlx::AssertSqlSafe(self.sql.upsert_dossiers.as_str()))
                .bind(json.finish())
                .execute(&mut **tx)
                .await
                .context("upsert dossier rows")?;
        }

        if !counters.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(self.sql.add_counters.as_str()))
                .bind(counter_json(counters))
                .execute(&mut **tx)
                .await
                .context("add to daily counters")?;
        }

        if !changes.pauses.is_empty() {
            let mut json = JsonRows::new(PAUSE_JSON);
            for ((dossier_id, seq), p) in &changes.pauses {
                json.text(dossier_id)
                    .int(i64::from(*seq))
                    .int(i64::from(p.from_day))
                    .opt_int(p.until_day.map(i64::from));
            }
            sqlx::query(sqlx::AssertSqlSafe(self.sql.record_pauses.as_str()))
                .bind(json.finish())
                .execute(&mut **tx)
                .await
                .context("record pauses")?;
        }
        Ok(())
    }
}

/// Deletes the held events the batch released, then holds its new ones.
async fn release_and_hold(tx: &mut Tx<'_>, batch: &BatchWrite) -> anyhow::Result<()> {
    for (dossier_id, version) in &batch.released {
        sqlx::query("DELETE FROM held_events WHERE dossier_id = $1 AND version = $2")
            .bind(dossier_id.as_str())
            .bind(*version)
            .execute(&mut **tx)
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
        .execute(&mut **tx)
        .await
        .context("hold an event")?;
    }
    Ok(())
}

/// Parks the batch's unappliable events; takes those a replay applied out
/// of `parked_events`, and records why the others still fail.
async fn park_and_unpark(tx: &mut Tx<'_>, batch: &BatchWrite) -> anyhow::Result<()> {
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
        .execute(&mut **tx)
        .await
        .context("park an event")?;
    }
    for seq in &batch.unparked {
        sqlx::query("DELETE FROM parked_events WHERE stream_seq = $1")
            .bind(*seq as i64)
            .execute(&mut **tx)
            .await
            .context("unpark an event")?;
    }
    for (seq, reason) in &batch.reparked {
        sqlx::query("UPDATE parked_events SET reason = $1 WHERE stream_seq = $2")
            .bind(reason.as_str())
            .bind(*seq as i64)
            .execute(&mut **tx)
            .await
            .context("record why a parked event still fails")?;
    }
    Ok(())
}

/// Advances `consumer`'s checkpoint to the batch's.
async fn write_checkpoint(
    tx: &mut Tx<'_>,
    consumer: &str,
    batch: &BatchWrite,
) -> anyhow::Result<()> {
    sqlx::query(WRITE_CHECKPOINT)
        .bind(consumer)
        .bind(batch.checkpoint as i64)
        .bind(batch.stream_created)
        .bind(batch.log_position.and_then(|p| i64::try_from(p).ok()))
        .bind(batch.log.map(|l| l.to_string()))
        .execute(&mut **tx)
        .await
        .context("advance the checkpoint")?;
    Ok(())
}
