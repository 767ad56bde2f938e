//! The days off the government decided for public servants, 2015–2026,
//! shipped with the crate.
//!
//! The Labour Code leaves the Prime Minister to choose which five days are
//! Tết and (from 2021) which day joins 2 September, and each year the
//! government also swaps weekdays with Saturdays to join holidays to
//! weekends. The default rule of [`crate::holidays`] can only guess those
//! choices, and it guessed wrong for most years: a dossier received before
//! Tết 2021 was due a week off. So the decisions themselves are data, in
//! `decided/holidays-2015-2026.toml` (the overrides format, with a `source`
//! for each year naming the notice), embedded here.
//!
//! Precedence, per year: an operators' overrides file laid over this
//! schedule (its Tết and National Day days replace the shipped ones, its
//! extra days off and working days add to them), then the rule for what
//! neither lists. Years outside
//! [`FIRST_YEAR`]..=[`LAST_YEAR`] keep the rule (2014 only carries the
//! Saturday worked for 2 January 2015, a swap the 2015 decision made).

use std::sync::LazyLock;

use crate::overrides::Overrides;

/// First year whose decisions are shipped.
pub const FIRST_YEAR: i32 = 2015;
/// Last year whose decisions are shipped.
pub const LAST_YEAR: i32 = 2026;

/// The shipped file, as text.
pub const TEXT: &str = include_str!("../decided/holidays-2015-2026.toml");

static SCHEDULE: LazyLock<Overrides> = LazyLock::new(|| {
    // The text is part of the crate and the crate's tests parse it, so a
    // failure here is a build that skipped its tests, not an input error.
    Overrides::parse(TEXT).unwrap_or_else(|e| panic!("the shipped decided schedule: {e}"))
});

/// The shipped decided schedule, parsed once.
pub fn schedule() -> &'static Overrides {
    &SCHEDULE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_text_parses_and_covers_its_years() {
        let years: Vec<i32> = Overrides::parse(TEXT)
            .unwrap()
            .years()
            .map(|(y, _)| y)
            .collect();
        let expected: Vec<i32> = std::iter::once(FIRST_YEAR - 1)
            .chain(FIRST_YEAR..=LAST_YEAR)
            .collect();
        assert_eq!(years, expected);
    }
}
