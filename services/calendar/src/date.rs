//! Local time in Vietnam (UTC+7, no daylight saving), defined once for the
//! whole workspace: civil dates, the date and time of day an instant reads
//! as, and the way back to instants in Unix microseconds. The domain's
//! `Timestamp`/`LocalDay` and the CLI's printed instants are built on it.

use std::fmt;
use std::str::FromStr;

/// Vietnam's offset from UTC, in seconds (UTC+7, no daylight saving).
pub const VN_OFFSET_SECONDS: i64 = 7 * 3600;
pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;
pub(crate) const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
pub(crate) const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
pub(crate) const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;
pub(crate) const VN_OFFSET_MICROS: i64 = VN_OFFSET_SECONDS * MICROS_PER_SECOND;

/// Day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    /// Saturday or Sunday, the weekly days off of public offices.
    pub const fn is_weekend(self) -> bool {
        matches!(self, Weekday::Saturday | Weekday::Sunday)
    }
}

/// A civil date in Vietnam's calendar (proleptic Gregorian).
///
/// Ordered chronologically. Converts to and from a count of days since
/// 1970-01-01 with Howard Hinnant's `days_from_civil` / `civil_from_days`
/// integer algorithms; displays and parses as ISO `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalDate {
    year: i32,
    month: u8,
    day: u8,
}

/// Number of days in `month` of `year`.
pub const fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Gregorian leap year.
pub const fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

impl LocalDate {
    /// The date, if `month` is 1–12 and `day` exists in that month. Years are
    /// limited to ±1,000,000 so that every date fits the day count.
    pub const fn new(year: i32, month: u8, day: u8) -> Option<Self> {
        if year < -1_000_000 || year > 1_000_000 {
            return None;
        }
        if month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        Some(Self { year, month, day })
    }

    pub const fn year(self) -> i32 {
        self.year
    }

    pub const fn month(self) -> u8 {
        self.month
    }

    pub const fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (Hinnant's `days_from_civil`).
    pub const fn days_since_epoch(self) -> i32 {
        let m = self.month as i64;
        let d = self.day as i64;
        let y = self.year as i64 - if m <= 2 { 1 } else { 0 };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400; // [0, 399]
        let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
        let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
        (era * 146_097 + doe - 719_468) as i32
    }

    /// The date `days` days after 1970-01-01 (Hinnant's `civil_from_days`).
    pub const fn from_days_since_epoch(days: i32) -> Self {
        let z = days as i64 + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097; // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
        let mp = (5 * doy + 2) / 153; // [0, 11]
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8; // [1, 31]
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8; // [1, 12]
        let year = (yoe + era * 400 + if month <= 2 { 1 } else { 0 }) as i32;
        Self { year, month, day }
    }

    /// The local date of an instant (Unix microseconds) in Vietnam.
    pub const fn from_instant(micros: i64) -> Self {
        Self::from_days_since_epoch(local_day_number(micros))
    }

    /// The instant at `hour:minute` local time on this date, in Unix
    /// microseconds. `hour` may be 24 (the next midnight).
    pub const fn at(self, hour: u8, minute: u8) -> i64 {
        self.midnight() + hour as i64 * MICROS_PER_HOUR + minute as i64 * MICROS_PER_MINUTE
    }

    /// The instant of local midnight starting this date, in Unix microseconds.
    pub const fn midnight(self) -> i64 {
        self.days_since_epoch() as i64 * MICROS_PER_DAY - VN_OFFSET_MICROS
    }

    pub const fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        match (self.days_since_epoch() as i64 + 3).rem_euclid(7) {
            0 => Weekday::Monday,
            1 => Weekday::Tuesday,
            2 => Weekday::Wednesday,
            3 => Weekday::Thursday,
            4 => Weekday::Friday,
            5 => Weekday::Saturday,
            _ => Weekday::Sunday,
        }
    }

    /// The date `days` days later (earlier if negative).
    pub const fn add_days(self, days: i32) -> Self {
        Self::from_days_since_epoch(self.days_since_epoch() + days)
    }
}

/// Days since 1970-01-01 of the local date of an instant, saturated to `i32`.
pub const fn local_day_number(micros: i64) -> i32 {
    let local = micros.saturating_add(VN_OFFSET_MICROS);
    let day = local.div_euclid(MICROS_PER_DAY);
    if day > i32::MAX as i64 {
        i32::MAX
    } else if day < i32::MIN as i64 {
        i32::MIN
    } else {
        day as i32
    }
}

/// The local date of an instant (Unix microseconds) in Vietnam.
pub const fn local_date(micros: i64) -> LocalDate {
    LocalDate::from_instant(micros)
}

impl fmt::Display for LocalDate {
    /// ISO 8601: `YYYY-MM-DD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (0..=9999).contains(&self.year) {
            write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
        } else {
            write!(f, "{:+05}-{:02}-{:02}", self.year, self.month, self.day)
        }
    }
}

/// An instant as a clock in Vietnam reads it: the local date and the time
/// of day, to the microsecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalDateTime {
    pub date: LocalDate,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub microsecond: u32,
}

impl LocalDateTime {
    /// The local date and time of an instant (Unix microseconds).
    pub const fn from_instant(micros: i64) -> Self {
        let date = LocalDate::from_instant(micros);
        // In [0, one day): the local time of day.
        let of_day = micros.saturating_sub(date.midnight());
        Self {
            date,
            hour: (of_day / MICROS_PER_HOUR) as u8,
            minute: (of_day % MICROS_PER_HOUR / MICROS_PER_MINUTE) as u8,
            second: (of_day % MICROS_PER_MINUTE / MICROS_PER_SECOND) as u8,
            microsecond: (of_day % MICROS_PER_SECOND) as u32,
        }
    }

    /// The same, to the whole second.
    pub const fn whole_seconds(self) -> Self {
        Self {
            microsecond: 0,
            ..self
        }
    }
}

impl fmt::Display for LocalDateTime {
    /// RFC 3339 with the +07:00 offset, e.g. `2019-12-28T08:30:00+07:00`;
    /// a fraction of a second only when there is one, without trailing
    /// zeros (`…08:30:00.25+07:00`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}T{:02}:{:02}:{:02}",
            self.date, self.hour, self.minute, self.second
        )?;
        if self.microsecond != 0 {
            let digits = format!("{:06}", self.microsecond);
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("+07:00")
    }
}

/// Why a string is not an ISO date.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a date in the form YYYY-MM-DD: {problem}")]
pub struct ParseDateError {
    pub input: String,
    pub problem: &'static str,
}

impl FromStr for LocalDate {
    type Err = ParseDateError;

    /// Parses exactly `YYYY-MM-DD` (four-digit year, two-digit month and day).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |problem| ParseDateError {
            input: s.to_owned(),
            problem,
        };
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err("expected 10 characters YYYY-MM-DD"));
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            b[range].iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
            return Err(err("year, month and day must be digits"));
        };
        if !(1..=12).contains(&m) {
            return Err(err("month must be 01 to 12"));
        }
        // y < 10_000, m ≤ 12 and d < 100 fit the narrower types.
        LocalDate::new(y as i32, m as u8, d as u8).ok_or_else(|| err("no such day in that month"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_days() {
        let epoch = LocalDate::new(1970, 1, 1).unwrap();
        assert_eq!(epoch.days_since_epoch(), 0);
        assert_eq!(epoch.weekday(), Weekday::Thursday);
        let d = LocalDate::new(2000, 3, 1).unwrap();
        assert_eq!(d.days_since_epoch(), 11_017);
        assert_eq!(LocalDate::from_days_since_epoch(11_017), d);
        assert_eq!(
            LocalDate::new(2025, 1, 29).unwrap().weekday(),
            Weekday::Wednesday
        );
        assert_eq!(
            LocalDate::from_days_since_epoch(-1),
            LocalDate::new(1969, 12, 31).unwrap()
        );
    }

    #[test]
    fn round_trip_over_centuries() {
        let mut expected = LocalDate::new(1600, 1, 1).unwrap();
        for days in
            expected.days_since_epoch()..LocalDate::new(2400, 12, 31).unwrap().days_since_epoch()
        {
            let d = LocalDate::from_days_since_epoch(days);
            assert_eq!(d, expected);
            assert_eq!(d.days_since_epoch(), days);
            // The next date by hand.
            expected = if d.day() < days_in_month(d.year(), d.month()) {
                LocalDate::new(d.year(), d.month(), d.day() + 1).unwrap()
            } else if d.month() < 12 {
                LocalDate::new(d.year(), d.month() + 1, 1).unwrap()
            } else {
                LocalDate::new(d.year() + 1, 1, 1).unwrap()
            };
        }
    }

    #[test]
    fn display_and_parse() {
        let d: LocalDate = "2024-02-29".parse().unwrap();
        assert_eq!(d, LocalDate::new(2024, 2, 29).unwrap());
        assert_eq!(d.to_string(), "2024-02-29");
        assert!("2023-02-29".parse::<LocalDate>().is_err());
        assert!("2023-13-01".parse::<LocalDate>().is_err());
        assert!("2023-1-01".parse::<LocalDate>().is_err());
        assert!("2023-01-0x".parse::<LocalDate>().is_err());
        assert!("2023-01-01 ".parse::<LocalDate>().is_err());
    }

    #[test]
    fn an_instant_reads_as_local_date_and_time() {
        // 2019-12-31T20:00:00.25Z is 03:00:00.25 on New Year's Day locally.
        let t = LocalDateTime::from_instant(1_577_822_400 * MICROS_PER_SECOND + 250_000);
        assert_eq!(t.date, LocalDate::new(2020, 1, 1).unwrap());
        assert_eq!(
            (t.hour, t.minute, t.second, t.microsecond),
            (3, 0, 0, 250_000)
        );
        assert_eq!(t.to_string(), "2020-01-01T03:00:00.25+07:00");
        assert_eq!(t.whole_seconds().to_string(), "2020-01-01T03:00:00+07:00");
        let before_epoch = LocalDateTime::from_instant(-1);
        assert_eq!(before_epoch.to_string(), "1970-01-01T06:59:59.999999+07:00");
    }

    #[test]
    fn instants_map_to_local_dates_at_utc_plus_7() {
        let d = LocalDate::new(2025, 1, 29).unwrap();
        assert_eq!(d.midnight(), 1_738_083_600 * MICROS_PER_SECOND); // 2025-01-28T17:00Z
        assert_eq!(local_date(d.midnight()), d);
        assert_eq!(local_date(d.midnight() - 1), d.add_days(-1));
        assert_eq!(local_date(d.at(23, 59)), d);
    }
}
