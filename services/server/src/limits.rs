//! The limits a gRPC server puts on what one caller may send: how large a
//! message, how many streams at once on one connection, how many calls a
//! second. Hostile or broken clients hit them; a desk never should.

use std::{net::SocketAddr, num::NonZeroU32};

use clap::Args;

/// tonic's own default for a decoded message: far above any request of
/// Motcua's contracts (an import row is a few hundred bytes).
const DEFAULT_MAX_MESSAGE: usize = 4 << 20;

/// The calls a second each caller may make beyond loopback when
/// `--rate-limit auto`: a busy portal's account stays far below it, a
/// client in a loop meets it.
const AUTO_RATE: u32 = 500;

/// The limits' flags, flattened into [`crate::SharedArgs`].
#[derive(Clone, Debug, Args)]
pub struct LimitArgs {
    /// Largest request message a service decodes (bytes, or with KiB or
    /// MiB); a larger one is refused RESOURCE_EXHAUSTED before it is read.
    #[arg(long, env = "MOTCUA_MAX_MESSAGE_SIZE", default_value = "4MiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// Most HTTP/2 streams (calls in flight) one connection may open; the
    /// client is told and queues the rest.
    #[arg(long, env = "MOTCUA_MAX_STREAMS", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// Calls a second each caller may make (the token's subject; without
    /// authentication, the peer's IP address): a number, `off`, or `auto`
    /// (off on a loopback address, where local runs, tests and load
    /// generators live; 500 beyond it). Beyond it: RESOURCE_EXHAUSTED.
    #[arg(long, env = "MOTCUA_RATE_LIMIT", default_value = "auto", value_parser = parse_rate)]
    pub rate_limit: RateSetting,

    /// Calls a caller may make at once after a quiet spell (the bucket's
    /// size); default: twice the rate.
    #[arg(long, env = "MOTCUA_RATE_BURST")]
    pub rate_burst: Option<NonZeroU32>,
}

impl Default for LimitArgs {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE,
            max_streams: 200,
            rate_limit: RateSetting::Auto,
            rate_burst: None,
        }
    }
}

/// `--rate-limit` as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateSetting {
    /// Off on loopback, [`AUTO_RATE`] elsewhere.
    Auto,
    Off,
    PerSecond(NonZeroU32),
}

/// A token bucket's settings: `per_second` calls a second on average,
/// `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// The limits a server applies, resolved for its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_streams: u32,
    /// `None`: no rate limit.
    pub rate: Option<Rate>,
}

impl Default for Limits {
    /// As the flags' defaults resolve on loopback.
    fn default() -> Self {
        LimitArgs::default().resolve(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

impl LimitArgs {
    /// The limits for a server listening on `listen`.
    pub fn resolve(&self, listen: SocketAddr) -> Limits {
        let per_second = match self.rate_limit {
            RateSetting::Off => None,
            RateSetting::Auto if listen.ip().is_loopback() => None,
            RateSetting::Auto => NonZeroU32::new(AUTO_RATE),
            RateSetting::PerSecond(n) => Some(n),
        };
        let rate = per_second.map(|per_second| Rate {
            per_second,
            // Twice the rate: 1 + 1 is 2, as a NonZeroU32 without unwrap.
            burst: self
                .rate_burst
                .unwrap_or(per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1))),
        });
        Limits {
            max_message_size: self.max_message_size,
            max_streams: self.max_streams,
            rate,
        }
    }
}

fn parse_rate(s: &str) -> Result<RateSetting, String> {
    match s.trim() {
        "auto" => Ok(RateSetting::Auto),
        "off" => Ok(RateSetting::Off),
        n => n
            .parse::<NonZeroU32>()
            .map(RateSetting::PerSecond)
            .map_err(|_| format!("{s:?} is not a rate: a number of calls a second, off or auto")),
    }
}

/// Parses `4194304`, `512KiB` or `4MiB`.
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (number, shift) = if let Some(n) = s.strip_suffix("MiB") {
        (n, 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 10)
    } else {
        (s.strip_suffix('B').unwrap_or(s), 0)
    };
    let bad = || format!("{s:?} is not a size like 4194304, 512KiB or 4MiB");
    let n: usize = number.trim().parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .filter(|&size| size > 0)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }

    fn parse(args: &[&str]) -> LimitArgs {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("flags parse").limits
    }

    #[test]
    fn defaults_leave_loopback_unlimited_and_limit_the_network() {
        let local: SocketAddr = "127.0.0.1:50051".parse().expect("address");
        let open: SocketAddr = "0.0.0.0:50051".parse().expect("address");
        let limits = parse(&[]).resolve(local);
        assert_eq!(limits, Limits::default());
        assert_eq!(limits.max_message_size, 4 << 20);
        assert_eq!(limits.max_streams, 200);
        assert_eq!(limits.rate, None);
        let rate = parse(&[])
            .resolve(open)
            .rate
            .expect("limited beyond loopback");
        assert_eq!((rate.per_second.get(), rate.burst.get()), (500, 1000));
        assert_eq!(parse(&["--rate-limit", "off"]).resolve(open).rate, None);
        let given = parse(&["--rate-limit", "20", "--rate-burst", "5"]).resolve(local);
        let rate = given
            .rate
            .expect("an explicit rate applies on loopback too");
        assert_eq!((rate.per_second.get(), rate.burst.get()), (20, 5));
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1000B"), Ok(1000));
        for bad in ["", "0", "4MB", "-1", "lots", "99999999999999999999MiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_rate_names_the_forms() {
        let error = Cli::try_parse_from(["x", "--rate-limit", "0"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("off or auto"), "{error}");
    }
}
