//! The procedure catalog's read model: which procedures were in force on
//! which local days, at which level and online level, folded from the
//! procedure streams (`procedure/<code>`) of the log, and the yearly counts
//! of appendix rows 1.2, 1.3 (procedures at district / commune level) and
//! 7, 8 (offered online at level 3 / 4, and of those without any dossier).
//!
//! Tables: `procedures` (one row per stream: its version, for version-ordered
//! apply, and whether it was withdrawn) and `procedure_periods` (one row per
//! definition: in force from the local day of its event until the local day
//! of the next event of the stream, exclusive; open while it is current).
//! A procedure is in force at the end of day E when a period has
//! `from_day <= E < until_day`.
//!
//! The fold is pure ([`CatalogChanges::apply`]); [`write`] runs inside the
//! batch's transaction (`store::ReadStore::commit`), with the checkpoint.

use std::collections::HashMap;

use anyhow::Context as _;
use domain::{
    Event, LocalDay, OnlineLevel, ProcedureChange, ProcedureDefinition,
    procedure::{PROCEDURE_STREAM_PREFIX, ProcessingTime, procedure_code_of},
};
use proto::reports::v1 as pb;
use sqlkit::{Backend, list_placeholders, push, values_placeholders};
use sqlx::{AnyPool, Row as _, any::AnyArguments};

use crate::{
    apply::{Applied, Changes},
    error::ReportError,
};

/// One procedure stream's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcedureRow {
    pub stream_id: String,
    pub code: String,
    pub province_code: String,
    pub version: i64,
    pub withdrawn: bool,
}

/// One definition and the days it was in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    pub province_code: String,
    pub from_day: i32,
    pub until_day: Option<i32>,
    pub definition: ProcedureDefinition,
}

/// The catalog changes of a batch, with the state of the procedures it
/// touches (loaded before the batch by [`load`]).
#[derive(Clone, Debug, Default)]
pub struct CatalogChanges {
    /// Procedure streams by stream id: loaded rows, then as changed.
    pub procedures: HashMap<String, ProcedureRow>,
    /// Stream ids changed by the batch.
    pub changed: Vec<String>,
    /// New periods by (code, seq = the version of the event that began it).
    pub periods: HashMap<(String, i64), Period>,
    /// Periods of earlier batches that ended: (code, seq, until_day).
    pub closed: Vec<(String, i64, i32)>,
}

impl CatalogChanges {
    /// Whether the batch writes nothing to the catalog's tables.
    pub fn writes_nothing(&self) -> bool {
        self.changed.is_empty() && self.periods.is_empty() && self.closed.is_empty()
    }

    /// The version a procedure stream has reached (0: unknown).
    pub fn version(&self, stream_id: &str) -> i64 {
        self.procedures.get(stream_id).map_or(0, |r| r.version)
    }

    /// Applies a catalog event if it is its stream's next version.
    pub fn apply(&mut self, event: &Event, change: &ProcedureChange) -> Applied {
        let Some(code) = procedure_code_of(&event.dossier_id) else {
            return Applied::Rejected(format!(
                "{} is a catalog event on {}, not on a procedure stream ({PROCEDURE_STREAM_PREFIX}<code>)",
                change.kind(),
                event.dossier_id
            ));
        };
        let current = self.version(&event.dossier_id);
        let version = i64::try_from(event.version).unwrap_or(i64::MAX);
        if version <= current {
            return Applied::Duplicate;
        }
        if version > current + 1 {
            return Applied::Held;
        }
        let day = event.occurred_at.local_day().days();
        let mut row = match (self.procedures.remove(&event.dossier_id), change) {
            (Some(row), _) => row,
            (None, ProcedureChange::Registered(_)) => ProcedureRow {
                stream_id: event.dossier_id.clone(),
                code: code.to_owned(),
                province_code: event.province_code.clone(),
                version: 0,
                withdrawn: false,
            },
            (None, other) => {
                return Applied::Rejected(format!(
                    "the first event of procedure {code} is {}, not procedure_registered",
                    other.kind()
                ));
            }
        };
        if current > 0 {
            let key = (code.to_owned(), current);
            match self.periods.get_mut(&key) {
                Some(period) => period.until_day = Some(day),
                None => self.closed.push((key.0, key.1, day)),
            }
        }
        match change {
            ProcedureChange::Registered(d) | ProcedureChange::Changed(d) => {
                self.periods.insert(
                    (code.to_owned(), version),
                    Period {
                        province_code: row.province_code.clone(),
                        from_day: day,
                        until_day: None,
                        definition: d.clone(),
                    },
                );
            }
            ProcedureChange::Withdrawn { .. } => row.withdrawn = true,
        }
        row.version = version;
        self.changed.push(row.stream_id.clone());
        self.procedures.insert(row.stream_id.clone(), row);
        Applied::Applied
    }
}

impl Changes {
    /// The version a dossier or a procedure stream has reached in this batch
    /// (0: unknown), for releasing held events.
    pub fn version_of(&self, id: &str) -> i64 {
        if id.starts_with(PROCEDURE_STREAM_PREFIX) {
            self.catalog.version(id)
        } else {
            self.rows.get(id).map_or(0, |r| r.version)
        }
    }
}

/// The catalog state of the procedure streams among `ids`.
pub async fn load(
    pool: &AnyPool,
    backend: Backend,
    ids: &[&str],
) -> anyhow::Result<CatalogChanges> {
    let mut changes = CatalogChanges::default();
    let streams: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| id.starts_with(PROCEDURE_STREAM_PREFIX))
        .collect();
    for chunk in streams.chunks(900) {
        let sql = format!(
            "SELECT stream_id, code, province_code, version, withdrawn FROM procedures WHERE stream_id IN ({})",
            list_placeholders(backend, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(pool).await.context("load procedures")? {
            let row = ProcedureRow {
                stream_id: r.try_get(0)?,
                code: r.try_get(1)?,
                province_code: r.try_get(2)?,
                version: r.try_get(3)?,
                withdrawn: r.try_get::<i64, _>(4)? != 0,
            };
            changes.procedures.insert(row.stream_id.clone(), row);
        }
    }
    Ok(changes)
}

/// Writes a batch's catalog changes inside its transaction.
pub async fn write(
    backend: Backend,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    changes: &CatalogChanges,
) -> anyhow::Result<()> {
    let mut changed: Vec<&ProcedureRow> = changes
        .changed
        .iter()
        .filter_map(|id| changes.procedures.get(id))
        .collect();
    changed.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
    changed.dedup_by(|a, b| a.stream_id == b.stream_id);
    for chunk in changed.chunks(1000) {
        let sql = format!(
            "INSERT INTO procedures (stream_id, code, province_code, version, withdrawn) VALUES {} \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, withdrawn = excluded.withdrawn",
            values_placeholders(backend, chunk.len(), 5)
        );
        let mut args = AnyArguments::default();
        for r in chunk {
            push(&mut args, r.stream_id.as_str())?;
            push(&mut args, r.code.as_str())?;
            push(&mut args, r.province_code.as_str())?;
            push(&mut args, r.version)?;
            push(&mut args, i64::from(r.withdrawn))?;
        }
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .persistent(false)
            .execute(&mut **tx)
            .await
            .context("upsert procedures")?;
    }
    let periods: Vec<_> = changes.periods.iter().collect();
    for chunk in periods.chunks(500) {
        let sql = format!(
            "INSERT INTO procedure_periods (code, seq, province_code, from_day, until_day, name, field, level, \
             online_level, working_days, working_hours, supplement_pauses) VALUES {} \
             ON CONFLICT (code, seq) DO UPDATE SET until_day = excluded.until_day",
            values_placeholders(backend, chunk.len(), 12)
        );
        let mut args = AnyArguments::default();
        for ((code, seq), p) in chunk {
            let d = &p.definition;
            let (days, hours) = match d.processing_time {
                ProcessingTime::WorkingDays(n) => (i64::from(n), 0),
                ProcessingTime::WorkingHours(n) => (0, i64::from(n)),
            };
            push(&mut args, code.as_str())?;
            push(&mut args, *seq)?;
            push(&mut args, p.province_code.as_str())?;
            push(&mut args, i64::from(p.from_day))?;
            push(&mut args, p.until_day.map(i64::from))?;
            push(&mut args, d.name.as_str())?;
            push(&mut args, d.field.as_str())?;
            push(&mut args, i64::from(d.level.code()))?;
            push(&mut args, i64::from(d.online.code()))?;
            push(&mut args, days)?;
            push(&mut args, hours)?;
            push(&mut args, i64::from(d.supplement_pauses))?;
        }
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .persistent(false)
            .execute(&mut **tx)
            .await
            .context("record procedure periods")?;
    }
    for (code, seq, until_day) in &changes.closed {
        sqlx::query("UPDATE procedure_periods SET until_day = $1 WHERE code = $2 AND seq = $3")
            .bind(i64::from(*until_day))
            .bind(code.as_str())
            .bind(*seq)
            .execute(&mut **tx)
            .await
            .context("end a procedure period")?;
    }
    Ok(())
}

fn internal(e: impl Into<anyhow::Error>, what: &'static str) -> ReportError {
    ReportError::Internal(e.into().context(what))
}

/// `GetProcedureCounts`: per year, the catalog in force at the end of
/// 31 December.
pub async fn procedure_counts(
    pool: &AnyPool,
    r: &pb::ProcedureCountsRequest,
) -> Result<pb::ProcedureCounts, ReportError> {
    if r.province_code.is_empty() {
        return Err(ReportError::invalid("province_code", "is required"));
    }
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| internal(e, "connect for a report"))?;
    let (from_year, to_year) = if r.from_year == 0 && r.to_year == 0 {
        let row = sqlx::query(
            "SELECT CAST(MIN(from_day) AS BIGINT), CAST(MAX(from_day) AS BIGINT), CAST(MAX(until_day) AS BIGINT) \
             FROM procedure_periods WHERE province_code = $1",
        )
        .bind(r.province_code.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| internal(e, "read the catalog's years"))?;
        let day = |i: usize| -> Result<Option<i32>, ReportError> {
            Ok(row
                .try_get::<Option<i64>, _>(i)
                .map_err(|e| internal(e, "read the catalog's years"))?
                .map(|d| LocalDay::from_days(d as i32).year()))
        };
        match (day(0)?, day(1)?, day(2)?) {
            (Some(first), Some(last), until) => (first, last.max(until.unwrap_or(last))),
            _ => {
                return Ok(pb::ProcedureCounts {
                    province_code: r.province_code.clone(),
                    years: Vec::new(),
                });
            }
        }
    } else {
        (r.from_year, r.to_year)
    };
    LocalDay::first_of_year(from_year)
        .ok_or_else(|| ReportError::invalid("from_year", "is not a supported year"))?;
    LocalDay::last_of_year(to_year)
        .ok_or_else(|| ReportError::invalid("to_year", "is not a supported year"))?;
    if to_year < from_year || to_year - from_year > 200 {
        return Err(ReportError::invalid(
            "to_year",
            format!("must be from {from_year} to {}", from_year + 200),
        ));
    }
    let mut years = Vec::new();
    for year in from_year..=to_year {
        let (Some(start), Some(end)) =
            (LocalDay::first_of_year(year), LocalDay::last_of_year(year))
        else {
            continue;
        };
        let rows = sqlx::query(
            "SELECT level, online_level, CAST(COUNT(*) AS BIGINT), \
             CAST(SUM(CASE WHEN EXISTS (SELECT 1 FROM daily_counts c WHERE c.province_code = p.province_code \
                 AND c.procedure_code = p.code AND c.metric = 'received' AND c.day >= $3 AND c.day <= $2) \
                 THEN 0 ELSE 1 END) AS BIGINT) \
             FROM procedure_periods p \
             WHERE p.province_code = $1 AND p.from_day <= $2 AND (p.until_day IS NULL OR p.until_day > $2) \
             GROUP BY level, online_level",
        )
        .bind(r.province_code.as_str())
        .bind(i64::from(end.days()))
        .bind(i64::from(start.days()))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| internal(e, "count procedures in force"))?;
        let mut y = pb::ProcedureYear {
            year,
            ..Default::default()
        };
        for row in rows {
            let get = |i: usize| -> Result<i64, ReportError> {
                row.try_get::<i64, _>(i)
                    .map_err(|e| internal(e, "count procedures in force"))
            };
            let (level, online, n, without) = (get(0)?, get(1)?, get(2)?, get(3)?);
            let n = u64::try_from(n).unwrap_or(0);
            let without = u64::try_from(without).unwrap_or(0);
            match domain::Level::from_code(level as i32) {
                Some(domain::Level::District) => y.district += n,
                Some(domain::Level::Commune) => y.commune += n,
                None => {}
            }
            y.total += n;
            match OnlineLevel::from_code(online as i32) {
                Some(OnlineLevel::Partial) => y.online_level_3 += n,
                Some(OnlineLevel::Full) => y.online_level_4 += n,
                _ => {}
            }
            if OnlineLevel::from_code(online as i32).is_some_and(OnlineLevel::is_online) {
                y.online += n;
                y.online_without_dossiers += without;
            }
        }
        years.push(y);
    }
    Ok(pb::ProcedureCounts {
        province_code: r.province_code.clone(),
        years,
    })
}
