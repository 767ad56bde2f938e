//! The overrides file: accepted forms and clear errors.

use calendar::{Calendar, CalendarError, LocalDate, OfficeHours, Overrides};

fn d(s: &str) -> LocalDate {
    s.parse().expect("a valid ISO date")
}

/// Parses `text` expecting an error; returns (line, key, message).
fn error(text: &str) -> (usize, String, String) {
    let e = Overrides::parse(text).expect_err("should be refused");
    // The Display form names the line and key too.
    let shown = e.to_string();
    assert!(shown.contains(&format!("line {}", e.line)), "{shown}");
    (e.line, e.key, e.message)
}

#[test]
fn the_example_file_parses() {
    let o = Overrides::parse(include_str!("../holidays.example.toml")).unwrap();
    let y2025 = o.year(2025).unwrap();
    assert_eq!(y2025.tet.as_ref().unwrap().len(), 9);
    assert_eq!(y2025.off[0].date, d("2025-05-02"));
    assert_eq!(y2025.working[0].date, d("2025-04-26"));
    assert_eq!(o.years().map(|(y, _)| y).collect::<Vec<_>>(), [2024, 2025]);
}

#[test]
fn dates_ranges_and_bare_toml_dates_are_accepted() {
    let o = Overrides::parse(
        "[2026]\noff = [\"2026-01-02\", 2026-04-27, \"2026-12-28 .. 2026-12-30\"]\n",
    )
    .unwrap();
    let off: Vec<_> = o
        .year(2026)
        .unwrap()
        .off
        .iter()
        .map(|e| e.date.to_string())
        .collect();
    assert_eq!(
        off,
        [
            "2026-01-02",
            "2026-04-27",
            "2026-12-28",
            "2026-12-29",
            "2026-12-30"
        ]
    );
    assert_eq!(o.year(2026).unwrap().off[1].line, 2);
    let cal = Calendar::new(OfficeHours::default(), &o).unwrap();
    assert!(!cal.is_working_day(d("2026-01-02")));
    assert!(cal.is_working_day(d("2026-01-05")));
}

#[test]
fn an_empty_file_is_no_overrides() {
    assert_eq!(
        Overrides::parse("# nothing yet\n").unwrap(),
        Overrides::none()
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let (line, _, message) = error("[2025]\noff = [\"2025-05-02\"\nworking = []\n");
    assert!(line >= 2, "{line}");
    assert!(message.contains("not valid TOML"), "{message}");
}

#[test]
fn invalid_date() {
    let (line, key, message) = error("[2025]\n\noff = [\"2025-02-30\"]\n");
    assert_eq!((line, key.as_str()), (3, "2025.off"));
    assert!(message.contains("2025-02-30"), "{message}");
    let (_, _, message) = error("[2025]\noff = [\"2/5/2025\"]\n");
    assert!(message.contains("YYYY-MM-DD"), "{message}");
    let (_, _, message) = error("[2025]\noff = [20250502]\n");
    assert!(message.contains("found integer"), "{message}");
    let (_, _, message) = error("[2025]\noff = \"2025-05-02\"\n");
    assert!(message.contains("expected a list of dates"), "{message}");
    let (_, _, message) = error("[2025]\noff = [2025-05-02T08:00:00]\n");
    assert!(message.contains("date only"), "{message}");
}

#[test]
fn date_not_in_its_years_table() {
    let (line, key, message) = error("[2025]\noff = [\"2025-05-02\",\n  \"2024-05-02\"]\n");
    assert_eq!((line, key.as_str()), (3, "2025.off"));
    assert!(message.contains("2024-05-02 is not in 2025"), "{message}");
}

#[test]
fn a_day_both_off_and_working() {
    let (line, key, message) =
        error("[2025]\noff = [\"2025-04-26\"]\nworking = [\"2025-04-26\"]\n");
    assert_eq!((line, key.as_str()), (3, "2025.working"));
    assert!(message.contains("both a day off"), "{message}");
}

#[test]
fn a_working_day_that_is_not_a_weekend_or_holiday() {
    let (line, key, message) = error("[2025]\nworking = [\"2025-04-23\"]\n");
    assert_eq!((line, key.as_str()), (2, "2025.working"));
    assert!(
        message.contains("2025-04-23 is a Wednesday and no holiday"),
        "{message}"
    );
    // A holiday may be made a working day (e.g. to move it).
    assert!(Overrides::parse("[2025]\nworking = [\"2025-05-01\"]\n").is_ok());
}

#[test]
fn unknown_keys_years_and_tables() {
    let (line, key, message) = error("[2025]\nholidays = []\n");
    assert_eq!((line, key.as_str()), (2, "2025.holidays"));
    assert!(message.contains("allowed: `off`, `working`"), "{message}");
    let (line, _, message) = error("[twenty]\noff = []\n");
    assert_eq!(line, 1);
    assert!(message.contains("must be a year"), "{message}");
    let (_, _, message) = error("2025 = 3\n");
    assert!(message.contains("expected a table"), "{message}");
}

#[test]
fn listed_twice_and_bad_ranges() {
    let (_, _, message) = error("[2025]\noff = [\"2025-05-02\", \"2025-05-02\"]\n");
    assert!(message.contains("listed twice"), "{message}");
    let (_, _, message) = error("[2025]\noff = [\"2025-05-05..2025-05-02\"]\n");
    assert!(message.contains("ends before it starts"), "{message}");
    let (_, _, message) = error("[2025]\noff = [\"2025-01-01..2025-12-31\"]\n");
    assert!(message.contains("longer than"), "{message}");
}

#[test]
fn tet_and_national_day_must_be_near_their_dates() {
    let (_, key, message) = error("[2025]\ntet = [\"2025-03-01\"]\n");
    assert_eq!(key, "2025.tet");
    assert!(message.contains("from Tết (2025-01-29)"), "{message}");
    let (_, key, _) = error("[2025]\nnational_day = [\"2025-09-20\"]\n");
    assert_eq!(key, "2025.national_day");
    let (_, _, message) = error("[2025]\ntet = []\n");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn a_year_outside_the_table_is_refused_by_the_calendar() {
    let o = Overrides::parse("\n[2101]\noff = [\"2101-01-03\"]\n").unwrap();
    let err = Calendar::new(OfficeHours::default(), &o).unwrap_err();
    let CalendarError::Overrides(e) = &err else {
        panic!("{err}")
    };
    assert_eq!((e.line, e.key.as_str()), (2, "2101"));
    assert!(err.to_string().contains("1990 to 2100"), "{err}");
}

#[test]
fn source_is_a_string_or_a_list_of_strings_and_is_kept() {
    let o = Overrides::parse(
        "[2025]\nsource = \"Thông báo 6150/TB-BLĐTBXH ngày 3/12/2024\"\n\
         [2026]\nsource = [\"Công văn 12729/VPCP-KGVX ngày 25/12/2025\", \"Thông báo 9441/TB-BNV\"]\n",
    )
    .unwrap();
    assert_eq!(
        o.year(2025).unwrap().source,
        ["Thông báo 6150/TB-BLĐTBXH ngày 3/12/2024"]
    );
    assert_eq!(o.year(2026).unwrap().source.len(), 2);
    let (line, key, message) = error("[2025]\nsource = [\"a\", 3]\n");
    assert_eq!((line, key.as_str()), (2, "2025.source"));
    assert!(
        message.contains("a string or a list of strings"),
        "{message}"
    );
    let (_, _, message) = error("[2025]\nsource = 3\n");
    assert!(
        message.contains("a string or a list of strings"),
        "{message}"
    );
}
