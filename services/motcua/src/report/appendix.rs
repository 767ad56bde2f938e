//! The appendix table of the yearly administrative-reform report: rows of
//! indicators, one column per year, with the report's own Vietnamese
//! wording.
//!
//! The labels are copied from the district report in `shared/seed/`:
//! "Phụ lục 03", §5 "Kết quả giải quyết hồ sơ TTHC" (rows 5.1–5.3), and the
//! survey results, which that report gives in its text (I.1), not in a
//! table: "đã phát phiếu khảo sát 850 phiếu /5.658 hồ sơ tiếp nhận, đạt
//! 15,02% so với tổng số hồ sơ tiếp nhận …, 680 phiếu đánh giá rất hài
//! lòng, 170 phiếu đánh giá hài lòng" and, from 2019, "130 phiếu có ý kiến
//! Tốt, 20 phiếu có ý kiến Bình thường".

use proto::{
    events::v1::{Rating, RatingScale},
    reports::v1::YearRow,
};

use crate::vn;

/// The appendix's own words.
pub mod label {
    pub const STT: &str = "STT";
    pub const INDICATOR: &str = "Chỉ tiêu";
    pub const TITLE: &str = "Phụ lục 03:";
    pub const SUBTITLE: &str =
        "Thống kê các chỉ tiêu tại lĩnh vực cải cách thủ tục hành chính của các ngành, địa phương";
    pub const RESULTS: &str = "Kết quả giải quyết hồ sơ TTHC";
    pub const ON_TIME_DEPARTMENT: &str = "Tỷ lệ hồ sơ của Sở, ban, ngành giải quyết đúng hạn (ghi rõ số hồ sơ giải quyết đúng hạn/Tổng số hồ sơ đã giải quyết)";
    pub const ON_TIME_DISTRICT: &str = "Tỷ lệ hồ sơ cấp huyện giải quyết đúng hạn (ghi rõ số hồ sơ giải quyết đúng hạn/Tổng số hồ sơ đã giải quyết)";
    pub const ON_TIME_COMMUNE: &str = "Tỷ lệ hồ sơ TTHC cấp xã giải quyết đúng hạn (ghi rõ số hồ sơ giải quyết đúng hạn/Tổng số hồ sơ đã giải quyết)";
    pub const RECEIVED: &str = "Số hồ sơ tiếp nhận";
    pub const RESOLVED: &str = "Tổng số hồ sơ đã giải quyết";
    pub const ON_TIME: &str = "Số hồ sơ giải quyết đúng hạn";
    pub const LATE: &str = "Số hồ sơ trễ hạn";
    pub const SURVEYS_HEADING: &str = "Kết quả khảo sát sự hài lòng của tổ chức, cá nhân và doanh nghiệp đối với sự phục vụ của cơ quan quản lý nhà nước trong giải quyết TTHC";
    pub const SURVEYS: &str = "Số phiếu khảo sát";
    pub const COVERAGE: &str = "Tỷ lệ so với tổng số hồ sơ tiếp nhận";
    pub const VERY_SATISFIED: &str = "Số phiếu đánh giá rất hài lòng";
    pub const SATISFIED: &str = "Số phiếu đánh giá hài lòng";
    pub const DISSATISFIED: &str = "Số phiếu đánh giá không hài lòng";
    pub const GOOD: &str = "Số phiếu có ý kiến Tốt";
    pub const AVERAGE: &str = "Số phiếu có ý kiến Bình thường";
    pub const POOR: &str = "Số phiếu có ý kiến Kém";
    /// Not applicable, as the appendix writes it.
    pub const NOT_APPLICABLE: &str = "/";

    /// "Năm 2017".
    pub fn year(year: i32) -> String {
        format!("Năm {year}")
    }

    /// "Giai đoạn 2015 - 2020".
    pub fn period(from: i32, to: i32) -> String {
        format!("Giai đoạn {from} - {to}")
    }
}

/// The level of the office, which decides the row (5.1, 5.2 or 5.3) of the
/// on-time ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// 5.1: a provincial department (Sở, ban, ngành).
    Department,
    /// 5.2: a district desk (cấp huyện).
    District,
    /// 5.3: a commune desk (cấp xã).
    Commune,
}

/// One cell of a year's column.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Empty,
    Count(u64),
    /// A fraction: 0.1639 is written 16,39%.
    Percent(f64),
    /// Written as is, e.g. "5650/5658" or "/".
    Text(String),
}

impl Cell {
    /// The cell as Vietnamese offices write it.
    pub fn written(&self) -> String {
        match self {
            Self::Empty => String::new(),
            Self::Count(n) => vn::integer(*n),
            Self::Percent(f) => vn::percent(f * 100.0),
            Self::Text(s) => s.clone(),
        }
    }
}

/// One row of the appendix.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub stt: &'static str,
    pub label: &'static str,
    /// A section heading: no figures.
    pub heading: bool,
    pub cells: Vec<Cell>,
}

/// The rows for `years` (one column each), in the appendix's order.
pub fn lines(years: &[YearRow], level: Level) -> Vec<Line> {
    let row = |stt, label, cell: &dyn Fn(&YearRow) -> Cell| Line {
        stt,
        label,
        heading: false,
        cells: years.iter().map(cell).collect(),
    };
    let heading = |stt, label| Line {
        stt,
        label,
        heading: true,
        cells: years.iter().map(|_| Cell::Empty).collect(),
    };
    let (stt, on_time_label) = match level {
        Level::Department => ("5.1", label::ON_TIME_DEPARTMENT),
        Level::District => ("5.2", label::ON_TIME_DISTRICT),
        Level::Commune => ("5.3", label::ON_TIME_COMMUNE),
    };
    let mut lines = vec![
        heading("5", label::RESULTS),
        row(stt, on_time_label, &|y| {
            Cell::Text(y.in_time_over_resolved.clone())
        }),
        row("-", label::RECEIVED, &|y| Cell::Count(y.received)),
        row("-", label::RESOLVED, &|y| Cell::Count(y.resolved)),
        row("-", label::ON_TIME, &|y| Cell::Count(y.resolved_in_time)),
        row("-", label::LATE, &|y| Cell::Count(y.resolved_late)),
        heading("", label::SURVEYS_HEADING),
        row("-", label::SURVEYS, &|y| Cell::Count(y.surveys)),
        // No receipt in the year: no coverage, written "/" like any figure
        // that does not apply (never 0,00%).
        row("-", label::COVERAGE, &|y| {
            y.survey_coverage
                .map_or_else(|| Cell::Text(label::NOT_APPLICABLE.into()), Cell::Percent)
        }),
    ];
    // A rating's row appears when some year has such a rating; a year whose
    // surveys used the other scale shows "/".
    let ratings = [
        (
            RatingScale::Satisfaction,
            Rating::Top,
            label::VERY_SATISFIED,
        ),
        (RatingScale::Satisfaction, Rating::Middle, label::SATISFIED),
        (
            RatingScale::Satisfaction,
            Rating::Bottom,
            label::DISSATISFIED,
        ),
        (RatingScale::Quality, Rating::Top, label::GOOD),
        (RatingScale::Quality, Rating::Middle, label::AVERAGE),
        (RatingScale::Quality, Rating::Bottom, label::POOR),
    ];
    for (scale, rating, label) in ratings {
        let counts: Vec<Option<u64>> = years.iter().map(|y| count(y, scale, rating)).collect();
        if counts.iter().any(|c| c.is_some_and(|n| n > 0)) {
            lines.push(Line {
                stt: "-",
                label,
                heading: false,
                cells: counts
                    .into_iter()
                    .map(|c| {
                        c.map_or_else(|| Cell::Text(label::NOT_APPLICABLE.into()), Cell::Count)
                    })
                    .collect(),
            });
        }
    }
    lines
}

/// The year's count of `rating` on `scale`; `None` when the year has no
/// survey on that scale.
fn count(year: &YearRow, scale: RatingScale, rating: Rating) -> Option<u64> {
    let distribution = year
        .survey_scales
        .iter()
        .find(|s| s.scale == i32::from(scale))?;
    Some(
        distribution
            .ratings
            .iter()
            .filter(|r| r.rating == i32::from(rating))
            .map(|r| r.count)
            .sum(),
    )
}

/// The appendix as CSV: a header row `STT,Chỉ tiêu,Năm 2015,…`, then one
/// record per line with the figures written the Vietnamese way.
pub fn csv(years: &[YearRow], lines: &[Line]) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec![label::STT.to_owned(), label::INDICATOR.to_owned()];
    header.extend(years.iter().map(|y| label::year(y.year)));
    writer.write_record(&header)?;
    for line in lines {
        let mut record = vec![line.stt.to_owned(), line.label.to_owned()];
        record.extend(line.cells.iter().map(Cell::written));
        writer.write_record(&record)?;
    }
    writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot finish the CSV: {}", e.error()))
}

#[cfg(test)]
mod tests {
    use proto::reports::v1::{RatingCount, ScaleDistribution};

    use super::*;

    fn year(year: i32, received: u64, on_time: u64, surveys: (RatingScale, u64, u64)) -> YearRow {
        let (scale, top, middle) = surveys;
        YearRow {
            year,
            received,
            resolved: received,
            resolved_in_time: on_time,
            resolved_late: received - on_time,
            in_time_over_resolved: format!("{on_time}/{received}"),
            surveys: top + middle,
            survey_coverage: (received > 0).then(|| (top + middle) as f64 / received as f64),
            survey_scales: vec![ScaleDistribution {
                scale: scale.into(),
                count: top + middle,
                ratings: [
                    (Rating::Top, top),
                    (Rating::Middle, middle),
                    (Rating::Bottom, 0),
                ]
                .into_iter()
                .map(|(rating, count)| RatingCount {
                    rating: rating.into(),
                    count,
                })
                .collect(),
            }],
        }
    }

    #[test]
    fn csv_has_the_appendix_rows_in_vietnamese() -> anyhow::Result<()> {
        let years = [
            year(2017, 8955, 8953, (RatingScale::Satisfaction, 1171, 297)),
            year(2020, 2717, 2700, (RatingScale::Quality, 300, 50)),
        ];
        let text = String::from_utf8(csv(&years, &lines(&years, Level::District))?)?;
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], "STT,Chỉ tiêu,Năm 2017,Năm 2020");
        assert_eq!(rows[1], "5,Kết quả giải quyết hồ sơ TTHC,,");
        assert_eq!(
            rows[2],
            "5.2,Tỷ lệ hồ sơ cấp huyện giải quyết đúng hạn (ghi rõ số hồ sơ giải quyết đúng hạn/Tổng số hồ sơ đã giải quyết),8953/8955,2700/2717"
        );
        assert!(rows.contains(&"-,Số hồ sơ tiếp nhận,8.955,2.717"));
        assert!(rows.contains(&"-,Số phiếu khảo sát,1.468,350"));
        assert!(rows.contains(&"-,Tỷ lệ so với tổng số hồ sơ tiếp nhận,\"16,39%\",\"12,88%\""));
        assert!(rows.contains(&"-,Số phiếu đánh giá rất hài lòng,1.171,/"));
        assert!(rows.contains(&"-,Số phiếu có ý kiến Bình thường,/,50"));
        assert!(
            !text.contains("không hài lòng"),
            "no row for a rating nobody gave"
        );
        Ok(())
    }

    #[test]
    fn a_year_without_receipts_has_no_coverage_but_a_slash() -> anyhow::Result<()> {
        let mut empty = year(2021, 0, 0, (RatingScale::Satisfaction, 0, 0));
        empty.survey_scales.clear();
        let years = [
            year(2020, 2717, 2700, (RatingScale::Quality, 300, 50)),
            empty,
        ];
        let text = String::from_utf8(csv(&years, &lines(&years, Level::District))?)?;
        let rows: Vec<&str> = text.lines().collect();
        assert!(
            rows.contains(&"-,Tỷ lệ so với tổng số hồ sơ tiếp nhận,\"12,88%\",/"),
            "{text}"
        );
        assert!(rows.contains(&"-,Số phiếu khảo sát,350,0"), "{text}");
        Ok(())
    }
}
