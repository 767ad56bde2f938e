//! `domain::ProcedureDefinition` ⇄ `motcua.events.v1.ProcedureDefinition`,
//! shared by the event codec and intake's catalog RPCs.

use domain::{Level, OnlineLevel, ProcedureChange, ProcedureDefinition, procedure::ProcessingTime};
use proto::events::v1 as pb;

use crate::DecodeError;

pub fn definition_to_proto(d: &ProcedureDefinition) -> pb::ProcedureDefinition {
    use pb::procedure_definition::ProcessingTime as T;
    pb::ProcedureDefinition {
        code: d.code.clone(),
        name: d.name.clone(),
        field: d.field.clone(),
        level: d.level.code(),
        processing_time: Some(match d.processing_time {
            ProcessingTime::WorkingDays(n) => T::WorkingDays(n),
            ProcessingTime::WorkingHours(n) => T::WorkingHours(n),
        }),
        online_level: d.online.code(),
        supplement_clock: if d.supplement_pauses {
            pb::SupplementClock::Pauses
        } else {
            pb::SupplementClock::Runs
        }
        .into(),
    }
}

/// Why a definition is not usable, as (field, reason) below the definition.
pub fn definition_from_proto(
    d: &pb::ProcedureDefinition,
) -> Result<ProcedureDefinition, (&'static str, &'static str)> {
    use pb::procedure_definition::ProcessingTime as T;
    let processing_time = match d.processing_time {
        Some(T::WorkingDays(n)) if n > 0 => ProcessingTime::WorkingDays(n),
        Some(T::WorkingHours(n)) if n > 0 => ProcessingTime::WorkingHours(n),
        _ => {
            return Err((
                "processing_time",
                "must be working_days or working_hours, greater than 0",
            ));
        }
    };
    Ok(ProcedureDefinition {
        code: d.code.clone(),
        name: d.name.clone(),
        field: d.field.clone(),
        level: Level::from_code(d.level).ok_or((
            "level",
            "must be PROCEDURE_LEVEL_DISTRICT or PROCEDURE_LEVEL_COMMUNE",
        ))?,
        processing_time,
        online: OnlineLevel::from_code(d.online_level).ok_or((
            "online_level",
            "must be ONLINE_LEVEL_INFORMATION, ONLINE_LEVEL_FORMS, ONLINE_LEVEL_PARTIAL or ONLINE_LEVEL_FULL",
        ))?,
        supplement_pauses: match pb::SupplementClock::try_from(d.supplement_clock) {
            Ok(pb::SupplementClock::Pauses) => true,
            Ok(pb::SupplementClock::Runs) => false,
            _ => {
                return Err((
                    "supplement_clock",
                    "must be SUPPLEMENT_CLOCK_PAUSES or SUPPLEMENT_CLOCK_RUNS",
                ));
            }
        },
    })
}

pub(crate) fn change_to_proto(c: &ProcedureChange) -> pb::event::Payload {
    use pb::event::Payload as P;
    match c {
        ProcedureChange::Registered(d) => P::ProcedureRegistered(pb::ProcedureRegistered {
            definition: Some(definition_to_proto(d)),
        }),
        ProcedureChange::Changed(d) => P::ProcedureChanged(pb::ProcedureChanged {
            definition: Some(definition_to_proto(d)),
        }),
        ProcedureChange::Withdrawn { reason } => P::ProcedureWithdrawn(pb::ProcedureWithdrawn {
            reason: reason.clone(),
        }),
    }
}

pub(crate) fn definition_from(
    d: Option<&pb::ProcedureDefinition>,
) -> Result<ProcedureDefinition, DecodeError> {
    let d = d.ok_or(DecodeError::BadField("procedure.definition"))?;
    definition_from_proto(d).map_err(|(field, _)| DecodeError::BadField(field))
}
