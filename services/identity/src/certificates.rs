//! Client certificates standing in for a token, for service-to-service
//! callers over mTLS (a batch importer, a province's reporting robot): a
//! TOML file lists, for each name a certificate may carry in its subject
//! alternative names (a URI such as a SPIFFE id, or a DNS name), the
//! identity it stands for.
//!
//! ```toml
//! [[client]]
//! certificate = "spiffe://lamdong.gov.vn/importer"
//! subject = "importer"
//! role = "operator"
//! province = "68"
//! ```
//!
//! Names rather than fingerprints: a certificate the province's CA
//! reissues with the same name keeps its identity, so rotating client
//! certificates needs no change here. That the certificate was issued by a
//! trusted CA is the TLS handshake's business; this file only names.

use std::collections::HashMap;

use anyhow::Context as _;
use serde::Deserialize;

use crate::{AuthError, Identity, Role};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    certificate: String,
    subject: String,
    role: Role,
    province: String,
    #[serde(default)]
    office: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    client: Vec<Entry>,
}

/// The identities client certificates stand for, by certificate name.
#[derive(Debug, Default)]
pub struct CertificateIdentities {
    by_name: HashMap<String, Identity>,
}

impl CertificateIdentities {
    /// Reads a client certificate file's text; an entry that is not a
    /// valid identity, or a name given twice, is refused with its subject.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text).context("not a client certificate file")?;
        let mut by_name = HashMap::new();
        for entry in file.client {
            let subject = entry.subject.clone();
            anyhow::ensure!(
                !entry.certificate.trim().is_empty(),
                "client {subject}: an empty certificate name"
            );
            let identity = Identity::new(
                entry.subject,
                entry.role,
                entry.province,
                entry.office,
                entry.name,
            )
            .with_context(|| format!("client {subject}"))?;
            anyhow::ensure!(
                by_name.insert(entry.certificate, identity).is_none(),
                "client {subject}: the same certificate name is listed twice"
            );
        }
        Ok(Self { by_name })
    }

    /// The identity a verified certificate carrying `names` stands for. A
    /// certificate whose names are listed for two different identities is
    /// refused: which one it means is not for this service to guess.
    pub fn verify<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Identity, AuthError> {
        let mut found: Option<&Identity> = None;
        for name in names {
            match (found, self.by_name.get(name)) {
                (_, None) => {}
                (None, Some(identity)) => found = Some(identity),
                (Some(first), Some(other)) if first == other => {}
                (Some(_), Some(_)) => return Err(AuthError::AmbiguousCertificate),
            }
        }
        found.cloned().ok_or(AuthError::UnknownCertificate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[client]]
certificate = "spiffe://lamdong.gov.vn/importer"
subject = "importer"
role = "operator"
province = "68"

[[client]]
certificate = "robot.tuyphong.lamdong.gov.vn"
subject = "robot"
role = "clerk"
province = "68"
office = "TUYPHONG"
"#;

    /// Given the file, when a certificate carries one listed name among
    /// others, then it stands for that name's identity.
    #[test]
    fn a_listed_name_stands_for_its_identity() {
        let certificates = CertificateIdentities::parse(FILE).expect("the file parses");
        let identity = certificates
            .verify(["other.example", "spiffe://lamdong.gov.vn/importer"])
            .expect("listed");
        assert_eq!(
            (identity.subject.as_str(), identity.role),
            ("importer", Role::Operator)
        );
        let robot = certificates
            .verify(["robot.tuyphong.lamdong.gov.vn"])
            .expect("listed");
        assert_eq!(robot.office.as_deref(), Some("TUYPHONG"));
    }

    #[test]
    fn an_unlisted_or_ambiguous_certificate_is_refused() {
        let certificates = CertificateIdentities::parse(FILE).expect("the file parses");
        assert_eq!(
            certificates.verify(["nobody.example"]),
            Err(AuthError::UnknownCertificate)
        );
        assert_eq!(certificates.verify([]), Err(AuthError::UnknownCertificate));
        assert_eq!(
            certificates.verify([
                "spiffe://lamdong.gov.vn/importer",
                "robot.tuyphong.lamdong.gov.vn"
            ]),
            Err(AuthError::AmbiguousCertificate)
        );
    }

    #[test]
    fn a_bad_entry_is_refused_with_its_subject() {
        let twice = format!(
            "{FILE}\n[[client]]\ncertificate = \"robot.tuyphong.lamdong.gov.vn\"\nsubject = \"again\"\nrole = \"operator\"\nprovince = \"68\"\n"
        );
        let error = CertificateIdentities::parse(&twice)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        assert!(
            error
                .as_ref()
                .is_err_and(|e| e.contains("again") && e.contains("twice")),
            "{error:?}"
        );
        let no_office = "[[client]]\ncertificate = \"x\"\nsubject = \"desk\"\nrole = \"clerk\"\nprovince = \"68\"\n";
        let error = CertificateIdentities::parse(no_office)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        assert!(
            error.as_ref().is_err_and(|e| e.contains("desk")),
            "{error:?}"
        );
    }
}
