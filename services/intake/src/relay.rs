//! The outbox relay: publishes committed events to JetStream in position
//! order, many acknowledgements in flight, `Nats-Msg-Id` = event id. After a
//! crash it resumes from the last position JetStream acknowledged (read back
//! from the stream's last message), so nothing is lost and duplicates are
//! dropped by JetStream's duplicate window.
//!
//! The writer hands each committed batch over in memory ([`Outgoing`]), so
//! the relay need not read and decode it again. The store stays the truth:
//! whatever the hand-over lacks (a full feed, a restart, another instance's
//! appends) shows up as a gap before the next handed-over event
//! or as a head beyond it, and is read from the store. Handed-over events
//! at or before the acknowledged position are dropped.
//!
//! Republishing (the `Republish` admin RPC) runs *inside* this task, between
//! two of its batches: a job publishes positions `from..=head` (head read
//! when the job starts) with the same [`publish_in_order`] loop, then the
//! relay carries on after `max(acked, head)`. Nothing else publishes, so the
//! stream never receives the live relay's and a republish's events
//! interleaved, and its last message's position stays the highest
//! published one, which is what a restarted relay resumes after.

mod anchor;

pub use anchor::ForeignStream;

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bus::StreamSettings;
use proto::intake::v1::RepublishProgress;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{EventStore, NewEvent, StoredEvent};

const READ_BATCH: u32 = 2_000;
/// Handed-over events not yet published that the relay holds at most;
/// beyond it (JetStream slower than the store, or down) the writer hands
/// nothing over and the relay reads from the store.
pub const FEED_LIMIT: usize = 32_768;
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
    /// Republish jobs (from [`RelayHandle`]), run between batches.
    pub republish: mpsc::Receiver<RepublishJob>,
    /// Committed events handed over by the writer (`Writer::feeding`).
    pub feed: FeedReceiver,
    /// Whether the relay reaches the stream, for health and metrics.
    pub state: watch::Sender<RelayState>,
}

/// Whether the relay reaches JetStream. The store is the authority and the
/// relay an outbox: the desk takes commands whatever this says; while the
/// stream is out of reach its events wait in the store and are published in
/// order once it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayState {
    /// Not yet in touch with the stream.
    Starting,
    /// In touch with the stream: publishing, or waiting for commits.
    Publishing,
    /// The last attempt failed (why); retrying with back-off.
    Unreachable(String),
    /// The stream holds another log, or is ahead of the store
    /// ([`ForeignStream`]): nothing is published there until an operator
    /// points intake at another stream or deletes it and republishes.
    Refused(String),
}

impl RelayState {
    /// A state to hand a [`Relay`], and its receiver.
    pub fn channel() -> (watch::Sender<Self>, watch::Receiver<Self>) {
        watch::channel(Self::Starting)
    }
}

/// Moves the relay to `state`, telling watchers only of a change.
fn set_state(sender: &watch::Sender<RelayState>, state: RelayState) {
    let up = state == RelayState::Publishing;
    let changed = sender.send_if_modified(|current| {
        if *current == state {
            return false;
        }
        *current = state;
        true
    });
    if changed {
        metrics::gauge!("intake_relay_up").set(if up { 1.0 } else { 0.0 });
        let refused = matches!(sender.borrow().clone(), RelayState::Refused(_));
        metrics::gauge!("intake_relay_refused").set(if refused { 1.0 } else { 0.0 });
        if let RelayState::Refused(why) = &*sender.borrow() {
            tracing::error!("the relay publishes nothing: {why}");
        }
    }
}

/// The hand-over from writer to relay, holding at most `limit` events not
/// yet published: the writer's [`Feed`] and the relay's [`FeedReceiver`].
pub fn feed(limit: usize) -> (Feed, FeedReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let held = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(Notify::new());
    (
        Feed {
            tx,
            held: held.clone(),
            taken: taken.clone(),
            limit,
        },
        FeedReceiver {
            rx,
            held,
            taken,
            events: VecDeque::new(),
        },
    )
}

/// The writer's end of the hand-over.
#[derive(Debug)]
pub struct Feed {
    tx: mpsc::UnboundedSender<Vec<Outgoing>>,
    /// Events handed over and not yet taken by the relay (to publish or to
    /// drop as published already).
    held: Arc<AtomicUsize>,
    /// Told each time the relay takes events off the feed.
    taken: Arc<Notify>,
    limit: usize,
}

impl Feed {
    /// Waits until the feed has room for `n` more events (or is empty), or
    /// until `deadline`: an import job waits here so that its events are
    /// handed over, not read back from the store by a relay that lags. A
    /// relay that cannot publish (JetStream down) holds a job back until
    /// the deadline only.
    pub async fn room_for(&self, n: usize, deadline: tokio::time::Instant) {
        loop {
            let taken = self.taken.notified();
            let held = self.held.load(Ordering::Relaxed);
            if held == 0 || held + n <= self.limit {
                return;
            }
            tokio::select! {
                () = taken => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Hands over the events of an append that took positions from
    /// `first_position`, unless that would hold more than the limit; never
    /// waits.
    pub fn offer(&self, first_position: u64, events: Vec<NewEvent>) {
        let n = events.len();
        if self.held.load(Ordering::Relaxed) + n > self.limit {
            return;
        }
        self.held.fetch_add(n, Ordering::Relaxed);
        if self
            .tx
            .send(Outgoing::committed(first_position, events))
            .is_err()
        {
            self.held.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// The relay's end of the hand-over: what has arrived, in position order.
#[derive(Debug)]
pub struct FeedReceiver {
    rx: mpsc::UnboundedReceiver<Vec<Outgoing>>,
    held: Arc<AtomicUsize>,
    taken: Arc<Notify>,
    events: VecDeque<Outgoing>,
}

impl FeedReceiver {
    /// Takes what has arrived, without waiting.
    fn take_arrived(&mut self) {
        while let Ok(batch) = self.rx.try_recv() {
            self.events.extend(batch);
        }
    }

    /// Waits for the next batch; `None` once the writer is gone.
    async fn arrival(&mut self) -> Option<()> {
        let batch = self.rx.recv().await?;
        self.events.extend(batch);
        Some(())
    }

    /// Drops events at or before `position` (already published).
    fn forget_through(&mut self, position: u64) {
        let before = self.events.len();
        while self.events.front().is_some_and(|e| e.position <= position) {
            self.events.pop_front();
        }
        self.release(before - self.events.len());
    }

    /// Frees room for `n` events and tells a writer waiting for it.
    fn release(&mut self, n: usize) {
        if n > 0 {
            self.held.fetch_sub(n, Ordering::Relaxed);
            self.taken.notify_one();
        }
    }

    /// The position of the first event that has arrived, if any.
    fn front(&self) -> Option<u64> {
        self.events.front().map(|e| e.position)
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The run of consecutive positions at the front, at most `limit`.
    fn take_run(&mut self, limit: usize) -> Vec<Outgoing> {
        let mut run: Vec<Outgoing> = Vec::new();
        while run.len() < limit
            && let Some(next) = self.events.pop_front()
        {
            if run
                .last()
                .is_some_and(|last| last.position + 1 != next.position)
            {
                self.events.push_front(next);
                break;
            }
            run.push(next);
        }
        self.release(run.len());
        run
    }
}

/// One committed event as the relay publishes it: the stored payload and
/// what its subject and headers need.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub position: u64,
    pub event_id: String,
    pub province_code: String,
    pub office_code: String,
    pub kind: &'static str,
    pub payload: bytes::Bytes,
}

impl Outgoing {
    /// The events of an append that took positions from `first_position`.
    pub fn committed(first_position: u64, events: Vec<NewEvent>) -> Vec<Self> {
        events
            .into_iter()
            .zip(first_position..)
            .map(|(e, position)| Self {
                position,
                event_id: e.event_id,
                province_code: e.province_code,
                office_code: e.office_code,
                kind: e.kind,
                payload: e.payload.into(),
            })
            .collect()
    }

    /// An event read back from the store, decoded for its envelope.
    pub fn from_stored(stored: StoredEvent) -> anyhow::Result<Self> {
        let event = bus::decode_event(&stored.payload)
            .with_context(|| format!("decode stored event at position {}", stored.position))?;
        Ok(Self {
            position: stored.position,
            kind: event.payload.kind().as_str(),
            event_id: event.event_id,
            province_code: event.province_code,
            office_code: event.office_code,
            payload: stored.payload.into(),
        })
    }

    fn subject(&self, settings: &StreamSettings) -> String {
        settings.subject_of(&self.province_code, &self.office_code, self.kind)
    }
}

/// Up to `limit` events after `position` from the store, ready to publish.
async fn read_outgoing(
    store: &EventStore,
    position: u64,
    limit: u32,
) -> anyhow::Result<Vec<Outgoing>> {
    store
        .read_after(position, limit)
        .await?
        .into_iter()
        .map(Outgoing::from_stored)
        .collect()
}

/// A request to publish the log again from a position.
#[derive(Debug)]
pub struct RepublishJob {
    pub from_position: u64,
    /// Progress after each batch, the last one with `done`; an error ends it.
    pub progress: mpsc::Sender<Result<RepublishProgress, tonic::Status>>,
}

/// Sends republish jobs to the relay task.
#[derive(Clone, Debug)]
pub struct RelayHandle {
    tx: mpsc::Sender<RepublishJob>,
}

impl RelayHandle {
    /// A handle and the receiver the [`Relay`] takes.
    pub fn new() -> (Self, mpsc::Receiver<RepublishJob>) {
        let (tx, rx) = mpsc::channel(4);
        (Self { tx }, rx)
    }

    /// Queues a republish; progress comes on the returned receiver.
    pub async fn republish(
        &self,
        from_position: u64,
    ) -> Result<mpsc::Receiver<Result<RepublishProgress, tonic::Status>>, tonic::Status> {
        let (progress, rx) = mpsc::channel(16);
        self.tx
            .send(RepublishJob {
                from_position,
                progress,
            })
            .await
            .map_err(|_| {
                tonic::Status::unavailable("intake is shutting down; the relay has stopped")
            })?;
        Ok(rx)
    }
}

/// What a [`publish_in_order`] call got acknowledged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Published {
    pub count: u64,
    /// Acknowledged as duplicates (same `Nats-Msg-Id` within the window).
    pub duplicates: u64,
}

/// Publishes `events` (in position order) with every publish in flight at
/// once, then awaits the acknowledgements in order, calling `acked` with
/// each position as its acknowledgement (and every earlier one's) is in.
/// The relay's and the republisher's one publishing loop.
pub async fn publish_in_order(
    js: &jetstream::Context,
    settings: &StreamSettings,
    log: uuid::Uuid,
    events: &[Outgoing],
    mut acked: impl FnMut(u64),
) -> anyhow::Result<Published> {
    let mut in_flight: VecDeque<(u64, PublishAckFuture)> = VecDeque::with_capacity(events.len());
    let mut log_text = uuid::Uuid::encode_buffer();
    let log = log.hyphenated().encode_lower(&mut log_text);
    for event in events {
        let headers = bus::event_headers(&event.event_id, log, event.position, event.kind);
        let ack = js
            .publish_with_headers(event.subject(settings), headers, event.payload.clone())
            .await
            .context("publish an event")?;
        in_flight.push_back((event.position, ack));
    }
    let mut published = Published::default();
    while let Some((position, ack)) = in_flight.pop_front() {
        let ack = ack.await.context("wait for JetStream's acknowledgement")?;
        published.count += 1;
        if ack.duplicate {
            published.duplicates += 1;
        }
        acked(position);
    }
    Ok(published)
}

impl Relay {
    /// Publishes until `stop` is cancelled and everything committed before
    /// that has been acknowledged. A failure after `stop` is retried too, a
    /// few times (an ack that timed out while the machine was busy shutting
    /// down); what is left then is relayed at the next start.
    pub async fn run(mut self, stop: CancellationToken) {
        const RETRIES_WHEN_STOPPING: u32 = 10;
        // At most 1 s: a retry costs one request, and a stream whose leader
        // died answers again as soon as its replicas have elected another.
        let mut backoff =
            telemetry::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut failed_when_stopping = 0;
        loop {
            let before = self.acked;
            match self.publish_until(&stop).await {
                Ok(()) => return,
                Err(e) => {
                    let wait = backoff.after_failure(self.acked != before);
                    metrics::counter!("intake_relay_errors_total").increment(1);
                    if let Some(foreign) = e.downcast_ref::<ForeignStream>() {
                        // Said once, when it starts; checked again after
                        // each back-off (the stream may be deleted).
                        set_state(&self.state, RelayState::Refused(foreign.to_string()));
                    } else {
                        tracing::warn!(error = %format!("{e:#}"), "relay interrupted; resuming from the last acknowledged position");
                        set_state(&self.state, RelayState::Unreachable(format!("{e:#}")));
                    }
                    if stop.is_cancelled() {
                        failed_when_stopping += 1;
                        if failed_when_stopping > RETRIES_WHEN_STOPPING {
                            tracing::warn!(
                                "relay stopped with events unpublished; they are relayed at the next start"
                            );
                            return;
                        }
                        tokio::time::sleep(wait.min(Duration::from_millis(500))).await;
                    } else {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            Some(job) = self.republish.recv() => self.republish(job).await,
                            () = stop.cancelled() => {}
                        }
                    }
                }
            }
        }
    }

    /// The position of the last event of this store's log the stream
    /// holds, 0 if none; [`ForeignStream`] when the stream is another log's.
    async fn acknowledged_position(&self) -> anyhow::Result<u64> {
        anchor::acknowledged_position(&self.store, &self.js, &self.settings).await
    }

    async fn publish_until(&mut self, stop: &CancellationToken) -> anyhow::Result<()> {
        let mut acked = match self.acked {
            // Resuming after a failure: is the stream there again?
            Some(acked) => {
                self.settings
                    .ensure_stream(&self.js)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))
                    .context("get or create the event stream")?;
                acked
            }
            None => {
                let acked = self.acknowledged_position().await?;
                self.acked = Some(acked);
                acked
            }
        };
        set_state(&self.state, RelayState::Publishing);
        tracing::info!(position = acked, "relay publishing after position");
        // Read the store even when the writer told of nothing new: at
        // start, and after each poll interval (another instance's appends).
        let mut look_in_store = true;
        loop {
            while let Ok(job) = self.republish.try_recv() {
                self.republish(job).await;
            }
            acked = self.acked.unwrap_or(acked);
            self.feed.take_arrived();
            self.feed.forget_through(acked);
            let head = *self.head.borrow_and_update();
            let events = match self.feed.front() {
                Some(front) if front == acked + 1 => self.feed.take_run(READ_BATCH as usize),
                // A gap before the next handed-over event: read just the gap.
                Some(front) => {
                    let gap = u32::try_from(front - acked - 1).unwrap_or(READ_BATCH);
                    read_outgoing(&self.store, acked, gap.min(READ_BATCH)).await?
                }
                // A commit that was not handed over, or time to look.
                None if look_in_store || head > acked => {
                    look_in_store = false;
                    read_outgoing(&self.store, acked, READ_BATCH).await?
                }
                None => Vec::new(),
            };
            if events.is_empty() {
                if stop.is_cancelled() {
                    return Ok(());
                }
                metrics::gauge!("intake_relay_lag_events").set(head.saturating_sub(acked) as f64);
                tokio::select! {
                    changed = self.head.changed() => {
                        if changed.is_err() {
                            // The writer is gone: publish what is left, then stop.
                            if self.feed.is_empty() && self.store.read_after(acked, 1).await?.is_empty() {
                                return Ok(());
                            }
                            look_in_store = true;
                        }
                    }
                    Some(()) = self.feed.arrival() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => look_in_store = true,
                    Some(job) = self.republish.recv() => self.republish(job).await,
                    () = stop.cancelled() => {}
                }
                continue;
            }
            let log = self.store.identity().log_id;
            let published = publish_in_order(&self.js, &self.settings, log, &events, |position| {
                acked = position;
                self.acked = Some(position);
            })
            .await?
            .count;
            metrics::counter!("intake_events_published_total").increment(published);
            metrics::gauge!("intake_relay_position").set(acked as f64);
            set_state(&self.state, RelayState::Publishing);
        }
    }

    /// Runs one republish job: positions `max(from, 1) ..= head` (head read
    /// now), but never starting after `acked + 1`, so the relay's own
    /// position can then move to `max(acked, head)` without skipping.
    async fn republish(&mut self, job: RepublishJob) {
        let RepublishJob {
            from_position,
            progress,
        } = job;
        let result = self.republish_from(from_position, &progress).await;
        if let Err(e) = result {
            tracing::warn!(error = %format!("{e:#}"), "republish failed");
            drop(
                progress
                    .send(Err(tonic::Status::unavailable(format!(
                        "republish stopped: {e:#}"
                    ))))
                    .await,
            );
        }
    }

    async fn republish_from(
        &mut self,
        from_position: u64,
        progress: &mpsc::Sender<Result<RepublishProgress, tonic::Status>>,
    ) -> anyhow::Result<()> {
        self.settings
            .ensure_stream(&self.js)
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .context("get or create the event stream")?;
        let acked = match self.acked {
            Some(acked) => acked,
            None => {
                let acked = self.acknowledged_position().await?;
                self.acked = Some(acked);
                acked
            }
        };
        let head = self.store.head().await?;
        let first = from_position.max(1).min(acked + 1);
        let mut report = RepublishProgress {
            published: 0,
            duplicates: 0,
            position: first - 1,
            last_position: head,
            first_position: first,
            done: false,
        };
        tracing::info!(first, head, "republishing");
        drop(progress.send(Ok(report)).await);
        let mut position = first - 1;
        while position < head {
            let mut events = read_outgoing(&self.store, position, READ_BATCH).await?;
            events.retain(|e| e.position <= head);
            if events.is_empty() {
                break;
            }
            let published = publish_in_order(
                &self.js,
                &self.settings,
                self.store.identity().log_id,
                &events,
                |p| position = p,
            )
            .await?;
            report.published += published.count;
            report.duplicates += published.duplicates;
            report.position = position;
            metrics::counter!("intake_events_republished_total").increment(published.count);
            // A client that went away does not stop the job.
            drop(progress.send(Ok(report)).await);
        }
        self.acked = Some(acked.max(position));
        report.done = true;
        tracing::info!(
            published = report.published,
            duplicates = report.duplicates,
            position,
            "republished"
        );
        drop(progress.send(Ok(report)).await);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
