//! Motcua projection: the province's side. It consumes dossier events from
//! the JetStream stream with a durable pull consumer, folds them in batches
//! into read models (dossier rows, pauses, per-day counters) with the
//! checkpoint in the same transaction, and serves statistics, survey
//! aggregates and yearly series over gRPC (`motcua.reports.v1.Reports`),
//! overdue lists and a live late feed (`motcua.reports.v1.Deadlines`),
//! and its parked events to operators (`motcua.admin.v1.ParkedEvents`).
//!
//! Projection must not know how commands are decided or how intake stores
//! its log: it reads only the published events, and every figure it serves
//! can be rebuilt from them.
//!
//! The modules are the crate's own; the binary and the test harness get
//! [`Application`], [`Config`] and [`serving_checkpoint`].

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod apply;
pub(crate) mod asof;
pub(crate) mod catalog;
pub(crate) mod config;
pub(crate) mod consumer;
pub(crate) mod deadlines;
pub(crate) mod error;
pub(crate) mod generations;
pub(crate) mod parked;
pub(crate) mod rebuild;
pub(crate) mod reports;
pub(crate) mod resume;
pub(crate) mod store;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use proto::{
    admin::v1::parked_events_server::ParkedEventsServer,
    reports::v1::{
        deadlines_server::DeadlinesServer, rebuilds_server::RebuildsServer,
        reports_server::ReportsServer,
    },
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use store::ReadStore;

/// How far the projection with durable consumer `consumer` has applied the
/// stream into the read models at `database_url`: the checkpoint of the
/// serving generation (the consumer acknowledges nothing, so JetStream's
/// ack floor says nothing). Opens and closes connections of its own.
pub async fn serving_checkpoint(database_url: &str, consumer: &str) -> anyhow::Result<u64> {
    let generations = generations::Generations::open(database_url).await?;
    let checkpoint = generations.serving_checkpoint(consumer).await;
    generations.close().await;
    checkpoint
}

pub struct Application {
    config: Config,
    listener: TcpListener,
    store: ReadStore,
    generations: generations::Generations,
    generation: u64,
    nats: async_nats::Client,
}

/// The swaps a rebuild sends to the consumer, and the parked events an
/// operator replays through it (the consumer is the one writer).
struct ConsumerChannels {
    swaps: mpsc::Sender<consumer::Swap>,
    replays: mpsc::Sender<parked::ReplayJob>,
}

impl Application {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The live consumer, the one writer of the serving read store, and
    /// the channels to it.
    fn consumer(&self) -> (consumer::Consumer, ConsumerChannels) {
        let (swaps, swaps_rx) = mpsc::channel(1);
        let (replays, replay_jobs) = mpsc::channel(8);
        // A request to a stream whose server died, or whose leader is being
        // elected, is given up soon and the consumer made again.
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(std::time::Duration::from_secs(2))
            .build(self.nats.clone());
        let consumer = consumer::Consumer {
            store: self.store.clone(),
            js,
            settings: self.config.stream_settings(),
            name: self.config.consumer.clone(),
            max_batch: self.config.max_batch as usize,
            news: true,
            until_caught_up: false,
            progress: None,
            swaps: Some(swaps_rx),
            replays: Some(replay_jobs),
            stream_created: None,
            positions: None,
            log: None,
        };
        (consumer, ConsumerChannels { swaps, replays })
    }

    /// The reports, deadlines, rebuild and parked-event services.
    fn grpc_server(
        &self,
        auth: Option<std::sync::Arc<identity::Authenticator>>,
        serving: &std::sync::Arc<generations::Serving>,
        channels: ConsumerChannels,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<server::GrpcServer> {
        let settings = self.config.stream_settings();
        let history = asof::History {
            js: async_nats::jetstream::new(self.nats.clone()),
            settings: settings.clone(),
        };
        let rebuilder = rebuild::Rebuilder::new(
            self.generations.clone(),
            serving.clone(),
            async_nats::jetstream::new(self.nats.clone()),
            settings,
            self.config.max_batch as usize,
            channels.swaps,
            shutdown.clone(),
        )
        .serving_province(self.config.shared.province.clone());
        let limits = self.config.shared.limits(self.config.listen);
        let max = limits.max_message_size;
        let server = server::GrpcServer::new(proto::FILE_DESCRIPTOR_SET)
            .with_tls(self.config.shared.tls_files())?
            .with_auth(auth)
            .with_limits(limits)
            .add_service(
                ReportsServer::new(
                    reports::ReportsService::serving(serving.clone()).with_history(history),
                )
                .max_decoding_message_size(max),
            )
            .add_service(
                DeadlinesServer::new(deadlines::DeadlinesService::new(
                    serving.clone(),
                    shutdown.clone(),
                ))
                .max_decoding_message_size(max),
            )
            .add_service(RebuildsServer::new(rebuilder).max_decoding_message_size(max))
            .add_service(
                ParkedEventsServer::new(admin::ParkedService::new(
                    serving.clone(),
                    channels.replays,
                    self.config.shared.province.clone(),
                ))
                .max_decoding_message_size(max),
            );
        Ok(server)
    }
}

impl server::Service for Application {
    const NAME: &'static str = "projection";
    type Config = Config;

    /// Opens the read models, connects to NATS and binds the gRPC port.
    async fn build(config: Config) -> anyhow::Result<Self> {
        config.shared.check_exposure(config.listen)?;
        let generations = generations::Generations::open(&config.database_url).await?;
        for dropped in generations.drop_unfinished().await? {
            tracing::warn!(generation = dropped, "dropped an unfinished rebuild");
        }
        let generation = generations.serving().await?;
        let store = generations
            .open_store(generation, None, store::Fill::Live)
            .await?;
        let nats_options = telemetry::NatsOptions {
            buffer: Some(config.nats_buffer as usize),
            ..config.shared.nats_options("motcua-projection")
        };
        let nats = telemetry::connect_nats(&nats_options, Duration::from_secs(10)).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("bind the gRPC port {}", config.listen))?;
        Ok(Self {
            config,
            listener,
            store,
            generations,
            generation,
            nats,
        })
    }

    /// Consumes and serves until `shutdown` is cancelled; then finishes the
    /// batch in hand (the rest stays in the stream) within the timeout.
    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // TLS and identities are loaded here: a file that does not load
        // (or a JWKS URL that does not answer) stops start-up before the
        // consumer starts.
        let auth = self.config.shared.auth_files()?.load().await?;
        let serving = generations::Serving::new(self.generation, self.store.clone());
        let (consumer, channels) = self.consumer();
        let server = self.grpc_server(auth, &serving, channels, &shutdown)?;
        let consuming = tokio::spawn(consumer.run(shutdown.clone()));
        let Self {
            config,
            listener,
            store,
            generations,
            ..
        } = self;
        let addr = listener.local_addr().context("read the bound address")?;
        let shared = &config.shared;
        tracing::info!(%addr, database = %sqlkit::redact(&config.database_url), nats = %shared.nats_url, stream = %shared.stream, consumer = %config.consumer, tls = shared.tls_cert.is_some(), "projection serving");
        let served = server.serve(listener, shutdown).await;
        let finish_batch = async {
            match consuming.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "consumer failed"),
                Err(e) => tracing::error!(error = %e, "consumer task failed"),
            }
        };
        server::drain(
            shared.shutdown_timeout,
            "events after the checkpoint will be delivered again",
            finish_batch,
        )
        .await;
        serving.store().close().await;
        store.close().await;
        generations.close().await;
        tracing::info!("projection stopped");
        served
    }
}
