//! What every Motcua service process shares at its edges: tracing set-up
//! (readable in a terminal, JSON on request), the Prometheus exporter, the
//! shutdown signal (SIGTERM or Ctrl-C), connecting to NATS with a clear
//! error, and reading durations from flags. The `server` crate builds a
//! service's start-up on these; the test harness and loadgen use them alone.
//!
//! This crate knows nothing of dossiers, events, databases or gRPC.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable, one event a line.
    #[default]
    Pretty,
    /// One JSON object a line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected \"pretty\" or \"json\""
            )),
        }
    }
}

/// Installs the global tracing subscriber. `RUST_LOG` filters (default
/// `info`). Calling it twice is harmless: the second call changes nothing.
pub fn init_tracing(format: LogFormat) {
    init_tracing_with_default(format, "info");
}

/// As [`init_tracing`], with another filter when `RUST_LOG` is unset.
pub fn init_tracing_with_default(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Pretty => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .flatten_event(true),
            )
            .try_init(),
    };
    // Already installed (tests start several services in one process).
    drop(result);
}

/// Serves Prometheus metrics at `http://addr/metrics`. Must run inside a
/// Tokio runtime. Fails when the port is taken or a recorder is installed.
pub fn install_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .context("configure histogram buckets")?
        .install()
        .with_context(|| format!("serve Prometheus metrics on {addr}"))
}

/// A token cancelled on SIGTERM or Ctrl-C, whichever comes first.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Connects to NATS, retrying in the background after the first success.
/// The first connection must succeed within `timeout`, so a wrong URL is
/// reported at start-up rather than hidden behind retries.
///
/// `buffer` is how many messages each subscription holds for a reader that
/// has not taken them yet (the client's default when `None`); past it the
/// client drops what the server delivers, which a JetStream consumer
/// without acks never sees again.
pub async fn connect_nats(
    url: &str,
    name: &str,
    timeout: Duration,
    buffer: Option<usize>,
) -> anyhow::Result<async_nats::Client> {
    let client = nats_client(url, name, buffer).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("no NATS server answered at {url} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(client)
}

/// A NATS client for `url` that connects, and reconnects, in the
/// background: it is returned at once, whether or not a server answers yet
/// (intake takes commands while NATS is away; its relay publishes them
/// when NATS is back). Fails only on a malformed URL or option.
pub async fn nats_client(
    url: &str,
    name: &str,
    buffer: Option<usize>,
) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new();
    if let Some(buffer) = buffer {
        options = options.subscription_capacity(buffer);
    }
    let options = options
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS disconnected; reconnecting")
                }
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                // One event per message dropped: counted, not logged each.
                async_nats::Event::SlowConsumer(sid) => {
                    metrics::counter!("nats_messages_dropped_total").increment(1);
                    tracing::debug!(
                        subscription = sid,
                        "NATS dropped a message for a reader that fell behind"
                    );
                }
                other => tracing::debug!(event = %other, "NATS event"),
            }
        });
    options
        .connect(url)
        .await
        .with_context(|| format!("connect to NATS at {url}"))
}

/// `500ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 10s, 2m, 1h or 3d"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "d" => Ok(Duration::from_secs(n * 86_400)),
        _ => Err(format!(
            "{s:?} is not a duration like 500ms, 10s, 2m, 1h or 3d"
        )),
    }
}

/// Parses a signed duration (`-90m`, `+36h`, `2d`) into microseconds.
pub fn parse_signed_micros(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (sign, rest) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let d = parse_duration(rest)?;
    i64::try_from(d.as_micros())
        .map(|m| sign * m)
        .map_err(|_| format!("{s:?} is too long"))
}
