//! When a batch closes: the limits on its size and age, and whether a
//! backlog waits (large batches) or the consumer has caught up (prompt
//! ones).

use std::time::Duration;

use super::receive::{Incoming, ReceiverGuard};

/// Messages folded into a batch at a time.
pub(super) const CHUNK: usize = 5_000;
/// A batch that keeps finding messages closes after this long.
pub(super) const BATCH_MAX_AGE: Duration = Duration::from_secs(1);
/// A batch closes when no message came for this long (caught up)…
pub(super) const BATCH_GAP: Duration = Duration::from_millis(2);
/// …or when its first message has waited this long.
pub(super) const BATCH_MAX_WAIT: Duration = Duration::from_millis(10);

/// Whether a chunk's worth of messages or more waits, received or still on
/// the server (as the last message taken said).
pub(super) fn catching_up(last: Option<&Incoming>, received: &ReceiverGuard) -> bool {
    let on_server = last
        .and_then(|m| m.pending)
        .map_or(0, |p| usize::try_from(p).unwrap_or(usize::MAX));
    on_server.saturating_add(received.backlog()) >= CHUNK
}
