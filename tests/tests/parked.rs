//! Parked events end to end, and the operator's live late feed.
//!
//! The bus delivers corrupted copies of two events: intake relays to its own
//! stream, and a faulty bridge copies that stream to the one the projection
//! reads, replacing dossier P's version 2 with bytes that are not an event
//! and dossier Q's version 1 (its receipt) with a well-formed event that
//! cannot be a dossier's first (Returned). The real copies never reach the
//! projection's stream; intake's log keeps them. The projection parks both,
//! holds P's and Q's later events, and keeps applying every other dossier.
//! The operator's fix is `motcua parked replay --from-intake`: the real
//! `motcua` binary fetches each parked event's authoritative copy from
//! intake's log by its position and replays it; every figure then equals a
//! projection built from scratch from intake's own stream.
//!
//! `watch-late` runs the real binary against a pair whose intake clock sits
//! just before a due date ends, through a projection restart.
//!
//! Needs the binaries built beside the tests: `cargo test --workspace`
//! builds them; otherwise `cargo build -p projection -p motcua`.

use server::Service as _;
use std::{process::Stdio, time::Duration};

use anyhow::Context as _;
use async_nats::{HeaderMap, jetstream};
use bus::{KIND_HEADER, POSITION_HEADER, StreamSettings};
use domain::{LocalDay, Timestamp};
use proto::events::v1 as ev;
use tests::{
    Backend, ChildService, Desk, NatsServer, Pair, Province, TestDb, eventually, free_port,
    offset_to, unique_stream,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const WAIT: Duration = Duration::from_secs(30);
const OFFICE: &str = "PK";

fn day(y: i32, m: u8, d: u8) -> LocalDay {
    LocalDay::from_ymd(y, m, d).expect("a real date")
}

fn at(d: u8, h: u8, m: u8) -> Timestamp {
    Timestamp::at_local(day(2024, 5, d), h, m)
}

/// Runs the built `motcua` binary against these services.
async fn motcua(projection: &str, intake: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = tokio::process::Command::new(tests::binary("motcua")?)
        .arg("--projection")
        .arg(projection)
        .arg("--intake")
        .arg(intake)
        .args(args)
        .output()
        .await
        .context("run motcua")?;
    let stdout = String::from_utf8(out.stdout)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), format!("{stdout}{stderr}")))
}

/// What the faulty bridge does to one event on its way.
fn corrupt(event: &domain::Event, payload: &[u8]) -> Vec<u8> {
    match (event.dossier_id.as_str(), event.version) {
        // Not an event at all: a length-delimited field cut short.
        ("P", 2) => vec![0x0a, 0xff],
        // A well-formed event that cannot be a dossier's first.
        ("Q", 1) => {
            let mut wrong = event.clone();
            wrong.payload = domain::Payload::Returned;
            bus::encode_event(&wrong)
        }
        _ => payload.to_vec(),
    }
}

/// Copies every message of `from` to `to` in order, keeping its headers
/// (event id, log position, kind) and corrupting two payloads.
fn bridge(js: jetstream::Context, from: StreamSettings, to: StreamSettings) {
    tokio::spawn(async move {
        let source = loop {
            match from.ensure_stream(&js).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let mut seq = 1;
        loop {
            let Ok(raw) = source.get_raw_message(seq).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let event = bus::decode_event(&raw.payload).expect("intake publishes events");
            let mut headers = HeaderMap::new();
            for name in ["Nats-Msg-Id", POSITION_HEADER, KIND_HEADER] {
                if let Some(v) = raw.headers.get(name) {
                    headers.insert(name, v.as_str());
                }
            }
            let subject = format!(
                "{}{}",
                to.subject_prefix,
                &raw.subject[from.subject_prefix.len()..]
            );
            let payload = corrupt(&event, &raw.payload);
            let ack = js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .expect("publish to the projection's stream");
            ack.await.expect("the projection's stream took it");
            seq += 1;
        }
    });
}

async fn statistics(province: &Province) -> anyhow::Result<proto::reports::v1::Statistics> {
    province
        .statistics(OFFICE, day(2024, 5, 1), day(2024, 5, 31))
        .await
}

async fn parked_events_wait_for_intakes_copy(backend: Backend) -> anyhow::Result<()> {
    tests::binary("motcua")?;
    tests::binary("projection")?;
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let nats = NatsServer::start().await?;
    let (intake_stream, bus_stream) = (unique_stream(), unique_stream());
    let intake_db = TestDb::new(backend, "intake").await?;
    let projection_db = TestDb::new(backend, "projection").await?;
    // Intake's clock reads 6/5/2024 10:00 local: every due date is ahead.
    let clock = intake::offset_clock(offset_to(at(6, 10, 0)));
    let (intake, _store) =
        tests::start_intake_with_clock(&intake_db.url, &nats.url(), &intake_stream, clock).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    bridge(
        js,
        tests::stream_settings(&intake_stream),
        tests::stream_settings(&bus_stream),
    );
    let metrics_port = free_port();
    let projection = ChildService::start(
        "projection",
        &[
            ("PROJECTION_DATABASE_URL", projection_db.url.clone()),
            ("NATS_URL", nats.url()),
            ("MOTCUA_STREAM", bus_stream.clone()),
            (
                "MOTCUA_SUBJECT_PREFIX",
                tests::stream_settings(&bus_stream).subject_prefix,
            ),
            (
                "PROJECTION_METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            ),
        ],
    )
    .await?;
    let (projection_url, intake_url) = (
        format!("http://{}", projection.addr),
        format!("http://{}", intake.addr),
    );

    let desk = Desk::connect(intake.addr).await?;
    let due = at(20, 17, 0);
    // P: its supplement request (version 2) arrives as garbage.
    desk.receive("P", OFFICE, at(6, 8, 0), due).await?;
    desk.request_supplement("P", at(6, 8, 10)).await?;
    desk.provide_supplement("P", at(6, 8, 20), None).await?;
    desk.record_result("P", at(6, 8, 30)).await?;
    desk.return_result("P", at(6, 8, 40)).await?;
    // Q: its receipt (version 1) arrives as a Returned.
    desk.receive("Q", OFFICE, at(6, 8, 0), due).await?;
    desk.record_result("Q", at(6, 8, 30)).await?;
    desk.record_survey(
        "Q",
        at(6, 8, 50),
        ev::RatingScale::Satisfaction,
        ev::Rating::Top,
    )
    .await?;
    // Three dossiers nothing happens to on the way.
    for id in ["R1", "R2", "R3"] {
        desk.receive(id, OFFICE, at(6, 9, 0), due).await?;
        desk.record_result(id, at(6, 9, 30)).await?;
    }

    // The others flow on; P counts as received (its version 1 applied) and
    // waits; Q is unknown. Five events wait behind the two parked ones.
    let province = Province::connect(projection.addr).await?;
    eventually(WAIT, || async {
        let s = statistics(&province).await?;
        anyhow::ensure!(
            (s.received, s.resolved, s.returned, s.pending) == (4, 3, 0, 1),
            "before the fix: {s:?}"
        );
        let m = tests::scrape_metrics(metrics_port).await?;
        anyhow::ensure!(
            tests::metric(&m, "projection_parked_events") == Some(2.0),
            "parked gauge: {m}"
        );
        anyhow::ensure!(
            tests::metric(&m, "projection_held_events") == Some(5.0),
            "held gauge"
        );
        Ok(())
    })
    .await?;
    let m = tests::scrape_metrics(metrics_port).await?;
    assert_eq!(
        tests::metric(&m, "projection_events_parked_total"),
        Some(2.0)
    );

    let (ok, list) = motcua(&projection_url, &intake_url, &["parked", "list"]).await?;
    assert!(ok, "{list}");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(
        lines[0].starts_with("seq  position  dossier  version"),
        "{list}"
    );
    // The garbage: position known from its header, dossier unknown.
    let garbage: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&garbage[2..4], ["-", "-"], "{list}");
    assert!(lines[1].contains("not a motcua.events.v1.Event"), "{list}");
    // The Returned in Q's place: dossier and version known.
    let wrong: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&wrong[2..4], ["Q", "1"], "{list}");
    assert!(
        lines[2].contains("the first event of dossier Q is returned"),
        "{list}"
    );
    assert_eq!(lines[3], "2 parked; 5 held behind a version gap", "{list}");
    let seq_garbage: u64 = garbage[0].parse()?;
    let position_garbage: u64 = garbage[1].parse()?;
    assert!(position_garbage >= 2, "{list}");

    // Replaying the stored copies changes nothing, and says so.
    let (ok, out) = motcua(&projection_url, &intake_url, &["parked", "replay"]).await?;
    assert!(!ok, "{out}");
    assert!(out.contains("still parked   seq"), "{out}");
    assert!(
        out.contains("motcua: 2 replayed events are still parked"),
        "{out}"
    );
    let (ok, out) = motcua(
        &projection_url,
        &intake_url,
        &["parked", "replay", "--seq", "999999"],
    )
    .await?;
    assert!(!ok, "{out}");
    assert!(out.contains("999999 is not parked"), "{out}");

    // The fix: intake's copies, by log position.
    let (ok, out) = motcua(
        &projection_url,
        &intake_url,
        &["parked", "replay", "--from-intake"],
    )
    .await?;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "applied        seq {seq_garbage}  position {position_garbage}  dossier P version 2  (intake's copy); 3 held event(s) applied after it"
        )),
        "{out}"
    );
    assert!(
        out.contains("dossier Q version 1  (intake's copy); 2 held event(s) applied after it"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "replayed 2: 2 applied, 0 already applied, 0 still parked; 0 parked in all\n"
        ),
        "{out}"
    );

    // Every figure is right: the expected numbers, and those of a
    // projection built from scratch from intake's own stream.
    let after = statistics(&province).await?;
    assert_eq!(
        (
            after.received,
            after.resolved,
            after.returned,
            after.pending
        ),
        (5, 5, 1, 0),
        "{after:?}"
    );
    let fresh_db = TestDb::new(backend, "fresh").await?;
    let fresh = tests::start_projection(&fresh_db.url, &nats.url(), &intake_stream).await?;
    let fresh_province = Province::connect(fresh.addr).await?;
    eventually(WAIT, || async {
        let s = statistics(&fresh_province).await?;
        anyhow::ensure!(s.received == 5 && s.returned == 1, "fresh: {s:?}");
        Ok(())
    })
    .await?;
    assert_eq!(statistics(&fresh_province).await?, after);
    let (from, to) = (day(2024, 5, 1), day(2024, 5, 31));
    assert_eq!(
        fresh_province.surveys(OFFICE, from, to).await?,
        province.surveys(OFFICE, from, to).await?
    );
    assert_eq!(province.surveys(OFFICE, from, to).await?.surveys, 1);

    let (ok, list) = motcua(&projection_url, &intake_url, &["parked", "list"]).await?;
    assert!(ok, "{list}");
    assert_eq!(list, "no parked events; 0 held\n");
    let m = tests::scrape_metrics(metrics_port).await?;
    assert_eq!(
        tests::metric(&m, "projection_parked_events"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        tests::metric(&m, "projection_held_events"),
        Some(0.0),
        "{m}"
    );
    fresh.shutdown().await?;
    intake.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_wait_for_intakes_copy_on_postgres() -> anyhow::Result<()> {
    parked_events_wait_for_intakes_copy(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_wait_for_intakes_copy_on_sqlite() -> anyhow::Result<()> {
    parked_events_wait_for_intakes_copy(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_fails_in_one_line_when_projection_is_unreachable() -> anyhow::Result<()> {
    let dead = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["parked", "list"][..],
        &["parked", "replay", "--from-intake"],
        &["watch-late", "--office", "TP"],
    ] {
        let (ok, out) = motcua(&dead, &dead, args).await?;
        assert!(!ok, "{args:?}: {out}");
        assert_eq!(
            out,
            format!("motcua: cannot reach projection at {dead}: connection refused\n"),
            "{args:?}"
        );
    }
    Ok(())
}

/// The `motcua watch-late` child process and its standard output, line by line.
struct Watcher {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Watcher {
    fn start(projection: &str, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(tests::binary("motcua")?)
            .arg("--projection")
            .arg(projection)
            .arg("watch-late")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start motcua watch-late")?;
        let stdout = child.stdout.take().context("motcua's stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<String>> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(line) => Ok(line?),
            Err(_) => Ok(None),
        }
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A projection on the same address as the one stopped.
async fn restart_projection(
    addr: std::net::SocketAddr,
    db: &TestDb,
    nats: &NatsServer,
    stream: &str,
) -> anyhow::Result<tests::InProcess> {
    let mut config = projection::Config::for_tests(&db.url, &nats.url(), stream);
    config.listen = addr;
    let app = projection::Application::build(config).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok(tests::InProcess { addr, stop, task })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_late_prints_each_notice_once_across_a_projection_restart() -> anyhow::Result<()> {
    tests::binary("motcua")?;
    // Intake's clock reads 2024-03-11 23:59:58 local: two seconds before
    // dossier A's due date ends.
    let deadline = Timestamp::at_local(day(2024, 3, 12), 0, 0);
    let clock = intake::offset_clock(offset_to(deadline.plus_micros(-2_000_000)));
    let Pair {
        nats,
        intake_db: _intake_db,
        projection_db,
        stream,
        intake,
        projection,
        intake_store: _intake_store,
    } = Pair::start_with_clock(Backend::Sqlite, clock).await?;
    let addr = projection.addr;
    let url = format!("http://{addr}");
    let desk = Desk::connect(intake.addr).await?;
    let mut watch = Watcher::start(&url, &["--office", "TP", "--from-position", "0"])?;

    desk.receive(
        "A",
        "TP",
        Timestamp::at_local(day(2024, 3, 11), 8, 0),
        Timestamp::at_local(day(2024, 3, 11), 17, 0),
    )
    .await?;
    let line = watch.next(WAIT).await?.context("no late notice")?;
    assert_eq!(
        line,
        "1  became-late  A  TP  1.004227  due 2024-03-11 17:00:00  at 2024-03-12 00:00:00"
    );

    // The projection goes away; meanwhile A's result is recorded.
    projection.shutdown().await?;
    desk.record_result("A", deadline.plus_micros(1_000_000))
        .await?;
    let projection = restart_projection(addr, &projection_db, &nats, &stream).await?;
    let line = watch
        .next(WAIT)
        .await?
        .context("no notice after the restart")?;
    assert!(line.starts_with("2  resolved  A  TP  "), "{line}");
    // Nothing printed twice.
    assert_eq!(watch.next(Duration::from_secs(1)).await?, None);
    watch.stop().await?;

    // Started again after position 1: only what came after it, as JSON.
    let mut watch = Watcher::start(&url, &["--office", "TP", "--from-position", "1", "--json"])?;
    let line = watch
        .next(WAIT)
        .await?
        .context("no notice after position 1")?;
    assert!(
        line.starts_with(
            "{\"position\":2,\"change\":\"resolved\",\"dossier_id\":\"A\",\"office_code\":\"TP\""
        ),
        "{line}"
    );
    assert_eq!(watch.next(Duration::from_secs(1)).await?, None);
    watch.stop().await?;
    projection.shutdown().await?;
    intake.shutdown().await?;
    Ok(())
}
