//! The Vietnamese lunisolar calendar (âm lịch), computed for UTC+7.
//!
//! This follows the astronomical method published by Hồ Ngọc Đức: the times
//! of new moons from Jean Meeus' *Astronomical Algorithms* (1998), the sun's
//! ecliptic longitude to find the month containing the winter solstice
//! (month 11) and the leap month (the first month of a 13-month year that
//! contains no major solar term). Every date is taken in Vietnam's time zone,
//! UTC+7, which is why some years differ from Chinese tables computed for
//! UTC+8: Tết 1985 fell on 21 January in Vietnam but 20 February in China,
//! Tết 2007 on 17 February in Vietnam but 18 February in China.
//!
//! Accuracy: the Meeus series used here are the abridged ones, good to a few
//! minutes for 1800–2200; dates whose new moon falls within minutes of local
//! midnight may differ from other tables. The calendar uses 1990–2100 only.

use crate::date::LocalDate;

/// Vietnam's time zone, in hours east of UTC.
const TIME_ZONE_HOURS: f64 = 7.0;
/// Julian day number of 1970-01-01.
const JD_UNIX_EPOCH: i64 = 2_440_588;
/// Julian day of the new moon of 1900-01-01 13:52 UT, origin of the count `k`.
const JD_NEW_MOON_1900: f64 = 2_415_021.076_998_695;
/// Mean synodic month, in days.
const SYNODIC_MONTH: f64 = 29.530_588_853;

/// A date of the Vietnamese lunar calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LunarDate {
    /// Day of the lunar month, 1–30.
    pub day: u8,
    /// Lunar month, 1–12.
    pub month: u8,
    /// Lunar year: the Gregorian year in which its first month starts.
    pub year: i32,
    /// True for the intercalary (leap) month that repeats `month`.
    pub leap: bool,
}

fn jd_of(date: LocalDate) -> i64 {
    i64::from(date.days_since_epoch()) + JD_UNIX_EPOCH
}

fn date_of_jd(jd: i64) -> LocalDate {
    // Julian days of the supported range fit i32 comfortably.
    LocalDate::from_days_since_epoch(i32::try_from(jd - JD_UNIX_EPOCH).unwrap_or(i32::MAX))
}

/// Julian day (fractional, UT) of the `k`-th new moon after 1900-01-01.
fn new_moon(k: i64) -> f64 {
    let k = k as f64;
    let t = k / 1236.85; // Julian centuries from 1900 January 0.5
    let t2 = t * t;
    let t3 = t2 * t;
    let dr = std::f64::consts::PI / 180.0;
    let mut jd1 = 2_415_020.759_33 + 29.530_588_68 * k + 0.000_117_8 * t2 - 0.000_000_155 * t3;
    jd1 += 0.000_33 * ((166.56 + 132.87 * t - 0.009_173 * t2) * dr).sin();
    let m = 359.2242 + 29.105_356_08 * k - 0.000_033_3 * t2 - 0.000_003_47 * t3; // sun's mean anomaly
    let mpr = 306.0253 + 385.816_918_06 * k + 0.010_730_6 * t2 + 0.000_012_36 * t3; // moon's mean anomaly
    let f = 21.2964 + 390.670_506_46 * k - 0.001_652_8 * t2 - 0.000_002_39 * t3; // moon's argument of latitude
    let mut c1 = (0.1734 - 0.000_393 * t) * (m * dr).sin() + 0.0021 * (2.0 * dr * m).sin();
    c1 = c1 - 0.4068 * (mpr * dr).sin() + 0.0161 * (dr * 2.0 * mpr).sin();
    c1 -= 0.0004 * (dr * 3.0 * mpr).sin();
    c1 = c1 + 0.0104 * (dr * 2.0 * f).sin() - 0.0051 * (dr * (m + mpr)).sin();
    c1 = c1 - 0.0074 * (dr * (m - mpr)).sin() + 0.0004 * (dr * (2.0 * f + m)).sin();
    c1 = c1 - 0.0004 * (dr * (2.0 * f - m)).sin() - 0.0006 * (dr * (2.0 * f + mpr)).sin();
    c1 = c1 + 0.0010 * (dr * (2.0 * f - mpr)).sin() + 0.0005 * (dr * (2.0 * mpr + m)).sin();
    let delta_t = if t < -11.0 {
        0.001 + 0.000_839 * t + 0.000_226_1 * t2 - 0.000_008_45 * t3 - 0.000_000_081 * t * t3
    } else {
        -0.000_278 + 0.000_265 * t + 0.000_262 * t2
    };
    jd1 + c1 - delta_t
}

/// Julian day number of the local (UTC+7) date of the `k`-th new moon.
fn new_moon_day(k: i64) -> i64 {
    (new_moon(k) + 0.5 + TIME_ZONE_HOURS / 24.0).floor() as i64
}

/// The sun's apparent ecliptic longitude, in radians [0, 2π), at Julian day `jdn` (UT).
fn sun_longitude(jdn: f64) -> f64 {
    let t = (jdn - 2_451_545.0) / 36_525.0; // Julian centuries from J2000
    let t2 = t * t;
    let dr = std::f64::consts::PI / 180.0;
    let m = 357.529_10 + 35_999.050_30 * t - 0.000_155_9 * t2 - 0.000_000_48 * t * t2; // mean anomaly
    let l0 = 280.466_45 + 36_000.769_83 * t + 0.000_303_2 * t2; // mean longitude
    let mut dl = (1.914_600 - 0.004_817 * t - 0.000_014 * t2) * (dr * m).sin();
    dl += (0.019_993 - 0.000_101 * t) * (dr * 2.0 * m).sin() + 0.000_290 * (dr * 3.0 * m).sin();
    let l = (l0 + dl) * dr;
    let two_pi = 2.0 * std::f64::consts::PI;
    l - two_pi * (l / two_pi).floor()
}

/// The sun's longitude at the start of local day `day_number`, as one of 12
/// sectors of 30° (0 = the March equinox's sector; 9 = the winter solstice's).
fn sun_sector(day_number: i64) -> i64 {
    let jd = day_number as f64 - 0.5 - TIME_ZONE_HOURS / 24.0;
    (sun_longitude(jd) / std::f64::consts::PI * 6.0).floor() as i64
}

/// Julian day number of the first day of lunar month 11 of Gregorian `year`:
/// the month containing the winter solstice.
fn lunar_month_11(year: i32) -> i64 {
    let dec31 = LocalDate::new(year, 12, 31).map_or(0, jd_of);
    let k = ((dec31 as f64 - 2_415_021.0) / SYNODIC_MONTH).floor() as i64;
    let nm = new_moon_day(k);
    if sun_sector(nm) >= 9 {
        new_moon_day(k - 1)
    } else {
        nm
    }
}

/// In a 13-month year starting with month 11 at `a11`, the offset (in months
/// after month 11) of the leap month: the first month without a major term.
fn leap_month_offset(a11: i64) -> i64 {
    let k = ((a11 as f64 - JD_NEW_MOON_1900) / SYNODIC_MONTH + 0.5).floor() as i64;
    let mut i = 1;
    let mut arc = sun_sector(new_moon_day(k + i));
    loop {
        let last = arc;
        i += 1;
        arc = sun_sector(new_moon_day(k + i));
        if arc == last || i >= 14 {
            break;
        }
    }
    i - 1
}

/// The lunar date of a solar (Gregorian) date, in Vietnam's time zone.
pub fn solar_to_lunar(date: LocalDate) -> LunarDate {
    let day_number = jd_of(date);
    // The mean-month estimate of `k` can be off by one where the true new
    // moon strays far from the mean one (e.g. around 2054-05-07, where the
    // published algorithm's single step back yields lunar day 0): step until
    // new moon `k` is on or before the date and `k + 1` after it.
    let mut k = ((day_number as f64 - JD_NEW_MOON_1900) / SYNODIC_MONTH).floor() as i64;
    while new_moon_day(k) > day_number {
        k -= 1;
    }
    while new_moon_day(k + 1) <= day_number {
        k += 1;
    }
    let month_start = new_moon_day(k);
    let yy = date.year();
    let mut a11 = lunar_month_11(yy);
    let mut b11 = a11;
    let mut lunar_year = if a11 >= month_start {
        a11 = lunar_month_11(yy - 1);
        yy
    } else {
        b11 = lunar_month_11(yy + 1);
        yy + 1
    };
    let lunar_day = day_number - month_start + 1;
    let diff = (month_start - a11).div_euclid(29);
    let mut leap = false;
    let mut lunar_month = diff + 11;
    if b11 - a11 > 365 {
        let leap_diff = leap_month_offset(a11);
        if diff >= leap_diff {
            lunar_month = diff + 10;
            leap = diff == leap_diff;
        }
    }
    if lunar_month > 12 {
        lunar_month -= 12;
    }
    if lunar_month >= 11 && diff < 4 {
        lunar_year -= 1;
    }
    LunarDate {
        // A lunar day is 1–30 and a month 1–12 by construction.
        day: u8::try_from(lunar_day).unwrap_or(0),
        month: u8::try_from(lunar_month).unwrap_or(0),
        year: lunar_year,
        leap,
    }
}

/// Julian day number of day 1 of lunar `month` (leap or not) of lunar `year`,
/// or `None` when `leap` is asked of a month that is not leap that year.
fn month_start(month: u8, year: i32, leap: bool) -> Option<i64> {
    let (a11, b11) = if month < 11 {
        (lunar_month_11(year - 1), lunar_month_11(year))
    } else {
        (lunar_month_11(year), lunar_month_11(year + 1))
    };
    let mut off = (i64::from(month) - 11).rem_euclid(12);
    if b11 - a11 > 365 {
        let leap_off = leap_month_offset(a11);
        let leap_month = (leap_off - 2).rem_euclid(12);
        if leap && i64::from(month) != leap_month {
            return None;
        }
        if leap || off >= leap_off {
            off += 1;
        }
    } else if leap {
        return None;
    }
    let k = (0.5 + (a11 as f64 - JD_NEW_MOON_1900) / SYNODIC_MONTH).floor() as i64;
    Some(new_moon_day(k + off))
}

/// The solar date of a lunar date, or `None` if it does not exist (month not
/// 1–12, day not 1–30, day 30 of a 29-day month, or a leap month that year
/// does not have).
pub fn lunar_to_solar(lunar: LunarDate) -> Option<LocalDate> {
    if !(1..=12).contains(&lunar.month) || !(1..=30).contains(&lunar.day) {
        return None;
    }
    let start = month_start(lunar.month, lunar.year, lunar.leap)?;
    let jd = start + i64::from(lunar.day) - 1;
    if lunar.day == 30 {
        // Day 30 exists only if the next new moon is later.
        let back = solar_to_lunar(date_of_jd(jd));
        if back.day != 30 {
            return None;
        }
    }
    Some(date_of_jd(jd))
}

/// Tết Nguyên đán: the solar date of the 1st day of the 1st lunar month of `year`.
pub fn tet(year: i32) -> LocalDate {
    // Month 1 is never a leap month's repeat when asked with `leap: false`.
    date_of_jd(month_start(1, year, false).unwrap_or(0))
}

/// Giỗ Tổ Hùng Vương: the solar date of the 10th day of the 3rd lunar month of
/// `year` (the regular month 3, not a leap 3rd month).
pub fn gio_to(year: i32) -> LocalDate {
    date_of_jd(month_start(3, year, false).unwrap_or(0) + 9)
}

/// The last day of lunar `year` (the eve of Tết of `year + 1`, "giao thừa").
pub fn lunar_new_years_eve(year: i32) -> LocalDate {
    tet(year + 1).add_days(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> LocalDate {
        s.parse().unwrap()
    }

    #[test]
    fn round_trip_every_day_1990_2100() {
        let first = d("1990-01-01").days_since_epoch();
        let last = d("2100-12-31").days_since_epoch();
        let mut previous: Option<LunarDate> = None;
        for n in first..=last {
            let date = LocalDate::from_days_since_epoch(n);
            let lunar = solar_to_lunar(date);
            assert_eq!(lunar_to_solar(lunar), Some(date), "{date} -> {lunar:?}");
            if let Some(p) = previous {
                // Consecutive days: the next lunar day, or day 1 after day 29/30.
                if lunar.day != 1 {
                    assert_eq!(lunar.day, p.day + 1, "{date}");
                    assert_eq!(
                        (lunar.month, lunar.year, lunar.leap),
                        (p.month, p.year, p.leap)
                    );
                } else {
                    assert!(
                        p.day == 29 || p.day == 30,
                        "{date}: month of {} days",
                        p.day
                    );
                }
            }
            previous = Some(lunar);
        }
    }

    #[test]
    fn nonexistent_lunar_dates_are_none() {
        let none = |day, month, year, leap| {
            lunar_to_solar(LunarDate {
                day,
                month,
                year,
                leap,
            })
        };
        assert_eq!(none(1, 13, 2025, false), None);
        assert_eq!(none(0, 1, 2025, false), None);
        assert_eq!(none(31, 1, 2025, false), None);
        // 2025 (Ất Tỵ) has a leap 6th month, not a leap 5th.
        assert_eq!(none(1, 5, 2025, true), None);
        assert!(none(1, 6, 2025, true).is_some());
        // 2024 has no leap month at all.
        assert_eq!(none(1, 6, 2024, true), None);
    }
}
