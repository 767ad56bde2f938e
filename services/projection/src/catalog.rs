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
//! `from_day <= E < until_day`. Their DDL is with the read models' other
//! tables (`store::schema`).
//!
//! The fold is pure ([`CatalogChanges::apply`], in `apply::catalog`, beside
//! the dossiers'); [`load`] reads what a batch folds on, and [`write`] runs
//! inside the batch's transaction (`store::ReadStore::commit`), with the
//! checkpoint.

use anyhow::Context as _;
use domain::{
    LocalDay, OnlineLevel,
    procedure::{PROCEDURE_STREAM_PREFIX, ProcessingTime},
};
use proto::reports::v1 as pb;
use sqlkit::{Backend, list_placeholders, push, values_placeholders};
use sqlx::{AnyPool, Row as _, any::AnyArguments};

pub use crate::apply::catalog::{CatalogChanges, ProcedureRow};
use crate::error::ReportError;

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
        match catalog_years(&mut conn, &r.province_code).await? {
            Some(years) => years,
            None => {
                return Ok(pb::ProcedureCounts {
                    province_code: r.province_code.clone(),
                    years: Vec::new(),
                });
            }
        }
    } else {
        (r.from_year, r.to_year)
    };
    check_years(from_year, to_year)?;
    let mut years = Vec::new();
    for year in from_year..=to_year {
        let (Some(start), Some(end)) =
            (LocalDay::first_of_year(year), LocalDay::last_of_year(year))
        else {
            continue;
        };
        years.push(year_counts(&mut conn, &r.province_code, year, start, end).await?);
    }
    Ok(pb::ProcedureCounts {
        province_code: r.province_code.clone(),
        years,
    })
}

/// The years a province's catalog spans, when none are asked for: from its
/// first period's to its last one's start or end; `None` when it has none.
async fn catalog_years(
    conn: &mut sqlx::AnyConnection,
    province_code: &str,
) -> Result<Option<(i32, i32)>, ReportError> {
    let row = sqlx::query(
        "SELECT CAST(MIN(from_day) AS BIGINT), CAST(MAX(from_day) AS BIGINT), CAST(MAX(until_day) AS BIGINT) \
         FROM procedure_periods WHERE province_code = $1",
    )
    .bind(province_code)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| internal(e, "read the catalog's years"))?;
    let day = |i: usize| -> Result<Option<i32>, ReportError> {
        Ok(row
            .try_get::<Option<i64>, _>(i)
            .map_err(|e| internal(e, "read the catalog's years"))?
            .map(|d| LocalDay::from_days(d as i32).year()))
    };
    Ok(match (day(0)?, day(1)?, day(2)?) {
        (Some(first), Some(last), until) => Some((first, last.max(until.unwrap_or(last)))),
        _ => None,
    })
}

/// Refuses years the calendar does not cover, and a span that runs
/// backwards or over 200 years.
fn check_years(from_year: i32, to_year: i32) -> Result<(), ReportError> {
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
    Ok(())
}

/// One year's counts: the procedures in force at the end of its last day
/// (`end`), and of the online ones those without a dossier received from
/// `start` on.
async fn year_counts(
    conn: &mut sqlx::AnyConnection,
    province_code: &str,
    year: i32,
    start: LocalDay,
    end: LocalDay,
) -> Result<pb::ProcedureYear, ReportError> {
    let rows = sqlx::query(
        "SELECT level, online_level, CAST(COUNT(*) AS BIGINT), \
         CAST(SUM(CASE WHEN EXISTS (SELECT 1 FROM daily_counts c WHERE c.province_code = p.province_code \
             AND c.procedure_code = p.code AND c.metric = 'received' AND c.day >= $3 AND c.day <= $2) \
             THEN 0 ELSE 1 END) AS BIGINT) \
         FROM procedure_periods p \
         WHERE p.province_code = $1 AND p.from_day <= $2 AND (p.until_day IS NULL OR p.until_day > $2) \
         GROUP BY level, online_level",
    )
    .bind(province_code)
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
        add_group(&mut y, level, online, n, without);
    }
    Ok(y)
}

/// Adds `n` procedures of one level and online level to a year's counts,
/// `without` of them without a dossier.
fn add_group(y: &mut pb::ProcedureYear, level: i64, online: i64, n: u64, without: u64) {
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
