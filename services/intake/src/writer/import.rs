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

use domain::{Command, Dossier, Refusal, Terms, Timestamp};
use prost::Message as _;
use proto::intake::v1::CommandReply;
use tokio::sync::oneshot;

use super::{CONFLICT_RETRIES, Writer, WriterHandle, deadline_changes};
use crate::{
    error::IntakeError,
    fingerprint::of_named,
    store::{AppendError, NewEvent, NewReply, StoredReply},
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
                            break Err(IntakeError::from_append(&e));
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
        self.catalog
            .refresh_unknown(&self.store, &codes_from_catalog(histories))
            .await?;
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
        let mut job = DecidedJob::new(histories);
        for h in histories {
            let decided = job.decide(h, &answered, &self.cache, &terms, now)?;
            job.decided.push(decided);
        }
        let DecidedJob {
            working,
            deadline_before,
            events,
            decided,
        } = job;

        let (deadlines, earliest_deadline) = deadline_changes(&deadline_before, &working);
        let mut first_position = 0;
        if !events.is_empty() {
            let replies = replies(histories, &decided, &events);
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
        Ok(outcomes(decided, first_position))
    }
}

/// The procedure codes the job's receipts without a due date take it from.
fn codes_from_catalog(histories: &[History]) -> Vec<&str> {
    histories
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
        .collect()
}

/// A job being decided: the events of the histories kept so far, each
/// history's range of them or its outcome, and each dossier's state after
/// the job and deadline before it.
struct DecidedJob<'h> {
    working: HashMap<&'h str, Option<Dossier>>,
    deadline_before: HashMap<&'h str, Option<Timestamp>>,
    events: Vec<NewEvent>,
    /// Per history: its events' range in `events`, or its outcome.
    decided: Vec<Result<Kept, ImportOutcome>>,
}

impl<'h> DecidedJob<'h> {
    fn new(histories: &[History]) -> Self {
        Self {
            working: HashMap::with_capacity(histories.len()),
            deadline_before: HashMap::with_capacity(histories.len()),
            events: Vec::with_capacity(steps_of(histories)),
            decided: Vec::with_capacity(histories.len()),
        }
    }

    /// Decides one history: an answered request id is the history's
    /// outcome; a dossier that exists (in the cache, the store or earlier
    /// in the job) refuses it; else its steps, kept whole or not at all.
    fn decide(
        &mut self,
        h: &'h History,
        answered: &HashMap<String, StoredReply>,
        cache: &HashMap<String, Dossier>,
        terms: &Terms<'_>,
        now: Timestamp,
    ) -> anyhow::Result<Result<Kept, ImportOutcome>> {
        if let Some(reply) = answered.get(&h.request_id) {
            return Ok(Err(if reply.answers(Some(of_named(&h.request_id))) {
                ImportOutcome::AlreadyImported
            } else {
                // A desk command took this id first (a client bug).
                ImportOutcome::Rejected(format!(
                    "request id {} was first used for another command",
                    h.request_id
                ))
            }));
        }
        let deadline_before = &mut self.deadline_before;
        let state = self
            .working
            .entry(h.dossier_id.as_str())
            .or_insert_with(|| {
                let cached = cache.get(&h.dossier_id).cloned();
                deadline_before.insert(
                    h.dossier_id.as_str(),
                    cached.as_ref().and_then(Dossier::deadline),
                );
                cached
            });
        if let Some(d) = state.as_ref() {
            return Ok(Err(ImportOutcome::Rejected(format!(
                "dossier {} already exists (version {}, {}); an import only adds new dossiers",
                h.dossier_id, d.version, d.status
            ))));
        }
        let start = self.events.len();
        Ok(match decide_steps(h, terms, now, &mut self.events)? {
            Err(reason) => {
                // All or nothing: forget this history's events.
                self.events.truncate(start);
                Err(ImportOutcome::Rejected(reason))
            }
            Ok(_) if self.events.len() == start => {
                Err(ImportOutcome::Rejected("the row has no steps".into()))
            }
            Ok(next) => {
                let due = next.as_ref().and_then(|d| d.due_at);
                *state = next;
                Ok((start, self.events.len(), due))
            }
        })
    }
}

/// Decides `h`'s steps in order from no state, pushing each step's event
/// onto `events`. Returns the dossier's state after the last step, or the
/// first refused step's reason.
fn decide_steps(
    h: &History,
    terms: &Terms<'_>,
    now: Timestamp,
    events: &mut Vec<NewEvent>,
) -> anyhow::Result<Result<Option<Dossier>, String>> {
    let mut next: Option<Dossier> = None;
    for step in &h.steps {
        let payload = match domain::decide_with(
            &h.dossier_id,
            next.as_ref(),
            &step.command,
            step.at,
            terms,
        ) {
            Ok(payload) => payload,
            Err(refusal) => return Ok(Err(describe(step, &refusal))),
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
    Ok(Ok(next))
}

/// The reply to a kept history: its last event's, the job's positions
/// starting at `first`.
fn reply_for(events: &[NewEvent], end: usize, due: Option<Timestamp>, first: u64) -> CommandReply {
    let last = &events[end - 1];
    CommandReply {
        dossier_id: last.dossier_id.clone(),
        version: last.version,
        event_id: last.event_id.clone(),
        position: first + (end - 1) as u64,
        due_at: due.map(bus::timestamp_to_proto),
        // Not stored: the gRPC layer derives a receipt's from the id.
        lookup_code: String::new(),
    }
}

/// One stored reply per kept history (positions left 0 in the encoded
/// replies), beside its last event.
fn replies(
    histories: &[History],
    decided: &[Result<Kept, ImportOutcome>],
    events: &[NewEvent],
) -> Vec<NewReply> {
    histories
        .iter()
        .zip(decided)
        .filter_map(|(h, d)| d.as_ref().ok().map(|r| (h, r)))
        .map(|(h, &(_, end, due))| NewReply {
            request_id: h.request_id.clone(),
            event_index: end - 1,
            reply: CommandReply {
                position: 0,
                ..reply_for(events, end, due, 0)
            }
            .encode_to_vec(),
            // The id names the row's content (see `crate::import`).
            fingerprint: Some(of_named(&h.request_id)),
        })
        .collect()
}

/// Each history's outcome once the job's events hold positions from
/// `first_position`.
fn outcomes(decided: Vec<Result<Kept, ImportOutcome>>, first_position: u64) -> Vec<ImportOutcome> {
    decided
        .into_iter()
        .map(|d| match d {
            Ok((start, end, _)) => ImportOutcome::Imported {
                events: (end - start) as u64,
                last_position: first_position + (end - 1) as u64,
            },
            Err(outcome) => outcome,
        })
        .collect()
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
