//! Why a caller was not identified. Every variant is `UNAUTHENTICATED` at
//! the gRPC edge; the variants are for logs and metrics, not for clients
//! (a client learns only that its credentials were refused and, for an
//! expired or not-yet-valid token, that time is the reason).

/// A refused credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token in the authorization metadata")]
    Missing,
    #[error("the authorization metadata is not `Bearer <token>`")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is signed by a key this service does not know")]
    UnknownKey,
    #[error("the token is not one this service knows")]
    UnknownToken,
    #[error("the client certificate names no identity this service knows")]
    UnknownCertificate,
    #[error("the client certificate names more than one identity")]
    AmbiguousCertificate,
    #[error("the token's claims are not an identity: {0}")]
    BadClaims(String),
}
