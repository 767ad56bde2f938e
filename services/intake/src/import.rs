//! `ImportDossiers`: a client stream of dossier histories (one row of an
//! import file each). Each row's fields are checked here; valid rows are
//! grouped into jobs of [`JOB_ROWS`] histories for the writer, which decides
//! each history in order and appends all accepted ones in one transaction
//! (see `writer::import`). Up to [`JOBS_IN_FLIGHT`] jobs are queued at once,
//! so the next job is read and checked while the writer commits one.
//!
//! Idempotency: a history's request id is `import:<dossier>:<fingerprint>`,
//! the fingerprint an FNV-1a hash of the row's encoded fields (row number
//! and actor left out). The writer stores one reply per imported history
//! under it, so the same row imported again (same file, or the file with
//! rows moved) is skipped and counted as already imported; a different row
//! for a dossier the store already holds is refused ("already exists").

use std::collections::VecDeque;

use domain::{Command, Timestamp};
use identity::Identity;
use prost::Message as _;
use proto::intake::v1 as pb;
use tokio::sync::oneshot;
use tonic::Status;

// FNV-1a, 64 bits: stable across builds and platforms (unlike std's
// hasher), which a stored request id needs.
use crate::fingerprint::fnv1a as fingerprint;
use crate::{
    error::IntakeError,
    validate::{
        channel, check_dossier_id, code, instant, procedure, rating, rating_scale, reason, text,
        timestamp, unit_code,
    },
    writer::{Clock, History, ImportOutcome, Step, WriterHandle},
};

/// Histories per writer job (one transaction).
pub const JOB_ROWS: usize = 4_000;
/// Jobs queued to the writer at once per call.
const JOBS_IN_FLIGHT: usize = 2;

type Pending = (
    Vec<(u64, String)>,
    oneshot::Receiver<Result<Vec<ImportOutcome>, IntakeError>>,
);

/// Reads the whole stream, imports it, and reports.
///
/// With a `caller` (authentication on), a row of a province outside the
/// caller's is rejected, and every imported event records the caller as
/// its actor, the row's actor as a display name.
pub async fn import(
    writer: &WriterHandle,
    clock: &Clock,
    caller: Option<&Identity>,
    mut rows: tonic::Streaming<pb::ImportDossier>,
) -> Result<pb::ImportReport, Status> {
    let mut report = pb::ImportReport::default();
    let mut job: Vec<History> = Vec::with_capacity(JOB_ROWS);
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        let row = rows.message().await?;
        let last = row.is_none();
        if let Some(row) = row {
            let number = row.row;
            let dossier_id = row.dossier_id.clone();
            match history(row, (clock)(), caller) {
                Ok(h) => job.push(h),
                Err(e) => report.rejected.push(pb::RejectedRow {
                    row: number,
                    dossier_id,
                    reason: e.to_string(),
                }),
            }
        }
        if job.len() >= JOB_ROWS || (last && !job.is_empty()) {
            let rows: Vec<(u64, String)> =
                job.iter().map(|h| (h.row, h.dossier_id.clone())).collect();
            let receiver = writer.queue_import(std::mem::take(&mut job)).await?;
            pending.push_back((rows, receiver));
        }
        while pending.len() >= JOBS_IN_FLIGHT || (last && !pending.is_empty()) {
            if let Some((rows, receiver)) = pending.pop_front() {
                let outcomes = receiver.await.map_err(|_| IntakeError::ShuttingDown)??;
                tally(&mut report, rows, outcomes);
            }
        }
        if last {
            break;
        }
    }
    report.rejected.sort_by_key(|r| r.row);
    Ok(report)
}

fn tally(report: &mut pb::ImportReport, rows: Vec<(u64, String)>, outcomes: Vec<ImportOutcome>) {
    for ((row, dossier_id), outcome) in rows.into_iter().zip(outcomes) {
        match outcome {
            ImportOutcome::Imported {
                events,
                last_position,
            } => {
                report.imported += 1;
                report.events += events;
                report.last_position = report.last_position.max(last_position);
            }
            ImportOutcome::AlreadyImported => report.already_imported += 1,
            ImportOutcome::Rejected(reason) => report.rejected.push(pb::RejectedRow {
                row,
                dossier_id,
                reason,
            }),
        }
    }
}

/// Checks a row's fields and turns it into a history: the receipt, then the
/// other steps in time order (ties in the order of the columns).
pub(crate) fn history(
    row: pb::ImportDossier,
    now: Timestamp,
    caller: Option<&Identity>,
) -> Result<History, IntakeError> {
    let request_id = request_id(&row);
    let actor = text(&row.actor, "actor", 0, 128)?;
    let actor = match caller {
        Some(who) => who.actor(&actor),
        None => actor,
    };
    let dossier_id = code(&row.dossier_id, "dossier_id", 64)?;
    let receive = receipt(&row)?;
    if let Some((_, province)) = receive.opened_unit() {
        crate::access::import_row(caller, province)?;
    }
    check_dossier_id(&dossier_id, &receive)?;
    let received_at = instant(row.received_at.as_ref(), "received_at", now)?
        .ok_or_else(|| IntakeError::invalid("received_at", "is required"))?;
    let mut later = later_steps(&row, now)?;
    // Stable: equal instants keep the columns' order.
    later.sort_by_key(|s| s.at);
    let mut steps = Vec::with_capacity(later.len() + 1);
    steps.push(Step {
        column: "received_at",
        at: received_at,
        command: receive,
    });
    steps.extend(later);
    Ok(History {
        row: row.row,
        request_id,
        actor,
        dossier_id,
        steps,
    })
}

/// `import:<dossier>:<fingerprint>`: names the row's content, its number
/// and actor left out, so the same row again is recognised wherever it is.
fn request_id(row: &pb::ImportDossier) -> String {
    let mut content = row.clone();
    content.row = 0;
    content.actor = String::new();
    format!(
        "import:{}:{:016x}",
        row.dossier_id,
        fingerprint(&content.encode_to_vec())
    )
}

/// The row's receipt, its fields checked.
fn receipt(row: &pb::ImportDossier) -> Result<Command, IntakeError> {
    Ok(Command::Receive {
        office_code: unit_code(&row.office_code, "office_code")?,
        province_code: unit_code(&row.province_code, "province_code")?,
        procedure: procedure(row.procedure.as_ref())?,
        channel: channel(row.channel)?,
        due_at: match row.due_at.as_ref() {
            None => None,
            Some(t) => Some(timestamp(Some(t), "due_at")?),
        },
    })
}

/// The row's steps after its receipt, in the order of the columns: result,
/// return, withdrawal, stop, then each survey.
fn later_steps(row: &pb::ImportDossier, now: Timestamp) -> Result<Vec<Step>, IntakeError> {
    let mut later: Vec<Step> = Vec::new();
    let mut add = |column: &'static str,
                   t: Option<&prost_types::Timestamp>,
                   command: Command|
     -> Result<(), IntakeError> {
        if let Some(at) = instant(t, column, now)? {
            later.push(Step {
                column,
                at,
                command,
            });
        }
        Ok(())
    };
    add("result_at", row.result_at.as_ref(), Command::RecordResult)?;
    add(
        "returned_at",
        row.returned_at.as_ref(),
        Command::ReturnResult,
    )?;
    add(
        "withdrawn_at",
        row.withdrawn_at.as_ref(),
        Command::Withdraw {
            reason: reason(&row.withdraw_reason, "withdraw_reason", false)?,
        },
    )?;
    if row.stopped_at.is_some() {
        add(
            "stopped_at",
            row.stopped_at.as_ref(),
            Command::Stop {
                reason: reason(&row.stop_reason, "stop_reason", true)?,
            },
        )?;
    }
    for survey in &row.surveys {
        let command = Command::RecordSurvey {
            scale: rating_scale(survey.scale, "survey_scale")?,
            rating: rating(survey.rating, "survey_rating")?,
            comment: String::new(),
        };
        if survey.at.is_none() {
            return Err(IntakeError::invalid(
                "surveyed_at",
                "is required for a survey",
            ));
        }
        add("surveyed_at", survey.at.as_ref(), command)?;
    }
    Ok(later)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_fnv1a() {
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn steps_follow_time_and_the_row_number_is_not_content() {
        let at = |s: i64| Some(bus::timestamp_to_proto(Timestamp::from_unix_seconds(s)));
        let row = pb::ImportDossier {
            row: 2,
            actor: "a".into(),
            dossier_id: "HS-1".into(),
            office_code: "O".into(),
            province_code: "P".into(),
            procedure: Some(proto::events::v1::Procedure {
                code: "1.1".into(),
                field: "f".into(),
            }),
            channel: 1,
            received_at: at(1_000),
            due_at: at(900_000),
            result_at: at(3_000),
            returned_at: at(4_000),
            surveys: vec![pb::ImportSurvey {
                scale: 1,
                rating: 1,
                at: at(2_000),
            }],
            ..Default::default()
        };
        let now = Timestamp::from_unix_seconds(2_000_000_000);
        let h = history(row.clone(), now, None).expect("valid");
        let columns: Vec<_> = h.steps.iter().map(|s| s.column).collect();
        assert_eq!(
            columns,
            ["received_at", "surveyed_at", "result_at", "returned_at"]
        );
        let moved = history(
            pb::ImportDossier {
                row: 90,
                actor: "b".into(),
                ..row.clone()
            },
            now,
            None,
        )
        .expect("valid");
        assert_eq!(h.request_id, moved.request_id);
        let changed = history(
            pb::ImportDossier {
                result_at: at(3_001),
                ..row
            },
            now,
            None,
        )
        .expect("valid");
        assert_ne!(h.request_id, changed.request_id);
    }
}
