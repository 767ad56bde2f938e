//! JWTs signed by the province's identity provider, verified against the
//! keys of its JWKS: the signature with the key the token's `kid` names
//! (and only with that key's own algorithm, so a token cannot pick a
//! weaker one), then issuer, audience, expiry and not-before with a small
//! allowance for clock skew, then Motcua's claims.

use std::{collections::HashMap, time::Duration};

use anyhow::Context as _;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};
use serde::Deserialize;

use crate::{AuthError, Identity, Role};

/// What a token must say besides its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    /// The `iss` the identity provider signs with.
    pub issuer: String,
    /// The `aud` tokens for Motcua carry.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Motcua's claims, beside the registered ones (`iss`, `aud`, `exp`,
/// `nbf`, `sub`) the validation checks.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    /// `clerk`, `office_manager`, `province_reader` or `operator`.
    pub motcua_role: Role,
    /// The province the identity is scoped to.
    pub motcua_province: String,
    /// The office, for clerks and office managers.
    #[serde(default)]
    pub motcua_office: Option<String>,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
}

struct Key {
    key: DecodingKey,
    validation: Validation,
}

/// Verifies bearer JWTs against a key set.
pub struct JwtVerifier {
    keys: HashMap<String, Key>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The algorithm a key verifies: its `alg` when given, else the one its
/// type implies (Ed25519 → EdDSA, RSA → RS256, P-256 → ES256).
fn algorithm_of(jwk: &Jwk) -> anyhow::Result<Algorithm> {
    if let Some(alg) = jwk.common.key_algorithm {
        return Ok(match alg {
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::RS384 => Algorithm::RS384,
            KeyAlgorithm::RS512 => Algorithm::RS512,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::ES384 => Algorithm::ES384,
            KeyAlgorithm::PS256 => Algorithm::PS256,
            other => anyhow::bail!("algorithm {other:?} is not accepted for identity tokens"),
        });
    }
    Ok(match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => anyhow::bail!("a key without `alg` of a type Motcua does not accept"),
    })
}

impl JwtVerifier {
    /// Reads a JWKS document (`{"keys": [...]}`). Every key needs a `kid`;
    /// symmetric keys are refused (a shared secret is not an identity
    /// provider's key).
    pub fn from_jwks(json: &str, settings: &JwtSettings) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(json).context("not a JWKS document")?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().context("a key without `kid`")?;
            anyhow::ensure!(
                !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)),
                "key {kid}: symmetric keys are not accepted"
            );
            let algorithm = algorithm_of(jwk).with_context(|| format!("key {kid}"))?;
            let key = DecodingKey::from_jwk(jwk).with_context(|| format!("key {kid}"))?;
            let mut validation = Validation::new(algorithm);
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.validate_nbf = true;
            validation.leeway = settings.leeway.as_secs();
            keys.insert(kid, Key { key, validation });
        }
        anyhow::ensure!(!keys.is_empty(), "the JWKS has no key");
        Ok(Self { keys })
    }

    /// The identity a token proves.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = decode_header(token).map_err(|e| refusal(e.kind()))?;
        let key = match header.kid.as_deref() {
            Some(kid) => self.keys.get(kid),
            // A provider with one key may leave `kid` out.
            None if self.keys.len() == 1 => self.keys.values().next(),
            None => None,
        }
        .ok_or(AuthError::UnknownKey)?;
        let claims = decode::<Claims>(token, &key.key, &key.validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;
        Identity::new(
            claims.sub,
            claims.motcua_role,
            claims.motcua_province,
            claims.motcua_office,
            claims.name,
        )
    }
}

fn refusal(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => AuthError::BadSignature,
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::BadClaims(format!("no `{claim}` claim"))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::BadClaims(format!("the `{claim}` claim is malformed"))
        }
        ErrorKind::Json(e) => AuthError::BadClaims(e.to_string()),
        _ => AuthError::Malformed,
    }
}
