//! The verified caller.

use serde::{Deserialize, Serialize};

use crate::AuthError;

/// What a caller is, in the one-stop mechanism's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes and moves dossiers at one office's desk; reads that office.
    Clerk,
    /// Reads one office's reports, lists and late feed.
    OfficeManager,
    /// Reads every office of one province, and nothing else.
    ProvinceReader,
    /// Rebuilds, republishes, replays parked events and imports, within
    /// one province.
    Operator,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Clerk => "clerk",
            Self::OfficeManager => "office_manager",
            Self::ProvinceReader => "province_reader",
            Self::Operator => "operator",
        }
    }

    /// Whether the role is tied to one office (else to a province).
    pub const fn has_office(self) -> bool {
        matches!(self, Self::Clerk | Self::OfficeManager)
    }
}

/// A verified caller: who, in which role, for which office or province.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The identity provider's subject (or the static token's name).
    pub subject: String,
    pub role: Role,
    /// The province the identity is scoped to (every role has one).
    pub province: String,
    /// The office, for clerks and office managers.
    pub office: Option<String>,
    /// A display name, for the record; never an authority.
    pub name: Option<String>,
}

impl Identity {
    /// An identity, checked for the scope its role needs: a clerk or an
    /// office manager needs an office; nobody may have an empty code.
    pub fn new(
        subject: String,
        role: Role,
        province: String,
        office: Option<String>,
        name: Option<String>,
    ) -> Result<Self, AuthError> {
        let bad = |why: &str| Err(AuthError::BadClaims(format!("{subject}: {why}")));
        if subject.is_empty() {
            return bad("an empty subject");
        }
        if province.is_empty() {
            return bad("no province");
        }
        match (&office, role.has_office()) {
            (None, true) => return bad("a role of one office without an office"),
            (Some(office), _) if office.is_empty() => return bad("an empty office"),
            (Some(_), false) => return bad("an office given to a province-wide role"),
            _ => {}
        }
        Ok(Self {
            subject,
            role,
            province,
            office,
            name,
        })
    }
}
