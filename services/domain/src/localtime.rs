//! Instants and Vietnam's local calendar dates (UTC+7, no daylight saving).

use std::fmt;

use time::{Date, Month, OffsetDateTime, UtcOffset};

/// Vietnam's offset from UTC, in seconds.
pub const VN_OFFSET_SECONDS: i64 = 7 * 3600;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// An instant, in microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(MICROS_PER_SECOND))
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// The instant at `hour:minute` local time on `day`.
    pub fn at_local(day: LocalDay, hour: u8, minute: u8) -> Self {
        let seconds = i64::from(day.0) * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60
            - VN_OFFSET_SECONDS;
        Self::from_unix_seconds(seconds)
    }

    /// The local calendar date this instant falls on in Vietnam.
    pub fn local_day(self) -> LocalDay {
        let local = self.0.saturating_add(VN_OFFSET_SECONDS * MICROS_PER_SECOND);
        // Dates of ±5.8 million years fit in i32 days.
        LocalDay(i32::try_from(local.div_euclid(MICROS_PER_DAY)).unwrap_or(i32::MAX))
    }

    pub fn plus_micros(self, micros: i64) -> Self {
        Self(self.0.saturating_add(micros))
    }

    pub fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in local time, e.g. `2019-12-28T08:30:00+07:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1000;
        let offset =
            UtcOffset::from_whole_seconds(VN_OFFSET_SECONDS as i32).unwrap_or(UtcOffset::UTC);
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let t = t.to_offset(offset);
                write!(
                    f,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+07:00",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            }
            Err(_) => write!(f, "@{}µs", self.0),
        }
    }
}

/// A calendar date in Vietnam, as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDay(i32);

impl LocalDay {
    pub const fn from_days(days: i32) -> Self {
        Self(days)
    }

    pub const fn days(self) -> i32 {
        self.0
    }

    /// `None` when the triple is not a real date.
    pub fn from_ymd(year: i32, month: u8, day: u8) -> Option<Self> {
        let month = Month::try_from(month).ok()?;
        let date = Date::from_calendar_date(year, month, day).ok()?;
        Some(Self(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY))
    }

    pub fn date(self) -> Option<Date> {
        Date::from_julian_day(self.0.checked_add(UNIX_EPOCH_JULIAN_DAY)?).ok()
    }

    /// (year, month, day); far out-of-range days clamp to the epoch.
    pub fn ymd(self) -> (i32, u8, u8) {
        self.date()
            .map(|d| (d.year(), u8::from(d.month()), d.day()))
            .unwrap_or((1970, 1, 1))
    }

    pub fn year(self) -> i32 {
        self.ymd().0
    }

    pub fn first_of_year(year: i32) -> Option<Self> {
        Self::from_ymd(year, 1, 1)
    }

    pub fn last_of_year(year: i32) -> Option<Self> {
        Self::from_ymd(year, 12, 31)
    }

    pub fn succ(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for LocalDay {
    /// As Vietnamese offices write dates: `28/12/2019`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{d:02}/{m:02}/{y:04}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evening_utc_on_new_years_eve_is_next_year_locally() {
        // 2019-12-31 20:00 UTC is 2020-01-01 03:00 in Vietnam.
        let t = Timestamp::from_unix_seconds(1_577_822_400);
        assert_eq!(t.local_day(), LocalDay::from_ymd(2020, 1, 1).unwrap());
        assert_eq!(t.local_day().year(), 2020);
        assert_eq!(t.to_string(), "2020-01-01T03:00:00+07:00");
    }

    #[test]
    fn local_midnight_starts_the_local_day() {
        let day = LocalDay::from_ymd(2019, 12, 28).unwrap();
        let midnight = Timestamp::at_local(day, 0, 0);
        assert_eq!(midnight.local_day(), day);
        assert_eq!(
            midnight.plus_micros(-1).local_day(),
            LocalDay::from_days(day.days() - 1)
        );
        assert_eq!(day.to_string(), "28/12/2019");
    }

    #[test]
    fn invalid_dates_are_none() {
        assert!(LocalDay::from_ymd(2019, 2, 29).is_none());
        assert!(LocalDay::from_ymd(2020, 13, 1).is_none());
        assert!(LocalDay::from_ymd(2020, 2, 29).is_some());
    }

    proptest! {
        #[test]
        fn ymd_round_trips(days in -100_000i32..200_000) {
            let day = LocalDay::from_days(days);
            let (y, m, d) = day.ymd();
            prop_assert_eq!(LocalDay::from_ymd(y, m, d), Some(day));
        }

        #[test]
        fn local_day_is_monotonic(a in -4_000_000_000i64..4_000_000_000, b in -4_000_000_000i64..4_000_000_000) {
            let (ta, tb) = (Timestamp::from_unix_seconds(a), Timestamp::from_unix_seconds(b));
            if ta <= tb { prop_assert!(ta.local_day() <= tb.local_day()); }
        }

        #[test]
        fn every_local_time_of_a_day_maps_back_to_it(days in -30_000i32..60_000, minute in 0u32..1440) {
            let day = LocalDay::from_days(days);
            let t = Timestamp::at_local(day, (minute / 60) as u8, (minute % 60) as u8);
            prop_assert_eq!(t.local_day(), day);
        }
    }
}
