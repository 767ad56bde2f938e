//! The procedure catalog on intake's side: the working-time calendar built
//! from the configuration, the catalog's procedures folded from their
//! streams (`procedure/<code>`) in the event store, the writer's decisions of
//! catalog commands, and the gRPC requests' validation.
//!
//! The writer owns one [`Catalog`]. It decides catalog commands against it
//! and hands it (with the calendar) to `domain::decide_with` as
//! [`domain::Terms`], so a receipt without a due date gets the catalog's
//! processing time and a supplement moves the due date by the paused working
//! time. A decision changes the catalog at once (later commands of the same
//! group commit see it); [`Catalog::commit`] keeps the changes once the batch
//! is durable, [`Catalog::rollback`] forgets them otherwise.
//!
//! Several intake instances on one database: each keeps its own copy. A
//! batch reloads from the store the procedures its catalog commands touch
//! and any procedure a receipt without due date names but this copy does
//! not know; a change made through another instance to a procedure this copy
//! already knows is seen after a restart.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use calendar::{Calendar, OfficeHours, Overrides};
use domain::{
    Catalog as Procedures, Command, Event, ProcedureCommand, ProcedureRecord, Terms, Timestamp,
    procedure::{CATALOG_OFFICE, PROCEDURE_STREAM_PREFIX, procedure_code_of, procedure_stream},
};
use proto::{events::v1 as ev, intake::v1 as pb};
use sqlx::Row as _;

pub use crate::validate::is_procedure_stream;
use crate::{
    error::IntakeError,
    store::{EventStore, NewEvent},
};

/// The calendar from the configuration: `office_hours` as
/// `HH:MM-HH:MM,HH:MM-HH:MM` and the overrides file, if any.
pub fn build_calendar(office_hours: &str, holidays: Option<&Path>) -> anyhow::Result<Calendar> {
    let hours = parse_office_hours(office_hours)
        .with_context(|| format!("--office-hours {office_hours:?}"))?;
    let overrides = match holidays {
        None => Overrides::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read the holidays file {}", path.display()))?;
            Overrides::parse(&text)
                .with_context(|| format!("the holidays file {}", path.display()))?
        }
    };
    Calendar::new(hours, &overrides).context("build the working-time calendar")
}

fn parse_office_hours(text: &str) -> anyhow::Result<OfficeHours> {
    let time = |t: &str| -> anyhow::Result<(u8, u8)> {
        let (h, m) = t
            .trim()
            .split_once(':')
            .with_context(|| format!("{t:?} is not HH:MM"))?;
        Ok((
            h.parse().with_context(|| format!("{t:?} is not HH:MM"))?,
            m.parse().with_context(|| format!("{t:?} is not HH:MM"))?,
        ))
    };
    let sessions: Vec<(&str, &str)> = text
        .split(',')
        .map(|s| s.split_once('-'))
        .collect::<Option<_>>()
        .context("expected two sessions, e.g. 07:00-11:30,13:30-17:00")?;
    let [(a, b), (c, d)] = sessions[..] else {
        anyhow::bail!("expected two sessions, e.g. 07:00-11:30,13:30-17:00");
    };
    Ok(OfficeHours::new(time(a)?, time(b)?, time(c)?, time(d)?)?)
}

/// The procedures this intake knows, and the calendar due dates use.
#[derive(Clone, Debug)]
pub struct Catalog {
    calendar: Arc<Calendar>,
    procedures: Procedures,
    /// Each procedure changed since the last commit, with its state before.
    undo: Vec<(String, Option<ProcedureRecord>)>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new(Arc::new(Calendar::vietnam()))
    }
}

impl Catalog {
    /// An empty catalog over `calendar`.
    pub fn new(calendar: Arc<Calendar>) -> Self {
        Self {
            calendar,
            procedures: Procedures::new(),
            undo: Vec::new(),
        }
    }

    /// Every procedure in the store.
    pub async fn load(store: &EventStore, calendar: Arc<Calendar>) -> anyhow::Result<Self> {
        let mut catalog = Self::new(calendar);
        // Stream ids `procedure/…` sort between these bounds ('0' follows '/').
        let rows = sqlx::query(
            "SELECT payload FROM events WHERE dossier_id >= $1 AND dossier_id < $2 ORDER BY dossier_id, version",
        )
        .bind(PROCEDURE_STREAM_PREFIX)
        .bind("procedure0")
        .fetch_all(store.pool())
        .await
        .context("load the procedure catalog")?;
        let payloads = rows
            .iter()
            .map(|r| r.try_get::<Vec<u8>, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        catalog.fold(payloads)?;
        tracing::info!(
            procedures = catalog.procedures.len(),
            "procedure catalog loaded"
        );
        Ok(catalog)
    }

    fn fold(&mut self, payloads: Vec<Vec<u8>>) -> anyhow::Result<()> {
        for payload in payloads {
            let event = bus::decode_event(&payload)
                .map_err(|e| anyhow::anyhow!("decode a stored procedure event: {e}"))?;
            let Some(code) = procedure_code_of(&event.dossier_id) else {
                continue;
            };
            let state = self.procedures.remove(code);
            let record = ProcedureRecord::apply(state, &event).map_err(|e| anyhow::anyhow!(e))?;
            self.procedures.insert(code.to_owned(), record);
        }
        Ok(())
    }

    /// What dossier decisions consult.
    pub fn terms(&self) -> Terms<'_> {
        Terms {
            calendar: &self.calendar,
            catalog: &self.procedures,
        }
    }

    /// Before deciding a batch: reloads from the store the procedures the
    /// batch's catalog commands touch (another instance may have changed
    /// them) and those that receipts without a due date name but this copy
    /// does not know. `commands` are the batch's, each with its stream id.
    pub async fn refresh_for<'a>(
        &mut self,
        store: &EventStore,
        commands: impl Iterator<Item = (&'a str, &'a Command)>,
    ) -> anyhow::Result<()> {
        let streams: Vec<String> = commands
            .filter_map(|(stream_id, command)| match command {
                Command::Procedure(_) => Some(stream_id.to_owned()),
                Command::Receive {
                    procedure,
                    due_at: None,
                    ..
                } if !self.procedures.contains_key(&procedure.code) => {
                    Some(procedure_stream(&procedure.code))
                }
                _ => None,
            })
            .collect();
        self.reload(store, streams).await
    }

    /// Before deciding an import: loads the procedures that receipts
    /// without a due date name but this copy does not know.
    pub async fn refresh_unknown(
        &mut self,
        store: &EventStore,
        codes: &[&str],
    ) -> anyhow::Result<()> {
        let streams = codes
            .iter()
            .filter(|code| !self.procedures.contains_key(**code))
            .map(|code| procedure_stream(code))
            .collect();
        self.reload(store, streams).await
    }

    /// Replaces these procedure streams' records with the store's.
    async fn reload(&mut self, store: &EventStore, mut streams: Vec<String>) -> anyhow::Result<()> {
        if streams.is_empty() {
            return Ok(());
        }
        streams.sort_unstable();
        streams.dedup();
        let ids: Vec<&str> = streams.iter().map(String::as_str).collect();
        let payloads = store.load_dossiers(&ids).await?;
        for id in &ids {
            if let Some(code) = procedure_code_of(id) {
                self.procedures.remove(code);
            }
        }
        self.fold(payloads)
    }

    /// Decides a catalog command of the batch for the procedure of
    /// `stream_id`, issued by `actor` under `request_id`, and applies the
    /// event to the catalog (undone by [`Self::rollback`]). Returns the
    /// event to append.
    pub fn decide(
        &mut self,
        stream_id: &str,
        command: &ProcedureCommand,
        at: Timestamp,
        now: Timestamp,
        actor: &str,
        request_id: &str,
    ) -> Result<Event, IntakeError> {
        let code = procedure_code_of(stream_id)
            .ok_or_else(|| IntakeError::invalid("code", "is not a procedure's"))?;
        let record = self.procedures.get(code);
        let payload = domain::decide_procedure(code, record, command, at)?;
        let province_code = match (command, record) {
            (ProcedureCommand::Register { province_code, .. }, _) => province_code.clone(),
            (_, Some(r)) => r.province_code.clone(),
            (_, None) => String::new(),
        };
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            dossier_id: stream_id.to_owned(),
            office_code: CATALOG_OFFICE.to_owned(),
            province_code,
            version: record.map_or(1, |r| r.version + 1),
            occurred_at: at,
            recorded_at: now,
            actor: actor.to_owned(),
            request_id: request_id.to_owned(),
            payload,
        };
        let before = self.procedures.remove(code);
        let after = ProcedureRecord::apply(before.clone(), &event)
            .map_err(|e| IntakeError::Unavailable(format!("apply a decided event: {e}")))?;
        self.undo.push((code.to_owned(), before));
        self.procedures.insert(code.to_owned(), after);
        Ok(event)
    }

    /// The province that owns the procedure of `stream_id`, if it is known.
    pub fn province_of(&self, stream_id: &str) -> Option<&str> {
        let code = procedure_code_of(stream_id)?;
        Some(self.procedures.get(code)?.province_code.as_str())
    }

    /// The batch is durable: keep its changes.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// The batch failed: forget its changes, latest first.
    pub fn rollback(&mut self) {
        while let Some((code, before)) = self.undo.pop() {
            match before {
                Some(record) => self.procedures.insert(code, record),
                None => self.procedures.remove(&code),
            };
        }
    }
}

/// The stored form of a decided catalog event.
pub fn new_event(event: &Event) -> NewEvent {
    NewEvent {
        event_id: event.event_id.clone(),
        dossier_id: event.dossier_id.clone(),
        office_code: event.office_code.clone(),
        province_code: event.province_code.clone(),
        version: event.version,
        kind: event.payload.kind().as_str(),
        recorded_at: event.recorded_at.micros(),
        payload: bus::encode_event(event),
    }
}

// ---------------------------------------------------------------------------
// gRPC requests → commands
// ---------------------------------------------------------------------------

fn invalid_definition(field: &'static str, reason: impl Into<String>) -> IntakeError {
    IntakeError::invalid(field, reason)
}

fn procedure_code(code: &str, field: &'static str) -> Result<String, IntakeError> {
    let len = code.chars().count();
    if !(1..=54).contains(&len)
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(IntakeError::invalid(
            field,
            format!("{code:?} must be 1 to 54 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(code.to_owned())
}

fn text(value: &str, field: &'static str, min: usize, max: usize) -> Result<String, IntakeError> {
    let len = value.chars().count();
    if len < min {
        return Err(IntakeError::invalid(field, "is required"));
    }
    if len > max || value.chars().any(char::is_control) {
        return Err(IntakeError::invalid(
            field,
            format!("must be at most {max} characters, without control characters"),
        ));
    }
    Ok(value.to_owned())
}

fn definition(
    d: Option<&ev::ProcedureDefinition>,
) -> Result<domain::ProcedureDefinition, IntakeError> {
    let d = d.ok_or_else(|| {
        IntakeError::invalid(
            "definition",
            "is required (code, name, level, processing time, online level, supplement clock)",
        )
    })?;
    procedure_code(&d.code, "definition.code")?;
    text(&d.name, "definition.name", 1, 500)?;
    text(&d.field, "definition.field", 0, 64)?;
    bus::definition_from_proto(d).map_err(|(field, reason)| {
        let field = match field {
            "processing_time" => "definition.processing_time",
            "level" => "definition.level",
            "online_level" => "definition.online_level",
            _ => "definition.supplement_clock",
        };
        invalid_definition(field, reason)
    })
}

/// The stream of a request's code; a bad code is reported by the command's
/// validation, under the code's own field name.
fn stream_for(code: &str) -> String {
    match procedure_code(code, "code") {
        Ok(code) => procedure_stream(&code),
        Err(_) => PROCEDURE_STREAM_PREFIX.to_owned(),
    }
}

/// The stream id and command of a RegisterProcedure request.
pub fn register(r: &pb::RegisterProcedureRequest) -> (String, Result<Command, IntakeError>) {
    let code = r
        .definition
        .as_ref()
        .map(|d| d.code.clone())
        .unwrap_or_default();
    let command = (|| {
        if !bus::is_subject_token(&r.province_code) {
            return Err(IntakeError::invalid(
                "province_code",
                format!(
                    "{:?} must be 1 to 64 letters, digits, '-' or '_'",
                    r.province_code
                ),
            ));
        }
        Ok(Command::Procedure(ProcedureCommand::Register {
            province_code: r.province_code.clone(),
            definition: definition(r.definition.as_ref())?,
        }))
    })();
    (stream_for(&code), command)
}

/// The stream id and command of a ChangeProcedure request.
pub fn change(r: &pb::ChangeProcedureRequest) -> (String, Result<Command, IntakeError>) {
    let code = r
        .definition
        .as_ref()
        .map(|d| d.code.clone())
        .unwrap_or_default();
    let command = definition(r.definition.as_ref())
        .map(|definition| Command::Procedure(ProcedureCommand::Change { definition }));
    (stream_for(&code), command)
}

/// The stream id and command of a WithdrawProcedure request.
pub fn withdraw(r: &pb::WithdrawProcedureRequest) -> (String, Result<Command, IntakeError>) {
    let command = procedure_code(&r.code, "code").and_then(|_| {
        Ok(Command::Procedure(ProcedureCommand::Withdraw {
            reason: text(&r.reason, "reason", 0, 2_000)?,
        }))
    });
    (stream_for(&r.code), command)
}
