//! Projection's configuration, from flags or the environment.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "projection",
    version,
    about = "Motcua projection: consumes dossier events from NATS JetStream into read models and serves reports over gRPC.",
    after_help = "Example:\n  projection --listen 127.0.0.1:50052 --database-url sqlite://data/projection.db --nats-url nats://127.0.0.1:4222"
)]
pub struct Config {
    /// Address the gRPC server listens on (port 0 picks a free one).
    #[arg(long, env = "PROJECTION_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,

    /// Read models: postgres://… or sqlite://path/to/file.db.
    #[arg(
        long,
        env = "PROJECTION_DATABASE_URL",
        default_value = "sqlite://data/projection.db"
    )]
    pub database_url: String,

    /// Durable consumer name; also the checkpoint's key.
    #[arg(long, env = "PROJECTION_CONSUMER", default_value = "projection")]
    pub consumer: String,

    /// Most events applied in one transaction.
    #[arg(long, env = "PROJECTION_MAX_BATCH", default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub max_batch: u32,

    /// Messages the NATS client holds for the consumer before it drops
    /// what the server delivers. The consumer asks for 50,000 at a time and
    /// for the next 50,000 once half are taken, so up to 75,000 may arrive
    /// ahead; below that, deliveries are dropped while the consumer is busy,
    /// and it notices each gap and resumes from its checkpoint (slower, never
    /// wrong).
    #[arg(long, env = "PROJECTION_NATS_BUFFER", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub nats_buffer: u32,

    /// Address of the Prometheus metrics endpoint (`/metrics`); off when absent.
    #[arg(long, env = "PROJECTION_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// NATS, the stream, logs and shutdown: the flags both services share.
    #[command(flatten)]
    pub shared: server::SharedArgs,
}

impl Config {
    pub fn stream_settings(&self) -> bus::StreamSettings {
        self.shared.stream_settings()
    }

    /// A configuration for tests and tools: defaults, with these overrides.
    pub fn for_tests(database_url: &str, nats_url: &str, stream: &str) -> Self {
        let mut config = Self::parse_from(["projection"]);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.database_url = database_url.to_owned();
        config.shared.use_stream(nats_url, stream);
        config
    }
}

impl server::ServiceConfig for Config {
    fn shared(&self) -> &server::SharedArgs {
        &self.shared
    }

    fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics_listen
    }
}
