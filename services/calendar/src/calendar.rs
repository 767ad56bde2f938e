//! The working-time calendar: office hours, the table of working days and
//! due dates.

use crate::date::{
    LocalDate, MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE, VN_OFFSET_MICROS,
    local_day_number,
};
use crate::decided;
use crate::holidays::{DayKind, statutory_days_off};
use crate::overrides::{OverrideError, Overrides};

/// First year of the precomputed table.
pub const FIRST_YEAR: i32 = 1990;
/// Last year of the precomputed table.
pub const LAST_YEAR: i32 = 2100;

/// The office day: a morning and an afternoon session, in local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfficeHours {
    // Microseconds after local midnight.
    morning_start: i64,
    morning_end: i64,
    afternoon_start: i64,
    afternoon_end: i64,
}

impl Default for OfficeHours {
    /// 7:00–11:30 and 13:30–17:00: 8 hours a day.
    fn default() -> Self {
        Self {
            morning_start: 7 * MICROS_PER_HOUR,
            morning_end: 11 * MICROS_PER_HOUR + 30 * MICROS_PER_MINUTE,
            afternoon_start: 13 * MICROS_PER_HOUR + 30 * MICROS_PER_MINUTE,
            afternoon_end: 17 * MICROS_PER_HOUR,
        }
    }
}

impl OfficeHours {
    /// Office hours from `(hour, minute)` pairs. Each session must start
    /// before it ends, the morning must end before the afternoon starts, and
    /// all times must lie within the day (24:00 allowed as an end).
    pub fn new(
        morning_start: (u8, u8),
        morning_end: (u8, u8),
        afternoon_start: (u8, u8),
        afternoon_end: (u8, u8),
    ) -> Result<Self, CalendarError> {
        let micros = |(h, m): (u8, u8)| -> Result<i64, CalendarError> {
            let t = i64::from(h) * MICROS_PER_HOUR + i64::from(m) * MICROS_PER_MINUTE;
            if m >= 60 || t > MICROS_PER_DAY {
                return Err(CalendarError::InvalidHours(format!(
                    "{h:02}:{m:02} is not a time of day"
                )));
            }
            Ok(t)
        };
        let hours = Self {
            morning_start: micros(morning_start)?,
            morning_end: micros(morning_end)?,
            afternoon_start: micros(afternoon_start)?,
            afternoon_end: micros(afternoon_end)?,
        };
        if hours.morning_start >= hours.morning_end {
            return Err(CalendarError::InvalidHours(
                "the morning must start before it ends".into(),
            ));
        }
        if hours.afternoon_start >= hours.afternoon_end {
            return Err(CalendarError::InvalidHours(
                "the afternoon must start before it ends".into(),
            ));
        }
        if hours.morning_end >= hours.afternoon_start {
            return Err(CalendarError::InvalidHours(
                "the morning must end before the afternoon starts".into(),
            ));
        }
        Ok(hours)
    }

    /// Working microseconds in one office day (8 h by default).
    pub const fn day_length(&self) -> i64 {
        self.morning_length() + (self.afternoon_end - self.afternoon_start)
    }

    const fn morning_length(&self) -> i64 {
        self.morning_end - self.morning_start
    }

    /// Working microseconds of the day elapsed at `tod` micros after midnight.
    #[inline]
    fn elapsed(&self, tod: i64) -> i64 {
        if tod <= self.morning_start {
            0
        } else if tod <= self.morning_end {
            tod - self.morning_start
        } else if tod <= self.afternoon_start {
            self.morning_length()
        } else if tod <= self.afternoon_end {
            self.morning_length() + (tod - self.afternoon_start)
        } else {
            self.day_length()
        }
    }

    /// Time of day after `r` working micros, `0 < r ≤ day_length`, preferring
    /// the end of a session (11:30, 17:00) to the start of the next.
    #[inline]
    fn time_ending(&self, r: i64) -> i64 {
        if r <= self.morning_length() {
            self.morning_start + r
        } else {
            self.afternoon_start + (r - self.morning_length())
        }
    }

    /// Time of day after `r` working micros, `0 ≤ r < day_length`, preferring
    /// the start of a session (13:30) to the end of the previous.
    #[inline]
    fn time_starting(&self, r: i64) -> i64 {
        if r < self.morning_length() {
            self.morning_start + r
        } else {
            self.afternoon_start + (r - self.morning_length())
        }
    }

    /// Whether `tod` lies in a session, both ends included.
    fn contains(&self, tod: i64) -> bool {
        (self.morning_start..=self.morning_end).contains(&tod)
            || (self.afternoon_start..=self.afternoon_end).contains(&tod)
    }
}

/// A legal processing time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessingTime {
    /// Working days, each the length of the office day (8 h by default).
    WorkingDays(u32),
    /// Working hours.
    WorkingHours(u32),
}

impl ProcessingTime {
    /// The working time this stands for, in microseconds, under `hours`.
    pub const fn micros(self, hours: &OfficeHours) -> i64 {
        match self {
            ProcessingTime::WorkingDays(n) => n as i64 * hours.day_length(),
            ProcessingTime::WorkingHours(n) => n as i64 * MICROS_PER_HOUR,
        }
    }
}

/// Why a calendar cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("invalid office hours: {0}")]
    InvalidHours(String),
    #[error(transparent)]
    Overrides(#[from] OverrideError),
}

/// The working-time calendar of Vietnamese public offices.
///
/// Built once, then cheap to query: a table of every day from
/// 1 January [`FIRST_YEAR`] to 31 December [`LAST_YEAR`] (local dates) with
/// prefix counts of working days. Working time is measured on a *working
/// clock*: the working microseconds elapsed since the table's first day.
/// Every instant maps to the clock in O(1) and back in O(1), so adding any
/// working time is constant-time.
///
/// Outside the table, instants saturate: anything before the table starts
/// its clock at the first working morning of [`FIRST_YEAR`], and results
/// past the table end at the close of its last working day (use
/// [`Calendar::checked_due`] to detect that). [`Calendar::is_working_day`]
/// outside the table knows weekends only.
#[derive(Clone, Debug)]
pub struct Calendar {
    hours: OfficeHours,
    /// Days since 1970-01-01 of the table's first day.
    first_day: i64,
    /// `prefix[i]`: working days among the table's days `0..i`; `len = days + 1`.
    prefix: Vec<u32>,
    /// Days since 1970-01-01 of the `k`-th working day of the table.
    working_days: Vec<i64>,
    kinds: Vec<DayKind>,
    /// Working clock at the end of the table.
    total: i64,
    day_len: i64,
}

impl Calendar {
    /// Default office hours, the government's decided days for the years
    /// [`decided`] ships, and the statutory rules for the others.
    pub fn vietnam() -> Self {
        Self::build(
            OfficeHours::default(),
            &Overrides::none(),
            decided::schedule(),
        )
    }

    /// A calendar with these office hours and the operators' overrides.
    ///
    /// Each year's days off come from the overrides laid over the shipped
    /// decided schedule ([`decided`], 2015–2026; see
    /// [`crate::overrides::YearOverrides::over`]: the overrides' Tết and
    /// National Day days replace the shipped ones, their extra days off and
    /// working days add to them), and from the statutory rules for what
    /// neither lists. Fails if an override is for a year outside
    /// [`FIRST_YEAR`]..=[`LAST_YEAR`]. (Every other check is made by
    /// [`Overrides::parse`].)
    pub fn new(hours: OfficeHours, overrides: &Overrides) -> Result<Self, CalendarError> {
        check_years(overrides)?;
        Ok(Self::build(hours, overrides, decided::schedule()))
    }

    /// Like [`Calendar::new`] without the shipped decided schedule: the
    /// overrides' years, and the statutory rules' guess for every other year.
    /// For comparing a decision with the rule, or for an employer that does
    /// not follow the public servants' arrangements.
    pub fn rules_only(hours: OfficeHours, overrides: &Overrides) -> Result<Self, CalendarError> {
        check_years(overrides)?;
        Ok(Self::build(hours, overrides, &Overrides::none()))
    }

    /// The table, taking each year from `overrides`, else from `decided`.
    fn build(hours: OfficeHours, overrides: &Overrides, decided: &Overrides) -> Self {
        let start = LocalDate::new(FIRST_YEAR, 1, 1).map_or(0, LocalDate::days_since_epoch);
        let end = LocalDate::new(LAST_YEAR, 12, 31).map_or(0, LocalDate::days_since_epoch);
        let first_day = i64::from(start);
        let mut kinds: Vec<DayKind> = (start..=end)
            .map(|n| {
                if LocalDate::from_days_since_epoch(n).weekday().is_weekend() {
                    DayKind::Weekend
                } else {
                    DayKind::Working
                }
            })
            .collect();
        let index =
            |d: LocalDate| usize::try_from(i64::from(d.days_since_epoch()) - first_day).ok();
        for year in FIRST_YEAR..=LAST_YEAR {
            let merged;
            let o = match (overrides.year(year), decided.year(year)) {
                (Some(ours), Some(shipped)) => {
                    merged = ours.over(shipped);
                    Some(&merged)
                }
                (ours, shipped) => ours.or(shipped),
            };
            for (date, kind) in statutory_days_off(year, o) {
                if let Some(slot) = index(date).and_then(|i| kinds.get_mut(i)) {
                    *slot = kind;
                }
            }
            let Some(o) = o else { continue };
            for e in &o.off {
                if let Some(slot) = index(e.date).and_then(|i| kinds.get_mut(i))
                    && *slot == DayKind::Working
                {
                    *slot = DayKind::ExtraOff;
                }
            }
            for e in &o.working {
                if let Some(slot) = index(e.date).and_then(|i| kinds.get_mut(i)) {
                    *slot = DayKind::SwappedWorking;
                }
            }
        }
        let mut prefix = Vec::with_capacity(kinds.len() + 1);
        let mut working_days = Vec::new();
        let mut count = 0u32;
        prefix.push(0);
        for (i, kind) in kinds.iter().enumerate() {
            if kind.is_working() {
                count += 1;
                working_days.push(first_day + i as i64);
            }
            prefix.push(count);
        }
        let day_len = hours.day_length();
        Self {
            hours,
            first_day,
            prefix,
            total: i64::from(count) * day_len,
            working_days,
            kinds,
            day_len,
        }
    }

    pub fn office_hours(&self) -> &OfficeHours {
        &self.hours
    }

    /// What kind of day `date` is. Outside the table: weekend or working.
    pub fn day_kind(&self, date: LocalDate) -> DayKind {
        let i = i64::from(date.days_since_epoch()) - self.first_day;
        match usize::try_from(i).ok().and_then(|i| self.kinds.get(i)) {
            Some(kind) => *kind,
            None if date.weekday().is_weekend() => DayKind::Weekend,
            None => DayKind::Working,
        }
    }

    /// Whether the office works on `date`.
    pub fn is_working_day(&self, date: LocalDate) -> bool {
        self.day_kind(date).is_working()
    }

    /// Whether `t` is within office hours of a working day, both ends of each
    /// session included (11:30 and 17:00 are working instants: a due date
    /// may fall on them).
    pub fn is_working_instant(&self, t: i64) -> bool {
        let tod = (t.saturating_add(VN_OFFSET_MICROS)).rem_euclid(MICROS_PER_DAY);
        self.is_working_day(LocalDate::from_instant(t)) && self.hours.contains(tod)
    }

    /// The local date of `t` in Vietnam.
    pub fn local_date(&self, t: i64) -> LocalDate {
        LocalDate::from_instant(t)
    }

    /// The working clock at `t`: working microseconds from the table's start
    /// up to `t`.
    #[inline]
    fn clock(&self, t: i64) -> i64 {
        let day = i64::from(local_day_number(t));
        let idx = day - self.first_day;
        let Ok(idx) = usize::try_from(idx) else {
            return 0;
        };
        let (Some(&before), Some(&after)) = (self.prefix.get(idx), self.prefix.get(idx + 1)) else {
            return self.total;
        };
        let base = i64::from(before) * self.day_len;
        if after == before {
            base
        } else {
            let tod = t
                .saturating_add(VN_OFFSET_MICROS)
                .rem_euclid(MICROS_PER_DAY);
            base + self.hours.elapsed(tod)
        }
    }

    /// The instant of the working clock `w` (clamped to the table), at the
    /// end of a session when `w` falls on a boundary (`ending`) or at the
    /// start of the next (`!ending`).
    #[inline]
    fn instant(&self, w: i64, ending: bool) -> i64 {
        let w = w.clamp(0, self.total);
        let (k, r) = (w / self.day_len, w % self.day_len);
        let (k, tod) = if ending && r == 0 && k > 0 {
            (k - 1, self.hours.afternoon_end)
        } else if ending && r != 0 {
            (k, self.hours.time_ending(r))
        } else if w == self.total && k > 0 {
            // Past the last working day: its close.
            (k - 1, self.hours.afternoon_end)
        } else {
            (k, self.hours.time_starting(r))
        };
        let day = usize::try_from(k)
            .ok()
            .and_then(|k| self.working_days.get(k))
            .copied()
            .unwrap_or(self.first_day);
        day * MICROS_PER_DAY + tod - VN_OFFSET_MICROS
    }

    /// The instant working time next flows from `t`: `t` itself inside a
    /// session (from its opening inclusive to its close exclusive), otherwise
    /// the next opening of a session (13:30 at lunch, 7:00 of the next
    /// working day after 17:00 or on a day off). This is when the clock of a
    /// dossier received at `t` starts.
    pub fn next_working_instant(&self, t: i64) -> i64 {
        self.instant(self.clock(t), false)
    }

    /// `start` plus `micros` of working time.
    ///
    /// The clock starts at [`Calendar::next_working_instant`]`(start)`. When
    /// the result falls exactly on a session boundary it is the close of the
    /// session that used the time up (11:30 rather than 13:30, 17:00 rather
    /// than 7:00 next working day). With `micros == 0` it is the start
    /// instant itself; with `micros < 0` working time is taken away, and a
    /// boundary result is the opening of the following session.
    #[inline]
    pub fn add_working(&self, start: i64, micros: i64) -> i64 {
        let w = self.clock(start).saturating_add(micros);
        self.instant(w, micros > 0)
    }

    /// Working microseconds between `a` and `b`: the working time from `a`
    /// to `b` if `a ≤ b`, its negative otherwise. Used to move a due date by
    /// the working time a dossier was paused for a supplement.
    pub fn working_time_between(&self, a: i64, b: i64) -> i64 {
        self.clock(b) - self.clock(a)
    }

    /// The due instant of a dossier received at `received_at` (Unix micros)
    /// with processing time `time`. See [`Calendar::add_working`]: e.g.
    /// received Friday 16:30 with 3 working days is due Wednesday 16:30
    /// (working days are blocks of the office day's length).
    #[inline]
    pub fn due(&self, received_at: i64, time: ProcessingTime) -> i64 {
        self.add_working(received_at, time.micros(&self.hours))
    }

    /// Like [`Calendar::due`], but `None` when `received_at` or the result
    /// lies outside the table's years instead of saturating.
    pub fn checked_due(&self, received_at: i64, time: ProcessingTime) -> Option<i64> {
        let year = LocalDate::from_instant(received_at).year();
        if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
            return None;
        }
        let w = self
            .clock(received_at)
            .checked_add(time.micros(&self.hours))?;
        (w <= self.total).then(|| self.instant(w, time.micros(&self.hours) > 0))
    }

    /// The local date of the due instant: the date printed on the receipt
    /// slip (phiếu hẹn trả kết quả).
    pub fn due_date(&self, received_at: i64, time: ProcessingTime) -> LocalDate {
        LocalDate::from_instant(self.due(received_at, time))
    }
}

/// Refuses overrides for years outside the table.
fn check_years(overrides: &Overrides) -> Result<(), CalendarError> {
    match overrides
        .years()
        .find(|(y, _)| !(FIRST_YEAR..=LAST_YEAR).contains(y))
    {
        Some((year, o)) => Err(OverrideError {
            line: o.line,
            key: year.to_string(),
            message: format!("the calendar covers {FIRST_YEAR} to {LAST_YEAR} only"),
        }
        .into()),
        None => Ok(()),
    }
}

/// Whether a dossier due at `due_at` and resolved at `resolved_at` is late:
/// resolved on a later local date than the due date (compared by date, as the
/// slip shows).
pub fn is_late(due_at: i64, resolved_at: i64) -> bool {
    LocalDate::from_instant(resolved_at) > LocalDate::from_instant(due_at)
}
