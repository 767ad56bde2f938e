//! Who may do what, from outside (issue 21's matrix): every RPC of both
//! services, called by every kind of caller — no token, an expired one,
//! one for another audience, one signed by a key the JWKS does not hold,
//! a clerk of office X and one of office Y, X's manager, a reader of the
//! province and one of another province, and the province's operator —
//! answers exactly as the roles say, and no refused call appends anything.
//!
//! Tokens are JWTs signed here with the identity crate's test key and
//! checked by both services against its JWKS: the real verifier, the real
//! authentication layer and the real handlers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use proto::{
    admin::v1::{self as ad, parked_events_client::ParkedEventsClient},
    events::v1 as ev,
    intake::v1::{
        self as pb, dossier_service_client::DossierServiceClient, intake_client::IntakeClient,
        log_client::LogClient,
    },
    reports::v1::{
        self as rp, deadlines_client::DeadlinesClient, rebuilds_client::RebuildsClient,
        reports_client::ReportsClient,
    },
};
use server::Service as _;
use tests::{Backend, NatsServer, TestDb, procedure, real_now, ts, unique_stream};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt as _;

const ISSUER: &str = "https://id.lamdong.gov.vn";
const KEYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../services/identity/tests/keys"
);
/// The province the deployment serves, and another.
const P: &str = "68";
const Q: &str = "01";
/// Two offices of P.
const X: &str = "68-X";
const Y: &str = "68-Y";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Nobody,
    Expired,
    WrongAudience,
    BadSignature,
    ClerkX,
    ClerkY,
    ManagerX,
    ReaderP,
    ReaderQ,
    OperatorP,
}

const EVERYONE: [Who; 10] = [
    Who::Nobody,
    Who::Expired,
    Who::WrongAudience,
    Who::BadSignature,
    Who::ClerkY,
    Who::ManagerX,
    Who::ReaderP,
    Who::ReaderQ,
    Who::OperatorP,
    // Last: its calls are the ones that change state.
    Who::ClerkX,
];

impl Who {
    /// (subject, role, province, office) of a valid identity.
    fn claims(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    ) {
        match self {
            Who::ClerkY => ("clerk-y", "clerk", P, Some(Y)),
            Who::ManagerX => ("manager-x", "office_manager", P, Some(X)),
            Who::ReaderP => ("reader-p", "province_reader", P, None),
            Who::ReaderQ => ("reader-q", "province_reader", Q, None),
            Who::OperatorP => ("operator-p", "operator", P, None),
            _ => ("clerk-x", "clerk", P, Some(X)),
        }
    }

    fn token(self) -> anyhow::Result<Option<String>> {
        let (audience, expires_in, key) = match self {
            Who::Nobody => return Ok(None),
            Who::Expired => ("motcua", -600, "ed25519.pem"),
            Who::WrongAudience => ("another-service", 600, "ed25519.pem"),
            Who::BadSignature => ("motcua", 600, "ed25519-other.pem"),
            _ => ("motcua", 600, "ed25519.pem"),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let (sub, role, province, office) = self.claims();
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": audience, "exp": now + expires_in, "nbf": now - 10,
            "sub": sub, "motcua_role": role, "motcua_province": province,
            "motcua_office": office,
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed-1".into());
        let key = EncodingKey::from_ed_pem(&std::fs::read(format!("{KEYS}/{key}"))?)?;
        Ok(Some(encode(&header, &claims, &key)?))
    }

    /// How an event this identity caused names it.
    fn actor(self, display: &str) -> String {
        let (sub, _, province, office) = self.claims();
        format!("{sub}@{} ({display})", office.unwrap_or(province))
    }
}

/// What a call may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Served,
    Unauthenticated,
    Denied,
    /// NOT_FOUND, as for a dossier never received.
    Unknown,
}

fn answer(result: &Result<(), Status>) -> Answer {
    match result {
        Ok(()) => Answer::Served,
        Err(s) if s.code() == Code::Unauthenticated => Answer::Unauthenticated,
        Err(s) if s.code() == Code::PermissionDenied => Answer::Denied,
        Err(s) if s.code() == Code::NotFound => Answer::Unknown,
        Err(s) => panic!("an answer the matrix does not expect: {s:?}"),
    }
}

/// What an RPC asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    /// A desk command on a dossier of X.
    Desk,
    /// A receipt for office X.
    Take,
    ReadOffice,
    ReadProvince,
    Operate,
    /// A dossier's record: as ReadOffice, but out of scope is unknown.
    ReadDossier,
    /// Open to anyone holding the lookup code.
    LookUp,
}

fn expected(needs: Needs, who: Who) -> Answer {
    use {Answer::*, Who::*};
    match (who, needs) {
        // The lookup does not look at credentials, bad ones included.
        (_, Needs::LookUp) => Served,
        (Nobody | Expired | WrongAudience | BadSignature, _) => Unauthenticated,
        (ClerkX | ManagerX | ReaderP, Needs::ReadDossier) => Served,
        (_, Needs::ReadDossier) => Unknown,
        (ClerkX, Needs::Desk | Needs::Take | Needs::ReadOffice) => Served,
        (ClerkY, Needs::Desk) => Unknown,
        (ManagerX | ReaderP, Needs::ReadOffice) => Served,
        (ReaderP, Needs::ReadProvince) => Served,
        (OperatorP, Needs::Operate) => Served,
        _ => Denied,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    ReceiveDossier,
    SubmitOnline,
    RefuseAtIntake,
    RequestSupplement,
    ProvideSupplement,
    Reschedule,
    RecordResult,
    ReturnResult,
    Withdraw,
    Stop,
    RecordSurvey,
    RegisterProcedure,
    ChangeProcedure,
    WithdrawProcedure,
    ImportDossiers,
    Republish,
    ReadEvents,
    GetStatistics,
    GetSurveys,
    GetYearlySeries,
    ListOverdue,
    WatchLate,
    GetStatisticsOfProvince,
    ListUnits,
    GetProcedureCounts,
    ListDueSoon,
    StartRebuild,
    GetRebuild,
    ListParked,
    ReplayParked,
    GetDossier,
    LookUpDossier,
}

const RPCS: [Rpc; 32] = [
    Rpc::ReceiveDossier,
    Rpc::SubmitOnline,
    Rpc::RefuseAtIntake,
    Rpc::RequestSupplement,
    Rpc::ProvideSupplement,
    Rpc::Reschedule,
    Rpc::RecordResult,
    Rpc::ReturnResult,
    Rpc::Withdraw,
    Rpc::Stop,
    Rpc::RecordSurvey,
    Rpc::RegisterProcedure,
    Rpc::ChangeProcedure,
    Rpc::WithdrawProcedure,
    Rpc::ImportDossiers,
    Rpc::Republish,
    Rpc::ReadEvents,
    Rpc::GetStatistics,
    Rpc::GetSurveys,
    Rpc::GetYearlySeries,
    Rpc::ListOverdue,
    Rpc::WatchLate,
    Rpc::GetStatisticsOfProvince,
    Rpc::ListUnits,
    Rpc::GetProcedureCounts,
    Rpc::ListDueSoon,
    Rpc::StartRebuild,
    Rpc::GetRebuild,
    Rpc::ListParked,
    Rpc::ReplayParked,
    Rpc::GetDossier,
    Rpc::LookUpDossier,
];

impl Rpc {
    fn needs(self) -> Needs {
        use Rpc::*;
        match self {
            ReceiveDossier | SubmitOnline => Needs::Take,
            RefuseAtIntake | RequestSupplement | ProvideSupplement | Reschedule | RecordResult
            | ReturnResult | Withdraw | Stop | RecordSurvey => Needs::Desk,
            GetStatistics | GetSurveys | GetYearlySeries | ListOverdue | WatchLate => {
                Needs::ReadOffice
            }
            GetStatisticsOfProvince | ListUnits | GetProcedureCounts | ListDueSoon => {
                Needs::ReadProvince
            }
            RegisterProcedure | ChangeProcedure | WithdrawProcedure | ImportDossiers
            | Republish | ReadEvents | StartRebuild | GetRebuild | ListParked | ReplayParked => {
                Needs::Operate
            }
            GetDossier => Needs::ReadDossier,
            LookUpDossier => Needs::LookUp,
        }
    }

    /// Whether a served call appends one event.
    fn appends(self) -> bool {
        matches!(self.needs(), Needs::Desk | Needs::Take)
            || matches!(
                self,
                Rpc::RegisterProcedure
                    | Rpc::ChangeProcedure
                    | Rpc::WithdrawProcedure
                    | Rpc::ImportDossiers
            )
    }

    /// The desk commands that bring a new dossier of X to where this
    /// command is accepted.
    fn preparation(self) -> &'static [Rpc] {
        use Rpc::*;
        match self {
            RefuseAtIntake => &[SubmitOnline],
            ProvideSupplement => &[ReceiveDossier, RequestSupplement],
            ReturnResult => &[ReceiveDossier, RecordResult],
            _ => &[ReceiveDossier],
        }
    }
}

fn now() -> Timestamp {
    real_now()
}

fn days_from_now(days: i64) -> Option<prost_types::Timestamp> {
    ts(now().plus_micros(days * 86_400_000_000))
}

fn meta(display: &str) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta {
        request_id: uuid::Uuid::new_v4().to_string(),
        actor: display.into(),
        occurred_at: None,
    })
}

fn definition(code: &str) -> Option<ev::ProcedureDefinition> {
    Some(ev::ProcedureDefinition {
        code: code.into(),
        name: format!("Thủ tục {code}"),
        field: "dat-dai".into(),
        level: ev::ProcedureLevel::District.into(),
        processing_time: Some(ev::procedure_definition::ProcessingTime::WorkingDays(5)),
        online_level: ev::OnlineLevel::Full.into(),
        supplement_clock: ev::SupplementClock::Pauses.into(),
    })
}

fn office(code: &str) -> Option<rp::Scope> {
    Some(rp::Scope {
        unit: Some(rp::scope::Unit::OfficeCode(code.into())),
        ..Default::default()
    })
}

fn province(code: &str) -> Option<rp::Scope> {
    Some(rp::Scope {
        unit: Some(rp::scope::Unit::ProvinceCode(code.into())),
        ..Default::default()
    })
}

/// Both services with JWT authentication, serving province P.
struct World {
    intake: Channel,
    projection: Channel,
    store: intake::EventStore,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _nats: NatsServer,
    _dbs: (TestDb, TestDb),
}

fn secure(shared: &mut server::SharedArgs) {
    shared.auth_jwks = Some(format!("{KEYS}/jwks.json"));
    shared.auth_issuer = Some(ISSUER.into());
    shared.province = Some(P.into());
}

async fn channel(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .timeout(Duration::from_secs(20))
        .connect()
        .await?)
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
        let nats = NatsServer::start().await?;
        let dbs = (
            TestDb::new(Backend::Sqlite, "intake").await?,
            TestDb::new(Backend::Sqlite, "projection").await?,
        );
        let stream = unique_stream();
        let mut config = intake::Config::for_tests(&dbs.0.url, &nats.url(), &stream);
        secure(&mut config.shared);
        let intake = intake::Application::build(config).await?;
        let mut config = projection::Config::for_tests(&dbs.1.url, &nats.url(), &stream);
        secure(&mut config.shared);
        let projection = projection::Application::build(config).await?;
        let (intake_addr, projection_addr) = (intake.local_addr(), projection.local_addr());
        let store = intake.store().clone();
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(intake.run_until_stopped(stop.clone())),
            tokio::spawn(projection.run_until_stopped(stop.clone())),
        ];
        Ok(Self {
            intake: channel(intake_addr).await?,
            projection: channel(projection_addr).await?,
            store,
            stop,
            tasks,
            _nats: nats,
            _dbs: dbs,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }

    fn desk(&self) -> IntakeClient<Channel> {
        IntakeClient::new(self.intake.clone())
    }

    fn reports(&self) -> ReportsClient<Channel> {
        ReportsClient::new(self.projection.clone())
    }

    fn deadlines(&self) -> DeadlinesClient<Channel> {
        DeadlinesClient::new(self.projection.clone())
    }
}

fn as_who<T>(who: Who, message: T) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    let token = who
        .token()
        .map_err(|e| Status::internal(format!("sign a token: {e}")))?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("a token that is no header value"))?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// The targets a call acts on: a dossier id (desk commands), a procedure
/// code (catalog commands) or an import row's dossier id.
impl World {
    async fn call(&self, rpc: Rpc, who: Who, target: &str) -> Result<(), Status> {
        if rpc.needs() == Needs::Desk || rpc.needs() == Needs::Take {
            return self.desk_call(rpc, who, target, "Lan").await;
        }
        match rpc.needs() {
            Needs::ReadDossier | Needs::LookUp => self.dossier_call(rpc, who, target).await,
            Needs::ReadOffice | Needs::ReadProvince => self.read_call(rpc, who).await,
            _ => self.operate_call(rpc, who, target).await,
        }
    }

    async fn desk_call(&self, rpc: Rpc, who: Who, id: &str, display: &str) -> Result<(), Status> {
        let mut desk = self.desk();
        let (meta, dossier_id) = (meta(display), id.to_owned());
        let reason = "lý do".to_owned();
        match rpc {
            Rpc::ReceiveDossier => {
                desk.receive_dossier(as_who(who, self.receipt(id, X, meta))?)
                    .await
            }
            Rpc::SubmitOnline => {
                desk.submit_online(as_who(
                    who,
                    pb::SubmitOnlineRequest {
                        meta,
                        dossier_id,
                        office_code: X.into(),
                        province_code: P.into(),
                        procedure: procedure(),
                        channel: ev::Channel::OnlineFull.into(),
                    },
                )?)
                .await
            }
            Rpc::RefuseAtIntake => {
                desk.refuse_at_intake(as_who(
                    who,
                    pb::RefuseAtIntakeRequest {
                        meta,
                        dossier_id,
                        reason,
                    },
                )?)
                .await
            }
            Rpc::RequestSupplement => {
                desk.request_supplement(as_who(
                    who,
                    pb::RequestSupplementRequest {
                        meta,
                        dossier_id,
                        reason,
                    },
                )?)
                .await
            }
            Rpc::ProvideSupplement => {
                desk.provide_supplement(as_who(
                    who,
                    pb::ProvideSupplementRequest {
                        meta,
                        dossier_id,
                        due_at: days_from_now(35),
                        due_on: None,
                    },
                )?)
                .await
            }
            Rpc::Reschedule => {
                desk.reschedule(as_who(
                    who,
                    pb::RescheduleRequest {
                        meta,
                        dossier_id,
                        due_at: days_from_now(40),
                        due_on: None,
                        reason,
                    },
                )?)
                .await
            }
            Rpc::RecordResult => {
                desk.record_result(as_who(who, pb::RecordResultRequest { meta, dossier_id })?)
                    .await
            }
            Rpc::ReturnResult => {
                desk.return_result(as_who(who, pb::ReturnResultRequest { meta, dossier_id })?)
                    .await
            }
            Rpc::Withdraw => {
                desk.withdraw(as_who(
                    who,
                    pb::WithdrawRequest {
                        meta,
                        dossier_id,
                        reason,
                    },
                )?)
                .await
            }
            Rpc::Stop => {
                desk.stop(as_who(
                    who,
                    pb::StopRequest {
                        meta,
                        dossier_id,
                        reason,
                    },
                )?)
                .await
            }
            Rpc::RecordSurvey => {
                desk.record_survey(as_who(
                    who,
                    pb::RecordSurveyRequest {
                        meta,
                        dossier_id,
                        scale: ev::RatingScale::Satisfaction.into(),
                        rating: ev::Rating::Top.into(),
                        comment: String::new(),
                    },
                )?)
                .await
            }
            other => return Err(Status::internal(format!("{other:?} is no desk command"))),
        }
        .map(drop)
    }

    fn receipt(
        &self,
        id: &str,
        office: &str,
        meta: Option<pb::CommandMeta>,
    ) -> pb::ReceiveDossierRequest {
        pb::ReceiveDossierRequest {
            meta,
            dossier_id: id.into(),
            office_code: office.into(),
            province_code: P.into(),
            procedure: procedure(),
            channel: ev::Channel::InPerson.into(),
            // Due in 30 days: the deadline monitor appends nothing while
            // the test counts events.
            due_at: days_from_now(30),
            due_on: None,
        }
    }

    async fn read_call(&self, rpc: Rpc, who: Who) -> Result<(), Status> {
        let statistics = |scope| rp::StatisticsRequest {
            scope,
            first_day: Some(rp::LocalDate {
                year: 2026,
                month: 1,
                day: 1,
            }),
            last_day: Some(rp::LocalDate {
                year: 2027,
                month: 12,
                day: 31,
            }),
            as_of: None,
        };
        let (mut reports, mut deadlines) = (self.reports(), self.deadlines());
        match rpc {
            Rpc::GetStatistics => reports
                .get_statistics(as_who(who, statistics(office(X)))?)
                .await
                .map(drop),
            Rpc::GetStatisticsOfProvince => reports
                .get_statistics(as_who(who, statistics(province(P)))?)
                .await
                .map(drop),
            Rpc::GetSurveys => reports
                .get_surveys(as_who(who, statistics(office(X)))?)
                .await
                .map(drop),
            Rpc::GetYearlySeries => {
                let request = rp::YearlySeriesRequest {
                    office_code: X.into(),
                    ..Default::default()
                };
                reports
                    .get_yearly_series(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::ListUnits => {
                let request = rp::ListUnitsRequest {
                    province_code: P.into(),
                };
                reports.list_units(as_who(who, request)?).await.map(drop)
            }
            Rpc::GetProcedureCounts => {
                let request = rp::ProcedureCountsRequest {
                    province_code: P.into(),
                    ..Default::default()
                };
                reports
                    .get_procedure_counts(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::ListOverdue => {
                let request = rp::ListOverdueRequest {
                    scope: office(X),
                    ..Default::default()
                };
                deadlines
                    .list_overdue(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::ListDueSoon => {
                let request = rp::ListDueSoonRequest {
                    scope: province(P),
                    within_hours: 24,
                    ..Default::default()
                };
                deadlines
                    .list_due_soon(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::WatchLate => {
                let request = rp::WatchLateRequest {
                    scope: office(X),
                    after_position: None,
                };
                deadlines.watch_late(as_who(who, request)?).await.map(drop)
            }
            other => Err(Status::internal(format!("{other:?} is no read"))),
        }
    }

    async fn operate_call(&self, rpc: Rpc, who: Who, target: &str) -> Result<(), Status> {
        let mut desk = self.desk();
        match rpc {
            Rpc::RegisterProcedure => {
                let request = pb::RegisterProcedureRequest {
                    meta: meta("Hà"),
                    province_code: P.into(),
                    definition: definition(target),
                };
                desk.register_procedure(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::ChangeProcedure => {
                let request = pb::ChangeProcedureRequest {
                    meta: meta("Hà"),
                    definition: definition(target),
                };
                desk.change_procedure(as_who(who, request)?).await.map(drop)
            }
            Rpc::WithdrawProcedure => {
                let request = pb::WithdrawProcedureRequest {
                    meta: meta("Hà"),
                    code: target.into(),
                    reason: "bãi bỏ".into(),
                };
                desk.withdraw_procedure(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::ImportDossiers => {
                let report = self.import(who, target, P).await?;
                match report.imported {
                    1 => Ok(()),
                    _ => Err(Status::internal(format!("not imported: {report:?}"))),
                }
            }
            _ => self.whole_log_call(rpc, who).await,
        }
    }

    async fn import(&self, who: Who, id: &str, province: &str) -> Result<pb::ImportReport, Status> {
        let row = pb::ImportDossier {
            row: 1,
            actor: "Hà".into(),
            dossier_id: id.into(),
            office_code: if province == P {
                X.into()
            } else {
                "01-Z".into()
            },
            province_code: province.into(),
            procedure: procedure(),
            channel: ev::Channel::InPerson.into(),
            received_at: ts(now().plus_micros(-3_600_000_000)),
            due_at: days_from_now(30),
            ..Default::default()
        };
        let rows = tokio_stream::iter(vec![row]);
        Ok(self
            .desk()
            .import_dossiers(as_who(who, rows)?)
            .await?
            .into_inner())
    }

    async fn whole_log_call(&self, rpc: Rpc, who: Who) -> Result<(), Status> {
        let (rebuilds, parked) = (
            RebuildsClient::new(self.projection.clone()),
            ParkedEventsClient::new(self.projection.clone()),
        );
        match rpc {
            Rpc::Republish => {
                let head = self
                    .store
                    .head()
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
                let request = pb::RepublishRequest {
                    from_position: head,
                };
                let mut progress = self
                    .desk()
                    .republish(as_who(who, request)?)
                    .await?
                    .into_inner();
                while progress.message().await?.is_some() {}
                Ok(())
            }
            Rpc::ReadEvents => {
                let request = pb::ReadEventsRequest {
                    after_position: 0,
                    limit: 1,
                };
                let mut log = LogClient::new(self.intake.clone());
                log.read_events(as_who(who, request)?).await.map(drop)
            }
            Rpc::StartRebuild => {
                let request = rp::StartRebuildRequest {};
                rebuilds
                    .clone()
                    .start_rebuild(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::GetRebuild => {
                let request = rp::GetRebuildRequest {};
                rebuilds
                    .clone()
                    .get_rebuild(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::ListParked => {
                let request = ad::ListParkedRequest::default();
                parked
                    .clone()
                    .list_parked(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            Rpc::ReplayParked => {
                let request = ad::ReplayParkedRequest::default();
                parked
                    .clone()
                    .replay_parked(as_who(who, request)?)
                    .await
                    .map(drop)
            }
            other => Err(Status::internal(format!("{other:?} is no operation"))),
        }
    }

    /// Receives dossier `id` of X as `who`; returns the slip's lookup code.
    async fn receive_with_code(&self, who: Who, id: &str) -> anyhow::Result<String> {
        let reply = self
            .desk()
            .receive_dossier(as_who(who, self.receipt(id, X, meta("Lan")))?)
            .await?
            .into_inner();
        Ok(reply.lookup_code)
    }

    /// GetDossier of `target`, or LookUpDossier of `target` ("<id> <code>").
    async fn dossier_call(&self, rpc: Rpc, who: Who, target: &str) -> Result<(), Status> {
        let mut dossiers = DossierServiceClient::new(self.intake.clone());
        match rpc {
            Rpc::GetDossier => {
                let request = pb::GetDossierRequest {
                    dossier_id: target.into(),
                };
                dossiers.get_dossier(as_who(who, request)?).await.map(drop)
            }
            _ => {
                let (id, code) = target.split_once(' ').unwrap_or((target, ""));
                let request = pb::LookUpDossierRequest {
                    dossier_id: id.into(),
                    lookup_code: code.into(),
                };
                dossiers
                    .look_up_dossier(as_who(who, request)?)
                    .await
                    .map(drop)
            }
        }
    }

    async fn head(&self) -> anyhow::Result<u64> {
        self.store.head().await
    }

    /// Sets up what `rpc` acts on (as X's clerk or P's operator) and
    /// returns its target.
    async fn prepare(&self, rpc: Rpc, n: usize) -> anyhow::Result<String> {
        let target = format!("{rpc:?}-{n}");
        if rpc.needs() == Needs::Desk {
            for step in rpc.preparation() {
                self.desk_call(*step, Who::ClerkX, &target, "Lan").await?;
            }
        }
        if matches!(rpc.needs(), Needs::ReadDossier | Needs::LookUp) {
            let code = self.receive_with_code(Who::ClerkX, &target).await?;
            // The lookup's target carries its code.
            if rpc == Rpc::LookUpDossier {
                return Ok(format!("{target} {code}"));
            }
        }
        if matches!(rpc, Rpc::ChangeProcedure | Rpc::WithdrawProcedure) {
            self.operate_call(Rpc::RegisterProcedure, Who::OperatorP, &target)
                .await?;
        }
        Ok(target)
    }
}

/// Given both services with authentication, when every caller calls
/// every RPC, then each answers as the roles say, a dossier of another
/// office is reported exactly as an unknown one, and only served calls
/// append.
#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_roles_say() -> anyhow::Result<()> {
    let world = World::start().await?;
    for (n, rpc) in RPCS.into_iter().enumerate() {
        let target = world.prepare(rpc, n).await?;
        for who in EVERYONE {
            // A receipt by each caller names a dossier of its own.
            let target = match rpc.needs() {
                Needs::Take => format!("{target}-{who:?}"),
                _ => target.clone(),
            };
            let before = world.head().await?;
            let result = world.call(rpc, who, &target).await;
            let want = expected(rpc.needs(), who);
            assert_eq!(answer(&result), want, "{rpc:?} by {who:?}: {result:?}");
            let appended = world.head().await? - before;
            let should = u64::from(want == Answer::Served && rpc.appends());
            assert_eq!(appended, should, "{rpc:?} by {who:?} appended {appended}");
            if want == Answer::Unknown {
                let unknown = world.call(rpc, who, "NEVER-RECEIVED").await;
                same_as_unknown(&result, &unknown, &target);
            }
        }
    }
    world.stop().await
}

/// The refusal for a dossier of another office equals the one for an id
/// never received, but for the id itself.
fn same_as_unknown(hidden: &Result<(), Status>, unknown: &Result<(), Status>, id: &str) {
    let (Err(hidden), Err(unknown)) = (hidden, unknown) else {
        panic!("both must be refused: {hidden:?} {unknown:?}");
    };
    assert_eq!(hidden.code(), unknown.code());
    assert_eq!(
        hidden.message(),
        unknown.message().replace("NEVER-RECEIVED", id)
    );
    let reason = |s: &Status| s.get_error_details().error_info().map(|i| i.reason.clone());
    assert_eq!(reason(hidden), reason(unknown));
}

/// Given dossiers of X and of Y, when X's clerk names X in a receipt
/// under Y's dossier id, or acts on Y's dossier, or claims another
/// identity in the request's actor, then nothing of Y changes, and every
/// event records the verified identity.
#[tokio::test]
async fn a_clerk_acts_only_as_itself_on_its_own_office() -> anyhow::Result<()> {
    let world = World::start().await?;
    let desk = |who, rpc, id: &'static str, display: &'static str| {
        let world = &world;
        async move { world.desk_call(rpc, who, id, display).await }
    };
    let y_receipt = || world.receipt("D-Y", Y, meta("Minh"));
    world
        .desk()
        .receive_dossier(as_who(Who::ClerkY, y_receipt())?)
        .await?;
    let before = world.head().await?;

    // A receipt for X under Y's id: the id is taken, and that is all.
    let taken = world
        .desk()
        .receive_dossier(as_who(Who::ClerkX, world.receipt("D-Y", X, meta("Lan")))?)
        .await
        .expect_err("Y's id is taken");
    assert_eq!(taken.code(), Code::FailedPrecondition);
    assert_eq!(
        taken.message(),
        "cannot receive it: dossier D-Y already exists"
    );
    // Y's own office in the request changes nothing: it is not X's.
    let denied = world
        .desk()
        .receive_dossier(as_who(Who::ClerkX, y_receipt())?)
        .await
        .expect_err("not X's office");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unknown = desk(Who::ClerkX, Rpc::RecordResult, "D-Y", "Lan").await;
    assert_eq!(answer(&unknown), Answer::Unknown);
    assert_eq!(world.head().await?, before, "nothing of Y changed");

    // The request's actor names; it cannot identify.
    desk(Who::ClerkX, Rpc::ReceiveDossier, "D-X", "clerk-y@68-Y").await?;
    desk(Who::ClerkX, Rpc::RecordResult, "D-X", "Lan").await?;
    desk(Who::ClerkY, Rpc::RecordResult, "D-Y", "Minh").await?;
    world
        .import(Who::OperatorP, "IMPORTED-1", P)
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    let rejected = world
        .import(Who::OperatorP, "IMPORTED-2", Q)
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    assert_eq!((rejected.imported, rejected.rejected.len()), (0, 1));

    let actors: Vec<(String, String)> = world
        .store
        .read_after(0, 100)
        .await?
        .iter()
        .map(|e| bus::decode_event(&e.payload).map(|e| (e.dossier_id, e.actor)))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(
        actors,
        [
            ("D-Y".to_owned(), Who::ClerkY.actor("Minh")),
            ("D-X".to_owned(), Who::ClerkX.actor("clerk-y_68-Y")),
            ("D-X".to_owned(), Who::ClerkX.actor("Lan")),
            ("D-Y".to_owned(), Who::ClerkY.actor("Minh")),
            ("IMPORTED-1".to_owned(), Who::OperatorP.actor("Hà")),
        ]
    );
    world.stop().await
}

/// Given a dossier of X moved through the desk, when its manager asks for
/// it, then its record shows every event with its verified actor and its
/// request id; a clerk of Y is told it is unknown; the citizen holding the
/// slip's code, without credentials, gets its state and dates, and a wrong
/// code gets what an unknown dossier gets.
#[tokio::test]
async fn a_dossier_shows_its_history_and_the_citizen_its_status() -> anyhow::Result<()> {
    let world = World::start().await?;
    let code = world.receive_with_code(Who::ClerkX, "HS-1").await?;
    assert_eq!(code.len(), 10, "{code}");
    for rpc in [
        Rpc::RequestSupplement,
        Rpc::ProvideSupplement,
        Rpc::RecordResult,
    ] {
        world.desk_call(rpc, Who::ClerkX, "HS-1", "Lan").await?;
    }
    let mut dossiers = DossierServiceClient::new(world.intake.clone());
    let get = |who| {
        let request = pb::GetDossierRequest {
            dossier_id: "HS-1".into(),
        };
        as_who(who, request)
    };
    let record = dossiers
        .get_dossier(get(Who::ManagerX)?)
        .await?
        .into_inner();
    assert_eq!(
        (record.office_code.as_str(), record.province_code.as_str()),
        (X, P)
    );
    let status = record.status.clone().unwrap_or_default();
    assert_eq!(status.state(), pb::DossierState::ResultReady);
    let stored = world.store.read_after(0, 100).await?;
    assert_eq!(record.history.len(), 4);
    for (event, stored) in record.history.iter().zip(&stored) {
        let logged = bus::decode_event(&stored.payload).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(event.actor, Who::ClerkX.actor("Lan"));
        assert_eq!(
            (event.event_id.as_str(), event.request_id.as_str()),
            (logged.event_id.as_str(), logged.request_id.as_str())
        );
        assert!(!event.request_id.is_empty() && event.occurred_at.is_some());
    }
    let hidden = dossiers.get_dossier(get(Who::ClerkY)?).await;
    let never = dossiers
        .get_dossier(as_who(
            Who::ClerkY,
            pb::GetDossierRequest {
                dossier_id: "NEVER-RECEIVED".into(),
            },
        )?)
        .await;
    same_as_unknown(&hidden.map(drop), &never.map(drop), "HS-1");

    let look_up = |id: &str, code: &str| pb::LookUpDossierRequest {
        dossier_id: id.into(),
        lookup_code: code.into(),
    };
    let typed = format!("{}-{}", &code[..5], &code[5..]).to_ascii_lowercase();
    let seen = dossiers
        .look_up_dossier(as_who(Who::Nobody, look_up("HS-1", &typed))?)
        .await?
        .into_inner();
    let seen = seen.status.unwrap_or_default();
    assert_eq!(seen, status, "the citizen sees the state and the dates");
    assert!(seen.received_at.is_some() && seen.result_ready_at.is_some());
    let mut wrong = code.clone().into_bytes();
    wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong)?;
    let refused = dossiers
        .look_up_dossier(as_who(Who::Nobody, look_up("HS-1", &wrong))?)
        .await;
    let unknown = dossiers
        .look_up_dossier(as_who(Who::Nobody, look_up("NEVER-RECEIVED", &code))?)
        .await;
    same_as_unknown(&refused.map(drop), &unknown.map(drop), "HS-1");
    world.stop().await
}
