//! Bearer tokens from the outside: JWTs signed with EdDSA and RS256 keys
//! checked against a JWKS (signature, key id, issuer, audience, expiry,
//! not-before with clock skew, Motcua's claims), and static tokens found
//! by their digest.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use identity::{
    AuthError, Authenticator, Claims, Identity, JwtSettings, JwtVerifier, Role, StaticTokens,
    token_digest,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

const ISSUER: &str = "https://id.lamdong.gov.vn";
const AUDIENCE: &str = "motcua";

fn settings() -> JwtSettings {
    JwtSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: Duration::from_secs(30),
    }
}

fn verifier() -> JwtVerifier {
    JwtVerifier::from_jwks(include_str!("keys/jwks.json"), &settings()).expect("the test JWKS")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[derive(Serialize)]
struct Token<'a> {
    iss: &'a str,
    aud: &'a str,
    exp: i64,
    nbf: i64,
    #[serde(flatten)]
    claims: Claims,
}

fn clerk() -> Claims {
    Claims {
        sub: "clerk-17".into(),
        motcua_role: Role::Clerk,
        motcua_province: "68".into(),
        motcua_office: Some("68-TUYPHONG".into()),
        name: Some("Nguyễn Thị Lan".into()),
    }
}

fn valid(claims: Claims) -> Token<'static> {
    Token {
        iss: ISSUER,
        aud: AUDIENCE,
        exp: now() + 600,
        nbf: now() - 10,
        claims,
    }
}

enum Signer {
    Ed,
    Rsa,
    Stranger,
}

fn sign(token: &Token<'_>, signer: Signer, kid: Option<&str>) -> String {
    let (algorithm, key) = match signer {
        Signer::Ed => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(include_bytes!("keys/ed25519.pem")),
        ),
        Signer::Stranger => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(include_bytes!("keys/ed25519-other.pem")),
        ),
        Signer::Rsa => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(include_bytes!("keys/rsa.pem")),
        ),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid.map(Into::into);
    encode(&header, token, &key.expect("a test key")).expect("signed")
}

fn expected_clerk() -> Identity {
    Identity::new(
        "clerk-17".into(),
        Role::Clerk,
        "68".into(),
        Some("68-TUYPHONG".into()),
        Some("Nguyễn Thị Lan".into()),
    )
    .expect("valid")
}

#[test]
fn eddsa_and_rs256_tokens_prove_their_identity() {
    let verifier = verifier();
    let ed = sign(&valid(clerk()), Signer::Ed, Some("ed-1"));
    assert_eq!(verifier.verify(&ed), Ok(expected_clerk()));
    let rsa = sign(&valid(clerk()), Signer::Rsa, Some("rsa-1"));
    assert_eq!(verifier.verify(&rsa), Ok(expected_clerk()));
}

#[test]
fn each_bad_token_is_refused_for_its_reason() {
    let verifier = verifier();
    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "expired beyond the skew",
            sign(
                &Token {
                    exp: now() - 120,
                    ..valid(clerk())
                },
                Signer::Ed,
                Some("ed-1"),
            ),
            AuthError::Expired,
        ),
        (
            "not valid for another minute",
            sign(
                &Token {
                    nbf: now() + 120,
                    ..valid(clerk())
                },
                Signer::Ed,
                Some("ed-1"),
            ),
            AuthError::NotYetValid,
        ),
        (
            "for another audience",
            sign(
                &Token {
                    aud: "cong-dich-vu-cong",
                    ..valid(clerk())
                },
                Signer::Ed,
                Some("ed-1"),
            ),
            AuthError::WrongAudience,
        ),
        (
            "from another issuer",
            sign(
                &Token {
                    iss: "https://evil.example",
                    ..valid(clerk())
                },
                Signer::Ed,
                Some("ed-1"),
            ),
            AuthError::WrongIssuer,
        ),
        (
            "signed by a key the JWKS lacks, under a known kid",
            sign(&valid(clerk()), Signer::Stranger, Some("ed-1")),
            AuthError::BadSignature,
        ),
        (
            "an RSA signature under the EdDSA key's kid",
            sign(&valid(clerk()), Signer::Rsa, Some("ed-1")),
            AuthError::BadSignature,
        ),
        (
            "an unknown kid",
            sign(&valid(clerk()), Signer::Ed, Some("ed-9")),
            AuthError::UnknownKey,
        ),
        (
            "no kid with two keys to choose from",
            sign(&valid(clerk()), Signer::Ed, None),
            AuthError::UnknownKey,
        ),
        (
            "a clerk without an office",
            sign(
                &valid(Claims {
                    motcua_office: None,
                    ..clerk()
                }),
                Signer::Ed,
                Some("ed-1"),
            ),
            AuthError::BadClaims("clerk-17: a role of one office without an office".into()),
        ),
        ("not a JWT", "a.b.c".into(), AuthError::Malformed),
    ];
    for (what, token, expected) in cases {
        assert_eq!(verifier.verify(&token), Err(expected), "{what}");
    }
}

#[test]
fn clock_skew_within_the_leeway_is_allowed() {
    let late = Token {
        exp: now() - 10,
        ..valid(clerk())
    };
    let early = Token {
        nbf: now() + 10,
        ..valid(clerk())
    };
    for token in [late, early] {
        let jwt = sign(&token, Signer::Ed, Some("ed-1"));
        assert_eq!(verifier().verify(&jwt), Ok(expected_clerk()));
    }
}

#[test]
fn a_jwks_with_a_shared_secret_or_no_kid_is_refused() {
    let secret = r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#;
    let error = JwtVerifier::from_jwks(secret, &settings()).map(|_| ());
    assert!(format!("{:#}", error.expect_err("refused")).contains("symmetric"));
    let no_kid = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    let error = JwtVerifier::from_jwks(no_kid, &settings()).map(|_| ());
    assert!(format!("{:#}", error.expect_err("refused")).contains("kid"));
}

const TOKENS: &str = r#"
[[token]]
sha256 = "SHA_DESK"
subject = "desk-1"
role = "clerk"
province = "68"
office = "68-TUYPHONG"

[[token]]
sha256 = "SHA_OPS"
subject = "ops"
role = "operator"
province = "68"
"#;

#[test]
fn static_tokens_are_found_by_their_digest_only() {
    let text = TOKENS
        .replace("SHA_DESK", &token_digest("desk-secret-1"))
        .replace("SHA_OPS", &token_digest("ops-secret"));
    let tokens = StaticTokens::parse(&text).expect("a token file");
    let auth = Authenticator::new(Some(verifier()), Some(tokens));
    let desk = auth
        .authenticate(Some("Bearer desk-secret-1"))
        .expect("known");
    assert_eq!((desk.subject.as_str(), desk.role), ("desk-1", Role::Clerk));
    let ops = auth
        .authenticate(Some("bearer ops-secret"))
        .expect("scheme is case-blind");
    assert_eq!(ops.role, Role::Operator);
    // The digest itself proves nothing.
    let digest = format!("Bearer {}", token_digest("desk-secret-1"));
    assert_eq!(
        auth.authenticate(Some(&digest)),
        Err(AuthError::UnknownToken)
    );
    let jwt = sign(&valid(clerk()), Signer::Rsa, Some("rsa-1"));
    assert_eq!(
        auth.authenticate(Some(&format!("Bearer {jwt}"))),
        Ok(expected_clerk())
    );
    assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
    assert_eq!(
        auth.authenticate(Some("Basic abc")),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        auth.authenticate(Some("Bearer ")),
        Err(AuthError::Malformed)
    );
}

#[test]
fn a_token_file_with_an_invalid_identity_names_it() {
    let text = TOKENS
        .replace("SHA_DESK", &token_digest("a"))
        .replace("SHA_OPS", &token_digest("a"));
    let error = StaticTokens::parse(&text).map(|_| ());
    assert!(format!("{:#}", error.expect_err("twice")).contains("listed twice"));
    let bad = "[[token]]\nsha256 = \"abc\"\nsubject = \"x\"\nrole = \"clerk\"\nprovince = \"68\"\n";
    let error = StaticTokens::parse(bad).map(|_| ());
    assert!(format!("{:#}", error.expect_err("short")).contains("64 hex digits"));
}
