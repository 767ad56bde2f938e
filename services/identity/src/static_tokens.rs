//! Static bearer tokens for a small office without an identity provider:
//! a TOML file lists each token's SHA-256 and the identity it stands for,
//! so the file holds nothing a caller could present.
//!
//! ```toml
//! [[token]]
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! subject = "desk-1"
//! role = "clerk"
//! province = "60"
//! office = "60-TUYPHONG"
//! name = "Bàn một cửa số 1"
//! ```

use std::collections::HashMap;

use anyhow::Context as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::{AuthError, Identity, Role};

/// The lowercase hex SHA-256 of a token, as the file stores it.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    sha256: String,
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
    token: Vec<Entry>,
}

/// The tokens of a static token file, by digest.
#[derive(Debug, Default)]
pub struct StaticTokens {
    by_digest: HashMap<String, Identity>,
}

impl StaticTokens {
    /// Reads a token file's text; an entry that is not a valid identity,
    /// or a digest given twice, is refused with its subject.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text).context("not a token file")?;
        let mut by_digest = HashMap::new();
        for entry in file.token {
            let digest = entry.sha256.to_ascii_lowercase();
            anyhow::ensure!(
                digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
                "token {}: sha256 must be 64 hex digits",
                entry.subject
            );
            let subject = entry.subject.clone();
            let identity = Identity::new(
                entry.subject,
                entry.role,
                entry.province,
                entry.office,
                entry.name,
            )
            .with_context(|| format!("token {subject}"))?;
            anyhow::ensure!(
                by_digest.insert(digest, identity).is_none(),
                "token {subject}: the same token is listed twice"
            );
        }
        Ok(Self { by_digest })
    }

    /// The identity a token stands for.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.by_digest
            .get(&token_digest(token))
            .cloned()
            .ok_or(AuthError::UnknownToken)
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}
