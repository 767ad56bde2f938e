//! `loadgen outage`: intake takes commands at a fixed rate while NATS is
//! away, then NATS returns and the relay publishes the backlog; the rate it
//! publishes at is set beside a raw JetStream publish of as many events to
//! the same server, measured in the same run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use domain::{LocalDay, Timestamp};
use tests::{Backend, Desk, NatsServer, TestDb, start_intake, unique_stream};

pub async fn outage(backend: Backend, rate: u64, duration: Duration) -> anyhow::Result<()> {
    let mut nats = NatsServer::start().await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(backend, "bench_outage_intake").await?;
    let (intake, _) = start_intake(&intake_db.url, &nats.url(), &stream).await?;
    let desk = Desk::connect(intake.addr).await?;
    let at = tests::real_now();
    let due = Timestamp::at_local(LocalDay::from_days(at.local_day().days() + 9), 17, 0);

    // NATS away: the desk keeps committing at `rate`.
    nats.kill();
    let total = rate * duration.as_secs();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = tokio::task::JoinSet::new();
    for k in 0..total {
        tick.tick().await;
        let desk = desk.clone();
        inflight.spawn(async move { desk.receive(&format!("O-{k:08}"), "OUTAGE", at, due).await });
    }
    while let Some(reply) = inflight.join_next().await {
        reply?.context("a command during the outage")?;
    }
    let sent_in = started.elapsed();

    // NATS back: time the relay until the stream holds every event.
    nats.restart().await?;
    let back = Instant::now();
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let mut first = None;
    let last = loop {
        let messages = match js.get_stream(&stream).await {
            Ok(mut s) => s.info().await?.state.messages,
            Err(_) => 0,
        };
        if messages > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if messages >= total {
            break Instant::now();
        }
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(600),
            "the relay published {messages} of {total} in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let first = first.unwrap_or(last);
    let relay_rate = total as f64 / last.duration_since(first).as_secs_f64().max(1e-3);
    intake.shutdown().await?;

    // Baseline: as many events published straight to a stream of the same
    // server, acks awaited in windows as the relay's are.
    let raw_stream = unique_stream();
    let settings = tests::stream_settings(&raw_stream);
    let client = async_nats::connect(nats.url()).await?;
    let raw_js = jetstream::ContextBuilder::new()
        .max_ack_inflight(8_192)
        .build(client);
    settings
        .ensure_stream(&raw_js)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let started = Instant::now();
    let published = crate::publish_backlog(&raw_js, &settings, total).await?;
    let raw_rate = published as f64 / started.elapsed().as_secs_f64();

    println!(
        "outage ({backend:?}, {rate} commands/s for {duration:?} with NATS down; sent in {:.1} s, all committed)",
        sent_in.as_secs_f64()
    );
    println!(
        "  NATS back → first event on the stream: {:.2} s (the relay's back-off); → all {total}: {:.2} s",
        first.duration_since(back).as_secs_f64(),
        last.duration_since(back).as_secs_f64()
    );
    println!("  relay, backlog: {relay_rate:.0} events/s (first to last event on the stream)");
    println!("  raw JetStream publish, same server: {raw_rate:.0} events/s");
    println!("  ratio: {:.1} %", 100.0 * relay_rate / raw_rate);
    Ok(())
}
