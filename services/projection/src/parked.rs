//! Parked events: what the consumer could not apply, kept with everything an
//! operator needs (stream sequence, subject, log position, dossier and
//! version when the payload says, reason, when), and their replay.
//!
//! A replay is a small batch of its own, run by the consumer task between
//! two batches (it is the read models' one writer): each parked event is
//! decoded (from its replacement payload when the operator gave one) and
//! applied with the same version rules as the stream's events; one that
//! applies leaves `parked_events` and releases the events held behind it in
//! the same transaction, one that still fails stays parked with the new
//! reason.

use std::collections::HashMap;

use anyhow::Context as _;
use prost::Message as _;
use sqlkit::list_placeholders;
use sqlx::Row as _;
use tokio::sync::oneshot;

use crate::{
    apply::{Applied, Changes, release},
    store::{BatchWrite, Parked, ReadStore},
};

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

/// What an operator asks to replay.
#[derive(Clone, Debug, Default)]
pub struct ReplayRequest {
    /// Stream sequences; empty means every parked event.
    pub stream_seqs: Vec<u64>,
    /// Payloads to apply instead of the parked ones, by stream sequence.
    pub replacements: HashMap<u64, Vec<u8>>,
}

/// A replay for the consumer to run, and where its answer goes.
#[derive(Debug)]
pub struct ReplayJob {
    pub request: ReplayRequest,
    pub reply: oneshot::Sender<anyhow::Result<ReplayReport>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    AlreadyApplied,
    StillParked,
}

/// What became of one replayed event.
#[derive(Clone, Debug)]
pub struct Replayed {
    pub stream_seq: u64,
    pub position: Option<u64>,
    pub dossier_id: Option<String>,
    pub version: Option<u64>,
    pub outcome: Outcome,
    /// Why it is still parked.
    pub reason: String,
    /// Held events of its dossier applied after it.
    pub released: u64,
    pub replaced: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    pub events: Vec<Replayed>,
    /// Events that left `held_events`.
    pub released_rows: u64,
    /// Events applied in all (replayed and released).
    pub applied: u64,
    /// Parked events left after the replay.
    pub still_parked: u64,
}

/// Replays parked events in one transaction. Only the consumer task calls
/// this, between two batches: `checkpoint` is its committed checkpoint,
/// which the transaction writes back unchanged.
pub async fn replay(
    store: &ReadStore,
    consumer: &str,
    request: &ReplayRequest,
) -> anyhow::Result<ReplayReport> {
    let parked = store.load_parked(&request.stream_seqs).await?;
    let mut report = ReplayReport::default();
    let mut write = BatchWrite::default();
    // Decode each; what does not decode stays parked.
    let mut decoded = Vec::with_capacity(parked.len());
    for p in &parked {
        let replacement = request.replacements.get(&p.stream_seq);
        let mut entry = Replayed {
            stream_seq: p.stream_seq,
            position: p.position,
            dossier_id: p.dossier_id.clone(),
            version: p.version,
            outcome: Outcome::StillParked,
            reason: String::new(),
            released: 0,
            replaced: replacement.is_some(),
        };
        let payload = replacement.unwrap_or(&p.payload);
        match bus::decode_event(payload) {
            Ok(event) => {
                // A replacement must be the same event: same dossier and
                // version, when the parked copy says which.
                let same_dossier = p.dossier_id.as_ref().is_none_or(|d| *d == event.dossier_id);
                let same_version = p.version.is_none_or(|v| v == event.version);
                if same_dossier && same_version {
                    entry.dossier_id = Some(event.dossier_id.clone());
                    entry.version = Some(event.version);
                    decoded.push((event, report.events.len()));
                } else {
                    entry.reason = format!(
                        "the replacement is version {} of {}, the parked event version {} of {}",
                        event.version,
                        event.dossier_id,
                        p.version.map_or_else(|| "?".to_owned(), |v| v.to_string()),
                        p.dossier_id.as_deref().unwrap_or("?"),
                    );
                }
            }
            Err(e) => entry.reason = e.to_string(),
        }
        report.events.push(entry);
    }

    let mut ids: Vec<&str> = decoded.iter().map(|(e, _)| e.dossier_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut rows = store.load_rows(&ids).await?;
    let mut waiting: HashMap<String, Vec<(i64, Vec<u8>, bool)>> = HashMap::new();
    for (dossier_id, version, payload) in store.load_held(&ids).await? {
        waiting
            .entry(dossier_id)
            .or_default()
            .push((version, payload, true));
    }
    let mut changes = Changes {
        catalog: crate::catalog::load(store.pool(), store.backend(), &ids).await?,
        ..Changes::default()
    };
    for (event, i) in &decoded {
        let entry = &mut report.events[*i];
        let row = changes
            .rows
            .remove(&event.dossier_id)
            .or_else(|| rows.remove(&event.dossier_id));
        let current = row
            .as_ref()
            .map_or_else(|| changes.version_of(&event.dossier_id), |r| r.version);
        match changes.apply(row, event) {
            Applied::Applied => {
                report.applied += 1;
                entry.outcome = Outcome::Applied;
                if let Some(queue) = waiting.get_mut(&event.dossier_id) {
                    entry.released =
                        release(&mut changes, &event.dossier_id, queue, &mut write.released)?;
                    report.applied += entry.released;
                }
            }
            Applied::Duplicate => entry.outcome = Outcome::AlreadyApplied,
            Applied::Held => {
                entry.reason = format!(
                    "version {} of {} waits for version {}, which has not arrived",
                    event.version,
                    event.dossier_id,
                    current + 1
                );
            }
            Applied::Rejected(reason) => entry.reason = reason,
        }
    }
    for entry in &mut report.events {
        if entry.outcome == Outcome::StillParked {
            if entry.replaced {
                entry.reason = format!("with the replacement payload: {}", entry.reason);
            }
            write
                .reparked
                .push((entry.stream_seq, entry.reason.clone()));
        } else {
            write.unparked.push(entry.stream_seq);
        }
    }
    report.released_rows = write.released.len() as u64;
    write.changes = changes;
    write.checkpoint = store.checkpoint(consumer).await?;
    store.commit(consumer, &write).await?;
    report.still_parked = store.parked_count().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::store::schema::create_parked;

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
        create_parked(&pool, backend).await?;
        create_parked(&pool, backend).await?;
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
