//! One group commit: the batch's states and stored replies read (or
//! guessed, optimistically), every command decided in order against the
//! states the batch has reached so far, the accepted events appended in one
//! transaction, and each submission's outcome.

use std::collections::{HashMap, HashSet, hash_map::Entry};

use domain::{Command, Dossier, ProcedureCommand, Timestamp};
use identity::Action;
use prost::Message as _;
use proto::intake::v1::CommandReply;

use super::{Outcome, Submission, Writer, deadline_changes, record, reused, stored_for};
use crate::{
    catalog::Catalog,
    error::IntakeError,
    store::{AppendError, DeadlineChange, NewEvent, NewReply, StoredReply},
};

impl Writer {
    /// Decides every command of the batch and appends the accepted ones in
    /// one transaction. Returns each submission's outcome, in order.
    ///
    /// An `optimistic` attempt reads nothing the store's unique keys will
    /// check anyway: it takes every request id as new, and a dossier that
    /// a batch opens with Receive or SubmitOnline and the cache lacks as
    /// not yet in the store. When either guess is wrong the append hits a
    /// unique key, appends nothing, and the batch is decided again with
    /// both read (see [`Writer::commit_batch`]). A command refused on the
    /// way may be a retry its first answer now refuses: refusals alone are
    /// looked up. So a batch of new dossiers costs one round trip, not two.
    pub(super) async fn try_batch(
        &mut self,
        batch: &[Submission],
        optimistic: bool,
    ) -> Result<Vec<Result<CommandReply, IntakeError>>, AppendError> {
        // A failed earlier attempt's catalog changes never committed.
        self.catalog.rollback();
        self.catalog
            .refresh_for(
                &self.store,
                batch.iter().map(|s| (s.dossier_id.as_str(), &s.command)),
            )
            .await?;
        let answered = self.read_for_batch(batch, optimistic).await?;

        let now = (self.clock)();
        let mut decided = Decided::new(batch.len());
        self.decide_batch(batch, &answered, now, &mut decided)?;
        if optimistic {
            self.answer_refused_retries(batch, &mut decided.outcomes)
                .await?;
        }

        let Decided {
            working,
            deadline_before,
            events,
            due,
            outcomes,
        } = decided;
        let mut first_position = 0;
        let (deadline_changes, earliest_deadline) = deadline_changes(&deadline_before, &working);
        if !events.is_empty() {
            first_position = self
                .append_batch(batch, &outcomes, &events, &due, &deadline_changes)
                .await?;
        }
        self.keep_states(working);
        let results = results(outcomes, &events, &due, first_position);
        if !events.is_empty() {
            self.committed(first_position, events, earliest_deadline);
        }
        Ok(results)
    }

    /// Reads what deciding the batch needs: the replies already given to
    /// its request ids (client retries) and the states of its dossiers the
    /// cache lacks. An `optimistic` attempt reads no replies and takes a
    /// dossier whose first command in the batch opens it as new.
    async fn read_for_batch(
        &mut self,
        batch: &[Submission],
        optimistic: bool,
    ) -> Result<HashMap<String, StoredReply>, AppendError> {
        let ids: Vec<&str> = if optimistic {
            Vec::new()
        } else {
            batch
                .iter()
                .map(|s| s.request_id.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        // Dossiers whose first command in the batch opens them, taken as new.
        let mut opened: HashSet<&str> = HashSet::new();
        if optimistic {
            let mut seen: HashSet<&str> = HashSet::new();
            for s in batch {
                if seen.insert(s.dossier_id.as_str()) && s.command.opened_unit().is_some() {
                    opened.insert(s.dossier_id.as_str());
                }
            }
        }
        self.load_states(
            &ids,
            batch
                .iter()
                .map(|s| s.dossier_id.as_str())
                .filter(|id| !opened.contains(id)),
        )
        .await
    }

    /// Decides each submission in order into `decided`: a stored reply, the
    /// answer of an earlier submission under the same request id, or a
    /// catalog or dossier decision.
    fn decide_batch<'b>(
        &mut self,
        batch: &'b [Submission],
        answered: &HashMap<String, StoredReply>,
        now: Timestamp,
        decided: &mut Decided<'b>,
    ) -> anyhow::Result<()> {
        let mut first_of_request: HashMap<&str, usize> = HashMap::new();
        for (i, s) in batch.iter().enumerate() {
            if let Some(reply) = answered.get(&s.request_id) {
                decided.outcomes.push(stored_for(reply, s));
                continue;
            }
            match first_of_request.entry(s.request_id.as_str()) {
                Entry::Occupied(first) => {
                    // Within one batch, the first command under an id is
                    // the one its reply answers.
                    let first = *first.get();
                    decided
                        .outcomes
                        .push(match (batch[first].fingerprint, s.fingerprint) {
                            (Some(a), Some(b)) if a != b => Outcome::Refused(reused(s)),
                            _ => Outcome::SameAs(first),
                        });
                    continue;
                }
                Entry::Vacant(v) => {
                    v.insert(i);
                }
            }
            if let Command::Procedure(command) = &s.command {
                decided.procedure(&mut self.catalog, s, command, now);
                continue;
            }
            decided.dossier(&self.cache, &self.catalog, s, now)?;
        }
        Ok(())
    }

    /// A refused command may be a retry whose first answer changed the
    /// state that refuses it now: the stored answer wins, if it answered
    /// this command. (A retry decided again instead hits the replies'
    /// unique key, and so does an accepted command under a used id: the
    /// next attempt reads and refuses it.)
    async fn answer_refused_retries(
        &self,
        batch: &[Submission],
        outcomes: &mut [Outcome],
    ) -> Result<(), AppendError> {
        let refused: Vec<&str> = outcomes
            .iter()
            .zip(batch)
            .filter(|(o, _)| matches!(o, Outcome::Refused(_)))
            .map(|(_, s)| s.request_id.as_str())
            .collect();
        let stored = self.store.find_replies(&refused).await?;
        for (outcome, s) in outcomes.iter_mut().zip(batch) {
            if matches!(outcome, Outcome::Refused(_))
                && let Some(reply) = stored.get(&s.request_id)
            {
                *outcome = stored_for(reply, s);
            }
        }
        Ok(())
    }

    /// Appends the batch's events with the replies of the submissions that
    /// made them (positions left 0 in the encoded replies), and keeps the
    /// catalog's changes. Returns the first position taken.
    async fn append_batch(
        &mut self,
        batch: &[Submission],
        outcomes: &[Outcome],
        events: &[NewEvent],
        due: &[Option<Timestamp>],
        deadline_changes: &[DeadlineChange],
    ) -> Result<u64, AppendError> {
        let appended: Vec<(usize, &Submission)> = outcomes
            .iter()
            .zip(batch)
            .filter_map(|(o, s)| match o {
                Outcome::Appended(index) => Some((*index, s)),
                _ => None,
            })
            .collect();
        let replies: Vec<NewReply> = appended
            .iter()
            .map(|(index, s)| NewReply {
                request_id: s.request_id.clone(),
                event_index: *index,
                reply: CommandReply {
                    position: 0,
                    ..reply_for(events, due, *index, 0)
                }
                .encode_to_vec(),
                fingerprint: s.fingerprint,
            })
            .collect();
        let first_position = self
            .store
            .append(events, &replies, deadline_changes)
            .await?;
        self.catalog.commit();
        Ok(first_position)
    }

    /// Keeps the batch's dossier states in the cache (a dossier left
    /// without one leaves it).
    fn keep_states(&mut self, working: HashMap<&str, Option<Dossier>>) {
        for (id, state) in working {
            match state {
                Some(state) => {
                    self.cache.insert(id.to_owned(), state);
                }
                None => {
                    self.cache.remove(id);
                }
            }
        }
    }
}

/// A batch being decided: each submission's outcome so far, the events to
/// append (and the due date each leaves its dossier with), and each
/// touched dossier's state after the batch and deadline before it.
struct Decided<'b> {
    working: HashMap<&'b str, Option<Dossier>>,
    /// Each touched dossier's deadline before the batch, to index changes.
    deadline_before: HashMap<&'b str, Option<Timestamp>>,
    events: Vec<NewEvent>,
    due: Vec<Option<Timestamp>>,
    outcomes: Vec<Outcome>,
}

impl<'b> Decided<'b> {
    fn new(submissions: usize) -> Self {
        Self {
            working: HashMap::new(),
            deadline_before: HashMap::new(),
            events: Vec::new(),
            due: Vec::new(),
            outcomes: Vec::with_capacity(submissions),
        }
    }

    /// Decides a catalog command with the catalog (which it changes until
    /// the batch commits or rolls back).
    fn procedure(
        &mut self,
        catalog: &mut Catalog,
        s: &Submission,
        command: &ProcedureCommand,
        now: Timestamp,
    ) {
        let at = s.occurred_at.unwrap_or(now);
        if let (Some(caller), Some(province)) = (&s.caller, catalog.province_of(&s.dossier_id))
            && !caller.may(Action::Operate { province })
        {
            // The catalog is public: no need to hide that it exists.
            self.outcomes
                .push(Outcome::Refused(IntakeError::OutsideScope {
                    caller: Box::new(caller.clone()),
                    what: format!("change procedure {} of province {province}", s.dossier_id),
                }));
            return;
        }
        match catalog.decide(&s.dossier_id, command, at, now, &s.actor, &s.request_id) {
            Ok(event) => {
                self.events.push(crate::catalog::new_event(&event));
                self.due.push(None);
                self.outcomes.push(Outcome::Appended(self.events.len() - 1));
            }
            Err(error) => self.outcomes.push(Outcome::Refused(error)),
        }
    }

    /// Decides a dossier command against the dossier's state in this batch
    /// (taken from `cache` the first time the batch touches it).
    fn dossier(
        &mut self,
        cache: &HashMap<String, Dossier>,
        catalog: &Catalog,
        s: &'b Submission,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let deadline_before = &mut self.deadline_before;
        let state = self
            .working
            .entry(s.dossier_id.as_str())
            .or_insert_with(|| {
                let cached = cache.get(&s.dossier_id).cloned();
                deadline_before.insert(
                    s.dossier_id.as_str(),
                    cached.as_ref().and_then(Dossier::deadline),
                );
                cached
            });
        let mut at = s.occurred_at.unwrap_or(now);
        if let (Command::MarkLate, Some(d)) = (&s.command, state.as_ref()) {
            // Late at the end of the due date, unless the dossier moved
            // after that (a survey, say): then right after its last event.
            at = at.max(d.last_occurred_at);
        }
        let terms = catalog.terms();
        // A dossier outside the caller's office is decided as if it had
        // never been received, so the refusal is the unknown dossier's,
        // word for word. A receipt under its id is refused all the same:
        // the id is taken whoever asks, and that is all it is told (not
        // the dossier's status or office).
        let hidden = state
            .as_ref()
            .is_some_and(|d| !visible_to(s.caller.as_ref(), d));
        let opens = s.command.opened_unit().is_some();
        if hidden && opens {
            let refusal = domain::Refusal::InvalidTransition {
                dossier_id: s.dossier_id.clone(),
                action: s.command.action(),
                reason: "already exists".into(),
            };
            self.outcomes.push(Outcome::Refused(refusal.into()));
            return Ok(());
        }
        let seen = if hidden { None } else { state.as_ref() };
        match domain::decide_with(&s.dossier_id, seen, &s.command, at, &terms) {
            Ok(payload) => {
                let (next, event) = record(
                    &s.dossier_id,
                    state.take(),
                    &s.command,
                    payload,
                    at,
                    now,
                    &s.actor,
                    &s.request_id,
                )?;
                self.due.push(next.due_at);
                *state = Some(next);
                self.events.push(event);
                self.outcomes.push(Outcome::Appended(self.events.len() - 1));
            }
            Err(refusal) => self.outcomes.push(Outcome::Refused(refusal.into())),
        }
        Ok(())
    }
}

/// Whether `caller` may issue desk commands on dossier `d`, by the office
/// and province its receipt recorded. No caller: intake itself, or no
/// authentication.
fn visible_to(caller: Option<&identity::Identity>, d: &Dossier) -> bool {
    caller.is_none_or(|who| {
        who.may(Action::Desk {
            province: &d.province_code,
            office: &d.office_code,
        })
    })
}

/// The reply to the submission that made event `index`, the batch's
/// positions starting at `first`.
fn reply_for(
    events: &[NewEvent],
    due: &[Option<Timestamp>],
    index: usize,
    first: u64,
) -> CommandReply {
    CommandReply {
        dossier_id: events[index].dossier_id.clone(),
        version: events[index].version,
        event_id: events[index].event_id.clone(),
        position: first + index as u64,
        due_at: due[index].map(bus::timestamp_to_proto),
        // Not stored: the gRPC layer derives a receipt's from the id.
        lookup_code: String::new(),
    }
}

/// Each submission's answer, in order, once the batch's events hold
/// positions from `first_position`.
fn results(
    outcomes: Vec<Outcome>,
    events: &[NewEvent],
    due: &[Option<Timestamp>],
    first_position: u64,
) -> Vec<Result<CommandReply, IntakeError>> {
    let mut results: Vec<Result<CommandReply, IntakeError>> = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let result = match outcome {
            Outcome::Stored(stored) => CommandReply::decode(stored.reply.as_slice())
                .map(|reply| CommandReply {
                    position: stored.position,
                    ..reply
                })
                .map_err(|e| IntakeError::Unavailable(format!("decode a stored reply: {e}"))),
            Outcome::Appended(index) => Ok(reply_for(events, due, index, first_position)),
            Outcome::Refused(error) => Err(error),
            Outcome::SameAs(earlier) => results[earlier].clone(),
        };
        results.push(result);
    }
    results
}
