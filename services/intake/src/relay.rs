//! The outbox relay: publishes committed events to JetStream in position
//! order, many acknowledgements in flight, `Nats-Msg-Id` = event id. After a
//! crash it resumes from the last position JetStream acknowledged (read back
//! from the stream's last message), so nothing is lost and duplicates are
//! dropped by JetStream's duplicate window.

use std::{collections::VecDeque, time::Duration};

use anyhow::Context as _;
use async_nats::{
    HeaderMap,
    jetstream::{self, context::PublishAckFuture},
};
use bus::{KIND_HEADER, POSITION_HEADER, StreamSettings};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::EventStore;

const READ_BATCH: u32 = 2_000;
/// Polls the store this often even without a local commit, to pick up what
/// another intake instance appended.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct Relay {
    pub store: EventStore,
    pub js: jetstream::Context,
    pub settings: StreamSettings,
    pub head: watch::Receiver<u64>,
    /// The last position whose acknowledgement, and every earlier one's, came
    /// back; `None` until read from the stream at start.
    pub acked: Option<u64>,
}

impl Relay {
    /// Publishes until `stop` is cancelled and everything committed before
    /// that has been acknowledged (or `stop` finds JetStream unreachable).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.publish_until(&stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "relay interrupted; resuming from the last acknowledged position");
                    metrics::counter!("intake_relay_errors_total").increment(1);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The position of the last event the stream holds, 0 if none.
    async fn acknowledged_position(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .settings
            .ensure_stream(&self.js)
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .context("get or create the event stream")?;
        let last = stream
            .info()
            .await
            .context("read the stream's state")?
            .state
            .last_sequence;
        if last == 0 {
            return Ok(0);
        }
        let message = stream
            .get_raw_message(last)
            .await
            .context("read the stream's last message")?;
        let position = message
            .headers
            .get(POSITION_HEADER)
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .context("the stream's last message has no position header")?;
        Ok(position)
    }

    async fn publish_until(&mut self, stop: &CancellationToken) -> anyhow::Result<()> {
        let mut acked = match self.acked {
            Some(acked) => acked,
            None => {
                let acked = self.acknowledged_position().await?;
                self.acked = Some(acked);
                acked
            }
        };
        tracing::info!(position = acked, "relay publishing after position");
        loop {
            let events = self.store.read_after(acked, READ_BATCH).await?;
            if events.is_empty() {
                if stop.is_cancelled() {
                    return Ok(());
                }
                let head = *self.head.borrow_and_update();
                metrics::gauge!("intake_relay_lag_events").set(head.saturating_sub(acked) as f64);
                if head > acked {
                    continue;
                }
                tokio::select! {
                    changed = self.head.changed() => {
                        if changed.is_err() {
                            // The writer is gone: publish what is left, then stop.
                            if self.store.read_after(acked, 1).await?.is_empty() {
                                return Ok(());
                            }
                        }
                    }
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                    () = stop.cancelled() => {}
                }
                continue;
            }
            let mut in_flight: VecDeque<(u64, PublishAckFuture)> =
                VecDeque::with_capacity(events.len());
            for stored in &events {
                let event = bus::decode_event(&stored.payload).with_context(|| {
                    format!("decode stored event at position {}", stored.position)
                })?;
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", event.event_id.as_str());
                headers.insert(POSITION_HEADER, stored.position.to_string().as_str());
                headers.insert(KIND_HEADER, event.payload.kind().as_str());
                let ack = self
                    .js
                    .publish_with_headers(
                        self.settings.subject(&event),
                        headers,
                        stored.payload.clone().into(),
                    )
                    .await
                    .context("publish an event")?;
                in_flight.push_back((stored.position, ack));
            }
            let mut published = 0u64;
            while let Some((position, ack)) = in_flight.pop_front() {
                ack.await.context("wait for JetStream's acknowledgement")?;
                acked = position;
                self.acked = Some(acked);
                published += 1;
            }
            metrics::counter!("intake_events_published_total").increment(published);
            metrics::gauge!("intake_relay_position").set(acked as f64);
        }
    }
}
