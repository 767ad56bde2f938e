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
//! serves until a shutdown token is cancelled, then drains. The modules are
//! the crate's own; the binary and the test harness get [`Application`],
//! [`Config`], [`RELAY_HEALTH`], the clock injection ([`Clock`],
//! [`offset_clock`], [`system_clock`]) and the [`EventStore`] that
//! [`Application::store`] returns.

pub(crate) mod access;
pub(crate) mod catalog;
pub(crate) mod config;
pub(crate) mod dossiers;
pub(crate) mod error;
pub(crate) mod fingerprint;
pub(crate) mod grpc;
pub(crate) mod import;
pub(crate) mod log;
pub(crate) mod lookup;
pub(crate) mod monitor;
pub(crate) mod pipeline;
pub(crate) mod relay;
pub(crate) mod store;
pub(crate) mod validate;
pub(crate) mod writer;

/// Intake's request checks for the fuzz targets (`fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use proto::intake::v1::{
    dossier_service_server::DossierServiceServer, intake_server::IntakeServer,
    log_server::LogServer,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use pipeline::Pipeline;
pub use pipeline::RELAY_HEALTH;
pub use store::EventStore;
pub use writer::{Clock, offset_clock, system_clock};

/// The one RPC served without credentials.
const LOOK_UP_DOSSIER: &str = "/motcua.intake.v1.DossierService/LookUpDossier";

/// How long start-up waits for NATS before serving without it.
const NATS_START_WAIT: Duration = Duration::from_secs(2);

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
    /// As `build` (of [`server::Service`]), reading time from `clock`.
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        config.shared.check_exposure(config.listen)?;
        let calendar = std::sync::Arc::new(catalog::build_calendar(
            &config.office_hours,
            config.holidays.as_deref(),
        )?);
        let store = EventStore::open(&config.database_url).await?;
        // The store is the authority and the relay an outbox: intake serves
        // the desk while NATS is away, so it does not wait for NATS long.
        let nats_url = &config.shared.nats_url;
        let nats = telemetry::nats_client(&config.shared.nats_options("motcua-intake")).await?;
        if !nats_answers(&nats, NATS_START_WAIT).await {
            tracing::warn!(nats = %nats_url, "NATS does not answer yet; intake takes commands and its relay publishes them once NATS answers");
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
}

impl server::Service for Application {
    const NAME: &'static str = "intake";
    type Config = Config;

    /// Opens the store, connects to NATS and binds the gRPC port.
    async fn build(config: Config) -> anyhow::Result<Self> {
        let clock = writer::offset_clock(config.clock_offset);
        Self::build_with_clock(config, clock).await
    }

    /// Serves until `shutdown` is cancelled; then stops taking commands,
    /// commits what was taken, publishes what was committed, all within
    /// the configured shutdown timeout.
    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            config,
            listener,
            store,
            nats,
            clock,
            calendar,
        } = self;
        // TLS and identities first: a file that does not load stops
        // start-up before any work.
        let limits = config.shared.limits(config.listen);
        let server = server::GrpcServer::new(proto::FILE_DESCRIPTOR_SET)
            .with_tls(config.shared.tls_files())?
            .with_auth(config.shared.auth_files()?.load().await?)
            // The citizen has no credentials: the lookup code is theirs.
            .open_to_anyone(LOOK_UP_DOSSIER)
            .with_limits(limits);
        let codes = lookup::LookupCodes::load(&store, config.lookup_secret_file.as_deref()).await?;
        let (pipeline, handles) = Pipeline::start(
            &store,
            &nats,
            config.stream_settings(),
            clock.clone(),
            calendar,
            config.max_batch as usize,
        )
        .await?;
        let server = server
            .add_service(
                IntakeServer::new(grpc::IntakeService::new(
                    handles.writer,
                    clock,
                    handles.relay,
                    config.shared.province.clone(),
                    codes.clone(),
                ))
                .max_decoding_message_size(limits.max_message_size),
            )
            .add_service(
                DossierServiceServer::new(dossiers::DossiersService::new(store.clone(), codes))
                    .max_decoding_message_size(limits.max_message_size),
            )
            .add_service(
                LogServer::new(log::LogService::new(
                    store.clone(),
                    config.shared.province.clone(),
                ))
                .max_decoding_message_size(limits.max_message_size),
            );
        tokio::spawn(pipeline::report_relay_health(
            server.health(),
            handles.relay_state,
        ));
        let addr = listener.local_addr().context("read the bound address")?;
        let shared = &config.shared;
        tracing::info!(%addr, database = %sqlkit::redact(&config.database_url), nats = %shared.nats_url, stream = %shared.stream, tls = shared.tls_cert.is_some(), "intake serving");

        let served = server.serve(listener, shutdown).await;
        // The server is down and its handles are dropped.
        pipeline.drain(shared.shutdown_timeout).await;
        // Bounded: with NATS away a flush would wait for it.
        match tokio::time::timeout(Duration::from_secs(1), nats.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "NATS flush at shutdown"),
            Err(_) => tracing::debug!("NATS flush at shutdown timed out"),
        }
        store.close().await;
        tracing::info!("intake stopped");
        served
    }
}
