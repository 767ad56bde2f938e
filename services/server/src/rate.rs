//! A request rate per caller: one token bucket per verified identity (its
//! subject), or per peer IP address when the server runs without
//! authentication. A call finding its bucket empty is answered
//! `RESOURCE_EXHAUSTED` before any service sees it. Health and reflection
//! are not counted: probes call them on a schedule of their own.
//!
//! Written by hand rather than with `governor`: a dozen lines of
//! arithmetic, and on tokio's clock, so the tests run on the paused clock.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures::future::{Either, Ready, ready};
use identity::Identity;
use tokio::time::Instant;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::{auth::is_open, limits::Rate};

/// Below this many buckets the table is never swept.
const SWEEP_FLOOR: usize = 1024;

/// Whom a bucket counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    Subject(String),
    Peer(IpAddr),
    /// No identity and no peer address (not over TCP): one shared bucket.
    Unknown,
}

impl Caller {
    fn of<B>(request: &http::Request<B>) -> Self {
        let extensions = request.extensions();
        if let Some(identity) = extensions.get::<Identity>() {
            return Self::Subject(identity.subject.clone());
        }
        let peer = extensions
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|tls| tls.get_ref().remote_addr())
            });
        peer.map_or(Self::Unknown, |addr| Self::Peer(addr.ip()))
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<Caller, Bucket>,
    /// The size at which the next sweep runs: doubles with what survives
    /// one, so sweeping costs O(1) per call however many callers come.
    sweep_at: usize,
}

/// Every caller's bucket, shared by all connections of a server.
#[derive(Debug)]
pub(crate) struct Buckets {
    per_second: f64,
    burst: f64,
    table: Mutex<Table>,
}

impl Buckets {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            per_second: f64::from(rate.per_second.get()),
            burst: f64::from(rate.burst.get()),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                sweep_at: SWEEP_FLOOR,
            }),
        }
    }

    /// Takes one token from `caller`'s bucket at `now`, or says how long
    /// until one is there.
    pub(crate) fn take(&self, caller: Caller, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means a panic elsewhere mid-update; the
        // numbers are still numbers.
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.buckets.len() >= table.sweep_at {
            self.sweep(&mut table, now);
        }
        let bucket = table.buckets.entry(caller).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refilled = self.refill(*bucket, now);
        if refilled >= 1.0 {
            *bucket = Bucket {
                tokens: refilled - 1.0,
                at: now,
            };
            return Ok(());
        }
        *bucket = Bucket {
            tokens: refilled,
            at: now,
        };
        Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
    }

    fn refill(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// Forgets the buckets that have filled up again: a caller coming back
    /// gets a full one, the same as what it had.
    fn sweep(&self, table: &mut Table, now: Instant) {
        table
            .buckets
            .retain(|_, bucket| self.refill(*bucket, now) < self.burst);
        table.sweep_at = (table.buckets.len() * 2).max(SWEEP_FLOOR);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .buckets
            .len()
    }
}

/// A tower layer that limits each caller's rate; none when `rate` is
/// `None`. Goes after [`crate::AuthLayer`], whose identity it keys on.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    buckets: Option<Arc<Buckets>>,
}

impl RateLimitLayer {
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            buckets: rate.map(|rate| Arc::new(Buckets::new(rate))),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            buckets: self.buckets.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] makes.
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    buckets: Option<Arc<Buckets>>,
}

fn refused(caller: &Caller, wait: Duration) -> tonic::Status {
    let who = match caller {
        Caller::Subject(_) => "this identity",
        Caller::Peer(_) => "this address",
        Caller::Unknown => "callers without an address",
    };
    metrics::counter!("rate_limited_calls_total").increment(1);
    tonic::Status::resource_exhausted(format!(
        "too many calls from {who}: retry in {} ms",
        wait.as_millis().max(1)
    ))
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RateLimit<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let Some(buckets) = &self.buckets else {
            return Either::Left(self.inner.call(request));
        };
        if is_open(request.uri().path()) {
            return Either::Left(self.inner.call(request));
        }
        let caller = Caller::of(&request);
        match buckets.take(caller.clone(), Instant::now()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(wait) => Either::Right(ready(Ok(refused(&caller, wait).into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate {
            per_second: NonZeroU32::new(per_second).expect("a rate"),
            burst: NonZeroU32::new(burst).expect("a burst"),
        }
    }

    fn subject(name: &str) -> Caller {
        Caller::Subject(name.to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_the_rate_holds() {
        let buckets = Buckets::new(rate(10, 3));
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.take(subject("a"), now), Ok(()));
        }
        let wait = buckets
            .take(subject("a"), now)
            .expect_err("the burst is spent");
        assert_eq!(wait, Duration::from_millis(100));
        // Another caller has its own bucket.
        assert_eq!(buckets.take(subject("b"), now), Ok(()));

        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(buckets.take(subject("a"), Instant::now()), Ok(()));
        assert!(buckets.take(subject("a"), Instant::now()).is_err());

        // A quiet spell refills up to the burst, not beyond.
        tokio::time::advance(Duration::from_secs(60)).await;
        let later = Instant::now();
        let passed = (0..10)
            .filter(|_| buckets.take(subject("a"), later).is_ok())
            .count();
        assert_eq!(passed, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_call_costs_nothing() {
        let buckets = Buckets::new(rate(2, 1));
        let start = Instant::now();
        assert_eq!(buckets.take(subject("a"), start), Ok(()));
        for _ in 0..100 {
            assert!(buckets.take(subject("a"), start).is_err());
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(buckets.take(subject("a"), Instant::now()), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn full_buckets_are_forgotten() {
        let buckets = Buckets::new(rate(1, 1));
        let now = Instant::now();
        for ip in 0..u32::try_from(SWEEP_FLOOR).expect("small") {
            let caller = Caller::Peer(IpAddr::from(ip.to_be_bytes()));
            assert_eq!(buckets.take(caller, now), Ok(()));
        }
        assert_eq!(buckets.len(), SWEEP_FLOOR);
        tokio::time::advance(Duration::from_secs(1)).await;
        // The next new caller sweeps: every old bucket has filled again.
        assert_eq!(buckets.take(Caller::Unknown, Instant::now()), Ok(()));
        assert_eq!(buckets.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_answers_resource_exhausted_and_spares_health()
    -> Result<(), std::convert::Infallible> {
        use tower::{Layer as _, ServiceExt as _};

        let inner = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let service = RateLimitLayer::new(Some(rate(1, 1))).layer(inner);
        let call = |path: &str| {
            let mut request = http::Request::new(());
            *request.uri_mut() = path.parse().expect("a path");
            request.extensions_mut().insert(TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(([10, 0, 0, 1], 4000).into()),
            });
            service.clone().oneshot(request)
        };
        let code = |response: http::Response<String>| {
            tonic::Status::from_header_map(response.headers()).map(|s| s.code())
        };
        assert_eq!(code(call("/motcua.intake.v1.Intake/Stop").await?), None);
        assert_eq!(
            code(call("/motcua.intake.v1.Intake/Stop").await?),
            Some(tonic::Code::ResourceExhausted)
        );
        assert_eq!(code(call("/grpc.health.v1.Health/Check").await?), None);
        Ok(())
    }
}
