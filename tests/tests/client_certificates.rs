//! A service-to-service caller over mTLS: a client certificate from the
//! province's CA, named in the client certificate file, stands in for a
//! token (real rustls handshakes, certificates made here). An unlisted
//! certificate, or none, is refused `UNAUTHENTICATED` and appends nothing;
//! a token sent beside a certificate is judged as a token; a certificate
//! from another CA does not get past the handshake.

use std::path::Path;

use proto::intake::v1::{
    self as pb, dossier_service_client::DossierServiceClient, intake_client::IntakeClient,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use server::Service as _;
use tests::{Backend, NatsServer, TestDb, unique_stream};
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Request,
    transport::{Channel, Identity},
};

const ROBOT: &str = "spiffe://bth.example/desk-robot";

type Issuer = CertifiedIssuer<'static, KeyPair>;

fn ca() -> anyhow::Result<Issuer> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A client certificate issued by `ca` whose only name is the URI `uri`.
fn client(ca: &Issuer, uri: &str) -> anyhow::Result<Identity> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(Identity::from_pem(cert.pem(), key.serialize_pem()))
}

fn configure(shared: &mut server::SharedArgs, dir: &Path, ca: &Issuer) -> anyhow::Result<()> {
    tests::test_certificates(dir)?;
    std::fs::write(dir.join("client-ca.pem"), ca.pem())?;
    std::fs::write(
        dir.join("clients.toml"),
        format!(
            "[[client]]\ncertificate = \"{ROBOT}\"\nsubject = \"desk-robot\"\nrole = \"clerk\"\nprovince = \"BTH\"\noffice = \"TUYPHONG\"\n"
        ),
    )?;
    std::fs::write(dir.join("tokens.toml"), "")?;
    shared.tls_cert = Some(dir.join("cert.pem"));
    shared.tls_key = Some(dir.join("key.pem"));
    shared.tls_client_ca = Some(dir.join("client-ca.pem"));
    shared.auth_client_certs = Some(dir.join("clients.toml"));
    shared.auth_tokens = Some(dir.join("tokens.toml"));
    Ok(())
}

async fn channel(
    addr: std::net::SocketAddr,
    dir: &Path,
    identity: Option<Identity>,
) -> anyhow::Result<Channel> {
    let ca = std::fs::read_to_string(dir.join("ca.pem"))?;
    tests::tls_channel(addr, &ca, identity).await
}

fn code<T>(result: Result<T, tonic::Status>) -> Option<Code> {
    result.map_err(|s| s.code()).err()
}

/// Given intake with the province's client CA and a file naming the desk
/// robot's certificate a clerk of TUYPHONG, when the robot calls without a
/// token, then its receipt is taken and recorded as its own; every other
/// way in is refused and appends nothing.
#[tokio::test]
async fn a_listed_client_certificate_stands_in_for_a_token() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let dir = tempfile::tempdir()?;
    let province_ca = ca()?;
    let nats = NatsServer::start().await?;
    let db = TestDb::new(Backend::Sqlite, "intake").await?;
    let mut config = intake::Config::for_tests(&db.url, &nats.url(), &unique_stream());
    configure(&mut config.shared, dir.path(), &province_ca)?;
    let intake = intake::Application::build(config).await?;
    let (addr, store) = (intake.local_addr(), intake.store().clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn(intake.run_until_stopped(stop.clone()));

    let unlisted = client(&province_ca, "spiffe://bth.example/stranger")?;
    for (what, identity) in [
        ("no certificate", None),
        ("an unlisted one", Some(unlisted)),
    ] {
        let desk = IntakeClient::new(channel(addr, dir.path(), identity).await?);
        let refused = desk
            .clone()
            .receive_dossier(tests::receipt_due_later("D-1"))
            .await;
        assert_eq!(code(refused), Some(Code::Unauthenticated), "{what}");
    }
    let robot = channel(addr, dir.path(), Some(client(&province_ca, ROBOT)?)).await?;
    let mut with_bad_token = Request::new(tests::receipt_due_later("D-1"));
    with_bad_token
        .metadata_mut()
        .insert("authorization", "Bearer guess".parse()?);
    let refused = IntakeClient::new(robot.clone())
        .receive_dossier(with_bad_token)
        .await;
    assert_eq!(
        code(refused),
        Some(Code::Unauthenticated),
        "a token beside the certificate is judged as a token"
    );
    assert_eq!(store.head().await?, 0, "a refused call appends nothing");

    IntakeClient::new(robot.clone())
        .receive_dossier(tests::receipt_due_later("D-1"))
        .await?;
    let record = DossierServiceClient::new(robot)
        .get_dossier(pb::GetDossierRequest {
            dossier_id: "D-1".into(),
        })
        .await?
        .into_inner();
    let actors: Vec<&str> = record.history.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["desk-robot@TUYPHONG (clerk-1)"]);

    let foreign = client(&ca()?, ROBOT)?;
    let handshake = channel(addr, dir.path(), Some(foreign)).await;
    let called = match handshake {
        Err(_) => None,
        Ok(channel) => code(
            IntakeClient::new(channel)
                .receive_dossier(tests::receipt_due_later("D-2"))
                .await,
        ),
    };
    assert_ne!(called, Some(Code::Ok));
    assert_eq!(
        store.head().await?,
        1,
        "another CA's certificate appends nothing"
    );

    stop.cancel();
    task.await??;
    Ok(())
}
