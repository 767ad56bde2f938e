//! The procedure catalog's fold, without I/O: procedure streams
//! (`procedure/<code>`) applied in version order into their rows and the
//! periods each definition was in force (written by `crate::catalog`).

use std::collections::HashMap;

use domain::{
    Event, ProcedureChange, ProcedureDefinition,
    procedure::{PROCEDURE_STREAM_PREFIX, procedure_code_of},
};

use super::Applied;

/// One procedure stream's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcedureRow {
    pub stream_id: String,
    pub code: String,
    pub province_code: String,
    pub version: i64,
    pub withdrawn: bool,
}

/// One definition and the days it was in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    pub province_code: String,
    pub from_day: i32,
    pub until_day: Option<i32>,
    pub definition: ProcedureDefinition,
}

/// The catalog changes of a batch, with the state of the procedures it
/// touches (loaded before the batch by `crate::catalog::load`).
#[derive(Clone, Debug, Default)]
pub struct CatalogChanges {
    /// Procedure streams by stream id: loaded rows, then as changed.
    pub procedures: HashMap<String, ProcedureRow>,
    /// Stream ids changed by the batch.
    pub changed: Vec<String>,
    /// New periods by (code, seq = the version of the event that began it).
    pub periods: HashMap<(String, i64), Period>,
    /// Periods of earlier batches that ended: (code, seq, until_day).
    pub closed: Vec<(String, i64, i32)>,
}

impl CatalogChanges {
    /// Whether the batch writes nothing to the catalog's tables.
    pub fn writes_nothing(&self) -> bool {
        self.changed.is_empty() && self.periods.is_empty() && self.closed.is_empty()
    }

    /// The version a procedure stream has reached (0: unknown).
    pub fn version(&self, stream_id: &str) -> i64 {
        self.procedures.get(stream_id).map_or(0, |r| r.version)
    }

    /// Applies a catalog event if it is its stream's next version.
    pub fn apply(&mut self, event: &Event, change: &ProcedureChange) -> Applied {
        let Some(code) = procedure_code_of(&event.dossier_id) else {
            return Applied::Rejected(format!(
                "{} is a catalog event on {}, not on a procedure stream ({PROCEDURE_STREAM_PREFIX}<code>)",
                change.kind(),
                event.dossier_id
            ));
        };
        let current = self.version(&event.dossier_id);
        let version = i64::try_from(event.version).unwrap_or(i64::MAX);
        if version <= current {
            return Applied::Duplicate;
        }
        if version > current + 1 {
            return Applied::Held;
        }
        let day = event.occurred_at.local_day().days();
        let mut row = match (self.procedures.remove(&event.dossier_id), change) {
            (Some(row), _) => row,
            (None, ProcedureChange::Registered(_)) => ProcedureRow {
                stream_id: event.dossier_id.clone(),
                code: code.to_owned(),
                province_code: event.province_code.clone(),
                version: 0,
                withdrawn: false,
            },
            (None, other) => {
                return Applied::Rejected(format!(
                    "the first event of procedure {code} is {}, not procedure_registered",
                    other.kind()
                ));
            }
        };
        if current > 0 {
            let key = (code.to_owned(), current);
            match self.periods.get_mut(&key) {
                Some(period) => period.until_day = Some(day),
                None => self.closed.push((key.0, key.1, day)),
            }
        }
        match change {
            ProcedureChange::Registered(d) | ProcedureChange::Changed(d) => {
                self.periods.insert(
                    (code.to_owned(), version),
                    Period {
                        province_code: row.province_code.clone(),
                        from_day: day,
                        until_day: None,
                        definition: d.clone(),
                    },
                );
            }
            ProcedureChange::Withdrawn { .. } => row.withdrawn = true,
        }
        row.version = version;
        self.changed.push(row.stream_id.clone());
        self.procedures.insert(row.stream_id.clone(), row);
        Applied::Applied
    }
}
