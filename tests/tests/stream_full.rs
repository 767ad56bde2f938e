//! The event stream full (issue 22, item 4: a stream whose byte limit is
//! reached, as a JetStream store out of space refuses writes): intake goes
//! on taking desk commands into its own store, every one acknowledged
//! durably; its relay is refused, reports the relay `NOT_SERVING`, and
//! keeps the events; once there is room again every event reaches the
//! stream once, without a restart.

use std::time::Duration;

use async_nats::jetstream::{self, stream::DiscardPolicy};
use tests::{NatsServer, TestDb, eventually, start_intake, unique_stream};

/// `SERVING` in `grpc.health.v1`.
const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_loses_nothing_and_fills_when_there_is_room() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "error");
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    // Room for a few events only, and full means refused, not old events
    // thrown away (Motcua's own stream has no limit: the log is kept).
    let mut config = tests::stream_settings(&stream).config();
    config.max_bytes = 4_096;
    config.discard = DiscardPolicy::New;
    js.create_stream(config.clone()).await?;
    let db = TestDb::new(tests::Backend::Sqlite, "intake").await?;
    let (intake, store) = start_intake(&db.url, &nats.url(), &stream).await?;
    let desk = tests::Desk::connect(intake.addr).await?;

    for n in 0..100 {
        desk.receive_with(tests::receipt_due_later(&format!("D-{n}")))
            .await?;
    }
    assert_eq!(
        store.count().await?,
        100,
        "every command acknowledged and kept"
    );
    let wait = Duration::from_secs(30);
    eventually(wait, || async {
        let health = tests::health(intake.addr, intake::RELAY_HEALTH).await?;
        anyhow::ensure!(health == NOT_SERVING, "relay health {health}");
        Ok(())
    })
    .await?;
    let stored = js.get_stream(&stream).await?.info().await?.state.messages;
    assert!(stored < 100, "the stream was full: {stored} stored");

    // Room again.
    config.max_bytes = -1;
    js.update_stream(&config).await?;
    eventually(wait, || async {
        let stored = js.get_stream(&stream).await?.info().await?.state.messages;
        anyhow::ensure!(stored == 100, "{stored} of 100 in the stream");
        Ok(())
    })
    .await?;
    eventually(wait, || async {
        let health = tests::health(intake.addr, intake::RELAY_HEALTH).await?;
        anyhow::ensure!(health == SERVING, "relay health {health}");
        Ok(())
    })
    .await?;
    intake.shutdown().await
}
