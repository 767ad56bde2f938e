//! `motcua report`: an office's (or a province's) yearly figures from the
//! projection, as a terminal table or as the appendix table of the yearly
//! administrative-reform report (Phụ lục 03, §5, and the survey results) in
//! CSV or XLSX.

mod appendix;
mod table;
mod xlsx;

use std::{io::Write as _, path::PathBuf};

use anyhow::Context as _;
use proto::reports::v1::{self as pb, reports_client::ReportsClient};

use crate::connect::{Services, Target};

pub use appendix::{Cell, Level, Line, lines};

#[derive(Clone, Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("unit").required(true).args(["office", "province"])),
    after_help = "\
Examples:
  motcua report --office TUY-PHONG --from-year 2015 --to-year 2020
  motcua report --office TUY-PHONG --from-year 2015 --to-year 2020 --format xlsx --output tuy-phong.xlsx
  motcua report --province BTH --from-year 2019 --to-year 2019 --format csv > bth-2019.csv
  motcua report --office TUY-PHONG --from-year 2020 --to-year 2020 --as-of 2020-03-31
  MOTCUA_PROJECTION=http://10.0.0.5:50052 motcua report --office TUY-PHONG"
)]
pub struct ReportArgs {
    /// Office code (a district or commune desk), e.g. TUY-PHONG.
    #[arg(long, value_name = "CODE")]
    pub office: Option<String>,
    /// Province code, e.g. BTH: all its offices together (instead of --office).
    #[arg(long, value_name = "CODE")]
    pub province: Option<String>,
    /// First year (local dates, UTC+7). Without --from-year and --to-year
    /// the report covers every year with events.
    #[arg(long, value_name = "YEAR", requires = "to_year")]
    pub from_year: Option<i32>,
    /// Last year, inclusive.
    #[arg(long, value_name = "YEAR", requires = "from_year")]
    pub to_year: Option<i32>,
    /// table for the terminal; csv or xlsx for the appendix table with its
    /// Vietnamese headings and number style.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Which appendix row holds the on-time ratio: 5.1 (department), 5.2
    /// (district) or 5.3 (commune).
    #[arg(long, value_enum, default_value_t = Level::District)]
    pub level: Level,
    /// Write here instead of standard output; required for xlsx.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The figures as the log stood then: a local date (its end, UTC+7),
    /// e.g. 2020-03-31, or an RFC 3339 instant, e.g. 2020-03-31T17:00:00+07:00.
    #[arg(long, value_name = "WHEN", value_parser = parse_as_of, conflicts_with = "as_of_position")]
    pub as_of: Option<prost_types::Timestamp>,
    /// The figures as the log stood at this position.
    #[arg(long, value_name = "POSITION")]
    pub as_of_position: Option<u64>,
}

/// A local date (its last instant, UTC+7) or an RFC 3339 instant.
fn parse_as_of(s: &str) -> Result<prost_types::Timestamp, String> {
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    let (seconds, nanos) = if let Ok(date) = s.parse::<calendar::LocalDate>() {
        // The last microsecond of the local day.
        let end = date.add_days(1).midnight() - 1;
        (end.div_euclid(1_000_000), end.rem_euclid(1_000_000) * 1_000)
    } else {
        let instant = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|_| format!("{s:?} is neither a date like 2020-03-31 nor an instant like 2020-03-31T17:00:00+07:00"))?;
        (instant.unix_timestamp(), i64::from(instant.nanosecond()))
    };
    Ok(prost_types::Timestamp {
        seconds,
        nanos: i32::try_from(nanos).unwrap_or(0),
    })
}

impl ReportArgs {
    fn as_of(&self) -> Option<pb::AsOf> {
        match (&self.as_of, self.as_of_position) {
            (Some(t), _) => Some(pb::AsOf {
                point: Some(pb::as_of::Point::RecordedBy(*t)),
            }),
            (None, Some(p)) => Some(pb::AsOf {
                point: Some(pb::as_of::Point::LogPosition(p)),
            }),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Xlsx,
}

/// Whose figures: the header of every format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unit {
    Office(String),
    Province(String),
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Office(code) => write!(f, "office {code}"),
            Self::Province(code) => write!(f, "province {code}"),
        }
    }
}

pub async fn run(services: &Services, args: ReportArgs) -> anyhow::Result<()> {
    let unit = match (&args.office, &args.province) {
        (Some(office), _) => Unit::Office(office.clone()),
        (None, Some(province)) => Unit::Province(province.clone()),
        (None, None) => anyhow::bail!("give --office or --province"),
    };
    // Refuse before asking anything of the service.
    if args.format == Format::Xlsx && args.output.is_none() {
        anyhow::bail!(
            "xlsx is a binary file: give --output FILE (it is never written to the terminal)"
        );
    }
    let target = services.projection();
    let channel = services.connect(&target).await?;
    let mut client = ReportsClient::new(channel);
    let years = args.from_year.zip(args.to_year);
    let rows = yearly_rows(&mut client, &target, &unit, years, args.as_of()).await?;
    let bytes = match args.format {
        Format::Table => table::render(&unit, &rows).into_bytes(),
        Format::Csv => appendix::csv(&rows, &lines(&rows, args.level))?,
        Format::Xlsx => xlsx::render(&unit, &rows, args.level)?,
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .context("cannot write to standard output")
        }
    }
}

/// One row per year from `GetYearlySeries`, for an office or a province
/// (the projection sums its offices).
async fn yearly_rows(
    client: &mut ReportsClient<crate::connect::Connection>,
    target: &Target,
    unit: &Unit,
    years: Option<(i32, i32)>,
    as_of: Option<pb::AsOf>,
) -> anyhow::Result<Vec<pb::YearRow>> {
    let (from_year, to_year) = years.unwrap_or((0, 0));
    let (office_code, province_code) = match unit {
        Unit::Office(code) => (code.clone(), String::new()),
        Unit::Province(code) => (String::new(), code.clone()),
    };
    let series = client
        .get_yearly_series(pb::YearlySeriesRequest {
            office_code,
            province_code,
            from_year,
            to_year,
            as_of,
        })
        .await
        .map_err(|s| target.status(&s))?
        .into_inner();
    Ok(series.rows)
}

#[cfg(test)]
mod tests {
    use super::parse_as_of;

    #[test]
    fn a_date_means_its_last_local_microsecond() {
        // 2020-03-31T23:59:59.999999+07:00 = 2020-03-31T16:59:59.999999Z.
        let t = parse_as_of("2020-03-31").expect("a date");
        assert_eq!((t.seconds, t.nanos), (1_585_673_999, 999_999_000));
    }

    #[test]
    fn an_instant_keeps_its_own_offset() {
        let t = parse_as_of("2020-03-31T17:00:00+07:00").expect("an instant");
        assert_eq!((t.seconds, t.nanos), (1_585_648_800, 0));
        let utc = parse_as_of("2020-03-31T10:00:00Z").expect("an instant");
        assert_eq!(utc, t);
    }

    #[test]
    fn anything_else_is_refused_with_both_forms() {
        let error = parse_as_of("31/03/2020").expect_err("not a form");
        assert!(error.contains("2020-03-31T17:00:00+07:00"), "{error}");
    }
}
