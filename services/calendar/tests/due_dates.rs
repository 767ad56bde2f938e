//! Worked examples of due dates, given / when / then.

use ProcessingTime::{WorkingDays, WorkingHours};
use calendar::{
    Calendar, DayKind, Holiday, LocalDate, OfficeHours, Overrides, ProcessingTime, is_late,
};

fn d(s: &str) -> LocalDate {
    s.parse().expect("a valid ISO date")
}

fn example_calendar() -> Calendar {
    let overrides =
        Overrides::parse(include_str!("../holidays.example.toml")).expect("example overrides");
    Calendar::new(OfficeHours::default(), &overrides).expect("calendar")
}

#[test]
fn received_friday_1630_with_3_working_days_is_due_wednesday_1630() {
    // Given the default calendar and Friday 7 March 2025, 16:30
    let cal = Calendar::vietnam();
    let received = d("2025-03-07").at(16, 30);
    // When 3 working days are added (three 8-hour blocks: the half hour left
    // on Friday, Monday, Tuesday and 7.5 h of Wednesday)
    let due = cal.due(received, WorkingDays(3));
    // Then it is due on Wednesday 12 March at 16:30
    assert_eq!(due, d("2025-03-12").at(16, 30));
    assert_eq!(cal.due_date(received, WorkingDays(3)), d("2025-03-12"));
}

#[test]
fn received_at_1600_on_the_eve_of_tet_skips_the_holiday_week() {
    // The rule alone, 2025: Tết days 28/1–1/2 and Monday 3/2 compensatory for
    // Saturday 1/2; the last working afternoon before them is Monday 27/1.
    let cal = Calendar::rules_only(OfficeHours::default(), &Overrides::none()).expect("calendar");
    for day in [
        "2025-01-28",
        "2025-01-29",
        "2025-01-30",
        "2025-01-31",
        "2025-02-01",
    ] {
        assert_eq!(
            cal.day_kind(d(day)),
            DayKind::Holiday(Holiday::Tet),
            "{day}"
        );
    }
    assert_eq!(cal.day_kind(d("2025-02-03")), DayKind::Compensatory);
    let due = cal.due(d("2025-01-27").at(16, 0), WorkingDays(2));
    // 1 h on Monday 27/1, 8 h on Tuesday 4/2, 7 h on Wednesday 5/2.
    assert_eq!(due, d("2025-02-05").at(16, 0));

    // With the 2025 decision (off 25/1–2/2), shipped and in the example
    // file alike, the eve is Friday 24/1.
    for cal in [Calendar::vietnam(), example_calendar()] {
        let due = cal.due(d("2025-01-24").at(16, 0), WorkingDays(2));
        assert_eq!(due, d("2025-02-04").at(16, 0));
    }
}

#[test]
fn received_at_1800_starts_the_next_morning() {
    let cal = Calendar::vietnam();
    let received = d("2025-03-11").at(18, 0); // Tuesday
    assert_eq!(cal.next_working_instant(received), d("2025-03-12").at(7, 0));
    assert_eq!(
        cal.due(received, WorkingHours(4)),
        d("2025-03-12").at(11, 0)
    );
    // A whole working day ends at that day's close, not the next opening.
    assert_eq!(cal.due(received, WorkingDays(1)), d("2025-03-12").at(17, 0));
}

#[test]
fn received_on_saturday_starts_monday_morning() {
    let cal = Calendar::vietnam();
    let received = d("2025-03-08").at(9, 15);
    assert_eq!(cal.next_working_instant(received), d("2025-03-10").at(7, 0));
    assert_eq!(cal.due(received, WorkingDays(1)), d("2025-03-10").at(17, 0));
    assert_eq!(
        cal.due(received, WorkingHours(5)),
        d("2025-03-10").at(14, 0)
    );
}

#[test]
fn received_at_lunch_starts_at_1330() {
    let cal = Calendar::vietnam();
    let received = d("2025-03-12").at(12, 0);
    assert_eq!(
        cal.next_working_instant(received),
        d("2025-03-12").at(13, 30)
    );
    assert_eq!(
        cal.due(received, WorkingHours(2)),
        d("2025-03-12").at(15, 30)
    );
    // 3.5 h this afternoon, 0.5 h tomorrow morning.
    assert_eq!(
        cal.due(received, WorkingHours(4)),
        d("2025-03-13").at(7, 30)
    );
}

#[test]
fn exactly_at_a_boundary_the_due_instant_is_the_close_that_used_the_time_up() {
    let cal = Calendar::vietnam();
    let day = d("2025-03-12");
    // 8:30 + 3 h ends exactly at 11:30: due at 11:30, not 13:30.
    assert_eq!(cal.due(day.at(8, 30), WorkingHours(3)), day.at(11, 30));
    assert!(cal.is_working_instant(day.at(11, 30)));
    // 7:00 + 8 h: 17:00 the same day.
    assert_eq!(cal.due(day.at(7, 0), WorkingHours(8)), day.at(17, 0));
    // Received exactly at 11:30 or 17:00: the clock starts at the next opening.
    assert_eq!(cal.next_working_instant(day.at(11, 30)), day.at(13, 30));
    assert_eq!(
        cal.next_working_instant(day.at(17, 0)),
        d("2025-03-13").at(7, 0)
    );
    assert_eq!(
        cal.due(day.at(17, 0), WorkingHours(1)),
        d("2025-03-13").at(8, 0)
    );
    // Zero time: the instant the clock starts.
    assert_eq!(cal.due(day.at(12, 0), WorkingHours(0)), day.at(13, 30));
}

#[test]
fn a_holiday_on_a_sunday_gives_monday_off() {
    let cal = Calendar::vietnam();
    // 1 January 2023 was a Sunday; Giỗ Tổ 2022 (10 April) too.
    assert_eq!(
        cal.day_kind(d("2023-01-01")),
        DayKind::Holiday(Holiday::NewYear)
    );
    assert_eq!(cal.day_kind(d("2023-01-02")), DayKind::Compensatory);
    assert_eq!(cal.day_kind(d("2022-04-11")), DayKind::Compensatory);
    let due = cal.due(d("2022-12-30").at(15, 0), WorkingDays(1));
    assert_eq!(due, d("2023-01-03").at(15, 0));
}

#[test]
fn national_day_has_two_days_from_2021() {
    let cal = Calendar::vietnam();
    // 2024: Monday 2/9 and Tuesday 3/9; 2020 (Labour Code 2012): 2/9 only.
    assert!(!cal.is_working_day(d("2024-09-02")));
    assert!(!cal.is_working_day(d("2024-09-03")));
    assert!(cal.is_working_day(d("2024-09-04")));
    assert!(!cal.is_working_day(d("2020-09-02")));
    assert!(cal.is_working_day(d("2020-09-03")));
    assert!(cal.is_working_day(d("2020-09-01")));
}

#[test]
fn the_example_overrides_give_the_2024_and_2025_arrangements() {
    let cal = example_calendar();
    let off = |s: &str| !cal.is_working_day(d(s));
    // 2024 Tết 8–14 Feb; Thursday 15 Feb is a working day again.
    assert!(!off("2024-02-07"));
    assert!(
        [
            "2024-02-08",
            "2024-02-09",
            "2024-02-12",
            "2024-02-13",
            "2024-02-14"
        ]
        .iter()
        .all(|s| off(s))
    );
    assert!(!off("2024-02-15"));
    // 2024 30/4: Monday 29/4 off, Saturday 4/5 worked.
    assert!(off("2024-04-29"));
    assert_eq!(cal.day_kind(d("2024-05-04")), DayKind::SwappedWorking);
    // 2025 Tết: Friday 24/1 worked, Monday 3/2 worked (no compensatory day).
    assert!(!off("2025-01-24"));
    assert!(off("2025-01-27") && off("2025-01-31"));
    assert!(!off("2025-02-03"));
    // 2025 30/4–4/5 with Saturday 26/4 worked.
    assert!(off("2025-04-30") && off("2025-05-01") && off("2025-05-02"));
    assert_eq!(cal.day_kind(d("2025-05-02")), DayKind::ExtraOff);
    assert_eq!(cal.day_kind(d("2025-04-26")), DayKind::SwappedWorking);
    // A dossier received Friday 25/4 16:00 with 1 working day: 1 h Friday,
    // 7 h on the swapped Saturday 26/4.
    assert_eq!(
        cal.due(d("2025-04-25").at(16, 0), WorkingDays(1)),
        d("2025-04-26").at(16, 0)
    );
}

#[test]
fn paused_working_time_moves_the_due_date() {
    let cal = Calendar::vietnam();
    let received = d("2025-03-10").at(9, 0);
    let due = cal.due(received, WorkingDays(5));
    // Paused from Tuesday 14:00 to Thursday 10:00: 3 h + 8 h + 3 h = 14 h.
    let paused = cal.working_time_between(d("2025-03-11").at(14, 0), d("2025-03-13").at(10, 0));
    assert_eq!(paused, 14 * 3_600_000_000);
    let moved = cal.add_working(due, paused);
    assert_eq!(moved, cal.due(received, WorkingHours(40 + 14)));
}

#[test]
fn custom_office_hours() {
    let hours = OfficeHours::new((7, 30), (11, 30), (13, 0), (16, 30)).unwrap();
    assert_eq!(hours.day_length(), (4 * 60 + 3 * 60 + 30) * 60_000_000);
    let cal = Calendar::new(hours, &Overrides::none()).unwrap();
    // 7.5 h: 13:00–16:30, then 7:30–11:30 the next day.
    assert_eq!(
        cal.due(d("2025-03-12").at(12, 0), WorkingDays(1)),
        d("2025-03-13").at(11, 30)
    );
    assert!(OfficeHours::new((7, 0), (11, 30), (11, 0), (17, 0)).is_err());
    assert!(OfficeHours::new((7, 0), (6, 0), (13, 0), (17, 0)).is_err());
    assert!(OfficeHours::new((7, 0), (11, 60), (13, 0), (17, 0)).is_err());
    assert!(OfficeHours::new((7, 0), (11, 0), (13, 0), (25, 0)).is_err());
}

#[test]
fn outside_the_table_instants_saturate_and_checked_due_says_none() {
    let cal = Calendar::vietnam();
    let early = d("1980-06-02").at(9, 0);
    assert_eq!(cal.next_working_instant(early), d("1990-01-02").at(7, 0)); // 1/1/1990 was a holiday
    assert_eq!(cal.checked_due(early, WorkingDays(1)), None);
    let late = d("2100-12-30").at(9, 0);
    assert_eq!(cal.checked_due(late, WorkingDays(30)), None);
    assert_eq!(cal.due(late, WorkingDays(30)), d("2100-12-31").at(17, 0));
    assert!(
        cal.checked_due(d("2025-03-12").at(9, 0), WorkingDays(3))
            .is_some()
    );
    // Weekends are still known outside the table.
    assert!(!cal.is_working_day(d("2200-01-04")));
}

#[test]
fn late_is_compared_by_local_date() {
    let due = d("2025-03-12").at(16, 30);
    assert!(!is_late(due, d("2025-03-12").at(23, 0)));
    assert!(is_late(due, d("2025-03-13").at(7, 0)));
}
