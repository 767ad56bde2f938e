//! `ListUnits`: the offices and provinces that have events, with their first
//! and last local dates of events, from the daily counters.

use std::collections::BTreeMap;

use domain::LocalDay;
use proto::reports::v1 as pb;
use sqlx::Row as _;

use super::{Filter, ReportsService, internal};
use crate::{apply::metric, error::ReportError};

/// One office's (or province's) span of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    first: i64,
    last: i64,
    received: u64,
    offices: u32,
}

impl Span {
    fn merge(&mut self, other: Span) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.received += other.received;
        self.offices += other.offices;
    }

    fn unit(self, office_code: &str, province_code: &str) -> pb::Unit {
        pb::Unit {
            office_code: office_code.to_owned(),
            province_code: province_code.to_owned(),
            first_event_day: local_date(self.first),
            last_event_day: local_date(self.last),
            dossiers_received: self.received,
            offices: self.offices,
        }
    }
}

fn local_date(days: i64) -> Option<pb::LocalDate> {
    let (year, month, day) = LocalDay::from_days(i32::try_from(days).ok()?).ymd();
    Some(pb::LocalDate {
        year,
        month: i32::from(month),
        day: i32::from(day),
    })
}

/// Rows of (office, province) with their spans; the order is the caller's
/// (text collation differs between the two databases).
async fn office_spans(
    conn: &mut sqlx::AnyConnection,
    province: Option<&str>,
) -> Result<Vec<((String, String), Span)>, ReportError> {
    let filter = province.map(|code| Filter::unit("province_code", code));
    let (condition, received) = match &filter {
        Some(f) => (format!("WHERE {}", f.sql), f.next(1)),
        None => (String::new(), "$1".to_owned()),
    };
    let sql = format!(
        "SELECT office_code, province_code, MIN(day), MAX(day), \
         CAST(COALESCE(SUM(CASE WHEN metric = {received} THEN n ELSE 0 END), 0) AS BIGINT) \
         FROM daily_counts {condition} GROUP BY office_code, province_code"
    );
    let mut args = match &filter {
        Some(f) => f.arguments(&[])?,
        None => sqlx::any::AnyArguments::default(),
    };
    sqlx::Arguments::add(&mut args, metric::RECEIVED.to_owned())
        .map_err(|e| ReportError::Internal(anyhow::anyhow!("encode an argument: {e}")))?;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| {
            ReportError::Internal(anyhow::Error::new(e).context("list the units with events"))
        })?;
    let mut spans = Vec::with_capacity(rows.len());
    for r in rows {
        let received: i64 = r.try_get(4).map_err(internal)?;
        spans.push((
            (
                r.try_get(0).map_err(internal)?,
                r.try_get(1).map_err(internal)?,
            ),
            Span {
                first: r.try_get(2).map_err(internal)?,
                last: r.try_get(3).map_err(internal)?,
                received: u64::try_from(received).unwrap_or(0),
                offices: 1,
            },
        ));
    }
    Ok(spans)
}

impl ReportsService {
    pub async fn units(
        &self,
        request: &pb::ListUnitsRequest,
    ) -> Result<pb::ListUnitsResponse, ReportError> {
        let province = (!request.province_code.is_empty()).then_some(&*request.province_code);
        if province.is_some_and(|code| !bus::is_subject_token(code)) {
            return Err(ReportError::invalid(
                "province_code",
                "must be empty (every province) or 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        let mut tx = self.snapshot().await?;
        let spans = office_spans(&mut tx, province).await?;
        drop(tx);
        let offices: BTreeMap<(String, String), Span> = spans
            .into_iter()
            .map(|((office, province), span)| ((province, office), span))
            .collect();
        let mut provinces: BTreeMap<&str, Span> = BTreeMap::new();
        for ((province, _), span) in &offices {
            provinces
                .entry(province)
                .and_modify(|p| p.merge(*span))
                .or_insert(*span);
        }
        Ok(pb::ListUnitsResponse {
            offices: offices
                .iter()
                .map(|((province, office), span)| span.unit(office, province))
                .collect(),
            provinces: provinces
                .iter()
                .map(|(province, span)| span.unit("", province))
                .collect(),
        })
    }
}
