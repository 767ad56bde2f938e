//! What every Motcua service process shares at its edges: tracing set-up
//! (readable in a terminal, JSON on request), the Prometheus exporter, the
//! shutdown signal (SIGTERM or Ctrl-C), connecting to NATS with a clear
//! error, and reading durations from flags. The `server` crate builds a
//! service's start-up on these; the test harness and loadgen use them alone.
//!
//! This crate knows nothing of dossiers, events, databases or gRPC.

mod backoff;
pub use backoff::Backoff;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use async_nats::ConnectOptions;
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

/// How a service reaches NATS: the server, the name it shows there, and the
/// credentials and TLS the shipped server configuration (`deploy/nats`)
/// requires. The files are read when the client is made, so a missing or
/// unreadable one stops the service at start-up with one line naming it.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// A server's URL, or a cluster's seed URLs separated by commas.
    pub url: String,
    /// The connection's name in the server's monitoring.
    pub name: String,
    /// How many messages each subscription holds for a reader that has not
    /// taken them yet (the client's default when `None`); past it the
    /// client drops what the server delivers, which a JetStream consumer
    /// without acks never sees again.
    pub buffer: Option<usize>,
    /// The NATS user, with its password read from `password_file`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Trust this CA (PEM) for the server's certificate; requires TLS.
    pub ca: Option<PathBuf>,
    /// A client certificate chain and key (PEM), for a server that
    /// verifies clients; requires TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl NatsOptions {
    /// Plaintext and anonymous, as a local nats-server without
    /// configuration takes it.
    pub fn plain(url: &str, name: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: name.to_owned(),
            ..Self::default()
        }
    }

    fn tls(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some()
    }

    /// The credentials and TLS files as the client's options, each file
    /// checked now: the client reads the certificates again on every
    /// (re)connection, where an error would only be retried.
    fn secure(&self, mut options: ConnectOptions) -> anyhow::Result<ConnectOptions> {
        match (&self.user, &self.password_file) {
            (Some(user), Some(file)) => {
                let password = std::fs::read_to_string(file)
                    .with_context(|| format!("read the NATS password file {}", file.display()))?;
                // Files usually end with a newline that is no part of it.
                let password = password.trim_end_matches(['\r', '\n']).to_owned();
                anyhow::ensure!(
                    !password.is_empty(),
                    "the NATS password file {} is empty",
                    file.display()
                );
                options = options.user_and_password(user.clone(), password);
            }
            (None, None) => {}
            _ => anyhow::bail!("a NATS user needs its password file, and a password file its user"),
        }
        if let Some(ca) = &self.ca {
            read_certificates(ca, "NATS CA")?;
            options = options.add_root_certificates(ca.clone());
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                read_certificates(cert, "NATS client certificate")?;
                read_key(key)?;
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            (None, None) => {}
            _ => {
                anyhow::bail!("a NATS client certificate needs its key, and a key its certificate")
            }
        }
        Ok(options.require_tls(self.tls()))
    }
}

fn read_certificates(path: &Path, what: &str) -> anyhow::Result<()> {
    use async_nats::rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("read the {what} file {}", path.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "the {what} file {} holds no PEM certificate",
        path.display()
    );
    Ok(())
}

fn read_key(path: &Path) -> anyhow::Result<()> {
    use async_nats::rustls::pki_types::{PrivateKeyDer, pem::PemObject as _};
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("read the NATS client key file {}", path.display()))?;
    Ok(())
}

/// Connects to NATS, retrying in the background after the first success.
/// The first connection must succeed within `timeout`, so a wrong URL,
/// password or CA is reported at start-up rather than hidden behind
/// retries.
pub async fn connect_nats(
    options: &NatsOptions,
    timeout: Duration,
) -> anyhow::Result<async_nats::Client> {
    let last_error = Arc::new(Mutex::new(None));
    let client = client_with(options, Some(last_error.clone())).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() >= deadline {
            let url = &options.url;
            let last = last_error.lock().map(|e| e.clone()).unwrap_or_default();
            match last {
                Some(error) => anyhow::bail!(
                    "NATS at {url} did not take the connection within {timeout:?}: {error}"
                ),
                None => anyhow::bail!("no NATS server answered at {url} within {timeout:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(client)
}

/// A NATS client that connects, and reconnects, in the background: it is
/// returned at once, whether or not a server answers yet (intake takes
/// commands while NATS is away; its relay publishes them when NATS is
/// back). Fails only on a malformed URL or option, or a file of
/// `options` that does not read.
pub async fn nats_client(options: &NatsOptions) -> anyhow::Result<async_nats::Client> {
    client_with(options, None).await
}

/// The last reason a connection attempt failed, for the start-up error.
type LastError = Arc<Mutex<Option<String>>>;

async fn client_with(
    options: &NatsOptions,
    last_error: Option<LastError>,
) -> anyhow::Result<async_nats::Client> {
    let mut connect = ConnectOptions::new();
    if let Some(buffer) = options.buffer {
        connect = connect.subscription_capacity(buffer);
    }
    let connect = options
        .secure(connect)?
        .name(&options.name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .event_callback(move |event| {
            let last_error = last_error.clone();
            async move { on_event(event, last_error.as_ref()) }
        });
    let url = &options.url;
    connect
        .connect(seeds(url).as_slice())
        .await
        .with_context(|| format!("connect to NATS at {url}"))
}

/// The servers a URL names: one, or several separated by commas (a
/// cluster's seeds, as NATS tools take them). The client tries them in
/// turn and learns the rest of the cluster from the one it reaches.
fn seeds(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .collect()
}

fn on_event(event: async_nats::Event, last_error: Option<&LastError>) {
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
        async_nats::Event::ClientError(ref error) => {
            // A refused password or certificate is retried like an absent
            // server (the client logs each refusal itself); it is kept so
            // start-up can say which it was.
            let error = error.to_string();
            tracing::debug!(%error, "NATS connection attempt failed");
            if let Some(Ok(mut last)) = last_error.map(|l| l.lock()) {
                *last = Some(error);
            }
        }
        async_nats::Event::ServerError(ref error) => {
            if let Some(Ok(mut last)) = last_error.map(|l| l.lock()) {
                *last = Some(error.to_string());
            }
            tracing::warn!(%error, "NATS server error");
        }
        other => tracing::debug!(event = %other, "NATS event"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_named_by_its_seeds() {
        assert_eq!(seeds("nats://a:4222"), ["nats://a:4222"]);
        assert_eq!(
            seeds("nats://a:4222, nats://b:4222,,nats://c:4222"),
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
    }

    /// The error a client with `options` stops at, before any connection.
    async fn refusal(options: NatsOptions) -> String {
        nats_client(&options)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
            .err()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_unreadable_file_stops_the_client_naming_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("missing");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "not a certificate\n")?;
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n")?;
        let base = NatsOptions::plain("nats://127.0.0.1:1", "test");
        let password = |file: &std::path::Path| NatsOptions {
            user: Some("intake".into()),
            password_file: Some(file.to_path_buf()),
            ..base.clone()
        };
        let error = refusal(password(&missing)).await;
        assert!(
            error.contains("NATS password file") && error.contains("missing"),
            "{error}"
        );
        let error = refusal(password(&empty)).await;
        assert!(error.contains("is empty"), "{error}");
        let error = refusal(NatsOptions {
            ca: Some(not_pem.clone()),
            ..base.clone()
        })
        .await;
        assert!(
            error.contains("NATS CA") && error.contains("no PEM certificate"),
            "{error}"
        );
        let error = refusal(NatsOptions {
            ca: Some(missing.clone()),
            ..base.clone()
        })
        .await;
        assert!(
            error.contains("NATS CA") && error.contains("missing"),
            "{error}"
        );
        let error = refusal(NatsOptions {
            client_cert: Some(not_pem),
            ..base
        })
        .await;
        assert!(error.contains("needs its key"), "{error}");
        Ok(())
    }
}
