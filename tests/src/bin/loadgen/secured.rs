//! `loadgen secured`: what TLS and token checks cost (issue 21's
//! performance lines), measured against the same work without them in the
//! same run, the two in turn.
//!
//! - Desk commands: intake over TLS with a clerk's JWT verified on every
//!   call (EdDSA, against a JWKS) against intake in plaintext without
//!   authentication, each with `clients` concurrent clients, each on its
//!   own database and stream of one nats-server.
//! - Reports: a province's statistics read over TLS with a province
//!   reader's JWT, scope checked, against the same report read in
//!   plaintext without authentication, from two projections of the same
//!   stream; and an office's statistics read by that reader, whose scope
//!   check reads the office's province from the read models.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use proto::{
    intake::v1::intake_client::IntakeClient,
    reports::v1::{self as rp, reports_client::ReportsClient},
};
use server::Service as _;
use tests::{Backend, InProcess, NatsServer, TestDb, start_intake, unique_stream};
use tokio_util::sync::CancellationToken;
use tonic::{
    metadata::AsciiMetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{
    ROUNDS,
    desk::{DeskSide, OFFICE, PROVINCE, print_rounds, with},
    hammer,
};

const KEYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../services/identity/tests/keys"
);
const ISSUER: &str = "https://id.bench.local";

/// `Bearer <JWT>` for `role` of the bench's office or province.
fn bearer(role: &str) -> anyhow::Result<AsciiMetadataValue> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let office = (role == "clerk").then_some(OFFICE);
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "motcua", "exp": now + 3600, "nbf": now - 10,
        "sub": format!("bench-{role}"), "motcua_role": role,
        "motcua_province": PROVINCE, "motcua_office": office,
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed-1".into());
    let key = EncodingKey::from_ed_pem(&std::fs::read(format!("{KEYS}/ed25519.pem"))?)?;
    Ok(format!("Bearer {}", encode(&header, &claims, &key)?).parse()?)
}

fn secure(shared: &mut server::SharedArgs, dir: &std::path::Path) {
    shared.tls_cert = Some(dir.join("cert.pem"));
    shared.tls_key = Some(dir.join("key.pem"));
    shared.auth_jwks = Some(format!("{KEYS}/jwks.json"));
    shared.auth_issuer = Some(ISSUER.into());
    shared.province = Some(PROVINCE.into());
}

async fn tls_channel(addr: std::net::SocketAddr, ca: &str) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    Ok(
        Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
            .tls_config(tls)?
            .connect()
            .await?,
    )
}

async fn plain_channel(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

pub async fn secured(backend: Backend, clients: usize, duration: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = tests::test_certificates(dir.path())?;
    let nats = NatsServer::start().await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let dbs = [
        TestDb::new(backend, "bench_plain_intake").await?,
        TestDb::new(backend, "bench_secured_intake").await?,
    ];
    let plain_stream = unique_stream();
    let (service, store) = start_intake(&dbs[0].url, &nats.url(), &plain_stream).await?;
    let plain = DeskSide {
        client: IntakeClient::new(plain_channel(service.addr).await?),
        token: None,
        js: js.clone(),
        stream: plain_stream,
        service,
        store,
    };
    let secured_stream = unique_stream();
    let mut config = intake::Config::for_tests(&dbs[1].url, &nats.url(), &secured_stream);
    secure(&mut config.shared, dir.path());
    let app = intake::Application::build(config).await?;
    let (addr, store) = (app.local_addr(), app.store().clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    let secured = DeskSide {
        client: IntakeClient::new(tls_channel(addr, &ca).await?),
        token: Some(bearer("clerk")?),
        js: js.clone(),
        stream: secured_stream,
        service: InProcess { addr, stop, task },
        store,
    };

    let slice = duration / ROUNDS;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let p = plain.round(&format!("P{round}"), clients, slice).await?;
        let s = secured.round(&format!("S{round}"), clients, slice).await?;
        rounds.push((p, s));
    }
    println!(
        "desk commands ({backend:?}, {clients} clients, every reply durable; plaintext and TLS+JWT in turn, {ROUNDS} rounds of {slice:?})"
    );
    print_rounds(&rounds, "plaintext, no auth", "TLS + JWT (clerk)");
    let plain_stream = plain.stream.clone();
    let events = plain.store.count().await?;
    plain.service.shutdown().await?;
    secured.service.shutdown().await?;

    reports(
        backend,
        &nats,
        &plain_stream,
        events,
        dir.path(),
        &ca,
        clients,
        duration,
    )
    .await
}

/// A projection of `stream`, with authentication and TLS when `dir` is
/// given; waits until it has applied `events`.
async fn projection(
    db: &TestDb,
    nats: &NatsServer,
    stream: &str,
    events: u64,
    secured: Option<&std::path::Path>,
) -> anyhow::Result<InProcess> {
    let mut config = projection::Config::for_tests(&db.url, &nats.url(), stream);
    if let Some(dir) = secured {
        secure(&mut config.shared, dir);
        // Its own durable consumer: two projections on one name would
        // take it from each other.
        config.consumer = "projection-secured".to_owned();
    }
    let consumer = config.consumer.clone();
    let app = projection::Application::build(config).await?;
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    tests::eventually(Duration::from_secs(600), || async {
        let applied = projection::serving_checkpoint(&db.url, &consumer).await?;
        anyhow::ensure!(applied >= events, "{applied} of {events} applied");
        Ok(())
    })
    .await
    .context("the projection catches up")?;
    Ok(InProcess { addr, stop, task })
}

/// Statistics of today: the bench's receipts all fall on it.
fn statistics(unit: rp::scope::Unit) -> rp::StatisticsRequest {
    let (year, month, day) = tests::real_now().local_day().ymd();
    let today = Some(rp::LocalDate {
        year,
        month: i32::from(month),
        day: i32::from(day),
    });
    rp::StatisticsRequest {
        scope: Some(rp::Scope {
            unit: Some(unit),
            ..Default::default()
        }),
        first_day: today,
        last_day: today,
        as_of: None,
    }
}

/// Statistics of `unit` read by `clients` clients for `duration`; reads/s.
async fn read_round(
    client: &ReportsClient<Channel>,
    token: Option<&AsciiMetadataValue>,
    unit: rp::scope::Unit,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let (client, token, request) = (client.clone(), token.cloned(), Arc::new(statistics(unit)));
    let (rate, _) = hammer(clients, duration, move |_| {
        let (mut client, token, request) = (client.clone(), token.clone(), request.clone());
        async move {
            let reply = client
                .get_statistics(with(token.as_ref(), (*request).clone()))
                .await?;
            anyhow::ensure!(reply.get_ref().received > 0, "empty figures");
            Ok(())
        }
    })
    .await?;
    Ok(rate)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one bench's set-up, passed on once"
)]
async fn reports(
    backend: Backend,
    nats: &NatsServer,
    stream: &str,
    events: u64,
    dir: &std::path::Path,
    ca: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let dbs = [
        TestDb::new(backend, "bench_plain_projection").await?,
        TestDb::new(backend, "bench_secured_projection").await?,
    ];
    let open = projection(&dbs[0], nats, stream, events, None).await?;
    let guarded = projection(&dbs[1], nats, stream, events, Some(dir)).await?;
    let plain = ReportsClient::new(plain_channel(open.addr).await?);
    let secured = ReportsClient::new(tls_channel(guarded.addr, ca).await?);
    let reader = bearer("province_reader")?;
    let province = || rp::scope::Unit::ProvinceCode(PROVINCE.into());
    let office = || rp::scope::Unit::OfficeCode(OFFICE.into());
    let slice = duration / ROUNDS;
    let (mut by_province, mut by_office) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let base = read_round(&plain, None, province(), clients, slice).await?;
        let scoped = read_round(&secured, Some(&reader), province(), clients, slice).await?;
        by_province.push((base, scoped));
        let base = read_round(&plain, None, office(), clients, slice).await?;
        let scoped = read_round(&secured, Some(&reader), office(), clients, slice).await?;
        by_office.push((base, scoped));
    }
    println!(
        "province statistics ({backend:?}, {events} events, {clients} clients; plaintext and TLS+JWT in turn, {ROUNDS} rounds of {slice:?})"
    );
    print_rounds(
        &by_province,
        "plaintext, unscoped",
        "TLS + JWT, province reader",
    );
    println!(
        "office statistics, read by the province reader (its scope check reads the office's province)"
    );
    print_rounds(
        &by_office,
        "plaintext, unscoped",
        "TLS + JWT, province reader",
    );
    open.shutdown().await?;
    guarded.shutdown().await
}
