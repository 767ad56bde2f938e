//! Motcua intake: the one-stop desk's side. It takes commands over gRPC
//! (`motcua.intake.v1.Intake`), decides each against the dossier's state with
//! the pure domain crate, appends the resulting events to its event store in
//! group commits, and relays committed events to NATS JetStream in position
//! order.
//!
//! Intake must not know about read models or reports: what it owes the rest
//! of the system is the log, durable before any reply and published in order.
//!
//! [`Application::build`] connects and binds; [`Application::run_until_stopped`]
//! serves until a shutdown token is cancelled, then drains.

pub mod catalog;
pub mod config;
pub mod error;
pub mod fingerprint;
pub mod grpc;
pub mod import;
pub mod log;
pub mod monitor;
pub mod relay;
pub mod store;
pub(crate) mod validate;
pub mod writer;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use proto::intake::v1::{intake_server::IntakeServer, log_server::LogServer};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use config::Config;
use store::EventStore;
use writer::{Clock, Writer};

/// How long start-up waits for NATS before serving without it.
const NATS_START_WAIT: Duration = Duration::from_secs(2);

/// The health service name under which intake reports its relay: SERVING
/// while it reaches the stream, NOT_SERVING while it does not (commands are
/// still taken; their events wait in the store).
pub const RELAY_HEALTH: &str = "motcua.intake.v1.Relay";

/// Whether `nats` is connected within `wait`.
async fn nats_answers(nats: &async_nats::Client, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while nats.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Reports the relay's state as the health of [`RELAY_HEALTH`] until the
/// relay is gone.
async fn report_relay_health(
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

/// A built intake: connected to its store and NATS, its port bound.
pub struct Application {
    config: Config,
    listener: TcpListener,
    store: EventStore,
    nats: async_nats::Client,
    clock: Clock,
    calendar: std::sync::Arc<calendar::Calendar>,
}

impl Application {
    /// Opens the store, connects to NATS and binds the gRPC port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let clock = writer::offset_clock(config.clock_offset);
        Self::build_with_clock(config, clock).await
    }

    /// As [`Self::build`], reading time from `clock`.
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let calendar = std::sync::Arc::new(catalog::build_calendar(
            &config.office_hours,
            config.holidays.as_deref(),
        )?);
        let store = EventStore::open(&config.database_url).await?;
        // The store is the authority and the relay an outbox: intake serves
        // the desk while NATS is away, so it does not wait for NATS long.
        let nats = telemetry::nats_client(&config.nats_url, "motcua-intake", None).await?;
        if !nats_answers(&nats, NATS_START_WAIT).await {
            tracing::warn!(nats = %config.nats_url, "NATS does not answer yet; intake takes commands and its relay publishes them once NATS answers");
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("bind the gRPC port {}", config.listen))?;
        Ok(Self {
            config,
            listener,
            store,
            nats,
            clock,
            calendar,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Serves until `shutdown` is cancelled; then stops taking commands,
    /// commits what was taken, publishes what was committed, all within
    /// the configured shutdown timeout.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            config,
            listener,
            store,
            nats,
            clock,
            calendar,
        } = self;
        let head = store.head().await?;
        let (head_tx, head_rx) = watch::channel(head);
        let (writer, handle) = Writer::new(
            store.clone(),
            head_tx,
            clock.clone(),
            config.max_batch as usize,
        );
        let (feed_tx, feed) = relay::feed(relay::FEED_LIMIT);
        let writer = writer
            .with_catalog(catalog::Catalog::load(&store, calendar).await?)
            .feeding(feed_tx);
        let new_deadlines = writer.deadline_updates();
        let writer = tokio::spawn(writer.run());
        let monitor_stop = CancellationToken::new();
        let monitor = tokio::spawn(
            monitor::DeadlineMonitor {
                store: store.clone(),
                writer: handle.clone(),
                clock: clock.clone(),
                new_deadlines,
            }
            .run(monitor_stop.clone()),
        );

        let js = async_nats::jetstream::ContextBuilder::new()
            .max_ack_inflight(8_192)
            .build(nats.clone());
        let relay_stop = CancellationToken::new();
        let (relay_handle, republish) = relay::RelayHandle::new();
        let (relay_state, relay_state_rx) = relay::RelayState::channel();
        let relay = tokio::spawn(
            relay::Relay {
                store: store.clone(),
                js,
                settings: config.stream_settings(),
                head: head_rx,
                acked: None,
                republish,
                feed,
                state: relay_state,
            }
            .run(relay_stop.clone()),
        );

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<IntakeServer<grpc::IntakeService>>()
            .await;
        health.set_serving::<LogServer<log::LogService>>().await;
        tokio::spawn(report_relay_health(health.clone(), relay_state_rx));
        let served_services = [
            <IntakeServer<grpc::IntakeService> as NamedService>::NAME,
            <LogServer<log::LogService> as NamedService>::NAME,
        ];
        let reflection = telemetry::reflection_v1(proto::FILE_DESCRIPTOR_SET, &served_services)?;
        let reflection_alpha =
            telemetry::reflection_v1alpha(proto::FILE_DESCRIPTOR_SET, &served_services)?;
        let service = grpc::IntakeService::new(handle, clock, relay_handle);
        let addr = listener.local_addr().context("read the bound address")?;
        tracing::info!(%addr, database = %sqlkit::redact(&config.database_url), nats = %config.nats_url, stream = %config.stream, "intake serving");

        let server_shutdown = shutdown.clone();
        let served = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(IntakeServer::new(service))
            .add_service(LogServer::new(log::LogService::new(store.clone())))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move { server_shutdown.cancelled().await },
            );

        let result = served.await.context("serve gRPC");
        // The server is down and its handles dropped; the monitor stops (its
        // Late commands in flight finish or are sent again at next start by
        // their request ids): the writer drains and exits, then the relay
        // publishes the rest and stops.
        monitor_stop.cancel();
        let drain = async {
            if let Err(e) = monitor.await {
                tracing::error!(error = %e, "deadline monitor failed");
            }
            if let Err(e) = writer.await {
                tracing::error!(error = %e, "writer task failed");
            }
            relay_stop.cancel();
            if let Err(e) = relay.await {
                tracing::error!(error = %e, "relay task failed");
            }
        };
        if tokio::time::timeout(config.shutdown_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?config.shutdown_timeout, "shutdown timed out; unpublished events will be relayed at next start");
        }
        // Bounded: with NATS away a flush would wait for it.
        match tokio::time::timeout(Duration::from_secs(1), nats.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "NATS flush at shutdown"),
            Err(_) => tracing::debug!("NATS flush at shutdown timed out"),
        }
        store.close().await;
        tracing::info!("intake stopped");
        result
    }
}
