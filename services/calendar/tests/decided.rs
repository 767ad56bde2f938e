//! The shipped decided schedule (2015–2026): the Labour Code's invariants for
//! every year, its sources, its lunar dates, and due dates across decisions
//! that differ from the rule.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use ProcessingTime::WorkingDays;
use calendar::overrides::{Entry, YearOverrides};
use calendar::{
    Calendar, DayKind, Holiday, LocalDate, OfficeHours, Overrides, ProcessingTime, decided, lunar,
};

const HOUR: i64 = 3_600_000_000;

fn d(s: &str) -> LocalDate {
    s.parse().expect("a valid ISO date")
}

fn years() -> RangeInclusive<i32> {
    decided::FIRST_YEAR..=decided::LAST_YEAR
}

fn shipped(year: i32) -> &'static YearOverrides {
    decided::schedule()
        .year(year)
        .unwrap_or_else(|| panic!("{year} is shipped"))
}

fn rules_only() -> Calendar {
    Calendar::rules_only(OfficeHours::default(), &Overrides::none()).expect("calendar")
}

fn weekdays(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| !e.date.weekday().is_weekend())
        .count()
}

fn listed(entries: &[Entry], date: LocalDate) -> bool {
    entries.iter().any(|e| e.date == date)
}

/// Tết's days off under the Labour Code in force: 4 under the 1994 Code,
/// 5 under the 2012 Code from Tết 2014, and still 5 under the 2019 Code.
fn tet_days_in_law(year: i32) -> usize {
    if year >= 2014 { 5 } else { 4 }
}

#[test]
fn every_shipped_tet_has_the_first_three_days_and_the_codes_five_days_off() {
    let cal = Calendar::vietnam();
    for year in years() {
        let tet = shipped(year)
            .tet
            .as_deref()
            .unwrap_or_else(|| panic!("{year} names its Tết days"));
        let new_year = lunar::tet(year);
        for i in 0..3 {
            let day = new_year.add_days(i);
            assert!(listed(tet, day), "{year}: mùng {} ({day}) listed", i + 1);
            assert_eq!(cal.day_kind(day), DayKind::Holiday(Holiday::Tet), "{day}");
        }
        // Each statutory day on a weekend is given back on a weekday, so the
        // law's days are the list's weekdays.
        assert_eq!(weekdays(tet), tet_days_in_law(year), "{year}: weekdays");
        // Giao thừa's day is off (in the list, or a weekend day).
        assert!(!cal.is_working_day(new_year.add_days(-1)), "{year}: eve");
        // One break: no working day between the first and last listed day.
        let (first, last) = (tet[0].date, tet[tet.len() - 1].date);
        let mut day = first;
        while day <= last {
            assert!(!cal.is_working_day(day), "{year}: {day} inside the break");
            day = day.add_days(1);
        }
        for e in tet.iter().filter(|e| !e.date.weekday().is_weekend()) {
            assert_eq!(cal.day_kind(e.date), DayKind::Holiday(Holiday::Tet));
        }
    }
}

#[test]
fn national_day_has_two_days_from_2021_and_one_before() {
    let cal = Calendar::vietnam();
    for year in years() {
        let date = |day| LocalDate::new(year, 9, day).expect("a September day");
        let (sep1, sep2, sep3) = (date(1), date(2), date(3));
        assert_eq!(
            cal.day_kind(sep2),
            DayKind::Holiday(Holiday::NationalDay),
            "{year}"
        );
        let national: Vec<LocalDate> = (28..=31)
            .filter_map(|day| LocalDate::new(year, 8, day))
            .chain((1..=6).map(date))
            .filter(|d| cal.day_kind(*d) == DayKind::Holiday(Holiday::NationalDay))
            .collect();
        if year >= 2021 {
            let list = shipped(year)
                .national_day
                .as_deref()
                .unwrap_or_else(|| panic!("{year} names its National Day days"));
            assert!(listed(list, sep2), "{year}");
            assert!(
                listed(list, sep1) != listed(list, sep3),
                "{year}: one adjacent day"
            );
            assert_eq!(weekdays(list), 2, "{year}: two days off");
            assert!(national.contains(&sep1) != national.contains(&sep3));
        } else {
            // Labour Code 2012: 2/9 alone, nothing for a decision to choose.
            assert_eq!(shipped(year).national_day, None, "{year}");
            assert_eq!(national, [sep2], "{year}");
        }
    }
}

/// Every `off` and `working` day of the schedule, 2014 included.
fn swaps() -> (Vec<LocalDate>, Vec<LocalDate>) {
    let (mut off, mut working) = (Vec::new(), Vec::new());
    for (_, y) in decided::schedule().years() {
        off.extend(y.off.iter().map(|e| e.date));
        working.extend(y.working.iter().map(|e| e.date));
    }
    off.sort();
    working.sort();
    (off, working)
}

#[test]
fn every_swapped_working_day_is_a_weekend_day_given_up_for_a_weekday_off() {
    let cal = Calendar::vietnam();
    let (off, working) = swaps();
    assert_eq!(off.len(), working.len(), "one Saturday for each weekday");
    for (weekday, weekend) in off.iter().zip(&working) {
        assert!(weekend.weekday().is_weekend(), "{weekend}");
        assert_eq!(cal.day_kind(*weekend), DayKind::SwappedWorking, "{weekend}");
        assert!(!weekday.weekday().is_weekend(), "{weekday}");
        assert_eq!(cal.day_kind(*weekday), DayKind::ExtraOff, "{weekday}");
        // Paired in date order, each Saturday lies within two weeks of the
        // weekday it pays for (swaps never interleave).
        let gap = (weekday.days_since_epoch() - weekend.days_since_epoch()).abs();
        assert!(gap <= 14, "{weekday} for {weekend}");
    }
}

#[test]
fn decisions_move_days_off_but_never_change_how_many_there_are() {
    let (decided, rule) = (Calendar::vietnam(), rules_only());
    let working = |cal: &Calendar| {
        (d("2014-01-01").days_since_epoch()..=d("2026-12-31").days_since_epoch())
            .map(LocalDate::from_days_since_epoch)
            .filter(|day| cal.is_working_day(*day))
            .count()
    };
    assert_eq!(working(&decided), working(&rule));
    // Yet they differ on many days: the decisions are not the rule.
    let differing = (d("2015-01-01").days_since_epoch()..=d("2026-12-31").days_since_epoch())
        .map(LocalDate::from_days_since_epoch)
        .filter(|day| decided.is_working_day(*day) != rule.is_working_day(*day))
        .count();
    assert!(differing >= 20, "{differing}");
}

/// A document number such as `9794/VPCP-KGVX` or `4875/TB-LĐTBXH`.
fn has_document_number(text: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ';' || c == ',')
        .any(|word| {
            let Some((number, code)) = word.split_once('/') else {
                return false;
            };
            !number.is_empty()
                && number.chars().all(|c| c.is_ascii_digit())
                && code.contains('-')
                && code.starts_with(char::is_uppercase)
                && code.chars().all(|c| c.is_alphabetic() || c == '-')
        })
}

/// The years of the dates `d/m/yyyy` in `text`.
fn date_years(text: &str) -> Vec<i32> {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ';' || c == ',')
        .filter_map(|word| {
            let parts: Vec<&str> = word.split('/').collect();
            let [day, month, year] = parts[..] else {
                return None;
            };
            let number = |s: &str, len: RangeInclusive<usize>| {
                len.contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
            };
            (number(day, 1..=2) && number(month, 1..=2) && number(year, 4..=4))
                .then(|| year.parse().ok())
                .flatten()
        })
        .collect()
}

#[test]
fn every_shipped_year_cites_its_decisions() {
    for (year, y) in decided::schedule().years() {
        assert!(!y.source.is_empty(), "{year}: no source");
        for source in &y.source {
            let unverified = source.contains("chưa xác minh");
            assert!(
                has_document_number(source) || unverified,
                "{year}: names no document: {source}"
            );
            // Decided in the year before or in the year itself.
            let dated = date_years(source)
                .iter()
                .any(|y| *y == year - 1 || *y == year);
            assert!(dated || unverified, "{year}: no date: {source}");
        }
        let cites = |words: &str| y.source.iter().any(|s| s.contains(words));
        if y.tet.is_some() {
            assert!(cites("Tết Âm lịch"), "{year}: Tết's source");
        }
        if y.national_day.is_some() {
            assert!(cites("Quốc khánh"), "{year}: National Day's source");
        }
        if !y.off.is_empty() || !y.working.is_empty() {
            assert!(cites("hoán đổi"), "{year}: the swaps' source");
        }
    }
}

#[test]
fn every_listed_day_lies_in_its_year_and_is_listed_once() {
    let mut seen = BTreeSet::new();
    let schedule = decided::schedule();
    let listed_years: Vec<i32> = schedule.years().map(|(y, _)| y).collect();
    let expected: Vec<i32> = std::iter::once(2014).chain(years()).collect();
    assert_eq!(listed_years, expected, "2015–2026, and 2014's one swap day");
    for (year, y) in schedule.years() {
        let lists = [
            &y.off[..],
            &y.working[..],
            y.tet.as_deref().unwrap_or(&[]),
            y.national_day.as_deref().unwrap_or(&[]),
        ];
        for e in lists.into_iter().flatten() {
            assert_eq!(e.date.year(), year, "{} in [{year}]", e.date);
            assert!(seen.insert(e.date), "{} listed twice", e.date);
        }
    }
    // 2014 carries only the Saturday worked for 2 January 2015.
    let y2014 = schedule.year(2014).expect("2014");
    assert_eq!(
        (y2014.tet.as_ref(), y2014.national_day.as_ref()),
        (None, None)
    );
    assert!(y2014.off.is_empty());
    assert_eq!(y2014.working.len(), 1);
}

#[test]
fn the_lunar_dates_the_notices_quote_agree_with_the_lunar_calendar() {
    // (solar date, lunar day, lunar month) as the decisions print them.
    let quoted = [
        ("2015-02-17", 29, 12),
        ("2016-02-06", 28, 12),
        ("2016-02-14", 7, 1),
        ("2017-01-26", 29, 12),
        ("2017-02-01", 5, 1),
        ("2018-02-14", 29, 12),
        ("2019-02-02", 28, 12),
        ("2019-02-10", 6, 1),
        ("2020-01-23", 29, 12),
        ("2020-01-29", 5, 1),
        ("2021-02-10", 29, 12),
        ("2021-02-16", 5, 1),
        ("2025-01-25", 26, 12),
        ("2025-02-02", 5, 1),
        ("2026-02-14", 27, 12),
        ("2026-02-16", 29, 12),
        ("2026-02-22", 6, 1),
    ];
    for (date, day, month) in quoted {
        let lunar = lunar::solar_to_lunar(d(date));
        assert_eq!((lunar.day, lunar.month), (day, month), "{date}");
    }
}

// --- Due dates across decisions, given / when / then -----------------------

#[test]
fn before_tet_2021_the_decided_29_chap_makes_a_one_day_dossier_due_after_tet() {
    // Given a dossier received Tuesday 9 February 2021 at 16:00, one working
    // day. The decision gave 10/2 (29 Chạp) to 16/2; the rule would have
    // started Tết on the eve, 11/2, and kept Wednesday 10/2 a working day.
    let received = d("2021-02-09").at(16, 0);
    // When its due date is computed with the shipped decisions
    let due = Calendar::vietnam().due(received, WorkingDays(1));
    // Then it is Wednesday 17/2 16:00 (1 h on the 9th, 7 h on the 17th),
    assert_eq!(due, d("2021-02-17").at(16, 0));
    // where the rule alone says Wednesday 10/2.
    assert_eq!(
        rules_only().due(received, WorkingDays(1)),
        d("2021-02-10").at(16, 0)
    );
}

#[test]
fn the_2015_tet_swap_makes_saturday_14_february_a_working_day() {
    // Given Friday 13 February 2015, 16:00, and two working days. The
    // decision: Saturday 14/2 worked for Monday 16/2, Tết 17/2–21/2, 23/2 in
    // lieu of Saturday 21/2; Tuesday 24/2 a working day again.
    let cal = Calendar::vietnam();
    assert_eq!(cal.day_kind(d("2015-02-14")), DayKind::SwappedWorking);
    assert_eq!(cal.day_kind(d("2015-02-16")), DayKind::ExtraOff);
    let received = d("2015-02-13").at(16, 0);
    // When the due date is computed
    let due = cal.due(received, WorkingDays(2));
    // Then: 1 h Friday, 8 h on the Saturday, 7 h on Tuesday 24/2.
    assert_eq!(due, d("2015-02-24").at(16, 0));
    // The rule (Tết from the eve, 18/2) would have said Tuesday 17/2.
    assert_eq!(
        rules_only().due(received, WorkingDays(2)),
        d("2015-02-17").at(16, 0)
    );
}

#[test]
fn national_day_2026_takes_1_september_and_monday_31_august_by_a_swap() {
    // Given Friday 28 August 2026, 16:00, one working day. The decision:
    // 1/9 and 2/9 off, Monday 31/8 swapped with Saturday 22/8; the rule
    // (2/9 a Wednesday) would have given Thursday 3/9 instead.
    let received = d("2026-08-28").at(16, 0);
    // When the due date is computed
    let due = Calendar::vietnam().due(received, WorkingDays(1));
    // Then it is Thursday 3/9 16:00, not the rule's Monday 31/8.
    assert_eq!(due, d("2026-09-03").at(16, 0));
    assert_eq!(
        rules_only().due(received, WorkingDays(1)),
        d("2026-08-31").at(16, 0)
    );
}

#[test]
fn the_2025_swap_takes_friday_2_may_off_and_works_saturday_26_april() {
    let (cal, rule) = (Calendar::vietnam(), rules_only());
    // Given Friday 25 April 2025, 16:00, one working day: due on the
    // Saturday worked, 26/4 at 16:00.
    let received = d("2025-04-25").at(16, 0);
    assert_eq!(cal.due(received, WorkingDays(1)), d("2025-04-26").at(16, 0));
    // A pause from Tuesday 29/4 9:00 to Friday 2/5 9:00 holds 6 working
    // hours (Tuesday only), where the rule counts 8 (2/5 a working day).
    let (from, to) = (d("2025-04-29").at(9, 0), d("2025-05-02").at(9, 0));
    assert_eq!(cal.working_time_between(from, to), 6 * HOUR);
    assert_eq!(rule.working_time_between(from, to), 8 * HOUR);
}

#[test]
fn an_operators_file_is_laid_over_the_shipped_years() {
    // Given an operators' file that lists 2021 with the rule's Tết days
    // (11/2–17/2) and 2025 with one local day off only
    let overrides = Overrides::parse(
        "[2021]\nsource = \"a local decision\"\ntet = [\"2021-02-11..2021-02-17\"]\n\
         national_day = [\"2021-09-02\", \"2021-09-03\"]\n\
         [2025]\noff = [\"2025-03-10\"]\n",
    )
    .expect("overrides");
    let cal = Calendar::new(OfficeHours::default(), &overrides).expect("calendar");
    // When a dossier is received Tuesday 9/2/2021 at 16:00 for one day
    let due = cal.due(d("2021-02-09").at(16, 0), WorkingDays(1));
    // Then the operators' Tết counts: due Wednesday 10/2, not 17/2
    assert_eq!(due, d("2021-02-10").at(16, 0));
    // and 2025 keeps the shipped decisions beside the local day off: Tết
    // from Monday 27/1, the 2/5 swap with Saturday 26/4.
    assert!(!cal.is_working_day(d("2025-03-10")));
    assert!(!cal.is_working_day(d("2025-01-27")));
    assert!(cal.is_working_day(d("2025-02-03")));
    assert!(!cal.is_working_day(d("2025-05-02")));
    assert_eq!(cal.day_kind(d("2025-04-26")), DayKind::SwappedWorking);
    // Years the file does not list keep the shipped decisions.
    assert!(!cal.is_working_day(d("2020-01-23")));
    assert_eq!(cal.day_kind(d("2026-08-22")), DayKind::SwappedWorking);
}

#[test]
fn years_not_shipped_keep_the_rule() {
    let (cal, rule) = (Calendar::vietnam(), rules_only());
    for (from, to) in [("2013-01-01", "2013-12-31"), ("2027-01-01", "2027-12-31")] {
        let mut day = d(from);
        while day <= d(to) {
            assert_eq!(cal.day_kind(day), rule.day_kind(day), "{day}");
            day = day.add_days(1);
        }
    }
}
