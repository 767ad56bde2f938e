//! A projection that resumes on a stream restored or purged while it was
//! stopped: it must take every event of the log once, whatever the stream's
//! numbering, and end with the figures of a projection built from scratch.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use domain::LocalDay;
use proto::reports::v1 as rp;
use tests::{
    Backend, Desk, Pair, Province, TestDb, eventually, start_projection, start_projection_named,
};

const OFFICE: &str = "RESTORE-1";

fn day() -> anyhow::Result<LocalDay> {
    LocalDay::from_ymd(2024, 3, 4).context("date")
}

/// Receives `ids` at the office; due far ahead, so no Late event joins.
async fn receive(desk: &Desk, ids: std::ops::Range<u32>) -> anyhow::Result<()> {
    desk.receive_many("R", OFFICE, day()?, ids).await
}

async fn figures(province: &Province) -> anyhow::Result<(rp::Statistics, rp::YearlySeries)> {
    Ok((
        province.statistics(OFFICE, day()?, day()?).await?,
        province.yearly(OFFICE).await?,
    ))
}

async fn received(province: &Province) -> anyhow::Result<u64> {
    Ok(figures(province).await?.0.received)
}

/// Has intake publish its whole log again (`motcua republish --from 0`).
async fn republish_all(pair: &Pair) -> anyhow::Result<u64> {
    pair.desk()
        .await?
        .republish_all()
        .await?
        .map_err(|refused| anyhow::anyhow!("republish refused: {refused}"))
}

/// The figures a projection built from scratch (new database, new
/// consumer) computes once it holds `expect` receipts.
async fn from_scratch(
    pair: &Pair,
    backend: Backend,
    expect: u64,
) -> anyhow::Result<rp::Statistics> {
    let db = TestDb::new(backend, "scratch").await?;
    let scratch =
        start_projection_named(&db.url, &pair.nats.url(), &pair.stream, "scratch").await?;
    let province = Province::connect(scratch.addr).await?;
    let stats = eventually(Duration::from_secs(30), || async {
        let f = figures(&province).await?;
        anyhow::ensure!(f.0.received == expect, "received {}", f.0.received);
        Ok(f.0)
    })
    .await?;
    scratch.shutdown().await?;
    Ok(stats)
}

/// Publishes `n` messages that are not intake's on the events' subjects
/// (another system on the same subjects): the projection parks them.
async fn publish_foreign(js: &jetstream::Context, stream: &str, n: usize) -> anyhow::Result<()> {
    let settings = tests::stream_settings(stream);
    for i in 0..n {
        js.publish(
            settings.subject_of("BTH", OFFICE, "received"),
            format!("not an event {i}").into(),
        )
        .await?
        .await?;
    }
    Ok(())
}

/// The scenario: receipts and foreign messages, the projection
/// stopped, the stream deleted and restored by a republish, more receipts;
/// the projection started again on its database resumes by log position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_resumes_on_a_restored_stream_without_skipping() -> anyhow::Result<()> {
    let mut pair = Pair::start(Backend::Postgres).await?;
    let desk = pair.desk().await?;
    let js = jetstream::new(async_nats::connect(pair.nats.url()).await?);
    receive(&desk, 0..20).await?;
    publish_foreign(&js, &pair.stream, 15).await?;
    receive(&desk, 20..30).await?;
    let province = pair.province().await?;
    eventually(Duration::from_secs(30), || async {
        let n = received(&province).await?;
        anyhow::ensure!(n == 30, "received {n}");
        Ok(())
    })
    .await?;
    pair.projection.stop_in_place().await?;

    js.delete_stream(&pair.stream).await?;
    assert_eq!(republish_all(&pair).await?, 30);
    receive(&desk, 30..50).await?;

    pair.projection =
        start_projection(&pair.projection_db.url, &pair.nats.url(), &pair.stream).await?;
    let province = pair.province().await?;
    let resumed = eventually(Duration::from_secs(30), || async {
        let f = figures(&province).await?;
        anyhow::ensure!(f.0.received == 50, "received {}", f.0.received);
        Ok(f.0)
    })
    .await?;
    assert_eq!(resumed, from_scratch(&pair, Backend::Postgres, 50).await?);
    Ok(())
}

/// A purge while the projection is stopped, events after it, then the log
/// republished: nothing is skipped or counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_resumes_after_a_purge_and_a_republish() -> anyhow::Result<()> {
    let mut pair = Pair::start(Backend::Sqlite).await?;
    let desk = pair.desk().await?;
    let js = jetstream::new(async_nats::connect(pair.nats.url()).await?);
    receive(&desk, 0..20).await?;
    let province = pair.province().await?;
    eventually(Duration::from_secs(30), || async {
        let n = received(&province).await?;
        anyhow::ensure!(n == 20, "received {n}");
        Ok(())
    })
    .await?;
    pair.projection.stop_in_place().await?;

    // Published while the projection was away, then purged with the rest.
    receive(&desk, 20..30).await?;
    let mut stream = js.get_stream(&pair.stream).await?;
    stream.purge().await?;
    // Events after the purge arrive before the ones it removed.
    receive(&desk, 30..35).await?;
    pair.projection =
        start_projection(&pair.projection_db.url, &pair.nats.url(), &pair.stream).await?;
    let province = pair.province().await?;
    eventually(Duration::from_secs(30), || async {
        let n = received(&province).await?;
        anyhow::ensure!(n == 25, "received {n}: the 5 after the purge");
        Ok(())
    })
    .await?;

    // Short duplicate window: the republished copies reach the stream.
    let mut config = stream.info().await?.config.clone();
    config.duplicate_window = Duration::from_millis(200);
    js.update_stream(config).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(republish_all(&pair).await?, 35);
    let resumed = eventually(Duration::from_secs(30), || async {
        let f = figures(&province).await?;
        anyhow::ensure!(f.0.received == 35, "received {}", f.0.received);
        Ok(f.0)
    })
    .await?;
    assert_eq!(resumed, from_scratch(&pair, Backend::Sqlite, 35).await?);
    Ok(())
}
