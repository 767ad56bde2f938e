//! Replaying parked events: a small batch of its own, run by the consumer
//! task between two batches (it is the read models' one writer). Each
//! parked event is decoded (from its replacement payload when the operator
//! gave one) and applied with the same version rules as the stream's
//! events; one that applies leaves `parked_events` and releases the events
//! held behind it in the same transaction, one that still fails stays
//! parked with the new reason.

use std::collections::HashMap;

use tokio::sync::oneshot;

use crate::{
    apply::{Applied, Changes, DossierRow, release},
    store::{BatchWrite, Parked, ReadStore},
};

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
    let decoded = decode_parked(&parked, request, &mut report);
    let mut ids: Vec<&str> = decoded.iter().map(|(e, _)| e.dossier_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut fold = ReplayFold::load(store, &ids).await?;
    for (event, i) in &decoded {
        report.applied += fold.apply(event, &mut report.events[*i], &mut write.released)?;
    }
    settle(&mut report, &mut write);
    report.released_rows = write.released.len() as u64;
    write.changes = fold.changes;
    write.checkpoint = store.checkpoint(consumer).await?;
    store.commit(consumer, &write).await?;
    report.still_parked = store.parked_count().await?;
    Ok(report)
}

/// Decodes each parked event (its replacement, when given) into the
/// report's entries; what does not decode, or is not the parked event,
/// stays parked. Returns the decoded events with their entries' indexes.
fn decode_parked(
    parked: &[Parked],
    request: &ReplayRequest,
    report: &mut ReplayReport,
) -> Vec<(domain::Event, usize)> {
    let mut decoded = Vec::with_capacity(parked.len());
    for p in parked {
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
    decoded
}

/// What a replay folds on: the stored rows, held events and procedure
/// streams of its events' dossiers, and the changes so far.
struct ReplayFold {
    rows: HashMap<String, DossierRow>,
    /// Held events by dossier: (version, payload, stored in the database?).
    waiting: HashMap<String, Vec<(i64, Vec<u8>, bool)>>,
    changes: Changes,
}

impl ReplayFold {
    async fn load(store: &ReadStore, ids: &[&str]) -> anyhow::Result<Self> {
        let rows = store.load_rows(ids).await?;
        let mut waiting: HashMap<String, Vec<(i64, Vec<u8>, bool)>> = HashMap::new();
        for (dossier_id, version, payload) in store.load_held(ids).await? {
            waiting
                .entry(dossier_id)
                .or_default()
                .push((version, payload, true));
        }
        let changes = Changes {
            catalog: crate::catalog::load(store.pool(), store.backend(), ids).await?,
            ..Changes::default()
        };
        Ok(Self {
            rows,
            waiting,
            changes,
        })
    }

    /// Applies one replayed event with the version rules of the stream's
    /// events, and the events held behind it that follow; says in `entry`
    /// what became of it. Returns how many events it applied.
    fn apply(
        &mut self,
        event: &domain::Event,
        entry: &mut Replayed,
        released: &mut Vec<(String, i64)>,
    ) -> anyhow::Result<u64> {
        let changes = &mut self.changes;
        let row = changes
            .rows
            .remove(&event.dossier_id)
            .or_else(|| self.rows.remove(&event.dossier_id));
        let current = row
            .as_ref()
            .map_or_else(|| changes.version_of(&event.dossier_id), |r| r.version);
        let mut applied = 0;
        match changes.apply(row, event) {
            Applied::Applied => {
                applied += 1;
                entry.outcome = Outcome::Applied;
                if let Some(queue) = self.waiting.get_mut(&event.dossier_id) {
                    entry.released = release(changes, &event.dossier_id, queue, released)?;
                    applied += entry.released;
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
        Ok(applied)
    }
}

/// Takes the applied and already-applied events out of `parked_events`;
/// the others stay, with the reason they still fail.
fn settle(report: &mut ReplayReport, write: &mut BatchWrite) {
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
}
