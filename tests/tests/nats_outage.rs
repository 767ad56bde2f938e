//! Intake during a NATS outage: the store is the authority and the relay an
//! outbox, so a desk keeps taking commands, even across an intake restart
//! while NATS is down; intake says it is degraded, and once NATS is back
//! the relay publishes the backlog in order and the projection applies
//! every event once.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use domain::LocalDay;
use tests::{Backend, Desk, Pair, eventually, health, start_intake};
use tonic_health::pb::health_check_response::ServingStatus;

const OFFICE: &str = "OUTAGE-1";

async fn receive(desk: &Desk, ids: std::ops::Range<u32>) -> anyhow::Result<()> {
    let day = LocalDay::from_ymd(2024, 5, 6).context("date")?;
    desk.receive_many("N", OFFICE, day, ids).await
}

async fn outage(backend: Backend) -> anyhow::Result<()> {
    let mut pair = Pair::start(backend).await?;
    let desk = pair.desk().await?;
    receive(&desk, 0..10).await?;
    let province = pair.province().await?;
    let day = LocalDay::from_ymd(2024, 5, 6).context("date")?;
    eventually(Duration::from_secs(30), || async {
        let n = province.statistics(OFFICE, day, day).await?.received;
        anyhow::ensure!(n == 10, "received {n}");
        Ok(())
    })
    .await?;

    // NATS goes away, then intake restarts: it starts and takes commands.
    pair.nats.kill();
    pair.intake.stop_in_place().await?;
    let started = std::time::Instant::now();
    let (intake, _) = start_intake(&pair.intake_db.url, &pair.nats.url(), &pair.stream).await?;
    pair.intake = intake;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "intake waited {:?} for NATS",
        started.elapsed()
    );
    let desk = pair.desk().await?;
    receive(&desk, 10..25).await?;
    assert_eq!(
        health(pair.intake.addr, "motcua.intake.v1.Intake").await?,
        ServingStatus::Serving as i32,
        "the desk is served"
    );
    eventually(Duration::from_secs(10), || async {
        let status = health(pair.intake.addr, intake::RELAY_HEALTH).await?;
        anyhow::ensure!(status == ServingStatus::NotServing as i32, "relay {status}");
        Ok(())
    })
    .await
    .context("the relay reports it cannot publish")?;

    // NATS back: the backlog is published in order, each event once.
    pair.nats.restart().await?;
    eventually(Duration::from_secs(30), || async {
        let n = province.statistics(OFFICE, day, day).await?.received;
        anyhow::ensure!(n == 25, "received {n}");
        Ok(())
    })
    .await?;
    let js = jetstream::new(async_nats::connect(pair.nats.url()).await?);
    let state = js
        .get_stream(&pair.stream)
        .await?
        .info()
        .await?
        .state
        .clone();
    assert_eq!(
        (state.messages, state.last_sequence),
        (25, 25),
        "each event once on the stream"
    );
    eventually(Duration::from_secs(10), || async {
        let status = health(pair.intake.addr, intake::RELAY_HEALTH).await?;
        anyhow::ensure!(status == ServingStatus::Serving as i32, "relay {status}");
        Ok(())
    })
    .await
    .context("the relay reports it publishes again")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_serves_through_a_nats_outage_on_postgres() -> anyhow::Result<()> {
    outage(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_serves_through_a_nats_outage_on_sqlite() -> anyhow::Result<()> {
    outage(Backend::Sqlite).await
}
