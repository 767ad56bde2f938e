//! The `motcua.intake.v1.Intake` service: checks each request's fields (the
//! checks in `validate`, which the import shares), turns it into a domain
//! command and hands it to the writer.

use domain::Command;
use identity::Identity;
use proto::intake::v1 as pb;
use tonic::{Request, Response, Status};

use crate::{
    error::IntakeError,
    fingerprint::of_request,
    validate::{
        channel, check_dossier_id, code, due, instant, procedure, rating, rating_scale, reason,
        text, unit_code,
    },
    writer::{CommandRequest, WriterHandle},
};

#[derive(Clone)]
pub struct IntakeService {
    writer: WriterHandle,
    clock: crate::writer::Clock,
    relay: crate::relay::RelayHandle,
    /// The province this deployment serves (`--province`), whose
    /// operators may republish.
    served: Option<String>,
    /// The codes printed on receipt slips.
    codes: crate::lookup::LookupCodes,
}

impl IntakeService {
    pub fn new(
        writer: WriterHandle,
        clock: crate::writer::Clock,
        relay: crate::relay::RelayHandle,
        served: Option<String>,
        codes: crate::lookup::LookupCodes,
    ) -> Self {
        Self {
            writer,
            clock,
            relay,
            served,
            codes,
        }
    }

    /// Checks the meta, the dossier id and that `caller` may issue such a
    /// command, and has the writer decide `command`, recorded as the
    /// caller's. `fingerprint` is the request's (see
    /// [`crate::fingerprint::of_request`]), stored with its reply.
    async fn run(
        &self,
        caller: Option<Identity>,
        fingerprint: u64,
        meta: Option<pb::CommandMeta>,
        dossier_id: String,
        command: Result<Command, IntakeError>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let mut request = command_request(fingerprint, meta, dossier_id, command, &self.clock)?;
        crate::access::command(caller.as_ref(), &request.command)?;
        // The record names the verified identity; what the request typed is
        // a display name at most. Another identity repeating a request id
        // sends another command, so its fingerprint differs.
        if let Some(who) = &caller {
            request.actor = who.actor(&request.actor);
            request.fingerprint = request
                .fingerprint
                .map(|f| crate::fingerprint::with_subject(f, &who.subject));
        }
        request.caller = caller;
        let receipt = request.command.opened_unit().is_some();
        let mut reply = self.writer.submit(request).await?;
        if receipt {
            reply.lookup_code = self.codes.code(&reply.dossier_id);
        }
        Ok(Response::new(reply))
    }
}

/// Every check a desk command passes before the writer: the meta, the
/// dossier id, the command's own fields (`command`, checked by one of the
/// `*_command` functions below).
pub(crate) fn command_request(
    fingerprint: u64,
    meta: Option<pb::CommandMeta>,
    dossier_id: String,
    command: Result<Command, IntakeError>,
    clock: &crate::writer::Clock,
) -> Result<CommandRequest, IntakeError> {
    let meta =
        meta.ok_or_else(|| IntakeError::invalid("meta", "is required (request_id, actor)"))?;
    let request_id = text(&meta.request_id, "meta.request_id", 1, 128)?;
    let actor = text(&meta.actor, "meta.actor", 0, 128)?;
    let dossier_id = code(&dossier_id, "dossier_id", 64)?;
    let occurred_at = match meta.occurred_at.as_ref() {
        None => None,
        // The clock is read only for a command that gives its instant.
        Some(t) => instant(Some(t), "meta.occurred_at", clock())?,
    };
    let command = command?;
    check_dossier_id(&dossier_id, &command)?;
    Ok(CommandRequest {
        request_id,
        fingerprint: Some(fingerprint),
        actor,
        dossier_id,
        occurred_at,
        command,
        caller: None,
    })
}

pub(crate) fn receive_command(r: &pb::ReceiveDossierRequest) -> Result<Command, IntakeError> {
    Ok(Command::Receive {
        office_code: unit_code(&r.office_code, "office_code")?,
        province_code: unit_code(&r.province_code, "province_code")?,
        procedure: procedure(r.procedure.as_ref())?,
        channel: channel(r.channel)?,
        due_at: due(r.due_at.as_ref(), r.due_on.as_ref())?,
    })
}

pub(crate) fn submit_online_command(r: &pb::SubmitOnlineRequest) -> Result<Command, IntakeError> {
    Ok(Command::SubmitOnline {
        office_code: unit_code(&r.office_code, "office_code")?,
        province_code: unit_code(&r.province_code, "province_code")?,
        procedure: procedure(r.procedure.as_ref())?,
        channel: channel(r.channel)?,
    })
}

pub(crate) fn refuse_command(r: &pb::RefuseAtIntakeRequest) -> Result<Command, IntakeError> {
    reason(&r.reason, "reason", true).map(|reason| Command::RefuseAtIntake { reason })
}

pub(crate) fn request_supplement_command(
    r: &pb::RequestSupplementRequest,
) -> Result<Command, IntakeError> {
    reason(&r.reason, "reason", true).map(|reason| Command::RequestSupplement { reason })
}

pub(crate) fn provide_supplement_command(
    r: &pb::ProvideSupplementRequest,
) -> Result<Command, IntakeError> {
    due(r.due_at.as_ref(), r.due_on.as_ref()).map(|due_at| Command::ProvideSupplement { due_at })
}

pub(crate) fn reschedule_command(r: &pb::RescheduleRequest) -> Result<Command, IntakeError> {
    Ok(Command::Reschedule {
        due_at: due(r.due_at.as_ref(), r.due_on.as_ref())?.ok_or_else(|| {
            IntakeError::invalid("due_at", "or due_on is required: the new due date")
        })?,
        reason: reason(&r.reason, "reason", true)?,
    })
}

pub(crate) fn withdraw_command(r: &pb::WithdrawRequest) -> Result<Command, IntakeError> {
    reason(&r.reason, "reason", false).map(|reason| Command::Withdraw { reason })
}

pub(crate) fn stop_command(r: &pb::StopRequest) -> Result<Command, IntakeError> {
    reason(&r.reason, "reason", true).map(|reason| Command::Stop { reason })
}

pub(crate) fn survey_command(r: &pb::RecordSurveyRequest) -> Result<Command, IntakeError> {
    Ok(Command::RecordSurvey {
        scale: rating_scale(r.scale, "scale")?,
        rating: rating(r.rating, "rating")?,
        comment: reason(&r.comment, "comment", false)?,
    })
}

#[tonic::async_trait]
impl pb::intake_server::Intake for IntakeService {
    async fn import_dossiers(
        &self,
        request: Request<tonic::Streaming<pb::ImportDossier>>,
    ) -> Result<Response<pb::ImportReport>, Status> {
        let caller = server::identity_of(&request).cloned();
        crate::access::import(caller.as_ref())?;
        let report = crate::import::import(
            &self.writer,
            &self.clock,
            caller.as_ref(),
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(report))
    }

    type RepublishStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::RepublishProgress, Status>>;

    async fn republish(
        &self,
        request: Request<pb::RepublishRequest>,
    ) -> Result<Response<Self::RepublishStream>, Status> {
        crate::access::whole_log(
            server::identity_of(&request),
            self.served.as_deref(),
            "republish the log",
        )?;
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = receive_command(&r);
        self.run(
            caller,
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = submit_online_command(&r);
        self.run(
            caller,
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = refuse_command(&r);
        self.run(
            caller,
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = request_supplement_command(&r);
        self.run(
            caller,
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = provide_supplement_command(&r);
        self.run(
            caller,
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = reschedule_command(&r);
        self.run(
            caller,
            of_request("Reschedule", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn record_result(
        &self,
        request: Request<pb::RecordResultRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        self.run(
            caller,
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        self.run(
            caller,
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = withdraw_command(&r);
        self.run(
            caller,
            of_request("Withdraw", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = stop_command(&r);
        self.run(
            caller,
            of_request("Stop", &r),
            r.meta,
            r.dossier_id,
            command,
        )
        .await
    }

    async fn record_survey(
        &self,
        request: Request<pb::RecordSurveyRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let command = survey_command(&r);
        self.run(
            caller,
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
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let (stream, command) = crate::catalog::register(&r);
        self.run(
            caller,
            of_request("RegisterProcedure", &r),
            r.meta,
            stream,
            command,
        )
        .await
    }

    async fn change_procedure(
        &self,
        request: Request<pb::ChangeProcedureRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let (stream, command) = crate::catalog::change(&r);
        self.run(
            caller,
            of_request("ChangeProcedure", &r),
            r.meta,
            stream,
            command,
        )
        .await
    }

    async fn withdraw_procedure(
        &self,
        request: Request<pb::WithdrawProcedureRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let caller = server::identity_of(&request).cloned();
        let r = request.into_inner();
        let (stream, command) = crate::catalog::withdraw(&r);
        self.run(
            caller,
            of_request("WithdrawProcedure", &r),
            r.meta,
            stream,
            command,
        )
        .await
    }
}
