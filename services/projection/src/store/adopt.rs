//! A rebuilt generation taking over from the serving one.

use anyhow::Context as _;
use sqlkit::JsonRows;
use sqlx::Row as _;

use super::{
    ReadStore,
    sql::{LATE_FEED_JSON, WRITE_CHECKPOINT},
};

impl ReadStore {
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
}
