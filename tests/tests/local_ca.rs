//! docker-compose.yml's secured configuration, run without Docker (issue
//! 21, item 8). `deploy/local-ca.sh` makes the CA, certificates, passwords,
//! lookup secret and tokens; the settings come from docker-compose.yml
//! itself: the nats service's environment and mounts start a real
//! nats-server with the shipped configuration, and each service's
//! environment becomes its flags (a name no service reads fails the test),
//! with only the addresses and databases replaced. Then, over TLS trusting
//! the script's CA, the clerk's token receives a dossier, the office
//! manager's reads it in the figures, and the province reader's is refused
//! a desk command.

use std::{
    ffi::OsStr,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context as _;
use clap::{CommandFactory, Parser};
use proto::{
    intake::v1::intake_client::IntakeClient,
    reports::v1::{self as rp, reports_client::ReportsClient},
};
use server::Service as _;
use testkit::NatsConfig;
use tests::{Backend, InProcess, NatsServer, TestDb, eventually};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, transport::Channel};

const COMPOSE: &str = include_str!("../../docker-compose.yml");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// --- reading docker-compose.yml ---------------------------------------------
// Not a YAML parser: enough of the file's own layout (two spaces a level,
// maps of `KEY: value`, lists of `- item`) to read what the test needs, and
// to fail loudly when that layout changes.

/// The lines of `services.<name>`.
fn service(name: &str) -> anyhow::Result<Vec<&'static str>> {
    let header = format!("  {name}:");
    let mut lines = COMPOSE.lines().skip_while(|l| *l != header);
    lines
        .next()
        .with_context(|| format!("docker-compose.yml has no service {name}"))?;
    Ok(lines
        .take_while(|l| l.is_empty() || l.starts_with("    ") || l.starts_with("  #"))
        .collect())
}

/// The lines of a service's key `key` (a map or a list), comments left out.
fn section<'a>(service: &[&'a str], key: &str) -> Vec<&'a str> {
    let header = format!("    {key}:");
    service
        .iter()
        .skip_while(|l| **l != header)
        .skip(1)
        .take_while(|l| l.starts_with("      "))
        .map(|l| l.trim())
        .filter(|l| !l.starts_with('#'))
        .collect()
}

/// A service's `environment:` map, each `${VAR:-default}` read as compose
/// reads it with `VAR` unset: its default.
fn environment(service: &[&str]) -> Vec<(String, String)> {
    section(service, "environment")
        .into_iter()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            let v = v.trim_matches('"');
            let v = v
                .strip_prefix("${")
                .and_then(|v| v.strip_suffix('}'))
                .and_then(|v| v.split_once(":-"))
                .map_or(v, |(_, default)| default);
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The value of a service's one-line key `key`.
fn value<'a>(service: &[&'a str], key: &str) -> Option<&'a str> {
    let prefix = format!("    {key}: ");
    service.iter().find_map(|l| l.strip_prefix(prefix.as_str()))
}

/// Where the containers' paths are on this machine: each bind mount
/// (`./path:/in/container[:ro]`) from the repository, `./deploy/local`
/// from `out`, and each named volume from `volumes`.
struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    fn of(entries: &[&str], out: &Path, volumes: &[(&str, &Path)]) -> anyhow::Result<Self> {
        let mut mounts = Vec::new();
        for entry in entries {
            let entry = entry.strip_prefix("- ").context("a volume entry")?;
            let mut parts = entry.split(':');
            let (from, to) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let host = if let Some(rest) = from.strip_prefix("./deploy/local") {
                out.join(rest.trim_start_matches('/'))
            } else if let Some(rest) = from.strip_prefix("./") {
                repo().join(rest)
            } else {
                let (_, dir) = volumes
                    .iter()
                    .find(|(name, _)| *name == from)
                    .with_context(|| format!("the volume {from} has no folder in the test"))?;
                dir.to_path_buf()
            };
            mounts.push((to.to_owned(), host));
        }
        Ok(Self(mounts))
    }

    /// `path` in a container, on this machine.
    fn host(&self, path: &str) -> anyhow::Result<PathBuf> {
        self.0
            .iter()
            .filter_map(|(to, host)| {
                let rest = path.strip_prefix(to.as_str())?;
                let host = if rest.is_empty() {
                    host.clone()
                } else {
                    host.join(rest.strip_prefix('/')?)
                };
                Some((to.len(), host))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, host)| host)
            .with_context(|| format!("{path} is on no volume"))
    }
}

/// The files the credentials service copies (its `for f in …; do` list).
fn copied_credentials() -> anyhow::Result<Vec<String>> {
    let text = service("credentials")?.join("\n").replace("\\\n", " ");
    let list = text
        .split_once("for f in ")
        .and_then(|(_, rest)| rest.split_once("; do"))
        .map(|(list, _)| list)
        .context("the credentials service copies no list of files")?;
    Ok(list.split_whitespace().map(str::to_owned).collect())
}

/// A service's flags from its compose environment: each variable must be
/// one the service reads, paths under its mounts become this machine's.
fn flags<C: CommandFactory>(
    env: &[(String, String)],
    mounts: &Mounts,
) -> anyhow::Result<Vec<String>> {
    let command = C::command();
    let name = command.get_name().to_owned();
    let mut args = vec![name.clone()];
    for (key, value) in env {
        let arg = command
            .get_arguments()
            .find(|a| a.get_env() == Some(OsStr::new(key)))
            .with_context(|| {
                format!("docker-compose.yml sets {key}, which {name} does not read")
            })?;
        anyhow::ensure!(
            arg.get_action().takes_values(),
            "docker-compose.yml sets the switch {key} for {name}"
        );
        let long = arg.get_long().context("a flag without a long name")?;
        let value = if value.starts_with('/') {
            let path = mounts.host(value)?;
            anyhow::ensure!(
                path.exists(),
                "{name}: {key} names {value}, which its container would not have"
            );
            path.display().to_string()
        } else {
            value.clone()
        };
        args.push(format!("--{long}={value}"));
    }
    Ok(args)
}

// --- the script -------------------------------------------------------------

fn local_ca(out: &Path) -> anyhow::Result<String> {
    let output = Command::new("bash")
        .arg(repo().join("deploy/local-ca.sh"))
        .arg(out)
        .output()
        .context("run deploy/local-ca.sh")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "deploy/local-ca.sh failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

/// Runs the script twice: the second run keeps the CA and everything
/// else; keys and secrets are their owner's only; each certificate names
/// its compose service, localhost and 127.0.0.1.
fn make_credentials(out: &Path) -> anyhow::Result<()> {
    let first = local_ca(out)?;
    assert!(first.contains("made  ca.pem"), "{first}");
    let ca = std::fs::read(out.join("ca.pem"))?;
    let token = read(&out.join("tokens/clerk.token"))?;
    let again = local_ca(out)?;
    assert!(
        again.contains("kept  ca.pem") && !again.contains("made"),
        "{again}"
    );
    assert_eq!(std::fs::read(out.join("ca.pem"))?, ca, "the CA was kept");
    assert_eq!(read(&out.join("tokens/clerk.token"))?, token, "tokens too");

    for secret in [
        "ca-key.pem",
        "intake-key.pem",
        "projection-key.pem",
        "nats-key.pem",
        "nats-intake.password",
        "nats-projection.password",
        "nats.env",
        "lookup.secret",
        "tokens/clerk.token",
        "tokens/office_manager.token",
        "tokens/province_reader.token",
        "tokens/operator.token",
    ] {
        let mode = std::fs::metadata(out.join(secret))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
    for name in ["intake", "projection", "nats"] {
        let names = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(out.join(format!("{name}.pem")))
            .output()?;
        let names = String::from_utf8_lossy(&names.stdout);
        assert!(
            names.contains(&format!("DNS:{name}, DNS:localhost, IP Address:127.0.0.1")),
            "{name}: {names}"
        );
    }
    Ok(())
}

// --- the configuration, run -------------------------------------------------

/// The nats service: the shipped configuration, its environment and
/// env_file, its files from the script.
async fn start_nats(out: &Path, store: &Path) -> anyhow::Result<NatsServer> {
    let nats = service("nats")?;
    let mounts = Mounts::of(&section(&nats, "volumes"), out, &[("nats-data", store)])?;
    let command = value(&nats, "command").context("the nats service's command")?;
    let config = command
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|a| a.trim_matches('"'))
        .skip_while(|a| *a != "-c")
        .nth(1)
        .context("nats is started without -c")?;
    let file = mounts.host(config)?;
    assert_eq!(
        file.canonicalize()?,
        repo().join("deploy/nats/nats-server.conf").canonicalize()?,
        "the nats service runs the shipped configuration"
    );

    let env_file = value(&nats, "env_file").context("the nats service's env_file")?;
    let env_file = out.join(
        env_file
            .strip_prefix("deploy/local/")
            .context("env_file is not in deploy/local")?,
    );
    let mut env = Vec::new();
    for line in read(&env_file)?.lines() {
        if let Some((key, value)) = line.split_once('=')
            && !line.starts_with('#')
        {
            env.push((key.to_owned(), value.to_owned()));
        }
    }
    for (key, value) in environment(&nats) {
        env.push((key, mounts.host(&value)?.display().to_string()));
    }
    let password = read(&out.join("nats-projection.password"))?
        .trim()
        .to_owned();
    let ca = out.join("ca.pem");
    NatsServer::start_configured(NatsConfig {
        file,
        env,
        probe: Box::new(move || {
            async_nats::ConnectOptions::with_user_and_password(
                "projection".into(),
                password.clone(),
            )
            .add_root_certificates(ca.clone())
            .require_tls(true)
        }),
    })
    .await
}

/// Where a service runs here instead of in its container: its compose
/// listen address's IP on a free port, the test's database and NATS.
struct Here<'a> {
    nats: &'a NatsServer,
    out: &'a Path,
    credentials: &'a Path,
}

impl Here<'_> {
    /// A service's compose environment and mounts.
    fn compose(&self, name: &str) -> anyhow::Result<(Vec<(String, String)>, Mounts)> {
        let lines = service(name)?;
        // The services' shared volume is in the YAML anchor they merge.
        let anchor = COMPOSE
            .lines()
            .skip_while(|l| !l.starts_with("x-motcua-service:"))
            .take_while(|l| !l.starts_with("services:"))
            .map(|l| {
                l.strip_prefix("  ")
                    .map_or(l.to_owned(), |l| format!("    {l}"))
            })
            .collect::<Vec<_>>();
        let anchor: Vec<&str> = anchor.iter().map(String::as_str).collect();
        assert!(lines.contains(&"    <<: *motcua-service"), "{name}");
        let volumes = section(&anchor, "volumes");
        let mounts = Mounts::of(&volumes, self.out, &[("credentials", self.credentials)])?;
        let env = environment(&lines);
        assert!(
            env.iter().all(|(k, _)| k != "MOTCUA_INSECURE"),
            "{name} runs insecure"
        );
        Ok((env, mounts))
    }

    fn nats_url(&self, compose: &str) -> anyhow::Result<String> {
        let (scheme, host) = compose.split_once("://").context("NATS_URL")?;
        assert_eq!((scheme, host), ("tls", "nats:4222"), "NATS over TLS");
        Ok(format!("{scheme}://127.0.0.1:{}", self.nats.port))
    }

    async fn intake(&self, db: &TestDb) -> anyhow::Result<(InProcess, intake::EventStore)> {
        let (env, mounts) = self.compose("intake")?;
        let mut config = intake::Config::try_parse_from(flags::<intake::Config>(&env, &mounts)?)?;
        config.listen = SocketAddr::new(config.listen.ip(), 0);
        config.database_url = db.url.clone();
        config.metrics_listen = None;
        config.shared.nats_url = self.nats_url(&config.shared.nats_url)?;
        assert!(
            config.lookup_secret_file.is_some(),
            "intake's lookup secret"
        );
        check_shared(&config.shared, "intake");
        let app = intake::Application::build(config).await?;
        let (addr, store) = (app.local_addr(), app.store().clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Ok((InProcess { addr, stop, task }, store))
    }

    async fn projection(&self, db: &TestDb) -> anyhow::Result<InProcess> {
        let (env, mounts) = self.compose("projection")?;
        let mut config =
            projection::Config::try_parse_from(flags::<projection::Config>(&env, &mounts)?)?;
        config.listen = SocketAddr::new(config.listen.ip(), 0);
        config.database_url = db.url.clone();
        config.metrics_listen = None;
        config.shared.nats_url = self.nats_url(&config.shared.nats_url)?;
        check_shared(&config.shared, "projection");
        let app = projection::Application::build(config).await?;
        let addr = app.local_addr();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Ok(InProcess { addr, stop, task })
    }
}

/// What the compose environment must amount to for a service `name`.
fn check_shared(shared: &server::SharedArgs, name: &str) {
    assert!(shared.tls_files().is_some(), "{name}: gRPC over TLS");
    assert!(shared.auth_tokens.is_some(), "{name}: tokens");
    assert_eq!(shared.province.as_deref(), Some("BTH"), "{name}");
    assert_eq!(shared.nats_user.as_deref(), Some(name));
    assert!(shared.nats_ca.is_some(), "{name}: NATS over TLS");
    assert!(!shared.insecure, "{name}");
    // The shipped NATS configuration's permissions name these.
    assert_eq!(
        (shared.stream.as_str(), shared.subject_prefix.as_str()),
        ("MOTCUA_EVENTS", "motcua.events")
    );
}

// --- clients ----------------------------------------------------------------

async fn channel(addr: SocketAddr, ca: &Path) -> anyhow::Result<Channel> {
    tests::tls_channel(addr, &read(ca)?, None).await
}

/// `message` with the token of `role` from the script's tokens/.
fn as_role<T>(message: T, out: &Path, role: &str) -> anyhow::Result<Request<T>> {
    let token = read(&out.join(format!("tokens/{role}.token")))?;
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", token.trim()).parse()?);
    Ok(request)
}

#[tokio::test]
async fn the_compose_configuration_runs_secured() -> anyhow::Result<()> {
    telemetry::init_tracing_with_default(telemetry::LogFormat::Pretty, "warn");
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("local");
    make_credentials(&out)?;

    // What the credentials service copies into the services' volume, and
    // nothing else (the CA's key stays out).
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials)?;
    let copied = copied_credentials()?;
    assert!(!copied.iter().any(|f| f.contains("ca-key")), "{copied:?}");
    for file in &copied {
        std::fs::copy(out.join(file), credentials.join(file))
            .with_context(|| format!("the credentials service copies {file}"))?;
    }

    let store = dir.path().join("nats-data");
    std::fs::create_dir(&store)?;
    let nats = start_nats(&out, &store).await?;
    let (intake_db, projection_db) = (
        TestDb::new(Backend::Sqlite, "intake").await?,
        TestDb::new(Backend::Sqlite, "projection").await?,
    );
    let here = Here {
        nats: &nats,
        out: &out,
        credentials: &credentials,
    };
    let (intake, store) = here.intake(&intake_db).await?;
    let projection = here.projection(&projection_db).await?;

    let ca = out.join("ca.pem");
    let desk = IntakeClient::new(channel(intake.addr, &ca).await?);
    let now = tests::real_now();
    desk.clone()
        .receive_dossier(as_role(tests::receipt_due_later("D-1"), &out, "clerk")?)
        .await?;
    let refused = desk
        .clone()
        .receive_dossier(as_role(
            tests::receipt_due_later("D-2"),
            &out,
            "province_reader",
        )?)
        .await
        .map(|_| ())
        .map_err(|s| s.code());
    assert_eq!(refused, Err(Code::PermissionDenied), "a reader at the desk");
    assert_eq!(store.head().await?, 1, "the refusal appended nothing");

    let reports = ReportsClient::new(channel(projection.addr, &ca).await?);
    let today = tests::date(now.local_day());
    let figures = eventually(Duration::from_secs(30), || {
        let reports = reports.clone();
        let out = out.clone();
        async move {
            let request = rp::StatisticsRequest {
                scope: tests::office_scope("TUYPHONG"),
                first_day: today,
                last_day: today,
                as_of: None,
            };
            let figures = reports
                .clone()
                .get_statistics(as_role(request, &out, "office_manager")?)
                .await?
                .into_inner();
            anyhow::ensure!(figures.received == 1, "not projected yet: {figures:?}");
            Ok(figures)
        }
    })
    .await?;
    assert_eq!(figures.received, 1, "D-1 reached the manager's figures");

    intake.shutdown().await?;
    projection.shutdown().await
}
