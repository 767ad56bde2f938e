//! Who is calling and what they may do. A bearer token from the gRPC
//! `authorization` metadata (a JWT signed by the province's identity
//! provider and verified against its keys, [`JwtVerifier`], or a static
//! token of a small office stored hashed, [`StaticTokens`]) or the names of
//! a verified client certificate ([`CertificateIdentities`]) becomes an
//! [`Identity`]: a subject, a [`Role`] and the office or province it is
//! scoped to. [`Identity::may`] is the one table of what each role may do
//! ([`Action`]).
//!
//! This crate must not know about gRPC, dossiers, events or databases:
//! services ask it about a header value and an action, and map its answers
//! to statuses themselves.

mod access;
mod authenticator;
mod certificates;
mod error;
mod jwt;
mod static_tokens;
mod who;

pub use access::{Action, Scope};
pub use authenticator::Authenticator;
pub use certificates::CertificateIdentities;
pub use error::AuthError;
pub use jwt::{Claims, JwtSettings, JwtVerifier};
pub use static_tokens::{StaticTokens, token_digest};
pub use who::{Identity, Role};
