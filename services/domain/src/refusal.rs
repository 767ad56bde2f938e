//! [`Refusal`]: why a dossier's or a procedure's command appended nothing.

/// Why a command was refused; nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The command needs a dossier, and none was ever received (or
    /// submitted) under this id: a wrong id, not a wrong moment, so a client
    /// tells it apart from a dossier in the wrong state.
    #[error("cannot {action}: dossier {dossier_id} has not been received")]
    UnknownDossier {
        dossier_id: String,
        action: &'static str,
    },
    /// The command does not fit the dossier's state.
    #[error("cannot {action}: dossier {dossier_id} {reason}")]
    InvalidTransition {
        dossier_id: String,
        action: &'static str,
        reason: String,
    },
    /// A field's value is wrong whatever the state.
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// Something the command relies on is missing or not in force (e.g. the
    /// procedure a due date would come from).
    #[error("cannot {action}: {reason}")]
    Precondition {
        action: &'static str,
        /// What is missing or not in force: a procedure's stream id,
        /// `procedure/<code>`.
        subject: String,
        reason: String,
    },
}
