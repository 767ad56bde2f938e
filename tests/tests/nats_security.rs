//! The bus as a security boundary (issue 21, item 6): a real nats-server
//! started with the shipped configuration, `deploy/nats/nats-server.conf`,
//! with certificates and passwords made here. Intake and the projection,
//! each with its own user over TLS, carry a dossier to the figures; nobody
//! else may publish events, a projection without credentials reads
//! nothing, and a plaintext client is turned away.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::{ConnectErrorKind, ConnectOptions, jetstream};
use domain::Timestamp;
use proto::reports::v1::{
    self as rp, rebuilds_client::RebuildsClient, reports_client::ReportsClient,
};
use server::Service as _;
use testkit::NatsConfig;
use tests::{Backend, Desk, InProcess, NatsServer, Province, TestDb, eventually};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

/// The stream and subjects the shipped configuration names.
const STREAM: &str = "MOTCUA_EVENTS";
const PREFIX: &str = "motcua.events";
/// Test-only passwords, handed to the server through its environment.
const INTAKE_PASSWORD: &str = "intake-test-only-6b1d94e0";
const PROJECTION_PASSWORD: &str = "projection-test-only-0c7a52f3";

/// A nats-server with the shipped configuration, and the files a client
/// needs to reach it.
struct Bus {
    nats: NatsServer,
    dir: tempfile::TempDir,
}

impl Bus {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        tests::test_certificates(dir.path())?;
        std::fs::write(dir.path().join("intake.password"), INTAKE_PASSWORD)?;
        std::fs::write(dir.path().join("projection.password"), PROJECTION_PASSWORD)?;
        let env =
            tests::shipped_nats_env(dir.path(), "store", INTAKE_PASSWORD, PROJECTION_PASSWORD);
        let ca = dir.path().join("ca.pem");
        let nats = NatsServer::start_configured(NatsConfig {
            file: shipped_config(),
            env,
            probe: Box::new(move || user("projection", PROJECTION_PASSWORD, &ca)),
        })
        .await?;
        Ok(Self { nats, dir })
    }

    fn url(&self) -> String {
        self.nats.url()
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Points a service's flags at the shipped stream, over TLS, as `name`.
    fn secure(&self, shared: &mut server::SharedArgs, name: Option<&str>) {
        shared.stream = STREAM.to_owned();
        shared.subject_prefix = PREFIX.to_owned();
        shared.nats_ca = Some(self.ca());
        shared.nats_user = name.map(str::to_owned);
        shared.nats_password_file = name.map(|n| self.dir.path().join(format!("{n}.password")));
    }

    /// The number of events in the stream, as the projection's user reads it.
    async fn stored(&self) -> anyhow::Result<u64> {
        let client = user("projection", PROJECTION_PASSWORD, &self.ca())
            .connect(self.url())
            .await?;
        let mut stream = jetstream::new(client).get_stream(STREAM).await?;
        Ok(stream.info().await?.state.messages)
    }
}

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf")
}

/// A client over TLS trusting `ca`, as `name`.
fn user(name: &str, password: &str, ca: &Path) -> ConnectOptions {
    ConnectOptions::with_user_and_password(name.to_owned(), password.to_owned())
        .add_root_certificates(ca.to_path_buf())
        .require_tls(true)
}

fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Timestamp::from_micros(micros)
}

#[tokio::test]
async fn only_intake_publishes_and_the_projection_reads_over_tls() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let bus = Bus::start().await?;
    // PostgreSQL for the read models: on SQLite a rebuild of a few events
    // now and then fails building its indexes ("already exists"), a fault
    // of its own (ARCHITECTURE.md, known gaps), not the bus's.
    let (intake_db, projection_db) = (
        TestDb::new(Backend::Sqlite, "intake").await?,
        TestDb::new(Backend::Postgres, "projection").await?,
    );
    let intake = start_intake(&bus, &intake_db).await?;
    let projection = start_projection(&bus, &projection_db).await?;
    let province = Province::connect(projection.addr).await?;
    receive_until_counted(intake.addr, "D-1", &province, 1).await?;
    assert_eq!(bus.stored().await?, 1, "one event on the stream");
    reads_through_each_kind_of_consumer(projection.addr, &province).await?;
    // A restarted intake reads the stream's last event back to resume; a
    // restarted projection replaces its durable consumer at its checkpoint.
    intake.shutdown().await?;
    projection.shutdown().await?;
    let intake = start_intake(&bus, &intake_db).await?;
    let projection = start_projection(&bus, &projection_db).await?;
    let province = Province::connect(projection.addr).await?;
    receive_until_counted(intake.addr, "D-2", &province, 2).await?;
    assert_eq!(bus.stored().await?, 2, "two events on the stream");

    foreign_publishers_are_refused(&bus).await?;
    assert_eq!(bus.stored().await?, 2, "no refused publish was stored");
    // The same publish as intake is stored: the refusals above were the
    // configuration's, not the test's way of publishing.
    let intake_client = user("intake", INTAKE_PASSWORD, &bus.ca())
        .connect(bus.url())
        .await?;
    publish_event(&jetstream::new(intake_client)).await?;
    assert_eq!(bus.stored().await?, 3, "intake's own publish is stored");

    intake.shutdown().await?;
    projection.shutdown().await
}

/// Intake as the user `intake`, over TLS.
async fn start_intake(bus: &Bus, db: &TestDb) -> anyhow::Result<InProcess> {
    let mut config = intake::Config::for_tests(&db.url, &bus.url(), STREAM);
    bus.secure(&mut config.shared, Some("intake"));
    let app = intake::Application::build(config).await?;
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok(InProcess { addr, stop, task })
}

/// The projection as the user `projection`, over TLS.
async fn start_projection(bus: &Bus, db: &TestDb) -> anyhow::Result<InProcess> {
    let mut config = projection::Config::for_tests(&db.url, &bus.url(), STREAM);
    bus.secure(&mut config.shared, Some("projection"));
    let app = projection::Application::build(config).await?;
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok(InProcess { addr, stop, task })
}

/// Receives `dossier` and waits until today's figures count `received`.
async fn receive_until_counted(
    intake: std::net::SocketAddr,
    dossier: &str,
    province: &Province,
    received: u64,
) -> anyhow::Result<()> {
    Desk::connect(intake)
        .await?
        .receive_with(tests::receipt_due_later(dossier))
        .await?;
    let today = now().local_day();
    let figures = eventually(Duration::from_secs(30), || async {
        let figures = province.statistics("TUYPHONG", today, today).await?;
        anyhow::ensure!(figures.received == received, "not projected: {figures:?}");
        Ok(figures)
    })
    .await?;
    assert_eq!(figures.received, received, "{dossier} reached the figures");
    Ok(())
}

/// An as-of report (an ephemeral consumer) and a rebuild (a named one of
/// its own, deleted after the swap) work with only the projection's
/// permissions.
async fn reads_through_each_kind_of_consumer(
    addr: std::net::SocketAddr,
    province: &Province,
) -> anyhow::Result<()> {
    let today = now().local_day();
    let as_of = ReportsClient::connect(format!("http://{addr}"))
        .await?
        .get_statistics(rp::StatisticsRequest {
            scope: tests::office_scope("TUYPHONG"),
            first_day: tests::date(today),
            last_day: tests::date(today),
            as_of: Some(rp::AsOf {
                point: Some(rp::as_of::Point::LogPosition(1)),
            }),
        })
        .await?
        .into_inner();
    assert_eq!(as_of.received, 1, "the as-of report replayed the stream");

    let mut rebuilds = RebuildsClient::connect(format!("http://{addr}")).await?;
    rebuilds.start_rebuild(rp::StartRebuildRequest {}).await?;
    let done = eventually(Duration::from_secs(60), || {
        let mut rebuilds = rebuilds.clone();
        async move {
            let status = rebuilds
                .get_rebuild(rp::GetRebuildRequest {})
                .await?
                .into_inner();
            let state = rp::RebuildState::try_from(status.state)?;
            anyhow::ensure!(
                matches!(state, rp::RebuildState::Done | rp::RebuildState::Failed),
                "still {state:?}"
            );
            Ok(status)
        }
    })
    .await?;
    assert_eq!(
        (rp::RebuildState::try_from(done.state)?, done.error.as_str()),
        (rp::RebuildState::Done, ""),
        "the rebuild read the stream"
    );
    let figures = province.statistics("TUYPHONG", today, today).await?;
    assert_eq!(figures.received, 1, "the rebuilt generation counts it");
    Ok(())
}

/// A JetStream publish to an event subject, acknowledged within 2 s.
async fn publish_event(js: &jetstream::Context) -> anyhow::Result<()> {
    let subject = format!("{PREFIX}.BTH.TUYPHONG.received");
    let ack = tokio::time::timeout(Duration::from_secs(2), async {
        js.publish(subject, "forged".into()).await?.await
    })
    .await;
    match ack {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!("no acknowledgement within 2 s"),
    }
}

/// The projection's user may not publish events nor touch the stream, and
/// a user the configuration does not know, or no user, cannot connect.
async fn foreign_publishers_are_refused(bus: &Bus) -> anyhow::Result<()> {
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = violations.clone();
    let projection = user("projection", PROJECTION_PASSWORD, &bus.ca())
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event
                    && let Ok(mut seen) = seen.lock()
                {
                    seen.push(error.to_string());
                }
            }
        })
        .connect(bus.url())
        .await?;
    let js = jetstream::new(projection.clone());
    let refused = publish_event(&js).await;
    assert!(refused.is_err(), "the projection published an event");
    let purge = format!("$JS.API.STREAM.PURGE.{STREAM}");
    projection.publish(purge, "{}".into()).await?;
    projection.flush().await?;
    eventually(Duration::from_secs(5), || async {
        let seen = violations.lock().map(|v| v.clone()).unwrap_or_default();
        let refused = |subject: &str| {
            seen.iter()
                .any(|e| e.contains("Permissions Violation") && e.contains(subject))
        };
        anyhow::ensure!(
            refused(PREFIX) && refused("STREAM.PURGE"),
            "the server did not report both violations: {seen:?}"
        );
        Ok(())
    })
    .await?;

    let ca = bus.ca();
    for (what, options) in [
        ("an unknown user", user("intruder", INTAKE_PASSWORD, &ca)),
        ("a wrong password", user("intake", PROJECTION_PASSWORD, &ca)),
        (
            "no user",
            ConnectOptions::new()
                .add_root_certificates(ca.clone())
                .require_tls(true),
        ),
    ] {
        let refused = options
            .connect(bus.url())
            .await
            .map(|_| ())
            .map_err(|e| e.kind());
        assert_eq!(
            refused,
            Err(ConnectErrorKind::AuthorizationViolation),
            "{what}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_projection_without_credentials_reads_nothing() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let bus = Bus::start().await?;
    let projection_db = TestDb::new(Backend::Sqlite, "projection").await?;
    let mut config = projection::Config::for_tests(&projection_db.url, &bus.url(), STREAM);
    bus.secure(&mut config.shared, None);
    let refused = projection::Application::build(config)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:#}"));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("authorization violation")),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_plaintext_client_is_turned_away() -> anyhow::Result<()> {
    let bus = Bus::start().await?;
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", bus.nats.port)).await?;
    let (read, mut write) = socket.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    let info = lines.next_line().await?.unwrap_or_default();
    assert!(info.contains(r#""tls_required":true"#), "{info}");
    // The right password, in the clear: the server must not take it.
    let connect = format!(
        "CONNECT {{\"user\":\"projection\",\"pass\":\"{PROJECTION_PASSWORD}\",\"verbose\":false}}\r\nPING\r\n"
    );
    write.write_all(connect.as_bytes()).await?;
    let mut answers = Vec::new();
    let read_all = async {
        while let Ok(Some(line)) = lines.next_line().await {
            answers.push(line);
        }
    };
    // The server expects a TLS handshake after its INFO and closes the
    // connection at the first plaintext byte, answering nothing.
    let closed = tokio::time::timeout(Duration::from_secs(10), read_all).await;
    assert!(
        closed.is_ok(),
        "the server kept a plaintext client connected"
    );
    assert_eq!(
        answers,
        Vec::<String>::new(),
        "it answered a plaintext client"
    );
    Ok(())
}
