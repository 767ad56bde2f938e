//! The JetStream consumer: a durable pull consumer whose position is our
//! checkpoint. At start it is (re)created to deliver from the checkpoint on,
//! so the database, not the server's ack state, says what was applied; each
//! batch commits with its checkpoint in one transaction. It acknowledges
//! nothing (AckNone): acks would only repeat the checkpoint, and tracking
//! each delivered message until its ack multiplied the server's CPU per
//! event (BENCHMARKS.md).
//!
//! The consumer receives on a task of its own ([`receive`]), folds chunks
//! of what has arrived into one batch ([`fold`], closed by the limits of
//! [`batch`]), and writes each batch on a task of its own while the next
//! folds ([`write`]); between batches it serves replays of parked events
//! and takes over a rebuilt generation ([`swap`]).

pub(crate) mod batch;
pub(crate) mod fold;
pub(crate) mod receive;
pub(crate) mod swap;
pub(crate) mod write;

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use async_nats::jetstream;
use bus::StreamSettings;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(crate) use fold::apply_messages;
pub(crate) use receive::Incoming;
pub use swap::Swap;

use crate::{parked::ReplayJob, resume::Positions, store::ReadStore};
use fold::FoldSizes;
use receive::DeliveryGap;
use swap::next_swap;
use write::{Writing, written};

pub struct Consumer {
    pub store: ReadStore,
    pub js: jetstream::Context,
    pub settings: StreamSettings,
    /// Durable consumer name, also the checkpoint's key.
    pub name: String,
    pub max_batch: usize,
    /// Whether applied events are news for the late feed: false while a
    /// rebuild replays history (a replayed Late is history, not news).
    pub news: bool,
    /// A rebuild's consumer stops once it has caught up with the stream.
    pub until_caught_up: bool,
    /// Where a rebuild reports how far it is.
    pub progress: Option<Arc<Progress>>,
    /// The live consumer takes over a rebuilt generation between batches.
    pub swaps: Option<mpsc::Receiver<Swap>>,
    /// Replays of parked events, served between batches (see
    /// `crate::parked`); `None` when nobody can ask for one.
    pub replays: Option<mpsc::Receiver<ReplayJob>>,
    /// The stream being read: its creation, for the checkpoint.
    pub(crate) stream_created: Option<i64>,
    /// The log positions taken so far ([`crate::resume`]); set when the
    /// consumer starts reading.
    pub(crate) positions: Option<Positions>,
    /// The log the read store holds, once known (its first event's).
    pub(crate) log: Option<uuid::Uuid>,
}

/// How far a consumer is: events applied and left, stream sequence reached.
#[derive(Debug, Default)]
pub struct Progress {
    pub applied: AtomicU64,
    pub pending: AtomicU64,
    pub checkpoint: AtomicU64,
}

impl Consumer {
    /// Consumes until `stop` is cancelled; the batch in hand is finished
    /// first, what was not taken stays in the stream for the next start.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        // At most 1 s: a retry costs a consumer's creation, and a stream
        // whose leader died answers again as soon as another is elected.
        let mut backoff =
            telemetry::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut held = self.store.held_count().await?;
        let mut replays = self.replays.take();
        metrics::gauge!("projection_held_events").set(held as f64);
        self.count_parked().await;
        loop {
            let mut writing = None;
            let checkpoint = self.checkpoint().await;
            let result = self
                .consume(&stop, &mut held, &mut replays, &mut writing)
                .await;
            // A batch still being written lands before anything reads the
            // checkpoint again.
            if let Some(w) = writing.take()
                && let Err(e) = self.finish_write(w, &mut held).await
            {
                tracing::warn!(error = %format!("{e:#}"), "the last batch was not written");
            }
            match result {
                Ok(()) => return Ok(()),
                // Lost deliveries are this client's doing, not a failing
                // server: what came before them is written; resume at once.
                Err(e) if e.downcast_ref::<DeliveryGap>().is_some() => {
                    tracing::warn!(error = %format!("{e:#}"), "consumer lost deliveries; resuming from the checkpoint");
                    metrics::counter!("projection_delivery_gaps_total").increment(1);
                }
                // Never resumed: every attempt would meet the same event.
                Err(e) if e.downcast_ref::<ForeignLog>().is_some() => {
                    if self.until_caught_up {
                        // A rebuild fails, saying why.
                        return Err(e);
                    }
                    tracing::error!(error = %format!("{e:#}"), "consumer stopped");
                    metrics::gauge!("projection_consumer_stopped").set(1.0);
                    loop {
                        tokio::select! {
                            job = next_replay(&mut replays) => self.serve_replay(job, &mut held).await,
                            () = stop.cancelled() => return Err(e),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "consumer interrupted; resuming from the checkpoint");
                    metrics::counter!("projection_consumer_errors_total").increment(1);
                    let progressed = self.checkpoint().await != checkpoint;
                    let pause = tokio::time::sleep(backoff.after_failure(progressed));
                    tokio::pin!(pause);
                    loop {
                        tokio::select! {
                            () = &mut pause => break,
                            job = next_replay(&mut replays) => self.serve_replay(job, &mut held).await,
                            () = stop.cancelled() => return Ok(()),
                        }
                    }
                }
            }
        }
    }

    /// The stream sequence the read models hold; `None` when it cannot be
    /// read (then compared as unchanged).
    async fn checkpoint(&self) -> Option<u64> {
        self.store
            .resume_point(&self.name)
            .await
            .ok()
            .map(|c| c.stream_seq)
    }

    /// Runs an operator's replay of parked events: between two batches, as
    /// the read models' one writer.
    async fn serve_replay(&self, job: ReplayJob, held: &mut u64) {
        let result = crate::parked::replay(&self.store, &self.name, &job.request).await;
        match &result {
            Ok(report) => {
                *held = held.saturating_sub(report.released_rows);
                metrics::gauge!("projection_held_events").set(*held as f64);
                metrics::gauge!("projection_parked_events").set(report.still_parked as f64);
                metrics::counter!("projection_events_applied_total").increment(report.applied);
                tracing::info!(
                    replayed = report.events.len(),
                    applied = report.applied,
                    still_parked = report.still_parked,
                    "replayed parked events"
                );
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "replaying parked events failed"),
        }
        drop(job.reply.send(result));
    }

    async fn count_parked(&self) {
        match self.store.parked_count().await {
            Ok(n) => metrics::gauge!("projection_parked_events").set(n as f64),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "counting parked events failed"),
        }
    }

    async fn consume(
        &mut self,
        stop: &CancellationToken,
        held: &mut u64,
        replays: &mut Option<mpsc::Receiver<ReplayJob>>,
        writing: &mut Option<Writing>,
    ) -> anyhow::Result<()> {
        let (mut incoming_rx, checkpoint) = self.start_receiving().await?;
        let mut last_seq = checkpoint;
        let mut pending_swap: Option<Swap> = None;
        let mut sizes = FoldSizes::default();
        loop {
            // Between batches: take over a rebuilt generation once this
            // consumer has applied at least what the rebuild has.
            if pending_swap.is_some() {
                self.land(writing, &mut last_seq, held).await?;
            }
            if pending_swap
                .as_ref()
                .is_some_and(|swap| last_seq >= swap.checkpoint)
                && let Some(swap) = pending_swap.take()
            {
                self.take_over(swap, last_seq, held).await;
            }
            let first = tokio::select! {
                biased;
                () = written(writing) => {
                    if self.land(writing, &mut last_seq, held).await? {
                        return Ok(());
                    }
                    continue;
                }
                next = incoming_rx.recv() => next,
                job = next_replay(replays) => {
                    self.land(writing, &mut last_seq, held).await?;
                    self.serve_replay(job, held).await;
                    continue;
                }
                () = stop.cancelled() => return Ok(()),
                Some(swap) = next_swap(&mut self.swaps) => {
                    pending_swap = Some(swap);
                    continue;
                }
            };
            // The receiver ended: a lost connection, or deliveries lost
            // on the way (what was received before is folded and written).
            let Some(first) = first else {
                return Err(incoming_rx.ended());
            };
            // The batch being written, if any, lends its rows to this one,
            // unless it changed what only its commit makes readable.
            if writing.as_ref().is_some_and(|w| !w.overlay) {
                self.land(writing, &mut last_seq, held).await?;
            }
            let overlay = writing.as_ref().map(|w| w.write.clone());
            let (fold, last) = self
                .fold_batch(first, &mut incoming_rx, *held, sizes, overlay)
                .await?;
            let Some(last) = last else { continue };
            sizes = self
                .write_folded(fold, &last, writing, &mut last_seq, held)
                .await?;
        }
    }

    /// Says which log positions never arrived: the stream lacks events.
    fn report_missing(&self, missing: &[(u64, u64)]) {
        for &(from, to) in missing {
            tracing::error!(
                stream = %self.settings.stream,
                from,
                to,
                "log positions {from}–{to} are missing from the stream (removed by a purge, or never copied into a restored stream); later events of their dossiers are held until they arrive: republish them with `motcua republish --from {from}`"
            );
            metrics::counter!("projection_log_gaps_total").increment(1);
        }
        if let Some(through) = self.positions.and_then(|p| p.through()) {
            metrics::gauge!("projection_log_position").set(through as f64);
        }
    }
}

/// The stream holds an event of a log other than the read store's: the
/// consumer parked it and stops, rather than fold two logs into one report.
#[derive(Debug, thiserror::Error)]
#[error(
    "stream {stream} holds an event of log {other} (stream sequence {stream_seq}) while this read store holds log {}; nothing after it is applied. Point the projection at the stream of its log, or build a new one (new database, new consumer) on this stream",
    ours.map_or_else(|| "none".to_owned(), |l| l.to_string())
)]
pub struct ForeignLog {
    stream: String,
    ours: Option<uuid::Uuid>,
    other: uuid::Uuid,
    stream_seq: u64,
}

/// The next replay asked for; never ready when nobody can ask.
async fn next_replay(replays: &mut Option<mpsc::Receiver<ReplayJob>>) -> ReplayJob {
    if let Some(rx) = replays {
        if let Some(job) = rx.recv().await {
            return job;
        }
        // Every sender is gone: stop polling a closed channel.
        *replays = None;
    }
    std::future::pending().await
}
