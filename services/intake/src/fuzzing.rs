//! For the fuzz targets (`fuzz/` at the repository's root): each request
//! intake decodes, put through every check intake makes before its writer,
//! without a store or a server. Nothing here may panic on any input: an
//! input the checks refuse is an `Err`, ignored here.

use domain::{Command, Timestamp};
use prost::Message;
use proto::intake::v1 as pb;

use crate::{error::IntakeError, fingerprint::of_request, grpc};

/// The RPCs [`check_request`] knows: every request message of
/// `motcua.intake.v1` (`Intake`, `Log` and `DossierService`).
pub const RPCS: &[&str] = &[
    "ReceiveDossier",
    "SubmitOnline",
    "RefuseAtIntake",
    "RequestSupplement",
    "ProvideSupplement",
    "Reschedule",
    "RecordResult",
    "ReturnResult",
    "Withdraw",
    "Stop",
    "RecordSurvey",
    "RegisterProcedure",
    "ChangeProcedure",
    "WithdrawProcedure",
    "ImportDossiers",
    "Republish",
    "ReadEvents",
    "GetDossier",
    "LookUpDossier",
];

/// A fixed instant for the checks that read the clock (2025-01-01), so a
/// failing input fails again.
fn clock() -> crate::writer::Clock {
    std::sync::Arc::new(|| Timestamp::from_micros(1_735_689_600_000_000))
}

/// Decodes `bytes` as `rpc`'s request (one of [`RPCS`]) and checks it as
/// intake's handler would; refusals are ignored, a panic is a bug.
pub fn check_request(rpc: &str, bytes: &[u8]) {
    // A desk command's request: its checks, then its meta and dossier id.
    macro_rules! desk {
        ($request:ty, $command:expr) => {
            desk::<$request>(rpc, bytes, $command, |r| (r.meta, r.dossier_id))
        };
    }
    match rpc {
        "ReceiveDossier" => desk!(pb::ReceiveDossierRequest, grpc::receive_command),
        "SubmitOnline" => desk!(pb::SubmitOnlineRequest, grpc::submit_online_command),
        "RefuseAtIntake" => desk!(pb::RefuseAtIntakeRequest, grpc::refuse_command),
        "RequestSupplement" => desk!(
            pb::RequestSupplementRequest,
            grpc::request_supplement_command
        ),
        "ProvideSupplement" => desk!(
            pb::ProvideSupplementRequest,
            grpc::provide_supplement_command
        ),
        "Reschedule" => desk!(pb::RescheduleRequest, grpc::reschedule_command),
        "RecordResult" => desk!(pb::RecordResultRequest, |_| Ok(Command::RecordResult)),
        "ReturnResult" => desk!(pb::ReturnResultRequest, |_| Ok(Command::ReturnResult)),
        "Withdraw" => desk!(pb::WithdrawRequest, grpc::withdraw_command),
        "Stop" => desk!(pb::StopRequest, grpc::stop_command),
        "RecordSurvey" => desk!(pb::RecordSurveyRequest, grpc::survey_command),
        "RegisterProcedure" => {
            catalog::<pb::RegisterProcedureRequest>(rpc, bytes, crate::catalog::register, |r| {
                r.meta
            })
        }
        "ChangeProcedure" => {
            catalog::<pb::ChangeProcedureRequest>(rpc, bytes, crate::catalog::change, |r| r.meta)
        }
        "WithdrawProcedure" => {
            catalog::<pb::WithdrawProcedureRequest>(rpc, bytes, crate::catalog::withdraw, |r| {
                r.meta
            })
        }
        "ImportDossiers" => {
            if let Ok(row) = pb::ImportDossier::decode(bytes) {
                check_import_row(row);
            }
        }
        // Their one field is a position, taken as it is.
        "Republish" => {
            let _ = pb::RepublishRequest::decode(bytes);
        }
        "ReadEvents" => {
            let _ = pb::ReadEventsRequest::decode(bytes);
        }
        // The id's check, then (the lookup) the code's.
        "GetDossier" => {
            if let Ok(r) = pb::GetDossierRequest::decode(bytes) {
                let _ = crate::validate::code(&r.dossier_id, "dossier_id", 64);
            }
        }
        "LookUpDossier" => {
            if let Ok(r) = pb::LookUpDossierRequest::decode(bytes)
                && crate::validate::code(&r.dossier_id, "dossier_id", 64).is_ok()
            {
                let codes = crate::lookup::LookupCodes::from_secret(b"fuzzing secret, 16+");
                let _ = codes.matches(&r.dossier_id, &r.lookup_code);
            }
        }
        _ => {}
    }
}

/// Checks one row of an import as `ImportDossiers` does.
pub fn check_import_row(row: pb::ImportDossier) {
    let now = clock()();
    let _ = crate::import::history(row, now, None);
}

/// A desk command: its own fields (`command`), then the meta and the
/// dossier id (`split` takes them out of the request).
fn desk<R: Message + Default>(
    rpc: &str,
    bytes: &[u8],
    command: fn(&R) -> Result<Command, IntakeError>,
    split: fn(R) -> (Option<pb::CommandMeta>, String),
) {
    let Ok(request) = R::decode(bytes) else {
        return;
    };
    let fingerprint = of_request(rpc, &request);
    let command = command(&request);
    let (meta, dossier_id) = split(request);
    let _ = grpc::command_request(fingerprint, meta, dossier_id, command, &clock());
}

/// A catalog command: the procedure's stream id and command from the
/// request, then the meta.
fn catalog<R: Message + Default>(
    rpc: &str,
    bytes: &[u8],
    command: fn(&R) -> (String, Result<Command, IntakeError>),
    meta: fn(R) -> Option<pb::CommandMeta>,
) {
    let Ok(request) = R::decode(bytes) else {
        return;
    };
    let fingerprint = of_request(rpc, &request);
    let (stream, command) = command(&request);
    let _ = grpc::command_request(fingerprint, meta(request), stream, command, &clock());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The methods of intake's services, as the contracts declare them.
    fn declared() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut methods: Vec<String> = set
            .file
            .iter()
            .filter(|file| file.package() == "motcua.intake.v1")
            .flat_map(|file| &file.service)
            .flat_map(|service| &service.method)
            .map(|method| method.name().to_owned())
            .collect();
        methods.sort();
        methods
    }

    #[test]
    fn every_request_of_the_contract_is_checked() {
        let mut listed: Vec<String> = RPCS.iter().map(|&rpc| rpc.to_owned()).collect();
        listed.sort();
        assert_eq!(
            listed,
            declared(),
            "a new RPC needs its arm in check_request"
        );
    }

    #[test]
    fn empty_and_truncated_requests_are_refused_quietly() {
        for rpc in RPCS {
            check_request(rpc, &[]);
            check_request(rpc, &[0x0a, 0xff]);
        }
    }
}
