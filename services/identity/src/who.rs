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

impl Identity {
    /// The office or province the identity acts for: its office when its
    /// role has one, else its province.
    pub fn unit(&self) -> &str {
        self.office.as_deref().unwrap_or(&self.province)
    }

    /// Who did it, as an event records it: the verified subject and the
    /// unit it acts for (`desk-7@TUYPHONG`), then a display name in
    /// brackets. `display` is what the request typed; it may only name,
    /// never identify, so it comes after the verified part, and a bracket
    /// or line break in it is replaced so it cannot fake one. Empty: the
    /// identity provider's own `name`, if any.
    pub fn actor(&self, display: &str) -> String {
        let display = if display.trim().is_empty() {
            self.name.as_deref().unwrap_or("")
        } else {
            display
        };
        let display: String = display
            .trim()
            .chars()
            .map(|c| match c {
                '(' | ')' | '@' => '_',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect();
        if display.is_empty() {
            format!("{}@{}", self.subject, self.unit())
        } else {
            format!("{}@{} ({display})", self.subject, self.unit())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clerk(name: Option<&str>) -> Identity {
        Identity::new(
            "desk-7".into(),
            Role::Clerk,
            "68".into(),
            Some("TUYPHONG".into()),
            name.map(Into::into),
        )
        .expect("a valid identity")
    }

    /// Given a verified clerk, when a request names someone, then the
    /// record keeps the verified subject and office first and the name
    /// only as a display, unable to pass for another identity.
    #[test]
    fn the_actor_is_the_verified_identity_with_a_display_name() {
        assert_eq!(clerk(None).actor(""), "desk-7@TUYPHONG");
        assert_eq!(clerk(Some("Lan")).actor("  "), "desk-7@TUYPHONG (Lan)");
        assert_eq!(
            clerk(Some("Lan")).actor("Nguyễn Thị Lan"),
            "desk-7@TUYPHONG (Nguyễn Thị Lan)"
        );
        assert_eq!(
            clerk(None).actor("boss@HANOI) (x"),
            "desk-7@TUYPHONG (boss_HANOI_ _x)"
        );
        let operator =
            Identity::new("ops".into(), Role::Operator, "68".into(), None, None).expect("valid");
        assert_eq!(operator.actor("import"), "ops@68 (import)");
    }
}
