//! The flags both services take with the same names and variables.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::TlsFiles;

/// Flags every Motcua service shares; a service's own `Config` flattens
/// them (`#[command(flatten)]`), so `--help` lists them with its own.
#[derive(Clone, Debug, Args)]
pub struct SharedArgs {
    /// NATS server with JetStream.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// JetStream stream that carries the events.
    #[arg(long, env = "MOTCUA_STREAM", default_value = "MOTCUA_EVENTS")]
    pub stream: String,

    /// Subject prefix of the events.
    #[arg(long, env = "MOTCUA_SUBJECT_PREFIX", default_value = "motcua.events")]
    pub subject_prefix: String,

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
}

impl SharedArgs {
    /// The stream these flags name, with the contract's other settings.
    pub fn stream_settings(&self) -> bus::StreamSettings {
        bus::StreamSettings {
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            ..Default::default()
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

    /// Points at `stream` on `nats_url`, with the subject prefix derived
    /// from the stream's name so that tests sharing a server do not share
    /// subjects.
    pub fn use_stream(&mut self, nats_url: &str, stream: &str) {
        self.nats_url = nats_url.to_owned();
        self.stream = stream.to_owned();
        self.subject_prefix = format!("{}.events", stream.to_ascii_lowercase());
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
    fn a_test_stream_has_its_own_subjects() {
        let mut cli = Cli::try_parse_from(["x"]).expect("defaults parse");
        cli.shared.use_stream("nats://127.0.0.1:1", "T_42");
        assert_eq!(cli.shared.stream_settings().subject_prefix, "t_42.events");
        assert_eq!(cli.shared.nats_url, "nats://127.0.0.1:1");
    }
}
