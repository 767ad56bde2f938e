//! Rebuild without downtime: a new generation fills from the stream while
//! the serving one answers, swaps in, equals a build from scratch, never
//! re-sends history to late watchers, and survives a crash mid-way.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use domain::{LocalDay, Timestamp};
use proto::reports::v1::{self as rp, rebuilds_client::RebuildsClient};
use tests::{
    Backend, ChildService, Desk, NatsServer, Pair, Province, TestDb, district, eventually,
    next_notice, start_intake, start_projection_named,
};

const WAIT: Duration = Duration::from_secs(120);

fn year(y: i32) -> (LocalDay, LocalDay) {
    (
        LocalDay::first_of_year(y).expect("year"),
        LocalDay::last_of_year(y).expect("year"),
    )
}

/// Every figure the tests compare: the district's 2018 and the load office.
async fn figures(province: &Province) -> anyhow::Result<Vec<rp::Statistics>> {
    let (from, to) = year(2018);
    let (lfrom, lto) = year(2026);
    Ok(vec![
        province.statistics(district::OFFICE, from, to).await?,
        province.statistics("LOAD", lfrom, lto).await?,
    ])
}

async fn rebuild_status(
    client: &mut RebuildsClient<tonic::transport::Channel>,
) -> anyhow::Result<rp::RebuildStatus> {
    Ok(client
        .get_rebuild(rp::GetRebuildRequest {})
        .await?
        .into_inner())
}

fn state(s: &rp::RebuildStatus) -> rp::RebuildState {
    rp::RebuildState::try_from(s.state).unwrap_or(rp::RebuildState::Unspecified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_load_answers_throughout_and_swaps_to_a_build_from_scratch()
-> anyhow::Result<()> {
    let pair = Pair::start(Backend::Postgres).await?;
    let desk = pair.desk().await?;
    let province = pair.province().await?;
    let deadlines = pair.deadlines().await?;
    let scripts: Vec<_> = district::figures()?
        .iter()
        .filter(|y| y.year == 2018)
        .flat_map(district::scripts)
        .collect();
    let dossiers = scripts.len() as u64;
    district::drive(&desk, scripts, 64).await?;
    // The drive ran with today's clock: the deadline monitor marked many of
    // 2018's dossiers late before their results came. Wait until the feed
    // holds all of it (a notice when late, one when resolved).
    let late = pair.intake_store.kind_counts("late").await?.len() as u64;
    assert!(late > 0, "history has Late events to replay");
    let mut history = deadlines.watch(district::OFFICE, Some(0)).await?;
    let mut head = 0;
    for _ in 0..2 * late {
        head = next_notice(&mut history, WAIT).await?.position;
    }
    drop(history);
    eventually(WAIT, || async {
        let f = figures(&province).await?;
        anyhow::ensure!(f[0].received == dossiers && f[0].resolved == dossiers);
        Ok(())
    })
    .await?;
    // A watcher of the district from here on: a rebuild must not send it
    // the history again.
    let mut watcher = deadlines.watch(district::OFFICE, Some(head)).await?;

    // A load of new receipts (due next year: never late) during the rebuild.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let (desk, stop, sent) = (desk.clone(), stop.clone(), sent.clone());
        async move {
            let day = LocalDay::from_ymd(2026, 11, 2).expect("date");
            let due = Timestamp::at_local(LocalDay::from_ymd(2027, 6, 1).expect("date"), 17, 0);
            while !stop.load(Ordering::Acquire) {
                let k = sent.fetch_add(1, Ordering::AcqRel);
                desk.receive(
                    &format!("LOAD-{k}"),
                    "LOAD",
                    Timestamp::at_local(day, 9, 0),
                    due,
                )
                .await?;
            }
            anyhow::Ok(())
        }
    });

    let mut rebuilds = RebuildsClient::connect(format!("http://{}", pair.projection.addr)).await?;
    let before = rebuild_status(&mut rebuilds).await?;
    assert_eq!(state(&before), rp::RebuildState::Idle);
    let started = rebuilds
        .start_rebuild(rp::StartRebuildRequest {})
        .await?
        .into_inner();
    assert_eq!(state(&started), rp::RebuildState::Running);
    // One at a time.
    let second = rebuilds.start_rebuild(rp::StartRebuildRequest {}).await;
    assert_eq!(
        second.err().map(|s| s.code()),
        Some(tonic::Code::FailedPrecondition)
    );
    // The reports answer throughout, never empty.
    let mut answers = 0;
    let done = loop {
        let f = figures(&province).await?;
        assert_eq!(
            f[0].received, dossiers,
            "the district's 2018 during the rebuild"
        );
        assert_eq!(f[0].resolved, dossiers);
        answers += 1;
        let status = rebuild_status(&mut rebuilds).await?;
        match state(&status) {
            rp::RebuildState::Done => break status,
            rp::RebuildState::Failed => anyhow::bail!("rebuild failed: {}", status.error),
            _ => {}
        }
    };
    assert!(answers > 1, "the reports were read during the rebuild");
    assert_eq!(done.serving_generation, started.generation);
    assert!(done.events_applied > 0);

    stop.store(true, Ordering::Release);
    load.await??;
    // Exactly the receipts that landed, in both the rebuilt generation and
    // a build from scratch on a fresh database.
    let landed = pair
        .intake_store
        .kind_counts("received")
        .await?
        .keys()
        .filter(|id| id.starts_with("LOAD-"))
        .count() as u64;
    assert!(landed + 1 >= sent.load(Ordering::Acquire));
    let after = eventually(WAIT, || async {
        let f = figures(&province).await?;
        anyhow::ensure!(
            f[1].received == landed,
            "load: {} of {landed}",
            f[1].received
        );
        anyhow::ensure!(f[0].received == dossiers);
        Ok(f)
    })
    .await?;
    let fresh_db = TestDb::new(Backend::Postgres, "fresh").await?;
    let fresh =
        start_projection_named(&fresh_db.url, &pair.nats.url(), &pair.stream, "fresh").await?;
    let fresh_province = Province::connect(fresh.addr).await?;
    eventually(WAIT, || async {
        let f = figures(&fresh_province).await?;
        anyhow::ensure!(f == after, "fresh {f:?} vs rebuilt {after:?}");
        Ok(())
    })
    .await?;

    // The watcher got nothing of the replay; the next news arrives once,
    // right after the position it held.
    desk.receive(
        "LATE-AFTER",
        district::OFFICE,
        Timestamp::at_local(LocalDay::from_ymd(2025, 1, 6).expect("date"), 9, 0),
        Timestamp::at_local(LocalDay::from_ymd(2025, 1, 10).expect("date"), 17, 0),
    )
    .await?;
    let news = next_notice(&mut watcher, WAIT).await?;
    assert_eq!(news.dossier_id, "LATE-AFTER");
    assert_eq!(news.position, head + 1);
    fresh.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_rebuild_leaves_the_serving_generation_and_it_can_start_again()
-> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = tests::unique_stream();
    let intake_db = TestDb::new(Backend::Sqlite, "intake").await?;
    let (intake, _) = start_intake(&intake_db.url, &nats.url(), &stream).await?;
    let db = TestDb::new(Backend::Sqlite, "projection").await?;
    let env = vec![
        ("PROJECTION_DATABASE_URL", db.url.clone()),
        ("NATS_URL", nats.url()),
        ("MOTCUA_STREAM", stream.clone()),
        (
            "MOTCUA_SUBJECT_PREFIX",
            format!("{}.events", stream.to_ascii_lowercase()),
        ),
        ("PROJECTION_MAX_BATCH", "200".into()),
    ];
    let projection = ChildService::start("projection", &env).await?;
    let addr = projection.addr;
    let desk = Desk::connect(intake.addr).await?;
    let scripts: Vec<_> = district::figures()?
        .iter()
        .filter(|y| y.year == 2018)
        .flat_map(district::scripts)
        .collect();
    let dossiers = scripts.len() as u64;
    district::drive(&desk, scripts, 64).await?;
    let province = Province::connect(addr).await?;
    let before = eventually(WAIT, || async {
        let f = figures(&province).await?;
        anyhow::ensure!(f[0].received == dossiers && f[0].resolved == dossiers);
        Ok(f)
    })
    .await?;

    let mut rebuilds = RebuildsClient::connect(format!("http://{addr}")).await?;
    rebuilds.start_rebuild(rp::StartRebuildRequest {}).await?;
    let status = eventually(WAIT, || {
        let mut rebuilds = rebuilds.clone();
        async move {
            let s = rebuild_status(&mut rebuilds).await?;
            anyhow::ensure!(s.events_applied > 0 || state(&s) != rp::RebuildState::Running);
            Ok(s)
        }
    })
    .await?;
    drop(projection); // SIGKILL
    eprintln!(
        "killed during the rebuild: {:?}, {} applied, {} pending",
        state(&status),
        status.events_applied,
        status.events_pending
    );

    // Restarted: the serving generation answers as before.
    let projection = ChildService::start_on("projection", addr, &env).await?;
    let province = Province::connect(projection.addr).await?;
    assert_eq!(figures(&province).await?, before);
    let mut rebuilds = RebuildsClient::connect(format!("http://{addr}")).await?;
    assert_eq!(
        state(&rebuild_status(&mut rebuilds).await?),
        rp::RebuildState::Idle
    );
    // And a rebuild starts again and completes, from the operator's CLI.
    let out = tokio::process::Command::new(tests::binary("motcua")?)
        .args(["--projection", &format!("http://{addr}"), "rebuild"])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "motcua rebuild: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("rebuilt: generation "), "{stdout}");
    assert_eq!(
        state(&rebuild_status(&mut rebuilds).await?),
        rp::RebuildState::Done
    );
    assert_eq!(figures(&province).await?, before);
    drop(projection);
    intake.shutdown().await?;
    Ok(())
}
