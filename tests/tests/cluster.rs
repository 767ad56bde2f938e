//! Intake and the projection on a three-node JetStream cluster of real
//! `nats-server` processes, the stream raised from one replica to three by
//! configuration, each service given every node as a seed. A node killed (SIGKILL) under desk load and
//! brought back, first one that does not lead the stream, then its
//! leader, loses nothing and doubles nothing: the district's commands (the
//! client's ledger: each has a request id and is retried until answered)
//! are each in the log once, each position is in the stream once, and the
//! figures are the file's.

use std::{collections::BTreeMap, time::Duration};

use async_nats::jetstream;
use futures::StreamExt as _;
use tests::{
    Backend, NatsCluster, Province, TestDb, district, eventually, start_intake_configured,
    start_projection_configured, unique_stream,
};

/// Which node a round kills.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// A node holding a replica the stream's leader does not.
    Follower,
    /// The stream's leader.
    Leader,
}

/// The index of the node that leads `stream` now.
async fn stream_leader(cluster: &NatsCluster, stream: &str) -> anyhow::Result<usize> {
    let js = jetstream::new(cluster.client().await?);
    eventually(Duration::from_secs(30), || async {
        let info = js.get_stream(stream).await?.info().await?.clone();
        let leader = info
            .cluster
            .and_then(|c| c.leader)
            .ok_or_else(|| anyhow::anyhow!("no leader yet"))?;
        cluster
            .index_of(&leader)
            .ok_or_else(|| anyhow::anyhow!("an unknown leader {leader}"))
    })
    .await
}

/// How many times each position is in the stream, read from its start.
async fn positions_in(cluster: &NatsCluster, stream: &str) -> anyhow::Result<BTreeMap<u64, u32>> {
    let js = jetstream::new(cluster.client().await?);
    let mut stream = js.get_stream(stream).await?;
    let last = stream.info().await?.state.last_sequence;
    let reader = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = reader.messages().await?.take(usize::try_from(last)?);
    let mut seen = BTreeMap::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await?
    {
        let message = message?;
        let position = bus::position_of(message.headers.as_ref())
            .ok_or_else(|| anyhow::anyhow!("a message without a position"))?;
        *seen.entry(position).or_insert(0) += 1;
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_and_doubles_nothing() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let mut cluster = NatsCluster::start(3).await?;
    let stream = unique_stream();
    let intake_db = TestDb::new(Backend::Sqlite, "intake").await?;
    let projection_db = TestDb::new(Backend::Sqlite, "projection").await?;
    // The stream exists with one replica, as a deployment on one node left
    // it; configured for three, intake raises it to three.
    tests::stream_settings(&stream)
        .ensure_stream(&jetstream::new(cluster.client().await?))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut intake_config = intake::Config::for_tests(&intake_db.url, &cluster.urls(), &stream);
    intake_config.shared.stream_replicas = Some(3);
    let (intake, store) = start_intake_configured(intake_config, intake::system_clock()).await?;
    let mut projection_config =
        projection::Config::for_tests(&projection_db.url, &cluster.urls(), &stream);
    projection_config.shared.stream_replicas = Some(3);
    let projection = start_projection_configured(projection_config).await?;
    let province = Province::connect(projection.addr).await?;

    let info = jetstream::new(cluster.client().await?)
        .get_stream(&stream)
        .await?
        .info()
        .await?
        .clone();
    let mut peers: Vec<String> = info
        .cluster
        .iter()
        .flat_map(|c| {
            c.replicas
                .iter()
                .map(|p| p.name.clone())
                .chain(c.leader.clone())
        })
        .collect();
    peers.sort();
    peers.dedup();
    assert_eq!(
        (info.config.num_replicas, peers.len()),
        (3, 3),
        "the stream on every node: {peers:?}"
    );
    // Each round drives years of its own and kills a node a quarter of the
    // way through them, so the load runs at the kill however fast this
    // machine is: a follower in the first round, the leader in the second.
    let desk = tests::Desk::connect(intake.addr).await?;
    let rounds = [
        (Victim::Follower, [2015, 2016]),
        (Victim::Leader, [2017, 2018]),
    ];
    let (mut scripts, mut commands) = (Vec::new(), 0);
    for (victim, years) in rounds {
        let round = district::years(&years)?;
        let before = scripts.len() as u64;
        let quarter = before + round.len() as u64 / 4;
        scripts.extend(round.iter().cloned());
        let load = tokio::spawn({
            let desk = desk.clone();
            async move { district::drive(&desk, round, 32).await }
        });
        let at_kill = eventually(Duration::from_secs(120), || async {
            let received = district::snapshot(&province).await?.whole.received;
            anyhow::ensure!(received >= quarter, "load not far enough: {received}");
            Ok(received)
        })
        .await?;
        anyhow::ensure!(
            !load.is_finished(),
            "the load ended before the {victim:?} died"
        );
        let leader = stream_leader(&cluster, &stream).await?;
        let index = match victim {
            Victim::Follower => (leader + 1) % cluster.len(),
            Victim::Leader => leader,
        };
        cluster.kill(index);
        // The load goes on with the node down, and reaches the figures.
        eventually(Duration::from_secs(60), || async {
            let received = district::snapshot(&province).await?.whole.received;
            anyhow::ensure!(
                received >= at_kill + 500,
                "{victim:?} n{} down: {received} received, {at_kill} at the kill",
                index + 1
            );
            Ok(())
        })
        .await?;
        cluster.restart(index).await?;
        commands += load.await??;
    }
    let seen = district::wait_for(&province, &scripts).await?;

    assert_eq!(
        store.count_desk_events().await?,
        commands,
        "each command once in the log"
    );
    let head = store.head().await?;
    let positions = positions_in(&cluster, &stream).await?;
    let doubled: Vec<_> = positions.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "positions in the stream more than once: {doubled:?}"
    );
    assert_eq!(
        positions.keys().copied().collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>(),
        "every position of the log in the stream"
    );
    district::assert_figures_match(&seen)?;
    projection.shutdown().await?;
    intake.shutdown().await
}
