//! The flags both services take with the same names and variables.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::{AuthFiles, LimitArgs, Limits, TlsFiles};

/// Flags every Motcua service shares; a service's own `Config` flattens
/// them (`#[command(flatten)]`), so `--help` lists them with its own.
#[derive(Clone, Debug, Args)]
pub struct SharedArgs {
    /// NATS server with JetStream.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// The NATS user this service connects as (the shipped server
    /// configuration, deploy/nats, has one per service). Needs
    /// --nats-password-file.
    #[arg(long, env = "NATS_USER", requires = "nats_password_file")]
    pub nats_user: Option<String>,

    /// A file holding the NATS user's password (one line), read at start.
    #[arg(long, env = "NATS_PASSWORD_FILE", requires = "nats_user")]
    pub nats_password_file: Option<PathBuf>,

    /// Connect to NATS over TLS, trusting this CA (PEM) for the server's
    /// certificate.
    #[arg(long, env = "NATS_CA")]
    pub nats_ca: Option<PathBuf>,

    /// Present this client certificate chain (PEM) to NATS, for a server
    /// that verifies clients; implies TLS. Needs --nats-client-key.
    #[arg(long, env = "NATS_CLIENT_CERT", requires = "nats_client_key")]
    pub nats_client_cert: Option<PathBuf>,

    /// The private key of --nats-client-cert (PEM).
    #[arg(long, env = "NATS_CLIENT_KEY", requires = "nats_client_cert")]
    pub nats_client_key: Option<PathBuf>,

    /// JetStream stream that carries the events.
    #[arg(long, env = "MOTCUA_STREAM", default_value = "MOTCUA_EVENTS")]
    pub stream: String,

    /// Subject prefix of the events.
    #[arg(long, env = "MOTCUA_SUBJECT_PREFIX", default_value = "motcua.events")]
    pub subject_prefix: String,

    /// How many servers of the JetStream cluster keep the event stream (1,
    /// 3 or 5). An existing stream is changed to it; unset, a new stream
    /// gets one replica and an existing one keeps its own.
    #[arg(long, env = "MOTCUA_STREAM_REPLICAS", value_parser = parse_replicas)]
    pub stream_replicas: Option<usize>,

    /// Place the event stream in this JetStream cluster (by its name).
    #[arg(long, env = "MOTCUA_STREAM_CLUSTER")]
    pub stream_cluster: Option<String>,

    /// Place the event stream on servers with all these tags
    /// (comma-separated, as the servers' `server_tags` give them).
    #[arg(long, env = "MOTCUA_STREAM_TAGS", value_delimiter = ',')]
    pub stream_tags: Vec<String>,

    /// Log format: pretty or json.
    #[arg(long, env = "MOTCUA_LOG_FORMAT", default_value = "pretty")]
    pub log_format: telemetry::LogFormat,

    /// How long shutdown may take to finish in-flight work, e.g. 10s.
    #[arg(long, env = "MOTCUA_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = telemetry::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first);
    /// read again when it changes. Needs --tls-key.
    #[arg(long, env = "MOTCUA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "MOTCUA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Accept client certificates issued by these CAs (PEM), for
    /// service-to-service callers (mTLS); clients without one may still
    /// connect. Needs --tls-cert.
    #[arg(long, env = "MOTCUA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// How often the TLS files are checked for a rotated certificate.
    #[arg(long, env = "MOTCUA_TLS_RELOAD", default_value = "10s", value_parser = telemetry::parse_duration)]
    pub tls_reload: Duration,

    /// Require bearer JWTs signed by a key of this JWKS: a file, or an
    /// http(s):// URL of the province's identity provider, fetched at
    /// start and every --auth-jwks-refresh. Needs --auth-issuer.
    #[arg(
        long,
        env = "MOTCUA_AUTH_JWKS",
        requires = "auth_issuer",
        value_name = "FILE|URL"
    )]
    pub auth_jwks: Option<String>,

    /// How often a JWKS URL is fetched again (keys the provider rotates in).
    #[arg(long, env = "MOTCUA_AUTH_JWKS_REFRESH", default_value = "5m", value_parser = telemetry::parse_duration)]
    pub auth_jwks_refresh: Duration,

    /// Trust this CA (PEM), beside the system's roots, for an https://
    /// JWKS URL.
    #[arg(long, env = "MOTCUA_AUTH_JWKS_CA")]
    pub auth_jwks_ca: Option<PathBuf>,

    /// The `iss` the identity provider's tokens carry.
    #[arg(long, env = "MOTCUA_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// The `aud` tokens for Motcua carry.
    #[arg(long, env = "MOTCUA_AUTH_AUDIENCE", default_value = "motcua")]
    pub auth_audience: String,

    /// Clock skew allowed on a token's expiry and not-before.
    #[arg(long, env = "MOTCUA_AUTH_LEEWAY", default_value = "60s", value_parser = telemetry::parse_duration)]
    pub auth_leeway: Duration,

    /// Require bearer tokens listed (as SHA-256 digests) in this TOML file:
    /// for an office without an identity provider.
    #[arg(long, env = "MOTCUA_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,

    /// Take a client certificate (verified against --tls-client-ca) in
    /// place of a token, for the identities this TOML file names by the
    /// certificate's URI or DNS names. A call with a token is judged by
    /// its token.
    #[arg(long, env = "MOTCUA_AUTH_CLIENT_CERTS", requires = "tls_client_ca")]
    pub auth_client_certs: Option<PathBuf>,

    /// The province this deployment serves. Its operators may run the
    /// operations on the whole log (republish, rebuild, parked events,
    /// reading the log); without it, nobody may once authentication is on.
    #[arg(long, env = "MOTCUA_PROVINCE")]
    pub province: Option<String>,

    /// Serve a non-loopback address without TLS or authentication. Anyone
    /// who reaches the port can then read and write every office: for a
    /// network that is itself closed, never for a province's.
    #[arg(long, env = "MOTCUA_INSECURE")]
    pub insecure: bool,

    /// Message size, streams per connection, calls per caller.
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl SharedArgs {
    /// The stream these flags name, with the contract's other settings.
    pub fn stream_settings(&self) -> bus::StreamSettings {
        bus::StreamSettings {
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            replicas: self.stream_replicas,
            placement: (self.stream_cluster.is_some() || !self.stream_tags.is_empty()).then(|| {
                bus::Placement {
                    cluster: self.stream_cluster.clone(),
                    tags: self.stream_tags.clone(),
                }
            }),
            ..Default::default()
        }
    }

    /// How this service, named `name` on the server, reaches NATS.
    pub fn nats_options(&self, name: &str) -> telemetry::NatsOptions {
        telemetry::NatsOptions {
            user: self.nats_user.clone(),
            password_file: self.nats_password_file.clone(),
            ca: self.nats_ca.clone(),
            client_cert: self.nats_client_cert.clone(),
            client_key: self.nats_client_key.clone(),
            ..telemetry::NatsOptions::plain(&self.nats_url, name)
        }
    }

    /// The TLS files the flags name; `None` serves plaintext.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
            reload_every: self.tls_reload,
        })
    }

    /// The limits for a server listening on `listen` (the rate limit's
    /// `auto` depends on it).
    pub fn limits(&self, listen: std::net::SocketAddr) -> Limits {
        self.limits.resolve(listen)
    }

    /// The identity sources the flags name.
    pub fn auth_files(&self) -> anyhow::Result<AuthFiles> {
        let jwks = match &self.auth_jwks {
            None => None,
            Some(value) => {
                let source = crate::JwksSource::parse(
                    value,
                    self.auth_jwks_ca.clone(),
                    self.auth_jwks_refresh,
                )?;
                let settings = identity::JwtSettings {
                    issuer: self.auth_issuer.clone().unwrap_or_default(),
                    audience: self.auth_audience.clone(),
                    leeway: self.auth_leeway,
                };
                Some((source, settings))
            }
        };
        Ok(AuthFiles {
            jwks,
            tokens: self.auth_tokens.clone(),
            client_certificates: self.auth_client_certs.clone(),
        })
    }

    /// Refuses to serve `listen` beyond this machine without TLS and
    /// authentication, unless --insecure says so (then warns).
    pub fn check_exposure(&self, listen: std::net::SocketAddr) -> anyhow::Result<()> {
        let tls = self.tls_cert.is_some();
        let auth = self.auth_jwks.is_some()
            || self.auth_tokens.is_some()
            || self.auth_client_certs.is_some();
        if listen.ip().is_loopback() || (tls && auth) {
            return Ok(());
        }
        let missing = match (tls, auth) {
            (false, false) => {
                "TLS (--tls-cert, --tls-key) and authentication (--auth-jwks or --auth-tokens)"
            }
            (false, true) => "TLS (--tls-cert, --tls-key)",
            _ => "authentication (--auth-jwks or --auth-tokens)",
        };
        if self.insecure {
            tracing::warn!(%listen, "serving beyond this machine without {missing}, as --insecure asks: anyone who reaches the port can read and write every office");
            return Ok(());
        }
        anyhow::bail!(
            "{listen} is reachable beyond this machine, and {missing} is not configured; configure it, or pass --insecure (MOTCUA_INSECURE=true) on a closed network"
        )
    }

    /// Points at `stream` on `nats_url`, with the subject prefix derived
    /// from the stream's name so that tests sharing a server do not share
    /// subjects.
    pub fn use_stream(&mut self, nats_url: &str, stream: &str) {
        self.nats_url = nats_url.to_owned();
        self.stream = stream.to_owned();
        self.subject_prefix = format!("{}.events", stream.to_ascii_lowercase());
    }
}

/// A stream's replicas: JetStream takes 1 to 5; an even count buys no
/// more failures survived than the odd count below it.
fn parse_replicas(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n @ (1 | 3 | 5)) => Ok(n),
        _ => Err(format!("{s:?}: the stream's replicas are 1, 3 or 5")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        shared: SharedArgs,
    }

    #[test]
    fn defaults_name_the_local_stream() {
        let cli = Cli::try_parse_from(["x"]).expect("defaults parse");
        let settings = cli.shared.stream_settings();
        assert_eq!(settings.stream, "MOTCUA_EVENTS");
        assert_eq!(settings.subject_prefix, "motcua.events");
        assert_eq!(cli.shared.shutdown_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_bad_duration_names_the_flag_and_the_forms() {
        let error = Cli::try_parse_from(["x", "--shutdown-timeout", "soon"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("--shutdown-timeout"), "{error}");
        assert!(error.contains("not a duration"), "{error}");
    }

    #[test]
    fn a_bad_log_format_is_refused() {
        let error = Cli::try_parse_from(["x", "--log-format", "xml"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("unknown log format"), "{error}");
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        let cli = Cli::try_parse_from(["x"]).expect("defaults parse");
        assert_eq!(cli.shared.tls_files(), None);
        for partial in [
            &["x", "--tls-cert", "c.pem"][..],
            &["x", "--tls-key", "k.pem"],
            &["x", "--tls-client-ca", "ca.pem"],
            &["x", "--auth-client-certs", "clients.toml"],
        ] {
            let error = Cli::try_parse_from(partial).err().map(|e| e.to_string());
            assert!(error.is_some_and(|e| e.contains("required")), "{partial:?}");
        }
        let cli = Cli::try_parse_from(["x", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .expect("both given");
        let files = cli.shared.tls_files().expect("TLS on");
        assert_eq!(
            (files.cert.to_str(), files.key.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        assert_eq!(files.client_ca, None);
    }

    #[test]
    fn only_loopback_may_go_without_tls_and_authentication() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).expect("flags parse").shared;
        let open: std::net::SocketAddr = "0.0.0.0:50051".parse().expect("address");
        let local: std::net::SocketAddr = "127.0.0.1:50051".parse().expect("address");
        let bare = parse(&["x"]);
        assert!(bare.check_exposure(local).is_ok());
        let error = bare.check_exposure(open).map_err(|e| e.to_string());
        assert!(
            error
                .as_ref()
                .is_err_and(|e| e.contains("TLS") && e.contains("authentication")),
            "{error:?}"
        );
        let tls_only = parse(&["x", "--tls-cert", "c", "--tls-key", "k"]);
        let error = tls_only.check_exposure(open).map_err(|e| e.to_string());
        assert!(
            error
                .as_ref()
                .is_err_and(|e| e.contains("--auth-tokens") && !e.contains("--tls-cert")),
            "{error:?}"
        );
        let both = parse(&[
            "x",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--auth-tokens",
            "t",
        ]);
        assert!(both.check_exposure(open).is_ok());
        assert!(parse(&["x", "--insecure"]).check_exposure(open).is_ok());
    }

    #[test]
    fn nats_credentials_come_in_pairs() {
        for partial in [
            &["x", "--nats-user", "intake"][..],
            &["x", "--nats-password-file", "pw"],
            &["x", "--nats-client-cert", "c.pem"],
            &["x", "--nats-client-key", "k.pem"],
        ] {
            let error = Cli::try_parse_from(partial).err().map(|e| e.to_string());
            assert!(error.is_some_and(|e| e.contains("required")), "{partial:?}");
        }
        let cli = Cli::try_parse_from([
            "x",
            "--nats-user",
            "intake",
            "--nats-password-file",
            "pw",
            "--nats-ca",
            "ca.pem",
        ])
        .expect("a user, its password and a CA");
        let options = cli.shared.nats_options("motcua-intake");
        assert_eq!(options.user.as_deref(), Some("intake"));
        assert_eq!(options.ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert_eq!(options.name, "motcua-intake");
        assert_eq!(options.url, "nats://127.0.0.1:4222");
    }

    #[test]
    fn the_stream_may_be_replicated_and_placed() {
        let cli = Cli::try_parse_from(["x"]).expect("defaults parse");
        let settings = cli.shared.stream_settings();
        assert_eq!((settings.replicas, settings.placement), (None, None));
        let cli = Cli::try_parse_from(["x", "--stream-replicas", "3", "--stream-tags", "ssd,hcm"])
            .expect("flags parse");
        let settings = cli.shared.stream_settings();
        assert_eq!(settings.replicas, Some(3));
        let placement = settings.placement.clone().expect("placed by tags");
        assert_eq!(
            (placement.cluster, placement.tags),
            (None, vec!["ssd".into(), "hcm".into()])
        );
        assert_eq!(settings.config().num_replicas, 3);
        let error = Cli::try_parse_from(["x", "--stream-replicas", "2"])
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("1, 3 or 5")));
    }

    #[test]
    fn a_jwks_needs_its_issuer() {
        let error = Cli::try_parse_from(["x", "--auth-jwks", "keys.json"])
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("--auth-issuer")));
    }

    #[test]
    fn a_test_stream_has_its_own_subjects() {
        let mut cli = Cli::try_parse_from(["x"]).expect("defaults parse");
        cli.shared.use_stream("nats://127.0.0.1:1", "T_42");
        assert_eq!(cli.shared.stream_settings().subject_prefix, "t_42.events");
        assert_eq!(cli.shared.nats_url, "nats://127.0.0.1:1");
    }
}
