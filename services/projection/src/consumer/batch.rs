//! When a batch closes: the limits on its size and age, and whether a
//! backlog waits (large batches) or the consumer has caught up (prompt
//! ones).

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{
    Consumer,
    fold::{Fold, FoldSizes},
    receive::{Incoming, ReceiverGuard},
};
use crate::store::BatchWrite;

/// Messages folded into a batch at a time.
const CHUNK: usize = 5_000;
/// A batch that keeps finding messages closes after this long.
const BATCH_MAX_AGE: Duration = Duration::from_secs(1);
/// A batch closes when no message came for this long (caught up)…
const BATCH_GAP: Duration = Duration::from_millis(2);
/// …or when its first message has waited this long.
const BATCH_MAX_WAIT: Duration = Duration::from_millis(10);

/// Whether a chunk's worth of messages or more waits, received or still on
/// the server (as the last message taken said).
fn catching_up(last: Option<&Incoming>, received: &ReceiverGuard) -> bool {
    let on_server = last
        .and_then(|m| m.pending)
        .map_or(0, |p| usize::try_from(p).unwrap_or(usize::MAX));
    on_server.saturating_add(received.backlog()) >= CHUNK
}

impl Consumer {
    /// Folds chunks of what has arrived, from `first` on, into one
    /// transaction while messages keep coming: stops at the size limit,
    /// after a short gap with nothing to take (caught up), or when the
    /// batch is old enough that taking more would delay the reports. The
    /// batch being written, if any (`overlay`), lends its rows. Returns the
    /// fold and the last message it took.
    pub(super) async fn fold_batch(
        &self,
        first: Incoming,
        incoming_rx: &mut ReceiverGuard,
        held: u64,
        sizes: FoldSizes,
        overlay: Option<Arc<BatchWrite>>,
    ) -> anyhow::Result<(Fold, Option<Incoming>)> {
        let started = Instant::now();
        let mut fold = Fold::new(held, sizes);
        fold.overlay = overlay;
        fold.positions = self.positions;
        fold.log = self.log;
        let mut chunk = vec![first];
        let mut last: Option<Incoming> = None;
        loop {
            let room = CHUNK.min(self.max_batch - fold.events());
            while chunk.len() < room {
                match incoming_rx.try_recv() {
                    Some(next) => chunk.push(next),
                    None => break,
                }
            }
            if chunk.is_empty() {
                match self
                    .wait_for_more(&fold, last.as_ref(), incoming_rx, started)
                    .await
                {
                    Some(next) => {
                        chunk.push(next);
                        continue;
                    }
                    None => break,
                }
            }
            let taken = fold.add(&self.store, &chunk).await?;
            chunk.truncate(taken);
            last = chunk.pop();
            chunk.clear();
            if fold.foreign.is_some() {
                break;
            }
            // Past the short wait, go on only while catching up: steady
            // traffic commits promptly, a backlog in large batches.
            if self.closes(&fold, started.elapsed(), || {
                catching_up(last.as_ref(), incoming_rx)
            }) {
                break;
            }
        }
        Ok((fold, last))
    }

    /// With nothing received: `None` when the batch closes now, else the
    /// next message if one comes within a short gap (caught up) or before
    /// the batch's age limit (catching up).
    async fn wait_for_more(
        &self,
        fold: &Fold,
        last: Option<&Incoming>,
        incoming_rx: &mut ReceiverGuard,
        started: Instant,
    ) -> Option<Incoming> {
        let catching_up = catching_up(last, incoming_rx);
        let age = started.elapsed();
        if self.closes(fold, age, || catching_up) {
            return None;
        }
        let wait = if catching_up {
            BATCH_MAX_AGE - age
        } else {
            BATCH_GAP
        };
        match tokio::time::timeout(wait, incoming_rx.recv()).await {
            Ok(Some(next)) => Some(next),
            Ok(None) | Err(_) => None,
        }
    }

    /// Whether a batch of this age closes: it is full, or at its age
    /// limit, or past the short wait while the consumer is not catching up.
    fn closes(&self, fold: &Fold, age: Duration, catching_up: impl FnOnce() -> bool) -> bool {
        fold.events() >= self.max_batch
            || age >= BATCH_MAX_AGE
            || (age >= BATCH_MAX_WAIT && !catching_up())
    }
}
