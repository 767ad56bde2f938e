//! The domain of a one-stop desk: what a dossier is, which lifecycle events
//! exist, which command may follow which state, and how instants map to
//! Vietnam's local dates; and the procedure catalog, whose procedures are
//! aggregates of the same log.
//!
//! Everything here is pure: no I/O, no clocks, no async, no wire format. The
//! services call [`decide_with`] to turn a command into an event (or a
//! refusal) under [`Terms`] (the working-time calendar and the catalog, both
//! plain values) and [`Dossier::apply`] to fold events into state; the
//! `proto` crate knows how these types travel. This crate must not know about
//! gRPC, NATS or SQL.

mod definition;
mod dossier;
mod event;
mod localtime;
pub mod procedure;
mod refusal;

pub use dossier::{
    Command, Dossier, Status, Terms, decide, decide_with, end_of_due_date, moved_by_pause,
};
pub use event::{Channel, Event, EventKind, Payload, Procedure, Rating, RatingScale, Timeliness};
pub use localtime::{LocalDay, Timestamp, VN_OFFSET_SECONDS};
pub use procedure::{
    Catalog, Level, OnlineLevel, ProcedureChange, ProcedureCommand, ProcedureDefinition,
    ProcedureRecord, decide_procedure,
};
pub use refusal::Refusal;
