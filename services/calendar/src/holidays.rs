//! Statutory days off of one year: the holidays of the Labour Code in force,
//! the default choice of the Tết and National Day days, and compensatory days.
//!
//! | years      | law                                   | Tết    | Giỗ Tổ | 2 September      |
//! |------------|---------------------------------------|--------|--------|------------------|
//! | ≤ 2006     | Labour Code 1994, art. 73             | 4 days | —      | 1 day            |
//! | 2007–2013  | Labour Code 1994 as amended in 2007   | 4 days | 1 day  | 1 day            |
//! | 2014–2020  | Labour Code 2012, art. 115            | 5 days | 1 day  | 1 day            |
//! | ≥ 2021     | Labour Code 2019, art. 112            | 5 days | 1 day  | 2/9 + adjacent   |
//!
//! (The 2012 Code took effect on 1 May 2013, after Tết 2013; so 2013 keeps
//! 4 days of Tết.) Every year also has 1 January, 30 April and 1 May.
//!
//! These defaults apply where no decision is known: years the shipped
//! decided schedule (`decided`, 2015–2026) does not cover and the
//! operators' overrides do not list. The government's actual choices often
//! differ (e.g. 2021 took 29 Chạp to mùng 3, the rule the eve to mùng 4).
//!
//! Default Tết days (when no decision lists them): the last day of
//! the lunar year (giao thừa's day, 29 or 30 of the 12th month) and the first
//! 4 days of the new year (3 days while Tết had 4 days).
//!
//! Default day adjacent to 2 September (from 2021), chosen to join the
//! weekend where one can be joined and never to be a weekend day itself, as
//! the 2021–2025 decisions did (2026, a Wednesday, took 1/9 and a swap):
//!
//! | 2/9 falls on | adjacent day | e.g. |
//! |---|---|---|
//! | Monday    | 3/9 (Tue)  | 2024: 31/8–3/9 |
//! | Tuesday   | 1/9 (Mon)  | 2025: 30/8–2/9 |
//! | Wednesday | 3/9 (Thu)  | no weekend to join; 2026 decided 1/9 and a swap |
//! | Thursday  | 3/9 (Fri)  | 2021: 2/9–5/9 |
//! | Friday    | 1/9 (Thu)  | 2022: 1/9–4/9 |
//! | Saturday  | 1/9 (Fri)  | 2023: 1/9–4/9 (Monday 4/9 compensatory) |
//! | Sunday    | 3/9 (Mon)  | (Tuesday 4/9 compensatory) |
//!
//! Compensatory days (Labour Code 2019 art. 112(3), and the same rule in the
//! earlier codes): each statutory holiday that falls on a Saturday or Sunday
//! gives the next day that is a weekday and not already off, taken in date
//! order (so Tết's Saturday and Sunday give the two weekdays after the break).
//! Days listed in a decision's or the overrides' `tet` or `national_day` get
//! none.

use std::collections::BTreeMap;

use crate::date::LocalDate;
use crate::lunar;
use crate::year_overrides::YearOverrides;

/// A statutory public holiday.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holiday {
    /// Tết Dương lịch, 1 January.
    NewYear,
    /// Tết Nguyên đán, lunar new year.
    Tet,
    /// Giỗ Tổ Hùng Vương, 10th day of the 3rd lunar month.
    HungKings,
    /// Ngày Chiến thắng, 30 April.
    Reunification,
    /// Ngày Quốc tế lao động, 1 May.
    Labour,
    /// Quốc khánh, 2 September (and the adjacent day from 2021).
    NationalDay,
}

/// What kind of day a date is for a public office.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DayKind {
    /// An ordinary working day (Monday–Friday, no holiday).
    Working,
    /// A weekend day or holiday made a working day by a decision or the
    /// overrides (the Saturday of a swap).
    SwappedWorking,
    /// Saturday or Sunday.
    Weekend,
    /// A statutory holiday. Where a decision lists Tết's or National Day's
    /// days, the weekdays it gives in lieu of weekend ones are this too.
    Holiday(Holiday),
    /// A compensatory day off for a holiday that fell on a weekend.
    Compensatory,
    /// An extra day off from a decision or the overrides (e.g. the weekday
    /// of a swap).
    ExtraOff,
}

impl DayKind {
    pub const fn is_working(self) -> bool {
        matches!(self, DayKind::Working | DayKind::SwappedWorking)
    }
}

/// Tết's length in days in `year`.
fn tet_length(year: i32) -> i32 {
    if year >= 2014 { 5 } else { 4 }
}

/// The default day adjacent to 2 September (Labour Code 2019), see the module table.
pub(crate) fn national_day_adjacent(year: i32) -> Option<LocalDate> {
    use crate::date::Weekday::*;
    let sep2 = LocalDate::new(year, 9, 2)?;
    let day = match sep2.weekday() {
        Tuesday | Friday | Saturday => 1,
        Monday | Wednesday | Thursday | Sunday => 3,
    };
    LocalDate::new(year, 9, day)
}

/// The statutory days off of `year` (holidays and compensatory days, not
/// weekends), with the overrides' `tet` and `national_day` applied but not
/// their `off` and `working` lists.
pub(crate) fn statutory_days_off(
    year: i32,
    overrides: Option<&YearOverrides>,
) -> BTreeMap<LocalDate, DayKind> {
    // (date, holiday, compensable)
    let mut days: Vec<(LocalDate, Holiday, bool)> = Vec::new();
    let mut fixed = |month, day, h| {
        if let Some(d) = LocalDate::new(year, month, day) {
            days.push((d, h, true));
        }
    };
    fixed(1, 1, Holiday::NewYear);
    fixed(4, 30, Holiday::Reunification);
    fixed(5, 1, Holiday::Labour);
    match overrides.and_then(|o| o.national_day.as_ref()) {
        Some(list) => days.extend(list.iter().map(|e| (e.date, Holiday::NationalDay, false))),
        None => {
            fixed(9, 2, Holiday::NationalDay);
            if year >= 2021
                && let Some(adjacent) = national_day_adjacent(year)
            {
                days.push((adjacent, Holiday::NationalDay, true));
            }
        }
    }
    if year >= 2007 {
        days.push((lunar::gio_to(year), Holiday::HungKings, true));
    }
    match overrides.and_then(|o| o.tet.as_ref()) {
        Some(list) => days.extend(list.iter().map(|e| (e.date, Holiday::Tet, false))),
        None => {
            let eve = lunar::tet(year).add_days(-1);
            days.extend((0..tet_length(year)).map(|i| (eve.add_days(i), Holiday::Tet, true)));
        }
    }
    days.sort_by_key(|(d, _, _)| *d);

    let mut off = BTreeMap::new();
    for (d, h, _) in &days {
        // Two holidays on one date (possible for Giỗ Tổ and 30/4) give one day.
        off.entry(*d).or_insert(DayKind::Holiday(*h));
    }
    for (d, _, compensable) in &days {
        if !compensable || !d.weekday().is_weekend() {
            continue;
        }
        let mut next = d.add_days(1);
        while next.weekday().is_weekend() || off.contains_key(&next) {
            next = next.add_days(1);
        }
        off.insert(next, DayKind::Compensatory);
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> LocalDate {
        s.parse().unwrap()
    }

    fn off(year: i32) -> Vec<(String, DayKind)> {
        statutory_days_off(year, None)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn national_day_adjacent_matches_2021_to_2025_decisions() {
        assert_eq!(national_day_adjacent(2021), Some(d("2021-09-03")));
        assert_eq!(national_day_adjacent(2022), Some(d("2022-09-01")));
        assert_eq!(national_day_adjacent(2023), Some(d("2023-09-01")));
        assert_eq!(national_day_adjacent(2024), Some(d("2024-09-03")));
        assert_eq!(national_day_adjacent(2025), Some(d("2025-09-01")));
    }

    #[test]
    fn year_2023_compensates_sunday_30_april_and_saturday_2_september() {
        let off = off(2023);
        let has = |s: &str, k: DayKind| off.contains(&(s.to_owned(), k));
        assert!(has("2023-04-30", DayKind::Holiday(Holiday::Reunification)));
        assert!(has("2023-05-01", DayKind::Holiday(Holiday::Labour)));
        assert!(has("2023-05-02", DayKind::Compensatory));
        assert!(has("2023-09-01", DayKind::Holiday(Holiday::NationalDay)));
        assert!(has("2023-09-02", DayKind::Holiday(Holiday::NationalDay)));
        assert!(has("2023-09-04", DayKind::Compensatory));
        // Giỗ Tổ 2023 on Saturday 29 April: its compensatory day is the next
        // weekday not already off, Wednesday 3 May.
        assert!(has("2023-04-29", DayKind::Holiday(Holiday::HungKings)));
        assert!(has("2023-05-03", DayKind::Compensatory));
    }

    #[test]
    fn default_tet_2024_is_eve_plus_four_and_two_compensatory_days() {
        let off = off(2024);
        let tet: Vec<_> = off
            .iter()
            .filter(|(_, k)| *k == DayKind::Holiday(Holiday::Tet))
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(
            tet,
            [
                "2024-02-09",
                "2024-02-10",
                "2024-02-11",
                "2024-02-12",
                "2024-02-13"
            ]
        );
        let comp: Vec<_> = off
            .iter()
            .filter(|(_, k)| *k == DayKind::Compensatory)
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(comp, ["2024-02-14", "2024-02-15"]);
    }

    #[test]
    fn labour_code_2012_years_have_one_national_day_and_earlier_years_four_tet_days() {
        let off2019 = off(2019);
        assert!(off2019.iter().any(|(s, _)| s == "2019-09-02"));
        assert!(
            !off2019
                .iter()
                .any(|(s, _)| s == "2019-09-01" || s == "2019-09-03")
        );
        let tet2013 = off(2013)
            .into_iter()
            .filter(|(_, k)| *k == DayKind::Holiday(Holiday::Tet))
            .count();
        assert_eq!(tet2013, 4);
        assert!(
            !off(2006)
                .iter()
                .any(|(_, k)| *k == DayKind::Holiday(Holiday::HungKings))
        );
    }
}
