//! Folding events into read-model changes, without I/O: each dossier's row,
//! its supplement pauses, and per-day counters. Events of a dossier apply in
//! version order only: an older version is a duplicate and changes nothing, a
//! version past the next one waits (is held) until the gap is filled.

pub(crate) mod catalog;
pub(crate) mod held;

use hashbrown::HashMap;

use domain::{
    Channel, Event, Payload, Procedure, Timeliness, Timestamp, procedure::PROCEDURE_STREAM_PREFIX,
};

pub(crate) use held::release;

/// What the read model keeps of one dossier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DossierRow {
    pub dossier_id: String,
    pub office_code: String,
    pub province_code: String,
    pub procedure_code: String,
    pub field: String,
    pub channel: i32,
    pub version: i64,
    pub status: String,
    pub received_day: Option<i32>,
    pub due_at: Option<i64>,
    pub due_day: Option<i32>,
    /// First local day it stopped being open: resolved, refused, withdrawn or stopped.
    pub closed_day: Option<i32>,
    pub resolved_day: Option<i32>,
    pub timeliness: Option<i32>,
    /// When it was marked late for its current due date; cleared when a
    /// supplement or a reschedule gives it a new one.
    pub late_at: Option<i64>,
    pub pauses: i32,
    /// Whether the read store holds a row for this dossier already (read
    /// from it, or written by an earlier batch): a batch inserts the rows
    /// not stored without first looking for a conflicting one.
    pub stored: bool,
}

/// Key of a per-day counter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub office_code: String,
    pub day: i32,
    pub procedure_code: String,
    pub channel: i32,
    pub metric: String,
}

/// A [`CounterKey`] borrowed from a dossier row, to find a counter without
/// building its key: it hashes and compares as the key does (same fields,
/// same order; a `&str` hashes as a `String`).
#[derive(Hash)]
struct CounterProbe<'a> {
    office_code: &'a str,
    day: i32,
    procedure_code: &'a str,
    channel: i32,
    metric: &'a str,
}

impl hashbrown::Equivalent<CounterKey> for CounterProbe<'_> {
    fn equivalent(&self, key: &CounterKey) -> bool {
        self.day == key.day
            && self.channel == key.channel
            && self.metric == key.metric
            && self.office_code == key.office_code
            && self.procedure_code == key.procedure_code
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterDelta {
    pub province_code: String,
    pub field: String,
    pub n: i64,
}

/// A supplement pause: from the request's day until the provision's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    pub from_day: i32,
    pub until_day: Option<i32>,
}

/// Counter metric names.
pub mod metric {
    pub const RECEIVED: &str = "received";
    pub const RESOLVED_EARLY: &str = "resolved_early";
    /// Resolved on the due date itself. The stored name predates the
    /// reports' renaming (issue 20); changing it would orphan the counters
    /// of every existing read model.
    pub const RESOLVED_ON_DUE_DATE: &str = "resolved_on_time";
    pub const RESOLVED_LATE: &str = "resolved_late";
    pub const RETURNED: &str = "returned";
    pub const WITHDRAWN: &str = "withdrawn";
    pub const REFUSED: &str = "refused";
    pub const STOPPED: &str = "stopped";
    pub const BECAME_LATE: &str = "became_late";
    pub const SURVEY_PREFIX: &str = "survey_";

    pub fn survey(scale: domain::RatingScale, rating: domain::Rating) -> String {
        format!("{SURVEY_PREFIX}{}_{}", scale.code(), rating.code())
    }
}

/// What a late-feed notice says happened (codes of `LateChange` in
/// `motcua.reports.v1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LateChange {
    BecameLate,
    Resolved,
    Withdrawn,
    Stopped,
    Rescheduled,
    Paused,
}

impl LateChange {
    pub const ALL: [LateChange; 6] = [
        LateChange::BecameLate,
        LateChange::Resolved,
        LateChange::Withdrawn,
        LateChange::Stopped,
        LateChange::Rescheduled,
        LateChange::Paused,
    ];

    pub fn code(self) -> i32 {
        match self {
            LateChange::BecameLate => 1,
            LateChange::Resolved => 2,
            LateChange::Withdrawn => 3,
            LateChange::Stopped => 4,
            LateChange::Rescheduled => 5,
            LateChange::Paused => 6,
        }
    }

    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// One notice of the late feed: a dossier became late, or a late one left
/// that state. The store numbers notices in commit order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateNotice {
    pub change: LateChange,
    pub dossier_id: String,
    pub office_code: String,
    pub province_code: String,
    pub procedure_code: String,
    pub field: String,
    pub channel: i32,
    pub due_at: Option<i64>,
    pub occurred_at: i64,
}

/// How an event was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::enum_variant_names,
    reason = "one outcome is named like the type: an event applied, beside a duplicate, held or rejected one"
)]
pub enum Applied {
    Applied,
    /// Already applied (redelivery or republish).
    Duplicate,
    /// A gap before it: kept until the missing versions arrive.
    Held,
    /// Cannot ever apply; parked with the reason.
    Rejected(String),
}

/// The changes a batch makes, accumulated in memory.
#[derive(Debug, Default)]
pub struct Changes {
    pub rows: HashMap<String, DossierRow>,
    pub counters: HashMap<CounterKey, CounterDelta>,
    pub pauses: HashMap<(String, i32), Pause>,
    /// Late-feed notices, in the order their events applied.
    pub late_feed: Vec<LateNotice>,
    /// Procedure streams (`procedure/<code>`): see `crate::catalog`.
    pub catalog: catalog::CatalogChanges,
}

impl Changes {
    /// The version a dossier or a procedure stream has reached in this batch
    /// (0: unknown), for releasing held events.
    pub fn version_of(&self, id: &str) -> i64 {
        if id.starts_with(PROCEDURE_STREAM_PREFIX) {
            self.catalog.version(id)
        } else {
            self.rows.get(id).map_or(0, |r| r.version)
        }
    }

    fn count(&mut self, row: &DossierRow, day: i32, metric: &str) {
        let probe = CounterProbe {
            office_code: &row.office_code,
            day,
            procedure_code: &row.procedure_code,
            channel: row.channel,
            metric,
        };
        if let Some(delta) = self.counters.get_mut(&probe) {
            delta.n += 1;
            return;
        }
        self.counters.insert(
            CounterKey {
                office_code: row.office_code.clone(),
                day,
                procedure_code: row.procedure_code.clone(),
                channel: row.channel,
                metric: metric.to_owned(),
            },
            CounterDelta {
                province_code: row.province_code.clone(),
                field: row.field.clone(),
                n: 1,
            },
        );
    }

    fn notice(&mut self, row: &DossierRow, change: LateChange, due_at: Option<i64>, at: i64) {
        self.late_feed.push(LateNotice {
            change,
            dossier_id: row.dossier_id.clone(),
            office_code: row.office_code.clone(),
            province_code: row.province_code.clone(),
            procedure_code: row.procedure_code.clone(),
            field: row.field.clone(),
            channel: row.channel,
            due_at,
            occurred_at: at,
        });
    }

    /// A late dossier left that state: tell the feed, forget the mark.
    fn leave_late(&mut self, row: &mut DossierRow, change: LateChange, at: i64) {
        if row.late_at.take().is_some() {
            self.notice(row, change, row.due_at, at);
        }
    }

    /// Applies `event` if it is the dossier's next version. `row` is the
    /// dossier's current row (None when unknown); the result goes into
    /// `self.rows`.
    pub fn apply(&mut self, row: Option<DossierRow>, event: &Event) -> Applied {
        if let Payload::Procedure(change) = &event.payload {
            return self.catalog.apply(event, change);
        }
        let current = row.as_ref().map_or(0, |r| r.version);
        let version = i64::try_from(event.version).unwrap_or(i64::MAX);
        if version <= current {
            self.keep(row);
            return Applied::Duplicate;
        }
        if version > current + 1 {
            self.keep(row);
            return Applied::Held;
        }
        let mut row = match row_to_apply(row, event) {
            Ok(row) => row,
            Err(rejected) => return rejected,
        };
        self.fold(&mut row, event);
        row.version = version;
        self.rows.insert(row.dossier_id.clone(), row);
        Applied::Applied
    }

    /// Keeps the row of a dossier the event leaves as it is.
    fn keep(&mut self, row: Option<DossierRow>) {
        if let Some(row) = row {
            self.rows.insert(row.dossier_id.clone(), row);
        }
    }

    /// What the event's payload changes: the row, and the pauses, counters
    /// and late-feed notices it makes.
    fn fold(&mut self, row: &mut DossierRow, event: &Event) {
        let day = event.occurred_at.local_day().days();
        let at = event.occurred_at.micros();
        match &event.payload {
            Payload::Submitted { .. } => row.status = "submitted".into(),
            Payload::Received {
                procedure,
                channel,
                due_at,
            } => self.receive(row, procedure, *channel, *due_at, day),
            Payload::RefusedAtIntake { .. } => {
                row.status = "refused".into();
                row.closed_day.get_or_insert(day);
                self.count(row, day, metric::REFUSED);
            }
            Payload::SupplementRequested { .. } => self.pause(row, day, at),
            Payload::SupplementProvided { due_at } => self.end_supplement(row, *due_at, day, at),
            Payload::Rescheduled { due_at, .. } => {
                row.due_at = Some(due_at.micros());
                self.leave_late(row, LateChange::Rescheduled, at);
                row.due_at = Some(due_at.micros());
                row.due_day = Some(due_at.local_day().days());
            }
            Payload::Processed { timeliness, .. } => self.resolve(row, *timeliness, day, at),
            Payload::Returned => {
                row.status = "returned".into();
                self.count(row, day, metric::RETURNED);
            }
            Payload::Withdrawn { .. } => {
                self.close(
                    row,
                    "withdrawn",
                    LateChange::Withdrawn,
                    metric::WITHDRAWN,
                    day,
                    at,
                );
            }
            Payload::Stopped { .. } => {
                self.close(
                    row,
                    "stopped",
                    LateChange::Stopped,
                    metric::STOPPED,
                    day,
                    at,
                );
            }
            Payload::Late { due_at } => {
                row.late_at = Some(at);
                self.count(row, day, metric::BECAME_LATE);
                self.notice(row, LateChange::BecameLate, Some(due_at.micros()), at);
            }
            Payload::SurveyRecorded { scale, rating, .. } => {
                self.count(row, day, &metric::survey(*scale, *rating));
            }
            // Catalog events were applied above, by the catalog.
            Payload::Procedure(_) => {}
        }
    }

    /// Received: the receipt's procedure, channel and due date, counted on
    /// its day.
    fn receive(
        &mut self,
        row: &mut DossierRow,
        procedure: &Procedure,
        channel: Channel,
        due_at: Timestamp,
        day: i32,
    ) {
        row.procedure_code = procedure.code.clone();
        row.field = procedure.field.clone();
        row.channel = channel.code();
        row.status = "received".into();
        row.received_day = Some(day);
        row.due_at = Some(due_at.micros());
        row.due_day = Some(due_at.local_day().days());
        self.count(row, day, metric::RECEIVED);
    }

    /// A supplement requested: a pause opens, and the clock of a late
    /// dossier with it.
    fn pause(&mut self, row: &mut DossierRow, day: i32, at: i64) {
        self.leave_late(row, LateChange::Paused, at);
        row.status = "paused".into();
        row.pauses += 1;
        self.pauses.insert(
            (row.dossier_id.clone(), row.pauses),
            Pause {
                from_day: day,
                until_day: None,
            },
        );
    }

    /// A supplement provided: the pause ends with a new due date.
    fn end_supplement(&mut self, row: &mut DossierRow, due_at: Timestamp, day: i32, at: i64) {
        row.status = "received".into();
        row.due_at = Some(due_at.micros());
        self.leave_late(row, LateChange::Rescheduled, at);
        row.due_day = Some(due_at.local_day().days());
        self.end_pause(row, day);
    }

    /// Processed: resolved on the day, counted by how it met its due date.
    fn resolve(&mut self, row: &mut DossierRow, timeliness: Timeliness, day: i32, at: i64) {
        row.status = "processed".into();
        row.resolved_day = Some(day);
        row.closed_day.get_or_insert(day);
        row.timeliness = Some(timeliness.code());
        self.leave_late(row, LateChange::Resolved, at);
        let metric = match timeliness {
            Timeliness::Early => metric::RESOLVED_EARLY,
            Timeliness::OnTime => metric::RESOLVED_ON_DUE_DATE,
            Timeliness::Late => metric::RESOLVED_LATE,
        };
        self.count(row, day, metric);
    }

    /// Withdrawn or stopped: closed without a result, ending a pause in
    /// progress and the late state.
    fn close(
        &mut self,
        row: &mut DossierRow,
        status: &str,
        change: LateChange,
        metric: &str,
        day: i32,
        at: i64,
    ) {
        if row.status == "paused" {
            self.end_pause(row, day);
        }
        row.status = status.into();
        self.leave_late(row, change, at);
        row.closed_day.get_or_insert(day);
        self.count(row, day, metric);
    }

    fn end_pause(&mut self, row: &DossierRow, day: i32) {
        let key = (row.dossier_id.clone(), row.pauses);
        match self.pauses.get_mut(&key) {
            Some(pause) => pause.until_day = Some(day),
            None => {
                // Opened in an earlier batch: the upsert keeps its from_day.
                self.pauses.insert(
                    key,
                    Pause {
                        from_day: i32::MIN,
                        until_day: Some(day),
                    },
                );
            }
        }
    }
}

/// The row an event applies to: the dossier's, or a new one when the event
/// opens the dossier (submitted or received); any other first event is
/// rejected.
fn row_to_apply(row: Option<DossierRow>, event: &Event) -> Result<DossierRow, Applied> {
    match (row, &event.payload) {
        (Some(row), _) => Ok(row),
        (
            None,
            Payload::Submitted { procedure, channel }
            | Payload::Received {
                procedure, channel, ..
            },
        ) => Ok(DossierRow {
            dossier_id: event.dossier_id.clone(),
            office_code: event.office_code.clone(),
            province_code: event.province_code.clone(),
            procedure_code: procedure.code.clone(),
            field: procedure.field.clone(),
            channel: channel.code(),
            ..Default::default()
        }),
        (None, other) => Err(Applied::Rejected(format!(
            "the first event of dossier {} is {}, not submitted or received",
            event.dossier_id,
            other.kind()
        ))),
    }
}
