//! Server reflection lists exactly what each address serves, in both
//! versions of the reflection protocol (grpcio's Python client speaks only
//! `v1alpha`).

use std::{collections::BTreeSet, net::SocketAddr};

use anyhow::Context as _;
use futures::StreamExt as _;
use tests::{Backend, Pair};
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

/// A function asking reflection version `$version` for the services an
/// address lists and the file that declares a symbol. The two versions'
/// messages are the same but distinct types, hence a macro.
macro_rules! lister {
    ($name:ident, $version:ident) => {
        async fn $name(
            addr: SocketAddr,
            symbol: &str,
        ) -> anyhow::Result<(BTreeSet<String>, String)> {
            use $version::server_reflection_request::MessageRequest;
            use $version::server_reflection_response::MessageResponse;
            let mut client = $version::server_reflection_client::ServerReflectionClient::new(
                channel(addr).await?,
            );
            let requests = [
                MessageRequest::ListServices(String::new()),
                MessageRequest::FileContainingSymbol(symbol.into()),
            ]
            .map(|r| $version::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(r),
            });
            let mut answers = client
                .server_reflection_info(futures::stream::iter(requests))
                .await?
                .into_inner();
            let mut services = BTreeSet::new();
            let mut file = String::new();
            while let Some(answer) = answers.next().await {
                match answer?.message_response.context("an answer")? {
                    MessageResponse::ListServicesResponse(list) => {
                        services.extend(list.service.into_iter().map(|s| s.name));
                    }
                    MessageResponse::FileDescriptorResponse(files) => {
                        let first = files.file_descriptor_proto.first().context("a file")?;
                        file = <prost_types::FileDescriptorProto as prost::Message>::decode(
                            &first[..],
                        )?
                        .name()
                        .to_owned();
                    }
                    MessageResponse::ErrorResponse(e) => {
                        anyhow::bail!("{symbol}: {}", e.error_message)
                    }
                    other => anyhow::bail!("unexpected answer {other:?}"),
                }
            }
            Ok((services, file))
        }
    };
}

lister!(list_v1, v1);
lister!(list_v1alpha, v1alpha);

fn expected(own: &[&str]) -> BTreeSet<String> {
    own.iter()
        .copied()
        .chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ])
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_address_lists_exactly_what_it_serves_in_both_versions() -> anyhow::Result<()> {
    let pair = Pair::start(Backend::Sqlite).await?;
    let intake = expected(&[
        "motcua.intake.v1.Intake",
        "motcua.intake.v1.Log",
        "motcua.intake.v1.DossierService",
    ]);
    let projection = expected(&[
        "motcua.reports.v1.Reports",
        "motcua.reports.v1.Deadlines",
        "motcua.reports.v1.Rebuilds",
        "motcua.admin.v1.ParkedEvents",
    ]);
    let intake_file = "motcua/intake/v1/intake.proto";
    assert_eq!(
        list_v1(pair.intake.addr, "motcua.intake.v1.Intake").await?,
        (intake.clone(), intake_file.to_owned())
    );
    assert_eq!(
        list_v1alpha(pair.intake.addr, "motcua.intake.v1.Intake").await?,
        (intake, intake_file.to_owned())
    );
    let reports_file = "motcua/reports/v1/reports.proto";
    assert_eq!(
        list_v1(pair.projection.addr, "motcua.reports.v1.Reports").await?,
        (projection.clone(), reports_file.to_owned())
    );
    assert_eq!(
        list_v1alpha(pair.projection.addr, "motcua.reports.v1.Reports").await?,
        (projection, reports_file.to_owned())
    );
    // Each reflection version describes the other too.
    let (_, alpha) = list_v1(
        pair.projection.addr,
        "grpc.reflection.v1alpha.ServerReflection",
    )
    .await?;
    assert!(alpha.contains("reflection"), "{alpha}");
    Ok(())
}
