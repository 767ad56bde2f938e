//! The wait between retries of a task that talks to a server that may be
//! away: it doubles while attempts fail, up to a cap, and starts over once
//! an attempt got something through before it failed. Intake's relay and
//! the projection's consumer both retry this way.

use std::time::Duration;

/// A retry wait; see the module.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits `first`, then twice as long after each failure, at most `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// How long to wait after a failed attempt. `progressed`: the attempt
    /// got something through before it failed, so the wait starts over
    /// (it grows only while nothing gets through).
    pub fn after_failure(&mut self, progressed: bool) -> Duration {
        if progressed {
            self.next = self.first;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_its_cap_and_starts_over_after_progress() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(1000));
        let waits: Vec<Duration> = [false, false, false, false, false, true, false]
            .into_iter()
            .map(|progressed| backoff.after_failure(progressed))
            .collect();
        assert_eq!(
            waits,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(100),
                ms(200)
            ]
        );
    }
}
