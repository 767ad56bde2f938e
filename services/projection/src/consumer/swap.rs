//! Taking over a rebuilt generation: the live consumer brings it to its own
//! checkpoint, hands it the late feed and swaps, between two batches.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use bus::StreamSettings;
use futures::StreamExt as _;
use tokio::sync::{mpsc, oneshot};

use super::{
    Consumer,
    fold::apply_messages,
    receive::{Incoming, incoming},
};
use crate::{
    generations::{Generations, Serving},
    store::ReadStore,
};

/// A rebuilt generation, caught up to `checkpoint`, for the live consumer
/// to take over at a batch boundary.
pub struct Swap {
    pub generation: u64,
    pub store: ReadStore,
    pub checkpoint: u64,
    pub generations: Generations,
    pub serving: Arc<Serving>,
    /// Answered with the retired generation's number.
    pub done: oneshot::Sender<anyhow::Result<u64>>,
}

impl Consumer {
    /// Makes the rebuilt generation serve: brings it to exactly this
    /// consumer's checkpoint (replaying what it lacks, as history), hands it
    /// the late feed and the checkpoint, swaps, and continues on it.
    pub(super) async fn take_over(&mut self, swap: Swap, checkpoint: u64, held: &mut u64) {
        let result = async {
            if checkpoint > swap.checkpoint {
                replay_range(
                    &self.js,
                    &self.settings,
                    &swap.store,
                    swap.checkpoint,
                    checkpoint,
                )
                .await
                .context("bring the new generation to the live checkpoint")?;
            }
            swap.store
                .adopt(&self.store, &self.name, checkpoint)
                .await
                .context("hand the late feed and checkpoint over")?;
            let retired = swap.serving.generation();
            swap.generations
                .promote(&swap.serving, swap.generation, swap.store.clone())
                .await?;
            self.store = swap.store.clone();
            *held = self.store.held_count().await?;
            tracing::info!(
                generation = swap.generation,
                retired,
                checkpoint,
                "rebuilt generation now serving"
            );
            anyhow::Ok(retired)
        }
        .await;
        drop(swap.done.send(result));
    }
}

pub(super) async fn next_swap(swaps: &mut Option<mpsc::Receiver<Swap>>) -> Option<Swap> {
    match swaps {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Applies the stream's messages after `after` up to `until` (inclusive)
/// to `store`, as history (no late-feed news), with no checkpoint of its own
/// beyond the one written by each batch under the name "handover".
pub(crate) async fn replay_range(
    js: &jetstream::Context,
    settings: &StreamSettings,
    store: &ReadStore,
    after: u64,
    until: u64,
) -> anyhow::Result<()> {
    let stream = settings
        .ensure_stream(js)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("get the event stream")?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            description: Some("Motcua generation handover (ephemeral)".into()),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ack_policy: AckPolicy::None,
            filter_subject: settings.all_events_filter(stream.cached_info()),
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .context("create a handover consumer")?;
    let mut held = store.held_count().await?;
    let mut reached = after;
    while reached < until {
        let mut messages = consumer
            .fetch()
            .max_messages(usize::try_from((until - reached).min(5_000)).unwrap_or(5_000))
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .context("fetch the handover's messages")?;
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            let m = incoming(
                message
                    .map_err(|e| anyhow::anyhow!(e))
                    .context("read a message")?,
            )?;
            if m.stream_seq > until {
                break;
            }
            reached = m.stream_seq;
            batch.push(Incoming { pending: None, ..m });
        }
        if !batch.is_empty() {
            let (write, _) = apply_messages(store, "handover", &batch, held, false).await?;
            held = held
                .saturating_add(write.held.len() as u64)
                .saturating_sub(write.released.len() as u64);
        }
    }
    Ok(())
}
