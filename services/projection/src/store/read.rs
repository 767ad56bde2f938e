//! Reading a read store back: checkpoints, held counts, and the dossier rows
//! and held events a batch folds on.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::Row as _;

use super::{ReadStore, rows::dossier_row, sql::DOSSIER_JSON};
use crate::{apply::DossierRow, resume::Checkpoint};

impl ReadStore {
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

    /// The current rows of these dossiers.
    pub async fn load_rows(&self, ids: &[&str]) -> anyhow::Result<HashMap<String, DossierRow>> {
        // A bulk fill looks up only the dossiers it may have written.
        let maybe_stored: Option<Vec<&str>> = self.maybe_stored(ids);
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
}
