//! Authorization at the gRPC boundary: whether the verified caller may do
//! what a call asks, by [`identity::Identity::may`], answered
//! `PERMISSION_DENIED` when not. A service maps each of its RPCs to an
//! [`Action`] in one module of its own; this is where the answer is given.
//!
//! Without authentication (the loopback-only local mode) there is no
//! identity, and every call is allowed: the exposure check
//! ([`crate::SharedArgs::check_exposure`]) keeps such a server on loopback.

use std::collections::HashMap;

use identity::{Action, Identity};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `ErrorInfo.domain` of Motcua's statuses.
pub const ERROR_DOMAIN: &str = "motcua";
/// `ErrorInfo.reason` of a refusal for lack of scope or role.
pub const OUTSIDE_SCOPE: &str = "OUTSIDE_SCOPE";

/// `PERMISSION_DENIED` with an `ErrorInfo` naming the caller's role, for
/// a call outside what the caller may do. `what` says what was asked, in
/// the caller's own terms (it names nothing the caller did not send).
pub fn permission_denied(who: &Identity, what: &str) -> Status {
    metrics::counter!("auth_denied_total", "role" => who.role.as_str()).increment(1);
    let mut details = ErrorDetails::new();
    let metadata = HashMap::from([
        ("role".to_owned(), who.role.as_str().to_owned()),
        ("unit".to_owned(), who.unit().to_owned()),
    ]);
    details.set_error_info(OUTSIDE_SCOPE, ERROR_DOMAIN, metadata);
    Status::with_error_details(
        Code::PermissionDenied,
        format!(
            "{} {} of {} may not {what}",
            who.role.as_str(),
            who.subject,
            who.unit()
        ),
        details,
    )
}

/// Whether `caller` (`None`: no authentication configured) may do
/// `action`; `what` describes it for the refusal.
pub fn authorize(caller: Option<&Identity>, action: Action<'_>, what: &str) -> Result<(), Status> {
    match caller {
        Some(who) if !who.may(action) => Err(permission_denied(who, what)),
        _ => Ok(()),
    }
}

/// Whether `caller` may run an operation on the whole log or the whole
/// projection (republish, rebuild, parked events, reading the log): an
/// operator of the province this deployment serves (`--province`). A
/// deployment that names none allows it to nobody once authentication is
/// on, since its log may hold several provinces.
pub fn authorize_whole_log(
    caller: Option<&Identity>,
    served: Option<&str>,
    what: &str,
) -> Result<(), Status> {
    let Some(who) = caller else { return Ok(()) };
    match served {
        Some(province) => authorize(caller, Action::Operate { province }, what),
        None => Err(permission_denied(
            who,
            &format!("{what}: this deployment serves no single province (--province)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use identity::{Role, Scope};

    use super::*;

    fn who(role: Role, office: Option<&str>) -> Identity {
        Identity::new(
            "s-1".into(),
            role,
            "68".into(),
            office.map(Into::into),
            None,
        )
        .expect("a valid identity")
    }

    #[test]
    fn a_refusal_is_permission_denied_with_its_reason() {
        let reader = who(Role::ProvinceReader, None);
        let status = authorize(
            Some(&reader),
            Action::Read(Scope::Province("01")),
            "read province 01",
        )
        .expect_err("another province");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "province_reader s-1 of 68 may not read province 01"
        );
        let info = status.get_error_details().error_info().cloned();
        let info = info.expect("an ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (OUTSIDE_SCOPE, ERROR_DOMAIN)
        );
        assert!(authorize(Some(&reader), Action::Read(Scope::Province("68")), "x").is_ok());
        assert!(authorize(None, Action::Read(Scope::Province("01")), "x").is_ok());
    }

    #[test]
    fn whole_log_operations_need_an_operator_of_the_served_province() {
        let operator = who(Role::Operator, None);
        let clerk = who(Role::Clerk, Some("X"));
        assert!(authorize_whole_log(Some(&operator), Some("68"), "rebuild").is_ok());
        assert!(authorize_whole_log(Some(&operator), Some("01"), "rebuild").is_err());
        assert!(authorize_whole_log(Some(&clerk), Some("68"), "rebuild").is_err());
        let status = authorize_whole_log(Some(&operator), None, "rebuild").expect_err("none");
        assert!(
            status.message().contains("--province"),
            "{}",
            status.message()
        );
        assert!(authorize_whole_log(None, None, "rebuild").is_ok());
    }
}
