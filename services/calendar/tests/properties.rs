//! Properties of due dates for receipts across 2015–2035, checked against a
//! straightforward day-by-day implementation.

use calendar::{Calendar, LocalDate, ProcessingTime};
use proptest::prelude::*;
use std::sync::LazyLock;

const HOUR: i64 = 3_600_000_000;

static CAL: LazyLock<Calendar> = LazyLock::new(|| {
    let overrides = calendar::Overrides::parse(include_str!("../holidays.example.toml"))
        .expect("example overrides");
    Calendar::new(calendar::OfficeHours::default(), &overrides).expect("calendar")
});

fn start() -> i64 {
    LocalDate::new(2015, 1, 1).expect("date").midnight()
}

fn end() -> i64 {
    LocalDate::new(2036, 1, 1).expect("date").midnight()
}

/// Instants 2015–2035, half of them on whole minutes (to hit boundaries).
fn instant() -> impl Strategy<Value = i64> {
    prop_oneof![
        start()..end(),
        (0..(end() - start()) / 60_000_000).prop_map(|m| start() + m * 60_000_000)
    ]
}

fn processing() -> impl Strategy<Value = ProcessingTime> {
    prop_oneof![
        (0u32..=30).prop_map(ProcessingTime::WorkingDays),
        (0u32..=30).prop_map(ProcessingTime::WorkingHours)
    ]
}

/// Sessions of the default office day, micros after midnight.
const SESSIONS: [(i64, i64); 2] = [
    (7 * HOUR, 11 * HOUR + HOUR / 2),
    (13 * HOUR + HOUR / 2, 17 * HOUR),
];

/// Day-by-day: walk the sessions of each working day, spending `left`.
fn naive_add(cal: &Calendar, t: i64, mut left: i64) -> i64 {
    let mut date = LocalDate::from_instant(t);
    let mut tod = t - date.midnight();
    loop {
        if cal.is_working_day(date) {
            for (open, close) in SESSIONS {
                let from = tod.max(open);
                if from < close {
                    if left == 0 {
                        return date.midnight() + from;
                    }
                    if left <= close - from {
                        return date.midnight() + from + left;
                    }
                    left -= close - from;
                }
            }
        }
        date = date.add_days(1);
        tod = 0;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn due_is_a_working_instant_never_on_a_day_off(t in instant(), p in processing()) {
        let due = CAL.due(t, p);
        prop_assert!(CAL.is_working_instant(due));
        prop_assert!(CAL.is_working_day(CAL.local_date(due)));
        prop_assert!(due >= t);
    }

    #[test]
    fn due_matches_the_day_by_day_walk(t in instant(), p in processing()) {
        let micros = p.micros(CAL.office_hours());
        prop_assert_eq!(CAL.due(t, p), naive_add(&CAL, t, micros));
    }

    #[test]
    fn adding_hours_is_additive(t in instant(), n in 1i64..200, m in 1i64..200) {
        prop_assert_eq!(
            CAL.add_working(CAL.add_working(t, n * HOUR), m * HOUR),
            CAL.add_working(t, (n + m) * HOUR)
        );
    }

    #[test]
    fn adding_arbitrary_micros_is_additive(t in instant(), n in 1i64..100 * HOUR, m in 1i64..100 * HOUR) {
        prop_assert_eq!(CAL.add_working(CAL.add_working(t, n), m), CAL.add_working(t, n + m));
    }

    #[test]
    fn due_is_monotone(a in instant(), b in instant(), p in processing()) {
        let (t1, t2) = (a.min(b), a.max(b));
        prop_assert!(CAL.due(t1, p) <= CAL.due(t2, p));
    }

    #[test]
    fn working_time_between_undoes_add(t in instant(), n in 0i64..400 * HOUR) {
        let later = CAL.add_working(t, n);
        prop_assert_eq!(CAL.working_time_between(t, later), n);
        prop_assert_eq!(CAL.working_time_between(later, t), -n);
    }

    #[test]
    fn next_working_instant_is_where_the_clock_starts(t in instant()) {
        let s = CAL.next_working_instant(t);
        prop_assert!(s >= t);
        prop_assert!(CAL.is_working_instant(s));
        prop_assert_eq!(CAL.working_time_between(t, s), 0);
        prop_assert_eq!(CAL.next_working_instant(s), s);
    }
}
