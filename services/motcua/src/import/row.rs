//! One line of an import file → one `ImportDossier`, or why not. What can
//! be judged without the log is judged here (a bad date, an unknown channel,
//! a missing column); the lifecycle itself (a result before the receipt, a
//! second survey) is the domain's, in intake.

use std::collections::HashMap;

use proto::{events::v1 as ev, intake::v1 as pb};

/// The columns, in the order `--help` and the example list them.
pub const COLUMNS: &[&str] = &[
    "dossier_id",
    "office_code",
    "province_code",
    "procedure_code",
    "procedure_field",
    "channel",
    "received_at",
    "due_at",
    "result_at",
    "returned_at",
    "withdrawn_at",
    "withdraw_reason",
    "stopped_at",
    "stop_reason",
    "survey_scale",
    "survey_rating",
    "surveyed_at",
];

/// Columns every file must have (the others may be left out entirely).
const REQUIRED: &[&str] = &[
    "dossier_id",
    "office_code",
    "province_code",
    "procedure_code",
    "channel",
    "received_at",
];

const CHANNELS: &str = "in_person, postal, online_partial, online_full, inter_agency";

/// Where each known column sits in the file's header.
#[derive(Debug)]
pub struct Header {
    index: HashMap<&'static str, usize>,
}

impl Header {
    pub fn new(header: &csv::StringRecord) -> anyhow::Result<Self> {
        let mut index = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            let name = name.trim().trim_start_matches('\u{feff}');
            let Some(known) = COLUMNS.iter().find(|c| **c == name) else {
                anyhow::bail!(
                    "line 1: unknown column {name:?}; the columns are {}",
                    COLUMNS.join(", ")
                );
            };
            if index.insert(*known, i).is_some() {
                anyhow::bail!("line 1: column {name:?} appears twice");
            }
        }
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|c| !index.contains_key(c))
            .collect();
        if !missing.is_empty() {
            anyhow::bail!("line 1: missing column(s) {}", missing.join(", "));
        }
        Ok(Self { index })
    }

    fn get<'r>(&self, record: &'r csv::StringRecord, column: &str) -> &'r str {
        self.index
            .get(column)
            .and_then(|i| record.get(*i))
            .map_or("", str::trim)
    }

    /// The row as intake's message; `row` is the file's line number.
    pub fn parse(
        &self,
        record: &csv::StringRecord,
        row: u64,
        actor: &str,
    ) -> Result<pb::ImportDossier, String> {
        let get = |c: &str| self.get(record, c);
        let required = |c: &'static str| {
            let v = get(c);
            if v.is_empty() {
                Err(format!("{c}: is required"))
            } else {
                Ok(v.to_owned())
            }
        };
        let when = |c: &'static str, end_of_day: bool| {
            let v = get(c);
            if v.is_empty() {
                Ok(None)
            } else {
                local_instant(v, end_of_day)
                    .map(Some)
                    .map_err(|e| format!("{c}: {v:?} {e}"))
            }
        };
        let channel = match get("channel").to_ascii_lowercase().as_str() {
            "in_person" => ev::Channel::InPerson,
            "postal" => ev::Channel::Postal,
            "online_partial" => ev::Channel::OnlinePartial,
            "online_full" => ev::Channel::OnlineFull,
            "inter_agency" => ev::Channel::InterAgency,
            "" => return Err("channel: is required".into()),
            other => return Err(format!("channel: {other:?} is not one of {CHANNELS}")),
        };
        let surveys = self.surveys(record)?;
        Ok(pb::ImportDossier {
            row,
            actor: actor.to_owned(),
            dossier_id: required("dossier_id")?,
            office_code: required("office_code")?,
            province_code: required("province_code")?,
            procedure: Some(ev::Procedure {
                code: required("procedure_code")?,
                field: get("procedure_field").to_owned(),
            }),
            channel: channel.into(),
            received_at: Some(
                when("received_at", false)?.ok_or_else(|| "received_at: is required".to_owned())?,
            ),
            due_at: when("due_at", true)?,
            result_at: when("result_at", false)?,
            returned_at: when("returned_at", false)?,
            withdrawn_at: when("withdrawn_at", false)?,
            withdraw_reason: get("withdraw_reason").to_owned(),
            stopped_at: when("stopped_at", false)?,
            stop_reason: get("stop_reason").to_owned(),
            surveys,
        })
    }

    /// `surveyed_at`, `survey_rating` and `survey_scale` hold one value per
    /// survey, separated by `;` (a single scale serves them all).
    fn surveys(&self, record: &csv::StringRecord) -> Result<Vec<pb::ImportSurvey>, String> {
        let list = |c: &str| -> Vec<String> {
            let v = self.get(record, c);
            if v.is_empty() {
                Vec::new()
            } else {
                v.split(';')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect()
            }
        };
        let (times, ratings, scales) = (
            list("surveyed_at"),
            list("survey_rating"),
            list("survey_scale"),
        );
        if times.len() != ratings.len() || !(scales.len() == 1 || scales.len() == times.len()) {
            return Err(
                "survey: surveyed_at, survey_rating and survey_scale go together, one value per survey separated by ';' (one scale may serve all)"
                    .into(),
            );
        }
        times
            .iter()
            .zip(&ratings)
            .enumerate()
            .map(|(i, (at, rating))| {
                let scale = match scales[i.min(scales.len() - 1)].as_str() {
                    "satisfaction" => ev::RatingScale::Satisfaction,
                    "quality" => ev::RatingScale::Quality,
                    other => {
                        return Err(format!(
                            "survey_scale: {other:?} is not satisfaction or quality"
                        ));
                    }
                };
                let rating = match rating.as_str() {
                    "top" | "very_satisfied" | "good" => ev::Rating::Top,
                    "middle" | "satisfied" | "average" => ev::Rating::Middle,
                    "bottom" | "dissatisfied" | "poor" => ev::Rating::Bottom,
                    other => {
                        return Err(format!(
                            "survey_rating: {other:?} is not top, middle or bottom (or very_satisfied, satisfied, dissatisfied; good, average, poor)"
                        ));
                    }
                };
                let at = local_instant(at, false)
                    .map_err(|e| format!("surveyed_at: {at:?} {e}"))?;
                Ok(pb::ImportSurvey {
                    scale: scale.into(),
                    rating: rating.into(),
                    at: Some(at),
                })
            })
            .collect()
    }
}

/// A local date-time in Vietnam (UTC+7): `YYYY-MM-DD HH:MM[:SS]` (or with
/// `T`), or a date alone, which means 08:00 — or 17:00, the end of the
/// office day, for a due date.
pub fn local_instant(value: &str, end_of_day: bool) -> Result<prost_types::Timestamp, String> {
    let (date, clock) = match value.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t.trim())),
        None => (value, None),
    };
    let mut parts = date.split('-');
    let number = |p: Option<&str>| p.and_then(|p| p.parse::<i64>().ok());
    let (Some(year), Some(month), Some(day), None) = (
        number(parts.next()),
        number(parts.next()),
        number(parts.next()),
        parts.next(),
    ) else {
        return Err("is not a date: write YYYY-MM-DD or YYYY-MM-DD HH:MM (local time)".into());
    };
    if !(1..=12).contains(&month) {
        return Err(format!("has no month {month}"));
    }
    if !(-9999..=9999).contains(&year) {
        return Err("has a year out of range".to_owned());
    }
    let date = calendar::LocalDate::new(
        year as i32,
        u8::try_from(month).unwrap_or(0),
        u8::try_from(day).unwrap_or(0),
    )
    .ok_or_else(|| "is not a day of the calendar".to_owned())?;
    let (hour, minute, second) = match clock {
        None if end_of_day => (17, 0, 0),
        None => (8, 0, 0),
        Some(t) => {
            let mut hms = t.split(':');
            match (
                number(hms.next()),
                number(hms.next()),
                hms.next().map(|s| s.parse::<i64>().ok()),
                hms.next(),
            ) {
                (Some(h), Some(m), None, None) => (h, m, 0),
                (Some(h), Some(m), Some(Some(s)), None) => (h, m, s),
                _ => return Err("has no valid time: write HH:MM or HH:MM:SS".into()),
            }
        }
    };
    if !(0..24).contains(&hour) || !(0..60).contains(&minute) || !(0..60).contains(&second) {
        return Err("has no valid time: write HH:MM or HH:MM:SS".into());
    }
    // In range: checked above.
    let local = date.at(hour as u8, minute as u8) / 1_000_000 + second;
    Ok(prost_types::Timestamp {
        seconds: local,
        nanos: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_utc_plus_seven() {
        // 2019-12-28 08:30 local = 01:30 UTC.
        let t = local_instant("2019-12-28 08:30", false).expect("valid");
        assert_eq!(t.seconds, 1_577_496_600);
        assert_eq!(local_instant("2019-12-28T08:30:00", false), Ok(t));
        assert_eq!(
            local_instant("2019-12-28", false).map(|t| t.seconds),
            Ok(1_577_496_600 - 1800)
        );
        assert_eq!(
            local_instant("2019-12-28", true).map(|t| t.seconds),
            Ok(1_577_496_600 - 1800 + 9 * 3600)
        );
    }

    #[test]
    fn bad_dates_say_why() {
        assert!(local_instant("2019-02-30", false).is_err());
        assert!(local_instant("28/12/2019", false).is_err());
        assert!(local_instant("2019-12-28 25:00", false).is_err());
        assert!(local_instant("2019-13-01", false).is_err());
    }

    #[test]
    fn headers_name_known_columns() {
        let ok = csv::StringRecord::from(vec![
            "dossier_id",
            "office_code",
            "province_code",
            "procedure_code",
            "channel",
            "received_at",
        ]);
        assert!(Header::new(&ok).is_ok());
        let unknown = csv::StringRecord::from(vec!["dossier_id", "colour"]);
        assert!(Header::new(&unknown).is_err());
    }
}
