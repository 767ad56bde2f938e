//! Intake's typed errors and their one mapping to gRPC statuses.
//!
//! Every status carries `google.rpc` details, so a client acts on what went
//! wrong without parsing the message (which is for the clerk): an
//! `ErrorInfo` (a reason below, domain [`ERROR_DOMAIN`]), and where one thing
//! is at fault, a `ResourceInfo` (the dossier not found), a
//! `PreconditionFailure` (the dossier's status, or the catalog) or a
//! `BadRequest` field violation (the request's field, by its proto path).

use std::collections::HashMap;

use domain::Refusal;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `ErrorInfo.domain` of every error intake gives.
pub const ERROR_DOMAIN: &str = "motcua";

/// `ErrorInfo.reason` values, one per kind of error.
pub mod reason {
    /// NOT_FOUND: no dossier was ever received under the id.
    pub const DOSSIER_NOT_FOUND: &str = "DOSSIER_NOT_FOUND";
    /// FAILED_PRECONDITION: the dossier's status does not allow the command.
    pub const INVALID_TRANSITION: &str = "INVALID_TRANSITION";
    /// FAILED_PRECONDITION: the catalog lacks what the command relies on.
    pub const CATALOG_PRECONDITION: &str = "CATALOG_PRECONDITION";
    /// INVALID_ARGUMENT: a field's value is wrong.
    pub const INVALID_FIELD: &str = "INVALID_FIELD";
    /// INVALID_ARGUMENT: the request id was first used for another command.
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    /// ABORTED: another instance appended first; retry as is.
    pub const CONFLICT: &str = "CONFLICT";
    /// UNAVAILABLE: the event store failed; retry as is.
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    pub const STORE_FULL: &str = "STORE_FULL";
    /// UNAVAILABLE: intake is stopping; retry as is.
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
}

/// `PreconditionFailure.Violation.type` values.
pub mod precondition {
    /// The subject is a dossier id; its status refuses the command.
    pub const DOSSIER_STATUS: &str = "DOSSIER_STATUS";
    /// The subject is a procedure's stream id, `procedure/<code>`.
    pub const CATALOG: &str = "CATALOG";
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum IntakeError {
    /// The command does not fit the dossier (or a field is wrong for it).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A field is malformed whatever the dossier's state.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// The request id was first used for another command: a client bug (a
    /// retry repeats its command unchanged), refused rather than answered
    /// with the first command's reply, which names another dossier or event.
    #[error(
        "meta.request_id: {request_id} was first used for another command; a retry must repeat that command unchanged, and a new command needs a new request id"
    )]
    RequestIdReused { request_id: String },
    /// Another intake instance kept appending to the same dossier.
    #[error("the dossier changed while this command was decided; retry with the same request id")]
    Conflict,
    /// The event store failed; nothing was appended.
    #[error("the event store is unavailable; retry with the same request id ({0})")]
    Unavailable(String),
    /// The event store's disk is full; nothing was appended.
    #[error(
        "the event store's disk is full; nothing was appended; retry with the same request id once an operator has made room"
    )]
    StoreFull,
    #[error("intake is shutting down; retry with the same request id")]
    ShuttingDown,
    /// The caller's role or scope does not cover the command (a dossier
    /// of another office is not this: it is reported as unknown).
    #[error("{what} is outside the caller's scope")]
    OutsideScope {
        caller: Box<identity::Identity>,
        what: String,
    },
}

impl IntakeError {
    /// What a failed append tells the caller: the disk is full (no retry
    /// helps until an operator makes room), or the store is unavailable.
    pub(crate) fn from_append(e: &anyhow::Error) -> Self {
        if crate::store::is_disk_full(e) {
            Self::StoreFull
        } else {
            Self::Unavailable(format!("{e:#}"))
        }
    }

    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<IntakeError> for Status {
    fn from(e: IntakeError) -> Self {
        let message = e.to_string();
        let mut details = ErrorDetails::new();
        let (code, reason, metadata) = match e {
            // Preferred over FAILED_PRECONDITION, as gRPC's codes ask: the id
            // names nothing, whatever the moment.
            IntakeError::Refused(Refusal::UnknownDossier { dossier_id, action }) => {
                details.set_resource_info("dossier", &dossier_id, "", "has not been received");
                let metadata = [("dossierId", dossier_id), ("action", action.to_owned())];
                (Code::NotFound, reason::DOSSIER_NOT_FOUND, metadata.to_vec())
            }
            IntakeError::Refused(Refusal::InvalidTransition {
                dossier_id,
                action,
                reason: why,
            }) => {
                details.add_precondition_failure_violation(
                    precondition::DOSSIER_STATUS,
                    &dossier_id,
                    why,
                );
                let metadata = [("dossierId", dossier_id), ("action", action.to_owned())];
                (
                    Code::FailedPrecondition,
                    reason::INVALID_TRANSITION,
                    metadata.to_vec(),
                )
            }
            IntakeError::Refused(Refusal::Precondition {
                action,
                subject,
                reason: why,
            }) => {
                details.add_precondition_failure_violation(precondition::CATALOG, &subject, why);
                let metadata = [("subject", subject), ("action", action.to_owned())];
                (
                    Code::FailedPrecondition,
                    reason::CATALOG_PRECONDITION,
                    metadata.to_vec(),
                )
            }
            IntakeError::Refused(Refusal::InvalidField { field, reason: why })
            | IntakeError::InvalidArgument { field, reason: why } => {
                details.add_bad_request_violation(field, why);
                let metadata = vec![("field", field.to_owned())];
                (Code::InvalidArgument, reason::INVALID_FIELD, metadata)
            }
            // INVALID_ARGUMENT, not FAILED_PRECONDITION: by gRPC's litmus
            // test the latter means "retry once the system's state has been
            // fixed", and no state of the system makes this request right (a
            // used id stays used). The request itself is at fault, in its
            // meta.request_id, and the fix is the client's: a new id, or the
            // first command unchanged. (Stripe answers such a reused
            // idempotency key with 400 for the same reason.)
            IntakeError::RequestIdReused { request_id } => {
                details.add_bad_request_violation(
                    "meta.request_id",
                    format!("{request_id} was first used for another command"),
                );
                let metadata = vec![("requestId", request_id)];
                (Code::InvalidArgument, reason::REQUEST_ID_REUSED, metadata)
            }
            IntakeError::Conflict => (Code::Aborted, reason::CONFLICT, Vec::new()),
            IntakeError::Unavailable(_) => {
                (Code::Unavailable, reason::STORE_UNAVAILABLE, Vec::new())
            }
            IntakeError::StoreFull => (Code::ResourceExhausted, reason::STORE_FULL, Vec::new()),
            IntakeError::ShuttingDown => (Code::Unavailable, reason::SHUTTING_DOWN, Vec::new()),
            IntakeError::OutsideScope { caller, what } => {
                return server::permission_denied(&caller, &what);
            }
        };
        let metadata: HashMap<String, String> = metadata
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        details.set_error_info(reason, ERROR_DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(status: &Status) -> (String, HashMap<String, String>) {
        let details = status.get_error_details();
        let info = details.error_info().expect("every status has an ErrorInfo");
        assert_eq!(info.domain, ERROR_DOMAIN);
        (info.reason.clone(), info.metadata.clone())
    }

    #[test]
    fn an_unknown_dossier_is_not_found_with_its_resource() {
        let status = Status::from(IntakeError::from(Refusal::UnknownDossier {
            dossier_id: "D-1".into(),
            action: "record its result",
        }));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "cannot record its result: dossier D-1 has not been received"
        );
        let resource = status.get_error_details().resource_info().cloned();
        let resource = resource.expect("a ResourceInfo");
        assert_eq!(
            (
                resource.resource_type.as_str(),
                resource.resource_name.as_str()
            ),
            ("dossier", "D-1")
        );
        let (reason, metadata) = info(&status);
        assert_eq!(reason, reason::DOSSIER_NOT_FOUND);
        assert_eq!(metadata.get("dossierId").map(String::as_str), Some("D-1"));
    }

    #[test]
    fn a_wrong_state_and_a_missing_procedure_are_preconditions() {
        let status = Status::from(IntakeError::from(Refusal::InvalidTransition {
            dossier_id: "D-1".into(),
            action: "return its result",
            reason: "has no result yet; record the result first".into(),
        }));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let failure = status.get_error_details().precondition_failure().cloned();
        let violation = &failure.expect("a PreconditionFailure").violations[0];
        assert_eq!(violation.r#type, precondition::DOSSIER_STATUS);
        assert_eq!(violation.subject, "D-1");
        assert_eq!(
            violation.description,
            "has no result yet; record the result first"
        );
        assert_eq!(info(&status).0, reason::INVALID_TRANSITION);

        let status = Status::from(IntakeError::from(Refusal::Precondition {
            action: "receive it without a due date",
            subject: "procedure/9.999".into(),
            reason: "procedure 9.999 is not in the catalog".into(),
        }));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let failure = status.get_error_details().precondition_failure().cloned();
        let violation = &failure.expect("a PreconditionFailure").violations[0];
        assert_eq!(
            (violation.r#type.as_str(), violation.subject.as_str()),
            (precondition::CATALOG, "procedure/9.999")
        );
        assert_eq!(info(&status).0, reason::CATALOG_PRECONDITION);
    }

    #[test]
    fn a_bad_field_is_a_field_violation() {
        for error in [
            IntakeError::invalid("meta.request_id", "is required"),
            IntakeError::from(Refusal::InvalidField {
                field: "meta.request_id",
                reason: "is required".into(),
            }),
        ] {
            let status = Status::from(error);
            assert_eq!(status.code(), Code::InvalidArgument);
            let bad = status.get_error_details().bad_request().cloned();
            let violation = &bad.expect("a BadRequest").field_violations[0];
            assert_eq!(
                (violation.field.as_str(), violation.description.as_str()),
                ("meta.request_id", "is required")
            );
            assert_eq!(info(&status).0, reason::INVALID_FIELD);
        }
    }

    #[test]
    fn a_reused_request_id_is_a_field_violation_naming_it() {
        let status = Status::from(IntakeError::RequestIdReused {
            request_id: "r-7".into(),
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains("r-7 was first used for another command")
        );
        let bad = status.get_error_details().bad_request().cloned();
        let violation = &bad.expect("a BadRequest").field_violations[0];
        assert_eq!(violation.field, "meta.request_id");
        let (reason, metadata) = info(&status);
        assert_eq!(reason, reason::REQUEST_ID_REUSED);
        assert_eq!(metadata.get("requestId").map(String::as_str), Some("r-7"));
    }

    #[test]
    fn retryable_errors_say_so_by_code_and_reason() {
        for (error, code, why) in [
            (IntakeError::Conflict, Code::Aborted, reason::CONFLICT),
            (
                IntakeError::Unavailable("down".into()),
                Code::Unavailable,
                reason::STORE_UNAVAILABLE,
            ),
            (
                IntakeError::ShuttingDown,
                Code::Unavailable,
                reason::SHUTTING_DOWN,
            ),
            (
                IntakeError::StoreFull,
                Code::ResourceExhausted,
                reason::STORE_FULL,
            ),
        ] {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(info(&status).0, why);
        }
    }
}
