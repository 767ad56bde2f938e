//! Writing: a folded batch written with its checkpoint on a task of its
//! own while the next one folds, retried in place while the database
//! fails, and counted once it has committed.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use super::{
    Consumer, ForeignLog,
    fold::{Fold, FoldSizes},
    receive::Incoming,
};
use crate::store::BatchWrite;

impl Consumer {
    /// Hands a folded batch to a writing task of its own once the one
    /// before has landed (batches commit in order); returns its sizes, for
    /// the next fold. A batch that met another log's event is written at
    /// once, and consuming stops there with [`ForeignLog`].
    pub(super) async fn write_folded(
        &mut self,
        fold: Fold,
        last: &Incoming,
        writing: &mut Option<Writing>,
        last_seq: &mut u64,
        held: &mut u64,
    ) -> anyhow::Result<FoldSizes> {
        self.positions = fold.positions;
        self.log = fold.log;
        let foreign = fold.foreign;
        self.report_missing(&fold.missing);
        // Batches commit in order: the one before lands first.
        self.land(writing, last_seq, held).await?;
        let sizes = fold.sizes();
        *writing = Some(self.start_write(fold, last));
        if let Some(other) = foreign {
            // The batch up to and with the parked event is written;
            // nothing after it is applied.
            self.land(writing, last_seq, held).await?;
            return Err(ForeignLog {
                stream: self.settings.stream.clone(),
                ours: self.log,
                other,
                stream_seq: last.stream_seq,
            }
            .into());
        }
        Ok(sizes)
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
    pub(super) async fn land(
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
    pub(super) async fn finish_write(
        &self,
        mut w: Writing,
        held: &mut u64,
    ) -> anyhow::Result<bool> {
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
}

/// A folded batch being written by its own task.
pub(super) struct Writing {
    pub(super) write: Arc<BatchWrite>,
    task: WriteTask,
    events: usize,
    applied: u64,
    last_seq: u64,
    pending: Option<u64>,
    /// Whether the next batch may fold on this one's rows before it commits.
    pub(super) overlay: bool,
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
pub(super) async fn written(writing: &mut Option<Writing>) {
    match writing.as_mut() {
        Some(w) => {
            w.task.join().await;
        }
        None => std::future::pending().await,
    }
}
