//! Reaching a service: one gRPC channel per command, with a connect
//! timeout, over TLS when the address is `https://` (trusting the system's
//! roots or the CA file given), carrying the bearer token given, and
//! one-line errors that name the service and its address — and say
//! whether the TLS handshake or the token failed.

use std::{error::Error as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, anyhow};
use tonic::{
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

/// A connection to a service: the channel, with the token on every call.
pub type Connection = InterceptedService<Channel, Bearer>;

/// Puts `authorization: Bearer <token>` on every request, when a token
/// was given.
#[derive(Clone, Debug)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where the services are and how long to wait for them (the global flags).
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Services")]
pub struct Services {
    /// projection's gRPC address (reports).
    #[arg(
        long,
        global = true,
        env = "MOTCUA_PROJECTION",
        value_name = "URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub projection: String,
    /// intake's gRPC address (desk commands, the event log).
    #[arg(
        long,
        global = true,
        env = "MOTCUA_INTAKE",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub intake: String,
    /// Give up connecting after this many seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 5)]
    pub connect_timeout: u64,
    /// Give up on one request after this many seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub request_timeout: u64,
    /// Bearer token for the services (a JWT or a static token). Prefer
    /// --token-file or the variable: a flag shows in the process list.
    #[arg(long, global = true, env = "MOTCUA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token (its first line).
    #[arg(
        long,
        global = true,
        env = "MOTCUA_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// Trust this CA (PEM) for https:// addresses, beside the system's roots.
    #[arg(long, global = true, env = "MOTCUA_CA", value_name = "PEM")]
    pub ca: Option<PathBuf>,
}

/// One of the two services, by name and address, for connecting and for
/// naming it in errors.
#[derive(Clone, Debug)]
pub struct Target {
    pub service: &'static str,
    pub url: String,
}

impl Services {
    pub fn projection(&self) -> Target {
        Target {
            service: "projection",
            url: self.projection.clone(),
        }
    }

    pub fn intake(&self) -> Target {
        Target {
            service: "intake",
            url: self.intake.clone(),
        }
    }

    /// The token to send, from the flag, the variable or the file.
    fn bearer(&self) -> anyhow::Result<Bearer> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("read the token file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            (None, None) => return Ok(Bearer(None)),
        };
        if token.is_empty() {
            anyhow::bail!("the token is empty (--token, MOTCUA_TOKEN or --token-file)");
        }
        let mut value: AsciiMetadataValue = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow!("the token has characters a header cannot carry"))?;
        value.set_sensitive(true);
        Ok(Bearer(Some(value)))
    }

    /// TLS for an https:// address: the system's roots, and the CA file.
    fn tls(&self) -> anyhow::Result<ClientTlsConfig> {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &self.ca {
            let pem = std::fs::read(path)
                .with_context(|| format!("read the CA file {} (--ca)", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        Ok(tls)
    }

    /// Opens a connection to `target`, or fails with
    /// "cannot reach projection at http://…: connection refused" (or "the
    /// TLS handshake with … failed: …").
    pub async fn connect(&self, target: &Target) -> anyhow::Result<Connection> {
        let Target { service, url } = target;
        let secure = url.starts_with("https://");
        if !secure && !url.starts_with("http://") {
            anyhow::bail!(
                "{service} address {url:?} must be an http:// or https:// URL, e.g. http://127.0.0.1:50052"
            );
        }
        let bearer = self.bearer()?;
        let connect_timeout = Duration::from_secs(self.connect_timeout.max(1));
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| anyhow!("{service} address {url:?} is not a URL: {e}"))?
            .connect_timeout(connect_timeout)
            .timeout(Duration::from_secs(self.request_timeout.max(1)));
        if secure {
            endpoint = endpoint
                .tls_config(self.tls()?)
                .map_err(|e| anyhow!("TLS for {service} at {url}: {}", cause(&e)))?;
        }
        // The connect timeout covers TCP; this one also covers the HTTP/2
        // (and TLS) handshake with a peer that accepts but never answers.
        match tokio::time::timeout(connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(InterceptedService::new(channel, bearer)),
            Ok(Err(e)) if secure && is_tls(&e) => Err(anyhow!(
                "the TLS handshake with {service} at {url} failed (check --ca): {}",
                cause(&e)
            )),
            Ok(Err(e)) => Err(anyhow!("cannot reach {service} at {url}: {}", cause(&e))),
            Err(_) => Err(anyhow!(
                "cannot reach {service} at {url}: no answer within {}s",
                connect_timeout.as_secs()
            )),
        }
    }
}

impl Target {
    /// A refused or failed call, as one line: the status code and the
    /// service's own message.
    pub fn status(&self, status: &tonic::Status) -> anyhow::Error {
        let Target { service, url } = self;
        let message = one_line(status.message());
        match status.code() {
            tonic::Code::Unavailable if status.source().is_some() => {
                anyhow!("cannot reach {service} at {url}: {message}")
            }
            tonic::Code::DeadlineExceeded => {
                anyhow!("{service} at {url} did not answer in time: {message}")
            }
            tonic::Code::Unauthenticated => anyhow!(
                "{service} at {url} refused the token (--token, MOTCUA_TOKEN or --token-file): {message}"
            ),
            tonic::Code::PermissionDenied => {
                anyhow!("{service} at {url} refused the request: {message}")
            }
            code => anyhow!("{service} at {url} refused the request ({code:?}): {message}"),
        }
    }
}

/// Whether a connection failed in its TLS handshake (a rustls error in
/// its chain, whatever wraps it).
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // An io::Error's source skips the error it wraps: look inside.
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// The innermost useful reason of a transport error: "connection refused"
/// rather than "transport error".
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current: &(dyn std::error::Error + 'static) = error;
    let mut deepest = error.to_string();
    loop {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return if io.raw_os_error().is_some() {
                // "connection refused", "host unreachable", …
                io.kind().to_string()
            } else {
                one_line(&io.to_string())
            };
        }
        match current.source() {
            Some(next) => {
                deepest = next.to_string();
                current = next;
            }
            None => return one_line(&deepest),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(one_line("a\nb  c\r\n"), "a b c");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn io_errors_name_their_kind() {
        let io = std::io::Error::from_raw_os_error(111);
        assert_eq!(cause(&io), "connection refused");
    }
}
