//! Both services as a province would expose them: gRPC over TLS (a test CA
//! made here, real rustls handshakes) and static bearer tokens. A call
//! without a valid token is refused `UNAUTHENTICATED` and appends nothing;
//! health stays open for probes; a valid token is served within its scope.

use server::Service as _;
use std::{path::Path, time::Duration};

use proto::{
    intake::v1::intake_client::IntakeClient,
    reports::v1::{self as rp, reports_client::ReportsClient},
};
use tests::{Backend, NatsServer, TestDb, unique_stream};
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Request,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const DESK_TOKEN: &str = "desk-1-secret-5f0c2a";

fn token_file(dir: &Path) -> anyhow::Result<()> {
    let text = format!(
        "[[token]]\nsha256 = \"{}\"\nsubject = \"desk-1\"\nrole = \"clerk\"\nprovince = \"BTH\"\noffice = \"TUYPHONG\"\n",
        identity::token_digest(DESK_TOKEN)
    );
    Ok(std::fs::write(dir.join("tokens.toml"), text)?)
}

fn secure(shared: &mut server::SharedArgs, dir: &Path) {
    shared.tls_cert = Some(dir.join("cert.pem"));
    shared.tls_key = Some(dir.join("key.pem"));
    shared.auth_tokens = Some(dir.join("tokens.toml"));
}

async fn channel(addr: std::net::SocketAddr, ca: &str) -> anyhow::Result<Channel> {
    tests::tls_channel(addr, ca, None).await
}

fn with_token<T>(message: T, token: Option<&str>) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(request)
}

/// `motcua report` as a clerk would run it, against `projection` over
/// TLS, with `ca` trusted (or not) and `token` sent.
async fn cli(
    projection: std::net::SocketAddr,
    ca: Option<&Path>,
    token: &str,
) -> anyhow::Result<std::process::Output> {
    let mut command = tokio::process::Command::new(tests::binary("motcua")?);
    command
        .args(["report", "--office", "TUYPHONG"])
        .env(
            "MOTCUA_PROJECTION",
            format!("https://localhost:{}", projection.port()),
        )
        .env("MOTCUA_TOKEN", token)
        .env_remove("MOTCUA_CA")
        .env_remove("MOTCUA_TOKEN_FILE");
    if let Some(ca) = ca {
        command.arg("--ca").arg(ca);
    }
    Ok(command.output().await?)
}

/// The CLI reaches a secured projection with its CA and token, and says
/// which of the two failed when one does.
async fn cli_credentials(
    projection: std::net::SocketAddr,
    dir: &Path,
    ca: &str,
) -> anyhow::Result<()> {
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca)?;
    let served = cli(projection, Some(&ca_file), DESK_TOKEN).await?;
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(served.status.success(), "{}", stderr(&served));
    let untrusted = cli(projection, None, DESK_TOKEN).await?;
    assert!(!untrusted.status.success());
    assert!(
        stderr(&untrusted).contains("the TLS handshake with projection")
            && stderr(&untrusted).contains("--ca"),
        "{}",
        stderr(&untrusted)
    );
    let refused = cli(projection, Some(&ca_file), "guess").await?;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("refused the token"),
        "{}",
        stderr(&refused)
    );
    Ok(())
}

#[tokio::test]
async fn only_a_valid_token_over_tls_is_served() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let dir = tempfile::tempdir()?;
    let ca = tests::test_certificates(dir.path())?;
    token_file(dir.path())?;
    let nats = NatsServer::start().await?;
    let (intake_db, projection_db) = (
        TestDb::new(Backend::Sqlite, "intake").await?,
        TestDb::new(Backend::Sqlite, "projection").await?,
    );
    let stream = unique_stream();
    let mut intake_config = intake::Config::for_tests(&intake_db.url, &nats.url(), &stream);
    secure(&mut intake_config.shared, dir.path());
    let intake = intake::Application::build(intake_config).await?;
    let (intake_addr, store) = (intake.local_addr(), intake.store().clone());
    let mut projection_config =
        projection::Config::for_tests(&projection_db.url, &nats.url(), &stream);
    secure(&mut projection_config.shared, dir.path());
    let projection = projection::Application::build(projection_config).await?;
    let projection_addr = projection.local_addr();
    let stop = CancellationToken::new();
    let intake_task = tokio::spawn(intake.run_until_stopped(stop.clone()));
    let projection_task = tokio::spawn(projection.run_until_stopped(stop.clone()));

    let desk = IntakeClient::new(channel(intake_addr, &ca).await?);
    for (what, token) in [
        ("no token", None),
        ("an unknown token", Some("guess")),
        (
            "the token's digest",
            Some(&*identity::token_digest(DESK_TOKEN)),
        ),
    ] {
        let refused = desk
            .clone()
            .receive_dossier(with_token(tests::receipt_due_later("D-1"), token)?)
            .await;
        assert_eq!(
            refused.map_err(|s| s.code()).err(),
            Some(Code::Unauthenticated),
            "{what}"
        );
    }
    assert_eq!(store.head().await?, 0, "a refused call appends nothing");
    let health = HealthClient::new(channel(intake_addr, &ca).await?)
        .check(HealthCheckRequest::default())
        .await?;
    assert_eq!(health.into_inner().status, 1, "health is open to probes");

    desk.clone()
        .receive_dossier(with_token(
            tests::receipt_due_later("D-1"),
            Some(DESK_TOKEN),
        )?)
        .await?;
    assert_eq!(store.head().await?, 1);

    let reports = ReportsClient::new(channel(projection_addr, &ca).await?);
    let request = rp::ListUnitsRequest::default();
    let refused = reports
        .clone()
        .list_units(with_token(request.clone(), None)?)
        .await;
    assert_eq!(
        refused.map_err(|s| s.code()).err(),
        Some(Code::Unauthenticated)
    );
    // A clerk reads its own office, not the province's list of units.
    let denied = reports
        .clone()
        .list_units(with_token(request, Some(DESK_TOKEN))?)
        .await;
    assert_eq!(
        denied.map_err(|s| s.code()).err(),
        Some(Code::PermissionDenied)
    );
    let own_office = rp::StatisticsRequest {
        scope: tests::office_scope("TUYPHONG"),
        first_day: Some(rp::LocalDate {
            year: 2026,
            month: 1,
            day: 1,
        }),
        last_day: Some(rp::LocalDate {
            year: 2026,
            month: 12,
            day: 31,
        }),
        as_of: None,
    };
    reports
        .clone()
        .get_statistics(with_token(own_office, Some(DESK_TOKEN))?)
        .await?;

    cli_credentials(projection_addr, dir.path(), &ca).await?;

    let plain = Endpoint::from_shared(format!("http://{intake_addr}"))?
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let plaintext = HealthClient::new(plain)
        .check(HealthCheckRequest::default())
        .await;
    assert!(plaintext.is_err(), "no plaintext on a TLS port");

    stop.cancel();
    intake_task.await??;
    projection_task.await??;
    Ok(())
}
