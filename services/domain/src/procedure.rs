//! The procedure catalog (danh mục thủ tục hành chính) as aggregates of the
//! same event log as dossiers.
//!
//! Each procedure is its own stream: its id is `procedure/<code>` (the mã
//! TTHC), stored in the envelope's `dossier_id`, with its own versions 1, 2,
//! … so the store's unique (id, version) gives it optimistic concurrency and
//! projection applies its events in version order like a dossier's. The
//! envelope's `province_code` is the catalog owner's province and its
//! `office_code` is [`CATALOG_OFFICE`], so its events travel on
//! `{prefix}.{province}.catalog.procedure_*`.
//!
//! Lifecycle: registered → changed* → withdrawn (final). A change replaces
//! the whole definition and takes effect at the event's `occurred_at`;
//! [`ProcedureRecord::in_force_at`] answers which definition applied at any
//! instant, so a dossier's due date comes from the definition in force when
//! it was received.

use std::collections::HashMap;

pub use calendar::ProcessingTime;

pub use crate::definition::{Level, OnlineLevel, ProcedureChange, ProcedureDefinition};
use crate::{Event, Payload, Refusal, Timestamp};

/// Prefix of a procedure's stream id.
pub const PROCEDURE_STREAM_PREFIX: &str = "procedure/";
/// The `office_code` of catalog events (a subject token, never a desk's code).
pub const CATALOG_OFFICE: &str = "catalog";

/// The stream id of the procedure with this code.
pub fn procedure_stream(code: &str) -> String {
    format!("{PROCEDURE_STREAM_PREFIX}{code}")
}

/// The procedure code of a procedure stream id; `None` for a dossier id.
pub fn procedure_code_of(stream_id: &str) -> Option<&str> {
    stream_id.strip_prefix(PROCEDURE_STREAM_PREFIX)
}

/// Every procedure known, by code: what a decision may consult.
pub type Catalog = HashMap<String, ProcedureRecord>;

/// A catalog command, validated field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcedureCommand {
    Register {
        province_code: String,
        definition: ProcedureDefinition,
    },
    Change {
        definition: ProcedureDefinition,
    },
    Withdraw {
        reason: String,
    },
}

impl ProcedureCommand {
    pub fn action(&self) -> &'static str {
        match self {
            ProcedureCommand::Register { .. } => "register it",
            ProcedureCommand::Change { .. } => "change it",
            ProcedureCommand::Withdraw { .. } => "withdraw it",
        }
    }
}

/// Which definition applied at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InForce<'a> {
    Yes(&'a ProcedureDefinition),
    /// Registered only after that instant.
    NotYet {
        from: Timestamp,
    },
    /// Withdrawn at or before that instant.
    Withdrawn {
        at: Timestamp,
    },
}

impl<'a> InForce<'a> {
    pub fn definition(self) -> Option<&'a ProcedureDefinition> {
        match self {
            InForce::Yes(d) => Some(d),
            _ => None,
        }
    }
}

/// What is known of one procedure: every definition with the instant it took
/// effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcedureRecord {
    pub code: String,
    /// The catalog owner's province.
    pub province_code: String,
    pub version: u64,
    pub last_occurred_at: Timestamp,
    /// In event order: from this instant, this definition (`None`: withdrawn).
    pub periods: Vec<(Timestamp, Option<ProcedureDefinition>)>,
}

impl ProcedureRecord {
    /// The definition in force now (after the last event).
    pub fn current(&self) -> Option<&ProcedureDefinition> {
        self.periods.last().and_then(|(_, d)| d.as_ref())
    }

    pub fn withdrawn_at(&self) -> Option<Timestamp> {
        match self.periods.last() {
            Some((at, None)) => Some(*at),
            _ => None,
        }
    }

    /// The definition in force at `t`: the last one that took effect at or
    /// before `t`.
    pub fn in_force_at(&self, t: Timestamp) -> InForce<'_> {
        match self.periods.iter().rev().find(|(from, _)| *from <= t) {
            Some((_, Some(d))) => InForce::Yes(d),
            Some((at, None)) => InForce::Withdrawn { at: *at },
            None => InForce::NotYet {
                from: self.periods.first().map_or(t, |(from, _)| *from),
            },
        }
    }

    /// Folds a procedure event into the record, in version order.
    pub fn apply(state: Option<ProcedureRecord>, event: &Event) -> Result<ProcedureRecord, String> {
        let expected = state.as_ref().map_or(1, |r| r.version + 1);
        if event.version != expected {
            return Err(format!(
                "procedure stream {}: event version {} does not follow version {}",
                event.dossier_id,
                event.version,
                expected - 1
            ));
        }
        let Payload::Procedure(change) = &event.payload else {
            return Err(format!(
                "procedure stream {}: {} is not a procedure event",
                event.dossier_id,
                event.payload.kind()
            ));
        };
        let at = event.occurred_at;
        let mut record = match (state, change) {
            (None, ProcedureChange::Registered(d)) => ProcedureRecord {
                code: d.code.clone(),
                province_code: event.province_code.clone(),
                version: 0,
                last_occurred_at: at,
                periods: Vec::new(),
            },
            (None, other) => {
                return Err(format!(
                    "procedure stream {}: first event is {}, not procedure_registered",
                    event.dossier_id,
                    other.kind()
                ));
            }
            (Some(r), _) => r,
        };
        match change {
            ProcedureChange::Registered(d) | ProcedureChange::Changed(d) => {
                record.periods.push((at, Some(d.clone())));
            }
            ProcedureChange::Withdrawn { .. } => record.periods.push((at, None)),
        }
        record.version = event.version;
        record.last_occurred_at = record.last_occurred_at.max(at);
        Ok(record)
    }
}

/// Decides what a catalog command, issued at `at`, does to the procedure
/// `code` (`record` None: never registered).
pub fn decide_procedure(
    code: &str,
    record: Option<&ProcedureRecord>,
    command: &ProcedureCommand,
    at: Timestamp,
) -> Result<Payload, Refusal> {
    let refuse = |reason: String| Refusal::Precondition {
        action: command.action(),
        subject: procedure_stream(code),
        reason: format!("procedure {code} {reason}"),
    };
    if let ProcedureCommand::Register { definition, .. } | ProcedureCommand::Change { definition } =
        command
        && definition.code != code
    {
        return Err(Refusal::InvalidField {
            field: "code",
            reason: format!("the definition is for {}, not {code}", definition.code),
        });
    }
    let Some(r) = record else {
        return match command {
            ProcedureCommand::Register { definition, .. } => Ok(Payload::Procedure(
                ProcedureChange::Registered(definition.clone()),
            )),
            _ => Err(refuse("is not in the catalog; register it first".into())),
        };
    };
    if at < r.last_occurred_at {
        return Err(Refusal::InvalidField {
            field: "meta.occurred_at",
            reason: format!(
                "{at} is before the procedure's previous change at {}",
                r.last_occurred_at
            ),
        });
    }
    if let Some(withdrawn) = r.withdrawn_at() {
        return Err(refuse(format!(
            "was withdrawn at {withdrawn}; a withdrawn procedure is final"
        )));
    }
    match command {
        ProcedureCommand::Register { .. } => Err(refuse(
            "is already in the catalog; change it with ChangeProcedure".into(),
        )),
        ProcedureCommand::Change { definition } => Ok(Payload::Procedure(
            ProcedureChange::Changed(definition.clone()),
        )),
        ProcedureCommand::Withdraw { reason } => {
            Ok(Payload::Procedure(ProcedureChange::Withdrawn {
                reason: reason.clone(),
            }))
        }
    }
}
