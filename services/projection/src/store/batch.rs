//! What one batch writes: the folded changes, events held, released,
//! parked and replayed, and the checkpoint.

use crate::apply::Changes;

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
