//! From the `authorization` metadata, or a client certificate's names, to
//! an identity.

use std::sync::{Arc, RwLock};

use crate::{AuthError, CertificateIdentities, Identity, JwtVerifier, StaticTokens};

/// The configured ways to prove an identity. The JWT keys may be replaced
/// while it serves (a JWKS fetched again from the identity provider).
#[derive(Debug, Default)]
pub struct Authenticator {
    jwt: RwLock<Option<Arc<JwtVerifier>>>,
    tokens: Option<StaticTokens>,
    certificates: Option<CertificateIdentities>,
}

impl Authenticator {
    pub fn new(jwt: Option<JwtVerifier>, tokens: Option<StaticTokens>) -> Self {
        Self {
            jwt: RwLock::new(jwt.map(Arc::new)),
            tokens,
            certificates: None,
        }
    }

    /// Also takes a verified client certificate named in `certificates`
    /// in place of a token.
    #[must_use]
    pub fn with_certificates(mut self, certificates: CertificateIdentities) -> Self {
        self.certificates = Some(certificates);
        self
    }

    /// Whether a client certificate may stand in for a token.
    pub fn takes_certificates(&self) -> bool {
        self.certificates.is_some()
    }

    /// The identity of a caller without a token whose client certificate,
    /// verified by the TLS handshake, carries `names`.
    pub fn authenticate_certificate<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Identity, AuthError> {
        self.certificates
            .as_ref()
            .ok_or(AuthError::Missing)?
            .verify(names)
    }

    /// Verifies JWTs with `jwt` from now on (calls in flight keep the
    /// keys they began with).
    pub fn replace_jwt(&self, jwt: JwtVerifier) {
        let mut slot = self
            .jwt
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(Arc::new(jwt));
    }

    fn jwt(&self) -> Option<Arc<JwtVerifier>> {
        self.jwt
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The identity `authorization` (the metadata's value, if any) proves:
    /// `Bearer <token>`, a static token or a JWT.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        let looks_like_jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        match (self.jwt(), &self.tokens) {
            (Some(jwt), _) if looks_like_jwt => jwt.verify(token),
            (_, Some(tokens)) => tokens.verify(token),
            (Some(_), None) => Err(AuthError::Malformed),
            (None, None) => Err(AuthError::UnknownToken),
        }
    }
}
