//! `GetYearlySeries`: one row per year for an office or a province (its
//! offices summed), in the shape of the district report's appendix.

use domain::LocalDay;
use proto::reports::v1 as pb;
use sqlx::Row as _;

use super::{Filter, ReportsService, counter_sums, internal, ratio, surveys_of, total};
use crate::{apply::metric, error::ReportError};

/// The unit a yearly series is asked for.
enum YearlyUnit<'a> {
    Office(&'a str),
    Province(&'a str),
}

impl<'a> YearlyUnit<'a> {
    /// Exactly one of the request's two codes, and a code a subject can hold.
    fn of(request: &'a pb::YearlySeriesRequest) -> Result<Self, ReportError> {
        const FIELDS: &str = "office_code/province_code";
        let unit = match (
            request.office_code.is_empty(),
            request.province_code.is_empty(),
        ) {
            (false, true) => Self::Office(&request.office_code),
            (true, false) => Self::Province(&request.province_code),
            (true, true) => {
                return Err(ReportError::invalid(
                    FIELDS,
                    "give exactly one of them: neither is set",
                ));
            }
            (false, false) => {
                return Err(ReportError::invalid(
                    FIELDS,
                    "give exactly one of them: both are set",
                ));
            }
        };
        let (field, code) = match unit {
            Self::Office(code) => ("office_code", code),
            Self::Province(code) => ("province_code", code),
        };
        if !bus::is_subject_token(code) {
            return Err(ReportError::invalid(
                field,
                "must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        Ok(unit)
    }

    fn scope(&self) -> pb::Scope {
        let unit = match self {
            Self::Office(code) => pb::scope::Unit::OfficeCode((*code).to_owned()),
            Self::Province(code) => pb::scope::Unit::ProvinceCode((*code).to_owned()),
        };
        pb::Scope {
            unit: Some(unit),
            ..Default::default()
        }
    }

    fn filter(&self) -> Filter {
        match self {
            Self::Office(code) => Filter::unit("office_code", code),
            Self::Province(code) => Filter::unit("province_code", code),
        }
    }

    fn series(&self, rows: Vec<pb::YearRow>) -> pb::YearlySeries {
        let (office_code, province_code) = match self {
            Self::Office(code) => ((*code).to_owned(), String::new()),
            Self::Province(code) => (String::new(), (*code).to_owned()),
        };
        pb::YearlySeries {
            office_code,
            province_code,
            rows,
        }
    }
}

/// The first and last years with counted events under `filter`; none
/// without any.
async fn years_with_events(
    conn: &mut sqlx::AnyConnection,
    filter: &Filter,
) -> Result<Option<(i32, i32)>, ReportError> {
    let sql = format!(
        "SELECT MIN(day), MAX(day) FROM daily_counts WHERE {}",
        filter.sql
    );
    let row = sqlx::query_with(sqlx::AssertSqlSafe(sql), filter.arguments(&[])?)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| {
            ReportError::Internal(anyhow::Error::new(e).context("find the years with events"))
        })?;
    let (min, max): (Option<i64>, Option<i64>) = (
        row.try_get(0).map_err(internal)?,
        row.try_get(1).map_err(internal)?,
    );
    Ok(min.zip(max).map(|(min, max)| {
        (
            LocalDay::from_days(min as i32).year(),
            LocalDay::from_days(max as i32).year(),
        )
    }))
}

/// One year's row from its counters.
async fn year_row(
    conn: &mut sqlx::AnyConnection,
    filter: &Filter,
    year: i32,
) -> Result<pb::YearRow, ReportError> {
    let (Some(from), Some(to)) = (LocalDay::first_of_year(year), LocalDay::last_of_year(year))
    else {
        return Err(ReportError::invalid(
            "from_year",
            format!("{year} is out of range"),
        ));
    };
    let sums = counter_sums(conn, filter, from, to).await?;
    let received = total(&sums, metric::RECEIVED);
    let in_time = total(&sums, metric::RESOLVED_EARLY) + total(&sums, metric::RESOLVED_ON_DUE_DATE);
    let late = total(&sums, metric::RESOLVED_LATE);
    let (surveys, survey_scales) = surveys_of(&sums);
    Ok(pb::YearRow {
        year,
        received,
        resolved: in_time + late,
        resolved_in_time: in_time,
        resolved_late: late,
        in_time_over_resolved: format!("{in_time}/{}", in_time + late),
        surveys,
        survey_coverage: ratio(surveys, received),
        survey_scales,
    })
}

impl ReportsService {
    pub async fn yearly(
        &self,
        request: &pb::YearlySeriesRequest,
    ) -> Result<pb::YearlySeries, ReportError> {
        let unit = YearlyUnit::of(request)?;
        if let Some(point) = crate::asof::Point::from_proto(request.as_of.as_ref())? {
            let scratch = self.scratch(Some(&unit.scope()), point).await?;
            let now = pb::YearlySeriesRequest {
                as_of: None,
                ..request.clone()
            };
            return Box::pin(Self::scratch_service(&scratch).yearly(&now)).await;
        }
        let filter = unit.filter();
        let mut tx = self.snapshot().await?;
        let (from_year, to_year) = if request.from_year == 0 && request.to_year == 0 {
            match years_with_events(&mut tx, &filter).await? {
                Some(years) => years,
                None => return Ok(unit.series(Vec::new())),
            }
        } else {
            (request.from_year, request.to_year)
        };
        if from_year > to_year || to_year - from_year > 200 {
            return Err(ReportError::invalid(
                "to_year",
                format!("{from_year}..{to_year} is not a range of years"),
            ));
        }
        let mut rows = Vec::new();
        for year in from_year..=to_year {
            rows.push(year_row(&mut tx, &filter, year).await?);
        }
        Ok(unit.series(rows))
    }
}
