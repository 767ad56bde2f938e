//! Motcua's wire contracts: the versioned protobuf packages for lifecycle
//! events (`motcua.events.v1`), the desk's commands (`motcua.intake.v1`),
//! the province's reports (`motcua.reports.v1`) and operators' administration
//! of the projection (`motcua.admin.v1`), plus conversions between
//! `google.protobuf.Timestamp` and the domain's instants.
//!
//! This crate knows the wire format and nothing else: no database, no NATS,
//! no business rules. The services translate between these types and the
//! domain crate's at their edges.

#![allow(clippy::all, missing_docs, reason = "generated code")]

pub mod events {
    pub mod v1 {
        tonic::include_proto!("motcua.events.v1");
    }
}

pub mod intake {
    pub mod v1 {
        tonic::include_proto!("motcua.intake.v1");
    }
}

pub mod reports {
    pub mod v1 {
        tonic::include_proto!("motcua.reports.v1");
    }
}

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("motcua.admin.v1");
    }
}

/// The encoded `FileDescriptorSet` of every Motcua package, for gRPC server
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/motcua_descriptor.bin"));
