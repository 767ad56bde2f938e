//! What each of intake's RPCs asks of the caller, in one place: the
//! action [`identity::Identity::may`] judges, or the operation on the whole
//! log. Handlers call these before any work; the writer then judges a desk
//! command against the office the log records for its dossier (see
//! `writer::batch`), which no request field can change.

use domain::{Command, ProcedureCommand};
use identity::{Action, Identity, Role};
use tonic::Status;

use crate::error::IntakeError;

fn outside(caller: &Identity, what: String) -> IntakeError {
    IntakeError::OutsideScope {
        caller: Box::new(caller.clone()),
        what,
    }
}

/// Whether `caller` may issue `command` at all. A receipt names the office
/// it is for, which must be the clerk's; any other desk command needs a
/// clerk, and its dossier's office is checked by the writer. A catalog
/// command needs an operator, of the province a registration names (a
/// change or withdrawal: of the procedure's, checked by the writer).
pub(crate) fn command(caller: Option<&Identity>, command: &Command) -> Result<(), IntakeError> {
    let Some(who) = caller else { return Ok(()) };
    let opened = command.opened_unit();
    let allowed = match (opened, command) {
        (Some((office, province)), _) => who.may(Action::Desk { province, office }),
        (None, Command::Procedure(ProcedureCommand::Register { province_code, .. })) => {
            who.may(Action::Operate {
                province: province_code,
            })
        }
        (None, Command::Procedure(_)) => who.role == Role::Operator,
        (None, _) => who.role == Role::Clerk,
    };
    if allowed {
        return Ok(());
    }
    let what = match (opened, command) {
        (Some((office, province)), _) => {
            format!("take dossiers for office {office} of province {province}")
        }
        (None, Command::Procedure(ProcedureCommand::Register { province_code, .. })) => {
            format!("register procedures of province {province_code}")
        }
        (None, Command::Procedure(_)) => "change the procedure catalog".to_owned(),
        (None, other) => format!("{} (a desk command)", other.action()),
    };
    Err(outside(who, what))
}

/// Whether `caller` may import a history for `province_code`: an operator
/// of that province.
pub(crate) fn import_row(
    caller: Option<&Identity>,
    province_code: &str,
) -> Result<(), IntakeError> {
    match caller {
        Some(who)
            if !who.may(Action::Operate {
                province: province_code,
            }) =>
        {
            Err(outside(
                who,
                format!("import dossiers of province {province_code}"),
            ))
        }
        _ => Ok(()),
    }
}

/// Whether `caller` may import at all (before any row is read).
pub(crate) fn import(caller: Option<&Identity>) -> Result<(), Status> {
    match caller {
        Some(who) if who.role != Role::Operator => {
            Err(server::permission_denied(who, "import dossiers"))
        }
        _ => Ok(()),
    }
}

/// Whether `caller` may republish the log or read it whole: an operator
/// of the province this deployment serves.
pub(crate) fn whole_log(
    caller: Option<&Identity>,
    served: Option<&str>,
    what: &str,
) -> Result<(), Status> {
    server::authorize_whole_log(caller, served, what)
}

#[cfg(test)]
mod tests {
    use domain::{Channel, Procedure};

    use super::*;

    fn who(role: Role) -> Identity {
        let office = role.has_office().then(|| "X".to_owned());
        Identity::new("s".into(), role, "60".into(), office, None).expect("valid")
    }

    fn receive(office: &str, province: &str) -> Command {
        Command::Receive {
            office_code: office.into(),
            province_code: province.into(),
            procedure: Procedure {
                code: "1.001".into(),
                field: "f".into(),
            },
            channel: Channel::InPerson,
            due_at: None,
        }
    }

    /// Given each role, when it issues each kind of command, then only a
    /// clerk takes dossiers, only for its own office, and only an operator
    /// of the province touches the catalog.
    #[test]
    fn who_may_issue_what() {
        let clerk = who(Role::Clerk);
        assert!(command(Some(&clerk), &receive("X", "60")).is_ok());
        assert!(command(Some(&clerk), &receive("Y", "60")).is_err());
        assert!(command(Some(&clerk), &receive("X", "01")).is_err());
        assert!(command(Some(&clerk), &Command::RecordResult).is_ok());
        for role in [Role::OfficeManager, Role::ProvinceReader, Role::Operator] {
            let caller = who(role);
            assert!(command(Some(&caller), &Command::RecordResult).is_err());
            assert!(command(Some(&caller), &receive("X", "60")).is_err());
        }
        let register = |province: &str| {
            Command::Procedure(ProcedureCommand::Register {
                province_code: province.into(),
                definition: domain::ProcedureDefinition {
                    code: "1.001".into(),
                    name: "n".into(),
                    field: "f".into(),
                    level: domain::Level::Commune,
                    processing_time: calendar::ProcessingTime::WorkingDays(5),
                    online: domain::OnlineLevel::Full,
                    supplement_pauses: true,
                },
            })
        };
        let operator = who(Role::Operator);
        assert!(command(Some(&operator), &register("60")).is_ok());
        assert!(command(Some(&operator), &register("01")).is_err());
        assert!(command(Some(&clerk), &register("60")).is_err());
        let withdraw = Command::Procedure(ProcedureCommand::Withdraw { reason: "r".into() });
        assert!(command(Some(&operator), &withdraw).is_ok());
        assert!(command(Some(&clerk), &withdraw).is_err());
        assert!(command(None, &withdraw).is_ok());
    }

    #[test]
    fn an_operator_imports_its_own_province() {
        let operator = who(Role::Operator);
        assert!(import(Some(&operator)).is_ok());
        assert!(import(Some(&who(Role::Clerk))).is_err());
        assert!(import_row(Some(&operator), "60").is_ok());
        assert!(import_row(Some(&operator), "01").is_err());
        assert!(import_row(None, "01").is_ok());
    }
}
