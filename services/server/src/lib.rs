//! How a Motcua service process starts, serves and stops, written once for
//! both services: the flags they share ([`SharedArgs`]), the binary's
//! `main` ([`run`]: configuration, telemetry, signals, build, run, one
//! clear line and a failing exit code on error), the gRPC server
//! ([`GrpcServer`]: health and reflection for exactly the services added,
//! TLS from files reloaded when they change ([`ReloadingTls`]), bearer
//! tokens checked in front of every service ([`AuthLayer`]), the
//! answer to a call outside the caller's scope ([`authorize`]), limits on
//! message size, streams and each caller's rate ([`Limits`]), graceful
//! stop) and draining background work under a time limit
//! ([`drain`]).
//!
//! This crate must not know about dossiers, events, databases or any of
//! Motcua's own gRPC services: a service hands it what it serves.

mod args;
mod auth;
mod grpc;
mod jwks;
mod limits;
mod rate;
mod reflection;
mod run;
mod scope;
mod size;
mod tls;

pub use args::SharedArgs;
pub use auth::{AuthFiles, AuthLayer, Authenticate, identity_of};
pub use grpc::GrpcServer;
pub use jwks::JwksSource;
pub use limits::{LimitArgs, Limits, Rate, RateSetting};
pub use rate::{RateLimit, RateLimitLayer};
pub use reflection::{HEALTH_SERVICE, REFLECTION_SERVICES, listed_services};
pub use run::{Service, ServiceConfig, drain, run};
pub use scope::{ERROR_DOMAIN, OUTSIDE_SCOPE, authorize, authorize_whole_log, permission_denied};
pub use size::{MessageSize, MessageSizeLayer};
pub use tls::{ReloadingTls, TlsFiles};
