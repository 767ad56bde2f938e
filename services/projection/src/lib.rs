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

pub mod admin;
pub mod apply;
pub mod asof;
pub mod catalog;
pub mod config;
pub mod consumer;
pub mod deadlines;
pub mod error;
pub mod generations;
pub mod parked;
pub mod rebuild;
pub mod reports;
pub mod resume;
pub mod store;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use proto::{
    admin::v1::parked_events_server::ParkedEventsServer,
    reports::v1::{
        deadlines_server::DeadlinesServer, rebuilds_server::RebuildsServer,
        reports_server::ReportsServer,
    },
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use config::Config;
use store::ReadStore;

pub struct Application {
    config: Config,
    listener: TcpListener,
    store: ReadStore,
    generations: generations::Generations,
    generation: u64,
    nats: async_nats::Client,
}

impl Application {
    /// Opens the read models, connects to NATS and binds the gRPC port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let generations = generations::Generations::open(&config.database_url).await?;
        for dropped in generations.drop_unfinished().await? {
            tracing::warn!(generation = dropped, "dropped an unfinished rebuild");
        }
        let generation = generations.serving().await?;
        let store = generations
            .open_store(generation, None, store::Fill::Live)
            .await?;
        let nats = telemetry::connect_nats(
            &config.nats_url,
            "motcua-projection",
            Duration::from_secs(10),
            Some(config.nats_buffer as usize),
        )
        .await?;
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

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    pub fn store(&self) -> &ReadStore {
        &self.store
    }

    /// Consumes and serves until `shutdown` is cancelled; then finishes the
    /// batch in hand (the rest stays in the stream) within the timeout.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            config,
            listener,
            store,
            generations,
            generation,
            nats,
        } = self;
        let serving = generations::Serving::new(generation, store.clone());
        let (swaps_tx, swaps_rx) = tokio::sync::mpsc::channel(1);
        // Replays of parked events go to the consumer, the one writer.
        let (replays, replay_jobs) = tokio::sync::mpsc::channel(8);
        let consumer = consumer::Consumer {
            store: store.clone(),
            js: async_nats::jetstream::new(nats.clone()),
            settings: config.stream_settings(),
            name: config.consumer.clone(),
            max_batch: config.max_batch as usize,
            news: true,
            until_caught_up: false,
            progress: None,
            swaps: Some(swaps_rx),
            replays: Some(replay_jobs),
            stream_created: None,
            positions: None,
            log: None,
        };
        let rebuilder = rebuild::Rebuilder::new(
            generations.clone(),
            serving.clone(),
            async_nats::jetstream::new(nats.clone()),
            config.stream_settings(),
            config.max_batch as usize,
            swaps_tx,
            shutdown.clone(),
        );
        let consumer_stop = shutdown.clone();
        let consuming = tokio::spawn(consumer.run(consumer_stop));

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<ReportsServer<reports::ReportsService>>()
            .await;
        health
            .set_serving::<DeadlinesServer<deadlines::DeadlinesService>>()
            .await;
        health
            .set_serving::<ParkedEventsServer<admin::ParkedService>>()
            .await;
        health
            .set_serving::<RebuildsServer<rebuild::Rebuilder>>()
            .await;
        let served_services = [
            <ReportsServer<reports::ReportsService> as NamedService>::NAME,
            <DeadlinesServer<deadlines::DeadlinesService> as NamedService>::NAME,
            <RebuildsServer<rebuild::Rebuilder> as NamedService>::NAME,
            <ParkedEventsServer<admin::ParkedService> as NamedService>::NAME,
        ];
        let reflection = telemetry::reflection_v1(proto::FILE_DESCRIPTOR_SET, &served_services)?;
        let reflection_alpha =
            telemetry::reflection_v1alpha(proto::FILE_DESCRIPTOR_SET, &served_services)?;
        let addr = listener.local_addr().context("read the bound address")?;
        tracing::info!(%addr, database = %sqlkit::redact(&config.database_url), nats = %config.nats_url, stream = %config.stream, consumer = %config.consumer, "projection serving");
        let server_shutdown = shutdown.clone();
        let served = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(ReportsServer::new(
                reports::ReportsService::serving(serving.clone()).with_history(asof::History {
                    js: async_nats::jetstream::new(nats.clone()),
                    settings: config.stream_settings(),
                }),
            ))
            .add_service(DeadlinesServer::new(deadlines::DeadlinesService::new(
                serving.clone(),
                shutdown.clone(),
            )))
            .add_service(RebuildsServer::new(rebuilder))
            .add_service(ParkedEventsServer::new(admin::ParkedService::new(
                serving.clone(),
                replays,
            )))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move { server_shutdown.cancelled().await },
            )
            .await
            .context("serve gRPC");
        match tokio::time::timeout(config.shutdown_timeout, consuming).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %format!("{e:#}"), "consumer failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "consumer task failed"),
            Err(_) => {
                tracing::warn!(
                    "shutdown timed out; events after the checkpoint will be delivered again"
                )
            }
        }
        serving.store().close().await;
        store.close().await;
        generations.close().await;
        tracing::info!("projection stopped");
        served
    }
}
