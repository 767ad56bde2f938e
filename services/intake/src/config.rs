//! Intake's configuration, from flags or the environment.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "intake",
    version,
    about = "Motcua intake: takes the desk's commands over gRPC, appends events, publishes them to NATS JetStream.",
    after_help = "Example:\n  intake --listen 127.0.0.1:50051 --database-url sqlite://data/intake.db --nats-url nats://127.0.0.1:4222"
)]
pub struct Config {
    /// Address the gRPC server listens on (port 0 picks a free one).
    #[arg(long, env = "INTAKE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Event store: postgres://… or sqlite://path/to/file.db.
    #[arg(
        long,
        env = "INTAKE_DATABASE_URL",
        default_value = "sqlite://data/intake.db"
    )]
    pub database_url: String,

    /// Address of the Prometheus metrics endpoint (`/metrics`); off when absent.
    #[arg(long, env = "INTAKE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Most commands one group commit takes.
    #[arg(long, env = "INTAKE_MAX_BATCH", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_batch: u32,

    /// Shifts intake's clock by this much, e.g. `36h` or `-10m`. For drills
    /// and tests of the deadline monitor; leave it at 0 in production.
    #[arg(long, env = "INTAKE_CLOCK_OFFSET", default_value = "0s", value_parser = telemetry::parse_signed_micros, allow_hyphen_values = true)]
    pub clock_offset: i64,

    /// Office hours of the working-time calendar, local time (UTC+7).
    #[arg(
        long,
        env = "MOTCUA_OFFICE_HOURS",
        default_value = "07:00-11:30,13:30-17:00"
    )]
    pub office_hours: String,

    /// Local holiday decisions, laid over the government's decided days the
    /// calendar ships for 2015-2026 (TOML; see
    /// services/calendar/holidays.example.toml). Without it: the shipped
    /// decisions, and the statutory rules for other years.
    #[arg(long, env = "MOTCUA_HOLIDAYS")]
    pub holidays: Option<std::path::PathBuf>,

    /// The secret lookup codes are made with (16 bytes or more): the same
    /// file for every intake of a deployment. Without it, intake makes one
    /// at its first start and keeps it in its event store.
    #[arg(long, env = "INTAKE_LOOKUP_SECRET_FILE")]
    pub lookup_secret_file: Option<std::path::PathBuf>,

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
        let mut config = Self::parse_from(["intake"]);
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
