//! The dossier state machine: [`decide`] says which event a command produces
//! in a state (one function per command, in `decide`), [`Dossier::apply`]
//! folds an event into the state.

mod decide;

use std::{fmt, sync::LazyLock};

use calendar::Calendar;

pub use decide::{decide, decide_with, moved_by_pause};

use crate::{
    Channel, Event, Payload, Procedure, Rating, RatingScale, Timeliness, Timestamp,
    procedure::{Catalog, ProcedureCommand, ProcedureDefinition},
};

/// Where a dossier stands in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Submitted online, waiting for the desk; the clock has not started.
    Submitted,
    /// Received; the clock runs.
    Received,
    /// Waiting for the citizen's supplement; the clock is paused.
    Paused,
    /// The result is ready; timeliness is fixed.
    Processed,
    /// The result was handed to the citizen.
    Returned,
    /// Refused at intake. Final.
    Refused,
    /// Withdrawn by the citizen. Final.
    Withdrawn,
    /// Processing stopped. Final.
    Stopped,
}

impl Status {
    pub fn is_final(self) -> bool {
        matches!(self, Status::Refused | Status::Withdrawn | Status::Stopped)
    }

    /// Received and not yet resolved or ended.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Received | Status::Paused)
    }

    fn describe(self) -> &'static str {
        match self {
            Status::Submitted => "submitted online and not yet received",
            Status::Received => "received and being processed",
            Status::Paused => "waiting for the citizen's supplement",
            Status::Processed => "already processed",
            Status::Returned => "already returned to the citizen",
            Status::Refused => "refused at intake",
            Status::Withdrawn => "withdrawn by the citizen",
            Status::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A desk command, already validated field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    SubmitOnline {
        office_code: String,
        province_code: String,
        procedure: Procedure,
        channel: Channel,
    },
    Receive {
        office_code: String,
        province_code: String,
        procedure: Procedure,
        channel: Channel,
        /// From the appointment slip; `None`: from the catalog, the
        /// procedure's processing time in working time from the receipt.
        due_at: Option<Timestamp>,
    },
    RefuseAtIntake {
        reason: String,
    },
    RequestSupplement {
        reason: String,
    },
    /// `due_at` from the desk, or the old due date moved by the paused
    /// working time (unless the procedure's supplements do not pause it).
    ProvideSupplement {
        due_at: Option<Timestamp>,
    },
    Reschedule {
        due_at: Timestamp,
        reason: String,
    },
    RecordResult,
    ReturnResult,
    Withdraw {
        reason: String,
    },
    Stop {
        reason: String,
    },
    RecordSurvey {
        scale: RatingScale,
        rating: Rating,
        comment: String,
    },
    /// The deadline monitor's: the due date ended without a result.
    MarkLate,
    /// A catalog command, for a procedure's stream (`procedure/<code>`);
    /// decided by [`crate::decide_procedure`], never by [`decide`].
    Procedure(ProcedureCommand),
}

impl Command {
    /// The office and province a command that opens a dossier (a receipt,
    /// an online submission) names; `None` for every other command.
    pub fn opened_unit(&self) -> Option<(&str, &str)> {
        match self {
            Command::Receive {
                office_code,
                province_code,
                ..
            }
            | Command::SubmitOnline {
                office_code,
                province_code,
                ..
            } => Some((office_code, province_code)),
            _ => None,
        }
    }

    /// What the clerk tried, as a phrase for messages.
    pub fn action(&self) -> &'static str {
        match self {
            Command::SubmitOnline { .. } => "submit it online",
            Command::Receive { .. } => "receive it",
            Command::RefuseAtIntake { .. } => "refuse it at intake",
            Command::RequestSupplement { .. } => "request a supplement",
            Command::ProvideSupplement { .. } => "record a supplement",
            Command::Reschedule { .. } => "reschedule it",
            Command::RecordResult => "record its result",
            Command::ReturnResult => "return its result",
            Command::Withdraw { .. } => "withdraw it",
            Command::Stop { .. } => "stop it",
            Command::RecordSurvey { .. } => "record a survey for it",
            Command::MarkLate => "mark it late",
            Command::Procedure(command) => command.action(),
        }
    }
}

/// What a decision consults besides the dossier: the working-time calendar
/// and the procedure catalog. Both are plain values: the domain stays pure.
#[derive(Clone, Copy, Debug)]
pub struct Terms<'a> {
    pub calendar: &'a Calendar,
    pub catalog: &'a Catalog,
}

impl Terms<'static> {
    /// The calendar without local overrides (the government's decided days
    /// it ships, the statutory rules for other years) and an empty catalog.
    pub fn statutory() -> Self {
        static CALENDAR: LazyLock<Calendar> = LazyLock::new(Calendar::vietnam);
        static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::new);
        Terms {
            calendar: &CALENDAR,
            catalog: &CATALOG,
        }
    }
}

impl<'a> Terms<'a> {
    /// The definition of `code` in force at `at`, when the catalog has one.
    pub fn procedure_at(&self, code: &str, at: Timestamp) -> Option<&'a ProcedureDefinition> {
        self.catalog
            .get(code)
            .and_then(|r| r.in_force_at(at).definition())
    }
}

/// What intake knows of a dossier: enough to decide the next command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dossier {
    pub dossier_id: String,
    pub office_code: String,
    pub province_code: String,
    pub procedure: Procedure,
    pub channel: Channel,
    pub status: Status,
    /// The version of the last applied event.
    pub version: u64,
    /// The latest `occurred_at` of its desk events (Late events excluded):
    /// commands dated before it are refused.
    pub last_occurred_at: Timestamp,
    pub received_at: Option<Timestamp>,
    pub due_at: Option<Timestamp>,
    pub paused_at: Option<Timestamp>,
    pub rescheduled: bool,
    /// The due date a Late event was last recorded for.
    pub late_for: Option<Timestamp>,
    pub timeliness: Option<Timeliness>,
    pub surveyed: bool,
}

impl Dossier {
    /// The instant this dossier becomes late if nothing happens: the end of
    /// its due date (local midnight after it). `None` when its clock does not
    /// run (not received, paused, resolved or ended) or when it is already
    /// marked late for its current due date.
    pub fn deadline(&self) -> Option<Timestamp> {
        match (self.status, self.due_at) {
            (Status::Received, Some(due_at)) if self.late_for != Some(due_at) => {
                Some(end_of_due_date(due_at))
            }
            _ => None,
        }
    }

    /// Folds `event` into `state`. Events come from the store, in version
    /// order; an event that does not follow is reported, not guessed at.
    pub fn apply(state: Option<Dossier>, event: &Event) -> Result<Dossier, String> {
        let expected = state.as_ref().map_or(1, |d| d.version + 1);
        if event.version != expected {
            return Err(format!(
                "dossier {}: event version {} does not follow version {}",
                event.dossier_id,
                event.version,
                expected - 1
            ));
        }
        let mut d = match state {
            Some(d) => d,
            None => Dossier::opened_by(event)?,
        };
        d.apply_change(event)?;
        Ok(d)
    }

    /// The state a dossier's first event starts from (version 0, before the
    /// event is taken): only a submission or a receipt opens a dossier.
    fn opened_by(event: &Event) -> Result<Dossier, String> {
        match &event.payload {
            Payload::Submitted { procedure, channel }
            | Payload::Received {
                procedure, channel, ..
            } => Ok(Dossier {
                dossier_id: event.dossier_id.clone(),
                office_code: event.office_code.clone(),
                province_code: event.province_code.clone(),
                procedure: procedure.clone(),
                channel: *channel,
                status: Status::Submitted,
                version: 0,
                last_occurred_at: event.occurred_at,
                received_at: None,
                due_at: None,
                paused_at: None,
                rescheduled: false,
                late_for: None,
                timeliness: None,
                surveyed: false,
            }),
            other => Err(format!(
                "dossier {}: first event is {}, not submitted or received",
                event.dossier_id,
                other.kind()
            )),
        }
    }

    /// Takes the event's change into the state, and its version.
    fn apply_change(&mut self, event: &Event) -> Result<(), String> {
        let d = self;
        let at = event.occurred_at;
        match &event.payload {
            Payload::Submitted { .. } => d.status = Status::Submitted,
            Payload::Received {
                procedure,
                channel,
                due_at,
            } => {
                d.procedure = procedure.clone();
                d.channel = *channel;
                d.status = Status::Received;
                d.received_at = Some(at);
                d.due_at = Some(*due_at);
            }
            Payload::RefusedAtIntake { .. } => d.status = Status::Refused,
            Payload::SupplementRequested { .. } => {
                d.status = Status::Paused;
                d.paused_at = Some(at);
            }
            Payload::SupplementProvided { due_at } => {
                d.status = Status::Received;
                d.paused_at = None;
                d.due_at = Some(*due_at);
            }
            Payload::Rescheduled { due_at, .. } => {
                d.rescheduled = true;
                d.due_at = Some(*due_at);
            }
            Payload::Processed { timeliness, .. } => {
                d.status = Status::Processed;
                d.timeliness = Some(*timeliness);
            }
            Payload::Returned => d.status = Status::Returned,
            Payload::Withdrawn { .. } => d.status = Status::Withdrawn,
            Payload::Stopped { .. } => d.status = Status::Stopped,
            Payload::Late { due_at } => d.late_for = Some(*due_at),
            Payload::SurveyRecorded { .. } => d.surveyed = true,
            Payload::Procedure(change) => {
                return Err(format!(
                    "dossier {}: {} is a catalog event, not a dossier's",
                    event.dossier_id,
                    change.kind()
                ));
            }
        }
        d.version = event.version;
        // A Late event is intake's observation, not a desk fact: a desk may
        // still record what happened before it (a result dated on the due
        // date, a supplement requested in time), so it does not move the
        // point before which commands are refused.
        if !matches!(event.payload, Payload::Late { .. }) {
            d.last_occurred_at = d.last_occurred_at.max(at);
        }
        Ok(())
    }
}

/// The first instant after the local date of `due_at`: a dossier not
/// resolved by then is late (lateness is judged by date, as on the slip).
pub fn end_of_due_date(due_at: Timestamp) -> Timestamp {
    Timestamp::at_local(due_at.local_day().succ(), 0, 0)
}
