//! gRPC server reflection that lists exactly what a server serves.
//!
//! Built from every descriptor set the workspace has, tonic's reflection
//! lists every service those files declare: intake listed the projection's
//! reports and the projection intake's desk, which answer `UNIMPLEMENTED`
//! there. [`crate::GrpcServer`] lists what was added to it instead; the standard health
//! and reflection services are added here. Both reflection versions are
//! served: grpcurl and most tools speak `v1`, while many clients (grpcio's
//! Python reflection client among them) speak only `v1alpha`.

use anyhow::Context as _;
use tonic_reflection::server::{Builder, v1, v1alpha};

/// The health service every Motcua server serves.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
/// The two reflection services every Motcua server serves.
pub const REFLECTION_SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// What a server lists: its own `services` plus health and reflection.
pub fn listed_services(services: &[&str]) -> Vec<String> {
    services
        .iter()
        .copied()
        .chain([HEALTH_SERVICE])
        .chain(REFLECTION_SERVICES)
        .map(str::to_owned)
        .collect()
}

fn builder(descriptor_set: &'static [u8], services: &[&str]) -> Builder<'static> {
    let builder = Builder::configure()
        // Both versions' files, registered once each, so either version
        // describes both services.
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    listed_services(services)
        .into_iter()
        .fold(builder, Builder::with_service_name)
}

/// Reflection `v1` listing `services` (fully qualified names, described in
/// `descriptor_set`), health and reflection.
pub(crate) fn reflection_v1(
    descriptor_set: &'static [u8],
    services: &[&str],
) -> anyhow::Result<v1::ServerReflectionServer<impl v1::ServerReflection>> {
    builder(descriptor_set, services)
        .build_v1()
        .context("build the reflection service (v1)")
}

/// Reflection `v1alpha`, listing the same as [`reflection_v1`].
pub(crate) fn reflection_v1alpha(
    descriptor_set: &'static [u8],
    services: &[&str],
) -> anyhow::Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>> {
    builder(descriptor_set, services)
        .build_v1alpha()
        .context("build the reflection service (v1alpha)")
}
