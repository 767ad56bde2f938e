//! `loadgen cluster`: what a replicated stream costs intake (issue 22's
//! performance line): intake publishing to a three-node JetStream cluster
//! with the stream at three replicas, against the same intake publishing
//! to one nats-server, in the same run, the two in turn. A round counts
//! once its events are in the stream, so the relay's acknowledged
//! publishing (a quorum of replicas per batch) is part of the rate. All
//! four servers share this machine's cores.
//!
//! Then failover: under a steady desk load the node leading the stream is
//! killed (SIGKILL), and the time is taken until a projection of the
//! cluster's stream has applied every event intake had committed when the
//! node died: the relay finding the new leader, publishing again, and the
//! projection's consumer delivering again, all in one figure.

use std::time::{Duration, Instant};

use anyhow::Context as _;

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

    let db = TestDb::new(backend, "bench_cluster_projection").await?;
    failover(nodes, &three, &db).await?;
    three.service.shutdown().await
}

/// Kills the stream's leader, then a follower, twice over, under load;
/// prints how long the projection took each time to apply what intake had
/// committed when the node died.
async fn failover(mut nodes: NatsCluster, three: &DeskSide, db: &TestDb) -> anyhow::Result<()> {
    let config = projection::Config::for_tests(&db.url, &nodes.urls(), &three.stream);
    let consumer = config.consumer.clone();
    let projection = tests::start_projection_configured(config).await?;
    let applied = || projection::serving_checkpoint(&db.url, &consumer);
    let committed = three.store.count().await?;
    tests::eventually(Duration::from_secs(600), || async {
        let done = applied().await?;
        anyhow::ensure!(done >= committed, "{done} of {committed} applied");
        Ok(())
    })
    .await?;
    println!("failover (a node killed under 16 clients' load):");
    for (kill, leads) in (1..).zip([true, false, true, false]) {
        let load = three.load(&format!("F{kill}"), 16, Duration::from_secs(6));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = leader_of(&nodes, &three.stream).await?;
        let victim = if leads {
            leader
        } else {
            (leader + 1) % nodes.len()
        };
        let died = Instant::now();
        nodes.kill(victim);
        let committed = three.store.count().await?;
        let js = async_nats::jetstream::new(nodes.client().await?);
        let mut published = None;
        loop {
            if published.is_none() && last_in_stream(&js, &three.stream).await >= committed {
                published = Some(died.elapsed());
            }
            if applied().await? >= committed {
                break;
            }
            anyhow::ensure!(
                died.elapsed() < Duration::from_secs(60),
                "no progress in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let caught_up = died.elapsed();
        let rate = load.await??;
        nodes.restart(victim).await?;
        println!(
            "  kill {kill}: n{} ({}) died; every event committed then published after {:>5} ms, applied after {:>5} ms (load {rate:.0}/s)",
            victim + 1,
            if leads {
                "the stream's leader"
            } else {
                "a follower"
            },
            published.unwrap_or(caught_up).as_millis(),
            caught_up.as_millis()
        );
    }
    projection.shutdown().await
}

/// The stream's last sequence; 0 while no node answers for it.
async fn last_in_stream(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(stream) => stream.cached_info().state.last_sequence,
        Err(_) => 0,
    }
}

/// The index of the node leading `stream`, once it has one.
async fn leader_of(nodes: &NatsCluster, stream: &str) -> anyhow::Result<usize> {
    let js = async_nats::jetstream::new(nodes.client().await?);
    tests::eventually(Duration::from_secs(30), || async {
        let info = js.get_stream(stream).await?.info().await?.clone();
        let leader = info.cluster.and_then(|c| c.leader).context("no leader")?;
        nodes.index_of(&leader).context("an unknown leader")
    })
    .await
}
