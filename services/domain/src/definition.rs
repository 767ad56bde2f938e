//! What the catalog says of a procedure ([`ProcedureDefinition`]) and what
//! can happen to it ([`ProcedureChange`]): plain values that both the
//! catalog's aggregate (`procedure`) and the event payloads (`event`) hold,
//! so neither of those two depends on the other for them.

use calendar::ProcessingTime;

/// Which level of government handles the procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Cấp huyện.
    District,
    /// Cấp xã.
    Commune,
}

impl Level {
    pub const ALL: [Level; 2] = [Level::District, Level::Commune];

    pub fn code(self) -> i32 {
        match self {
            Level::District => 1,
            Level::Commune => 2,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.code() == code)
    }
}

/// The online public service level the procedure is offered at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OnlineLevel {
    /// Mức độ 1: information only.
    Level1,
    /// Mức độ 2: forms to download.
    Level2,
    /// Mức độ 3, now "một phần" (partial): submitted online.
    Partial,
    /// Mức độ 4, now "toàn trình" (full): submitted, paid and returned online.
    Full,
}

impl OnlineLevel {
    pub const ALL: [OnlineLevel; 4] = [
        OnlineLevel::Level1,
        OnlineLevel::Level2,
        OnlineLevel::Partial,
        OnlineLevel::Full,
    ];

    pub fn code(self) -> i32 {
        match self {
            OnlineLevel::Level1 => 1,
            OnlineLevel::Level2 => 2,
            OnlineLevel::Partial => 3,
            OnlineLevel::Full => 4,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.code() == code)
    }

    /// Offered online in the sense of the reports (levels 3 and 4).
    pub fn is_online(self) -> bool {
        matches!(self, OnlineLevel::Partial | OnlineLevel::Full)
    }
}

/// A procedure as the catalog defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcedureDefinition {
    /// Mã TTHC.
    pub code: String,
    pub name: String,
    /// Lĩnh vực, e.g. "dat-dai".
    pub field: String,
    pub level: Level,
    /// The legal processing time, in working days or hours.
    pub processing_time: ProcessingTime,
    pub online: OnlineLevel,
    /// Whether a supplement request pauses the clock (the due date then
    /// moves by the paused working time when the supplement is provided).
    pub supplement_pauses: bool,
}

/// What happened to a procedure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcedureChange {
    Registered(ProcedureDefinition),
    /// The whole new definition, in force from the event's instant.
    Changed(ProcedureDefinition),
    Withdrawn {
        reason: String,
    },
}
