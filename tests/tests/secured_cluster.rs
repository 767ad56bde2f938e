//! The shipped cluster configuration (`deploy/nats/cluster.conf`) run as
//! three real nats-server processes on loopback: routes over TLS verified
//! both ways, every client over TLS as its own user. Intake, as the user
//! `intake`, raises the stream to three replicas; the projection reads it
//! as `projection`; a node killed and brought back loses nothing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use async_nats::{ConnectOptions, jetstream};
use testkit::NatsConfig;
use tests::{
    Backend, Desk, NatsServer, Province, TestDb, eventually, free_port, start_intake_configured,
    start_projection_configured,
};

/// The stream and subjects the shipped configuration names.
const STREAM: &str = "MOTCUA_EVENTS";
const PREFIX: &str = "motcua.events";
const INTAKE_PASSWORD: &str = "intake-test-only-3f9c1a";
const PROJECTION_PASSWORD: &str = "projection-test-only-8e2d7b";

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/nats")
        .join(name)
}

fn user(name: &str, password: &str, ca: &Path) -> ConnectOptions {
    ConnectOptions::with_user_and_password(name.to_owned(), password.to_owned())
        .add_root_certificates(ca.to_path_buf())
        .require_tls(true)
}

/// Three nodes of the shipped configuration, each with its own store.
async fn start_cluster(dir: &Path) -> anyhow::Result<Vec<NatsServer>> {
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_list = format!(
        "[{}]",
        routes
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut nodes = Vec::new();
    for (index, route) in routes.iter().enumerate() {
        let mut env = tests::shipped_nats_env(
            dir,
            &format!("store-{index}"),
            INTAKE_PASSWORD,
            PROJECTION_PASSWORD,
        );
        env.extend([
            (
                "MOTCUA_NATS_SERVER_NAME".to_owned(),
                format!("n{}", index + 1),
            ),
            (
                "MOTCUA_NATS_CLUSTER_LISTEN".to_owned(),
                format!("127.0.0.1:{route}"),
            ),
            ("MOTCUA_NATS_ROUTES".to_owned(), route_list.clone()),
        ]);
        let ca = dir.join("ca.pem");
        nodes.push(
            NatsServer::start_configured(NatsConfig {
                file: shipped("cluster.conf"),
                env,
                probe: Box::new(move || user("projection", PROJECTION_PASSWORD, &ca)),
            })
            .await?,
        );
    }
    Ok(nodes)
}

fn seeds(nodes: &[NatsServer]) -> String {
    nodes
        .iter()
        .map(|n| format!("tls://127.0.0.1:{}", n.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// A service's flags: the shipped stream, every node a seed, over TLS as
/// `name`.
fn secure(shared: &mut server::SharedArgs, nodes: &[NatsServer], dir: &Path, name: &str) {
    shared.nats_url = seeds(nodes);
    shared.stream = STREAM.to_owned();
    shared.subject_prefix = PREFIX.to_owned();
    shared.nats_ca = Some(dir.join("ca.pem"));
    shared.nats_user = Some(name.to_owned());
    shared.nats_password_file = Some(dir.join(format!("{name}.password")));
}

async fn received_today(province: &Province, expected: u64) -> anyhow::Result<()> {
    let today = tests::real_now().local_day();
    eventually(Duration::from_secs(60), || async {
        let figures = province.statistics("TUYPHONG", today, today).await?;
        anyhow::ensure!(figures.received == expected, "not projected: {figures:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_cluster_keeps_the_stream_through_a_node_death() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let dir = tempfile::tempdir()?;
    tests::test_certificates(dir.path())?;
    std::fs::write(dir.path().join("intake.password"), INTAKE_PASSWORD)?;
    std::fs::write(dir.path().join("projection.password"), PROJECTION_PASSWORD)?;
    let mut nodes = start_cluster(dir.path()).await?;

    let (intake_db, projection_db) = (
        TestDb::new(Backend::Sqlite, "intake").await?,
        TestDb::new(Backend::Sqlite, "projection").await?,
    );
    let mut config = intake::Config::for_tests(&intake_db.url, "", STREAM);
    secure(&mut config.shared, &nodes, dir.path(), "intake");
    config.shared.stream_replicas = Some(3);
    let (intake, store) = start_intake_configured(config, intake::system_clock()).await?;
    let mut config = projection::Config::for_tests(&projection_db.url, "", STREAM);
    secure(&mut config.shared, &nodes, dir.path(), "projection");
    let projection = start_projection_configured(config).await?;
    let province = Province::connect(projection.addr).await?;
    let desk = Desk::connect(intake.addr).await?;

    desk.receive_with(tests::receipt_due_later("D-1")).await?;
    received_today(&province, 1).await?;
    let ca = dir.path().join("ca.pem");
    let client = user("projection", PROJECTION_PASSWORD, &ca)
        .connect(seeds(&nodes).split(',').collect::<Vec<_>>().as_slice())
        .await?;
    let info = jetstream::new(client)
        .get_stream(STREAM)
        .await?
        .info()
        .await?
        .clone();
    assert_eq!(
        info.config.num_replicas, 3,
        "intake raised the stream to three"
    );

    // A node dies: the stream keeps a quorum, and both services go on.
    nodes[0].kill();
    for (n, dossier) in (2..).zip(["D-2", "D-3"]) {
        desk.receive_with(tests::receipt_due_later(dossier)).await?;
        received_today(&province, n).await?;
    }
    nodes[0].restart().await?;
    desk.receive_with(tests::receipt_due_later("D-4")).await?;
    received_today(&province, 4).await?;
    assert_eq!(store.head().await?, 4);

    projection.shutdown().await?;
    intake.shutdown().await
}
