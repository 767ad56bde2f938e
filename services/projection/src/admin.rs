//! The `motcua.admin.v1.ParkedEvents` service: the parked events, paged, and
//! their replay. Listing reads the tables; a replay is handed to the
//! consumer task over a channel and runs there between two batches, so the
//! read models keep one writer (see `crate::parked`).

use proto::admin::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use std::sync::Arc;

use crate::{
    generations::Serving,
    parked::{Outcome, ReplayJob, ReplayRequest},
};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1_000;

#[derive(Clone, Debug)]
pub struct ParkedService {
    /// The serving generation, read for listings (a rebuild's swap
    /// repoints it; the consumer replays on the generation it writes).
    serving: Arc<Serving>,
    replays: mpsc::Sender<ReplayJob>,
    /// The province this deployment serves (`--province`), whose
    /// operators may list and replay parked events.
    served: Option<String>,
}

impl ParkedService {
    /// `replays` is the consumer's end of the replay channel.
    pub fn new(
        serving: Arc<Serving>,
        replays: mpsc::Sender<ReplayJob>,
        served: Option<String>,
    ) -> Self {
        Self {
            serving,
            replays,
            served,
        }
    }
}

fn unavailable(e: &anyhow::Error) -> Status {
    tracing::error!(error = %format!("{e:#}"), "parked events: the read models failed");
    Status::unavailable("the read models cannot be read now; try again")
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

#[tonic::async_trait]
impl pb::parked_events_server::ParkedEvents for ParkedService {
    async fn list_parked(
        &self,
        request: Request<pb::ListParkedRequest>,
    ) -> Result<Response<pb::ParkedPage>, Status> {
        crate::access::whole_log(
            server::identity_of(&request),
            self.served.as_deref(),
            "list parked events",
        )?;
        let request = request.into_inner();
        let size = match request.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let after = if request.page_token.is_empty() {
            0
        } else {
            request.page_token.parse::<u64>().map_err(|_| {
                Status::invalid_argument("page_token is not a token from a previous page")
            })?
        };
        let store = self.serving.store();
        let listed = store
            .list_parked(after, i64::from(size))
            .await
            .map_err(|e| unavailable(&e))?;
        let total = store.parked_count().await.map_err(|e| unavailable(&e))?;
        let held = store.held_count().await.map_err(|e| unavailable(&e))?;
        let next_page_token = match listed.last() {
            Some(last) if listed.len() as u32 == size => last.parked.stream_seq.to_string(),
            _ => String::new(),
        };
        let events = listed
            .into_iter()
            .map(|l| pb::ParkedEvent {
                stream_seq: l.parked.stream_seq,
                subject: l.parked.subject,
                position: l.parked.position,
                dossier_id: l.parked.dossier_id.unwrap_or_default(),
                version: l.parked.version,
                reason: l.parked.reason,
                parked_at: Some(timestamp(l.parked.parked_at)),
                payload: l.parked.payload,
                held_behind: l.held_behind,
            })
            .collect();
        Ok(Response::new(pb::ParkedPage {
            events,
            next_page_token,
            total,
            held,
        }))
    }

    async fn replay_parked(
        &self,
        request: Request<pb::ReplayParkedRequest>,
    ) -> Result<Response<pb::ReplayParkedReply>, Status> {
        crate::access::whole_log(
            server::identity_of(&request),
            self.served.as_deref(),
            "replay parked events",
        )?;
        let request = request.into_inner();
        let (reply, answer) = oneshot::channel();
        let job = ReplayJob {
            request: ReplayRequest {
                stream_seqs: request.stream_seqs,
                replacements: request.replacements.into_iter().collect(),
            },
            reply,
        };
        let stopped = || Status::unavailable("the consumer is not running; try again");
        self.replays.send(job).await.map_err(|_| stopped())?;
        // The consumer answers after the batch in hand (or when NATS is
        // down, at once: a replay needs only the database).
        let report = answer
            .await
            .map_err(|_| stopped())?
            .map_err(|e| unavailable(&e))?;
        let events = report
            .events
            .into_iter()
            .map(|e| pb::ReplayedEvent {
                stream_seq: e.stream_seq,
                position: e.position,
                dossier_id: e.dossier_id.unwrap_or_default(),
                version: e.version,
                outcome: match e.outcome {
                    Outcome::Applied => pb::ReplayOutcome::Applied,
                    Outcome::AlreadyApplied => pb::ReplayOutcome::AlreadyApplied,
                    Outcome::StillParked => pb::ReplayOutcome::StillParked,
                }
                .into(),
                reason: e.reason,
                released: e.released,
                replaced: e.replaced,
            })
            .collect();
        Ok(Response::new(pb::ReplayParkedReply {
            events,
            still_parked: report.still_parked,
        }))
    }
}
