//! The intake binary: telemetry, configuration, build, run until a signal.

use clap::Parser as _;
use intake::{Application, Config};

// Every command allocates in tonic, the writer, sqlx and the NATS client;
// glibc's malloc took a large share of the process's CPU under load, as it
// did in the projection's (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    telemetry::init_tracing(config.log_format);
    if let Some(addr) = config.metrics_listen
        && let Err(e) = telemetry::install_metrics(addr)
    {
        eprintln!("intake: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let shutdown = telemetry::shutdown_on_signals();
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("intake: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("intake: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
