//! `loadgen cluster`: what a replicated stream costs intake (issue 22's
//! performance line): intake publishing to a three-node JetStream cluster
//! with the stream at three replicas, against the same intake publishing
//! to one nats-server, in the same run, the two in turn. A round counts
//! once its events are in the stream, so the relay's acknowledged
//! publishing (a quorum of replicas per batch) is part of the rate. All
//! four servers share this machine's cores.

use std::time::Duration;

use proto::intake::v1::intake_client::IntakeClient;
use tests::{Backend, NatsCluster, NatsServer, TestDb, start_intake, unique_stream};
use tonic::transport::Endpoint;

use super::{
    ROUNDS,
    desk::{DeskSide, print_rounds},
};

async fn side(
    service: tests::InProcess,
    store: intake::EventStore,
    js: async_nats::jetstream::Context,
    stream: String,
) -> anyhow::Result<DeskSide> {
    let channel = Endpoint::from_shared(format!("http://{}", service.addr))?
        .connect()
        .await?;
    Ok(DeskSide {
        client: IntakeClient::new(channel),
        token: None,
        js,
        stream,
        service,
        store,
    })
}

pub async fn cluster(backend: Backend, clients: usize, duration: Duration) -> anyhow::Result<()> {
    let single = NatsServer::start().await?;
    let nodes = NatsCluster::start(3).await?;
    let dbs = [
        TestDb::new(backend, "bench_single_intake").await?,
        TestDb::new(backend, "bench_cluster_intake").await?,
    ];
    let stream = unique_stream();
    let (service, store) = start_intake(&dbs[0].url, &single.url(), &stream).await?;
    let js = async_nats::jetstream::new(async_nats::connect(single.url()).await?);
    let one = side(service, store, js, stream).await?;
    let stream = unique_stream();
    let mut config = intake::Config::for_tests(&dbs[1].url, &nodes.urls(), &stream);
    config.shared.stream_replicas = Some(3);
    let (service, store) = tests::start_intake_configured(config, intake::system_clock()).await?;
    let js = async_nats::jetstream::new(nodes.client().await?);
    let three = side(service, store, js, stream).await?;

    let slice = duration / ROUNDS;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let base = one.round(&format!("ONE{round}"), clients, slice).await?;
        let replicated = three.round(&format!("R3{round}"), clients, slice).await?;
        rounds.push((base, replicated));
    }
    println!(
        "desk commands ({backend:?}, {clients} clients, every reply durable, counted once in the stream; one node and a three-node R3 cluster in turn, {ROUNDS} rounds of {slice:?})"
    );
    print_rounds(&rounds, "1 node, R1", "3 nodes, R3");
    one.service.shutdown().await?;
    three.service.shutdown().await
}
