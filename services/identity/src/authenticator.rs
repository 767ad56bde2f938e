//! From the `authorization` metadata to an identity.

use crate::{AuthError, Identity, JwtVerifier, StaticTokens};

/// The configured ways to prove an identity.
#[derive(Debug, Default)]
pub struct Authenticator {
    pub jwt: Option<JwtVerifier>,
    pub tokens: Option<StaticTokens>,
}

impl Authenticator {
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
        match (&self.jwt, &self.tokens) {
            (Some(jwt), _) if looks_like_jwt => jwt.verify(token),
            (_, Some(tokens)) => tokens.verify(token),
            (Some(_), None) => Err(AuthError::Malformed),
            (None, None) => Err(AuthError::UnknownToken),
        }
    }
}
