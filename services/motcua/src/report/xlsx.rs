//! The appendix as an XLSX workbook: the report's title and two-level
//! heading, numeric cells for counts and percentages, text where the
//! appendix writes text ("5650/5658", "/").

use proto::reports::v1::YearRow;
use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook, XlsxError};

use super::{
    Unit,
    appendix::{Cell, Level, label, lines},
};

/// Counts with "." between thousands whatever the reader's regional
/// settings: the dots are literal characters between digit placeholders,
/// so 12429 (a number) shows as 12.429.
pub const COUNT_FORMAT: &str = r"[>=1000000]#\.###\.###;[>=1000]#\.###;0";
/// Percentages with two decimals in the Vietnamese locale (LCID 042A), which
/// writes 0.1639 as 16,39% (Excel takes the separators from the reader's
/// regional settings; a Vietnamese locale shows the decimal comma).
pub const PERCENT_FORMAT: &str = "[$-42A]0.00%";

/// Rows above the first line of figures: title, subtitle, unit, a blank
/// row, and the two heading rows.
pub const FIRST_LINE_ROW: u32 = 6;

pub fn render(unit: &Unit, years: &[YearRow], level: Level) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        !years.is_empty(),
        "the projection has no figures for {unit}: nothing to write"
    );
    Ok(workbook(unit, years, level)?.save_to_buffer()?)
}

fn workbook(unit: &Unit, years: &[YearRow], level: Level) -> Result<Workbook, XlsxError> {
    let bold = Format::new().set_bold();
    let heading = Format::new()
        .set_bold()
        .set_border(FormatBorder::Thin)
        .set_align(FormatAlign::Center)
        .set_align(FormatAlign::VerticalCenter)
        .set_text_wrap();
    let text = Format::new()
        .set_border(FormatBorder::Thin)
        .set_align(FormatAlign::VerticalCenter)
        .set_text_wrap();
    let section = text.clone().set_bold().set_italic();
    let figure_text = Format::new()
        .set_border(FormatBorder::Thin)
        .set_align(FormatAlign::Right)
        .set_align(FormatAlign::VerticalCenter);
    let count = figure_text.clone().set_num_format(COUNT_FORMAT);
    let percent = figure_text.clone().set_num_format(PERCENT_FORMAT);

    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("Phụ lục 03")?;
    sheet.write_string_with_format(0, 0, label::TITLE, &bold)?;
    sheet.write_string_with_format(1, 0, label::SUBTITLE, &bold)?;
    let unit_line = match unit {
        Unit::Office(code) => format!("Đơn vị: {code}"),
        Unit::Province(code) => format!("Tỉnh: {code}"),
    };
    sheet.write_string(2, 0, unit_line)?;

    // Two heading rows, as the appendix prints them.
    let (top, bottom) = (FIRST_LINE_ROW - 2, FIRST_LINE_ROW - 1);
    let last_col = 1 + column(years.len());
    sheet.merge_range(top, 0, bottom, 0, label::STT, &heading)?;
    sheet.merge_range(top, 1, bottom, 1, label::INDICATOR, &heading)?;
    let first = years.first().map_or(0, |y| y.year);
    let last = years.last().map_or(0, |y| y.year);
    if last_col > 2 {
        sheet.merge_range(top, 2, top, last_col, &label::period(first, last), &heading)?;
    } else {
        sheet.write_string_with_format(top, 2, label::period(first, last), &heading)?;
    }
    for (i, y) in years.iter().enumerate() {
        sheet.write_string_with_format(bottom, 2 + column(i), label::year(y.year), &heading)?;
    }

    for (i, line) in lines(years, level).iter().enumerate() {
        let row = FIRST_LINE_ROW + u32::try_from(i).unwrap_or(u32::MAX);
        let label_format = if line.heading { &section } else { &text };
        sheet.write_string_with_format(row, 0, line.stt, label_format)?;
        sheet.write_string_with_format(row, 1, line.label, label_format)?;
        for (j, cell) in line.cells.iter().enumerate() {
            let col = 2 + column(j);
            match cell {
                Cell::Empty => sheet.write_blank(row, col, &text)?,
                Cell::Count(n) => sheet.write_number_with_format(row, col, *n as f64, &count)?,
                Cell::Percent(f) => sheet.write_number_with_format(row, col, *f, &percent)?,
                Cell::Text(s) => sheet.write_string_with_format(row, col, s, &figure_text)?,
            };
        }
    }

    sheet.set_column_width(0, 6)?;
    sheet.set_column_width(1, 60)?;
    for i in 0..years.len() {
        sheet.set_column_width(2 + column(i), 14)?;
    }
    sheet.set_freeze_panes(FIRST_LINE_ROW, 2)?;
    Ok(workbook)
}

fn column(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}
