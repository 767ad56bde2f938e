//! Authentication in front of every gRPC service: each call's
//! `authorization` metadata (or, for a call without one, the names of the
//! client certificate the TLS handshake verified) becomes an
//! [`identity::Identity`] in the
//! request's extensions, where the services' handlers judge what it may
//! do; a call without valid credentials is answered `UNAUTHENTICATED`
//! before any service sees it. Health and reflection stay open: probes and
//! tools call them without credentials, and they tell nothing about
//! dossiers.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use anyhow::Context as _;
use futures::future::{Either, Ready, ready};
use identity::{
    AuthError, Authenticator, CertificateIdentities, Identity, JwtSettings, StaticTokens,
};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::JwksSource;

/// Paths served without credentials.
const OPEN: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Whether `path` is health's or reflection's: served without
/// credentials, and not counted by the rate limit.
pub(crate) fn is_open(path: &str) -> bool {
    OPEN.iter().any(|open| path.starts_with(open))
}

/// Where identities come from, as the flags name them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthFiles {
    /// The identity provider's JWKS (a file or a URL), with the issuer and
    /// audience its tokens must carry.
    pub jwks: Option<(JwksSource, JwtSettings)>,
    /// A static token file.
    pub tokens: Option<std::path::PathBuf>,
    /// A file naming the identities client certificates stand for.
    pub client_certificates: Option<std::path::PathBuf>,
}

fn read_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read the {what} {}", path.display()))
}

impl AuthFiles {
    /// The authenticator, or `None` when no source is configured (the
    /// local, loopback-only mode). A JWKS URL is fetched now, and again
    /// while the authenticator lives ([`JwksSource::keep_fresh`]).
    pub async fn load(&self) -> anyhow::Result<Option<Arc<Authenticator>>> {
        let jwt = match &self.jwks {
            None => None,
            Some((source, settings)) => Some(source.verifier(settings).await?),
        };
        let tokens = match &self.tokens {
            None => None,
            Some(path) => Some(
                StaticTokens::parse(&read_file(path, "token file")?)
                    .with_context(|| format!("the token file {}", path.display()))?,
            ),
        };
        let certificates = match &self.client_certificates {
            None => None,
            Some(path) => Some(
                CertificateIdentities::parse(&read_file(path, "client certificate file")?)
                    .with_context(|| format!("the client certificate file {}", path.display()))?,
            ),
        };
        if jwt.is_none() && tokens.is_none() && certificates.is_none() {
            return Ok(None);
        }
        let mut auth = Authenticator::new(jwt, tokens);
        if let Some(certificates) = certificates {
            auth = auth.with_certificates(certificates);
        }
        let auth = Arc::new(auth);
        if let Some((source, settings)) = &self.jwks {
            source.clone().keep_fresh(&auth, settings.clone());
        }
        Ok(Some(auth))
    }
}

/// The caller's identity, as the authentication layer left it; `None`
/// when the server runs without authentication.
pub fn identity_of<T>(request: &tonic::Request<T>) -> Option<&Identity> {
    request.extensions().get::<Identity>()
}

/// A tower layer that authenticates every call but the open ones.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Option<Arc<Authenticator>>,
    open: Arc<[&'static str]>,
}

impl AuthLayer {
    pub fn new(auth: Option<Arc<Authenticator>>) -> Self {
        Self {
            auth,
            open: Arc::new([]),
        }
    }

    /// Also serves these exact paths without credentials.
    #[must_use]
    pub fn open_to(mut self, paths: Vec<&'static str>) -> Self {
        self.open = paths.into();
        self
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            auth: self.auth.clone(),
            open: self.open.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone, Debug)]
pub struct Authenticate<S> {
    inner: S,
    auth: Option<Arc<Authenticator>>,
    open: Arc<[&'static str]>,
}

fn refused(error: &AuthError) -> tonic::Status {
    let reason = match error {
        AuthError::Missing => "missing",
        AuthError::Malformed => "malformed",
        AuthError::Expired => "expired",
        AuthError::NotYetValid => "not_yet_valid",
        AuthError::WrongAudience => "wrong_audience",
        AuthError::WrongIssuer => "wrong_issuer",
        AuthError::BadSignature => "bad_signature",
        AuthError::UnknownKey => "unknown_key",
        AuthError::UnknownToken => "unknown_token",
        AuthError::UnknownCertificate => "unknown_certificate",
        AuthError::AmbiguousCertificate => "ambiguous_certificate",
        AuthError::BadClaims(_) => "bad_claims",
    };
    metrics::counter!("auth_refusals_total", "reason" => reason).increment(1);
    tonic::Status::unauthenticated(format!("credentials refused: {error}"))
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Authenticate<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let Some(auth) = &self.auth else {
            return Either::Left(self.inner.call(request));
        };
        let path = request.uri().path();
        if is_open(path) || self.open.contains(&path) {
            return Either::Left(self.inner.call(request));
        }
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.to_str().map_err(|_| AuthError::Malformed));
        let identity = match header.transpose() {
            Ok(None) if auth.takes_certificates() => match client_certificate_names(&request) {
                Some(names) => auth.authenticate_certificate(names.iter().map(String::as_str)),
                None => Err(AuthError::Missing),
            },
            Ok(value) => auth.authenticate(value),
            Err(e) => Err(e),
        };
        match identity {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Either::Left(self.inner.call(request))
            }
            Err(error) => Either::Right(ready(Ok(refused(&error).into_http()))),
        }
    }
}

/// The subject alternative names (URIs, then DNS names) of the client
/// certificate this call's connection presented, if it presented one. The
/// handshake has verified it against the client CAs; a certificate that
/// does not parse names nothing.
fn client_certificate_names<B>(request: &http::Request<B>) -> Option<Vec<String>> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    let leaf = webpki::EndEntityCert::try_from(certs.first()?).ok()?;
    Some(
        leaf.valid_uri_names()
            .chain(leaf.valid_dns_names())
            .map(str::to_owned)
            .collect(),
    )
}
