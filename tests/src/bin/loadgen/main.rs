//! Motcua's load generator: prints each performance figure of the core flow
//! next to the raw baseline measured in the same run, on this machine.
//!
//!   cargo run --release -p tests --bin loadgen -- intake      # commands/s vs raw tonic
//!   cargo run --release -p tests --bin loadgen -- catchup     # backlog events/s vs raw JetStream fetch, RSS
//!   cargo run --release -p tests --bin loadgen -- e2e         # accepted → visible latency at a fixed rate
//!   cargo run --release -p tests --bin loadgen -- late        # due date ends → watching client, p99
//!   cargo run --release -p tests --bin loadgen -- import      # CSV → durable → published, events/s vs raw JetStream publish
//!   cargo run --release -p tests --bin loadgen -- secured     # TLS + JWT vs plaintext, commands/s and reports/s
//!   cargo run --release -p tests --bin loadgen -- outage      # backlog after a NATS outage, events/s vs raw JetStream publish
//!
//! `import` runs the release `intake` and `motcua` binaries as child
//! processes: `cargo build --release -p intake -p motcua` first (a `--bin
//! loadgen` in the same command would build only loadgen).
//!
//! Each mode starts its own nats-server and fresh databases (PostgreSQL at
//! MOTCUA_TEST_POSTGRES, default postgres://postgres@127.0.0.1:5432/postgres).

mod cluster;
mod desk;
mod outage;
mod secured;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use clap::{Parser, Subcommand, ValueEnum};
use domain::{
    Channel, Event, LocalDay, Payload, Procedure, Rating, RatingScale, Timeliness, Timestamp,
};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use tests::{
    Backend, ChildService, Desk, NatsServer, Province, TestDb, start_intake, start_projection,
    unique_stream,
};
use tonic::transport::Channel as GrpcChannel;

#[derive(Parser)]
#[command(about = "Measure Motcua's core flow against raw baselines taken in the same run")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// Database for the services.
    #[arg(long, value_enum, default_value_t = Db::Postgres, global = true)]
    db: Db,
}

#[derive(Clone, Copy, ValueEnum)]
enum Db {
    Postgres,
    Sqlite,
}

#[derive(Subcommand)]
enum Mode {
    /// intake with concurrent clients, every reply durable.
    Intake {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of each side in all, split over the rounds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// projection catching up a backlog published straight to JetStream.
    Catchup {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Then rebuild the read models from the stream (a new generation
        /// beside the serving one) and measure that too.
        #[arg(long)]
        rebuild: bool,
    },
    /// end of a due date → the late feed's watching client, with many open
    /// dossiers and a thousand becoming late in the same second.
    Late {
        #[arg(long, default_value_t = 100_000)]
        open: u64,
        #[arg(long, default_value_t = 1_000)]
        late: u64,
    },
    /// bulk import: a CSV file through `motcua import` until the stream
    /// holds every event.
    Import {
        #[arg(long, default_value_t = 200_000)]
        dossiers: u64,
    },
    /// commands at a fixed rate while NATS is down, then the relay's
    /// backlog once it is back.
    Outage {
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds NATS is down.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// intake over TLS with a JWT on every call against plaintext intake,
    /// and reports read by a province reader against unscoped ones.
    Secured {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of each side in all, split over the rounds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// intake on a three-node JetStream cluster with the stream at three
    /// replicas against intake on one node, in turn.
    Cluster {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of each side in all, split over the rounds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// command accepted → visible in the statistics, at a fixed rate.
    E2e {
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
}

fn backend(db: Db) -> Backend {
    match db {
        Db::Postgres => Backend::Postgres,
        Db::Sqlite => Backend::Sqlite,
    }
}

// `intake` runs intake in this process: with the allocator its binary
// ships with (the raw baseline shares it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The services run in this process as their binaries run when
    // deployed: with a tracing subscriber (without one, every span of h2
    // and sqlx falls back to the `log` crate, which showed in its profile:
    // BENCHMARKS.md) and a Prometheus recorder.
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    telemetry::install_metrics(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    match args.mode {
        Mode::Intake { clients, seconds } => {
            intake_throughput(backend(args.db), clients, Duration::from_secs(seconds)).await
        }
        Mode::Catchup { events, rebuild } => catchup(backend(args.db), events, rebuild).await,
        Mode::Late { open, late } => late_latency(backend(args.db), open, late).await,
        Mode::Import { dossiers } => import(backend(args.db), dossiers).await,
        Mode::Outage { rate, seconds } => {
            outage::outage(backend(args.db), rate, Duration::from_secs(seconds)).await
        }
        Mode::Secured { clients, seconds } => {
            secured::secured(backend(args.db), clients, Duration::from_secs(seconds)).await
        }
        Mode::Cluster { clients, seconds } => {
            cluster::cluster(backend(args.db), clients, Duration::from_secs(seconds)).await
        }
        Mode::E2e { rate, seconds } => {
            end_to_end(backend(args.db), rate, Duration::from_secs(seconds)).await
        }
    }
}

/// Runs `call` from `clients` concurrent tasks for `duration`; calls/s and
/// calls made.
async fn hammer<F, Fut>(clients: usize, duration: Duration, call: F) -> anyhow::Result<(f64, u64)>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (call, next, done) = (call.clone(), next.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    call(i).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let calls = done.load(Ordering::Relaxed);
    Ok((calls as f64 / start.elapsed().as_secs_f64(), calls))
}

/// CPU seconds used so far by nats-server, by the service measured (`None`:
/// none runs; intake runs inside this process, the projection in its own)
/// and by the whole machine, and the wall clock.
#[derive(Clone, Copy)]
struct CpuSample {
    nats: f64,
    service: f64,
    machine: f64,
    wall: Instant,
}

impl CpuSample {
    fn now(nats_pid: u32, service_pid: Option<u32>) -> Self {
        Self {
            nats: tests::cpu_seconds(nats_pid),
            service: service_pid.map_or(0.0, tests::cpu_seconds),
            machine: tests::machine_busy_seconds(),
            wall: Instant::now(),
        }
    }
}

/// CPU spent between samples, summed over rounds.
#[derive(Default)]
struct CpuSpent {
    nats: f64,
    service: f64,
    machine: f64,
    /// Seconds of wall clock, for the machine's busy share.
    wall: f64,
}

impl CpuSpent {
    fn between(from: CpuSample, to: CpuSample) -> Self {
        let mut spent = Self::default();
        spent.add(from, to);
        spent
    }

    fn add(&mut self, from: CpuSample, to: CpuSample) {
        self.nats += to.nats - from.nats;
        self.service += to.service - from.service;
        self.machine += to.machine - from.machine;
        self.wall += to.wall.duration_since(from.wall).as_secs_f64();
    }

    /// "nats-server a, <service> b, rest c, machine d" in µs per `count`;
    /// without the service and the rest when `service` is `None`.
    fn per(&self, count: u64, service: Option<&str>) -> String {
        let us = |s: f64| s * 1e6 / count.max(1) as f64;
        match service {
            Some(service) => format!(
                "nats-server {:.2}, {service} {:.2}, rest (PostgreSQL, bench) {:.2}, machine {:.2}",
                us(self.nats),
                us(self.service),
                us(self.machine - self.nats - self.service),
                us(self.machine)
            ),
            None => format!(
                "nats-server {:.2}, machine {:.2}",
                us(self.nats),
                us(self.machine)
            ),
        }
    }

    /// The machine's busy share of all its cores over the wall clock.
    fn busy_percent(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        self.machine / (self.wall * cores).max(f64::MIN_POSITIVE) * 100.0
    }
}

/// Rounds in which the raw baseline and intake take turns.
const ROUNDS: u32 = 5;

async fn intake_throughput(
    backend: Backend,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    // Baseline: raw tonic unary calls (grpc.health.v1 Check, in process,
    // the same client count on one channel).
    let (_reporter, health) = tonic_health_server();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream_listener(listener)),
    );
    let channel = GrpcChannel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let raw_call = move |_| {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        async move {
            client
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(())
        }
    };

    let nats = NatsServer::start().await?;
    let db = TestDb::new(backend, "bench_intake").await?;
    let stream = unique_stream();
    let (intake, store) = start_intake(&db.url, &nats.url(), &stream).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let desk = Desk::connect(intake.addr).await?;
    // Received now, due in nine days: intake's deadline monitor has nothing
    // to mark late during the run (a past due date would add a Late event
    // to every command).
    let base = tests::real_now();
    let due = Timestamp::at_local(LocalDay::from_days(base.local_day().days() + 9), 17, 0);

    // The two take turns, so a shared machine's slow spells fall on both.
    // Each intake round ends once its events are published, so its work
    // does not spill into the next raw round.
    let slice = duration / ROUNDS;
    let nats_pid = nats.pid().context("nats-server is not running")?;
    // intake runs inside this process, beside the clients.
    let sample = || CpuSample::now(nats_pid, Some(std::process::id()));
    let mut rounds = Vec::new();
    let (mut raw_cpu, mut raw_calls) = (CpuSpent::default(), 0);
    // Intake's CPU runs from a round's start until its events are
    // published; its busy share covers the clients' window alone.
    let (mut intake_cpu, mut intake_window) = (CpuSpent::default(), CpuSpent::default());
    for round in 0..ROUNDS {
        let start = sample();
        let (raw, calls) = hammer(clients, slice, raw_call.clone()).await?;
        let raw_end = sample();
        raw_cpu.add(start, raw_end);
        raw_calls += calls;
        let desk = desk.clone();
        let (rate, _) = hammer(clients, slice, move |i| {
            let desk = desk.clone();
            async move {
                desk.receive(&format!("B-{round}-{i}"), "BENCH", base, due)
                    .await?;
                Ok(())
            }
        })
        .await?;
        intake_window.add(raw_end, sample());
        let appended = store.count().await?;
        tests::eventually(Duration::from_secs(60), || async {
            let published = js.get_stream(&stream).await?.info().await?.state.messages;
            anyhow::ensure!(published >= appended, "{published} of {appended} published");
            Ok(())
        })
        .await?;
        intake_cpu.add(raw_end, sample());
        rounds.push((raw, rate));
    }
    let events = store.count().await?;
    intake.shutdown().await?;
    let mean = |f: fn(&(f64, f64)) -> f64| rounds.iter().map(f).sum::<f64>() / rounds.len() as f64;
    let (raw, rate) = (mean(|r| r.0), mean(|r| r.1));
    println!(
        "intake ({backend:?}, {clients} clients, every reply durable; raw and intake in turn, {ROUNDS} rounds of {slice:?})"
    );
    for (i, (raw, rate)) in rounds.iter().enumerate() {
        println!(
            "  round {}: raw {raw:>7.0} calls/s, intake {rate:>7.0} commands/s, {:>5.1} %",
            i + 1,
            rate / raw * 100.0
        );
    }
    println!("  raw tonic unary (health Check, same clients): {raw:>9.0} calls/s");
    println!(
        "  intake ReceiveDossier:                        {rate:>9.0} commands/s  ({events} events appended)"
    );
    println!(
        "  ratio to raw tonic:                           {:>9.1} %",
        rate / raw * 100.0
    );
    let this = Some("this process (clients, intake)");
    println!("  CPU µs per raw call:    {}", raw_cpu.per(raw_calls, this));
    println!("  CPU µs per command:     {}", intake_cpu.per(events, this));
    println!(
        "  machine busy: {:.0} % during raw rounds, {:.0} % during intake rounds",
        raw_cpu.busy_percent(),
        intake_window.busy_percent()
    );
    Ok(())
}

fn tonic_health_server() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    tonic_health::server::health_reporter()
}

fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> tokio_stream::wrappers::TcpListenerStream {
    tokio_stream::wrappers::TcpListenerStream::new(listener)
}

/// Events of one synthetic dossier, as intake would have appended them.
fn dossier_events(n: u64) -> Vec<Event> {
    let day = LocalDay::from_days(
        LocalDay::from_ymd(2019, 1, 1).map_or(0, |d| d.days()) + (n % 700) as i32,
    );
    let received = Timestamp::at_local(day, 8, 0);
    let due = Timestamp::at_local(LocalDay::from_days(day.days() + 10), 17, 0);
    let resolved = Timestamp::at_local(
        LocalDay::from_days(day.days() + if n.is_multiple_of(50) { 12 } else { 4 }),
        9,
        0,
    );
    let payloads = [
        (
            received,
            Payload::Received {
                procedure: Procedure {
                    code: format!("1.00{}", n % 40),
                    field: "dat-dai".into(),
                },
                channel: Channel::ALL[(n % 5) as usize],
                due_at: due,
            },
        ),
        (
            resolved,
            Payload::Processed {
                timeliness: Timeliness::judge(resolved, due),
                due_at: due,
            },
        ),
        (resolved.plus_micros(3_600_000_000), Payload::Returned),
        (
            resolved.plus_micros(7_200_000_000),
            Payload::SurveyRecorded {
                scale: RatingScale::Quality,
                rating: Rating::ALL[(n % 3) as usize],
                comment: String::new(),
            },
        ),
    ];
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, (at, payload))| Event {
            event_id: format!("{n:012}-{i}"),
            dossier_id: format!("D{n:09}"),
            office_code: format!("OFFICE-{:03}", n % 120),
            province_code: format!("P{:02}", n % 34),
            version: i as u64 + 1,
            occurred_at: at,
            recorded_at: at,
            actor: "loadgen".into(),
            request_id: format!("r{n}-{i}"),
            payload,
        })
        .collect()
}

/// Publishes `events` events of 4-event dossiers straight to the stream of
/// `settings`, `Nats-Msg-Id` and position headers set, 5,000 acks in flight.
async fn publish_backlog(
    js: &jetstream::Context,
    settings: &bus::StreamSettings,
    events: u64,
) -> anyhow::Result<u64> {
    let mut acks = Vec::with_capacity(5000);
    let mut published = 0u64;
    'publish: for n in 0.. {
        for event in dossier_events(n) {
            if published == events {
                break 'publish;
            }
            published += 1;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.event_id.as_str());
            headers.insert(bus::POSITION_HEADER, published.to_string().as_str());
            acks.push(
                js.publish_with_headers(
                    settings.subject(&event),
                    headers,
                    bus::encode_event(&event).into(),
                )
                .await?,
            );
            if acks.len() == 5000 {
                for ack in acks.drain(..) {
                    ack.await?;
                }
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await?;
    }
    Ok(published)
}

async fn catchup(backend: Backend, events: u64, rebuild: bool) -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let settings = tests::stream_settings(&stream);
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(10_000)
        .build(client);
    let js_stream = settings
        .ensure_stream(&js)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;

    // The backlog: dossiers of 4 events, published straight to the stream.
    let started = Instant::now();
    let published = publish_backlog(&js, &settings, events).await?;
    let publish_rate = published as f64 / started.elapsed().as_secs_f64();

    // Baseline: raw fetch of the whole stream, no acks. It swings by a third
    // from one pass to the next on this kind of machine, so it is taken four
    // times, asking 5,000 and 50,000 messages a request in turn (the
    // projection asks 50,000; the smaller pull was once its setting), and the
    // best pass is the baseline (the strictest one for the ratios below).
    let nats_pid = nats.pid().context("nats-server is not running")?;
    let mut passes = Vec::new();
    let mut raw_cpu = CpuSpent::default();
    for pull in [5_000, 50_000, 5_000, 50_000] {
        let baseline: jetstream::consumer::PullConsumer = js_stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                // As the projection's consumer filters.
                filter_subject: settings.all_events_filter(js_stream.cached_info()),
                ..Default::default()
            })
            .await?;
        let started = Instant::now();
        let cpu_before = CpuSample::now(nats_pid, None);
        let mut fetched = 0u64;
        while fetched < published {
            let mut batch = baseline
                .fetch()
                .max_messages(pull)
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            while let Some(m) = batch.next().await {
                m.map_err(|e| anyhow::anyhow!(e))?;
                fetched += 1;
            }
        }
        let rate = fetched as f64 / started.elapsed().as_secs_f64();
        if passes.iter().all(|&(_, best)| rate > best) {
            raw_cpu = CpuSpent::between(cpu_before, CpuSample::now(nats_pid, None));
        }
        passes.push((pull, rate));
    }
    let raw = passes.iter().map(|&(_, rate)| rate).fold(0.0, f64::max);

    // The projection, as its own process, catching up from the start.
    let db = TestDb::new(backend, "bench_projection").await?;
    let metrics_port = tests::free_port();
    let env = vec![
        ("PROJECTION_DATABASE_URL", db.url.clone()),
        ("NATS_URL", nats.url()),
        ("MOTCUA_STREAM", stream.clone()),
        ("MOTCUA_SUBJECT_PREFIX", settings.subject_prefix.clone()),
        (
            "PROJECTION_METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        ),
    ];
    let started = Instant::now();
    // Before the projection runs: its CPU counts from zero.
    let cpu_before = CpuSample::now(nats_pid, None);
    let projection = ChildService::start("projection", &env).await?;
    let last = js_stream.clone().info().await?.state.last_sequence;
    // Timed as the raw fetch is, from the creation of the consumer (the
    // process's start-up, schema included, is printed apart), until its
    // checkpoint (a metric, polled every 50 ms) reaches the last event.
    let consuming = loop {
        if js_stream.consumer_info("projection").await.is_ok() {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    loop {
        let applied = tests::scrape_metrics(metrics_port)
            .await
            .ok()
            .and_then(|m| tests::metric(&m, "projection_checkpoint"))
            .unwrap_or(0.0);
        if applied >= last as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start_up = consuming.duration_since(started);
    let elapsed = consuming.elapsed();
    let rate = published as f64 / elapsed.as_secs_f64();
    let batches = tests::scrape_metrics(metrics_port)
        .await
        .ok()
        .and_then(|m| {
            Some((
                tests::metric(&m, "projection_batch_size_count")?,
                tests::metric(&m, "projection_batch_size_sum")?,
            ))
        });
    let catchup_cpu =
        CpuSpent::between(cpu_before, CpuSample::now(nats_pid, Some(projection.pid())));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", projection.pid())).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0.0, |kb| kb as f64 / 1024.0)
    };
    // The figures it serves, as a check that the work was done.
    let province = Province::connect(projection.addr).await?;
    let stats = province
        .statistics_for(
            proto::reports::v1::Scope {
                unit: Some(proto::reports::v1::scope::Unit::ProvinceCode("P00".into())),
                ..Default::default()
            },
            LocalDay::from_ymd(2019, 1, 1).context("date")?,
            LocalDay::from_ymd(2020, 12, 31).context("date")?,
        )
        .await?;
    println!("projection catch-up ({backend:?}, {published} events of 4-event dossiers)");
    println!("  publish to JetStream (setup):                 {publish_rate:>9.0} events/s");
    println!(
        "  raw JetStream fetch (no acks):                {raw:>9.0} events/s  (best of {})",
        passes
            .iter()
            .map(|(pull, rate)| format!("{rate:.0} at {pull}/pull"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  projection start-up (spawn → consumer):       {:>9.2} s",
        start_up.as_secs_f64()
    );
    println!(
        "  projection catch-up (consumer → all applied): {rate:>9.0} events/s  ({:.2} s; {:.0} events/s from spawn)",
        elapsed.as_secs_f64(),
        published as f64 / (start_up + elapsed).as_secs_f64()
    );
    println!(
        "  ratio to raw fetch:                           {:>9.1} %",
        rate / raw * 100.0
    );
    if let Some((count, sum)) = batches {
        println!(
            "  batches: {count:.0}, {:.0} events each on average",
            sum / count.max(1.0)
        );
    }
    println!(
        "  CPU µs per event, raw fetch:  {}",
        raw_cpu.per(published, None)
    );
    println!(
        "  CPU µs per event, catch-up:   {}",
        catchup_cpu.per(published, Some("projection"))
    );
    println!(
        "  projection resident: {:.0} MB now, {:.0} MB peak",
        field("VmRSS:"),
        field("VmHWM:")
    );
    println!(
        "  check: province P00 received {} resolved {} ({})",
        stats.received, stats.resolved, stats.in_time_over_resolved
    );
    if rebuild {
        use proto::reports::v1::{self as rp, rebuilds_client::RebuildsClient};
        let mut rebuilds = RebuildsClient::connect(format!("http://{}", projection.addr)).await?;
        let started = Instant::now();
        let cpu = || CpuSample::now(nats_pid, Some(projection.pid()));
        let cpu_before = cpu();
        let mut replay_cpu = None;
        rebuilds.start_rebuild(rp::StartRebuildRequest {}).await?;
        let mut peak_kb = 0u64;
        // When the replay reached the stream's end, and when the indexes were
        // built: the rebuild's phases.
        let mut replayed = None;
        let mut indexed = None;
        let status = loop {
            let s = rebuilds
                .get_rebuild(rp::GetRebuildRequest {})
                .await?
                .into_inner();
            let proc = std::fs::read_to_string(format!("/proc/{}/status", projection.pid()))
                .unwrap_or_default();
            if let Some(kb) = proc
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
            let state = rp::RebuildState::try_from(s.state);
            if replayed.is_none()
                && matches!(
                    state,
                    Ok(rp::RebuildState::Indexing
                        | rp::RebuildState::Swapping
                        | rp::RebuildState::Done)
                )
            {
                replayed = Some(started.elapsed());
                replay_cpu = Some(CpuSpent::between(cpu_before, cpu()));
            }
            if indexed.is_none()
                && matches!(
                    state,
                    Ok(rp::RebuildState::Swapping | rp::RebuildState::Done)
                )
            {
                indexed = Some(started.elapsed());
            }
            match state {
                Ok(rp::RebuildState::Done) => break s,
                Ok(rp::RebuildState::Failed) => anyhow::bail!("rebuild failed: {}", s.error),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let elapsed = started.elapsed();
        let rate = status.events_applied as f64 / elapsed.as_secs_f64();
        let after = province
            .statistics_for(
                proto::reports::v1::Scope {
                    unit: Some(proto::reports::v1::scope::Unit::ProvinceCode("P00".into())),
                    ..Default::default()
                },
                LocalDay::from_ymd(2019, 1, 1).context("date")?,
                LocalDay::from_ymd(2020, 12, 31).context("date")?,
            )
            .await?;
        println!(
            "  rebuild (start → new generation serving):   {rate:>9.0} events/s  ({:.1} s, {} events)",
            elapsed.as_secs_f64(),
            status.events_applied
        );
        println!(
            "  ratio to raw fetch:                           {:>9.1} %",
            rate / raw * 100.0
        );
        if let (Some(replayed), Some(indexed)) = (replayed, indexed) {
            println!(
                "  phases (sampled every 100 ms): replay {:.1} s ({:.0} events/s), write counters and build indexes {:.1} s, swap {:.1} s",
                replayed.as_secs_f64(),
                status.events_applied as f64 / replayed.as_secs_f64(),
                (indexed - replayed).as_secs_f64(),
                (elapsed - indexed).as_secs_f64()
            );
        }
        if let Some(replay_cpu) = replay_cpu {
            println!(
                "  CPU µs per event, replay:     {}",
                replay_cpu.per(published, Some("projection"))
            );
        }
        println!(
            "  projection resident during the rebuild: {:.0} MB peak (sampled every 100 ms)",
            peak_kb as f64 / 1024.0
        );
        anyhow::ensure!(
            after == stats,
            "the rebuilt figures differ: {after:?} vs {stats:?}"
        );
        println!("  check: the rebuilt generation serves the same figures");
    }
    Ok(())
}

async fn end_to_end(backend: Backend, rate: u64, duration: Duration) -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(backend, "bench_e2e_intake").await?;
    let projection_db = TestDb::new(backend, "bench_e2e_projection").await?;
    let (intake, _) = start_intake(&intake_db.url, &nats.url(), &stream).await?;
    let projection = start_projection(&projection_db.url, &nats.url(), &stream).await?;
    let desk = Desk::connect(intake.addr).await?;
    let province = Province::connect(projection.addr).await?;
    // Received now, due in nine days: no deadline passes during the run,
    // so intake's monitor appends nothing between the receipts.
    let at = tests::real_now();
    let day = at.local_day();
    let due = Timestamp::at_local(LocalDay::from_days(day.days() + 9), 17, 0);

    let total = rate * duration.as_secs();
    // accepted[k]: when the reply for the k-th receipt came back.
    let accepted: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    let sender = {
        let (desk, accepted) = (desk.clone(), accepted.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut inflight = Vec::with_capacity(total as usize);
            for k in 0..total {
                tick.tick().await;
                let (desk, accepted) = (desk.clone(), accepted.clone());
                inflight.push(tokio::spawn(async move {
                    let reply = desk.receive(&format!("E-{k:08}"), "E2E", at, due).await?;
                    // Positions are 1.. in this fresh log: index by position.
                    let slot = usize::try_from(reply.position.saturating_sub(1))?;
                    accepted[slot].store(epoch.elapsed().as_micros() as u64, Ordering::Release);
                    anyhow::Ok(())
                }));
            }
            for t in inflight {
                t.await??;
            }
            anyhow::Ok(())
        })
    };
    // Poll the statistics: once `received` reads n, the events at positions
    // 1..=n are visible (the projection applies in position order).
    let mut seen = 0u64;
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut visible_at: Vec<u64> = Vec::with_capacity(total as usize);
    let mut query_times = Histogram::<u64>::new(3)?;
    while seen < total {
        let asked = Instant::now();
        let s = province.statistics("E2E", day, day).await?;
        query_times.record((asked.elapsed().as_micros() as u64).max(1))?;
        let now = epoch.elapsed().as_micros() as u64;
        while (visible_at.len() as u64) < s.received.min(total) {
            visible_at.push(now);
        }
        seen = s.received;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sender.await??;
    let replies: Vec<u64> = accepted.iter().map(|a| a.load(Ordering::Acquire)).collect();
    for (reply, visible) in replies.iter().zip(&visible_at) {
        histogram.record(visible.saturating_sub(*reply).max(1))?;
    }
    projection.shutdown().await?;
    intake.shutdown().await?;
    println!(
        "end to end ({backend:?}, {rate} commands/s for {duration:?}, statistics polled every 2 ms)"
    );
    println!(
        "  (a dossier's latency: from its reply to the first poll whose count includes its position)"
    );
    println!(
        "  accepted → visible: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} commands)",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.9) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
    println!(
        "  (one statistics call itself: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} calls)",
        query_times.value_at_quantile(0.5) as f64 / 1000.0,
        query_times.value_at_quantile(0.99) as f64 / 1000.0,
        query_times.max() as f64 / 1000.0,
        query_times.len()
    );
    Ok(())
}

fn real_micros() -> i64 {
    tests::real_now().micros()
}

async fn late_latency(backend: Backend, open: u64, late: u64) -> anyhow::Result<()> {
    anyhow::ensure!(late <= open, "--late must not exceed --open");
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(backend, "bench_late_intake").await?;
    let projection_db = TestDb::new(backend, "bench_late_projection").await?;
    // Intake's clock: the real clock plus an offset the bench moves.
    let due_day = LocalDay::from_ymd(2024, 3, 11).context("date")?;
    let deadline = Timestamp::at_local(due_day.succ(), 0, 0);
    let offset = Arc::new(std::sync::atomic::AtomicI64::new(
        deadline.micros() - 3_600_000_000 - real_micros(),
    ));
    let clock: intake::Clock = {
        let offset = offset.clone();
        Arc::new(move || Timestamp::from_micros(real_micros() + offset.load(Ordering::Acquire)))
    };
    let (intake, _) =
        tests::start_intake_with_clock(&intake_db.url, &nats.url(), &stream, clock).await?;
    let projection = start_projection(&projection_db.url, &nats.url(), &stream).await?;
    let desk = Desk::connect(intake.addr).await?;
    let province = Province::connect(projection.addr).await?;
    let deadlines = tests::Deadlines::connect(projection.addr).await?;

    // Open dossiers: `late` due on the due day, the rest over the next month.
    let received = Timestamp::at_local(LocalDay::from_days(due_day.days() - 5), 8, 0);
    let setup = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (desk, next) = (desk.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= open {
                    return anyhow::Ok(());
                }
                let day = if k < late {
                    due_day
                } else {
                    LocalDay::from_days(due_day.days() + 1 + (k % 30) as i32)
                };
                desk.receive(
                    &format!("L-{k:08}"),
                    "LATE",
                    received,
                    Timestamp::at_local(day, 17, 0),
                )
                .await?;
            }
        }));
    }
    for c in clients {
        c.await??;
    }
    tests::eventually(Duration::from_secs(300), || async {
        let s = province
            .statistics(
                "LATE",
                LocalDay::from_days(received.local_day().days()),
                due_day,
            )
            .await?;
        anyhow::ensure!(s.received == open, "{} of {open} applied", s.received);
        Ok(())
    })
    .await?;
    println!(
        "late feed ({backend:?}): {open} open dossiers received in {:.1} s, {late} of them due {due_day}",
        setup.elapsed().as_secs_f64()
    );

    // Watch, then move intake's clock to three seconds before the deadline.
    let mut feed = deadlines.watch("LATE", None).await?;
    let lead = 3_000_000;
    offset.store(deadline.micros() - lead - real_micros(), Ordering::Release);
    let deadline_real = deadline.micros() - offset.load(Ordering::Acquire);
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut seen = std::collections::HashSet::new();
    while (seen.len() as u64) < late {
        let notice = tests::next_notice(&mut feed, Duration::from_secs(30)).await?;
        let latency = real_micros() - deadline_real;
        anyhow::ensure!(
            notice.dossier_id.as_str() < format!("L-{late:08}").as_str(),
            "{} is not due yet",
            notice.dossier_id
        );
        if seen.insert(notice.dossier_id) {
            histogram.record(latency.max(1) as u64)?;
        }
    }
    let overdue = deadlines
        .overdue("LATE", Some(deadline.plus_micros(1_000_000)), 1000)
        .await?;
    println!(
        "  end of due date → watching client: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} dossiers late in the same second; {} listed overdue now)",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        histogram.len(),
        overdue.len(),
    );
    println!("  target: p99 < 1000 ms");
    projection.shutdown().await?;
    intake.shutdown().await?;
    Ok(())
}

/// One line of the import file, and how many events it makes: 3 or 4
/// (received, processed, returned, sometimes a survey).
fn import_line(n: u64) -> (String, u64) {
    let day = LocalDay::from_days(
        LocalDay::from_ymd(2019, 1, 1).map_or(0, |d| d.days()) + (n % 700) as i32,
    );
    let date = |offset: i32| {
        let (y, m, d) = LocalDay::from_days(day.days() + offset).ymd();
        format!("{y:04}-{m:02}-{d:02}")
    };
    let channel = [
        "in_person",
        "postal",
        "online_partial",
        "online_full",
        "inter_agency",
    ][(n % 5) as usize];
    let resolved = if n.is_multiple_of(50) { 12 } else { 4 };
    let base = format!(
        "D{n:09},OFFICE-{:03},P{:02},1.00{},dat-dai,{channel},{} 08:00,{},{} 09:00,{} 10:00,,,,",
        n % 120,
        n % 34,
        n % 40,
        date(0),
        date(10),
        date(resolved),
        date(resolved)
    );
    if n.is_multiple_of(2) {
        let rating = ["good", "average", "poor"][(n % 3) as usize];
        (
            format!("{base},quality,{rating},{} 10:05", date(resolved)),
            4,
        )
    } else {
        (format!("{base},,,"), 3)
    }
}

async fn import(backend: Backend, dossiers: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("import.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(
        file,
        "dossier_id,office_code,province_code,procedure_code,procedure_field,channel,received_at,due_at,result_at,returned_at,withdrawn_at,withdraw_reason,stopped_at,stop_reason,survey_scale,survey_rating,surveyed_at"
    )?;
    let mut events = 0;
    for n in 0..dossiers {
        let (line, e) = import_line(n);
        writeln!(file, "{line}")?;
        events += e;
    }
    file.flush()?;
    drop(file);
    let size = std::fs::metadata(&path)?.len();

    let nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(10_000)
        .build(client);

    // Baseline: the same number of events published straight to a stream,
    // async, `Nats-Msg-Id` set, 5,000 acks in flight.
    let raw_stream = unique_stream();
    let raw_settings = tests::stream_settings(&raw_stream);
    raw_settings
        .ensure_stream(&js)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let nats_pid = nats.pid().context("nats-server is not running")?;
    let cpu_before = CpuSample::now(nats_pid, None);
    let started = Instant::now();
    let published = publish_backlog(&js, &raw_settings, events).await?;
    let raw = published as f64 / started.elapsed().as_secs_f64();
    let raw_cpu = CpuSpent::between(cpu_before, CpuSample::now(nats_pid, None));
    js.delete_stream(&raw_stream).await?;

    // intake as its own process, then `motcua import` as another.
    let stream = unique_stream();
    let prefix = format!("{}.events", stream.to_ascii_lowercase());
    let db = TestDb::new(backend, "bench_import").await?;
    let intake = ChildService::start(
        "intake",
        &[
            ("INTAKE_DATABASE_URL", db.url.clone()),
            ("NATS_URL", nats.url()),
            ("MOTCUA_STREAM", stream.clone()),
            ("MOTCUA_SUBJECT_PREFIX", prefix),
        ],
    )
    .await?;
    let cpu_before = CpuSample::now(nats_pid, Some(intake.pid()));
    let started = Instant::now();
    let out = tokio::process::Command::new(tests::binary("motcua")?)
        .args(["--intake", &format!("http://{}", intake.addr), "import"])
        .arg(&path)
        .output()
        .await
        .context("run motcua import")?;
    let durable = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "motcua import failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut js_stream = js.get_stream(&stream).await?;
    loop {
        if js_stream.info().await?.state.messages >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_published = started.elapsed();
    let import_cpu = CpuSpent::between(cpu_before, CpuSample::now(nats_pid, Some(intake.pid())));
    let rate = events as f64 / all_published.as_secs_f64();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", intake.pid())).unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0.0, |kb| kb as f64 / 1024.0);
    println!(
        "bulk import ({backend:?}, {dossiers} dossiers, {events} events, {:.1} MB CSV; motcua import → intake → JetStream)",
        size as f64 / 1e6
    );
    println!("  raw JetStream async publish (same events):       {raw:>9.0} events/s");
    println!(
        "  import, file → durable in the store:             {:>9.0} events/s  ({:.1} s)",
        events as f64 / durable.as_secs_f64(),
        durable.as_secs_f64()
    );
    println!(
        "  import, file → published (stream holds all):     {rate:>9.0} events/s  ({:.1} s)",
        all_published.as_secs_f64()
    );
    println!(
        "  ratio to raw publish:                            {:>9.1} %",
        rate / raw * 100.0
    );
    println!(
        "  CPU µs per event, raw publish: {}",
        raw_cpu.per(events, None)
    );
    println!(
        "  CPU µs per event, import:      {} (machine {:.0} % busy)",
        import_cpu.per(events, Some("intake")),
        import_cpu.busy_percent()
    );
    println!("  intake resident peak: {peak:.0} MB");
    print!("  motcua: {}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
