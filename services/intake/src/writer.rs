//! The one writer: every command goes through a single task that decides it
//! against the dossier's state and appends the resulting events in groups
//! (group commit), so positions follow commit order and one fsync serves
//! many commands.

use std::collections::{HashMap, HashSet};

use domain::{Command, Dossier, Event, Timestamp};
use proto::intake::v1::CommandReply;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    catalog::Catalog,
    error::IntakeError,
    store::{AppendError, DeadlineChange, EventStore, NewEvent, StoredReply},
};

mod batch;
mod import;
pub use import::{History, ImportOutcome, Step};
#[cfg(test)]
pub(crate) mod tests;

/// Dossier states kept in memory between batches; beyond this the cache is
/// emptied and states are reloaded from the store as needed.
const CACHE_LIMIT: usize = 200_000;
/// Longest a group commit waits for more commands to join it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// How often a batch is retried after losing a race to another instance.
const CONFLICT_RETRIES: usize = 3;
/// Longest an import job waits for room in the relay's feed. Handed over,
/// its events are published from memory; beyond the feed's limit the relay
/// reads them back from the store, which slowed imports (BENCHMARKS.md). A
/// relay that cannot publish holds each job back this long at most.
const IMPORT_PACE_MAX: std::time::Duration = std::time::Duration::from_millis(250);

/// Resolves when the paced import job may be committed: the feed has room
/// for its events, or its deadline has passed, or there is no feed.
async fn relay_room(
    feed: Option<&crate::relay::Feed>,
    paced: Option<&(import::ImportJob, tokio::time::Instant)>,
) {
    if let (Some(feed), Some((job, deadline))) = (feed, paced) {
        feed.room_for(job.events(), *deadline).await;
    }
}

/// One command on its way to the writer.
#[derive(Debug)]
pub struct Submission {
    pub request_id: String,
    /// See [`CommandRequest::fingerprint`].
    pub fingerprint: Option<u64>,
    pub actor: String,
    pub dossier_id: String,
    /// When it happened at the desk; `None` means now.
    pub occurred_at: Option<Timestamp>,
    pub command: Command,
    /// See [`CommandRequest::caller`].
    pub caller: Option<identity::Identity>,
    pub reply: oneshot::Sender<Result<CommandReply, IntakeError>>,
}

/// The clock the writer reads; tests and the deadline monitor inject one.
pub type Clock = std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub fn system_clock() -> Clock {
    offset_clock(0)
}

/// The system clock shifted by `offset` microseconds.
pub fn offset_clock(offset: i64) -> Clock {
    std::sync::Arc::new(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Timestamp::from_micros(now.saturating_add(offset))
    })
}

/// A command for the writer, with the request it came in.
#[derive(Clone, Debug)]
pub struct CommandRequest {
    pub request_id: String,
    /// The command's content (see [`crate::fingerprint`]), stored with its
    /// reply: a later command under the same request id must carry the
    /// same fingerprint, or it is refused (`IntakeError::RequestIdReused`).
    /// `None`: not checked, the stored reply answers whatever comes.
    pub fingerprint: Option<u64>,
    pub actor: String,
    pub dossier_id: String,
    /// When it happened at the desk; `None` means now.
    pub occurred_at: Option<Timestamp>,
    pub command: Command,
    /// Who asked, when authentication is on: the writer refuses a command
    /// on a dossier outside the caller's office as if the dossier were
    /// unknown, judged by the office the log records for it (not by a
    /// request's field). `None`: intake itself (the deadline monitor), or
    /// no authentication.
    pub caller: Option<identity::Identity>,
}

/// Handle to submit commands to the writer.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<Submission>,
    imports: mpsc::Sender<import::ImportJob>,
}

impl WriterHandle {
    /// Sends a command and waits until its event is durable (or refused).
    pub async fn submit(&self, request: CommandRequest) -> Result<CommandReply, IntakeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Submission {
                request_id: request.request_id,
                fingerprint: request.fingerprint,
                actor: request.actor,
                dossier_id: request.dossier_id,
                occurred_at: request.occurred_at,
                command: request.command,
                caller: request.caller,
                reply,
            })
            .await
            .map_err(|_| IntakeError::ShuttingDown)?;
        rx.await.map_err(|_| IntakeError::ShuttingDown)?
    }

    /// [`WriterHandle::submit`] without a fingerprint: the request id alone
    /// identifies the command.
    #[cfg(test)]
    pub async fn execute(
        &self,
        request_id: String,
        actor: String,
        dossier_id: String,
        occurred_at: Option<Timestamp>,
        command: Command,
    ) -> Result<CommandReply, IntakeError> {
        self.submit(CommandRequest {
            request_id,
            fingerprint: None,
            actor,
            dossier_id,
            occurred_at,
            command,
            caller: None,
        })
        .await
    }
}

pub struct Writer {
    store: EventStore,
    rx: mpsc::Receiver<Submission>,
    imports: mpsc::Receiver<import::ImportJob>,
    cache: HashMap<String, Dossier>,
    head: watch::Sender<u64>,
    clock: Clock,
    max_batch: usize,
    /// The earliest deadline the last batch set, for the deadline monitor.
    new_deadlines: watch::Sender<i64>,
    /// The procedure catalog and the working-time calendar.
    catalog: Catalog,
    /// Committed events handed to the relay, which then need not read them
    /// back from the store (see [`crate::relay`]).
    relay_feed: Option<crate::relay::Feed>,
}

impl Writer {
    /// A writer and its handle. `head` is told each committed position.
    pub fn new(
        store: EventStore,
        head: watch::Sender<u64>,
        clock: Clock,
        max_batch: usize,
    ) -> (Self, WriterHandle) {
        let (tx, rx) = mpsc::channel(max_batch * 4);
        let (imports_tx, imports) = mpsc::channel(2);
        (
            Self {
                store,
                rx,
                imports,
                cache: HashMap::new(),
                head,
                clock,
                max_batch,
                new_deadlines: watch::Sender::new(i64::MAX),
                catalog: Catalog::default(),
                relay_feed: None,
            },
            WriterHandle {
                tx,
                imports: imports_tx,
            },
        )
    }

    /// Decides with this catalog and calendar (default: empty, statutory).
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// Hands every committed event to the relay through `feed`. A feed
    /// that is full is skipped: the relay then reads those events from the
    /// store. A desk batch never waits for room; an import job waits up to
    /// [`IMPORT_PACE_MAX`] (see [`crate::relay::Feed::room_for`]).
    pub fn feeding(mut self, feed: crate::relay::Feed) -> Self {
        self.relay_feed = Some(feed);
        self
    }

    /// Tells the earliest deadline each committed batch set, so the deadline
    /// monitor can wake earlier than it planned.
    pub fn deadline_updates(&self) -> watch::Receiver<i64> {
        self.new_deadlines.subscribe()
    }

    /// Runs until every handle is dropped and the queue is drained.
    ///
    /// Group commit adapts to the load: after a batch of n commands the
    /// writer waits (at most [`LINGER`]) until about n/2 have queued again,
    /// because closed-loop clients answered together come back together.
    /// A lone client never waits.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut last_len = 0;
        let mut imports_open = true;
        // An import job taken from the queue, waiting until its deadline
        // for the relay's feed to have room (see `Feed::room_for`).
        let mut paced: Option<(import::ImportJob, tokio::time::Instant)> = None;
        loop {
            // Desk commands first: an import job waits for the next gap.
            let received = tokio::select! {
                biased;
                n = self.rx.recv_many(&mut batch, self.max_batch) => n,
                () = relay_room(self.relay_feed.as_ref(), paced.as_ref()), if paced.is_some() => {
                    if let Some((job, _)) = paced.take() {
                        self.commit_import(job).await;
                    }
                    continue;
                }
                job = self.imports.recv(), if imports_open && paced.is_none() => {
                    match job {
                        Some(job) => {
                            paced = Some((job, tokio::time::Instant::now() + IMPORT_PACE_MAX));
                        }
                        None => imports_open = false,
                    }
                    continue;
                }
            };
            if received == 0 {
                if let Some((job, _)) = paced.take() {
                    self.commit_import(job).await;
                }
                break;
            }
            let target = (last_len / 2).min(self.max_batch);
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < target {
                let room = self.max_batch - batch.len();
                match tokio::time::timeout_at(deadline, self.rx.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            last_len = batch.len();
            metrics::histogram!("intake_batch_size").record(batch.len() as f64);
            self.commit_batch(std::mem::take(&mut batch)).await;
        }
        tracing::debug!("writer drained");
    }

    async fn commit_batch(&mut self, batch: Vec<Submission>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_batch(&batch, attempt == 1).await {
                Ok(outcomes) => {
                    for (submission, outcome) in batch.into_iter().zip(outcomes) {
                        // The caller may have gone away; the event stays.
                        drop(submission.reply.send(outcome));
                    }
                    return;
                }
                Err(AppendError::Conflict) if attempt <= CONFLICT_RETRIES => {
                    // Another instance appended first, a request id was
                    // answered before, or a dossier assumed new exists:
                    // forget what we knew of these dossiers and decide
                    // again from the store.
                    for s in &batch {
                        self.cache.remove(&s.dossier_id);
                    }
                    metrics::counter!("intake_append_conflicts_total").increment(1);
                }
                Err(e) => {
                    for s in &batch {
                        self.cache.remove(&s.dossier_id);
                    }
                    let error = match e {
                        AppendError::Conflict => IntakeError::Conflict,
                        AppendError::Other(e) => {
                            tracing::error!(error = ?e, "append failed");
                            IntakeError::from_append(&e)
                        }
                    };
                    for s in batch {
                        drop(s.reply.send(Err(error.clone())));
                    }
                    return;
                }
            }
        }
    }
}

impl Writer {
    /// Replies already stored for `request_ids`, read beside the states of
    /// the `dossiers` the cache lacks (two independent queries, one round
    /// trip of waiting), which are then folded into the cache.
    async fn load_states<'a>(
        &mut self,
        request_ids: &[&str],
        dossiers: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, StoredReply>, AppendError> {
        let missing: Vec<&str> = dossiers
            .filter(|id| !self.cache.contains_key(*id) && !crate::catalog::is_procedure_stream(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let (answered, loaded) = tokio::join!(self.store.find_replies(request_ids), async {
            if missing.is_empty() {
                Ok(Vec::new())
            } else {
                self.store.load_dossiers(&missing).await
            }
        });
        let answered = answered?;
        let loaded = loaded?;
        if !missing.is_empty() {
            if self.cache.len() + missing.len() > CACHE_LIMIT {
                self.cache.clear();
            }
            for payload in loaded {
                let event = bus::decode_event(&payload)
                    .map_err(|e| anyhow::anyhow!("decode a stored event: {e}"))?;
                let state = self.cache.remove(&event.dossier_id);
                let state = Dossier::apply(state, &event).map_err(|e| anyhow::anyhow!(e))?;
                self.cache.insert(event.dossier_id.clone(), state);
            }
        }
        Ok(answered)
    }

    /// After a commit of `events` from `first_position`: hands them to the
    /// relay, tells the head to it and the deadline monitor, and counts.
    fn committed(&self, first_position: u64, events: Vec<NewEvent>, earliest_deadline: i64) {
        let count = events.len();
        let last = first_position + count as u64 - 1;
        if let Some(feed) = &self.relay_feed {
            feed.offer(first_position, events);
        }
        self.head.send_replace(last);
        metrics::counter!("intake_events_appended_total").increment(count as u64);
        metrics::gauge!("intake_log_head").set(last as f64);
        if earliest_deadline != i64::MAX {
            self.new_deadlines.send_replace(earliest_deadline);
        }
    }
}

/// What became of one submission of a batch: a stored reply, an index into
/// the batch's events, a refusal, or the index of an earlier submission
/// with the same request id.
enum Outcome {
    Stored(StoredReply),
    Appended(usize),
    Refused(IntakeError),
    SameAs(usize),
}

/// What a command under an answered request id gets: the stored reply when
/// it answered this command, else a refusal.
fn stored_for(reply: &StoredReply, s: &Submission) -> Outcome {
    if reply.answers(s.fingerprint) {
        Outcome::Stored(reply.clone())
    } else {
        Outcome::Refused(reused(s))
    }
}

fn reused(s: &Submission) -> IntakeError {
    IntakeError::RequestIdReused {
        request_id: s.request_id.clone(),
    }
}

/// How the deadline index changes from each touched dossier's deadline
/// before (`before`) to its state after (`working`), and the earliest
/// deadline set (`i64::MAX`: none).
fn deadline_changes(
    before: &HashMap<&str, Option<Timestamp>>,
    working: &HashMap<&str, Option<Dossier>>,
) -> (Vec<DeadlineChange>, i64) {
    let mut changes = Vec::new();
    let mut earliest = i64::MAX;
    for (id, before) in before {
        let state = working.get(id).and_then(Option::as_ref);
        let after = state.and_then(Dossier::deadline);
        let due_at = state.and_then(|d| d.due_at);
        match (before, after, due_at) {
            (b, Some(a), Some(due_at)) if *b != Some(a) => {
                earliest = earliest.min(a.micros());
                changes.push(DeadlineChange::Set {
                    dossier_id: (*id).to_owned(),
                    due_at: due_at.micros(),
                    deadline_at: a.micros(),
                });
            }
            (Some(_), None, _) => changes.push(DeadlineChange::Clear {
                dossier_id: (*id).to_owned(),
            }),
            _ => {}
        }
    }
    (changes, earliest)
}

/// Records a decided payload: the event's envelope (office and province
/// from the dossier, or from the command that creates it), the dossier's
/// state after it, and the event as stored.
#[allow(clippy::too_many_arguments)] // reason: the envelope's fields, each from a different source
pub(crate) fn record(
    dossier_id: &str,
    state: Option<Dossier>,
    command: &Command,
    payload: domain::Payload,
    at: Timestamp,
    now: Timestamp,
    actor: &str,
    request_id: &str,
) -> anyhow::Result<(Dossier, NewEvent)> {
    let (office_code, province_code) = match (state.as_ref(), command.opened_unit()) {
        (Some(d), _) => (d.office_code.clone(), d.province_code.clone()),
        (None, Some((office, province))) => (office.to_owned(), province.to_owned()),
        (None, None) => (String::new(), String::new()),
    };
    let event = Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        dossier_id: dossier_id.to_owned(),
        office_code,
        province_code,
        version: state.as_ref().map_or(1, |d| d.version + 1),
        occurred_at: at,
        recorded_at: now,
        actor: actor.to_owned(),
        request_id: request_id.to_owned(),
        payload,
    };
    let next =
        Dossier::apply(state, &event).map_err(|e| anyhow::anyhow!("apply a decided event: {e}"))?;
    let stored = NewEvent {
        kind: event.payload.kind().as_str(),
        payload: bus::encode_event(&event),
        event_id: event.event_id,
        dossier_id: event.dossier_id,
        office_code: event.office_code,
        province_code: event.province_code,
        version: event.version,
        recorded_at: now.micros(),
    };
    Ok((next, stored))
}
