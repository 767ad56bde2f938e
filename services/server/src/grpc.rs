//! The gRPC server both services run: their services, the standard health
//! service reporting each as serving, reflection (`v1` and `v1alpha`)
//! listing exactly what was added, and a graceful stop on a token.

use std::{convert::Infallible, sync::Arc};

use identity::Authenticator;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    codegen::{Service, http::Request},
    server::NamedService,
    service::Routes,
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    AuthLayer, Limits, MessageSizeLayer, RateLimitLayer, ReloadingTls, TlsFiles, reflection,
};

/// A gRPC server being assembled. Each service added is served, reported
/// `SERVING` by the health service and listed by reflection; nothing else
/// is listed.
pub struct GrpcServer {
    descriptor_set: &'static [u8],
    routes: Routes,
    served: Vec<&'static str>,
    health: HealthReporter,
    tls: Option<(ReloadingTls, CancellationToken)>,
    auth: Option<Arc<Authenticator>>,
    /// Paths served without credentials besides health and reflection.
    open: Vec<&'static str>,
    limits: Limits,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

impl GrpcServer {
    /// A server whose services are described in `descriptor_set` (an
    /// encoded `FileDescriptorSet`, for reflection).
    pub fn new(descriptor_set: &'static [u8]) -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        Self {
            descriptor_set,
            routes: Routes::new(health_service),
            served: Vec::new(),
            health,
            tls: None,
            auth: None,
            open: Vec::new(),
            limits: Limits::default(),
        }
    }

    /// Serves the RPC at `path` (`/package.Service/Method`) without
    /// credentials even when authentication is on: for a caller who has
    /// none, such as a citizen with a lookup code. The rate limit still
    /// counts it, by the caller's address.
    #[must_use]
    pub fn open_to_anyone(mut self, path: &'static str) -> Self {
        self.open.push(path);
        self
    }

    /// Limits what each caller may send ([`Limits::default`] when not
    /// called). The request message size is also each generated server's
    /// `max_decoding_message_size`, which the service sets: this server
    /// refuses a larger message first, with the status a client expects.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Requires every call but health and reflection to carry credentials
    /// `auth` accepts (no check when `None`); the identity is left in the
    /// request's extensions ([`crate::identity_of`]).
    #[must_use]
    pub fn with_auth(mut self, auth: Option<Arc<Authenticator>>) -> Self {
        self.auth = auth;
        self
    }

    /// Serves over TLS from `files` (plaintext when `None`). Loads them now,
    /// so that a missing file or a key that does not match fails start-up.
    pub fn with_tls(mut self, files: Option<TlsFiles>) -> anyhow::Result<Self> {
        if let Some(files) = files {
            let stop = CancellationToken::new();
            self.tls = Some((ReloadingTls::start(files, stop.clone())?, stop));
        }
        Ok(self)
    }

    /// The health reporter, for a service that reports more than
    /// `SERVING` (intake's relay).
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Adds a service.
    #[must_use]
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.served.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// The fully qualified names of the services added.
    pub fn served(&self) -> &[&'static str] {
        &self.served
    }

    /// Serves on `listener` until `shutdown` is cancelled, then stops
    /// taking calls and finishes those in flight.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        for name in &self.served {
            self.health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let routes = self
            .routes
            .add_service(reflection::reflection_v1(
                self.descriptor_set,
                &self.served,
            )?)
            .add_service(reflection::reflection_v1alpha(
                self.descriptor_set,
                &self.served,
            )?);
        // Outermost first: the size check wraps the body before anything
        // reads it, and the rate limit counts the identity auth found.
        let mut server = tonic::transport::Server::builder()
            .max_concurrent_streams(self.limits.max_streams)
            .layer(MessageSizeLayer::new(self.limits.max_message_size))
            .layer(AuthLayer::new(self.auth).open_to(self.open))
            .layer(RateLimitLayer::new(self.limits.rate));
        let router = server.add_routes(routes);
        let served = match self.tls {
            None => {
                router
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        shutdown.cancelled_owned(),
                    )
                    .await
            }
            Some((tls, stop_reloading)) => {
                let _stop_reloading = stop_reloading.drop_guard();
                router
                    .serve_with_incoming_shutdown(
                        tls.incoming(listener),
                        shutdown.cancelled_owned(),
                    )
                    .await
            }
        };
        served.context("serve gRPC")
    }
}
