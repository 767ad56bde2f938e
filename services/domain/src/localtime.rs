//! Instants and Vietnam's local calendar dates, as the domain holds them:
//! a [`Timestamp`] (microseconds since the Unix epoch) and a [`LocalDay`]
//! (days since 1970-01-01). What UTC+7 means and how dates are counted is
//! the `calendar` crate's (`calendar::date`), defined once for the whole
//! workspace; these types only give it the domain's names.

use std::fmt;

use calendar::{LocalDate, LocalDateTime};

pub use calendar::VN_OFFSET_SECONDS;

const MICROS_PER_SECOND: i64 = 1_000_000;

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
        Self(LocalDate::from_days_since_epoch(day.0).at(hour, minute))
    }

    /// The local calendar date this instant falls on in Vietnam.
    pub fn local_day(self) -> LocalDay {
        LocalDay(calendar::local_day_number(self.0))
    }

    pub fn plus_micros(self, micros: i64) -> Self {
        Self(self.0.saturating_add(micros))
    }

    pub fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in local time to the second, e.g. `2019-12-28T08:30:00+07:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        LocalDateTime::from_instant(self.0).whole_seconds().fmt(f)
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
        LocalDate::new(year, month, day).map(|date| Self(date.days_since_epoch()))
    }

    /// The civil date.
    pub fn date(self) -> LocalDate {
        LocalDate::from_days_since_epoch(self.0)
    }

    /// (year, month, day).
    pub fn ymd(self) -> (i32, u8, u8) {
        let date = self.date();
        (date.year(), date.month(), date.day())
    }

    pub fn year(self) -> i32 {
        self.date().year()
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
