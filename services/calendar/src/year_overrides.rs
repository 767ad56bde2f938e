//! One year's overrides as plain values: what the overrides file
//! (`overrides`) parses into, and where the statutory rules (`holidays`)
//! take a decision's Tết and National Day days from. Apart from both, since
//! checking a file needs the rules.

use crate::date::LocalDate;

/// A date from the file and the line it was written on (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub date: LocalDate,
    pub line: usize,
}

/// One year's overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct YearOverrides {
    /// Extra days off (e.g. bridging days the government gives).
    pub off: Vec<Entry>,
    /// Days off (weekend days, holidays) made working days.
    pub working: Vec<Entry>,
    /// When set, the Tết days off, replacing the default rule.
    pub tet: Option<Vec<Entry>>,
    /// When set, the National Day days off, replacing 2/9 and the adjacent day.
    pub national_day: Option<Vec<Entry>>,
    /// The decisions these days come from, as written in `source`.
    pub source: Vec<String>,
    /// The line of the `[year]` header.
    pub line: usize,
}

impl YearOverrides {
    /// These overrides laid over `base` (the shipped decisions for the
    /// year): the Tết and National Day days of these when they list them,
    /// else `base`'s; the extra days off and the working days of both. An
    /// operator who adds one bridging day keeps the government's Tết and
    /// swaps instead of falling back to the rule's guess.
    pub fn over(&self, base: &YearOverrides) -> YearOverrides {
        let both = |ours: &[Entry], theirs: &[Entry]| {
            let mut all = theirs.to_vec();
            all.extend(
                ours.iter()
                    .filter(|e| !theirs.iter().any(|t| t.date == e.date))
                    .copied(),
            );
            all
        };
        YearOverrides {
            off: both(&self.off, &base.off),
            working: both(&self.working, &base.working),
            tet: self.tet.clone().or_else(|| base.tet.clone()),
            national_day: self
                .national_day
                .clone()
                .or_else(|| base.national_day.clone()),
            source: both_sources(&self.source, &base.source),
            line: self.line,
        }
    }
}

fn both_sources(ours: &[String], theirs: &[String]) -> Vec<String> {
    let mut all = theirs.to_vec();
    all.extend(ours.iter().filter(|s| !theirs.contains(s)).cloned());
    all
}
