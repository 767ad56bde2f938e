//! TLS for a gRPC server: the certificate, key and (optionally) the client
//! CA read from files, and read again whenever they change, so that a
//! rotated certificate is served to new connections without a restart.
//!
//! The files are polled rather than watched: a rotation by a secret manager
//! or a Kubernetes volume swaps a symlink or writes two files one after the
//! other, which file events report in pieces; reading both files and
//! keeping the old configuration until they load together is simpler and
//! never serves a certificate with the wrong key.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use futures::Stream;
use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

/// How long a client may take over its handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a server's TLS material lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CAs whose client certificates are accepted (mTLS). A client without a
    /// certificate is still served (it authenticates with a token); one
    /// with a certificate from elsewhere fails the handshake.
    pub client_ca: Option<PathBuf>,
    /// How often the files are read again.
    pub reload_every: Duration,
}

/// The files' bytes as last loaded: a reload builds a configuration only
/// when they changed.
#[derive(PartialEq, Eq)]
struct Loaded {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read the TLS {what} {}", path.display()))
}

impl TlsFiles {
    fn read(&self) -> anyhow::Result<Loaded> {
        Ok(Loaded {
            cert: read(&self.cert, "certificate")?,
            key: read(&self.key, "key")?,
            client_ca: self
                .client_ca
                .as_deref()
                .map(|path| read(path, "client CA"))
                .transpose()?,
        })
    }

    fn build(&self, loaded: &Loaded) -> anyhow::Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(&loaded.cert)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("no PEM certificate in {}", self.cert.display()))?;
        anyhow::ensure!(
            !chain.is_empty(),
            "no certificate in {}",
            self.cert.display()
        );
        let key = PrivateKeyDer::from_pem_slice(&loaded.key)
            .with_context(|| format!("no PEM private key in {}", self.key.display()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &loaded.client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => builder.with_client_cert_verifier(self.client_verifier(pem, provider)?),
        };
        let mut config = builder.with_single_cert(chain, key).with_context(|| {
            format!(
                "the key {} does not serve the certificate {}",
                self.key.display(),
                self.cert.display()
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    fn client_verifier(
        &self,
        pem: &[u8],
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
        let path = self.client_ca.as_deref().unwrap_or(Path::new("?"));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.with_context(|| format!("no PEM certificate in {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("a CA certificate in {}", path.display()))?;
        }
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .with_context(|| format!("client CAs from {}", path.display()))
    }
}

/// The server's current TLS configuration, replaced when its files change.
#[derive(Clone, Debug)]
pub struct ReloadingTls {
    current: watch::Receiver<Arc<ServerConfig>>,
}

impl ReloadingTls {
    /// Loads `files` (an error names the file at fault) and reads them again
    /// every `files.reload_every` until `stop` is cancelled. A change that
    /// does not load (a key that does not match, a half-written file) is
    /// logged and counted (`tls_reload_failures_total`); the configuration
    /// before it stays in use.
    pub fn start(files: TlsFiles, stop: CancellationToken) -> anyhow::Result<Self> {
        let loaded = files.read()?;
        let (tx, current) = watch::channel(files.build(&loaded)?);
        tokio::spawn(reload(files, loaded, tx, stop));
        Ok(Self { current })
    }

    /// The configuration new connections get.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.borrow().clone()
    }

    /// Accepts TCP connections on `listener` and yields those whose TLS
    /// handshake succeeds; handshakes run side by side, so a slow client
    /// holds up no other. Ends when the stream is dropped.
    pub fn incoming(
        self,
        listener: TcpListener,
    ) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: pass, retry.
                        tracing::warn!(error = %e, "accept a TCP connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = TlsAcceptor::from(self.config());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => drop(tx.send(Ok(stream)).await),
                        Ok(Err(e)) => {
                            metrics::counter!("tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

async fn reload(
    files: TlsFiles,
    mut loaded: Loaded,
    tx: watch::Sender<Arc<ServerConfig>>,
    stop: CancellationToken,
) {
    // Files that changed but did not load: said once, not at every tick.
    let mut refused: Option<Loaded> = None;
    let mut ticks = tokio::time::interval(files.reload_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let read = match files.read() {
            Ok(read) if read == loaded || refused.as_ref() == Some(&read) => continue,
            Ok(read) => read,
            Err(e) => {
                metrics::counter!("tls_reload_failures_total").increment(1);
                tracing::warn!(error = %format!("{e:#}"), "TLS files unreadable; serving the certificate loaded before");
                continue;
            }
        };
        match files.build(&read) {
            Ok(config) => {
                tx.send_replace(config);
                loaded = read;
                refused = None;
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                metrics::counter!("tls_reload_failures_total").increment(1);
                tracing::warn!(error = %format!("{e:#}"), "TLS files changed but do not load; serving the certificate loaded before");
                refused = Some(read);
            }
        }
    }
}
