//! The dossier state machine: [`decide`] says which event a command produces
//! in a state, [`Dossier::apply`] folds an event into the state.

use std::{fmt, sync::LazyLock};

use calendar::Calendar;

use crate::{
    Channel, Event, Payload, Procedure, Rating, RatingScale, Timeliness, Timestamp,
    procedure::{Catalog, InForce, ProcedureCommand, ProcedureDefinition},
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

/// Why a command was refused; nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The command needs a dossier, and none was ever received (or
    /// submitted) under this id: a wrong id, not a wrong moment, so a client
    /// tells it apart from a dossier in the wrong state.
    #[error("cannot {action}: dossier {dossier_id} has not been received")]
    UnknownDossier {
        dossier_id: String,
        action: &'static str,
    },
    /// The command does not fit the dossier's state.
    #[error("cannot {action}: dossier {dossier_id} {reason}")]
    InvalidTransition {
        dossier_id: String,
        action: &'static str,
        reason: String,
    },
    /// A field's value is wrong whatever the state.
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// Something the command relies on is missing or not in force (e.g. the
    /// procedure a due date would come from).
    #[error("cannot {action}: {reason}")]
    Precondition {
        action: &'static str,
        /// What is missing or not in force: a procedure's stream id,
        /// `procedure/<code>`.
        subject: String,
        reason: String,
    },
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
        let mut d = match (state, &event.payload) {
            (None, Payload::Submitted { procedure, channel })
            | (
                None,
                Payload::Received {
                    procedure, channel, ..
                },
            ) => Dossier {
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
            },
            (None, other) => {
                return Err(format!(
                    "dossier {}: first event is {}, not submitted or received",
                    event.dossier_id,
                    other.kind()
                ));
            }
            (Some(d), _) => d,
        };
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
        Ok(d)
    }
}

/// [`decide_with`] under [`Terms::statutory`]: the statutory calendar and an
/// empty catalog (a receipt then needs its due date from the slip).
pub fn decide(
    dossier_id: &str,
    dossier: Option<&Dossier>,
    command: &Command,
    at: Timestamp,
) -> Result<Payload, Refusal> {
    decide_with(dossier_id, dossier, command, at, &Terms::statutory())
}

/// Decides what `command`, issued at `at`, does to `dossier` (None: the id is
/// unknown) under `terms`. Returns the payload of the one event to append, or
/// why not. Every date it computes is in the payload, so a replay never
/// needs the calendar or the catalog again.
pub fn decide_with(
    dossier_id: &str,
    dossier: Option<&Dossier>,
    command: &Command,
    at: Timestamp,
    terms: &Terms<'_>,
) -> Result<Payload, Refusal> {
    let refuse = |reason: String| Refusal::InvalidTransition {
        dossier_id: dossier_id.to_owned(),
        action: command.action(),
        reason,
    };
    let Some(d) = dossier else {
        return match command {
            Command::SubmitOnline {
                procedure, channel, ..
            } => {
                if !channel.is_online() {
                    return Err(Refusal::InvalidField {
                        field: "channel",
                        reason: "an online submission comes through CHANNEL_ONLINE_PARTIAL or CHANNEL_ONLINE_FULL".into(),
                    });
                }
                Ok(Payload::Submitted {
                    procedure: procedure.clone(),
                    channel: *channel,
                })
            }
            Command::Receive {
                procedure,
                province_code,
                channel,
                due_at,
                ..
            } => received(procedure, province_code, *channel, *due_at, at, terms),
            Command::Procedure(_) => Err(refuse("is not a catalog procedure".into())),
            _ => Err(Refusal::UnknownDossier {
                dossier_id: dossier_id.to_owned(),
                action: command.action(),
            }),
        };
    };

    if at < d.last_occurred_at {
        return Err(Refusal::InvalidField {
            field: "meta.occurred_at",
            reason: format!(
                "{at} is before the dossier's previous event at {}",
                d.last_occurred_at
            ),
        });
    }
    let wrong_state = || refuse(format!("is {}", d.status));
    match command {
        Command::Procedure(_) => Err(refuse("is a dossier, not a catalog procedure".into())),
        Command::SubmitOnline { .. } => Err(refuse("already exists".into())),
        Command::Receive {
            office_code,
            province_code,
            procedure,
            channel,
            due_at,
        } => {
            if d.status != Status::Submitted {
                return Err(refuse(format!("already exists and is {}", d.status)));
            }
            if *office_code != d.office_code {
                return Err(refuse(format!(
                    "was submitted to office {}, not {office_code}",
                    d.office_code
                )));
            }
            received(procedure, province_code, *channel, *due_at, at, terms)
        }
        Command::RefuseAtIntake { reason } => match d.status {
            Status::Submitted => Ok(Payload::RefusedAtIntake {
                reason: reason.clone(),
            }),
            _ => Err(wrong_state()),
        },
        Command::RequestSupplement { reason } => match d.status {
            Status::Received => Ok(Payload::SupplementRequested {
                reason: reason.clone(),
            }),
            _ => Err(wrong_state()),
        },
        Command::ProvideSupplement { due_at } => match (d.status, d.paused_at, d.due_at) {
            (Status::Paused, Some(paused_at), Some(old_due)) => {
                let due_at = match due_at {
                    Some(due_at) => *due_at,
                    None => {
                        let received_at = d.received_at.unwrap_or(paused_at);
                        let pauses = terms
                            .procedure_at(&d.procedure.code, received_at)
                            .is_none_or(|p| p.supplement_pauses);
                        moved_by_pause(terms.calendar, old_due, paused_at, at, pauses)
                    }
                };
                if due_at < old_due {
                    return Err(Refusal::InvalidField {
                        field: "due_at",
                        reason: format!("{due_at} is before the current due date {old_due}"),
                    });
                }
                Ok(Payload::SupplementProvided { due_at })
            }
            _ => Err(wrong_state()),
        },
        Command::Reschedule { due_at, reason } => match (d.status, d.due_at) {
            (Status::Received | Status::Paused, _) if d.rescheduled => Err(refuse(
                "was already rescheduled once; a dossier may be rescheduled only once".into(),
            )),
            (Status::Received | Status::Paused, Some(old_due)) => {
                if *due_at <= old_due {
                    return Err(Refusal::InvalidField {
                        field: "due_at",
                        reason: format!(
                            "the new date {due_at} must be after the current due date {old_due}"
                        ),
                    });
                }
                Ok(Payload::Rescheduled {
                    due_at: *due_at,
                    reason: reason.clone(),
                })
            }
            _ => Err(wrong_state()),
        },
        Command::RecordResult => match (d.status, d.due_at) {
            (Status::Received, Some(due_at)) => Ok(Payload::Processed {
                timeliness: Timeliness::judge(at, due_at),
                due_at,
            }),
            (Status::Paused, _) => Err(refuse(
                "is waiting for the citizen's supplement; record the supplement first".into(),
            )),
            _ => Err(wrong_state()),
        },
        Command::ReturnResult => match d.status {
            Status::Processed => Ok(Payload::Returned),
            Status::Received | Status::Paused => {
                Err(refuse("has no result yet; record the result first".into()))
            }
            _ => Err(wrong_state()),
        },
        Command::Withdraw { reason } => match d.status {
            Status::Submitted | Status::Received | Status::Paused => Ok(Payload::Withdrawn {
                reason: reason.clone(),
            }),
            _ => Err(wrong_state()),
        },
        Command::Stop { reason } => match d.status {
            Status::Received | Status::Paused => Ok(Payload::Stopped {
                reason: reason.clone(),
            }),
            _ => Err(wrong_state()),
        },
        Command::RecordSurvey {
            scale,
            rating,
            comment,
        } => match d.status {
            _ if d.surveyed => Err(refuse("already has a survey".into())),
            Status::Received | Status::Paused | Status::Processed | Status::Returned => {
                Ok(Payload::SurveyRecorded {
                    scale: *scale,
                    rating: *rating,
                    comment: comment.clone(),
                })
            }
            _ => Err(wrong_state()),
        },
        Command::MarkLate => match (d.status, d.due_at) {
            (Status::Received, Some(due_at)) if d.late_for == Some(due_at) => Err(refuse(format!(
                "is already marked late for its due date {due_at}"
            ))),
            (Status::Received, Some(due_at)) if at.local_day() > due_at.local_day() => {
                Ok(Payload::Late { due_at })
            }
            (Status::Received, Some(due_at)) => {
                Err(refuse(format!("is not late: it is due {due_at}")))
            }
            _ => Err(wrong_state()),
        },
    }
}

/// The due date after a supplement requested at `paused_at` and provided at
/// `provided_at`: `due` moved by the paused working time when the
/// procedure's supplements pause the clock (a procedure the catalog does not
/// know pauses it, as the law's default), else `due` unchanged.
pub fn moved_by_pause(
    calendar: &Calendar,
    due: Timestamp,
    paused_at: Timestamp,
    provided_at: Timestamp,
    pauses: bool,
) -> Timestamp {
    let paused = calendar.working_time_between(paused_at.micros(), provided_at.micros());
    if !pauses || paused <= 0 {
        // No working time passed (or none counts): the same instant, not
        // the next working morning `add_working(due, 0)` would give.
        return due;
    }
    Timestamp::from_micros(calendar.add_working(due.micros(), paused))
}

/// The due date of a dossier received at `at` under procedure `code`, from
/// the definition in force at `at`.
fn due_from_catalog(
    code: &str,
    province_code: &str,
    at: Timestamp,
    terms: &Terms<'_>,
) -> Result<Timestamp, Refusal> {
    let refuse = |reason: String| Refusal::Precondition {
        action: "receive it without a due date",
        subject: crate::procedure::procedure_stream(code),
        reason: format!("{reason}; give the due date from the appointment slip"),
    };
    let Some(record) = terms.catalog.get(code) else {
        return Err(refuse(format!(
            "procedure {code} is not in the catalog (register it with RegisterProcedure)"
        )));
    };
    if record.province_code != province_code {
        return Err(refuse(format!(
            "procedure {code} is in the catalog of province {}, not {province_code}",
            record.province_code
        )));
    }
    let definition = match record.in_force_at(at) {
        InForce::Yes(d) => d,
        InForce::NotYet { from } => {
            return Err(refuse(format!(
                "procedure {code} is in force only from {from}, after the receipt at {at}"
            )));
        }
        InForce::Withdrawn { at: withdrawn } => {
            return Err(refuse(format!(
                "procedure {code} was withdrawn from the catalog at {withdrawn}"
            )));
        }
    };
    let due = terms
        .calendar
        .checked_due(at.micros(), definition.processing_time)
        .ok_or_else(|| Refusal::InvalidField {
            field: "meta.occurred_at",
            reason: format!(
                "{at} or its due date lies outside the working-time calendar's years {}–{}",
                calendar::FIRST_YEAR,
                calendar::LAST_YEAR
            ),
        })?;
    Ok(Timestamp::from_micros(due))
}

fn received(
    procedure: &Procedure,
    province_code: &str,
    channel: Channel,
    due_at: Option<Timestamp>,
    at: Timestamp,
    terms: &Terms<'_>,
) -> Result<Payload, Refusal> {
    let mut procedure = procedure.clone();
    let due_at = match due_at {
        Some(due_at) => due_at,
        None => due_from_catalog(&procedure.code, province_code, at, terms)?,
    };
    // A slip without the field takes the catalog's.
    if procedure.field.is_empty()
        && let Some(definition) = terms.procedure_at(&procedure.code, at)
    {
        procedure.field = definition.field.clone();
    }
    if due_at <= at {
        return Err(Refusal::InvalidField {
            field: "due_at",
            reason: format!("the due date {due_at} must be after the receipt at {at}"),
        });
    }
    Ok(Payload::Received {
        procedure,
        channel,
        due_at,
    })
}

/// The first instant after the local date of `due_at`: a dossier not
/// resolved by then is late (lateness is judged by date, as on the slip).
pub fn end_of_due_date(due_at: Timestamp) -> Timestamp {
    Timestamp::at_local(due_at.local_day().succ(), 0, 0)
}
