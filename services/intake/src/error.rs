//! Intake's typed errors and their one mapping to gRPC statuses.

use domain::Refusal;
use tonic::{Code, Status};

#[derive(Clone, Debug, thiserror::Error)]
pub enum IntakeError {
    /// The command does not fit the dossier (or a field is wrong for it).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A field is malformed whatever the dossier's state.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// Another intake instance kept appending to the same dossier.
    #[error("the dossier changed while this command was decided; retry with the same request id")]
    Conflict,
    /// The event store failed; nothing was appended.
    #[error("the event store is unavailable; retry with the same request id ({0})")]
    Unavailable(String),
    #[error("intake is shutting down; retry with the same request id")]
    ShuttingDown,
}

impl IntakeError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<IntakeError> for Status {
    fn from(e: IntakeError) -> Self {
        let code = match &e {
            IntakeError::Refused(
                Refusal::InvalidTransition { .. } | Refusal::Precondition { .. },
            ) => Code::FailedPrecondition,
            IntakeError::Refused(Refusal::InvalidField { .. })
            | IntakeError::InvalidArgument { .. } => Code::InvalidArgument,
            IntakeError::Conflict => Code::Aborted,
            IntakeError::Unavailable(_) | IntakeError::ShuttingDown => Code::Unavailable,
        };
        Status::new(code, e.to_string())
    }
}
