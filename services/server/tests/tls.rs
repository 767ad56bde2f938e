//! TLS on the gRPC server, with real rustls handshakes against certificates
//! made here: a client trusting the CA is served, a plaintext one is not,
//! client certificates from the configured CA are accepted and others
//! refused, and a rotated certificate reaches new connections without a
//! restart (while files that do not load leave the old one in use).

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
use server::{GrpcServer, TlsFiles};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name` (a DNS name; also the client's identity).
    fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = CertificateParams::new(vec![name.to_owned()])
            .expect("leaf params")
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a TLS file");
    path
}

fn files(dir: &Path, leaf: &Leaf, client_ca: Option<&Ca>) -> TlsFiles {
    TlsFiles {
        cert: write(dir, "cert.pem", &leaf.cert),
        key: write(dir, "key.pem", &leaf.key),
        client_ca: client_ca.map(|ca| write(dir, "client-ca.pem", &ca.pem())),
        reload_every: Duration::from_millis(50),
    }
}

/// A server with no service of its own: health and reflection over TLS.
async fn serve(files: TlsFiles) -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let server = GrpcServer::new(proto::FILE_DESCRIPTOR_SET).with_tls(Some(files))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(listener, stop.clone()));
    Ok((addr, stop))
}

async fn health(channel: Channel) -> Result<i32, tonic::Status> {
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await?;
    Ok(reply.into_inner().status)
}

fn endpoint(addr: SocketAddr, tls: Option<ClientTlsConfig>) -> anyhow::Result<Endpoint> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    Ok(match tls {
        Some(tls) => endpoint.tls_config(tls)?,
        None => endpoint,
    })
}

fn trusting(ca: &Ca) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost")
}

/// The certificate the server presents to a new connection, or why the
/// handshake failed.
async fn presented(
    addr: SocketAddr,
    ca: &Ca,
    client: Option<&Leaf>,
) -> Result<CertificateDer<'static>, std::io::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("CA PEM"))
        .expect("CA root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client chain"),
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("client key"),
            )
            .expect("client auth"),
    };
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    // TLS 1.3 reports a refused client certificate after the handshake:
    // a round trip makes the server's verdict arrive.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await?;
    let (_, session) = tls.get_ref();
    Ok(session.peer_certificates().expect("a server certificate")[0].clone())
}

fn der(leaf: &Leaf) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(leaf.cert.as_bytes()).expect("leaf PEM")
}

/// Waits, a bounded number of times, until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{what}: not within 5 s")
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_a_plaintext_one_is_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("Motcua test CA");
    let (addr, stop) = serve(files(dir.path(), &ca.leaf("localhost"), None)).await?;

    let secure = endpoint(addr, Some(trusting(&ca)))?.connect().await?;
    assert_eq!(health(secure).await?, 1, "SERVING over TLS");

    let plain = endpoint(addr, None)?.connect_lazy();
    assert!(health(plain).await.is_err(), "plaintext must not be served");

    let stranger = Ca::new("Another CA");
    let doubting = endpoint(addr, Some(trusting(&stranger)))?.connect().await;
    assert!(doubting.is_err(), "a client that does not trust the CA");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn client_certificates_from_the_client_ca_only() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("Motcua test CA");
    let services = Ca::new("Motcua services CA");
    let (addr, stop) = serve(files(dir.path(), &ca.leaf("localhost"), Some(&services))).await?;

    let intake = services.leaf("intake.motcua");
    assert!(
        presented(addr, &ca, Some(&intake)).await.is_ok(),
        "mTLS client"
    );
    assert!(
        presented(addr, &ca, None).await.is_ok(),
        "a client without a certificate"
    );
    let forged = Ca::new("Forger").leaf("intake.motcua");
    assert!(
        presented(addr, &ca, Some(&forged)).await.is_err(),
        "a client certificate from another CA must be refused"
    );
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_rotated_certificate_reaches_new_connections_without_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("Motcua test CA");
    let first = ca.leaf("localhost");
    let tls = files(dir.path(), &first, None);
    let (addr, stop) = serve(tls.clone()).await?;
    assert_eq!(presented(addr, &ca, None).await?, der(&first));
    // A long-lived connection opened before the rotation.
    let before = endpoint(addr, Some(trusting(&ca)))?.connect().await?;

    // Rotation writes the key, then the certificate: the server must never
    // pair the new key with the old certificate.
    let second = ca.leaf("localhost");
    write(dir.path(), "key.pem", &second.key);
    write(dir.path(), "cert.pem", &second.cert);
    eventually("the new certificate is presented", || async {
        presented(addr, &ca, None).await.ok() == Some(der(&second))
    })
    .await?;
    assert_eq!(health(before).await?, 1, "an open connection keeps working");

    // Files that do not load leave the last good certificate in use.
    write(dir.path(), "key.pem", "not a key");
    tokio::time::sleep(tls.reload_every * 4).await;
    assert_eq!(presented(addr, &ca, None).await?, der(&second));
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_key_that_does_not_serve_the_certificate_fails_start_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("Motcua test CA");
    let (one, other) = (ca.leaf("localhost"), ca.leaf("localhost"));
    let mismatched = Leaf {
        cert: one.cert,
        key: other.key,
    };
    let error = serve(files(dir.path(), &mismatched, None))
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(error.contains("does not serve the certificate"), "{error}");

    let missing = TlsFiles {
        cert: dir.path().join("absent.pem"),
        ..files(dir.path(), &ca.leaf("localhost"), None)
    };
    let error = serve(missing)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(error.contains("absent.pem"), "{error}");
    Ok(())
}
