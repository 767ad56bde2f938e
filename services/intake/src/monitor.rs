//! The deadline monitor: appends a Late event when a dossier's due date
//! (local) has ended without a result.
//!
//! It reads the `deadlines` index, which every append keeps in the same
//! transaction as its events, and sleeps until the earliest deadline instead
//! of scanning on a timer. It wakes earlier when the writer commits an
//! earlier deadline, and re-reads the wall clock at least every
//! [`CLOCK_CHECK`] so that a clock jump (NTP, a test's clock) is noticed
//! without a database query.
//!
//! Exactly once per dossier and due date, across restarts and instances:
//! the Late command goes through the one writer like any desk command, with
//! the request id `late:<dossier>:<due_at>`. A second instance sending the
//! same command gets the first reply back (or a conflict and then a refusal:
//! "already marked late"), so the log holds one Late event whoever wins.

use std::{collections::HashSet, time::Duration};

use domain::{Command, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    error::IntakeError,
    store::{EventStore, PassedDeadline},
    writer::{Clock, CommandRequest, WriterHandle},
};

/// Longest the monitor sleeps without looking at the wall clock.
pub const CLOCK_CHECK: Duration = Duration::from_secs(1);
/// Longest it trusts its idea of the next deadline: another instance may
/// have indexed an earlier one.
const RECHECK: Duration = Duration::from_secs(30);
/// Late commands sent at once; the writer groups them into few commits.
const BATCH: u32 = 2_000;
/// The actor recorded on Late events.
pub const ACTOR: &str = "deadline-monitor";

pub struct DeadlineMonitor {
    pub store: EventStore,
    pub writer: WriterHandle,
    pub clock: Clock,
    /// The earliest deadline of each committed batch (from the writer).
    pub new_deadlines: watch::Receiver<i64>,
}

impl DeadlineMonitor {
    /// Runs until `stop` is cancelled or the writer goes away.
    pub async fn run(mut self, stop: CancellationToken) {
        // Dossiers the writer refused to mark late (for this due date); they
        // are skipped until the next start rather than retried in a loop.
        let mut refused: HashSet<(String, i64)> = HashSet::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            let now = (self.clock)().micros();
            let next = match self.mark_passed(now, &mut refused).await {
                Ok(Pass::More) => continue,
                Ok(Pass::Done) => self.store.next_deadline(now).await,
                Ok(Pass::Stopped) => return,
                Err(e) => Err(e),
            };
            let next = match next {
                Ok(next) => {
                    backoff = Duration::from_millis(100);
                    next.unwrap_or(i64::MAX)
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "deadline monitor: store unavailable; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            metrics::gauge!("intake_next_deadline_seconds").set(if next == i64::MAX {
                0.0
            } else {
                next as f64 / 1e6
            });
            if !self.sleep_until(next, &stop).await {
                return;
            }
        }
    }

    /// Sleeps until the wall clock reaches `deadline`, an earlier deadline is
    /// committed, or [`RECHECK`] has passed. False when stopped.
    async fn sleep_until(&mut self, mut deadline: i64, stop: &CancellationToken) -> bool {
        let started = tokio::time::Instant::now();
        loop {
            let now = (self.clock)().micros();
            if now >= deadline || started.elapsed() >= RECHECK {
                return true;
            }
            let wait =
                Duration::from_micros(u64::try_from(deadline - now).unwrap_or(0)).min(CLOCK_CHECK);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = self.new_deadlines.changed() => {
                    if changed.is_err() {
                        // The writer is gone: intake is shutting down.
                        return false;
                    }
                    deadline = deadline.min(*self.new_deadlines.borrow_and_update());
                }
                () = stop.cancelled() => return false,
            }
        }
    }

    /// Marks late every dossier whose deadline has passed, a batch at a time.
    async fn mark_passed(
        &self,
        now: i64,
        refused: &mut HashSet<(String, i64)>,
    ) -> anyhow::Result<Pass> {
        let limit = BATCH.saturating_add(u32::try_from(refused.len()).unwrap_or(u32::MAX));
        let passed: Vec<PassedDeadline> = self.store.passed_deadlines(now, limit).await?;
        let full = passed.len() as u64 >= u64::from(limit);
        let todo: Vec<PassedDeadline> = passed
            .into_iter()
            .filter(|p| !refused.contains(&(p.dossier_id.clone(), p.due_at)))
            .collect();
        if todo.is_empty() {
            return Ok(Pass::Done);
        }
        let sends = todo.iter().map(|p| {
            let request_id = format!("late:{}:{}", p.dossier_id, p.due_at);
            self.writer.submit(CommandRequest {
                // The id names the command: no desk request takes its reply.
                fingerprint: Some(crate::fingerprint::of_named(&request_id)),
                request_id,
                actor: ACTOR.to_owned(),
                dossier_id: p.dossier_id.clone(),
                occurred_at: Some(Timestamp::from_micros(p.deadline_at)),
                command: Command::MarkLate,
                caller: None,
            })
        });
        let results = futures::future::join_all(sends).await;
        let mut marked = 0u64;
        let mut refusals = Vec::new();
        for (p, result) in todo.into_iter().zip(results) {
            match result {
                Ok(_) => marked += 1,
                Err(IntakeError::ShuttingDown) => return Ok(Pass::Stopped),
                Err(
                    e @ (IntakeError::Unavailable(_)
                    | IntakeError::StoreFull
                    | IntakeError::Conflict),
                ) => {
                    // Retried after a backoff; the request id keeps it once.
                    anyhow::bail!("mark dossier {} late: {e}", p.dossier_id)
                }
                Err(e) => refusals.push((p, e)),
            }
        }
        if !refusals.is_empty() {
            // Mostly the dossier moved on (a result, a withdrawal, a pause)
            // after the index was read: its deadline has left the index
            // since. One still there means the index and the log disagree
            // (it should not happen: both change in one transaction).
            let still: HashSet<(String, i64)> = self
                .store
                .passed_deadlines(now, limit)
                .await?
                .into_iter()
                .map(|p| (p.dossier_id, p.due_at))
                .collect();
            for (p, e) in refusals {
                let key = (p.dossier_id, p.due_at);
                if still.contains(&key) {
                    tracing::warn!(dossier = %key.0, error = %e, "deadline monitor: could not mark late");
                    metrics::counter!("intake_late_refused_total").increment(1);
                    refused.insert(key);
                } else {
                    tracing::debug!(dossier = %key.0, error = %e, "deadline monitor: the dossier moved on before it was marked late");
                }
            }
        }
        metrics::counter!("intake_late_marked_total").increment(marked);
        if marked > 0 {
            tracing::info!(marked, "deadline monitor: dossiers became late");
        }
        Ok(if full { Pass::More } else { Pass::Done })
    }
}

enum Pass {
    /// A full batch: there may be more passed deadlines.
    More,
    Done,
    Stopped,
}
