//! The working-time calendar of Vietnamese public offices: which days are
//! holidays, the office hours, and when a dossier received at a given
//! instant is due after a legal processing time counted in working days or
//! hours.
//!
//! Which days are off, for each year, comes from the first of:
//! 1. the operators' overrides file, if it lists the year;
//! 2. the government's decisions for public servants, shipped with the crate
//!    for 2015–2026 ([`decided`]): the Tết and National Day days the Prime
//!    Minister chose and the weekday/Saturday swaps, each year citing its
//!    notice;
//! 3. the statutory rules ([`holidays`]): the Labour Code's holidays, lunar
//!    Tết and Giỗ Tổ computed for UTC+7, and a default choice of the days the
//!    Code leaves to the government.
//!
//! Due dates of past years must be counted against the days that were
//! actually off, which the rule only guesses; hence the shipped decisions.
//!
//! It is a pure library. It knows nothing of I/O, clocks, databases, gRPC or
//! events: callers pass instants (`i64` Unix microseconds, like
//! `domain::Timestamp`) and the overrides file's contents as a string, and
//! get instants and dates back. Local time is Vietnam's, UTC+7 without
//! daylight saving.
//!
//! ```
//! use calendar::{Calendar, LocalDate, ProcessingTime};
//!
//! let cal = Calendar::vietnam();
//! let friday: LocalDate = "2025-03-07".parse().unwrap();
//! let due = cal.due(friday.at(16, 30), ProcessingTime::WorkingDays(3));
//! assert_eq!(due, friday.add_days(5).at(16, 30)); // Wednesday 16:30
//! ```
//!
//! The modules: [`date`] (civil dates and instants), [`lunar`] (the lunar
//! calendar), [`holidays`] (statutory rules), [`decided`] (the shipped
//! decisions), [`overrides`] (the file format of both the decisions and the
//! operators' file) and the [`Calendar`] itself.

mod calendar;
pub mod date;
pub mod decided;
pub mod holidays;
pub mod lunar;
pub mod overrides;
mod year_overrides;

pub use calendar::{
    Calendar, CalendarError, FIRST_YEAR, LAST_YEAR, OfficeHours, ProcessingTime, is_late,
};
pub use date::{
    LocalDate, LocalDateTime, ParseDateError, VN_OFFSET_SECONDS, Weekday, local_date,
    local_day_number,
};
pub use holidays::{DayKind, Holiday};
pub use lunar::LunarDate;
pub use overrides::{OverrideError, Overrides};
