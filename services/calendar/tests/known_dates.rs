//! Tết and Giỗ Tổ as printed in Vietnamese calendars, and the years where
//! Vietnam's (UTC+7) lunar calendar differs from China's (UTC+8).

use calendar::LocalDate;
use calendar::lunar::{self, LunarDate};

fn d(s: &str) -> LocalDate {
    s.parse().expect("a valid ISO date")
}

/// First day of Tết Nguyên đán, 2015–2035.
const TET: [(i32, &str); 21] = [
    (2015, "2015-02-19"),
    (2016, "2016-02-08"),
    (2017, "2017-01-28"),
    (2018, "2018-02-16"),
    (2019, "2019-02-05"),
    (2020, "2020-01-25"),
    (2021, "2021-02-12"),
    (2022, "2022-02-01"),
    (2023, "2023-01-22"),
    (2024, "2024-02-10"),
    (2025, "2025-01-29"),
    (2026, "2026-02-17"),
    (2027, "2027-02-06"),
    (2028, "2028-01-26"),
    (2029, "2029-02-13"),
    // China: 2030-02-03. The new moon is at about 23:07 on 2 February in
    // UTC+7 (16:07 UT), 00:07 on 3 February in UTC+8.
    (2030, "2030-02-02"),
    (2031, "2031-01-23"),
    (2032, "2032-02-11"),
    (2033, "2033-01-31"),
    (2034, "2034-02-19"),
    (2035, "2035-02-08"),
];

/// Giỗ Tổ Hùng Vương (10th day of the 3rd lunar month), 2015–2035.
const GIO_TO: [(i32, &str); 21] = [
    (2015, "2015-04-28"),
    (2016, "2016-04-16"),
    (2017, "2017-04-06"),
    (2018, "2018-04-25"),
    (2019, "2019-04-14"),
    (2020, "2020-04-02"),
    (2021, "2021-04-21"),
    (2022, "2022-04-10"),
    (2023, "2023-04-29"),
    (2024, "2024-04-18"),
    (2025, "2025-04-07"),
    (2026, "2026-04-26"),
    (2027, "2027-04-16"),
    (2028, "2028-04-04"),
    (2029, "2029-04-23"),
    (2030, "2030-04-12"),
    (2031, "2031-04-01"),
    (2032, "2032-04-19"),
    (2033, "2033-04-09"),
    (2034, "2034-04-28"),
    (2035, "2035-04-17"),
];

#[test]
fn tet_first_day_2015_to_2035() {
    for (year, date) in TET {
        assert_eq!(lunar::tet(year), d(date), "Tết {year}");
        let lunar = lunar::solar_to_lunar(d(date));
        assert_eq!(
            lunar,
            LunarDate {
                day: 1,
                month: 1,
                year,
                leap: false
            }
        );
    }
}

#[test]
fn gio_to_2015_to_2035() {
    for (year, date) in GIO_TO {
        assert_eq!(lunar::gio_to(year), d(date), "Giỗ Tổ {year}");
        assert_eq!(
            lunar::solar_to_lunar(d(date)),
            LunarDate {
                day: 10,
                month: 3,
                year,
                leap: false
            }
        );
    }
}

#[test]
fn vietnam_differs_from_china_where_the_new_moon_is_near_midnight() {
    // 1985: Vietnam 21 January, China 20 February (the month containing the
    // winter solstice differs, which moves the whole year by a month).
    assert_eq!(lunar::tet(1985), d("1985-01-21"));
    assert_ne!(lunar::tet(1985), d("1985-02-20"));
    // 2007: Vietnam 17 February, China 18 February.
    assert_eq!(lunar::tet(2007), d("2007-02-17"));
    assert_ne!(lunar::tet(2007), d("2007-02-18"));
    // 2030: Vietnam 2 February, China 3 February.
    assert_eq!(lunar::tet(2030), d("2030-02-02"));
}

#[test]
fn leap_months() {
    // 2020 (Canh Tý) has a leap 4th month; 2023 (Quý Mão) a leap 2nd month;
    // 2025 (Ất Tỵ) a leap 6th month.
    assert_eq!(
        lunar::solar_to_lunar(d("2020-05-23")),
        LunarDate {
            day: 1,
            month: 4,
            year: 2020,
            leap: true
        }
    );
    assert_eq!(
        lunar::solar_to_lunar(d("2023-03-22")),
        LunarDate {
            day: 1,
            month: 2,
            year: 2023,
            leap: true
        }
    );
    assert_eq!(
        lunar::solar_to_lunar(d("2025-07-25")),
        LunarDate {
            day: 1,
            month: 6,
            year: 2025,
            leap: true
        }
    );
    assert_eq!(
        lunar::lunar_to_solar(LunarDate {
            day: 1,
            month: 6,
            year: 2025,
            leap: true
        }),
        Some(d("2025-07-25"))
    );
}

#[test]
fn eve_of_tet() {
    // 2024's lunar year ended on 30 Chạp, 2025's on 29 Chạp.
    assert_eq!(lunar::lunar_new_years_eve(2023), d("2024-02-09"));
    assert_eq!(lunar::solar_to_lunar(d("2024-02-09")).day, 30);
    assert_eq!(lunar::lunar_new_years_eve(2024), d("2025-01-28"));
    assert_eq!(lunar::solar_to_lunar(d("2025-01-28")).day, 29);
}
