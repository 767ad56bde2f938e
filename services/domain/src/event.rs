//! Lifecycle events as the domain sees them.

use std::fmt;

use crate::{Timestamp, definition::ProcedureChange};

/// How a dossier reached the desk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    InPerson,
    Postal,
    OnlinePartial,
    OnlineFull,
    InterAgency,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::InPerson,
        Channel::Postal,
        Channel::OnlinePartial,
        Channel::OnlineFull,
        Channel::InterAgency,
    ];

    pub fn is_online(self) -> bool {
        matches!(self, Channel::OnlinePartial | Channel::OnlineFull)
    }

    /// A stable small code, for storage.
    pub fn code(self) -> i32 {
        match self {
            Channel::InPerson => 1,
            Channel::Postal => 2,
            Channel::OnlinePartial => 3,
            Channel::OnlineFull => 4,
            Channel::InterAgency => 5,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// The survey form in force when a rating was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RatingScale {
    /// Rất hài lòng / Hài lòng / Không hài lòng.
    Satisfaction,
    /// Tốt / Bình thường / Kém.
    Quality,
}

impl RatingScale {
    pub const ALL: [RatingScale; 2] = [RatingScale::Satisfaction, RatingScale::Quality];

    pub fn code(self) -> i32 {
        match self {
            RatingScale::Satisfaction => 1,
            RatingScale::Quality => 2,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// A rating's place on its scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rating {
    Top,
    Middle,
    Bottom,
}

impl Rating {
    pub const ALL: [Rating; 3] = [Rating::Top, Rating::Middle, Rating::Bottom];

    pub fn code(self) -> i32 {
        match self {
            Rating::Top => 1,
            Rating::Middle => 2,
            Rating::Bottom => 3,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The Vietnamese label on the form of `scale`.
    pub fn label(self, scale: RatingScale) -> &'static str {
        match (scale, self) {
            (RatingScale::Satisfaction, Rating::Top) => "Rất hài lòng",
            (RatingScale::Satisfaction, Rating::Middle) => "Hài lòng",
            (RatingScale::Satisfaction, Rating::Bottom) => "Không hài lòng",
            (RatingScale::Quality, Rating::Top) => "Tốt",
            (RatingScale::Quality, Rating::Middle) => "Bình thường",
            (RatingScale::Quality, Rating::Bottom) => "Kém",
        }
    }
}

/// How a result compares with its due date, by local date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timeliness {
    Early,
    OnTime,
    Late,
}

impl Timeliness {
    /// Resolved on `resolved` against `due`, both compared as local dates.
    pub fn judge(resolved: Timestamp, due: Timestamp) -> Self {
        let (resolved, due) = (resolved.local_day(), due.local_day());
        match resolved.cmp(&due) {
            std::cmp::Ordering::Less => Timeliness::Early,
            std::cmp::Ordering::Equal => Timeliness::OnTime,
            std::cmp::Ordering::Greater => Timeliness::Late,
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Timeliness::Early => 1,
            Timeliness::OnTime => 2,
            Timeliness::Late => 3,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        [Timeliness::Early, Timeliness::OnTime, Timeliness::Late]
            .into_iter()
            .find(|c| c.code() == code)
    }
}

/// What a dossier is about (mã TTHC and its field).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Procedure {
    pub code: String,
    pub field: String,
}

/// What happened. One variant per lifecycle event of DESIGN.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Submitted {
        procedure: Procedure,
        channel: Channel,
    },
    Received {
        procedure: Procedure,
        channel: Channel,
        due_at: Timestamp,
    },
    RefusedAtIntake {
        reason: String,
    },
    SupplementRequested {
        reason: String,
    },
    SupplementProvided {
        due_at: Timestamp,
    },
    Rescheduled {
        due_at: Timestamp,
        reason: String,
    },
    Processed {
        timeliness: Timeliness,
        due_at: Timestamp,
    },
    Returned,
    Withdrawn {
        reason: String,
    },
    Stopped {
        reason: String,
    },
    Late {
        due_at: Timestamp,
    },
    SurveyRecorded {
        scale: RatingScale,
        rating: Rating,
        comment: String,
    },
    /// A catalog event of a procedure stream (`procedure/<code>`), never a
    /// dossier's.
    Procedure(ProcedureChange),
}

/// The payload's kind, without its data: for logs, metrics and storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Submitted,
    Received,
    RefusedAtIntake,
    SupplementRequested,
    SupplementProvided,
    Rescheduled,
    Processed,
    Returned,
    Withdrawn,
    Stopped,
    Late,
    SurveyRecorded,
    ProcedureRegistered,
    ProcedureChanged,
    ProcedureWithdrawn,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::Received => "received",
            EventKind::RefusedAtIntake => "refused_at_intake",
            EventKind::SupplementRequested => "supplement_requested",
            EventKind::SupplementProvided => "supplement_provided",
            EventKind::Rescheduled => "rescheduled",
            EventKind::Processed => "processed",
            EventKind::Returned => "returned",
            EventKind::Withdrawn => "withdrawn",
            EventKind::Stopped => "stopped",
            EventKind::Late => "late",
            EventKind::SurveyRecorded => "survey_recorded",
            EventKind::ProcedureRegistered => "procedure_registered",
            EventKind::ProcedureChanged => "procedure_changed",
            EventKind::ProcedureWithdrawn => "procedure_withdrawn",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Payload {
    pub fn kind(&self) -> EventKind {
        match self {
            Payload::Submitted { .. } => EventKind::Submitted,
            Payload::Received { .. } => EventKind::Received,
            Payload::RefusedAtIntake { .. } => EventKind::RefusedAtIntake,
            Payload::SupplementRequested { .. } => EventKind::SupplementRequested,
            Payload::SupplementProvided { .. } => EventKind::SupplementProvided,
            Payload::Rescheduled { .. } => EventKind::Rescheduled,
            Payload::Processed { .. } => EventKind::Processed,
            Payload::Returned => EventKind::Returned,
            Payload::Withdrawn { .. } => EventKind::Withdrawn,
            Payload::Stopped { .. } => EventKind::Stopped,
            Payload::Late { .. } => EventKind::Late,
            Payload::SurveyRecorded { .. } => EventKind::SurveyRecorded,
            Payload::Procedure(change) => change.kind(),
        }
    }
}

// Here, not beside the type: the event kinds are this module's, and the
// definitions do not depend on the events that carry them.
impl ProcedureChange {
    pub fn kind(&self) -> EventKind {
        match self {
            ProcedureChange::Registered(_) => EventKind::ProcedureRegistered,
            ProcedureChange::Changed(_) => EventKind::ProcedureChanged,
            ProcedureChange::Withdrawn { .. } => EventKind::ProcedureWithdrawn,
        }
    }
}

/// One immutable fact about one dossier (or one procedure of the catalog,
/// whose stream id `procedure/<code>` is in `dossier_id`), with its envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    pub dossier_id: String,
    pub office_code: String,
    pub province_code: String,
    /// 1 for the dossier's first event, then +1 per event.
    pub version: u64,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub actor: String,
    pub request_id: String,
    pub payload: Payload,
}
