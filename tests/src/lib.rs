//! Test harness for Motcua's end-to-end tests and load generator: on top of
//! `testkit` (a real `nats-server` with its own store on a free port, a
//! fresh database, PostgreSQL or SQLite, per test, bounded retries), both
//! services, in process or as child processes that can be killed; one
//! client helper per RPC.
//!
//! It must not reach into the services' internals beyond their public
//! `build`/`run_until_stopped` and gRPC APIs. Tests of a service's
//! components live in that service's crate.

pub mod district;

use server::Service as _;
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use domain::{LocalDay, Timestamp};
use proto::{
    events::v1 as ev,
    intake::v1::{self as pb, intake_client::IntakeClient},
    reports::v1::{self as rp, deadlines_client::DeadlinesClient, reports_client::ReportsClient},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use testkit::{
    Backend, NatsCluster, NatsServer, PgServer, TestDb, eventually, free_port, unique_stream,
};

impl Desk {
    /// Receives dossiers `{prefix}-{n:04}` for each `n` of `ids` at `office`
    /// on `day` at 8:00, due in 2099: no Late event joins them.
    pub async fn receive_many(
        &self,
        prefix: &str,
        office: &str,
        day: LocalDay,
        ids: std::ops::Range<u32>,
    ) -> anyhow::Result<()> {
        let due = Timestamp::at_local(LocalDay::from_ymd(2099, 1, 5).context("date")?, 17, 0);
        for n in ids {
            let id = format!("{prefix}-{n:04}");
            self.receive(&id, office, Timestamp::at_local(day, 8, 0), due)
                .await
                .with_context(|| format!("receive {id}"))?;
        }
        Ok(())
    }

    /// `motcua republish --from 0`: the events published, or the message
    /// of the status that stopped it (what an operator reads).
    pub async fn republish_all(&self) -> anyhow::Result<Result<u64, String>> {
        let mut progress = self
            .client
            .clone()
            .republish(pb::RepublishRequest { from_position: 0 })
            .await?
            .into_inner();
        let mut published = 0;
        while let Some(step) = futures::StreamExt::next(&mut progress).await {
            match step {
                Ok(step) => published = step.published,
                Err(status) => return Ok(Err(status.message().to_owned())),
            }
        }
        Ok(Ok(published))
    }
}

/// The `grpc.health.v1` status of `service` at `addr`.
pub async fn health(addr: SocketAddr, service: &str) -> anyhow::Result<i32> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    Ok(HealthClient::new(channel(addr).await?)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner()
        .status)
}

/// The stream settings the services get for `stream` in the tests: its
/// subjects under `{stream, lowercase}.events`.
pub fn stream_settings(stream: &str) -> bus::StreamSettings {
    bus::StreamSettings {
        stream: stream.to_owned(),
        subject_prefix: format!("{}.events", stream.to_ascii_lowercase()),
        ..Default::default()
    }
}

/// Both services running inside the test process.
pub struct Pair {
    pub nats: NatsServer,
    pub intake_db: TestDb,
    pub projection_db: TestDb,
    pub stream: String,
    pub intake: InProcess,
    pub projection: InProcess,
    pub intake_store: intake::EventStore,
}

/// A service task and the token that stops it.
pub struct InProcess {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_in_place().await
    }

    /// Stops the service and waits for it; another may take its place.
    pub async fn stop_in_place(&mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        (&mut self.task).await.context("join a service task")?
    }
}

pub async fn start_intake(
    database_url: &str,
    nats_url: &str,
    stream: &str,
) -> anyhow::Result<(InProcess, intake::EventStore)> {
    start_intake_with_clock(database_url, nats_url, stream, intake::system_clock()).await
}

/// An intake reading time from `clock` (see `intake::offset_clock`).
pub async fn start_intake_with_clock(
    database_url: &str,
    nats_url: &str,
    stream: &str,
    clock: intake::Clock,
) -> anyhow::Result<(InProcess, intake::EventStore)> {
    let config = intake::Config::for_tests(database_url, nats_url, stream);
    start_intake_configured(config, clock).await
}

/// An intake built from `config` (see `intake::Config::for_tests`).
pub async fn start_intake_configured(
    config: intake::Config,
    clock: intake::Clock,
) -> anyhow::Result<(InProcess, intake::EventStore)> {
    let app = intake::Application::build_with_clock(config, clock).await?;
    let addr = app.local_addr();
    let store = app.store().clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok((InProcess { addr, stop, task }, store))
}

pub async fn start_projection(
    database_url: &str,
    nats_url: &str,
    stream: &str,
) -> anyhow::Result<InProcess> {
    start_projection_named(database_url, nats_url, stream, "projection").await
}

/// A projection with its own durable consumer name: one consumer per read
/// model database.
pub async fn start_projection_named(
    database_url: &str,
    nats_url: &str,
    stream: &str,
    consumer: &str,
) -> anyhow::Result<InProcess> {
    let mut config = projection::Config::for_tests(database_url, nats_url, stream);
    config.consumer = consumer.to_owned();
    start_projection_configured(config).await
}

/// A projection built from `config` (see `projection::Config::for_tests`).
pub async fn start_projection_configured(config: projection::Config) -> anyhow::Result<InProcess> {
    let app = projection::Application::build(config).await?;
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok(InProcess { addr, stop, task })
}

impl Pair {
    pub async fn start(backend: Backend) -> anyhow::Result<Self> {
        Self::start_with_clock(backend, intake::system_clock()).await
    }

    /// Both services, intake reading time from `clock`.
    pub async fn start_with_clock(backend: Backend, clock: intake::Clock) -> anyhow::Result<Self> {
        telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
        let nats = NatsServer::start().await?;
        let intake_db = TestDb::new(backend, "intake").await?;
        let projection_db = TestDb::new(backend, "projection").await?;
        let stream = unique_stream();
        let (intake, intake_store) =
            start_intake_with_clock(&intake_db.url, &nats.url(), &stream, clock).await?;
        let projection = start_projection(&projection_db.url, &nats.url(), &stream).await?;
        Ok(Self {
            nats,
            intake_db,
            projection_db,
            stream,
            intake,
            projection,
            intake_store,
        })
    }

    pub async fn desk(&self) -> anyhow::Result<Desk> {
        Desk::connect(self.intake.addr).await
    }

    pub async fn province(&self) -> anyhow::Result<Province> {
        Province::connect(self.projection.addr).await
    }

    pub async fn deadlines(&self) -> anyhow::Result<Deadlines> {
        Deadlines::connect(self.projection.addr).await
    }
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connect to {addr}"))
}

/// A one-stop desk: one helper per intake RPC.
#[derive(Clone)]
pub struct Desk {
    client: IntakeClient<Channel>,
}

pub type Reply = Result<pb::CommandReply, tonic::Status>;

pub fn ts(t: Timestamp) -> Option<prost_types::Timestamp> {
    Some(bus::timestamp_to_proto(t))
}

/// Command metadata with a fresh request id.
pub fn meta(at: Timestamp) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta {
        request_id: uuid::Uuid::new_v4().to_string(),
        actor: "clerk-1".into(),
        occurred_at: ts(at),
    })
}

/// What every test dossier is about.
pub fn procedure() -> Option<ev::Procedure> {
    Some(ev::Procedure {
        code: "1.004227".into(),
        field: "dat-dai".into(),
    })
}

impl Desk {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            client: IntakeClient::new(channel(addr).await?),
        })
    }

    /// The gRPC client itself, for a request no helper builds.
    pub fn client(&self) -> IntakeClient<Channel> {
        self.client.clone()
    }

    pub async fn receive(
        &self,
        dossier: &str,
        office: &str,
        at: Timestamp,
        due: Timestamp,
    ) -> Reply {
        self.receive_with(pb::ReceiveDossierRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
            office_code: office.into(),
            province_code: "BTH".into(),
            procedure: procedure(),
            channel: ev::Channel::InPerson.into(),
            due_at: ts(due),
            due_on: None,
        })
        .await
    }

    pub async fn receive_with(&self, r: pb::ReceiveDossierRequest) -> Reply {
        self.client
            .clone()
            .receive_dossier(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn submit_online(&self, r: pb::SubmitOnlineRequest) -> Reply {
        self.client
            .clone()
            .submit_online(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn refuse(&self, dossier: &str, at: Timestamp, reason: &str) -> Reply {
        let r = pb::RefuseAtIntakeRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
            reason: reason.into(),
        };
        self.client
            .clone()
            .refuse_at_intake(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn request_supplement(&self, dossier: &str, at: Timestamp) -> Reply {
        let r = pb::RequestSupplementRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
            reason: "thiếu giấy tờ".into(),
        };
        self.client
            .clone()
            .request_supplement(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn provide_supplement(
        &self,
        dossier: &str,
        at: Timestamp,
        due: Option<Timestamp>,
    ) -> Reply {
        let r = pb::ProvideSupplementRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
            due_at: due.and_then(ts),
            due_on: None,
        };
        self.client
            .clone()
            .provide_supplement(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn reschedule(&self, dossier: &str, at: Timestamp, due: Timestamp) -> Reply {
        let r = pb::RescheduleRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
            due_at: ts(due),
            due_on: None,
            reason: "xin lỗi, hẹn lại".into(),
        };
        self.client
            .clone()
            .reschedule(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn record_result(&self, dossier: &str, at: Timestamp) -> Reply {
        self.record_result_with(pb::RecordResultRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
        })
        .await
    }

    pub async fn record_result_with(&self, r: pb::RecordResultRequest) -> Reply {
        self.client
            .clone()
            .record_result(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn return_result(&self, dossier: &str, at: Timestamp) -> Reply {
        let r = pb::ReturnResultRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
        };
        self.client
            .clone()
            .return_result(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn withdraw(&self, dossier: &str, at: Timestamp) -> Reply {
        let r = pb::WithdrawRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
            reason: String::new(),
        };
        self.client
            .clone()
            .withdraw(r)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn stop(&self, dossier: &str, at: Timestamp) -> Reply {
        let r = pb::StopRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
            reason: "dừng theo yêu cầu".into(),
        };
        self.client.clone().stop(r).await.map(|r| r.into_inner())
    }

    pub async fn record_survey(
        &self,
        dossier: &str,
        at: Timestamp,
        scale: ev::RatingScale,
        rating: ev::Rating,
    ) -> Reply {
        let r = pb::RecordSurveyRequest {
            meta: meta(at),
            dossier_id: dossier.into(),
            scale: scale.into(),
            rating: rating.into(),
            comment: String::new(),
        };
        self.client
            .clone()
            .record_survey(r)
            .await
            .map(|r| r.into_inner())
    }
}

/// A province system: one helper per reports RPC.
#[derive(Clone)]
pub struct Province {
    client: ReportsClient<Channel>,
}

pub fn date(day: LocalDay) -> Option<rp::LocalDate> {
    let (year, month, day) = day.ymd();
    Some(rp::LocalDate {
        year,
        month: i32::from(month),
        day: i32::from(day),
    })
}

pub fn office_scope(office: &str) -> Option<rp::Scope> {
    Some(rp::Scope {
        unit: Some(rp::scope::Unit::OfficeCode(office.into())),
        ..Default::default()
    })
}

impl Province {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            client: ReportsClient::new(channel(addr).await?),
        })
    }

    pub async fn statistics(
        &self,
        office: &str,
        from: LocalDay,
        to: LocalDay,
    ) -> anyhow::Result<rp::Statistics> {
        Ok(self
            .client
            .clone()
            .get_statistics(rp::StatisticsRequest {
                scope: office_scope(office),
                first_day: date(from),
                last_day: date(to),
                as_of: None,
            })
            .await?
            .into_inner())
    }

    pub async fn statistics_for(
        &self,
        scope: rp::Scope,
        from: LocalDay,
        to: LocalDay,
    ) -> anyhow::Result<rp::Statistics> {
        Ok(self
            .client
            .clone()
            .get_statistics(rp::StatisticsRequest {
                scope: Some(scope),
                first_day: date(from),
                last_day: date(to),
                as_of: None,
            })
            .await?
            .into_inner())
    }

    pub async fn surveys(
        &self,
        office: &str,
        from: LocalDay,
        to: LocalDay,
    ) -> anyhow::Result<rp::SurveyAggregate> {
        Ok(self
            .client
            .clone()
            .get_surveys(rp::StatisticsRequest {
                scope: office_scope(office),
                first_day: date(from),
                last_day: date(to),
                as_of: None,
            })
            .await?
            .into_inner())
    }

    /// Any yearly series request, with the service's refusal as it came.
    pub async fn yearly_with(
        &self,
        request: rp::YearlySeriesRequest,
    ) -> Result<rp::YearlySeries, tonic::Status> {
        let series = self.client.clone().get_yearly_series(request).await?;
        Ok(series.into_inner())
    }

    /// The offices and provinces with events; `province` empty for all.
    pub async fn units(&self, province: &str) -> Result<rp::ListUnitsResponse, tonic::Status> {
        let units = self
            .client
            .clone()
            .list_units(rp::ListUnitsRequest {
                province_code: province.into(),
            })
            .await?;
        Ok(units.into_inner())
    }

    pub async fn yearly(&self, office: &str) -> anyhow::Result<rp::YearlySeries> {
        Ok(self
            .client
            .clone()
            .get_yearly_series(rp::YearlySeriesRequest {
                office_code: office.into(),
                province_code: String::new(),
                from_year: 0,
                to_year: 0,
                as_of: None,
            })
            .await?
            .into_inner())
    }
}

/// A workspace binary (`intake`, `projection`, `motcua`) in the target folder
/// beside the test executable. Cargo builds another package's binaries only
/// when that package is tested too: `cargo test --workspace` builds them all,
/// `cargo test -p tests` none, so build it first (`cargo build -p <name>`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("find the test binary")?;
    // A test runs from target/<profile>/deps/, a binary from target/<profile>/.
    let dir = exe.parent().context("find the target folder")?;
    let candidates = [
        dir.join(name),
        dir.parent().map_or_else(PathBuf::new, |d| d.join(name)),
    ];
    let Some(path) = candidates.into_iter().find(|p| p.is_file()) else {
        bail!(
            "{name} binary not found beside {}: build it with `cargo build -p {name}`, or run the tests with `cargo test --workspace`, which builds every member's binaries",
            exe.display()
        );
    };
    Ok(path)
}

/// A service running as a child process, killed on drop.
pub struct ChildService {
    pub addr: SocketAddr,
    child: Child,
}

impl ChildService {
    /// Starts `intake` or `projection` with `env`, and waits for its port.
    pub async fn start(name: &str, env: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::start_on(name, ([127, 0, 0, 1], free_port()).into(), env).await
    }

    /// As [`Self::start`], on a given address (to restart in place).
    pub async fn start_on(
        name: &str,
        addr: SocketAddr,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let listen_var = if name == "intake" {
            "INTAKE_LISTEN"
        } else {
            "PROJECTION_LISTEN"
        };
        let mut command = Command::new(binary(name)?);
        // `MOTCUA_CHILD_LOG` sets the children's log filter (default: warn).
        let log = std::env::var("MOTCUA_CHILD_LOG").unwrap_or_else(|_| "warn".into());
        command
            .env(listen_var, addr.to_string())
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().with_context(|| format!("start {name}"))?;
        let service = Self { addr, child };
        eventually(Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(addr).await?;
            Ok(())
        })
        .await
        .with_context(|| format!("wait for {name} to listen"))?;
        Ok(service)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no draining.
    pub fn kill(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("send SIGTERM")?;
        self.child.wait().context("wait for the service to exit")
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Deadlines: overdue lists and the late feed
// ---------------------------------------------------------------------------

/// The real time now.
pub fn real_now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    Timestamp::from_micros(micros)
}

/// The clock offset (micros) that makes intake's clock read `fake_now` now.
pub fn offset_to(fake_now: Timestamp) -> i64 {
    fake_now.micros() - real_now().micros()
}

/// An operator or desk watching deadlines: one helper per Deadlines RPC.
#[derive(Clone)]
pub struct Deadlines {
    client: DeadlinesClient<Channel>,
}

impl Deadlines {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            client: DeadlinesClient::new(channel(addr).await?),
        })
    }

    /// Every overdue dossier of `office` at `as_of`, following the pages.
    pub async fn overdue(
        &self,
        office: &str,
        as_of: Option<Timestamp>,
        page_size: u32,
    ) -> anyhow::Result<Vec<rp::OpenDossier>> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .client
                .clone()
                .list_overdue(rp::ListOverdueRequest {
                    scope: office_scope(office),
                    as_of: as_of.and_then(ts),
                    page_size,
                    page_token: token,
                })
                .await?
                .into_inner();
            all.extend(page.dossiers);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// Every dossier of `office` due within `hours` of `from`.
    pub async fn due_soon(
        &self,
        office: &str,
        from: Timestamp,
        hours: u32,
    ) -> anyhow::Result<Vec<rp::OpenDossier>> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .client
                .clone()
                .list_due_soon(rp::ListDueSoonRequest {
                    scope: office_scope(office),
                    from: ts(from),
                    within_hours: hours,
                    page_size: 7,
                    page_token: token,
                })
                .await?
                .into_inner();
            all.extend(page.dossiers);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// The live late feed of `office`, after `position` (None: from now).
    pub async fn watch(
        &self,
        office: &str,
        after_position: Option<u64>,
    ) -> anyhow::Result<tonic::Streaming<rp::LateNotice>> {
        Ok(self
            .client
            .clone()
            .watch_late(rp::WatchLateRequest {
                scope: office_scope(office),
                after_position,
            })
            .await?
            .into_inner())
    }
}

/// The next notice of a watch, waiting at most `timeout`.
pub async fn next_notice(
    stream: &mut tonic::Streaming<rp::LateNotice>,
    timeout: Duration,
) -> anyhow::Result<rp::LateNotice> {
    match tokio::time::timeout(timeout, stream.message()).await {
        Ok(Ok(Some(n))) => Ok(n),
        Ok(Ok(None)) => bail!("the late feed ended"),
        Ok(Err(status)) => bail!("the late feed failed: {status}"),
        Err(_) => bail!("no late notice within {timeout:?}"),
    }
}

/// The Prometheus text a service's metrics endpoint serves on `port`.
pub async fn scrape_metrics(port: u16) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    conn.read_to_string(&mut body).await?;
    Ok(body)
}

/// The value of the unlabelled sample `name` in scraped metrics.
pub fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// CPU seconds (user + system) a process has used so far; 0 when unknown.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `state`.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5); here 11 and 12.
    (ticks(11) + ticks(12)) as f64 / clock_ticks_per_second()
}

/// CPU seconds the whole machine has spent busy (not idle or waiting).
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle) as f64 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ: 100 on every Linux this runs on (sysconf needs libc).
    100.0
}

/// How far the projection on `database_url` has applied the stream: the
/// checkpoint of its serving generation (its consumer acknowledges nothing,
/// so JetStream's ack floor says nothing).
pub async fn applied_through(database_url: &str) -> anyhow::Result<u64> {
    projection::serving_checkpoint(database_url, "projection").await
}

/// A test CA and a certificate for `localhost` and 127.0.0.1 signed by it,
/// written to `dir` as `ca.pem`, `cert.pem` and `key.pem`; the CA's PEM.
pub fn test_certificates(dir: &std::path::Path) -> anyhow::Result<String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let cert = CertificateParams::new(names)?.signed_by(&key, &ca)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    Ok(ca.pem())
}

/// A gRPC channel over TLS to `localhost` on `addr`'s port, trusting the
/// CA `ca` (PEM) and presenting the client certificate `identity`, if any.
pub async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<tonic::transport::Identity>,
) -> anyhow::Result<Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Ok(
        Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
            .tls_config(tls)?
            .timeout(Duration::from_secs(10))
            .connect()
            .await?,
    )
}

/// The environment the shipped NATS configuration (`deploy/nats`) reads:
/// its JetStream store in `dir/store`, the certificates
/// [`test_certificates`] wrote in `dir`, and the two users' passwords.
pub fn shipped_nats_env(
    dir: &std::path::Path,
    store: &str,
    intake_password: &str,
    projection_password: &str,
) -> Vec<(String, String)> {
    let path = |name: &str| dir.join(name).display().to_string();
    [
        ("MOTCUA_NATS_STORE_DIR", path(store)),
        ("MOTCUA_NATS_TLS_CERT", path("cert.pem")),
        ("MOTCUA_NATS_TLS_KEY", path("key.pem")),
        ("MOTCUA_NATS_TLS_CA", path("ca.pem")),
        ("MOTCUA_NATS_INTAKE_PASSWORD", intake_password.to_owned()),
        (
            "MOTCUA_NATS_PROJECTION_PASSWORD",
            projection_password.to_owned(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// The dossier of every event in `store`'s log, as a set.
pub async fn logged_dossiers(
    store: &intake::EventStore,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    store
        .read_after(0, u32::MAX)
        .await?
        .iter()
        .map(|e| bus::decode_event(&e.payload).map(|e| e.dossier_id))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A receipt now at office TUYPHONG of BTH, due in 30 days: the deadline
/// monitor marks nothing late while a test counts events.
pub fn receipt_due_later(dossier: &str) -> pb::ReceiveDossierRequest {
    let now = real_now();
    pb::ReceiveDossierRequest {
        meta: meta(now),
        dossier_id: dossier.into(),
        office_code: "TUYPHONG".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: ev::Channel::InPerson.into(),
        due_at: ts(now.plus_micros(30 * 86_400_000_000)),
        due_on: None,
    }
}
