//! The terminal table: one line per year, right-aligned columns.

use proto::reports::v1::YearRow;

use super::Unit;

const HEADINGS: [&str; 6] = [
    "year",
    "received",
    // Early or on the due date, over resolved: the appendix's "đúng hạn".
    "in time/resolved",
    "late",
    "surveys",
    "coverage",
];

pub fn render(unit: &Unit, rows: &[YearRow]) -> String {
    let mut out = format!("{unit}\n");
    if rows.is_empty() {
        out.push_str("no events\n");
        return out;
    }
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.year.to_string(),
                r.received.to_string(),
                r.in_time_over_resolved.clone(),
                r.resolved_late.to_string(),
                r.surveys.to_string(),
                // A year without receipts has no coverage: "/", as the
                // appendix writes what does not apply.
                r.survey_coverage
                    .map_or_else(|| "/".to_owned(), |c| format!("{:.2}%", c * 100.0)),
            ]
        })
        .collect();
    let mut widths = HEADINGS.map(str::len);
    for line in &cells {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut push_line = |line: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = line
            .zip(widths)
            .map(|(cell, w)| format!("{cell:>w$}"))
            .collect();
        out.push_str(&parts.join("  "));
        out.push('\n');
    };
    push_line(&mut HEADINGS.iter().copied());
    for line in &cells {
        push_line(&mut line.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let rows = [
            YearRow {
                year: 2017,
                received: 8955,
                resolved: 8955,
                resolved_in_time: 8953,
                resolved_late: 2,
                in_time_over_resolved: "8953/8955".into(),
                surveys: 1468,
                survey_coverage: Some(1468.0 / 8955.0),
                survey_scales: Vec::new(),
            },
            YearRow {
                year: 2019,
                received: 12429,
                resolved: 12429,
                resolved_in_time: 12411,
                resolved_late: 18,
                in_time_over_resolved: "12411/12429".into(),
                surveys: 150,
                survey_coverage: Some(150.0 / 12429.0),
                survey_scales: Vec::new(),
            },
        ];
        let table = render(&Unit::Office("TUY-PHONG".into()), &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "office TUY-PHONG");
        assert_eq!(
            lines[1],
            "year  received  in time/resolved  late  surveys  coverage"
        );
        assert_eq!(
            lines[2],
            "2017      8955         8953/8955     2     1468    16.39%"
        );
        assert_eq!(
            lines[3],
            "2019     12429       12411/12429    18      150     1.21%"
        );
    }

    #[test]
    fn a_year_without_receipts_shows_a_slash_for_coverage() {
        let rows = [YearRow {
            year: 2021,
            in_time_over_resolved: "0/0".into(),
            survey_coverage: None,
            ..Default::default()
        }];
        let table = render(&Unit::Province("BTH".into()), &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "province BTH");
        assert_eq!(
            lines[2],
            "2021         0               0/0     0        0         /"
        );
    }
}
