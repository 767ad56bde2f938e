//! A service binary's life: configuration, telemetry, signals, build, run.

use std::{future::Future, net::SocketAddr, process::ExitCode, time::Duration};

use tokio_util::sync::CancellationToken;

/// A service's configuration, as [`run`] reads it before building.
pub trait ServiceConfig: clap::Parser {
    /// The flags every service shares.
    fn shared(&self) -> &crate::SharedArgs;
    /// Where to serve Prometheus metrics, if anywhere.
    fn metrics_listen(&self) -> Option<SocketAddr>;
}

/// What a service gives [`run`]: its configuration, how to build it
/// (connect, bind) and how to run it until a shutdown token is cancelled.
/// Building apart from running lets tests build a service, read its bound
/// address, then run it.
pub trait Service: Sized {
    /// The binary's name, first on every error line.
    const NAME: &'static str;
    /// Its flags and environment variables.
    type Config: ServiceConfig;

    /// Connects and binds.
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<Self>>;
    /// Serves until `shutdown` is cancelled, then drains.
    fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>>;
}

/// The whole of a service's `main`: a configuration error exits with clap's
/// message (and code 2); a failure to start or a fatal error while running
/// prints one line, `NAME: error: cause: …`, and exits with 1.
pub async fn run<S: Service>() -> ExitCode {
    let config = match <S::Config as clap::Parser>::try_parse() {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    telemetry::init_tracing(config.shared().log_format);
    let result = async {
        if let Some(addr) = config.metrics_listen() {
            telemetry::install_metrics(addr)?;
        }
        let shutdown = telemetry::shutdown_on_signals();
        S::build(config).await?.run_until_stopped(shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", S::NAME);
            ExitCode::FAILURE
        }
    }
}

/// Waits for `work` (a service's background tasks finishing) for at most
/// `timeout`; says so in the log and returns `false` when time ran out.
/// `leftover` says what becomes of the unfinished work.
pub async fn drain(timeout: Duration, leftover: &str, work: impl Future<Output = ()>) -> bool {
    if tokio::time::timeout(timeout, work).await.is_ok() {
        return true;
    }
    tracing::warn!(?timeout, "shutdown timed out; {leftover}");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_work_that_ends_in_time() {
        let ended = drain(Duration::from_secs(10), "", async {
            tokio::time::sleep(Duration::from_secs(9)).await;
        })
        .await;
        assert!(ended);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_at_the_limit() {
        let started = tokio::time::Instant::now();
        let ended = drain(Duration::from_secs(10), "", std::future::pending()).await;
        assert!(!ended);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
