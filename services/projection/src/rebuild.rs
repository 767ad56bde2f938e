//! Rebuild without downtime: a new generation of the read models fills
//! from the start of the stream with its own durable consumer, as history
//! (no late-feed news), while the serving generation keeps answering and
//! following live events. Once caught up, it is handed to the live consumer,
//! which brings it to its own checkpoint, gives it the late feed, and swaps
//! at a batch boundary; the old generation is then dropped. One at a time.
//!
//! A crash during a rebuild leaves the serving generation untouched; the
//! unfinished generation is dropped at the next start, and a rebuild can be
//! started again.

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use async_nats::jetstream;
use bus::StreamSettings;
use proto::reports::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    consumer::{Consumer, Progress, Swap},
    generations::{Generations, Serving},
    store::{Fill, ReadStore},
};

/// Most events a rebuild applies in one transaction: nobody reads the new
/// generation before it takes over, so its batches are as large as memory
/// allows comfortably (BENCHMARKS.md), and each counter row and dossier row
/// is written once for many events.
const REBUILD_MAX_BATCH: usize = 200_000;

/// The durable consumer that fills `generation`.
fn consumer_name(generation: u64) -> String {
    format!("rebuild-g{generation}")
}

#[derive(Clone, Debug)]
struct Run {
    state: pb::RebuildState,
    generation: u64,
    started: Instant,
    started_at: prost_types::Timestamp,
    progress: Arc<Progress>,
    error: String,
}

/// Starts rebuilds and reports on them (`motcua.reports.v1.Rebuilds`).
#[derive(Clone)]
pub struct Rebuilder {
    generations: Generations,
    serving: Arc<Serving>,
    js: jetstream::Context,
    settings: StreamSettings,
    max_batch: usize,
    swaps: mpsc::Sender<Swap>,
    stop: CancellationToken,
    run: Arc<Mutex<Option<Run>>>,
    /// The province this deployment serves (`--province`), whose
    /// operators may rebuild.
    served: Option<String>,
}

impl std::fmt::Debug for Rebuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rebuilder").finish_non_exhaustive()
    }
}

impl Rebuilder {
    pub fn new(
        generations: Generations,
        serving: Arc<Serving>,
        js: jetstream::Context,
        settings: StreamSettings,
        max_batch: usize,
        swaps: mpsc::Sender<Swap>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            generations,
            serving,
            js,
            settings,
            max_batch,
            swaps,
            stop,
            run: Arc::new(Mutex::new(None)),
            served: None,
        }
    }

    /// Lets operators of `province` (this deployment's) rebuild once
    /// authentication is on.
    pub fn serving_province(mut self, province: Option<String>) -> Self {
        self.served = province;
        self
    }

    fn with_run<T>(&self, f: impl FnOnce(&mut Option<Run>) -> T) -> T {
        match self.run.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn set_state(&self, state: pb::RebuildState, error: String) {
        self.with_run(|run| {
            if let Some(run) = run {
                run.state = state;
                run.error = error;
            }
        });
    }

    /// Starts a rebuild in the background; refuses a second one.
    pub async fn start(&self) -> Result<pb::RebuildStatus, Status> {
        let busy = self.with_run(|run| {
            run.as_ref().is_some_and(|r| {
                matches!(
                    r.state,
                    pb::RebuildState::Running
                        | pb::RebuildState::Indexing
                        | pb::RebuildState::Swapping
                )
            })
        });
        if busy {
            return Err(Status::failed_precondition(
                "a rebuild is already running; follow it with GetRebuild (motcua rebuild --follow)",
            ));
        }
        let generation = self.generations.begin().await.map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "start a rebuild");
            Status::unavailable(format!("cannot start a rebuild: {e:#}"))
        })?;
        let progress = Arc::new(Progress::default());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.with_run(|run| {
            *run = Some(Run {
                state: pb::RebuildState::Running,
                generation,
                started: Instant::now(),
                started_at: prost_types::Timestamp {
                    seconds: i64::try_from(now.as_secs()).unwrap_or(0),
                    nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
                },
                progress: progress.clone(),
                error: String::new(),
            });
        });
        let this = self.clone();
        tokio::spawn(async move {
            match this.rebuild(generation, progress).await {
                Ok((retired, old)) => {
                    tracing::info!(generation, retired, "rebuild done");
                    this.set_state(pb::RebuildState::Done, String::new());
                    this.retire(generation, retired, old).await;
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::error!(generation, error = %error, "rebuild failed; the serving generation is untouched");
                    if let Err(e) = this.generations.drop_generation(generation).await {
                        tracing::warn!(error = %format!("{e:#}"), "drop the failed generation");
                    }
                    this.set_state(pb::RebuildState::Failed, error);
                }
            }
            metrics::gauge!("projection_rebuild_running").set(0.0);
        });
        metrics::gauge!("projection_rebuild_running").set(1.0);
        Ok(self.status())
    }

    /// After a swap to `generation`: drops the `retired` one after a moment
    /// for the reads still in flight on it, and the rebuild's consumer. A
    /// failure leaves a retired generation, dropped at the next start.
    async fn retire(&self, generation: u64, retired: u64, old: ReadStore) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        old.close().await;
        if let Err(e) = self.generations.drop_generation(retired).await {
            tracing::warn!(retired, error = %format!("{e:#}"), "drop the retired generation");
        }
        if let Ok(stream) = self.settings.ensure_stream(&self.js).await
            && let Err(e) = stream.delete_consumer(&consumer_name(generation)).await
        {
            tracing::debug!(error = %e, "delete the rebuild's consumer");
        }
    }

    /// Fills `generation` and has the live consumer take it over; returns
    /// the retired generation and its store, still open.
    async fn rebuild(
        &self,
        generation: u64,
        progress: Arc<Progress>,
    ) -> anyhow::Result<(u64, ReadStore)> {
        let serving = self.serving.store();
        let store = self
            .generations
            .open_store(generation, Some(serving.feed_announcer()), Fill::Bulk)
            .await?;
        let consumer = Consumer {
            store: store.clone(),
            js: self.js.clone(),
            settings: self.settings.clone(),
            name: consumer_name(generation),
            max_batch: self.max_batch.max(REBUILD_MAX_BATCH),
            news: false,
            until_caught_up: true,
            progress: Some(progress.clone()),
            swaps: None,
            replays: None,
            stream_created: None,
            positions: None,
            log: None,
        };
        let watch_progress = {
            let progress = progress.clone();
            let stop = CancellationToken::new();
            let guard = stop.clone();
            tokio::spawn(async move {
                loop {
                    metrics::gauge!("projection_rebuild_events_applied")
                        .set(progress.applied.load(Ordering::Relaxed) as f64);
                    metrics::gauge!("projection_rebuild_events_pending")
                        .set(progress.pending.load(Ordering::Relaxed) as f64);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = guard.cancelled() => return,
                    }
                }
            });
            stop
        };
        let result = consumer.run(self.stop.clone()).await;
        watch_progress.cancel();
        result?;
        anyhow::ensure!(!self.stop.is_cancelled(), "the projection is shutting down");
        self.set_state(pb::RebuildState::Indexing, String::new());
        store.finish_bulk_fill().await?;
        // Hand over to the live consumer.
        self.set_state(pb::RebuildState::Swapping, String::new());
        let (done, answer) = oneshot::channel();
        self.swaps
            .send(Swap {
                generation,
                store,
                checkpoint: progress.checkpoint.load(Ordering::Relaxed),
                generations: self.generations.clone(),
                serving: self.serving.clone(),
                done,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the live consumer stopped"))?;
        let retired = answer
            .await
            .map_err(|_| anyhow::anyhow!("the live consumer stopped before the swap"))??;
        Ok((retired, serving))
    }

    pub fn status(&self) -> pb::RebuildStatus {
        let serving_generation = self.serving.generation();
        self.with_run(|run| match run {
            None => pb::RebuildStatus {
                state: pb::RebuildState::Idle.into(),
                serving_generation,
                ..Default::default()
            },
            Some(run) => {
                let applied = run.progress.applied.load(Ordering::Relaxed);
                let pending = run.progress.pending.load(Ordering::Relaxed);
                let seconds = run.started.elapsed().as_secs_f64();
                let rate = if seconds > 0.0 {
                    applied as f64 / seconds
                } else {
                    0.0
                };
                pb::RebuildStatus {
                    state: run.state.into(),
                    generation: run.generation,
                    serving_generation,
                    events_applied: applied,
                    events_pending: pending,
                    events_per_second: rate,
                    eta_seconds: if rate > 0.0 && run.state == pb::RebuildState::Running {
                        pending as f64 / rate
                    } else {
                        0.0
                    },
                    error: run.error.clone(),
                    started_at: Some(run.started_at),
                }
            }
        })
    }
}

#[tonic::async_trait]
impl pb::rebuilds_server::Rebuilds for Rebuilder {
    async fn start_rebuild(
        &self,
        request: Request<pb::StartRebuildRequest>,
    ) -> Result<Response<pb::RebuildStatus>, Status> {
        crate::access::whole_log(
            server::identity_of(&request),
            self.served.as_deref(),
            "rebuild the projection",
        )?;
        Ok(Response::new(self.start().await?))
    }

    async fn get_rebuild(
        &self,
        request: Request<pb::GetRebuildRequest>,
    ) -> Result<Response<pb::RebuildStatus>, Status> {
        crate::access::whole_log(
            server::identity_of(&request),
            self.served.as_deref(),
            "follow a rebuild",
        )?;
        Ok(Response::new(self.status()))
    }
}
