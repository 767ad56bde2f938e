//! The domain of a one-stop desk: what a dossier is, which lifecycle events
//! exist, which command may follow which state, and how instants map to
//! Vietnam's local dates.
//!
//! Everything here is pure: no I/O, no clocks, no async, no wire format. The
//! services call [`decide`] to turn a command into an event (or a refusal) and
//! [`Dossier::apply`] to fold events into state; the `proto` crate knows how
//! these types travel. This crate must not know about gRPC, NATS or SQL.

mod dossier;
mod event;
mod localtime;

pub use dossier::{Command, Dossier, Refusal, Status, decide, end_of_due_date};
pub use event::{Channel, Event, EventKind, Payload, Procedure, Rating, RatingScale, Timeliness};
pub use localtime::{LocalDay, Timestamp, VN_OFFSET_SECONDS};
