//! The JetStream consumer: a durable pull consumer whose position is our
//! checkpoint. At start it is (re)created to deliver from the checkpoint on,
//! so the database, not the server's ack state, says what was applied; each
//! batch commits with its checkpoint in one transaction. It acknowledges
//! nothing (AckNone): acks would only repeat the checkpoint, and tracking
//! each delivered message until its ack multiplied the server's CPU per
//! event (BENCHMARKS.md).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use bus::StreamSettings;
use futures::StreamExt as _;
use hashbrown::HashMap;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    apply::{Applied, Changes},
    generations::{Generations, Serving},
    parked::ReplayJob,
    resume::{Positions, Resume, StreamNow, Take},
    store::{BatchWrite, Parked, ReadStore},
};

/// Messages received ahead of the batch being folded or written.
const RECEIVE_AHEAD: usize = 20_000;
/// Messages folded into a batch at a time.
const CHUNK: usize = 5_000;
/// A batch that keeps finding messages closes after this long.
const BATCH_MAX_AGE: Duration = Duration::from_secs(1);
/// Messages asked of the server per pull request; the client asks for the
/// next while it works through these. Large, because each request costs
/// nats-server a scan of the stream's state: fewer, larger pulls cost a
/// catch-up or a rebuild less of the machine's CPU per event (BENCHMARKS.md).
/// The client asks for the next pull when half of one is left, so up to one
/// and a half arrive ahead: the NATS client's buffer (`--nats-buffer`) must
/// hold that much, or it drops deliveries ([`DeliveryGap`]).
const PULL_BATCH: usize = 50_000;
/// A batch closes when no message came for this long (caught up)…
const BATCH_GAP: Duration = Duration::from_millis(2);
/// …or when its first message has waited this long.
const BATCH_MAX_WAIT: Duration = Duration::from_millis(10);

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

/// A rebuilt generation, caught up to `checkpoint`, for the live consumer
/// to take over at a batch boundary.
pub struct Swap {
    pub generation: u64,
    pub store: ReadStore,
    pub checkpoint: u64,
    pub generations: Generations,
    pub serving: Arc<Serving>,
    /// Answered with the retired generation's number.
    pub done: oneshot::Sender<anyhow::Result<u64>>,
}

/// One message, taken apart.
pub(crate) struct Incoming {
    pub(crate) stream_seq: u64,
    /// Shares the received subject (no copy).
    pub(crate) subject: async_nats::Subject,
    /// The `Motcua-Position` header, when present.
    pub(crate) position: Option<u64>,
    /// The `Motcua-Log` header: the log the event belongs to.
    pub(crate) log: Option<uuid::Uuid>,
    /// Shares the received buffer (no copy).
    pub(crate) payload: bytes::Bytes,
    /// How many messages the consumer had left after it; none when
    /// replayed for a report as of an earlier point. The message itself is
    /// not kept: a batch may hold tens of thousands.
    pub(crate) pending: Option<u64>,
}

impl Consumer {
    /// Consumes until `stop` is cancelled; the batch in hand is finished
    /// first, what was not taken stays in the stream for the next start.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        let mut held = self.store.held_count().await?;
        let mut replays = self.replays.take();
        metrics::gauge!("projection_held_events").set(held as f64);
        self.count_parked().await;
        loop {
            let mut writing = None;
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
                    let pause = tokio::time::sleep(backoff);
                    tokio::pin!(pause);
                    loop {
                        tokio::select! {
                            () = &mut pause => break,
                            job = next_replay(&mut replays) => self.serve_replay(job, &mut held).await,
                            () = stop.cancelled() => return Ok(()),
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
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
        let stream = self
            .settings
            .ensure_stream(&self.js)
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .context("get or create the event stream")?;
        let resume = self.resume_point(&stream).await?;
        let checkpoint = resume.start_seq - 1;
        // The checkpoint decides where delivery starts, whatever the
        // server remembers of earlier acks.
        match stream.delete_consumer(&self.name).await {
            Ok(_) => {}
            Err(e) if consumer_not_found(&e) => {}
            Err(e) => tracing::debug!(error = %e, "delete the old durable consumer"),
        }
        let consumer: jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(self.name.clone()),
                description: Some("Motcua projection (delivery starts at its checkpoint)".into()),
                deliver_policy: if checkpoint == 0 {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::ByStartSequence {
                        start_sequence: checkpoint + 1,
                    }
                },
                ack_policy: AckPolicy::None,
                filter_subject: self.settings.all_events_filter(stream.cached_info()),
                ..Default::default()
            })
            .await
            .context("create the durable consumer")?;
        tracing::info!(consumer = %self.name, checkpoint, "consuming events");
        let delivered = consumer.cached_info().delivered.consumer_sequence;
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.max_batch.min(PULL_BATCH))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .context("start pulling messages")?;
        // Messages are received and taken apart on their own task, so the
        // next batch arrives while this one is written; what it received
        // beyond the checkpoint is delivered again at the next start.
        let mut incoming_rx =
            spawn_receiver(messages, delivered, self.max_batch.min(RECEIVE_AHEAD));

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
            // Fold chunks of what has arrived into one transaction while
            // messages keep coming: stop at the size limit, after a short
            // gap with nothing to take (caught up), or when the batch is old
            // enough that taking more would delay the reports.
            // The batch being written, if any, lends its rows to this one,
            // unless it changed what only its commit makes readable.
            if writing.as_ref().is_some_and(|w| !w.overlay) {
                self.land(writing, &mut last_seq, held).await?;
            }
            let started = tokio::time::Instant::now();
            let mut fold = Fold::new(*held, sizes);
            fold.overlay = writing.as_ref().map(|w| w.write.clone());
            fold.positions = self.positions;
            fold.log = self.log;
            let mut chunk = vec![first];
            let mut last: Option<Incoming> = None;
            loop {
                let room = CHUNK.min(self.max_batch - fold.events());
                while chunk.len() < room {
                    match incoming_rx.try_recv() {
                        Some(next) => chunk.push(next),
                        None => break,
                    }
                }
                if chunk.is_empty() {
                    let catching_up = catching_up(last.as_ref(), &incoming_rx);
                    let age = started.elapsed();
                    if fold.events() >= self.max_batch
                        || age >= BATCH_MAX_AGE
                        || (age >= BATCH_MAX_WAIT && !catching_up)
                    {
                        break;
                    }
                    let wait = if catching_up {
                        BATCH_MAX_AGE - age
                    } else {
                        BATCH_GAP
                    };
                    match tokio::time::timeout(wait, incoming_rx.recv()).await {
                        Ok(Some(next)) => {
                            chunk.push(next);
                            continue;
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                let taken = fold.add(&self.store, &chunk).await?;
                chunk.truncate(taken);
                last = chunk.pop();
                chunk.clear();
                if fold.foreign.is_some() {
                    break;
                }
                // Past the short wait, go on only while catching up: steady
                // traffic commits promptly, a backlog in large batches.
                let age = started.elapsed();
                if fold.events() >= self.max_batch
                    || age >= BATCH_MAX_AGE
                    || (age >= BATCH_MAX_WAIT && !catching_up(last.as_ref(), &incoming_rx))
                {
                    break;
                }
            }
            let Some(last) = last else { continue };
            self.positions = fold.positions;
            self.log = fold.log;
            let foreign = fold.foreign;
            self.report_missing(&fold.missing);
            // Batches commit in order: the one before lands first.
            self.land(writing, &mut last_seq, held).await?;
            sizes = fold.sizes();
            *writing = Some(self.start_write(fold, &last));
            if let Some(other) = foreign {
                // The batch up to and with the parked event is written;
                // nothing after it is applied.
                self.land(writing, &mut last_seq, held).await?;
                return Err(ForeignLog {
                    stream: self.settings.stream.clone(),
                    ours: self.log,
                    other,
                    stream_seq: last.stream_seq,
                }
                .into());
            }
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

    /// Where this consumer resumes on `stream` ([`Resume::decide`]); says
    /// so loudly when the stream is not the one its checkpoint was taken on.
    async fn resume_point(&mut self, stream: &jetstream::stream::Stream) -> anyhow::Result<Resume> {
        let info = stream.cached_info();
        let now = StreamNow {
            created: i64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(i64::MAX),
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
        };
        let checkpoint = self.store.resume_point(&self.name).await?;
        let resume = Resume::decide(checkpoint, now);
        if let Some(why) = &resume.changed {
            tracing::warn!(
                consumer = %self.name,
                stream = %self.settings.stream,
                checkpoint = checkpoint.stream_seq,
                log_position = ?checkpoint.log_position,
                "{why}; reading the stream from its start and passing over the events up to the log position the read models hold"
            );
            metrics::counter!("projection_stream_changes_total").increment(1);
        }
        self.stream_created = Some(now.created);
        self.positions = Some(Positions::new(checkpoint.log_position, resume.skip_through));
        self.log = checkpoint.log;
        Ok(resume)
    }

    /// Starts writing a folded batch in one transaction with its checkpoint,
    /// on a task of its own, so the next batch folds meanwhile. The task
    /// retries the same write while the database fails, so nothing is
    /// skipped; see [`Consumer::finish_write`].
    fn start_write(&self, fold: Fold, last: &Incoming) -> Writing {
        let events = fold.events();
        let (mut write, applied) = fold.into_write(self.news);
        write.stream_created = self.stream_created;
        write.log_position = self.positions.and_then(|p| p.through());
        write.log = self.log;
        // Held, released and parked events and procedure streams are read
        // back from the database by the next fold: it waits for this commit.
        let overlay = write.only_dossier_changes();
        let write = Arc::new(write);
        let (store, name, batch) = (self.store.clone(), self.name.clone(), write.clone());
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            while let Err(e) = store.commit(&name, &batch).await {
                tracing::warn!(error = %format!("{e:#}"), "writing a batch failed; retrying it");
                metrics::counter!("projection_batch_failures_total").increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        Writing {
            write,
            task: WriteTask {
                task: Some(task),
                ok: true,
            },
            events,
            applied,
            last_seq: last.stream_seq,
            pending: last.pending,
            overlay,
        }
    }

    /// Lands the batch being written, if any (see [`Consumer::finish_write`]);
    /// `last_seq` follows it.
    async fn land(
        &self,
        writing: &mut Option<Writing>,
        last_seq: &mut u64,
        held: &mut u64,
    ) -> anyhow::Result<bool> {
        match writing.take() {
            Some(w) => {
                *last_seq = w.last_seq;
                self.finish_write(w, held).await
            }
            None => Ok(false),
        }
    }

    /// Waits until a batch's write has committed, then counts it. Returns
    /// whether a consumer that stops once caught up should stop now.
    async fn finish_write(&self, mut w: Writing, held: &mut u64) -> anyhow::Result<bool> {
        if !w.task.join().await {
            // Only a panic ends the writer early: nothing after this batch
            // may be written; the consumer resumes from the checkpoint.
            anyhow::bail!("the batch writer failed");
        }
        let write = &w.write;
        *held = held
            .saturating_add(write.held.len() as u64)
            .saturating_sub(write.released.len() as u64);
        metrics::counter!("projection_events_applied_total").increment(w.applied);
        metrics::histogram!("projection_batch_size").record(w.events as f64);
        metrics::gauge!("projection_checkpoint").set(write.checkpoint as f64);
        metrics::gauge!("projection_held_events").set(*held as f64);
        if !write.parked.is_empty() {
            metrics::counter!("projection_events_parked_total")
                .increment(write.parked.len() as u64);
            self.count_parked().await;
        }
        if let Some(progress) = &self.progress {
            progress
                .applied
                .fetch_add(w.events as u64, Ordering::Relaxed);
            progress.checkpoint.store(w.last_seq, Ordering::Relaxed);
            if let Some(pending) = w.pending {
                progress.pending.store(pending, Ordering::Relaxed);
            }
        }
        Ok(match w.pending {
            Some(pending) => {
                if self.news {
                    metrics::gauge!("projection_consumer_lag_events").set(pending as f64);
                }
                self.until_caught_up && pending == 0
            }
            None => false,
        })
    }

    /// Makes the rebuilt generation serve: brings it to exactly this
    /// consumer's checkpoint (replaying what it lacks, as history), hands it
    /// the late feed and the checkpoint, swaps, and continues on it.
    async fn take_over(&mut self, swap: Swap, checkpoint: u64, held: &mut u64) {
        let result = async {
            if checkpoint > swap.checkpoint {
                replay_range(
                    &self.js,
                    &self.settings,
                    &swap.store,
                    swap.checkpoint,
                    checkpoint,
                )
                .await
                .context("bring the new generation to the live checkpoint")?;
            }
            swap.store
                .adopt(&self.store, &self.name, checkpoint)
                .await
                .context("hand the late feed and checkpoint over")?;
            let retired = swap.serving.generation();
            swap.generations
                .promote(&swap.serving, swap.generation, swap.store.clone())
                .await?;
            self.store = swap.store.clone();
            *held = self.store.held_count().await?;
            tracing::info!(
                generation = swap.generation,
                retired,
                checkpoint,
                "rebuilt generation now serving"
            );
            anyhow::Ok(retired)
        }
        .await;
        drop(swap.done.send(result));
    }
}

/// A folded batch being written by its own task.
struct Writing {
    write: Arc<BatchWrite>,
    task: WriteTask,
    events: usize,
    applied: u64,
    last_seq: u64,
    pending: Option<u64>,
    /// Whether the next batch may fold on this one's rows before it commits.
    overlay: bool,
}

/// The task writing a batch; it stops when its handle goes (a dropped
/// consumer writes no more; an unfinished transaction rolls back).
struct WriteTask {
    task: Option<tokio::task::JoinHandle<()>>,
    /// Whether it ended without panicking, once joined.
    ok: bool,
}

impl WriteTask {
    /// Waits for the task (at once if it was waited for before); whether
    /// it ended without panicking, which only a panic prevents.
    async fn join(&mut self) -> bool {
        if let Some(task) = self.task.as_mut() {
            self.ok = task.await.is_ok();
            self.task = None;
        }
        self.ok
    }
}

impl Drop for WriteTask {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Ready when the batch being written has committed; never without one.
async fn written(writing: &mut Option<Writing>) {
    match writing.as_mut() {
        Some(w) => {
            w.task.join().await;
        }
        None => std::future::pending().await,
    }
}

/// Applies a batch of messages to `store` in one transaction with the
/// checkpoint of consumer `name`: the consumer's work, also used to replay
/// history into a scratch store for as-of reports.
pub(crate) async fn apply_messages(
    store: &ReadStore,
    name: &str,
    batch: &[Incoming],
    held_count: u64,
    news: bool,
) -> anyhow::Result<(BatchWrite, u64)> {
    let mut fold = Fold::new(held_count, FoldSizes::default());
    fold.add(store, batch).await?;
    if let Some(other) = fold.foreign {
        tracing::warn!(%other, "a replay met events of two logs; those of the second were parked");
    }
    let (write, applied) = fold.into_write(news);
    store.commit(name, &write).await?;
    Ok((write, applied))
}

/// One transaction's worth of changes, folded from messages chunk by chunk
/// as they arrive (only the changes stay in memory, not the messages), then
/// written with the checkpoint in one transaction.
pub(crate) struct Fold {
    held_count: u64,
    write: BatchWrite,
    /// Dossier rows read from the database and not yet taken by an event.
    loaded: HashMap<String, crate::apply::DossierRow>,
    /// Streams whose stored state has been read (present or not).
    known: hashbrown::HashSet<String>,
    /// Held events by dossier: (version, payload, stored in the database?).
    waiting: HashMap<String, Vec<(i64, Vec<u8>, bool)>>,
    applied: u64,
    events: usize,
    /// The batch before, still being written: its dossier rows are newer
    /// than the database's.
    overlay: Option<Arc<BatchWrite>>,
    /// The log positions taken, when the folder follows them (the live
    /// and rebuild consumers; not a hand-over or an as-of replay).
    positions: Option<Positions>,
    /// Positions that never arrived before a message (from, to).
    missing: Vec<(u64, u64)>,
    /// The log the read store holds, once known.
    log: Option<uuid::Uuid>,
    /// Another log's event was met (and parked): the fold ends there.
    foreign: Option<uuid::Uuid>,
}

/// How many dossier rows and counters a fold gathered: the next one starts
/// with room for as many instead of growing its maps step by step (their
/// growth showed in the projection's profile during a rebuild, with the
/// page faults of the fresh memory on top; BENCHMARKS.md).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FoldSizes {
    rows: usize,
    counters: usize,
}

impl Fold {
    pub(crate) fn new(held_count: u64, sizes: FoldSizes) -> Self {
        Self {
            held_count,
            write: BatchWrite {
                changes: crate::apply::Changes {
                    rows: HashMap::with_capacity(sizes.rows),
                    counters: HashMap::with_capacity(sizes.counters),
                    ..Default::default()
                },
                ..Default::default()
            },
            loaded: HashMap::new(),
            known: hashbrown::HashSet::with_capacity(sizes.rows),
            waiting: HashMap::new(),
            applied: 0,
            events: 0,
            overlay: None,
            positions: None,
            missing: Vec::new(),
            log: None,
            foreign: None,
        }
    }

    /// Messages folded so far.
    pub(crate) fn events(&self) -> usize {
        self.events
    }

    pub(crate) fn sizes(&self) -> FoldSizes {
        FoldSizes {
            rows: self.write.changes.rows.len(),
            counters: self.write.changes.counters.len(),
        }
    }

    /// Folds the next messages in: reads the stored state of the streams
    /// seen for the first time, then applies each event in order.
    /// Returns how many of `chunk` it took: all, or up to and with an
    /// event of another log ([`Fold::foreign`]), which it parks.
    pub(crate) async fn add(
        &mut self,
        store: &ReadStore,
        chunk: &[Incoming],
    ) -> anyhow::Result<usize> {
        let chunk = &chunk[..self.take_log(chunk)];
        let mut decoded = Vec::with_capacity(chunk.len());
        for m in chunk {
            if let Some(other) = m
                .log
                .filter(|_| self.foreign.is_some() && m.log == self.foreign)
            {
                let ours = self
                    .log
                    .map_or_else(|| "none".to_owned(), |l| l.to_string());
                self.write.parked.push(Parked::new(
                    m.stream_seq,
                    &m.subject,
                    m.position,
                    &m.payload,
                    None,
                    format!(
                        "an event of log {other}, while this read store holds log {ours}: it never applies another log's events; build a projection (new database) on the stream of that log"
                    ),
                ));
                continue;
            }
            if let (Some(positions), Some(position)) = (&mut self.positions, m.position) {
                match positions.take(position) {
                    Take::Apply => {}
                    Take::Skip => continue,
                    Take::AfterMissing { from, to } => self.missing.push((from, to)),
                }
            }
            match bus::decode_event(&m.payload) {
                Ok(event) => decoded.push((event, m)),
                Err(e) => self.write.parked.push(Parked::new(
                    m.stream_seq,
                    &m.subject,
                    m.position,
                    &m.payload,
                    None,
                    e.to_string(),
                )),
            }
        }
        let mut ids: Vec<&str> = decoded
            .iter()
            .map(|(e, _)| e.dossier_id.as_str())
            .filter(|id| !self.known.contains(*id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if !ids.is_empty() {
            // Rows the batch before wrote come from it, the rest from the
            // database.
            let mut unread = ids.clone();
            if let Some(before) = &self.overlay {
                let rows = &before.changes.rows;
                unread.retain(|id| match rows.get(*id) {
                    Some(row) => {
                        // Written by the time this batch is.
                        let row = crate::apply::DossierRow {
                            stored: true,
                            ..row.clone()
                        };
                        self.loaded.insert((*id).to_owned(), row);
                        false
                    }
                    None => true,
                });
            }
            if !unread.is_empty() {
                self.loaded.extend(store.load_rows(&unread).await?);
            }
            if self.held_count > 0 {
                for (dossier_id, version, payload) in store.load_held(&ids).await? {
                    self.waiting
                        .entry(dossier_id)
                        .or_default()
                        .push((version, payload, true));
                }
            }
            let catalog = crate::catalog::load(store.pool(), store.backend(), &ids).await?;
            for (id, row) in catalog.procedures {
                self.write
                    .changes
                    .catalog
                    .procedures
                    .entry(id)
                    .or_insert(row);
            }
            self.known.extend(ids.iter().map(|id| (*id).to_owned()));
        }
        let changes = &mut self.write.changes;
        for (event, m) in &decoded {
            let row = changes
                .rows
                .remove(&event.dossier_id)
                .or_else(|| self.loaded.remove(&event.dossier_id));
            match changes.apply(row, event) {
                Applied::Applied => {
                    self.applied += 1;
                    if let Some(queue) = self.waiting.get_mut(&event.dossier_id) {
                        self.applied +=
                            release(changes, &event.dossier_id, queue, &mut self.write.released)?;
                    }
                }
                Applied::Duplicate => {}
                Applied::Held => {
                    let version = i64::try_from(event.version).unwrap_or(i64::MAX);
                    self.waiting
                        .entry(event.dossier_id.clone())
                        .or_default()
                        .push((version, m.payload.to_vec(), false));
                }
                Applied::Rejected(reason) => self.write.parked.push(Parked::new(
                    m.stream_seq,
                    &m.subject,
                    m.position,
                    &m.payload,
                    Some(event),
                    reason,
                )),
            }
        }
        self.events += chunk.len();
        if let Some(last) = chunk.last() {
            self.write.checkpoint = last.stream_seq;
        }
        Ok(chunk.len())
    }

    /// Learns the read store's log from the first event that names one,
    /// and finds the first event of another log: how many messages of
    /// `chunk` to take (up to and with that one).
    fn take_log(&mut self, chunk: &[Incoming]) -> usize {
        for (i, m) in chunk.iter().enumerate() {
            let Some(log) = m.log else { continue };
            match self.log {
                None => self.log = Some(log),
                Some(ours) if ours == log => {}
                Some(_) => {
                    self.foreign = Some(log);
                    return i + 1;
                }
            }
        }
        chunk.len()
    }

    /// The batch to write: the folded changes, the events still held back,
    /// and the checkpoint; with the number of events applied.
    pub(crate) fn into_write(mut self, news: bool) -> (BatchWrite, u64) {
        // What still waits and is not yet in the database gets stored.
        for (dossier_id, queue) in self.waiting {
            for (version, payload, stored) in queue {
                if !stored {
                    self.write.held.push((dossier_id.clone(), version, payload));
                }
            }
        }
        if !news {
            self.write.changes.late_feed.clear();
        }
        (self.write, self.applied)
    }
}

/// Applies the queued events that now follow the dossier's version; drops
/// queued duplicates. Records which stored ones left the queue.
pub(crate) fn release(
    changes: &mut Changes,
    dossier_id: &str,
    queue: &mut Vec<(i64, Vec<u8>, bool)>,
    released: &mut Vec<(String, i64)>,
) -> anyhow::Result<u64> {
    let mut applied = 0;
    loop {
        let current = changes.version_of(dossier_id);
        let mut progressed = false;
        let mut i = 0;
        while i < queue.len() {
            let version = queue[i].0;
            if version <= current + 1 {
                let (version, payload, stored) = queue.swap_remove(i);
                if stored {
                    released.push((dossier_id.to_owned(), version));
                }
                if version == current + 1 {
                    let event = bus::decode_event(&payload).context("decode a held event")?;
                    let row = changes.rows.remove(dossier_id);
                    if changes.apply(row, &event) == Applied::Applied {
                        applied += 1;
                    }
                    progressed = true;
                    break;
                }
            } else {
                i += 1;
            }
        }
        if !progressed {
            return Ok(applied);
        }
    }
}

async fn next_swap(swaps: &mut Option<mpsc::Receiver<Swap>>) -> Option<Swap> {
    match swaps {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Applies the stream's messages after `after` up to `until` (inclusive)
/// to `store`, as history (no late-feed news), with no checkpoint of its own
/// beyond the one written by each batch under the name "handover".
pub(crate) async fn replay_range(
    js: &jetstream::Context,
    settings: &StreamSettings,
    store: &ReadStore,
    after: u64,
    until: u64,
) -> anyhow::Result<()> {
    let stream = settings
        .ensure_stream(js)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("get the event stream")?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            description: Some("Motcua generation handover (ephemeral)".into()),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ack_policy: AckPolicy::None,
            filter_subject: settings.all_events_filter(stream.cached_info()),
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .context("create a handover consumer")?;
    let mut held = store.held_count().await?;
    let mut reached = after;
    while reached < until {
        let mut messages = consumer
            .fetch()
            .max_messages(usize::try_from((until - reached).min(5_000)).unwrap_or(5_000))
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .context("fetch the handover's messages")?;
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            let m = incoming(
                message
                    .map_err(|e| anyhow::anyhow!(e))
                    .context("read a message")?,
            )?;
            if m.stream_seq > until {
                break;
            }
            reached = m.stream_seq;
            batch.push(Incoming { pending: None, ..m });
        }
        if !batch.is_empty() {
            let (write, _) = apply_messages(store, "handover", &batch, held, false).await?;
            held = held
                .saturating_add(write.held.len() as u64)
                .saturating_sub(write.released.len() as u64);
        }
    }
    Ok(())
}

/// Whether a chunk's worth of messages or more waits, received or still on
/// the server (as the last message taken said).
fn catching_up(last: Option<&Incoming>, received: &ReceiverGuard) -> bool {
    let on_server = last
        .and_then(|m| m.pending)
        .map_or(0, |p| usize::try_from(p).unwrap_or(usize::MAX));
    on_server.saturating_add(received.backlog()) >= CHUNK
}

/// Receives messages on a task of its own into a channel of `capacity`,
/// checking that none was lost on the way: `delivered` is the consumer
/// sequence of the last message the server had delivered before.
fn spawn_receiver(mut messages: pull::Stream, delivered: u64, capacity: usize) -> ReceiverGuard {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let task = tokio::spawn(async move {
        let mut deliveries = Deliveries::after(delivered);
        while let Some(next) = messages.next().await {
            let next = next
                .map_err(|e| anyhow::anyhow!(e))
                .context("receive a message")
                .and_then(taken_apart)
                .and_then(|(message, consumer_seq)| {
                    deliveries.check(consumer_seq)?;
                    Ok(message)
                });
            let failed = next.is_err();
            if tx.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    ReceiverGuard {
        rx,
        task,
        error: None,
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

/// Messages the server delivered that never reached the consumer: the NATS
/// client's buffer was full and it dropped them (a slow consumer). A
/// consumer that acknowledges nothing is never sent them again, so nothing
/// after the gap may be applied: the consumer writes what came before it
/// and resumes from its checkpoint.
#[derive(Debug, thiserror::Error)]
#[error(
    "deliveries were lost on the way (consumer sequence {got} arrived where {expected} was due; the NATS client's buffer, --nats-buffer, was full)"
)]
struct DeliveryGap {
    expected: u64,
    got: u64,
}

/// The consumer sequences of a consumer that acknowledges nothing: each
/// message is delivered once, numbered one after the other.
#[derive(Debug)]
struct Deliveries {
    next: u64,
}

impl Deliveries {
    /// Deliveries following consumer sequence `delivered` (0: a new consumer).
    fn after(delivered: u64) -> Self {
        Self {
            next: delivered.saturating_add(1),
        }
    }

    /// Takes the delivery numbered `consumer_seq`: the next one, or a gap.
    fn check(&mut self, consumer_seq: u64) -> Result<(), DeliveryGap> {
        if consumer_seq != self.next {
            return Err(DeliveryGap {
                expected: self.next,
                got: consumer_seq,
            });
        }
        self.next += 1;
        Ok(())
    }
}

/// The receiving end; the receiving task stops when this is dropped. A
/// failure ends what it yields; [`ReceiverGuard::ended`] then tells why.
struct ReceiverGuard {
    rx: mpsc::Receiver<anyhow::Result<Incoming>>,
    task: tokio::task::JoinHandle<()>,
    error: Option<anyhow::Error>,
}

impl ReceiverGuard {
    /// The next message; `None` once the receiver has ended.
    async fn recv(&mut self) -> Option<Incoming> {
        let next = self.rx.recv().await;
        self.take(next)
    }

    /// Messages received and not yet taken.
    fn backlog(&self) -> usize {
        self.rx.len()
    }

    /// The next message if one has arrived.
    fn try_recv(&mut self) -> Option<Incoming> {
        let next = self.rx.try_recv().ok();
        self.take(next)
    }

    fn take(&mut self, next: Option<anyhow::Result<Incoming>>) -> Option<Incoming> {
        match next? {
            Ok(message) => Some(message),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    /// Why the receiver ended.
    fn ended(&mut self) -> anyhow::Error {
        self.error
            .take()
            .unwrap_or_else(|| anyhow::anyhow!("the message stream ended"))
    }
}

impl Drop for ReceiverGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether deleting a consumer failed only because there was none.
fn consumer_not_found(e: &jetstream::stream::ConsumerError) -> bool {
    matches!(
        e.kind(),
        jetstream::stream::ConsumerErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
    )
}

fn incoming(message: jetstream::Message) -> anyhow::Result<Incoming> {
    taken_apart(message).map(|(message, _)| message)
}

/// A message taken apart, and its consumer sequence.
fn taken_apart(message: jetstream::Message) -> anyhow::Result<(Incoming, u64)> {
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!(e))
        .context("read a message's stream sequence")?;
    let (stream_seq, consumer_seq, pending) =
        (info.stream_sequence, info.consumer_sequence, info.pending);
    let position = bus::position_of(message.headers.as_ref());
    Ok((
        Incoming {
            stream_seq,
            subject: message.subject.clone(),
            position,
            log: bus::log_of(message.headers.as_ref()),
            payload: message.payload.clone(),
            pending: Some(pending),
        },
        consumer_seq,
    ))
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

#[cfg(test)]
mod tests {
    use super::Deliveries;

    #[test]
    fn deliveries_in_sequence_pass_from_a_new_or_resumed_consumer() {
        for delivered in [0, 41] {
            let mut deliveries = Deliveries::after(delivered);
            for seq in delivered + 1..=delivered + 1_000 {
                assert!(deliveries.check(seq).is_ok(), "{seq} after {delivered}");
            }
        }
    }

    #[test]
    fn the_default_client_buffer_holds_what_can_arrive_ahead() {
        use clap::Parser as _;
        let config = crate::Config::parse_from(["projection"]);
        // The next pull is asked for when half of one is left.
        assert!(config.nats_buffer as usize >= super::PULL_BATCH * 3 / 2);
    }

    #[test]
    fn a_skipped_delivery_is_a_gap_and_so_is_one_out_of_order() {
        let mut deliveries = Deliveries::after(0);
        assert!(deliveries.check(1).is_ok());
        let gap = deliveries.check(5).expect_err("2, 3 and 4 were lost");
        assert_eq!((gap.expected, gap.got), (2, 5));

        let mut deliveries = Deliveries::after(10);
        let first_lost = deliveries.check(12).expect_err("11 was lost");
        assert_eq!((first_lost.expected, first_lost.got), (11, 12));

        let mut deliveries = Deliveries::after(3);
        assert!(deliveries.check(4).is_ok());
        assert!(
            deliveries.check(4).is_err(),
            "a delivery twice is not the next"
        );
    }
}
