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

/// What a token's payload is decoded into: Motcua's claims and the expiry
/// (the validation has checked every registered claim already).
#[derive(Deserialize)]
struct Payload {
    #[serde(flatten)]
    claims: Claims,
    exp: u64,
}

/// Verified tokens kept at most; beyond, the expired ones go, and if that
/// is not enough, all.
const CACHE_LIMIT: usize = 10_000;

/// Verifies bearer JWTs against a key set.
///
/// A verified token is remembered until it expires (its `exp` plus the
/// leeway, as the validation would accept it): a desk client sends the
/// same token with every call, and checking its signature each time
/// (EdDSA, RSA) cost more than the rest of the call's authentication
/// (BENCHMARKS.md). Only a token that verified is remembered, by its whole
/// text, so a changed byte is verified afresh; a new key set (a JWKS
/// fetched again) is a new verifier and starts empty.
pub struct JwtVerifier {
    keys: HashMap<String, Key>,
    verified: std::sync::Mutex<HashMap<String, (Identity, u64)>>,
    /// Seconds since the epoch, for the cache's expiry.
    now: fn() -> u64,
}

fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        Ok(Self {
            keys,
            verified: std::sync::Mutex::new(HashMap::new()),
            now: system_now,
        })
    }

    /// The same verifier reading time from `now` (tests of the cache).
    #[doc(hidden)]
    pub fn with_clock(mut self, now: fn() -> u64) -> Self {
        self.now = now;
        self
    }

    /// The identity a token proves.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let now = (self.now)();
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((identity, until)) = verified.get(token) {
            if now <= *until {
                return Ok(identity.clone());
            }
            verified.remove(token);
        }
        drop(verified);
        let (identity, until) = self.verify_signed(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= CACHE_LIMIT {
            verified.retain(|_, (_, until)| now <= *until);
            if verified.len() >= CACHE_LIMIT {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), (identity.clone(), until));
        Ok(identity)
    }

    /// Checks the token's signature and claims; the identity, and until
    /// when (seconds since the epoch) the validation would accept it.
    fn verify_signed(&self, token: &str) -> Result<(Identity, u64), AuthError> {
        let header = decode_header(token).map_err(|e| refusal(e.kind()))?;
        let key = match header.kid.as_deref() {
            Some(kid) => self.keys.get(kid),
            // A provider with one key may leave `kid` out.
            None if self.keys.len() == 1 => self.keys.values().next(),
            None => None,
        }
        .ok_or(AuthError::UnknownKey)?;
        let payload = decode::<Payload>(token, &key.key, &key.validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;
        let claims = payload.claims;
        let identity = Identity::new(
            claims.sub,
            claims.motcua_role,
            claims.motcua_province,
            claims.motcua_office,
            claims.name,
        )?;
        Ok((identity, payload.exp.saturating_add(key.validation.leeway)))
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

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::Role;

    static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn fake_now() -> u64 {
        NOW.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Given a token remembered as verified until 1000, then it is taken
    /// as verified up to 1000 and checked afresh (and refused, not being a
    /// real token) from 1001 on.
    #[test]
    fn a_remembered_token_expires_with_its_validity() {
        let settings = JwtSettings {
            issuer: "i".into(),
            audience: "motcua".into(),
            leeway: std::time::Duration::from_secs(0),
        };
        let jwks = include_str!("../tests/keys/jwks.json");
        let verifier = JwtVerifier::from_jwks(jwks, &settings)
            .expect("the test JWKS")
            .with_clock(fake_now);
        let identity =
            Identity::new("s".into(), Role::Operator, "68".into(), None, None).expect("valid");
        verifier
            .verified
            .lock()
            .expect("not poisoned")
            .insert("remembered".into(), (identity.clone(), 1000));
        NOW.store(1000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(verifier.verify("remembered"), Ok(identity));
        NOW.store(1001, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(verifier.verify("remembered"), Err(AuthError::Malformed));
        assert!(verifier.verified.lock().expect("not poisoned").is_empty());
    }
}
