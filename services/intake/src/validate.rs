//! Field validation shared by the gRPC handlers (`grpc`) and the import
//! (`import`): each check names the request's field, so a desk and an
//! import file get the same reason for the same value.

use domain::{
    Channel, Command, LocalDay, Procedure, Rating, RatingScale, Timestamp,
    procedure::PROCEDURE_STREAM_PREFIX,
};
use proto::{events::v1 as ev, intake::v1 as pb};

use crate::error::IntakeError;

/// How far in the future a command's `occurred_at` or an imported instant
/// may be (clock skew).
const MAX_FUTURE_MICROS: i64 = 5 * 60 * 1_000_000;
const MAX_TEXT: usize = 2_000;
/// The end of office hours, local time: a due date given as a date alone
/// means then, as the import reads one.
const DUE_HOUR: u8 = 17;

pub(crate) fn text(
    value: &str,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<String, IntakeError> {
    let len = value.chars().count();
    if len < min {
        return Err(IntakeError::invalid(field, "is required"));
    }
    if len > max {
        return Err(IntakeError::invalid(
            field,
            format!("is {len} characters long; at most {max}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(IntakeError::invalid(field, "contains control characters"));
    }
    Ok(value.to_owned())
}

/// An identifier: letters, digits, `-`, `_`, `.` and `/` (as on slips).
pub(crate) fn code(value: &str, field: &'static str, max: usize) -> Result<String, IntakeError> {
    let value = text(value, field, 1, max)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Err(IntakeError::invalid(
            field,
            format!("{value:?} may hold only letters, digits, '-', '_', '.' and '/'"),
        ));
    }
    Ok(value)
}

pub(crate) fn unit_code(value: &str, field: &'static str) -> Result<String, IntakeError> {
    if !bus::is_subject_token(value) {
        return Err(IntakeError::invalid(
            field,
            format!("{value:?} must be 1 to 64 letters, digits, '-' or '_'"),
        ));
    }
    Ok(value.to_owned())
}

pub(crate) fn reason(
    value: &str,
    field: &'static str,
    required: bool,
) -> Result<String, IntakeError> {
    text(value, field, usize::from(required), MAX_TEXT)
}

pub(crate) fn timestamp(
    t: Option<&prost_types::Timestamp>,
    field: &'static str,
) -> Result<Timestamp, IntakeError> {
    let t = t.ok_or_else(|| IntakeError::invalid(field, "is required"))?;
    bus::timestamp_from_proto(t)
        .ok_or_else(|| IntakeError::invalid(field, "is not a valid timestamp"))
}

/// An optional instant, refused when it lies further in the future than
/// clock skew explains.
pub(crate) fn instant(
    t: Option<&prost_types::Timestamp>,
    field: &'static str,
    now: Timestamp,
) -> Result<Option<Timestamp>, IntakeError> {
    let Some(t) = t else { return Ok(None) };
    let t = timestamp(Some(t), field)?;
    if t.micros_since(now) > MAX_FUTURE_MICROS {
        return Err(IntakeError::invalid(
            field,
            format!("{t} is in the future (now {now})"),
        ));
    }
    Ok(Some(t))
}

/// A due date as an instant (`due_at`) or a local date (`due_on`); none
/// when neither is given, refused when both are.
pub(crate) fn due(
    at: Option<&prost_types::Timestamp>,
    on: Option<&pb::LocalDate>,
) -> Result<Option<Timestamp>, IntakeError> {
    match (at, on) {
        (Some(_), Some(_)) => Err(IntakeError::invalid(
            "due_on",
            "and due_at are both set: give the due date once, as an instant or as a local date",
        )),
        (Some(t), None) => timestamp(Some(t), "due_at").map(Some),
        (None, Some(d)) => {
            let day = u8::try_from(d.month)
                .ok()
                .zip(u8::try_from(d.day).ok())
                .and_then(|(month, day)| LocalDay::from_ymd(d.year, month, day))
                .ok_or_else(|| {
                    IntakeError::invalid(
                        "due_on",
                        format!("{}-{}-{} is not a date", d.year, d.month, d.day),
                    )
                })?;
            Ok(Some(Timestamp::at_local(day, DUE_HOUR, 0)))
        }
        (None, None) => Ok(None),
    }
}

pub(crate) fn procedure(p: Option<&ev::Procedure>) -> Result<Procedure, IntakeError> {
    let p = p.ok_or_else(|| IntakeError::invalid("procedure", "is required (code and field)"))?;
    Ok(Procedure {
        code: code(&p.code, "procedure.code", 64)?,
        field: text(&p.field, "procedure.field", 0, 64)?,
    })
}

pub(crate) fn channel(value: i32) -> Result<Channel, IntakeError> {
    Channel::from_code(value).ok_or_else(|| {
        IntakeError::invalid(
            "channel",
            "must be one of CHANNEL_IN_PERSON, CHANNEL_POSTAL, CHANNEL_ONLINE_PARTIAL, CHANNEL_ONLINE_FULL, CHANNEL_INTER_AGENCY",
        )
    })
}

pub(crate) fn rating_scale(value: i32, field: &'static str) -> Result<RatingScale, IntakeError> {
    RatingScale::from_code(value).ok_or_else(|| {
        IntakeError::invalid(
            field,
            "must be RATING_SCALE_SATISFACTION or RATING_SCALE_QUALITY",
        )
    })
}

pub(crate) fn rating(value: i32, field: &'static str) -> Result<Rating, IntakeError> {
    Rating::from_code(value).ok_or_else(|| {
        IntakeError::invalid(field, "must be RATING_TOP, RATING_MIDDLE or RATING_BOTTOM")
    })
}

/// Whether `id` is a procedure's stream id rather than a dossier's.
pub fn is_procedure_stream(id: &str) -> bool {
    id.starts_with(PROCEDURE_STREAM_PREFIX)
}

/// Refuses a dossier command whose dossier id would be a procedure's stream.
pub fn check_dossier_id(dossier_id: &str, command: &Command) -> Result<(), IntakeError> {
    if !matches!(command, Command::Procedure(_)) && is_procedure_stream(dossier_id) {
        return Err(IntakeError::invalid(
            "dossier_id",
            format!(
                "{dossier_id:?}: ids starting with {PROCEDURE_STREAM_PREFIX:?} name catalog procedures, not dossiers"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_date_alone_means_the_end_of_office_hours_local() {
        let on = pb::LocalDate {
            year: 2025,
            month: 3,
            day: 12,
        };
        let due_at = due(None, Some(&on)).expect("a date").expect("a due date");
        let day = LocalDay::from_ymd(2025, 3, 12).expect("a date");
        assert_eq!(due_at, Timestamp::at_local(day, 17, 0));
        // 17:00 at UTC+7 is 10:00 UTC.
        assert_eq!(bus::timestamp_to_proto(due_at).seconds % 86_400, 10 * 3600);
    }

    #[test]
    fn a_due_date_is_given_once_and_must_be_a_date() {
        let on = pb::LocalDate {
            year: 2025,
            month: 2,
            day: 30,
        };
        let at = prost_types::Timestamp {
            seconds: 1_741_773_600,
            nanos: 0,
        };
        let both = due(Some(&at), Some(&on)).expect_err("both set");
        assert!(both.to_string().contains("both set"), "{both}");
        let bad = due(None, Some(&on)).expect_err("no 30 February");
        assert!(bad.to_string().contains("2025-2-30 is not a date"), "{bad}");
        assert!(matches!(due(None, None), Ok(None)));
        assert!(matches!(due(Some(&at), None), Ok(Some(_))));
    }
}
