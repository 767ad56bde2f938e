//! The writer's import path: a job of whole dossier histories, each decided
//! step by step against the current state and kept only if every step is
//! accepted, all accepted histories appended in one transaction.
//!
//! A history's events are never split across transactions, so the deadline
//! monitor (whose Late commands go through this same writer) cannot slip a
//! Late event between a receipt and its result. Positions, the deadline
//! index and conflict retries are the group commit's: the same
//! `EventStore::append`, the same head row.

use std::collections::{HashMap, HashSet};

use domain::{Command, Dossier, Refusal, Timestamp};
use prost::Message as _;
use proto::intake::v1::CommandReply;
use tokio::sync::oneshot;

use super::{CONFLICT_RETRIES, Writer, WriterHandle, deadline_changes};
use crate::{
    error::IntakeError,
    fingerprint::of_named,
    store::{AppendError, NewEvent, NewReply},
};

/// One step of a history: the command, when it happened, and the name of
/// the import column it came from (for refusals).
#[derive(Clone, Debug)]
pub struct Step {
    pub column: &'static str,
    pub at: Timestamp,
    pub command: Command,
}

/// One dossier's history to import, fields already validated. The first
/// step is its receipt.
#[derive(Clone, Debug)]
pub struct History {
    pub row: u64,
    /// Identifies this row's content (see the `ImportDossier` contract):
    /// the same request id again is an import already done.
    pub request_id: String,
    pub actor: String,
    pub dossier_id: String,
    pub steps: Vec<Step>,
}

/// What became of one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    Imported {
        events: u64,
        last_position: u64,
    },
    /// The same row (same request id) was imported before.
    AlreadyImported,
    /// Refused; nothing of it was appended.
    Rejected(String),
}

#[derive(Debug)]
pub(super) struct ImportJob {
    histories: Vec<History>,
    reply: oneshot::Sender<Result<Vec<ImportOutcome>, IntakeError>>,
}

impl ImportJob {
    /// The events the job appends at most.
    pub(super) fn events(&self) -> usize {
        steps_of(&self.histories)
    }
}

/// The steps of `histories`: one event each when all are accepted.
fn steps_of(histories: &[History]) -> usize {
    histories.iter().map(|h| h.steps.len()).sum()
}

impl WriterHandle {
    /// Queues a job of histories for the writer (jobs are decided in the
    /// order they are queued); its outcomes, one per history in order, come
    /// on the returned receiver once they are durable.
    pub async fn queue_import(
        &self,
        histories: Vec<History>,
    ) -> Result<oneshot::Receiver<Result<Vec<ImportOutcome>, IntakeError>>, IntakeError> {
        let (reply, rx) = oneshot::channel();
        self.imports
            .send(ImportJob { histories, reply })
            .await
            .map_err(|_| IntakeError::ShuttingDown)?;
        Ok(rx)
    }
}

impl Writer {
    pub(super) async fn commit_import(&mut self, job: ImportJob) {
        let ImportJob { histories, reply } = job;
        metrics::histogram!("intake_import_batch_size").record(histories.len() as f64);
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match self.try_import(&histories).await {
                Ok(outcomes) => break Ok(outcomes),
                Err(e) => {
                    for h in &histories {
                        self.cache.remove(&h.dossier_id);
                    }
                    match e {
                        AppendError::Conflict if attempt <= CONFLICT_RETRIES => {
                            metrics::counter!("intake_append_conflicts_total").increment(1);
                        }
                        AppendError::Conflict => break Err(IntakeError::Conflict),
                        AppendError::Other(e) => {
                            tracing::error!(error = ?e, "import append failed");
                            break Err(IntakeError::Unavailable(format!("{e:#}")));
                        }
                    }
                }
            }
        };
        drop(reply.send(result));
    }

    async fn try_import(
        &mut self,
        histories: &[History],
    ) -> Result<Vec<ImportOutcome>, AppendError> {
        // A failed desk batch's catalog changes never committed.
        self.catalog.rollback();
        let codes: Vec<&str> = histories
            .iter()
            .flat_map(|h| &h.steps)
            .filter_map(|s| match &s.command {
                Command::Receive {
                    procedure,
                    due_at: None,
                    ..
                } => Some(procedure.code.as_str()),
                _ => None,
            })
            .collect();
        self.catalog.refresh_unknown(&self.store, &codes).await?;
        let ids: Vec<&str> = histories
            .iter()
            .map(|h| h.request_id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let answered = self
            .load_states(&ids, histories.iter().map(|h| h.dossier_id.as_str()))
            .await?;

        let now = (self.clock)();
        let terms = self.catalog.terms();
        let mut working: HashMap<&str, Option<Dossier>> = HashMap::with_capacity(histories.len());
        let mut deadline_before: HashMap<&str, Option<Timestamp>> =
            HashMap::with_capacity(histories.len());
        let mut events: Vec<NewEvent> = Vec::with_capacity(steps_of(histories));
        // Per history: its events' range in `events`, or its outcome.
        let mut decided: Vec<Result<Kept, ImportOutcome>> = Vec::with_capacity(histories.len());
        for h in histories {
            if let Some(reply) = answered.get(&h.request_id) {
                decided.push(Err(if reply.answers(Some(of_named(&h.request_id))) {
                    ImportOutcome::AlreadyImported
                } else {
                    // A desk command took this id first (a client bug).
                    ImportOutcome::Rejected(format!(
                        "request id {} was first used for another command",
                        h.request_id
                    ))
                }));
                continue;
            }
            let cache = &self.cache;
            let state = working.entry(h.dossier_id.as_str()).or_insert_with(|| {
                let cached = cache.get(&h.dossier_id).cloned();
                deadline_before.insert(
                    h.dossier_id.as_str(),
                    cached.as_ref().and_then(Dossier::deadline),
                );
                cached
            });
            if let Some(d) = state.as_ref() {
                decided.push(Err(ImportOutcome::Rejected(format!(
                    "dossier {} already exists (version {}, {}); an import only adds new dossiers",
                    h.dossier_id, d.version, d.status
                ))));
                continue;
            }
            let start = events.len();
            let mut next: Option<Dossier> = None;
            let mut refused = None;
            for step in &h.steps {
                let payload = match domain::decide_with(
                    &h.dossier_id,
                    next.as_ref(),
                    &step.command,
                    step.at,
                    &terms,
                ) {
                    Ok(payload) => payload,
                    Err(refusal) => {
                        refused = Some(describe(step, &refusal));
                        break;
                    }
                };
                let (state, event) = super::record(
                    &h.dossier_id,
                    next.take(),
                    &step.command,
                    payload,
                    step.at,
                    now,
                    &h.actor,
                    &h.request_id,
                )?;
                next = Some(state);
                events.push(event);
            }
            match refused {
                Some(reason) => {
                    // All or nothing: forget this history's events.
                    events.truncate(start);
                    decided.push(Err(ImportOutcome::Rejected(reason)));
                }
                None if events.len() == start => {
                    decided.push(Err(ImportOutcome::Rejected("the row has no steps".into())));
                }
                None => {
                    let due = next.as_ref().and_then(|d| d.due_at);
                    *state = next;
                    decided.push(Ok((start, events.len(), due)));
                }
            }
        }

        let (deadlines, earliest_deadline) = deadline_changes(&deadline_before, &working);
        let reply_for = |end: usize, due: Option<Timestamp>, first: u64| {
            let last = &events[end - 1];
            CommandReply {
                dossier_id: last.dossier_id.clone(),
                version: last.version,
                event_id: last.event_id.clone(),
                position: first + (end - 1) as u64,
                due_at: due.map(bus::timestamp_to_proto),
            }
        };
        let mut first_position = 0;
        if !events.is_empty() {
            let replies: Vec<NewReply> = histories
                .iter()
                .zip(&decided)
                .filter_map(|(h, d)| d.as_ref().ok().map(|r| (h, r)))
                .map(|(h, &(_, end, due))| NewReply {
                    request_id: h.request_id.clone(),
                    event_index: end - 1,
                    reply: CommandReply {
                        position: 0,
                        ..reply_for(end, due, 0)
                    }
                    .encode_to_vec(),
                    // The id names the row's content (see `crate::import`).
                    fingerprint: Some(of_named(&h.request_id)),
                })
                .collect();
            first_position = self.store.append(&events, &replies, &deadlines).await?;
            self.committed(first_position, events, earliest_deadline);
        }
        // The job's dossiers leave the cache and imported ones never join
        // it: a history is mostly closed, the next command for one loads it
        // in the same round trip as any missing state, and a cache grown by
        // an import's hundreds of thousands of dossiers cost the writer its
        // rehashing and intake a good part of its resident peak
        // (BENCHMARKS.md).
        for id in working.keys() {
            self.cache.remove(*id);
        }
        Ok(decided
            .into_iter()
            .map(|d| match d {
                Ok((start, end, _)) => ImportOutcome::Imported {
                    events: (end - start) as u64,
                    last_position: first_position + (end - 1) as u64,
                },
                Err(outcome) => outcome,
            })
            .collect())
    }
}

/// A kept history: its events' range in the job's events, and the due date
/// it ends with.
type Kept = (usize, usize, Option<Timestamp>);

/// A refusal as a row's reason, naming the column of the step refused.
fn describe(step: &Step, refusal: &Refusal) -> String {
    match refusal {
        // The step's instant is its column's.
        Refusal::InvalidField { field, reason } if *field == "meta.occurred_at" => {
            format!("{}: {reason}", step.column)
        }
        // Named after the field, as the file's column is.
        Refusal::InvalidField { .. } => refusal.to_string(),
        other => format!("{}: {other}", step.column),
    }
}
