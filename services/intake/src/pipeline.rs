//! The work behind intake's gRPC handlers: the writer (group commits), the
//! deadline monitor (Late commands when a due date passes) and the relay
//! (committed events to JetStream), started together and stopped in the
//! order that loses nothing.

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog, monitor, relay,
    store::EventStore,
    writer::{Clock, Writer, WriterHandle},
};

/// The health service name under which intake reports its relay: SERVING
/// while it reaches the stream, NOT_SERVING while it does not (commands are
/// still taken; their events wait in the store).
pub const RELAY_HEALTH: &str = "motcua.intake.v1.Relay";

/// What the gRPC handlers talk to.
pub(crate) struct Handles {
    pub writer: WriterHandle,
    pub relay: relay::RelayHandle,
    pub relay_state: watch::Receiver<relay::RelayState>,
}

/// The running tasks, to be drained at shutdown.
pub(crate) struct Pipeline {
    writer: JoinHandle<()>,
    monitor: JoinHandle<()>,
    monitor_stop: CancellationToken,
    relay: JoinHandle<()>,
    relay_stop: CancellationToken,
}

impl Pipeline {
    /// Starts the writer at the store's head, the monitor and the relay.
    pub async fn start(
        store: &EventStore,
        nats: &async_nats::Client,
        settings: bus::StreamSettings,
        clock: Clock,
        calendar: Arc<calendar::Calendar>,
        max_batch: usize,
    ) -> anyhow::Result<(Self, Handles)> {
        let (head_tx, head_rx) = watch::channel(store.head().await?);
        let (writer, handle) = Writer::new(store.clone(), head_tx, clock.clone(), max_batch);
        let (feed_tx, feed) = relay::feed(relay::FEED_LIMIT);
        let writer = writer
            .with_catalog(catalog::Catalog::load(store, calendar).await?)
            .feeding(feed_tx);
        let new_deadlines = writer.deadline_updates();
        let writer = tokio::spawn(writer.run());

        let monitor_stop = CancellationToken::new();
        let monitor = tokio::spawn(
            monitor::DeadlineMonitor {
                store: store.clone(),
                writer: handle.clone(),
                clock,
                new_deadlines,
            }
            .run(monitor_stop.clone()),
        );

        // An acknowledgement's wait starts when the relay awaits it, in
        // order, so a batch's last one does not wait for the whole batch:
        // a short timeout gives up soon on one that will never come (its
        // server died, or the stream's leader did), and the relay resumes
        // from what was acknowledged.
        let js = async_nats::jetstream::ContextBuilder::new()
            .max_ack_inflight(8_192)
            .timeout(std::time::Duration::from_secs(2))
            .build(nats.clone());
        let relay_stop = CancellationToken::new();
        let (relay_handle, republish) = relay::RelayHandle::new();
        let (state, relay_state) = relay::RelayState::channel();
        let relay = tokio::spawn(
            relay::Relay {
                store: store.clone(),
                js,
                settings,
                head: head_rx,
                acked: None,
                republish,
                feed,
                state,
            }
            .run(relay_stop.clone()),
        );
        let pipeline = Self {
            writer,
            monitor,
            monitor_stop,
            relay,
            relay_stop,
        };
        let handles = Handles {
            writer: handle,
            relay: relay_handle,
            relay_state,
        };
        Ok((pipeline, handles))
    }

    /// Once the server is down and its handles dropped: the monitor stops
    /// (its Late commands in flight finish, or are sent again at next start
    /// under the same request ids), the writer drains and exits, then the
    /// relay publishes the rest and stops; all within `timeout`.
    pub async fn drain(self, timeout: Duration) {
        self.monitor_stop.cancel();
        let work = async {
            if let Err(e) = self.monitor.await {
                tracing::error!(error = %e, "deadline monitor failed");
            }
            if let Err(e) = self.writer.await {
                tracing::error!(error = %e, "writer task failed");
            }
            self.relay_stop.cancel();
            if let Err(e) = self.relay.await {
                tracing::error!(error = %e, "relay task failed");
            }
        };
        server::drain(
            timeout,
            "unpublished events will be relayed at next start",
            work,
        )
        .await;
    }
}

/// Reports the relay's state as the health of [`RELAY_HEALTH`] until the
/// relay is gone.
pub(crate) async fn report_relay_health(
    health: tonic_health::server::HealthReporter,
    mut state: watch::Receiver<relay::RelayState>,
) {
    loop {
        let current = state.borrow_and_update().clone();
        let status = match &current {
            relay::RelayState::Publishing => tonic_health::ServingStatus::Serving,
            relay::RelayState::Starting
            | relay::RelayState::Unreachable(_)
            | relay::RelayState::Refused(_) => tonic_health::ServingStatus::NotServing,
        };
        health.set_service_status(RELAY_HEALTH, status).await;
        if state.changed().await.is_err() {
            return;
        }
    }
}
