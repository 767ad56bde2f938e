//! Folding: one transaction's worth of changes gathered from messages
//! chunk by chunk, with the stored state of the streams it meets.

use std::sync::Arc;

use hashbrown::HashMap;

use super::receive::Incoming;
use crate::{
    apply::{Applied, release},
    resume::{Positions, Take},
    store::{BatchWrite, Parked, ReadStore},
};

/// Applies a batch of messages to `store` in one transaction with the
/// checkpoint of consumer `name`: the consumer's work, also used to replay
/// history into a scratch store for as-of reports.
pub(crate) async fn apply_messages(
    store: &ReadStore,
    name: &str,
    batch: &[Incoming],
    held_count: u64,
    news: bool,
) -> anyhow::Result<(BatchWrite, u64)> {
    let mut fold = Fold::new(held_count, FoldSizes::default());
    fold.add(store, batch).await?;
    if let Some(other) = fold.foreign {
        tracing::warn!(%other, "a replay met events of two logs; those of the second were parked");
    }
    let (write, applied) = fold.into_write(news);
    store.commit(name, &write).await?;
    Ok((write, applied))
}

/// One transaction's worth of changes, folded from messages chunk by chunk
/// as they arrive (only the changes stay in memory, not the messages), then
/// written with the checkpoint in one transaction.
pub(crate) struct Fold {
    held_count: u64,
    write: BatchWrite,
    /// Dossier rows read from the database and not yet taken by an event.
    loaded: HashMap<String, crate::apply::DossierRow>,
    /// Streams whose stored state has been read (present or not).
    known: hashbrown::HashSet<String>,
    /// Held events by dossier: (version, payload, stored in the database?).
    waiting: HashMap<String, Vec<(i64, Vec<u8>, bool)>>,
    applied: u64,
    events: usize,
    /// The batch before, still being written: its dossier rows are newer
    /// than the database's.
    pub(super) overlay: Option<Arc<BatchWrite>>,
    /// The log positions taken, when the folder follows them (the live
    /// and rebuild consumers; not a hand-over or an as-of replay).
    pub(super) positions: Option<Positions>,
    /// Positions that never arrived before a message (from, to).
    pub(super) missing: Vec<(u64, u64)>,
    /// The log the read store holds, once known.
    pub(super) log: Option<uuid::Uuid>,
    /// Another log's event was met (and parked): the fold ends there.
    pub(super) foreign: Option<uuid::Uuid>,
}

/// How many dossier rows and counters a fold gathered: the next one starts
/// with room for as many instead of growing its maps step by step (their
/// growth showed in the projection's profile during a rebuild, with the
/// page faults of the fresh memory on top; BENCHMARKS.md).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FoldSizes {
    rows: usize,
    counters: usize,
}

impl Fold {
    pub(crate) fn new(held_count: u64, sizes: FoldSizes) -> Self {
        Self {
            held_count,
            write: BatchWrite {
                changes: crate::apply::Changes {
                    rows: HashMap::with_capacity(sizes.rows),
                    counters: HashMap::with_capacity(sizes.counters),
                    ..Default::default()
                },
                ..Default::default()
            },
            loaded: HashMap::new(),
            known: hashbrown::HashSet::with_capacity(sizes.rows),
            waiting: HashMap::new(),
            applied: 0,
            events: 0,
            overlay: None,
            positions: None,
            missing: Vec::new(),
            log: None,
            foreign: None,
        }
    }

    /// Messages folded so far.
    pub(crate) fn events(&self) -> usize {
        self.events
    }

    pub(crate) fn sizes(&self) -> FoldSizes {
        FoldSizes {
            rows: self.write.changes.rows.len(),
            counters: self.write.changes.counters.len(),
        }
    }

    /// Folds the next messages in: reads the stored state of the streams
    /// seen for the first time, then applies each event in order.
    /// Returns how many of `chunk` it took: all, or up to and with an
    /// event of another log ([`Fold::foreign`]), which it parks.
    pub(crate) async fn add(
        &mut self,
        store: &ReadStore,
        chunk: &[Incoming],
    ) -> anyhow::Result<usize> {
        let chunk = &chunk[..self.take_log(chunk)];
        let decoded = self.decode(chunk);
        let mut ids: Vec<&str> = decoded
            .iter()
            .map(|(e, _)| e.dossier_id.as_str())
            .filter(|id| !self.known.contains(*id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if !ids.is_empty() {
            self.read_stored(store, &ids).await?;
        }
        self.apply_decoded(&decoded)?;
        self.events += chunk.len();
        if let Some(last) = chunk.last() {
            self.write.checkpoint = last.stream_seq;
        }
        Ok(chunk.len())
    }

    /// The events of `chunk`, in order, each with its message: what belongs
    /// to another log or does not decode is parked, and a log position
    /// already held is passed over.
    fn decode<'m>(&mut self, chunk: &'m [Incoming]) -> Vec<(domain::Event, &'m Incoming)> {
        let mut decoded = Vec::with_capacity(chunk.len());
        for m in chunk {
            if let Some(other) = m
                .log
                .filter(|_| self.foreign.is_some() && m.log == self.foreign)
            {
                self.park_foreign(m, other);
                continue;
            }
            if let (Some(positions), Some(position)) = (&mut self.positions, m.position) {
                match positions.take(position) {
                    Take::Apply => {}
                    Take::Skip => continue,
                    Take::AfterMissing { from, to } => self.missing.push((from, to)),
                }
            }
            match bus::decode_event(&m.payload) {
                Ok(event) => decoded.push((event, m)),
                Err(e) => self.write.parked.push(Parked::new(
                    m.stream_seq,
                    &m.subject,
                    m.position,
                    &m.payload,
                    None,
                    e.to_string(),
                )),
            }
        }
        decoded
    }

    /// Parks an event of log `other`, not the read store's.
    fn park_foreign(&mut self, m: &Incoming, other: uuid::Uuid) {
        let ours = self
            .log
            .map_or_else(|| "none".to_owned(), |l| l.to_string());
        self.write.parked.push(Parked::new(
            m.stream_seq,
            &m.subject,
            m.position,
            &m.payload,
            None,
            format!(
                "an event of log {other}, while this read store holds log {ours}: it never applies another log's events; build a projection (new database) on the stream of that log"
            ),
        ));
    }

    /// Reads the stored state of streams seen for the first time: their
    /// dossier rows, held events and procedure streams.
    async fn read_stored(&mut self, store: &ReadStore, ids: &[&str]) -> anyhow::Result<()> {
        // Rows the batch before wrote come from it, the rest from the
        // database.
        let unread = self.take_overlay_rows(ids);
        if !unread.is_empty() {
            self.loaded.extend(store.load_rows(&unread).await?);
        }
        if self.held_count > 0 {
            for (dossier_id, version, payload) in store.load_held(ids).await? {
                self.waiting
                    .entry(dossier_id)
                    .or_default()
                    .push((version, payload, true));
            }
        }
        let catalog = crate::catalog::load(store.pool(), store.backend(), ids).await?;
        for (id, row) in catalog.procedures {
            self.write
                .changes
                .catalog
                .procedures
                .entry(id)
                .or_insert(row);
        }
        self.known.extend(ids.iter().map(|id| (*id).to_owned()));
        Ok(())
    }

    /// Takes the rows among `ids` that the batch before wrote from it;
    /// returns the ids left to read from the database.
    fn take_overlay_rows<'a>(&mut self, ids: &[&'a str]) -> Vec<&'a str> {
        let mut unread = ids.to_vec();
        if let Some(before) = &self.overlay {
            let rows = &before.changes.rows;
            unread.retain(|id| match rows.get(*id) {
                Some(row) => {
                    // Written by the time this batch is.
                    let row = crate::apply::DossierRow {
                        stored: true,
                        ..row.clone()
                    };
                    self.loaded.insert((*id).to_owned(), row);
                    false
                }
                None => true,
            });
        }
        unread
    }

    /// Applies the decoded events in order: one after a gap is held, the
    /// held ones that then follow are released, and one that can never
    /// apply is parked.
    fn apply_decoded(&mut self, decoded: &[(domain::Event, &Incoming)]) -> anyhow::Result<()> {
        let changes = &mut self.write.changes;
        for (event, m) in decoded {
            let row = changes
                .rows
                .remove(&event.dossier_id)
                .or_else(|| self.loaded.remove(&event.dossier_id));
            match changes.apply(row, event) {
                Applied::Applied => {
                    self.applied += 1;
                    if let Some(queue) = self.waiting.get_mut(&event.dossier_id) {
                        self.applied +=
                            release(changes, &event.dossier_id, queue, &mut self.write.released)?;
                    }
                }
                Applied::Duplicate => {}
                Applied::Held => {
                    let version = i64::try_from(event.version).unwrap_or(i64::MAX);
                    self.waiting
                        .entry(event.dossier_id.clone())
                        .or_default()
                        .push((version, m.payload.to_vec(), false));
                }
                Applied::Rejected(reason) => self.write.parked.push(Parked::new(
                    m.stream_seq,
                    &m.subject,
                    m.position,
                    &m.payload,
                    Some(event),
                    reason,
                )),
            }
        }
        Ok(())
    }

    /// Learns the read store's log from the first event that names one,
    /// and finds the first event of another log: how many messages of
    /// `chunk` to take (up to and with that one).
    fn take_log(&mut self, chunk: &[Incoming]) -> usize {
        for (i, m) in chunk.iter().enumerate() {
            let Some(log) = m.log else { continue };
            match self.log {
                None => self.log = Some(log),
                Some(ours) if ours == log => {}
                Some(_) => {
                    self.foreign = Some(log);
                    return i + 1;
                }
            }
        }
        chunk.len()
    }

    /// The batch to write: the folded changes, the events still held back,
    /// and the checkpoint; with the number of events applied.
    pub(crate) fn into_write(mut self, news: bool) -> (BatchWrite, u64) {
        // What still waits and is not yet in the database gets stored.
        for (dossier_id, queue) in self.waiting {
            for (version, payload, stored) in queue {
                if !stored {
                    self.write.held.push((dossier_id.clone(), version, payload));
                }
            }
        }
        if !news {
            self.write.changes.late_feed.clear();
        }
        (self.write, self.applied)
    }
}
