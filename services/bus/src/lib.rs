//! The contract between intake and projection: the JetStream stream that
//! carries events (its settings live here, in code), the subject and header
//! conventions, and the codec between the domain's [`domain::Event`] and the
//! versioned protobuf `motcua.events.v1.Event` stored and published.
//!
//! This crate must not know about databases, gRPC services or read models.

mod codec;
mod procedure_codec;

/// Where a stream lives in a JetStream cluster (its name, server tags).
pub use async_nats::jetstream::stream::Placement;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

pub use codec::{
    DecodeError, decode_event, encode_event, timestamp_from_proto, timestamp_to_proto,
};
pub use procedure_codec::{definition_from_proto, definition_to_proto};

/// Header carrying the event's position in intake's store.
pub const POSITION_HEADER: &str = "Motcua-Position";
/// The position a message's [`POSITION_HEADER`] carries, if any. The header's
/// name is built once, at compile time: looked up by `&str`, it was checked,
/// compared with every standard header's and copied for every message, which
/// showed in the projection's profile during a rebuild (BENCHMARKS.md).
pub fn position_of(headers: Option<&async_nats::HeaderMap>) -> Option<u64> {
    const NAME: async_nats::header::HeaderName =
        async_nats::header::HeaderName::from_static(POSITION_HEADER);
    headers?.get(NAME)?.as_str().parse().ok()
}

/// Header carrying the event's kind, for operators reading the stream.
pub const KIND_HEADER: &str = "Motcua-Kind";

/// Header carrying the identity of the log an event belongs to (a UUID the
/// event store drew when it was created): a stream's messages can be tied
/// to their log, and neither service takes another log's for its own.
pub const LOG_HEADER: &str = "Motcua-Log";
const LOG: async_nats::header::HeaderName = async_nats::header::HeaderName::from_static(LOG_HEADER);

/// The log a message's [`LOG_HEADER`] names, if any (published before logs
/// had identities, or not by intake, it has none).
pub fn log_of(headers: Option<&async_nats::HeaderMap>) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(headers?.get(LOG)?.as_str()).ok()
}

/// The `Nats-Msg-Id` a message carries: for intake's events, the event id.
pub fn message_id_of(headers: Option<&async_nats::HeaderMap>) -> Option<&str> {
    Some(headers?.get(async_nats::header::NATS_MESSAGE_ID)?.as_str())
}

/// The headers every published event carries: its id as `Nats-Msg-Id` (the
/// stream drops a second copy within the duplicate window), its log, its
/// position and its kind. Names built at compile time, as in [`position_of`].
pub fn event_headers(
    event_id: &str,
    log: &str,
    position: u64,
    kind: &str,
) -> async_nats::HeaderMap {
    use async_nats::header::{HeaderName, NATS_MESSAGE_ID};
    const POSITION: HeaderName = HeaderName::from_static(POSITION_HEADER);
    const KIND: HeaderName = HeaderName::from_static(KIND_HEADER);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, event_id);
    headers.insert(LOG, log);
    headers.insert(POSITION, async_nats::HeaderValue::from(position));
    headers.insert(KIND, kind);
    headers
}

/// Where events travel. Both services take these from configuration, so
/// several deployments (or tests) can share one NATS server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// JetStream stream name, e.g. `MOTCUA_EVENTS`.
    pub stream: String,
    /// Subject prefix; events go to `{prefix}.{province}.{office}.{kind}`.
    pub subject_prefix: String,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a re-publish.
    pub duplicate_window: Duration,
    /// How many servers of a JetStream cluster keep the stream (1, 3 or
    /// 5); `None` leaves an existing stream's as they are and creates one
    /// with one replica.
    pub replicas: Option<usize>,
    /// Where the stream lives: a cluster's name and server tags; `None`
    /// leaves it to the server (or as it is).
    pub placement: Option<Placement>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            stream: "MOTCUA_EVENTS".into(),
            subject_prefix: "motcua.events".into(),
            duplicate_window: Duration::from_secs(600),
            replicas: None,
            placement: None,
        }
    }
}

impl StreamSettings {
    /// The subject an event is published on.
    pub fn subject(&self, event: &domain::Event) -> String {
        self.subject_of(
            &event.province_code,
            &event.office_code,
            event.payload.kind().as_str(),
        )
    }

    /// The subject of an event of `kind` at an office, without the event.
    pub fn subject_of(&self, province_code: &str, office_code: &str, kind: &str) -> String {
        format!(
            "{}.{province_code}.{office_code}.{kind}",
            self.subject_prefix
        )
    }

    /// The filter that matches every event.
    pub fn all_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    /// The filter of a consumer of every event on `stream`: none when the
    /// stream holds only the events' subjects. nats-server 2.9 counts what a
    /// filtered consumer has pending by walking the stream when it creates
    /// it, even with `{prefix}.>`, which matches every message, so creating
    /// one takes longer the longer the stream; without a filter there is no
    /// walk. Every start, restart and rebuild of the projection creates one
    /// (BENCHMARKS.md).
    pub fn all_events_filter(&self, stream: &stream::Info) -> String {
        if stream.config.subjects == [self.all_subjects()] {
            String::new()
        } else {
            self.all_subjects()
        }
    }

    /// The stream's settings: file storage, kept forever (the log is the
    /// source of every report), duplicates dropped by event id.
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.all_subjects()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: self.duplicate_window,
            description: Some("Motcua dossier lifecycle events (motcua.events.v1.Event)".into()),
            num_replicas: self.replicas.unwrap_or(1),
            placement: self.placement.clone(),
            ..Default::default()
        }
    }

    /// Gets the stream, creating it with [`Self::config`] when absent. An
    /// existing stream whose replicas or placement differ from those these
    /// settings ask for is changed to them: raising a stream to three
    /// replicas is a configuration change, not a migration (JetStream
    /// copies the stream to the new replicas while it serves). A change
    /// the server refuses (a user without the permission, as the shipped
    /// configuration gives the projection; fewer servers than replicas) is
    /// logged, and the stream served as it is: its events are the same.
    pub async fn ensure_stream(
        &self,
        js: &jetstream::Context,
    ) -> Result<stream::Stream, async_nats::Error> {
        let stream = js.get_or_create_stream(self.config()).await?;
        let current = &stream.cached_info().config;
        let replicas = self.replicas.filter(|r| *r != current.num_replicas);
        let placement = self
            .placement
            .as_ref()
            .filter(|p| current.placement.as_ref() != Some(*p));
        if replicas.is_none() && placement.is_none() {
            return Ok(stream);
        }
        let mut config = current.clone();
        if let Some(replicas) = replicas {
            config.num_replicas = replicas;
        }
        if let Some(placement) = placement {
            config.placement = Some(placement.clone());
        }
        match js.update_stream(&config).await {
            Ok(_) => {
                tracing::info!(
                    stream = %self.stream,
                    replicas = config.num_replicas,
                    "changed the event stream's replicas or placement to the configured ones"
                );
                Ok(js.get_stream(&self.stream).await?)
            }
            Err(e) => {
                tracing::warn!(
                    stream = %self.stream,
                    error = %e,
                    "the event stream's replicas or placement differ from the configured ones, and could not be changed; serving it as it is"
                );
                Ok(stream)
            }
        }
    }
}

/// A code that may appear in a subject token: letters, digits, `-` and `_`.
pub fn is_subject_token(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
