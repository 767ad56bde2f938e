//! The `motcua.intake.v1.Intake` service: validates each request's fields,
//! turns it into a domain command and hands it to the writer.

use domain::{Channel, Command, LocalDay, Procedure, Rating, RatingScale, Timestamp};
use proto::{events::v1 as ev, intake::v1 as pb};
use tonic::{Request, Response, Status};

use crate::{
    error::IntakeError,
    fingerprint::of_request,
    writer::{CommandRequest, WriterHandle},
};

/// How far in the future a command's `occurred_at` may be (clock skew).
const MAX_FUTURE_MICROS: i64 = 5 * 60 * 1_000_000;
const MAX_TEXT: usize = 2_000;

#[derive(Clone)]
pub struct IntakeService {
    writer: WriterHandle,
    clock: crate::writer::Clock,
    relay: crate::relay::RelayHandle,
}

impl IntakeService {
    pub fn new(
        writer: WriterHandle,
        clock: crate::writer::Clock,
        relay: crate::relay::RelayHandle,
    ) -> Self {
        Self {
            writer,
            clock,
            relay,
        }
    }

    /// Checks the meta and the dossier id, and has the writer decide
    /// `command`. `fingerprint` is the request's (see
    /// [`crate::fingerprint::of_request`]), stored with its reply.
    async fn run(
        &self,
        fingerprint: u64,
        meta: Option<pb::CommandMeta>,
        dossier_id: String,
        command: Result<Command, IntakeError>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let meta =
            meta.ok_or_else(|| IntakeError::invalid("meta", "is required (request_id, actor)"))?;
        let request_id = text(&meta.request_id, "meta.request_id", 1, 128)?;
        let actor = text(&meta.actor, "meta.actor", 0, 128)?;
        let dossier_id = code(&dossier_id, "dossier_id", 64)?;
        let occurred_at = match meta.occurred_at.as_ref() {
            None => None,
            Some(t) => {
                let t = bus::timestamp_from_proto(t).ok_or_else(|| {
                    IntakeError::invalid("meta.occurred_at", "is not a valid timestamp")
                })?;
                let now = (self.clock)();
                if t.micros_since(now) > MAX_FUTURE_MICROS {
                    return Err(IntakeError::invalid(
                        "meta.occurred_at",
                        format!("{t} is in the future (now {now})"),
                    )
                    .into());
                }
                Some(t)
            }
        };
        let command = command?;
        crate::catalog::check_dossier_id(&dossier_id, &command)?;
        let reply = self
            .writer
            .submit(CommandRequest {
                request_id,
                fingerprint: Some(fingerprint),
                actor,
                dossier_id,
                occurred_at,
                command,
            })
            .await?;
        Ok(Response::new(reply))
    }
}

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

/// The end of office hours, local time: a due date given as a date alone
/// means then, as the import reads one.
const DUE_HOUR: u8 = 17;

/// A due date as an instant (`due_at`) or a local date (`due_on`); none
/// when neither is given, refused when both are.
fn due(
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

#[tonic::async_trait]
impl pb::intake_server::Intake for IntakeService {
    async fn import_dossiers(
        &self,
        request: Request<tonic::Streaming<pb::ImportDossier>>,
    ) -> Result<Response<pb::ImportReport>, Status> {
        let report = crate::import::import(&self.writer, &self.clock, request.into_inner()).await?;
        Ok(Response::new(report))
    }

    type RepublishStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::RepublishProgress, Status>>;

    async fn republish(
        &self,
        request: Request<pb::RepublishRequest>,
    ) -> Result<Response<Self::RepublishStream>, Status> {
        let from = request.into_inner().from_position;
        let progress = self.relay.republish(from).await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            progress,
        )))
    }

    async fn receive_dossier(
        &self,
        request: Request<pb::ReceiveDossierRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command = (|| {
            Ok(Command::Receive {
                office_code: unit_code(&r.office_code, "office_code")?,
                province_code: unit_code(&r.province_code, "province_code")?,
                procedure: procedure(r.procedure.as_ref())?,
                channel: channel(r.channel)?,
                due_at: due(r.due_at.as_ref(), r.due_on.as_ref())?,
            })
        })();
        self.run(
            of_request("ReceiveDossier", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn submit_online(
        &self,
        request: Request<pb::SubmitOnlineRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command = (|| {
            Ok(Command::SubmitOnline {
                office_code: unit_code(&r.office_code, "office_code")?,
                province_code: unit_code(&r.province_code, "province_code")?,
                procedure: procedure(r.procedure.as_ref())?,
                channel: channel(r.channel)?,
            })
        })();
        self.run(
            of_request("SubmitOnline", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn refuse_at_intake(
        &self,
        request: Request<pb::RefuseAtIntakeRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command =
            reason(&r.reason, "reason", true).map(|reason| Command::RefuseAtIntake { reason });
        self.run(
            of_request("RefuseAtIntake", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn request_supplement(
        &self,
        request: Request<pb::RequestSupplementRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command =
            reason(&r.reason, "reason", true).map(|reason| Command::RequestSupplement { reason });
        self.run(
            of_request("RequestSupplement", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn provide_supplement(
        &self,
        request: Request<pb::ProvideSupplementRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command = due(r.due_at.as_ref(), r.due_on.as_ref())
            .map(|due_at| Command::ProvideSupplement { due_at });
        self.run(
            of_request("ProvideSupplement", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn reschedule(
        &self,
        request: Request<pb::RescheduleRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command = (|| {
            Ok(Command::Reschedule {
                due_at: due(r.due_at.as_ref(), r.due_on.as_ref())?.ok_or_else(|| {
                    IntakeError::invalid("due_at", "or due_on is required: the new due date")
                })?,
                reason: reason(&r.reason, "reason", true)?,
            })
        })();
        self.run(of_request("Reschedule", &r), r.meta, r.dossier_id, command)
            .await
    }

    async fn record_result(
        &self,
        request: Request<pb::RecordResultRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        self.run(
            of_request("RecordResult", &r),
            r.meta,
            r.dossier_id,
            Ok(Command::RecordResult),
        )
        .await
    }

    async fn return_result(
        &self,
        request: Request<pb::ReturnResultRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        self.run(
            of_request("ReturnResult", &r),
            r.meta,
            r.dossier_id,
            Ok(Command::ReturnResult),
        )
        .await
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command = reason(&r.reason, "reason", false).map(|reason| Command::Withdraw { reason });
        self.run(of_request("Withdraw", &r), r.meta, r.dossier_id, command)
            .await
    }

    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command = reason(&r.reason, "reason", true).map(|reason| Command::Stop { reason });
        self.run(of_request("Stop", &r), r.meta, r.dossier_id, command)
            .await
    }

    async fn record_survey(
        &self,
        request: Request<pb::RecordSurveyRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let command = (|| {
            Ok(Command::RecordSurvey {
                scale: RatingScale::from_code(r.scale).ok_or_else(|| {
                    IntakeError::invalid(
                        "scale",
                        "must be RATING_SCALE_SATISFACTION or RATING_SCALE_QUALITY",
                    )
                })?,
                rating: Rating::from_code(r.rating).ok_or_else(|| {
                    IntakeError::invalid(
                        "rating",
                        "must be RATING_TOP, RATING_MIDDLE or RATING_BOTTOM",
                    )
                })?,
                comment: reason(&r.comment, "comment", false)?,
            })
        })();
        self.run(
            of_request("RecordSurvey", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn register_procedure(
        &self,
        request: Request<pb::RegisterProcedureRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let (stream, command) = crate::catalog::register(&r);
        self.run(of_request("RegisterProcedure", &r), r.meta, stream, command)
            .await
    }

    async fn change_procedure(
        &self,
        request: Request<pb::ChangeProcedureRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let (stream, command) = crate::catalog::change(&r);
        self.run(of_request("ChangeProcedure", &r), r.meta, stream, command)
            .await
    }

    async fn withdraw_procedure(
        &self,
        request: Request<pb::WithdrawProcedureRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let r = request.into_inner();
        let (stream, command) = crate::catalog::withdraw(&r);
        self.run(of_request("WithdrawProcedure", &r), r.meta, stream, command)
            .await
    }
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
