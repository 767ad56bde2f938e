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
        let meta =
            meta.ok_or_else(|| IntakeError::invalid("meta", "is required (request_id, actor)"))?;
        let request_id = text(&meta.request_id, "meta.request_id", 1, 128)?;
        let actor = text(&meta.actor, "meta.actor", 0, 128)?;
        let dossier_id = code(&dossier_id, "dossier_id", 64)?;
        let occurred_at = match meta.occurred_at.as_ref() {
            None => None,
            // The clock is read only for a command that gives its instant.
            Some(t) => instant(Some(t), "meta.occurred_at", (self.clock)())?,
        };
        let command = command?;
        crate::access::command(caller.as_ref(), &command)?;
        check_dossier_id(&dossier_id, &command)?;
        // The record names the verified identity; what the request typed is
        // a display name at most. Another identity repeating a request id
        // sends another command, so its fingerprint differs.
        let (actor, fingerprint) = match &caller {
            Some(who) => (
                who.actor(&actor),
                crate::fingerprint::with_subject(fingerprint, &who.subject),
            ),
            None => (actor, fingerprint),
        };
        let receipt = matches!(
            command,
            Command::Receive { .. } | Command::SubmitOnline { .. }
        );
        let mut reply = self
            .writer
            .submit(CommandRequest {
                request_id,
                fingerprint: Some(fingerprint),
                actor,
                dossier_id,
                occurred_at,
                command,
                caller,
            })
            .await?;
        if receipt {
            reply.lookup_code = self.codes.code(&reply.dossier_id);
        }
        Ok(Response::new(reply))
    }
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
        let command = (|| {
            Ok(Command::SubmitOnline {
                office_code: unit_code(&r.office_code, "office_code")?,
                province_code: unit_code(&r.province_code, "province_code")?,
                procedure: procedure(r.procedure.as_ref())?,
                channel: channel(r.channel)?,
            })
        })();
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
        let command =
            reason(&r.reason, "reason", true).map(|reason| Command::RefuseAtIntake { reason });
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
        let command =
            reason(&r.reason, "reason", true).map(|reason| Command::RequestSupplement { reason });
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
        let command = due(r.due_at.as_ref(), r.due_on.as_ref())
            .map(|due_at| Command::ProvideSupplement { due_at });
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
        let command = (|| {
            Ok(Command::Reschedule {
                due_at: due(r.due_at.as_ref(), r.due_on.as_ref())?.ok_or_else(|| {
                    IntakeError::invalid("due_at", "or due_on is required: the new due date")
                })?,
                reason: reason(&r.reason, "reason", true)?,
            })
        })();
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
        let command = reason(&r.reason, "reason", false).map(|reason| Command::Withdraw { reason });
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
        let command = reason(&r.reason, "reason", true).map(|reason| Command::Stop { reason });
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
        let command = (|| {
            Ok(Command::RecordSurvey {
                scale: rating_scale(r.scale, "scale")?,
                rating: rating(r.rating, "rating")?,
                comment: reason(&r.comment, "comment", false)?,
            })
        })();
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
