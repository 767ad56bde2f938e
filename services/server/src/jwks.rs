//! The identity provider's keys (a JWKS) from a file or from a URL. A URL
//! is fetched at start (a failure stops start-up) and again every
//! `--auth-jwks-refresh`, so keys the provider rotates in are accepted
//! without a restart; a failed refresh keeps the keys in use and is
//! logged and counted (`jwks_refresh_failures_total`).
//!
//! The fetch is one HTTP/1.1 GET with hyper's client, over TLS (rustls,
//! the system's roots and `--auth-jwks-ca`) for `https://`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use identity::{Authenticator, JwtSettings, JwtVerifier};
use tokio::net::TcpStream;

/// The largest JWKS document accepted.
const MAX_JWKS: usize = 1 << 20;
/// Longest a fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the JWKS comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    /// An `http://` or `https://` URL, with a CA to trust beside the
    /// system's roots.
    Url {
        url: http::Uri,
        ca: Option<PathBuf>,
        refresh: Duration,
    },
}

impl JwksSource {
    /// A URL when `value` starts with `http://` or `https://`, else a file.
    pub fn parse(value: &str, ca: Option<PathBuf>, refresh: Duration) -> anyhow::Result<Self> {
        if value.starts_with("http://") || value.starts_with("https://") {
            let url = value
                .parse()
                .with_context(|| format!("--auth-jwks {value:?} is not a URL"))?;
            return Ok(Self::Url { url, ca, refresh });
        }
        Ok(Self::File(value.into()))
    }

    /// The JWKS document, read or fetched now.
    pub async fn read(&self) -> anyhow::Result<String> {
        match self {
            Self::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("read the JWKS {}", path.display())),
            Self::Url { url, ca, .. } => {
                tokio::time::timeout(FETCH_TIMEOUT, fetch(url, ca.as_deref()))
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer within {FETCH_TIMEOUT:?}"))?
                    .with_context(|| format!("fetch the JWKS {url}"))
            }
        }
    }

    /// A verifier from the document read now.
    pub async fn verifier(&self, settings: &JwtSettings) -> anyhow::Result<JwtVerifier> {
        let text = self.read().await?;
        JwtVerifier::from_jwks(&text, settings).with_context(|| format!("the JWKS {self}"))
    }

    /// For a URL: fetches it again every refresh period and hands the keys
    /// to `auth`, until `auth` is dropped (the server stopped).
    pub fn keep_fresh(self, auth: &Arc<Authenticator>, settings: JwtSettings) {
        let Self::Url { refresh, .. } = &self else {
            return;
        };
        let (every, auth): (Duration, Weak<Authenticator>) = (*refresh, Arc::downgrade(auth));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(auth) = auth.upgrade() else { return };
                match self.verifier(&settings).await {
                    Ok(verifier) => auth.replace_jwt(verifier),
                    Err(error) => {
                        metrics::counter!("jwks_refresh_failures_total").increment(1);
                        tracing::warn!(error = %format!("{error:#}"), "the JWKS did not refresh; the keys in use stay");
                    }
                }
            }
        });
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url { url, .. } => write!(f, "{url}"),
        }
    }
}

/// TLS to the identity provider: the system's roots and `ca`.
fn tls_config(ca: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // A root the system lists but rustls cannot parse is skipped.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca {
        let pem =
            std::fs::read(path).with_context(|| format!("read the JWKS CA {}", path.display()))?;
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: rustls::pki_types::CertificateDer<'static> =
                cert.with_context(|| format!("the JWKS CA {}", path.display()))?;
            roots.add(cert)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn fetch(url: &http::Uri, ca: Option<&Path>) -> anyhow::Result<String> {
    let host = url.host().context("a URL without a host")?.to_owned();
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let body = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca)?));
        get(connector.connect(name, tcp).await?, url, &host).await?
    } else {
        get(tcp, url, &host).await?
    };
    String::from_utf8(body).context("the JWKS is not UTF-8")
}

async fn get<S>(stream: S, url: &http::Uri, host: &str) -> anyhow::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "answered {}",
        response.status()
    );
    let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("read the answer: {e}"))?;
    Ok(body.to_bytes().to_vec())
}
