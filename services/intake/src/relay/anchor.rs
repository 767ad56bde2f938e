//! Where the relay resumes: after the last event of its own log that the
//! stream holds, and never on a stream that holds another log.
//!
//! The relay publishes after the position of the stream's last event. A
//! stream written by another log (a fresh store pointed at a used stream, a
//! second environment on the wrong stream), or one ahead of the store (a
//! store restored from an older backup), would make it take positions it
//! never published for published, and the projection fold two logs into
//! one report. So before it trusts the stream, the relay checks that the
//! last event there is its log's: the log identity it carries, a position
//! the store has, and the same event id at that position.

use anyhow::Context as _;
use async_nats::jetstream;
use bus::StreamSettings;

use crate::store::{EventStore, LogIdentity};

/// Messages the relay looks back over for its last event when the stream
/// ends with messages that are not intake's (no position header).
const LOOK_BACK: u64 = 1_000;

/// The stream holds what is not this store's log: the relay will not
/// publish there.
#[derive(Debug, thiserror::Error)]
#[error(
    "stream {stream} {why}; this store's log is {log}. Publishing after it would mix two logs. Either point intake at another stream (--stream), or delete this one and publish the log again (`motcua republish --from 0`)"
)]
pub struct ForeignStream {
    pub stream: String,
    pub log: uuid::Uuid,
    pub why: String,
}

/// The last event of the relay's kind that a stream holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastEvent {
    pub position: u64,
    pub log: Option<uuid::Uuid>,
    pub event_id: Option<String>,
}

/// Whether `last` can be this store's: `Err(why)` if not. `head` is the
/// store's head and `stored_id` the id of its event at `last.position`.
pub fn judge(
    ours: LogIdentity,
    head: u64,
    last: &LastEvent,
    stored_id: Option<&str>,
) -> Result<(), String> {
    let position = last.position;
    match last.log {
        Some(log) if log != ours.log_id => {
            return Err(format!(
                "holds events of another log ({log}; its last at position {position})"
            ));
        }
        None if position > ours.first_position => {
            return Err(format!(
                "ends with an event at position {position} that names no log, published after this log took its identity (at position {})",
                ours.first_position
            ));
        }
        _ => {}
    }
    if position > head {
        return Err(format!(
            "holds log positions up to {position}, but this store's log ends at {head} (a store restored from an older backup, or another log's stream)"
        ));
    }
    if last.event_id.as_deref() != stored_id {
        return Err(format!(
            "holds event {} at position {position} where this store has {}",
            last.event_id.as_deref().unwrap_or("(no id)"),
            stored_id.unwrap_or("(none)")
        ));
    }
    Ok(())
}

/// The position after which the relay publishes: that of the last event of
/// this store's log on the stream (0 when it has none), or [`ForeignStream`].
pub async fn acknowledged_position(
    store: &EventStore,
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<u64> {
    let mut stream = settings
        .ensure_stream(js)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("get or create the event stream")?;
    let state = stream
        .info()
        .await
        .context("read the stream's state")?
        .state
        .clone();
    let Some(last) = last_event(&stream, state.first_sequence, state.last_sequence).await? else {
        return Ok(0);
    };
    let ours = store.identity();
    let head = store.head().await?;
    let stored_id = store.event_id_at(last.position).await?;
    judge(ours, head, &last, stored_id.as_deref()).map_err(|why| ForeignStream {
        stream: settings.stream.clone(),
        log: ours.log_id,
        why,
    })?;
    Ok(last.position)
}

/// The stream's last message that carries a position, looking back over
/// at most [`LOOK_BACK`] that do not.
async fn last_event(
    stream: &jetstream::stream::Stream,
    first: u64,
    last: u64,
) -> anyhow::Result<Option<LastEvent>> {
    let mut seq = last;
    while seq >= first.max(1) && last - seq < LOOK_BACK {
        let message = match stream.get_raw_message(seq).await {
            Ok(message) => message,
            // Deleted from the middle of the stream: look further back.
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                seq -= 1;
                continue;
            }
            Err(e) => return Err(e).context("read the stream's last messages"),
        };
        if let Some(position) = bus::position_of(Some(&message.headers)) {
            return Ok(Some(LastEvent {
                position,
                log: bus::log_of(Some(&message.headers)),
                event_id: bus::message_id_of(Some(&message.headers)).map(str::to_owned),
            }));
        }
        seq -= 1;
    }
    if seq >= first.max(1) {
        anyhow::bail!(
            "the stream's last {LOOK_BACK} messages carry no log position: they are not intake's events"
        );
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> LogIdentity {
        LogIdentity {
            log_id: uuid::Uuid::from_u128(1),
            first_position: 0,
        }
    }

    fn last(position: u64, log: u128, id: &str) -> LastEvent {
        LastEvent {
            position,
            log: Some(uuid::Uuid::from_u128(log)),
            event_id: Some(id.into()),
        }
    }

    #[test]
    fn its_own_last_event_is_trusted() {
        assert_eq!(judge(ours(), 10, &last(7, 1, "e7"), Some("e7")), Ok(()));
    }

    #[test]
    fn another_logs_stream_is_refused_even_with_matching_positions() {
        let why = judge(ours(), 10, &last(7, 2, "x7"), Some("e7")).expect_err("foreign");
        assert!(why.contains("another log"), "{why}");
        // A fresh store (empty log) against a used stream.
        assert!(judge(ours(), 0, &last(7, 2, "x7"), None).is_err());
    }

    #[test]
    fn a_stream_ahead_of_the_store_is_refused() {
        // The same log, the store restored from an older backup.
        let why = judge(ours(), 5, &last(7, 1, "e7"), None).expect_err("ahead");
        assert!(why.contains("ends at 5"), "{why}");
    }

    #[test]
    fn a_different_event_at_the_position_is_refused() {
        let why = judge(ours(), 10, &last(7, 1, "x7"), Some("e7")).expect_err("other event");
        assert!(why.contains("x7"), "{why}");
    }

    #[test]
    fn events_from_before_identities_count_up_to_where_the_identity_was_drawn() {
        let upgraded = LogIdentity {
            first_position: 100,
            ..ours()
        };
        let legacy = |position| LastEvent {
            position,
            log: None,
            event_id: Some(format!("e{position}")),
        };
        assert_eq!(judge(upgraded, 120, &legacy(90), Some("e90")), Ok(()));
        assert!(judge(upgraded, 120, &legacy(110), Some("e110")).is_err());
    }
}
