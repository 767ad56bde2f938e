//! The feed the writer hands committed events over through (an import
//! waits for room in it, on the paused clock), and the relay over a real
//! store and nats-server.
//!
//! The relay publishes what the writer hands it in memory, and reads
//! from the store whatever the hand-over lacks: events another instance
//! appended (a gap before the next handed-over event) and events the writer
//! could not hand over because the feed was full (a head beyond the last
//! handed-over event). Either way the stream holds every position once, in
//! order, each with its event id, subject and stored payload.

use std::time::Duration;

use async_nats::jetstream;
use bus::{POSITION_HEADER, StreamSettings};
use domain::Timestamp;
use testkit::{Backend, NatsServer, TestDb, eventually, unique_stream};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{Relay, RelayHandle, RelayState, feed};
use crate::{
    store::{EventStore, NewEvent},
    writer::{Writer, WriterHandle, system_clock, tests::receive_command},
};

fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent {
            event_id: format!("e{i}"),
            dossier_id: "D".into(),
            office_code: "O".into(),
            province_code: "P".into(),
            version: i as u64 + 1,
            kind: "received",
            recorded_at: 0,
            payload: Vec::new(),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_empty_feed_or_one_with_room_lets_an_import_in_at_once() {
    let (feed, _rx) = feed(10);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    // Empty: even a job larger than the limit goes in.
    feed.room_for(50, deadline).await;
    feed.offer(1, events(4));
    feed.room_for(6, deadline).await;
    assert_eq!(Instant::now(), start, "no wait");
}

#[tokio::test(start_paused = true)]
async fn an_import_waits_until_the_relay_takes_events_off_a_full_feed() {
    let (feed, mut rx) = feed(10);
    feed.offer(1, events(8));
    let start = Instant::now();
    let waiter = tokio::spawn(async move {
        feed.room_for(5, start + Duration::from_secs(60)).await;
        Instant::now()
    });
    // The waiter is blocked: 8 held and 5 more exceed 10.
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    rx.take_arrived();
    assert_eq!(rx.take_run(4).len(), 4);
    let woke = waiter.await.expect("the waiter ends");
    assert_eq!(woke, start, "woken by the relay, not by the deadline");
}

#[tokio::test(start_paused = true)]
async fn a_relay_that_takes_nothing_holds_an_import_until_its_deadline_only() {
    let (feed, _rx) = feed(10);
    feed.offer(1, events(8));
    let start = Instant::now();
    feed.room_for(5, start + Duration::from_millis(250)).await;
    assert_eq!(Instant::now() - start, Duration::from_millis(250));
}

async fn receive_via(handle: &WriterHandle, dossier: &str, office: &str) -> anyhow::Result<u64> {
    let reply = handle
        .execute(
            format!("r-{dossier}"),
            "clerk".into(),
            dossier.into(),
            Some(Timestamp::at_local(
                domain::LocalDay::from_ymd(2024, 3, 4).expect("a date"),
                9,
                0,
            )),
            receive_command(
                office,
                Timestamp::at_local(
                    domain::LocalDay::from_ymd(2024, 3, 14).expect("a date"),
                    17,
                    0,
                ),
            ),
        )
        .await?;
    Ok(reply.position)
}

/// The stream's messages as (position header, subject, message id, payload).
async fn published(
    js: &jetstream::Context,
    stream: &str,
) -> anyhow::Result<Vec<(u64, String, String, Vec<u8>)>> {
    let mut stream = js.get_stream(stream).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await?;
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        messages.push((
            header(POSITION_HEADER).parse()?,
            message.subject.to_string(),
            header("Nats-Msg-Id"),
            message.payload.to_vec(),
        ));
    }
    Ok(messages)
}

/// Waits until the stream holds the store's `count` events, each once, in
/// position order, with its subject, message id and stored payload.
async fn stream_holds_the_log(
    js: &jetstream::Context,
    store: &EventStore,
    settings: &StreamSettings,
    count: usize,
) -> anyhow::Result<()> {
    let want = store
        .read_after(0, 1_000)
        .await?
        .into_iter()
        .map(|stored| {
            let event = bus::decode_event(&stored.payload)?;
            Ok((
                stored.position,
                settings.subject(&event),
                event.event_id,
                stored.payload,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert_eq!(want.len(), count);
    eventually(Duration::from_secs(10), || async {
        let got = published(js, &settings.stream).await?;
        anyhow::ensure!(
            got == want,
            "published positions {:?}",
            got.iter().map(|m| m.0).collect::<Vec<_>>()
        );
        Ok(())
    })
    .await
}

async fn relay_fills_what_the_hand_over_lacks(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend, "relay_hand_over").await?;
    let store = EventStore::open(&db.url).await?;
    let nats = NatsServer::start().await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let stream = unique_stream();
    let settings = StreamSettings {
        stream: stream.clone(),
        subject_prefix: format!("motcua.{stream}"),
        ..Default::default()
    };

    // This instance's writer hands over through a feed with room for two
    // events; another instance's writer appends to the same store.
    let (head, head_rx) = watch::channel(0);
    let (feed_tx, feed) = feed(2);
    let (ours, ours_handle) = Writer::new(store.clone(), head, system_clock(), 64);
    let ours = tokio::spawn(ours.feeding(feed_tx).run());
    let (other, other_handle) =
        Writer::new(store.clone(), watch::Sender::new(0), system_clock(), 64);
    let other = tokio::spawn(other.run());

    // Before the relay runs: 1 handed over, 2 appended elsewhere, 3 handed
    // over, 4 not (the feed is full).
    assert_eq!(receive_via(&ours_handle, "D1", "TP").await?, 1);
    assert_eq!(receive_via(&other_handle, "D2", "PT").await?, 2);
    assert_eq!(receive_via(&ours_handle, "D3", "TP").await?, 3);
    assert_eq!(receive_via(&ours_handle, "D4", "HT").await?, 4);

    let stop = CancellationToken::new();
    let (_republisher, republish) = RelayHandle::new();
    let relay = tokio::spawn(
        Relay {
            store: store.clone(),
            js: js.clone(),
            settings: settings.clone(),
            head: head_rx,
            acked: None,
            republish,
            feed,
            state: RelayState::channel().0,
        }
        .run(stop.clone()),
    );
    stream_holds_the_log(&js, &store, &settings, 4).await?;

    // While it runs: handed over live, and another gap.
    assert_eq!(receive_via(&ours_handle, "D5", "TP").await?, 5);
    assert_eq!(receive_via(&other_handle, "D6", "PT").await?, 6);
    assert_eq!(receive_via(&ours_handle, "D7", "TP").await?, 7);
    stream_holds_the_log(&js, &store, &settings, 7).await?;

    drop((ours_handle, other_handle));
    ours.await?;
    other.await?;
    stop.cancel();
    relay.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_fills_what_the_hand_over_lacks_on_sqlite() -> anyhow::Result<()> {
    relay_fills_what_the_hand_over_lacks(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_fills_what_the_hand_over_lacks_on_postgres() -> anyhow::Result<()> {
    relay_fills_what_the_hand_over_lacks(Backend::Postgres).await
}
