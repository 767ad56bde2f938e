//! Nothing folds two logs into one report. A fresh store pointed at a used
//! stream, or a store restored from a backup older than the stream: intake's
//! relay refuses the stream (the desk still commits) and says how out; a
//! projection meeting another log's events applies none of them and says
//! why. Both databases, real nats-server.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use domain::LocalDay;
use proto::admin::v1 as admin;
use tests::{
    Backend, Desk, Pair, Province, TestDb, eventually, health, start_intake, start_projection_named,
};
use tonic_health::pb::health_check_response::ServingStatus;

const OFFICE: &str = "LOGS-1";

fn day() -> anyhow::Result<LocalDay> {
    LocalDay::from_ymd(2024, 9, 9).context("date")
}

async fn receive(desk: &Desk, prefix: &str, ids: std::ops::Range<u32>) -> anyhow::Result<()> {
    desk.receive_many(prefix, OFFICE, day()?, ids).await
}

async fn received(province: &Province) -> anyhow::Result<u64> {
    Ok(province.statistics(OFFICE, day()?, day()?).await?.received)
}

async fn wait_received(province: &Province, n: u64) -> anyhow::Result<()> {
    eventually(Duration::from_secs(30), || async {
        let got = received(province).await?;
        anyhow::ensure!(got == n, "received {got}, expected {n}");
        Ok(())
    })
    .await
}

async fn channel(addr: std::net::SocketAddr) -> anyhow::Result<tonic::transport::Channel> {
    Ok(
        tonic::transport::Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?,
    )
}

/// `motcua republish --from 0` through intake at `addr`.
async fn republish_all(addr: std::net::SocketAddr) -> anyhow::Result<Result<u64, String>> {
    Desk::connect(addr).await?.republish_all().await
}

async fn relay_health(addr: std::net::SocketAddr) -> anyhow::Result<i32> {
    health(addr, intake::RELAY_HEALTH).await
}

async fn stream_messages(js: &jetstream::Context, stream: &str) -> anyhow::Result<u64> {
    Ok(js.get_stream(stream).await?.info().await?.state.messages)
}

/// The relay refuses the stream: NOT_SERVING, and a republish says why and
/// what to do.
async fn relay_refuses(addr: std::net::SocketAddr, stream: &str) -> anyhow::Result<()> {
    eventually(Duration::from_secs(10), || async {
        let status = relay_health(addr).await?;
        anyhow::ensure!(status == ServingStatus::NotServing as i32, "relay {status}");
        Ok(())
    })
    .await?;
    let refusal = republish_all(addr)
        .await?
        .expect_err("a republish onto the refused stream");
    for needed in [
        stream,
        "--stream",
        "delete this one",
        "motcua republish --from 0",
    ] {
        assert!(refusal.contains(needed), "{needed:?} missing in: {refusal}");
    }
    Ok(())
}

async fn a_fresh_store_on_a_used_stream(backend: Backend) -> anyhow::Result<()> {
    let mut pair = Pair::start(backend).await?;
    let js = jetstream::new(async_nats::connect(pair.nats.url()).await?);
    receive(&pair.desk().await?, "OLD", 0..10).await?;
    let old_province = pair.province().await?;
    wait_received(&old_province, 10).await?;

    // Start over with an empty store on the same stream.
    pair.intake.stop_in_place().await?;
    let fresh = TestDb::new(backend, "fresh").await?;
    let (intake, _) = start_intake(&fresh.url, &pair.nats.url(), &pair.stream).await?;
    pair.intake = intake;
    let desk = pair.desk().await?;
    receive(&desk, "NEW", 0..5).await?;
    relay_refuses(pair.intake.addr, &pair.stream).await?;
    assert_eq!(
        stream_messages(&js, &pair.stream).await?,
        10,
        "nothing published"
    );

    // The way out: delete the stream, publish the new log again.
    js.delete_stream(&pair.stream).await?;
    assert_eq!(republish_all(pair.intake.addr).await?, Ok(5));
    receive(&desk, "NEW", 5..7).await?;
    let db = TestDb::new(backend, "newprojection").await?;
    let new_projection =
        start_projection_named(&db.url, &pair.nats.url(), &pair.stream, "new").await?;
    let new_province = Province::connect(new_projection.addr).await?;
    wait_received(&new_province, 7).await?;
    eventually(Duration::from_secs(10), || async {
        let status = relay_health(pair.intake.addr).await?;
        anyhow::ensure!(status == ServingStatus::Serving as i32, "relay {status}");
        Ok(())
    })
    .await?;

    // The old projection met the new log on the restored stream: it applied
    // none of it, and its parked list says why.
    let mut parked =
        admin::parked_events_client::ParkedEventsClient::new(channel(pair.projection.addr).await?);
    let page = eventually(Duration::from_secs(30), || {
        let mut parked = parked.clone();
        async move {
            let page = parked
                .list_parked(admin::ListParkedRequest::default())
                .await?
                .into_inner();
            anyhow::ensure!(!page.events.is_empty(), "nothing parked yet");
            Ok(page)
        }
    })
    .await?;
    assert_eq!(page.events.len(), 1, "one event parked, then it stopped");
    assert!(
        page.events[0].reason.contains("another log"),
        "{}",
        page.events[0].reason
    );
    assert_eq!(received(&old_province).await?, 10, "nothing of the new log");
    drop(
        parked
            .list_parked(admin::ListParkedRequest::default())
            .await?,
    );
    new_projection.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_on_a_used_stream_on_postgres() -> anyhow::Result<()> {
    a_fresh_store_on_a_used_stream(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_on_a_used_stream_on_sqlite() -> anyhow::Result<()> {
    a_fresh_store_on_a_used_stream(Backend::Sqlite).await
}

async fn a_store_restored_from_an_older_backup(backend: Backend) -> anyhow::Result<()> {
    let mut pair = Pair::start(backend).await?;
    let js = jetstream::new(async_nats::connect(pair.nats.url()).await?);
    receive(&pair.desk().await?, "A", 0..10).await?;
    let province = pair.province().await?;
    wait_received(&province, 10).await?;

    // A backup, then more appends published after it.
    pair.intake.stop_in_place().await?;
    pair.intake_store.close().await;
    let backup = pair.intake_db.copy("backup").await?;
    let (intake, _) = start_intake(&pair.intake_db.url, &pair.nats.url(), &pair.stream).await?;
    pair.intake = intake;
    receive(&pair.desk().await?, "A", 10..15).await?;
    wait_received(&province, 15).await?;

    // The backup restored: the stream is ahead of its log.
    pair.intake.stop_in_place().await?;
    let (intake, restored) = start_intake(&backup.url, &pair.nats.url(), &pair.stream).await?;
    pair.intake = intake;
    let desk = pair.desk().await?;
    receive(&desk, "B", 0..3).await?;
    relay_refuses(pair.intake.addr, &pair.stream).await?;
    assert_eq!(stream_messages(&js, &pair.stream).await?, 15);
    assert_eq!(restored.count().await?, 13, "the desk still commits");

    // The remedy the message names works: the restored log is published.
    js.delete_stream(&pair.stream).await?;
    assert_eq!(republish_all(pair.intake.addr).await?, Ok(13));
    let db = TestDb::new(backend, "afterrestore").await?;
    let fresh = start_projection_named(&db.url, &pair.nats.url(), &pair.stream, "fresh").await?;
    let fresh_province = Province::connect(fresh.addr).await?;
    wait_received(&fresh_province, 13).await?;
    assert_eq!(stream_messages(&js, &pair.stream).await?, 13);
    fresh.shutdown().await?;
    restored.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restored_from_an_older_backup_on_postgres() -> anyhow::Result<()> {
    a_store_restored_from_an_older_backup(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restored_from_an_older_backup_on_sqlite() -> anyhow::Result<()> {
    a_store_restored_from_an_older_backup(Backend::Sqlite).await
}
