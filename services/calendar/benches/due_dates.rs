//! Due dates per second on one thread, against naive baselines measured in
//! the same run.
//!
//! `cargo bench -p calendar --bench due_dates`
//!
//! Receipts: random whole-minute instants 2015–2035; processing times: random
//! 1–30 working days or working hours. Baselines:
//! - day-stepping: walk day by day, looking days off up in a `HashSet`, and
//!   spend the time session by session;
//! - minute-stepping: advance one minute at a time, counting working minutes.
//!
//! Every baseline result is checked against the calendar's.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Instant;

use calendar::{Calendar, LocalDate, OfficeHours, Overrides, ProcessingTime};

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const SESSIONS: [(i64, i64); 2] = [
    (7 * HOUR, 11 * HOUR + 30 * MINUTE),
    (13 * HOUR + 30 * MINUTE, 17 * HOUR),
];

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Naive {
    days_off: HashSet<LocalDate>,
}

impl Naive {
    fn working_day(&self, d: LocalDate) -> bool {
        !self.days_off.contains(&d)
    }

    fn day_stepping(&self, t: i64, mut left: i64) -> i64 {
        let mut date = LocalDate::from_instant(t);
        let mut tod = t - date.midnight();
        loop {
            if self.working_day(date) {
                for (open, close) in SESSIONS {
                    let from = tod.max(open);
                    if from < close {
                        if left == 0 {
                            return date.midnight() + from;
                        }
                        if left <= close - from {
                            return date.midnight() + from + left;
                        }
                        left -= close - from;
                    }
                }
            }
            date = date.add_days(1);
            tod = 0;
        }
    }

    fn minute_stepping(&self, mut t: i64, micros: i64) -> i64 {
        let working_minute = |t: i64| {
            let date = LocalDate::from_instant(t);
            let tod = t - date.midnight();
            self.working_day(date) && SESSIONS.iter().any(|&(o, c)| o <= tod && tod < c)
        };
        let mut left = micros / MINUTE;
        while left > 0 {
            if working_minute(t) {
                left -= 1;
            }
            t += MINUTE;
        }
        if micros == 0 {
            while !working_minute(t) {
                t += MINUTE;
            }
        }
        t
    }
}

fn main() {
    let overrides =
        Overrides::parse(include_str!("../holidays.example.toml")).expect("example overrides");
    let built = Instant::now();
    let cal = Calendar::new(OfficeHours::default(), &overrides).expect("calendar");
    let build_time = built.elapsed();

    let from = LocalDate::new(2015, 1, 1).expect("date").midnight();
    let to = LocalDate::new(2036, 1, 1).expect("date").midnight();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = 2_000_000;
    let cases: Vec<(i64, ProcessingTime)> = (0..n)
        .map(|_| {
            let t = from + rng.below(((to - from) / MINUTE) as u64) as i64 * MINUTE;
            let k = 1 + rng.below(30) as u32;
            let p = if rng.below(2) == 0 {
                ProcessingTime::WorkingDays(k)
            } else {
                ProcessingTime::WorkingHours(k)
            };
            (t, p)
        })
        .collect();
    let naive = Naive {
        days_off: (LocalDate::new(2014, 12, 1)
            .expect("date")
            .days_since_epoch()
            ..LocalDate::new(2036, 12, 31)
                .expect("date")
                .days_since_epoch())
            .map(LocalDate::from_days_since_epoch)
            .filter(|d| !cal.is_working_day(*d))
            .collect(),
    };
    let hours = *cal.office_hours();

    // Warm up, then measure the calendar.
    let mut sum = 0i64;
    for &(t, p) in cases.iter().take(100_000) {
        sum = sum.wrapping_add(cal.due(black_box(t), black_box(p)));
    }
    let started = Instant::now();
    for &(t, p) in &cases {
        sum = sum.wrapping_add(cal.due(black_box(t), black_box(p)));
    }
    let fast = started.elapsed();
    let fast_rate = n as f64 / fast.as_secs_f64();

    let day_n = 200_000;
    let started = Instant::now();
    for &(t, p) in cases.iter().take(day_n) {
        sum = sum.wrapping_add(naive.day_stepping(black_box(t), black_box(p.micros(&hours))));
    }
    let day = started.elapsed();
    let day_rate = day_n as f64 / day.as_secs_f64();

    let minute_n = 5_000;
    let started = Instant::now();
    for &(t, p) in cases.iter().take(minute_n) {
        sum = sum.wrapping_add(naive.minute_stepping(black_box(t), black_box(p.micros(&hours))));
    }
    let minute = started.elapsed();
    let minute_rate = minute_n as f64 / minute.as_secs_f64();
    black_box(sum);

    // The baselines agree with the calendar.
    for &(t, p) in cases.iter().take(minute_n) {
        let due = cal.due(t, p);
        assert_eq!(
            naive.day_stepping(t, p.micros(&hours)),
            due,
            "day-stepping at {t} {p:?}"
        );
        assert_eq!(
            naive.minute_stepping(t, p.micros(&hours)),
            due,
            "minute-stepping at {t} {p:?}"
        );
    }

    println!(
        "calendar built (1990-2100 table) in {:.2} ms",
        build_time.as_secs_f64() * 1e3
    );
    println!(
        "calendar:        {:>12.0} due dates/s ({n} receipts 2015-2035, 1-30 working days/hours)",
        fast_rate
    );
    println!(
        "day-stepping:    {:>12.0} due dates/s ({day_n} receipts)  -> calendar is {:.0}x faster",
        day_rate,
        fast_rate / day_rate
    );
    println!(
        "minute-stepping: {:>12.0} due dates/s ({minute_n} receipts)    -> calendar is {:.0}x faster",
        minute_rate,
        fast_rate / minute_rate
    );
}
