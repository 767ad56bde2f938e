//! Crashes and duplicates change no figure: SIGKILL the projection in the
//! middle of its batches, SIGKILL intake under load with events committed but
//! not yet published, publish every event twice, drop deliveries in the
//! projection's NATS client, share the stream with another system.

use std::time::Duration;

use async_nats::jetstream;
use domain::LocalDay;
use futures::StreamExt as _;
use proto::admin::v1::{ListParkedRequest, parked_events_client::ParkedEventsClient};
use tests::{
    Backend, ChildService, NatsServer, Province, TestDb, district,
    district::{Snapshot, snapshot, wait_for},
    eventually, start_intake, start_projection, start_projection_named, unique_stream,
};

/// What a projection serves once it has built the stream into a fresh
/// database, without faults.
async fn from_scratch(
    nats: &NatsServer,
    stream: &str,
    scripts: &[district::Script],
) -> anyhow::Result<Snapshot> {
    let db = TestDb::new(Backend::Postgres, "fresh").await?;
    let fresh = start_projection_named(&db.url, &nats.url(), stream, "fresh").await?;
    let snapshot = wait_for(&Province::connect(fresh.addr).await?, scripts).await?;
    fresh.shutdown().await?;
    Ok(snapshot)
}

/// One year of the district.
fn year(year: i32) -> anyhow::Result<Vec<district::Script>> {
    district::years(&[year])
}

/// Two years of the district: enough for many batches.
fn workload() -> anyhow::Result<Vec<district::Script>> {
    district::years(&[2018, 2019])
}

fn projection_env(db: &TestDb, nats: &NatsServer, stream: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PROJECTION_DATABASE_URL", db.url.clone()),
        ("NATS_URL", nats.url()),
        ("MOTCUA_STREAM", stream.to_owned()),
        (
            "MOTCUA_SUBJECT_PREFIX",
            format!("{}.events", stream.to_ascii_lowercase()),
        ),
        ("PROJECTION_MAX_BATCH", "500".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_killed_mid_batch_gives_the_same_statistics() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(Backend::Postgres, "intake").await?;
    let (intake, _store) = start_intake(&intake_db.url, &nats.url(), &stream).await?;
    let desk = tests::Desk::connect(intake.addr).await?;
    let scripts = workload()?;
    district::drive(&desk, scripts.clone(), 64).await?;

    // Catch up the backlog in a child process, killed three times on the way.
    let db = TestDb::new(Backend::Postgres, "projection").await?;
    let env = projection_env(&db, &nats, &stream);
    let total = scripts.len() as u64;
    for kill in 1..=3u64 {
        let mut projection = ChildService::start("projection", &env).await?;
        let province = Province::connect(projection.addr).await?;
        eventually(Duration::from_secs(120), || async {
            let s = snapshot(&province).await?;
            anyhow::ensure!(
                s.whole.received >= total * kill / 4,
                "only {} received so far",
                s.whole.received
            );
            Ok(())
        })
        .await?;
        projection.kill();
    }
    let projection = ChildService::start("projection", &env).await?;
    let after_crashes = wait_for(&Province::connect(projection.addr).await?, &scripts).await?;

    // The same stream into a fresh database, without crashes.
    assert_eq!(after_crashes, from_scratch(&nats, &stream, &scripts).await?);
    intake.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_dropped_by_a_full_client_buffer_change_no_figure() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(Backend::Sqlite, "intake").await?;
    let (intake, _store) = start_intake(&intake_db.url, &nats.url(), &stream).await?;
    let scripts = year(2018)?;
    district::drive(
        &tests::Desk::connect(intake.addr).await?,
        scripts.clone(),
        64,
    )
    .await?;

    // A projection whose NATS client holds 100 messages while it asks for
    // 500 a pull (and the next 500 when 250 are left): whenever a batch is
    // being written the client drops what the server delivers, which a
    // consumer without acks is never sent again. Once it has noticed a few
    // gaps it is killed and started again with the default buffer: had it
    // moved its checkpoint past a lost delivery, a figure would be short.
    let db = TestDb::new(Backend::Postgres, "projection").await?;
    let metrics_port = tests::free_port();
    let env = projection_env(&db, &nats, &stream);
    let mut lossy_env = env.clone();
    lossy_env.push(("PROJECTION_NATS_BUFFER", "100".into()));
    lossy_env.push((
        "PROJECTION_METRICS_LISTEN",
        format!("127.0.0.1:{metrics_port}"),
    ));
    let mut lossy = ChildService::start("projection", &lossy_env).await?;
    let gaps = eventually(Duration::from_secs(60), || async {
        let metrics = tests::scrape_metrics(metrics_port).await?;
        let dropped = tests::metric(&metrics, "nats_messages_dropped_total").unwrap_or(0.0);
        let gaps = tests::metric(&metrics, "projection_delivery_gaps_total").unwrap_or(0.0);
        anyhow::ensure!(dropped >= 500.0, "{dropped} messages dropped so far");
        Ok(gaps)
    })
    .await?;
    lossy.kill();
    let projection = ChildService::start("projection", &env).await?;
    let after_gaps = wait_for(&Province::connect(projection.addr).await?, &scripts).await?;
    assert!(
        gaps >= 1.0,
        "deliveries were dropped, and no gap was noticed"
    );

    assert_eq!(after_gaps, from_scratch(&nats, &stream, &scripts).await?);
    intake.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_on_a_shared_stream_change_no_figure() -> anyhow::Result<()> {
    // The stream also carries another system's subjects: the projection's
    // consumer filters on the events' subjects (on a stream of its own it
    // takes no filter, which nats-server creates faster).
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let settings = tests::stream_settings(&stream);
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let other = format!("{}.other", stream.to_ascii_lowercase());
    let mut config = settings.config();
    config.subjects.push(format!("{other}.>"));
    js.create_stream(config).await?;

    let intake_db = TestDb::new(Backend::Sqlite, "intake").await?;
    let projection_db = TestDb::new(Backend::Sqlite, "projection").await?;
    let (intake, _) = start_intake(&intake_db.url, &nats.url(), &stream).await?;
    let projection = start_projection(&projection_db.url, &nats.url(), &stream).await?;
    let desk = tests::Desk::connect(intake.addr).await?;
    let scripts: Vec<_> = year(2015)?.into_iter().take(400).collect();
    let (first, second) = scripts.split_at(200);
    district::drive(&desk, first.to_vec(), 16).await?;
    for i in 0..10 {
        js.publish(format!("{other}.note"), format!("not an event {i}").into())
            .await?
            .await?;
    }
    district::drive(&desk, second.to_vec(), 16).await?;

    wait_for(&Province::connect(projection.addr).await?, &scripts).await?;
    let parked = ParkedEventsClient::connect(format!("http://{}", projection.addr))
        .await?
        .list_parked(ListParkedRequest::default())
        .await?
        .into_inner();
    assert_eq!((parked.total, parked.held), (0, 0), "{parked:?}");
    projection.shutdown().await?;
    intake.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_killed_under_load_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(Backend::Sqlite, "intake").await?;
    let env = vec![
        ("INTAKE_DATABASE_URL", intake_db.url.clone()),
        ("NATS_URL", nats.url()),
        ("MOTCUA_STREAM", stream.clone()),
        (
            "MOTCUA_SUBJECT_PREFIX",
            format!("{}.events", stream.to_ascii_lowercase()),
        ),
    ];
    let mut intake = ChildService::start("intake", &env).await?;
    let addr = intake.addr;
    let projection_db = TestDb::new(Backend::Sqlite, "projection").await?;
    let projection = start_projection(&projection_db.url, &nats.url(), &stream).await?;
    let province = Province::connect(projection.addr).await?;

    let scripts = workload()?;
    let desk = tests::Desk::connect(addr).await?;
    let load = tokio::spawn({
        let scripts = scripts.clone();
        async move { district::drive(&desk, scripts, 64).await }
    });
    // Kill intake twice while the load runs; the desk retries with the same
    // request ids, as clients do after UNAVAILABLE.
    for kill in 1..=2u64 {
        eventually(Duration::from_secs(120), || async {
            let s = snapshot(&province).await?;
            anyhow::ensure!(
                s.whole.received >= scripts.len() as u64 * kill / 3,
                "load not far enough"
            );
            Ok(())
        })
        .await?;
        intake.kill();
        intake = ChildService::start_on("intake", addr, &env).await?;
    }
    let commands = load.await??;
    let seen = wait_for(&province, &scripts).await?;

    // Exactly one desk event per command, whatever was retried (and at
    // most one Late per dossier from the deadline monitor, as the file's
    // years are long past).
    let store = intake::EventStore::open(&intake_db.url).await?;
    assert_eq!(store.count_desk_events().await?, commands);
    let late = store.kind_counts("late").await?;
    assert!(late.values().all(|n| *n == 1), "one Late per dossier");
    // And the figures equal the file's.
    district::assert_figures_match(&seen)?;
    projection.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_every_event_twice_changes_nothing() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(Backend::Sqlite, "intake").await?;
    let projection_db = TestDb::new(Backend::Sqlite, "projection").await?;
    let (intake, _) = start_intake(&intake_db.url, &nats.url(), &stream).await?;
    let projection = start_projection(&projection_db.url, &nats.url(), &stream).await?;
    let province = Province::connect(projection.addr).await?;
    let scripts = year(2015)?;
    district::drive(
        &tests::Desk::connect(intake.addr).await?,
        scripts.clone(),
        64,
    )
    .await?;
    let before = wait_for(&province, &scripts).await?;

    // Publish every message of the stream again, as a second copy with
    // another message id (so JetStream's duplicate window lets it through).
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client);
    let mut s = js.get_stream(&stream).await?;
    let last = s.info().await?.state.last_sequence;
    let copier = s
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = copier.messages().await?.take(usize::try_from(last)?);
    let mut acks = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await? {
        let m = m?;
        let mut headers = m.headers.clone().unwrap_or_default();
        headers.insert(
            "Nats-Msg-Id",
            format!(
                "copy-{}",
                m.info().map_err(|e| anyhow::anyhow!(e))?.stream_sequence
            )
            .as_str(),
        );
        acks.push(
            js.publish_with_headers(m.subject.clone(), headers, m.payload.clone())
                .await?,
        );
        // Each unawaited ack holds one of the context's in-flight permits.
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    assert_eq!(s.info().await?.state.last_sequence, last * 2);

    // The projection consumed all copies…
    eventually(Duration::from_secs(60), || async {
        let applied = tests::applied_through(&projection_db.url).await?;
        anyhow::ensure!(applied == last * 2, "applied through {applied}");
        Ok(())
    })
    .await?;
    // …and no figure moved.
    assert_eq!(snapshot(&province).await?, before);
    // A projection built from the doubled stream agrees.
    let fresh_db = TestDb::new(Backend::Sqlite, "fresh").await?;
    let fresh = start_projection_named(&fresh_db.url, &nats.url(), &stream, "fresh").await?;
    let fresh_province = Province::connect(fresh.addr).await?;
    let rebuilt = wait_for(&fresh_province, &scripts).await?;
    assert_eq!(rebuilt, before);
    fresh.shutdown().await?;
    projection.shutdown().await?;
    intake.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_intake_every_accepted_command_published() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(Backend::Sqlite, "intake").await?;
    let env = vec![
        ("INTAKE_DATABASE_URL", intake_db.url.clone()),
        ("NATS_URL", nats.url()),
        ("MOTCUA_STREAM", stream.clone()),
        (
            "MOTCUA_SUBJECT_PREFIX",
            format!("{}.events", stream.to_ascii_lowercase()),
        ),
    ];
    let mut intake = ChildService::start("intake", &env).await?;
    let desk = tests::Desk::connect(intake.addr).await?;
    // Keep 32 desks busy, then ask intake to stop while they are.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let day = LocalDay::from_ymd(2022, 2, 7).expect("date");
    let load: Vec<_> = (0..32)
        .map(|client| {
            let (desk, accepted) = (desk.clone(), accepted.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let at = domain::Timestamp::at_local(day, 8, 0);
                    let due =
                        domain::Timestamp::at_local(LocalDay::from_days(day.days() + 9), 17, 0);
                    match desk
                        .receive(&format!("S-{client}-{i}"), "TERM", at, due)
                        .await
                    {
                        Ok(_) => accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                        Err(_) => return,
                    };
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(30), || async {
        let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
        anyhow::ensure!(n >= 500, "only {n} accepted");
        Ok(())
    })
    .await?;
    let status = tokio::task::spawn_blocking(move || intake.terminate()).await??;
    assert!(status.success(), "intake exited with {status}");
    for task in load {
        task.await?;
    }
    // Every accepted command is in the store, and every stored event made
    // it to the stream before intake exited.
    let accepted = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let store = intake::EventStore::open(&intake_db.url).await?;
    let stored = store.count().await?;
    assert!(stored >= accepted, "{stored} stored < {accepted} accepted");
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let mut s = js.get_stream(&stream).await?;
    assert_eq!(
        s.info().await?.state.messages,
        stored,
        "everything committed was published"
    );
    Ok(())
}
