//! The `motcua.intake.v1.DossierService`: one dossier as the log holds
//! it. `GetDossier` gives its state and whole history to a caller whose
//! scope covers its office (by the office its receipt recorded);
//! `LookUpDossier` gives the citizen holding the slip's lookup code its
//! state and dates, nothing more. Both read the store, not the writer: what
//! they show is committed.

use domain::{Dossier, Event, EventKind, Status as State, Timeliness};
use identity::{Action, Identity, Scope};
use prost::Message as _;
use proto::{events::v1 as ev, intake::v1 as pb};
use tonic::{Request, Response, Status};

use crate::{error::IntakeError, lookup::LookupCodes, store::EventStore, validate::code};

#[derive(Clone, Debug)]
pub struct DossiersService {
    store: EventStore,
    codes: LookupCodes,
}

impl DossiersService {
    pub fn new(store: EventStore, codes: LookupCodes) -> Self {
        Self { store, codes }
    }

    /// The dossier's events, decoded for the domain and as the log holds
    /// them; empty when none was ever recorded under `dossier_id`.
    async fn events(&self, dossier_id: &str) -> Result<Vec<(Event, ev::Event)>, Status> {
        if crate::catalog::is_procedure_stream(dossier_id) {
            return Ok(Vec::new());
        }
        let payloads = self.store.load_dossiers(&[dossier_id]).await.map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "reading a dossier failed");
            Status::unavailable("the event store cannot be read now; try again")
        })?;
        payloads
            .iter()
            .map(|p| {
                let event = bus::decode_event(p);
                let stored = ev::Event::decode(p.as_slice());
                match (event, stored) {
                    (Ok(event), Ok(stored)) => Ok((event, stored)),
                    _ => Err(Status::internal("a stored event does not decode")),
                }
            })
            .collect()
    }
}

/// The answer for a dossier that does not exist, or that the caller may
/// not see, or whose lookup code is wrong: the same, word for word, with
/// the details of any unknown dossier (`DOSSIER_NOT_FOUND`).
fn not_found(dossier_id: &str) -> Status {
    IntakeError::from(domain::Refusal::UnknownDossier {
        dossier_id: dossier_id.to_owned(),
        action: "look it up",
    })
    .into()
}

/// The state the events leave.
fn fold(events: &[(Event, ev::Event)]) -> Result<Option<Dossier>, Status> {
    let mut state = None;
    for (event, _) in events {
        state = Some(Dossier::apply(state, event).map_err(Status::internal)?);
    }
    Ok(state)
}

fn may_read(caller: Option<&Identity>, d: &Dossier) -> bool {
    caller.is_none_or(|who| {
        who.may(Action::Read(Scope::Office {
            province: &d.province_code,
            office: &d.office_code,
        }))
    })
}

/// What a citizen may know: the state and the dates.
fn status(d: &Dossier, events: &[(Event, ev::Event)]) -> pb::DossierStatus {
    let when = |kinds: &[EventKind]| {
        events
            .iter()
            .rfind(|(e, _)| kinds.contains(&e.payload.kind()))
            .map(|(e, _)| bus::timestamp_to_proto(e.occurred_at))
    };
    let state = match d.status {
        State::Submitted => pb::DossierState::Submitted,
        State::Received => pb::DossierState::Received,
        State::Paused => pb::DossierState::WaitingForSupplement,
        State::Processed => pb::DossierState::ResultReady,
        State::Returned => pb::DossierState::Returned,
        State::Refused => pb::DossierState::Refused,
        State::Withdrawn => pb::DossierState::Withdrawn,
        State::Stopped => pb::DossierState::Stopped,
    };
    pb::DossierStatus {
        dossier_id: d.dossier_id.clone(),
        state: state.into(),
        submitted_at: when(&[EventKind::Submitted]),
        received_at: d.received_at.map(bus::timestamp_to_proto),
        due_at: d.due_at.map(bus::timestamp_to_proto),
        waiting_since: (d.status == State::Paused)
            .then_some(d.paused_at)
            .flatten()
            .map(bus::timestamp_to_proto),
        late: d.late_for.is_some() || d.timeliness == Some(Timeliness::Late),
        result_ready_at: when(&[EventKind::Processed]),
        returned_at: when(&[EventKind::Returned]),
        ended_at: when(&[
            EventKind::RefusedAtIntake,
            EventKind::Withdrawn,
            EventKind::Stopped,
        ]),
    }
}

#[tonic::async_trait]
impl pb::dossier_service_server::DossierService for DossiersService {
    async fn get_dossier(
        &self,
        request: Request<pb::GetDossierRequest>,
    ) -> Result<Response<pb::GetDossierResponse>, Status> {
        let caller = server::identity_of(&request).cloned();
        let dossier_id = code(&request.get_ref().dossier_id, "dossier_id", 64)?;
        let events = self.events(&dossier_id).await?;
        let Some(d) = fold(&events)?.filter(|d| may_read(caller.as_ref(), d)) else {
            return Err(not_found(&dossier_id));
        };
        Ok(Response::new(pb::GetDossierResponse {
            status: Some(status(&d, &events)),
            office_code: d.office_code.clone(),
            province_code: d.province_code.clone(),
            procedure: Some(ev::Procedure {
                code: d.procedure.code.clone(),
                field: d.procedure.field.clone(),
            }),
            channel: d.channel.code(),
            history: events.into_iter().map(|(_, stored)| stored).collect(),
        }))
    }

    async fn look_up_dossier(
        &self,
        request: Request<pb::LookUpDossierRequest>,
    ) -> Result<Response<pb::LookUpDossierResponse>, Status> {
        let r = request.into_inner();
        let dossier_id = code(&r.dossier_id, "dossier_id", 64)?;
        // The code first: a wrong one learns nothing, not even whether the
        // dossier exists, and costs no read.
        if !self.codes.matches(&dossier_id, &r.lookup_code) {
            metrics::counter!("intake_lookups_total", "outcome" => "refused").increment(1);
            return Err(not_found(&dossier_id));
        }
        let events = self.events(&dossier_id).await?;
        let Some(d) = fold(&events)? else {
            return Err(not_found(&dossier_id));
        };
        metrics::counter!("intake_lookups_total", "outcome" => "found").increment(1);
        Ok(Response::new(pb::LookUpDossierResponse {
            status: Some(status(&d, &events)),
        }))
    }
}
