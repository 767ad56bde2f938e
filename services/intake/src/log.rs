//! The `motcua.intake.v1.Log` service: the stored events after a position,
//! the very bytes the relay publishes. Read-only; it goes to the store, not
//! through the writer, and sees only committed events.

use proto::intake::v1 as pb;
use tonic::{Request, Response, Status};

use crate::store::EventStore;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1_000;

#[derive(Clone)]
pub struct LogService {
    store: EventStore,
    /// The province this deployment serves (`--province`), whose
    /// operators may read the whole log.
    served: Option<String>,
}

impl LogService {
    pub fn new(store: EventStore, served: Option<String>) -> Self {
        Self { store, served }
    }
}

#[tonic::async_trait]
impl pb::log_server::Log for LogService {
    async fn read_events(
        &self,
        request: Request<pb::ReadEventsRequest>,
    ) -> Result<Response<pb::ReadEventsReply>, Status> {
        crate::access::whole_log(
            server::identity_of(&request),
            self.served.as_deref(),
            "read the whole log",
        )?;
        let request = request.into_inner();
        if request.after_position > i64::MAX as u64 {
            return Err(Status::invalid_argument("after_position is out of range"));
        }
        let limit = match request.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let failed = |e: anyhow::Error| {
            tracing::error!(error = %format!("{e:#}"), "reading the log failed");
            Status::unavailable("the event store cannot be read now; try again")
        };
        // The head first: every event returned is at or before it.
        let head = self.store.head().await.map_err(failed)?;
        let events = self
            .store
            .read_after(request.after_position, limit)
            .await
            .map_err(failed)?;
        Ok(Response::new(pb::ReadEventsReply {
            head: events.last().map_or(head, |e| e.position.max(head)),
            events: events
                .into_iter()
                .map(|e| pb::LoggedEvent {
                    position: e.position,
                    payload: e.payload,
                })
                .collect(),
        }))
    }
}
