//! The operators' overrides file: per year, the government's extra days off
//! and swapped working days, and the exact days of Tết and of National Day
//! when they differ from the default rule.
//!
//! The file is TOML, one table per year:
//!
//! ```toml
//! [2025]
//! source = ["Thông báo 6150/TB-BLĐTBXH ngày 3/12/2024"]  # the decision these days come from
//! note = "Tết Ất Tỵ: 27/1 (28 Chạp) to 31/1 (mùng 3)"
//! tet = ["2025-01-27..2025-01-31"]   # the statutory Tết days (replace the default)
//! national_day = ["2025-09-01", "2025-09-02"]  # replace 2/9 + the adjacent day
//! off = ["2025-05-02"]               # extra days off (bridging days)
//! working = ["2025-04-26"]           # weekend days (or holidays) made working days
//! ```
//!
//! Each list holds dates `"YYYY-MM-DD"`, inclusive ranges
//! `"YYYY-MM-DD..YYYY-MM-DD"`, or bare TOML dates (`2025-05-02`). Every date
//! must lie in its table's year. `note` is free text and ignored; `source`
//! (a string or a list of strings) names the decisions and is kept, so that
//! the shipped schedule (`decided`) can be checked to cite one for
//! every year.
//!
//! The same format carries the crate's shipped decided schedule and the
//! operators' file; a year in the operators' file replaces that year of the
//! shipped schedule as a whole (see `Calendar::new`).
//!
//! What `tet` and `national_day` mean: the days listed *are* that holiday's
//! days off, all of them; no compensatory day is added for those of them on a
//! weekend (the decision has already arranged them). Compensatory days for
//! the other holidays of the year are still computed.
//!
//! [`Overrides::parse`] checks everything against the holiday rules, so a
//! parsed file always builds a calendar for years within its range.

use std::collections::BTreeMap;
use std::fmt;

use toml::de::{DeTable, DeValue};

use crate::date::LocalDate;
pub use crate::year_overrides::{Entry, YearOverrides};
use crate::{holidays, lunar};

/// Overrides for any number of years, as read from the operators' file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    years: BTreeMap<i32, YearOverrides>,
}

/// A problem in the overrides: where (line and key) and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct OverrideError {
    /// 1-based line of the offending value (0 when the problem has no place).
    pub line: usize,
    /// Dotted key, e.g. `2025.working`; empty for a syntax error.
    pub key: String,
    pub message: String,
}

impl fmt::Display for OverrideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, true) => write!(f, "holiday overrides: {}", self.message),
            (0, false) => write!(f, "holiday overrides, `{}`: {}", self.key, self.message),
            (line, true) => write!(f, "holiday overrides, line {line}: {}", self.message),
            (line, false) => {
                write!(
                    f,
                    "holiday overrides, line {line}, `{}`: {}",
                    self.key, self.message
                )
            }
        }
    }
}

const KEYS: &str = "`off`, `working`, `tet`, `national_day`, `note`, `source`";

/// The longest range a single `A..B` entry may span, in days.
const MAX_RANGE_DAYS: i32 = 31;

struct Source<'a> {
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn error(&self, offset: usize, key: &str, message: impl Into<String>) -> OverrideError {
        OverrideError {
            line: self.line_of(offset),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl Overrides {
    /// No overrides, as from an empty file.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses and checks the overrides file. Errors name the line and the key
    /// and say what is wrong:
    /// - TOML syntax errors;
    /// - a table name that is not a year, a value that is not a table;
    /// - an unknown key (allowed: `off`, `working`, `tet`, `national_day`,
    ///   `note`, `source`); a `note` that is not a string, a `source` that is
    ///   not a string or a list of strings;
    /// - a value that is not a list of dates, an invalid date or range, a range
    ///   that is reversed or longer than 31 days;
    /// - a date not in its table's year;
    /// - a date listed twice, or both off (`off`, `tet`, `national_day`) and
    ///   `working`;
    /// - a `working` date that is not a day off anyway (neither a Saturday or
    ///   Sunday nor a statutory holiday or compensatory day of that year);
    /// - an empty `tet` or `national_day` list, a `tet` day more than
    ///   10 days from the lunar new year, a `national_day` day outside
    ///   28 August – 6 September.
    pub fn parse(text: &str) -> Result<Self, OverrideError> {
        let src = Source { text };
        let root = DeTable::parse(text).map_err(|e| {
            let line = e.span().map_or(0, |s| src.line_of(s.start));
            OverrideError {
                line,
                key: String::new(),
                message: format!("not valid TOML: {}", e.message()),
            }
        })?;
        let mut years = BTreeMap::new();
        for (key, value) in root.get_ref().iter() {
            let name = key.get_ref().as_ref();
            let year = parse_year(name).ok_or_else(|| {
                src.error(
                    key.span().start,
                    name,
                    "a table name must be a year such as [2025]",
                )
            })?;
            let DeValue::Table(table) = value.get_ref() else {
                return Err(src.error(
                    value.span().start,
                    name,
                    "expected a table of days: write it as [year]",
                ));
            };
            let parsed = parse_year_table(&src, year, name, table, src.line_of(key.span().start))?;
            years.insert(year, parsed);
        }
        Ok(Self { years })
    }

    /// The overrides of `year`, if any.
    pub fn year(&self, year: i32) -> Option<&YearOverrides> {
        self.years.get(&year)
    }

    /// Years with overrides, in order.
    pub fn years(&self) -> impl Iterator<Item = (i32, &YearOverrides)> {
        self.years.iter().map(|(y, o)| (*y, o))
    }
}

fn parse_year(name: &str) -> Option<i32> {
    if name.len() == 4 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

fn parse_year_table(
    src: &Source<'_>,
    year: i32,
    name: &str,
    table: &DeTable<'_>,
    header_line: usize,
) -> Result<YearOverrides, OverrideError> {
    let mut out = YearOverrides {
        line: header_line,
        ..YearOverrides::default()
    };
    for (key, value) in table.iter() {
        let k = key.get_ref().as_ref();
        let dotted = format!("{name}.{k}");
        match k {
            "note" => {
                if !matches!(value.get_ref(), DeValue::String(_)) {
                    return Err(src.error(value.span().start, &dotted, "`note` must be a string"));
                }
            }
            "source" => out.source = parse_source(src, &dotted, value)?,
            "off" => out.off = parse_dates(src, year, &dotted, value)?,
            "working" => out.working = parse_dates(src, year, &dotted, value)?,
            "tet" | "national_day" => {
                let days = parse_dates(src, year, &dotted, value)?;
                if days.is_empty() {
                    return Err(src.error(
                        value.span().start,
                        &dotted,
                        "an empty list would remove the holiday; list its days off",
                    ));
                }
                if k == "tet" {
                    out.tet = Some(days);
                } else {
                    out.national_day = Some(days);
                }
            }
            other => {
                return Err(src.error(
                    key.span().start,
                    &dotted,
                    format!("unknown key `{other}`; allowed: {KEYS}"),
                ));
            }
        }
    }
    check_year(name, &out)?;
    check_against_rules(year, name, &out)?;
    Ok(out)
}

/// `source`: one string or a list of strings.
fn parse_source(
    src: &Source<'_>,
    key: &str,
    value: &toml::Spanned<DeValue<'_>>,
) -> Result<Vec<String>, OverrideError> {
    let not_text = |at| src.error(at, key, "`source` must be a string or a list of strings");
    match value.get_ref() {
        DeValue::String(s) => Ok(vec![s.to_string()]),
        DeValue::Array(items) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                _ => Err(not_text(item.span().start)),
            })
            .collect(),
        _ => Err(not_text(value.span().start)),
    }
}

/// Checks one year's lists against the statutory rules.
fn check_against_rules(year: i32, name: &str, y: &YearOverrides) -> Result<(), OverrideError> {
    let error = |e: &Entry, list: &str, message: String| OverrideError {
        line: e.line,
        key: format!("{name}.{list}"),
        message,
    };
    let tet = lunar::tet(year);
    for e in y.tet.iter().flatten() {
        let distance = (e.date.days_since_epoch() - tet.days_since_epoch()).abs();
        if distance > 10 {
            return Err(error(
                e,
                "tet",
                format!(
                    "{} is {distance} days from Tết ({tet}); at most 10 allowed",
                    e.date
                ),
            ));
        }
    }
    for e in y.national_day.iter().flatten() {
        let (m, d) = (e.date.month(), e.date.day());
        if !((m == 8 && d >= 28) || (m == 9 && d <= 6)) {
            return Err(error(
                e,
                "national_day",
                format!("{} is not near 2 September (28/8–6/9 allowed)", e.date),
            ));
        }
    }
    let statutory = holidays::statutory_days_off(year, Some(y));
    for e in &y.working {
        if !e.date.weekday().is_weekend() && !statutory.contains_key(&e.date) {
            return Err(error(
                e,
                "working",
                format!(
                    "{} is a {:?} and no holiday: only a weekend day or a holiday can be made a working day",
                    e.date,
                    e.date.weekday()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks across the lists of one year.
fn check_year(name: &str, y: &YearOverrides) -> Result<(), OverrideError> {
    let lists: [(&str, &[Entry]); 4] = [
        ("off", &y.off),
        ("working", &y.working),
        ("tet", y.tet.as_deref().unwrap_or(&[])),
        ("national_day", y.national_day.as_deref().unwrap_or(&[])),
    ];
    let mut seen: BTreeMap<LocalDate, &str> = BTreeMap::new();
    for (list, entries) in lists {
        for e in entries {
            if let Some(first) = seen.insert(e.date, list) {
                let message = if first == list {
                    format!("{} is listed twice", e.date)
                } else if first == "working" || list == "working" {
                    format!(
                        "{} is both a day off (`{}`) and a working day",
                        e.date,
                        if list == "working" { first } else { list }
                    )
                } else {
                    format!("{} is listed in both `{first}` and `{list}`", e.date)
                };
                return Err(OverrideError {
                    line: e.line,
                    key: format!("{name}.{list}"),
                    message,
                });
            }
        }
    }
    Ok(())
}

fn parse_dates(
    src: &Source<'_>,
    year: i32,
    key: &str,
    value: &toml::Spanned<DeValue<'_>>,
) -> Result<Vec<Entry>, OverrideError> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(src.error(
            value.span().start,
            key,
            format!(
                "expected a list of dates such as [\"{year}-05-02\"], found {}",
                value.get_ref().type_str()
            ),
        ));
    };
    let mut out = Vec::new();
    for item in items.iter() {
        let at = item.span().start;
        let line = src.line_of(at);
        let (first, last) = match item.get_ref() {
            DeValue::String(s) => parse_entry(s).map_err(|m| src.error(at, key, m))?,
            DeValue::Datetime(dt) => match (dt.date, dt.time, dt.offset) {
                (Some(d), None, None) => {
                    let date = LocalDate::new(i32::from(d.year), d.month, d.day)
                        .ok_or_else(|| src.error(at, key, format!("{dt} is not a valid date")))?;
                    (date, date)
                }
                _ => return Err(src.error(at, key, format!("{dt} has a time; write a date only"))),
            },
            other => {
                return Err(src.error(
                    at,
                    key,
                    format!("expected a date \"YYYY-MM-DD\" or a range \"YYYY-MM-DD..YYYY-MM-DD\", found {}", other.type_str()),
                ));
            }
        };
        for date in [first, last] {
            if date.year() != year {
                return Err(src.error(
                    at,
                    key,
                    format!("{date} is not in {year}, the year of this table"),
                ));
            }
        }
        let mut date = first;
        while date <= last {
            out.push(Entry { date, line });
            date = date.add_days(1);
        }
    }
    Ok(out)
}

/// A date or an inclusive range `A..B`.
fn parse_entry(s: &str) -> Result<(LocalDate, LocalDate), String> {
    let date = |t: &str| t.trim().parse::<LocalDate>().map_err(|e| e.to_string());
    match s.split_once("..") {
        None => {
            let d = date(s)?;
            Ok((d, d))
        }
        Some((a, b)) => {
            let (a, b) = (date(a)?, date(b)?);
            if b < a {
                return Err(format!("the range {s:?} ends before it starts"));
            }
            if b.days_since_epoch() - a.days_since_epoch() >= MAX_RANGE_DAYS {
                return Err(format!(
                    "the range {s:?} is longer than {MAX_RANGE_DAYS} days"
                ));
            }
            Ok((a, b))
        }
    }
}
