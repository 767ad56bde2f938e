//! Hostile input against a running intake: a request message over the
//! size limit is refused `RESOURCE_EXHAUSTED` (a unary call and a message
//! of the import stream alike), appends nothing, and the next call is
//! served; a burst over a caller's rate gets `RESOURCE_EXHAUSTED` for the
//! calls beyond it, which append nothing either, while health stays open.

use std::num::NonZeroU32;

use domain::Timestamp;
use proto::intake::v1::{
    self as pb, dossier_service_client::DossierServiceClient, intake_client::IntakeClient,
};
use server::{RateSetting, Service as _};
use tests::{Backend, Desk, InProcess, NatsServer, TestDb, meta, procedure, ts, unique_stream};
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};

/// Ten mebibytes: over the default limit of four.
const HUGE: usize = 10 << 20;

/// An intake on SQLite with `limits` as its flags say them.
async fn intake(
    nats: &NatsServer,
    db: &TestDb,
    limits: server::LimitArgs,
) -> anyhow::Result<(InProcess, intake::EventStore)> {
    let mut config = intake::Config::for_tests(&db.url, &nats.url(), &unique_stream());
    config.shared.limits = limits;
    let app = intake::Application::build(config).await?;
    let (addr, store) = (app.local_addr(), app.store().clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok((InProcess { addr, stop, task }, store))
}

fn receipt(dossier: &str, at: Timestamp) -> pb::ReceiveDossierRequest {
    pb::ReceiveDossierRequest {
        meta: meta(at),
        dossier_id: dossier.into(),
        office_code: "TUYPHONG".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: proto::events::v1::Channel::InPerson.into(),
        // Due long after the test: the deadline monitor appends nothing.
        due_at: ts(at.plus_micros(3_650 * 86_400_000_000)),
        due_on: None,
    }
}

fn import_row(row: u64, dossier: &str, at: Timestamp) -> pb::ImportDossier {
    pb::ImportDossier {
        row,
        actor: "importer".into(),
        dossier_id: dossier.into(),
        office_code: "TUYPHONG".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: proto::events::v1::Channel::InPerson.into(),
        received_at: ts(at),
        due_at: ts(at.plus_micros(30 * 86_400_000_000)),
        ..Default::default()
    }
}

fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Timestamp::from_micros(micros)
}

fn code<T>(result: Result<T, tonic::Status>) -> Option<Code> {
    result.err().map(|status| status.code())
}

#[tokio::test]
async fn an_oversize_message_is_refused_and_appends_nothing() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let nats = NatsServer::start().await?;
    let db = TestDb::new(Backend::Sqlite, "intake").await?;
    let (intake, store) = intake(&nats, &db, server::LimitArgs::default()).await?;
    let desk: IntakeClient<Channel> = Desk::connect(intake.addr).await?.client();
    let at = now();

    let huge = receipt(&"D".repeat(HUGE), at);
    let refused = desk.clone().receive_dossier(huge).await;
    assert_eq!(code(refused), Some(Code::ResourceExhausted));

    // A good row, then one over the limit: the stream fails at the second,
    // before the job holding the first reaches the writer.
    let mut big = import_row(2, "I-2", at);
    big.withdraw_reason = "x".repeat(HUGE);
    let rows = futures::stream::iter([import_row(1, "I-1", at), big]);
    let refused = desk.clone().import_dossiers(rows).await;
    assert_eq!(code(refused), Some(Code::ResourceExhausted));
    assert_eq!(store.head().await?, 0, "a refused message appends nothing");

    // The same connection serves the next calls.
    desk.clone().receive_dossier(receipt("D-1", at)).await?;
    let rows = futures::stream::iter([import_row(1, "I-1", at)]);
    let report = desk.clone().import_dossiers(rows).await?.into_inner();
    assert_eq!((report.imported, report.rejected.len()), (1, 0));
    assert_eq!(store.head().await?, 2);
    intake.shutdown().await
}

#[tokio::test]
async fn a_burst_over_the_rate_is_refused_and_appends_nothing() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let nats = NatsServer::start().await?;
    let db = TestDb::new(Backend::Sqlite, "intake").await?;
    // One call a second after a burst of three: the burst below takes far
    // less than the second that would earn a fifth.
    let limits = server::LimitArgs {
        rate_limit: RateSetting::PerSecond(NonZeroU32::MIN),
        rate_burst: NonZeroU32::new(3),
        ..Default::default()
    };
    let (intake, store) = intake(&nats, &db, limits).await?;
    let desk = Desk::connect(intake.addr).await?.client();
    let at = now();

    let mut served = 0_u64;
    let mut exhausted = 0;
    for n in 0..10 {
        match code(
            desk.clone()
                .receive_dossier(receipt(&format!("R-{n}"), at))
                .await,
        ) {
            None => served += 1,
            Some(Code::ResourceExhausted) => exhausted += 1,
            Some(other) => anyhow::bail!("call {n} answered {other:?}"),
        }
    }
    assert!((3..=4).contains(&served), "{served} served");
    assert_eq!(served + exhausted, 10);
    assert_eq!(
        store.head().await?,
        served,
        "a refused call appends nothing"
    );
    // The citizen lookup, open to callers without credentials, draws on
    // the same caller's bucket: guessing codes is as slow as anything else.
    let lookup = DossierServiceClient::new(
        Channel::from_shared(format!("http://{}", intake.addr))?
            .connect()
            .await?,
    )
    .look_up_dossier(pb::LookUpDossierRequest {
        dossier_id: "R-0".into(),
        lookup_code: "0000000000".into(),
    })
    .await;
    assert_eq!(code(lookup), Some(Code::ResourceExhausted));

    let health = tests::health(intake.addr, "motcua.intake.v1.Intake").await?;
    assert_eq!(health, 1, "health is not counted");
    intake.shutdown().await
}
