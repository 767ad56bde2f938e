//! [`decide_with`]: which event a command produces in a dossier's state, one
//! function per command. A dossier not yet known is decided apart
//! ([`decide_new`]): only a receipt or an online submission can open one.

use calendar::Calendar;

use super::{Command, Dossier, Status, Terms};
use crate::{
    Channel, Payload, Procedure, Rating, RatingScale, Refusal, Timeliness, Timestamp,
    procedure::InForce,
};

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
    let Some(d) = dossier else {
        return decide_new(dossier_id, command, at, terms);
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
    let c = Decision {
        dossier_id,
        d,
        command,
    };
    match command {
        Command::Procedure(_) => Err(c.refuse("is a dossier, not a catalog procedure".into())),
        Command::SubmitOnline { .. } => Err(c.refuse("already exists".into())),
        Command::Receive {
            office_code,
            province_code,
            procedure,
            channel,
            due_at,
        } => {
            c.receivable(office_code)?;
            received(procedure, province_code, *channel, *due_at, at, terms)
        }
        Command::RefuseAtIntake { reason } => c.refuse_at_intake(reason),
        Command::RequestSupplement { reason } => c.request_supplement(reason),
        Command::ProvideSupplement { due_at } => c.provide_supplement(*due_at, at, terms),
        Command::Reschedule { due_at, reason } => c.reschedule(*due_at, reason),
        Command::RecordResult => c.record_result(at),
        Command::ReturnResult => c.return_result(),
        Command::Withdraw { reason } => c.withdraw(reason),
        Command::Stop { reason } => c.stop(reason),
        Command::RecordSurvey {
            scale,
            rating,
            comment,
        } => c.record_survey(*scale, *rating, comment),
        Command::MarkLate => c.mark_late(at),
    }
}

/// A command for a dossier id never received or submitted: a receipt or an
/// online submission opens it, anything else names an unknown dossier.
fn decide_new(
    dossier_id: &str,
    command: &Command,
    at: Timestamp,
    terms: &Terms<'_>,
) -> Result<Payload, Refusal> {
    match command {
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
        Command::Procedure(_) => Err(Refusal::InvalidTransition {
            dossier_id: dossier_id.to_owned(),
            action: command.action(),
            reason: "is not a catalog procedure".into(),
        }),
        _ => Err(Refusal::UnknownDossier {
            dossier_id: dossier_id.to_owned(),
            action: command.action(),
        }),
    }
}

/// A command for a known dossier, with what its refusals name.
struct Decision<'a> {
    dossier_id: &'a str,
    d: &'a Dossier,
    command: &'a Command,
}

impl Decision<'_> {
    fn refuse(&self, reason: String) -> Refusal {
        Refusal::InvalidTransition {
            dossier_id: self.dossier_id.to_owned(),
            action: self.command.action(),
            reason,
        }
    }

    fn wrong_state(&self) -> Refusal {
        self.refuse(format!("is {}", self.d.status))
    }

    /// Whether the desk may receive this dossier: one submitted online to
    /// its office.
    fn receivable(&self, office_code: &str) -> Result<(), Refusal> {
        let d = self.d;
        if d.status != Status::Submitted {
            return Err(self.refuse(format!("already exists and is {}", d.status)));
        }
        if office_code != d.office_code {
            return Err(self.refuse(format!(
                "was submitted to office {}, not {office_code}",
                d.office_code
            )));
        }
        Ok(())
    }

    fn refuse_at_intake(&self, reason: &str) -> Result<Payload, Refusal> {
        match self.d.status {
            Status::Submitted => Ok(Payload::RefusedAtIntake {
                reason: reason.to_owned(),
            }),
            _ => Err(self.wrong_state()),
        }
    }

    fn request_supplement(&self, reason: &str) -> Result<Payload, Refusal> {
        match self.d.status {
            Status::Received => Ok(Payload::SupplementRequested {
                reason: reason.to_owned(),
            }),
            _ => Err(self.wrong_state()),
        }
    }

    /// The due date from the desk, or the old one moved by the paused
    /// working time; never earlier than the old one.
    fn provide_supplement(
        &self,
        due_at: Option<Timestamp>,
        at: Timestamp,
        terms: &Terms<'_>,
    ) -> Result<Payload, Refusal> {
        let d = self.d;
        match (d.status, d.paused_at, d.due_at) {
            (Status::Paused, Some(paused_at), Some(old_due)) => {
                let due_at = match due_at {
                    Some(due_at) => due_at,
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
            _ => Err(self.wrong_state()),
        }
    }

    /// Once per dossier, to a later date.
    fn reschedule(&self, due_at: Timestamp, reason: &str) -> Result<Payload, Refusal> {
        let d = self.d;
        match (d.status, d.due_at) {
            (Status::Received | Status::Paused, _) if d.rescheduled => Err(self.refuse(
                "was already rescheduled once; a dossier may be rescheduled only once".into(),
            )),
            (Status::Received | Status::Paused, Some(old_due)) => {
                if due_at <= old_due {
                    return Err(Refusal::InvalidField {
                        field: "due_at",
                        reason: format!(
                            "the new date {due_at} must be after the current due date {old_due}"
                        ),
                    });
                }
                Ok(Payload::Rescheduled {
                    due_at,
                    reason: reason.to_owned(),
                })
            }
            _ => Err(self.wrong_state()),
        }
    }

    /// The result fixes the dossier's timeliness against its due date.
    fn record_result(&self, at: Timestamp) -> Result<Payload, Refusal> {
        match (self.d.status, self.d.due_at) {
            (Status::Received, Some(due_at)) => Ok(Payload::Processed {
                timeliness: Timeliness::judge(at, due_at),
                due_at,
            }),
            (Status::Paused, _) => Err(self.refuse(
                "is waiting for the citizen's supplement; record the supplement first".into(),
            )),
            _ => Err(self.wrong_state()),
        }
    }

    fn return_result(&self) -> Result<Payload, Refusal> {
        match self.d.status {
            Status::Processed => Ok(Payload::Returned),
            Status::Received | Status::Paused => {
                Err(self.refuse("has no result yet; record the result first".into()))
            }
            _ => Err(self.wrong_state()),
        }
    }

    fn withdraw(&self, reason: &str) -> Result<Payload, Refusal> {
        match self.d.status {
            Status::Submitted | Status::Received | Status::Paused => Ok(Payload::Withdrawn {
                reason: reason.to_owned(),
            }),
            _ => Err(self.wrong_state()),
        }
    }

    fn stop(&self, reason: &str) -> Result<Payload, Refusal> {
        match self.d.status {
            Status::Received | Status::Paused => Ok(Payload::Stopped {
                reason: reason.to_owned(),
            }),
            _ => Err(self.wrong_state()),
        }
    }

    /// One survey per dossier, once it is received.
    fn record_survey(
        &self,
        scale: RatingScale,
        rating: Rating,
        comment: &str,
    ) -> Result<Payload, Refusal> {
        match self.d.status {
            _ if self.d.surveyed => Err(self.refuse("already has a survey".into())),
            Status::Received | Status::Paused | Status::Processed | Status::Returned => {
                Ok(Payload::SurveyRecorded {
                    scale,
                    rating,
                    comment: comment.to_owned(),
                })
            }
            _ => Err(self.wrong_state()),
        }
    }

    /// Late once per due date, and only after the due date's local day.
    fn mark_late(&self, at: Timestamp) -> Result<Payload, Refusal> {
        let d = self.d;
        match (d.status, d.due_at) {
            (Status::Received, Some(due_at)) if d.late_for == Some(due_at) => {
                Err(self.refuse(format!("is already marked late for its due date {due_at}")))
            }
            (Status::Received, Some(due_at)) if at.local_day() > due_at.local_day() => {
                Ok(Payload::Late { due_at })
            }
            (Status::Received, Some(due_at)) => {
                Err(self.refuse(format!("is not late: it is due {due_at}")))
            }
            _ => Err(self.wrong_state()),
        }
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
