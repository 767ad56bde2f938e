//! Projection's typed errors and their one mapping to gRPC statuses.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("reading the read models failed")]
    Internal(#[source] anyhow::Error),
}

impl ReportError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<ReportError> for Status {
    fn from(e: ReportError) -> Self {
        match &e {
            ReportError::InvalidArgument { .. } => {
                Status::new(Code::InvalidArgument, e.to_string())
            }
            ReportError::Internal(source) => {
                tracing::error!(error = %format!("{source:#}"), "report failed");
                Status::new(Code::Unavailable, e.to_string())
            }
        }
    }
}
