//! Reports as the log stood at an earlier point: "the Q1 2020 figures as
//! they were on 31/3/2020, before later corrections".
//!
//! The read models hold the present. For an earlier point the scope's events
//! are replayed from the stream (only the scope's subjects: one office or one
//! province) into a scratch SQLite store with the consumer's own apply code,
//! keeping the events recorded by that instant (or up to that log position),
//! and the same report queries run on the scratch store. The result is exact
//! by construction, and costs one filtered read of the scope's history.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull};
use bus::StreamSettings;
use domain::Timestamp;
use futures::StreamExt as _;
use proto::reports::v1 as pb;

use crate::{
    consumer::{Incoming, apply_messages},
    error::ReportError,
    store::ReadStore,
};

/// Where the history comes from.
#[derive(Clone, Debug)]
pub struct History {
    pub js: jetstream::Context,
    pub settings: StreamSettings,
}

/// A point in the log's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Events recorded at or before this instant.
    RecordedBy(Timestamp),
    /// Events at or before this log position.
    Position(u64),
}

impl Point {
    pub fn from_proto(as_of: Option<&pb::AsOf>) -> Result<Option<Self>, ReportError> {
        match as_of.and_then(|a| a.point.as_ref()) {
            None => Ok(None),
            Some(pb::as_of::Point::RecordedBy(t)) => bus::timestamp_from_proto(t)
                .map(|t| Some(Point::RecordedBy(t)))
                .ok_or_else(|| {
                    ReportError::invalid("as_of.recorded_by", "is not a valid timestamp")
                }),
            Some(pb::as_of::Point::LogPosition(p)) => Ok(Some(Point::Position(*p))),
        }
    }
}

/// A scratch read store holding the scope's history up to a point; its
/// file goes away with it.
pub struct Scratch {
    pub store: ReadStore,
    _dir: tempfile::TempDir,
}

/// Which subjects hold a scope's events.
pub fn scope_subject(
    settings: &StreamSettings,
    scope: Option<&pb::Scope>,
) -> Result<String, ReportError> {
    let prefix = &settings.subject_prefix;
    match scope.and_then(|s| s.unit.as_ref()) {
        Some(pb::scope::Unit::OfficeCode(code)) if bus::is_subject_token(code) => {
            Ok(format!("{prefix}.*.{code}.*"))
        }
        Some(pb::scope::Unit::ProvinceCode(code)) if bus::is_subject_token(code) => {
            Ok(format!("{prefix}.{code}.>"))
        }
        _ => Err(ReportError::invalid(
            "scope",
            "needs an office_code or a province_code (letters, digits, '-' or '_')",
        )),
    }
}

/// Replays the events on `subject` up to `point` into a scratch store.
pub async fn replay(history: &History, subject: &str, point: Point) -> anyhow::Result<Scratch> {
    let dir = tempfile::Builder::new()
        .prefix("motcua-asof-")
        .tempdir()
        .context("make a scratch folder")?;
    let url = format!("sqlite://{}", dir.path().join("asof.db").display());
    let store = ReadStore::open(&url).await?;
    let stream = history
        .settings
        .ensure_stream(&history.js)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("get the event stream")?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            description: Some("Motcua as-of report (ephemeral)".into()),
            filter_subject: subject.to_owned(),
            ack_policy: jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .context("create a replay consumer")?;
    let mut pending = consumer.cached_info().num_pending;
    let mut held = 0u64;
    let mut replayed = 0u64;
    while pending > 0 {
        let mut messages = consumer
            .fetch()
            .max_messages(5_000)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .context("fetch history")?;
        let mut batch = Vec::with_capacity(5_000);
        while let Some(message) = messages.next().await {
            let message = message
                .map_err(|e| anyhow::anyhow!(e))
                .context("read history")?;
            let info = message
                .info()
                .map_err(|e| anyhow::anyhow!(e))
                .context("read a message's sequence")?;
            pending = info.pending;
            let stream_seq = info.stream_sequence;
            if !before(&message, point)? {
                continue;
            }
            batch.push(Incoming {
                stream_seq,
                subject: message.subject.clone(),
                position: bus::position_of(message.headers.as_ref()),
                log: bus::log_of(message.headers.as_ref()),
                payload: message.payload.clone(),
                pending: None,
            });
        }
        if batch.is_empty() {
            continue;
        }
        replayed += batch.len() as u64;
        let (write, _) = apply_messages(&store, "as-of", &batch, held, false).await?;
        held = held
            .saturating_add(write.held.len() as u64)
            .saturating_sub(write.released.len() as u64);
    }
    metrics::counter!("projection_asof_events_replayed_total").increment(replayed);
    Ok(Scratch { store, _dir: dir })
}

/// Whether a message belongs to the log as it stood at `point`.
fn before(message: &jetstream::Message, point: Point) -> anyhow::Result<bool> {
    Ok(match point {
        Point::Position(p) => {
            match bus::position_of(message.headers.as_ref()) {
                Some(position) => position <= p,
                // Without a position it cannot be placed: leave it out.
                None => false,
            }
        }
        Point::RecordedBy(t) => match bus::decode_event(&message.payload) {
            Ok(event) => event.recorded_at <= t,
            // Undecodable: the scratch store parks it, as the consumer does.
            Err(_) => true,
        },
    })
}
