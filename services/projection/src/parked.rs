//! Parked events: what the consumer could not apply, kept with everything an
//! operator needs (stream sequence, subject, log position, dossier and
//! version when the payload says, reason, when), listed for operators, and
//! their replay (`replay`).

pub(crate) mod replay;

use std::collections::HashMap;

use anyhow::Context as _;
use prost::Message as _;
use sqlkit::list_placeholders;
use sqlx::Row as _;

pub use replay::{Outcome, ReplayJob, ReplayRequest, replay};

use crate::store::{Parked, ReadStore};

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl Parked {
    /// A message the consumer cannot apply. `event` is its decoded form when
    /// it decoded; otherwise the dossier and version are read from the raw
    /// protobuf when that much of it parses.
    pub fn new(
        stream_seq: u64,
        subject: &str,
        position: Option<u64>,
        payload: &[u8],
        event: Option<&domain::Event>,
        reason: String,
    ) -> Self {
        let (dossier_id, version) = match event {
            Some(e) => (Some(e.dossier_id.clone()), Some(e.version)),
            None => match proto::events::v1::Event::decode(payload) {
                Ok(raw) => (
                    Some(raw.dossier_id).filter(|id| !id.is_empty()),
                    Some(raw.version).filter(|v| *v > 0),
                ),
                Err(_) => (None, None),
            },
        };
        Self {
            stream_seq,
            subject: subject.to_owned(),
            position,
            dossier_id,
            version,
            reason,
            parked_at: now_micros(),
            payload: payload.to_vec(),
        }
    }
}

/// A parked event as listed, with the number of events held behind it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub parked: Parked,
    pub held_behind: u64,
}

const PARKED_COLUMNS: &str =
    "stream_seq, subject, reason, payload, position, dossier_id, version, parked_at";

fn parked_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<Parked> {
    let unsigned = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    Ok(Parked {
        stream_seq: unsigned(Some(r.try_get(0)?)).unwrap_or(0),
        subject: r.try_get(1)?,
        reason: r.try_get(2)?,
        payload: r.try_get(3)?,
        position: unsigned(r.try_get(4)?),
        dossier_id: r.try_get(5)?,
        version: unsigned(r.try_get(6)?),
        parked_at: r.try_get(7)?,
    })
}

impl ReadStore {
    pub async fn parked_count(&self) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM parked_events")
            .fetch_one(self.pool())
            .await
            .context("count parked events")?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Up to `limit` parked events after stream sequence `after`.
    pub async fn list_parked(&self, after: u64, limit: i64) -> anyhow::Result<Vec<Listed>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PARKED_COLUMNS} FROM parked_events WHERE stream_seq > $1 ORDER BY stream_seq LIMIT $2"
        )))
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .context("list parked events")?;
        let parked = rows
            .iter()
            .map(parked_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut ids: Vec<&str> = parked
            .iter()
            .filter_map(|p| p.dossier_id.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let held = self.held_counts(&ids).await?;
        Ok(parked
            .into_iter()
            .map(|p| Listed {
                held_behind: p
                    .dossier_id
                    .as_ref()
                    .and_then(|id| held.get(id))
                    .copied()
                    .unwrap_or(0),
                parked: p,
            })
            .collect())
    }

    /// Held events per dossier, for these dossiers.
    async fn held_counts(&self, ids: &[&str]) -> anyhow::Result<HashMap<String, u64>> {
        let mut counts = HashMap::new();
        for chunk in ids.chunks(900) {
            let sql = format!(
                "SELECT dossier_id, CAST(COUNT(*) AS BIGINT) FROM held_events WHERE dossier_id IN ({}) GROUP BY dossier_id",
                list_placeholders(self.backend(), chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q
                .fetch_all(self.pool())
                .await
                .context("count held events")?
            {
                let n: i64 = r.try_get(1)?;
                counts.insert(r.try_get(0)?, u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(counts)
    }

    /// These parked events (every one when `seqs` is empty), by stream sequence.
    async fn load_parked(&self, seqs: &[u64]) -> anyhow::Result<Vec<Parked>> {
        let mut parked = Vec::new();
        if seqs.is_empty() {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PARKED_COLUMNS} FROM parked_events ORDER BY stream_seq"
            )))
            .fetch_all(self.pool())
            .await
            .context("load parked events")?;
            for r in &rows {
                parked.push(parked_from_row(r)?);
            }
            return Ok(parked);
        }
        for chunk in seqs.chunks(900) {
            let sql = format!(
                "SELECT {PARKED_COLUMNS} FROM parked_events WHERE stream_seq IN ({})",
                list_placeholders(self.backend(), chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for seq in chunk {
                q = q.bind(i64::try_from(*seq).unwrap_or(i64::MAX));
            }
            for r in q
                .fetch_all(self.pool())
                .await
                .context("load parked events")?
            {
                parked.push(parked_from_row(&r)?);
            }
        }
        parked.sort_by_key(|p| p.stream_seq);
        Ok(parked)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::store::{Fill, schema};

    #[test]
    fn a_payload_that_parses_only_as_protobuf_still_names_its_dossier() {
        // No payload kind: the codec refuses it, the raw message is readable.
        let raw = proto::events::v1::Event {
            dossier_id: "HS-1".into(),
            version: 3,
            ..Default::default()
        }
        .encode_to_vec();
        assert!(bus::decode_event(&raw).is_err());
        let p = Parked::new(7, "s", Some(9), &raw, None, "unknown payload".into());
        assert_eq!(
            (p.dossier_id.as_deref(), p.version, p.position),
            (Some("HS-1"), Some(3), Some(9))
        );
        let garbage = Parked::new(8, "s", None, &[0x0a, 0xff], None, "garbage".into());
        assert_eq!((garbage.dossier_id, garbage.version), (None, None));
    }

    #[tokio::test]
    async fn an_older_parked_table_gets_the_new_columns() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}/p.db", dir.path().display());
        let (pool, backend) = sqlkit::connect(&url, 1).await?;
        sqlkit::run_ddl(
            &pool,
            "CREATE TABLE parked_events (stream_seq BIGINT PRIMARY KEY, subject TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL);
             INSERT INTO parked_events VALUES (1, 's', 'old', x'00')",
        )
        .await?;
        // Adopted as a database made before migrations, then opened again.
        schema::create(&pool, backend, Fill::Live).await?;
        schema::create(&pool, backend, Fill::Live).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PARKED_COLUMNS} FROM parked_events"
        )))
        .fetch_one(&pool)
        .await?;
        let p = parked_from_row(&row)?;
        assert_eq!(
            (p.stream_seq, p.reason.as_str(), p.position, p.parked_at),
            (1, "old", None, 0)
        );
        Ok(())
    }
}
