//! `motcua units`: the offices and provinces that have events
//! (`motcua.reports.v1.Reports/ListUnits`), with their first and last local
//! dates of events and the dossiers they received, so an operator knows
//! which codes and years a report can ask for.

use proto::reports::v1::{self as pb, reports_client::ReportsClient};
use serde_json::json;

use crate::connect::Services;

#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "\
Dates are local (UTC+7): the first and last event counted in a report.

Examples:
  motcua units
  motcua units --province BTH
  motcua units --json")]
pub struct UnitsArgs {
    /// Only this province's offices (and the province).
    #[arg(long, value_name = "CODE")]
    pub province: Option<String>,
    /// One JSON object per line (offices, then provinces) instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(services: &Services, args: UnitsArgs) -> anyhow::Result<()> {
    let target = services.projection();
    let channel = services.connect(&target).await?;
    let units = ReportsClient::new(channel)
        .list_units(pb::ListUnitsRequest {
            province_code: args.province.unwrap_or_default(),
        })
        .await
        .map_err(|s| target.status(&s))?
        .into_inner();
    if args.json {
        for line in json_lines(&units) {
            println!("{line}");
        }
    } else {
        print!("{}", render(&units));
    }
    Ok(())
}

/// "2015-01-05", or "-" when the server sent no date.
fn date(d: Option<&pb::LocalDate>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
    )
}

/// Two tables: offices, then provinces.
pub fn render(units: &pb::ListUnitsResponse) -> String {
    if units.offices.is_empty() {
        return "no events\n".to_owned();
    }
    let offices: Vec<Vec<String>> = units
        .offices
        .iter()
        .map(|u| {
            vec![
                u.office_code.clone(),
                u.province_code.clone(),
                date(u.first_event_day.as_ref()),
                date(u.last_event_day.as_ref()),
                u.dossiers_received.to_string(),
            ]
        })
        .collect();
    let provinces: Vec<Vec<String>> = units
        .provinces
        .iter()
        .map(|u| {
            vec![
                u.province_code.clone(),
                u.offices.to_string(),
                date(u.first_event_day.as_ref()),
                date(u.last_event_day.as_ref()),
                u.dossiers_received.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "office",
            "province",
            "first event",
            "last event",
            "received",
        ],
        &[false, false, false, false, true],
        &offices,
    );
    out.push('\n');
    out.push_str(&table(
        &[
            "province",
            "offices",
            "first event",
            "last event",
            "received",
        ],
        &[false, true, false, false, true],
        &provinces,
    ));
    out
}

/// Columns two spaces apart; numbers (`right`) right-aligned.
fn table(headings: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headings.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let headings: Vec<String> = headings.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&headings).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(right)
            .map(|((cell, &w), &right)| {
                if right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One JSON object per office, then per province.
pub fn json_lines(units: &pb::ListUnitsResponse) -> Vec<String> {
    let day = |d: Option<&pb::LocalDate>| d.map(|d| date(Some(d)));
    let offices = units.offices.iter().map(|u| {
        json!({
            "kind": "office",
            "office_code": u.office_code,
            "province_code": u.province_code,
            "first_event_day": day(u.first_event_day.as_ref()),
            "last_event_day": day(u.last_event_day.as_ref()),
            "dossiers_received": u.dossiers_received,
        })
    });
    let provinces = units.provinces.iter().map(|u| {
        json!({
            "kind": "province",
            "province_code": u.province_code,
            "offices": u.offices,
            "first_event_day": day(u.first_event_day.as_ref()),
            "last_event_day": day(u.last_event_day.as_ref()),
            "dossiers_received": u.dossiers_received,
        })
    });
    offices.chain(provinces).map(|v| v.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(year: i32, month: i32, day: i32) -> Option<pb::LocalDate> {
        Some(pb::LocalDate { year, month, day })
    }

    fn units() -> pb::ListUnitsResponse {
        pb::ListUnitsResponse {
            offices: vec![
                pb::Unit {
                    office_code: "TUY-PHONG".into(),
                    province_code: "BTH".into(),
                    first_event_day: day(2015, 1, 5),
                    last_event_day: day(2020, 12, 30),
                    dossiers_received: 45676,
                    offices: 0,
                },
                pb::Unit {
                    office_code: "PHAN-THIET".into(),
                    province_code: "BTH".into(),
                    first_event_day: day(2019, 3, 1),
                    last_event_day: day(2021, 1, 2),
                    dossiers_received: 7,
                    offices: 0,
                },
            ],
            provinces: vec![pb::Unit {
                office_code: String::new(),
                province_code: "BTH".into(),
                first_event_day: day(2015, 1, 5),
                last_event_day: day(2021, 1, 2),
                dossiers_received: 45683,
                offices: 2,
            }],
        }
    }

    #[test]
    fn offices_then_provinces_in_columns() {
        let text = render(&units());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "office      province  first event  last event  received",
                "TUY-PHONG   BTH       2015-01-05   2020-12-30     45676",
                "PHAN-THIET  BTH       2019-03-01   2021-01-02         7",
                "",
                "province  offices  first event  last event  received",
                "BTH             2  2015-01-05   2021-01-02     45683",
            ]
        );
    }

    #[test]
    fn json_is_one_object_per_unit() {
        let lines = json_lines(&units());
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[2],
            r#"{"dossiers_received":45683,"first_event_day":"2015-01-05","kind":"province","last_event_day":"2021-01-02","offices":2,"province_code":"BTH"}"#
        );
    }
}
