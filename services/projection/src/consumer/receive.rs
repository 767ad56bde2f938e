//! Receiving: the durable consumer recreated to deliver from the
//! checkpoint, and a task of its own that receives messages, takes them
//! apart and checks that none was lost on the way.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt as _;
use tokio::sync::mpsc;

use super::Consumer;
use crate::resume::{Positions, Resume, StreamNow};

/// Messages received ahead of the batch being folded or written.
const RECEIVE_AHEAD: usize = 20_000;
/// Messages asked of the server per pull request; the client asks for the
/// next while it works through these. Large, because each request costs
/// nats-server a scan of the stream's state: fewer, larger pulls cost a
/// catch-up or a rebuild less of the machine's CPU per event (BENCHMARKS.md).
/// The client asks for the next pull when half of one is left, so up to one
/// and a half arrive ahead: the NATS client's buffer (`--nats-buffer`) must
/// hold that much, or it drops deliveries ([`DeliveryGap`]).
const PULL_BATCH: usize = 50_000;

/// One message, taken apart.
pub(crate) struct Incoming {
    pub(crate) stream_seq: u64,
    /// Shares the received subject (no copy).
    pub(crate) subject: async_nats::Subject,
    /// The `Motcua-Position` header, when present.
    pub(crate) position: Option<u64>,
    /// The `Motcua-Log` header: the log the event belongs to.
    pub(crate) log: Option<uuid::Uuid>,
    /// Shares the received buffer (no copy).
    pub(crate) payload: bytes::Bytes,
    /// How many messages the consumer had left after it; none when
    /// replayed for a report as of an earlier point. The message itself is
    /// not kept: a batch may hold tens of thousands.
    pub(crate) pending: Option<u64>,
}

impl Consumer {
    /// Recreates the durable consumer to deliver from the checkpoint on and
    /// starts receiving on a task of its own; returns the receiver and the
    /// checkpoint.
    pub(super) async fn start_receiving(&mut self) -> anyhow::Result<(ReceiverGuard, u64)> {
        let stream = self
            .settings
            .ensure_stream(&self.js)
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .context("get or create the event stream")?;
        let resume = self.resume_point(&stream).await?;
        let checkpoint = resume.start_seq - 1;
        // The checkpoint decides where delivery starts, whatever the
        // server remembers of earlier acks.
        match stream.delete_consumer(&self.name).await {
            Ok(_) => {}
            Err(e) if consumer_not_found(&e) => {}
            Err(e) => tracing::debug!(error = %e, "delete the old durable consumer"),
        }
        let consumer: jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(self.name.clone()),
                description: Some("Motcua projection (delivery starts at its checkpoint)".into()),
                deliver_policy: if checkpoint == 0 {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::ByStartSequence {
                        start_sequence: checkpoint + 1,
                    }
                },
                ack_policy: AckPolicy::None,
                filter_subject: self.settings.all_events_filter(stream.cached_info()),
                // The checkpoint lives in the read models and the consumer
                // is made anew from it at every start, so the server's
                // copy of its state is worth nothing: one replica, in
                // memory, spares a replicated stream's cluster a Raft
                // group per projection, and a consumer whose server died
                // is made again on another without waiting for an election.
                num_replicas: 1,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .context("create the durable consumer")?;
        tracing::info!(consumer = %self.name, checkpoint, "consuming events");
        let delivered = consumer.cached_info().delivered.consumer_sequence;
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.max_batch.min(PULL_BATCH))
            // Two missed heartbeats end the pull: a consumer whose server
            // died is noticed in about two seconds and made again.
            .heartbeat(Duration::from_secs(1))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .context("start pulling messages")?;
        // Messages are received and taken apart on their own task, so the
        // next batch arrives while this one is written; what it received
        // beyond the checkpoint is delivered again at the next start.
        let incoming_rx = spawn_receiver(messages, delivered, self.max_batch.min(RECEIVE_AHEAD));
        Ok((incoming_rx, checkpoint))
    }

    /// Where this consumer resumes on `stream` ([`Resume::decide`]); says
    /// so loudly when the stream is not the one its checkpoint was taken on.
    async fn resume_point(&mut self, stream: &jetstream::stream::Stream) -> anyhow::Result<Resume> {
        let info = stream.cached_info();
        let now = StreamNow {
            created: i64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(i64::MAX),
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
        };
        let checkpoint = self.store.resume_point(&self.name).await?;
        let resume = Resume::decide(checkpoint, now);
        if let Some(why) = &resume.changed {
            tracing::warn!(
                consumer = %self.name,
                stream = %self.settings.stream,
                checkpoint = checkpoint.stream_seq,
                log_position = ?checkpoint.log_position,
                "{why}; reading the stream from its start and passing over the events up to the log position the read models hold"
            );
            metrics::counter!("projection_stream_changes_total").increment(1);
        }
        self.stream_created = Some(now.created);
        self.positions = Some(Positions::new(checkpoint.log_position, resume.skip_through));
        self.log = checkpoint.log;
        Ok(resume)
    }
}

/// Receives messages on a task of its own into a channel of `capacity`,
/// checking that none was lost on the way: `delivered` is the consumer
/// sequence of the last message the server had delivered before.
fn spawn_receiver(mut messages: pull::Stream, delivered: u64, capacity: usize) -> ReceiverGuard {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let task = tokio::spawn(async move {
        let mut deliveries = Deliveries::after(delivered);
        while let Some(next) = messages.next().await {
            let next = next
                .map_err(|e| anyhow::anyhow!(e))
                .context("receive a message")
                .and_then(taken_apart)
                .and_then(|(message, consumer_seq)| {
                    deliveries.check(consumer_seq)?;
                    Ok(message)
                });
            let failed = next.is_err();
            if tx.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    ReceiverGuard {
        rx,
        task,
        error: None,
    }
}

/// Messages the server delivered that never reached the consumer: the NATS
/// client's buffer was full and it dropped them (a slow consumer). A
/// consumer that acknowledges nothing is never sent them again, so nothing
/// after the gap may be applied: the consumer writes what came before it
/// and resumes from its checkpoint.
#[derive(Debug, thiserror::Error)]
#[error(
    "deliveries were lost on the way (consumer sequence {got} arrived where {expected} was due; the NATS client's buffer, --nats-buffer, was full)"
)]
pub(super) struct DeliveryGap {
    expected: u64,
    got: u64,
}

/// The consumer sequences of a consumer that acknowledges nothing: each
/// message is delivered once, numbered one after the other.
#[derive(Debug)]
struct Deliveries {
    next: u64,
}

impl Deliveries {
    /// Deliveries following consumer sequence `delivered` (0: a new consumer).
    fn after(delivered: u64) -> Self {
        Self {
            next: delivered.saturating_add(1),
        }
    }

    /// Takes the delivery numbered `consumer_seq`: the next one, or a gap.
    fn check(&mut self, consumer_seq: u64) -> Result<(), DeliveryGap> {
        if consumer_seq != self.next {
            return Err(DeliveryGap {
                expected: self.next,
                got: consumer_seq,
            });
        }
        self.next += 1;
        Ok(())
    }
}

/// The receiving end; the receiving task stops when this is dropped. A
/// failure ends what it yields; [`ReceiverGuard::ended`] then tells why.
pub(super) struct ReceiverGuard {
    rx: mpsc::Receiver<anyhow::Result<Incoming>>,
    task: tokio::task::JoinHandle<()>,
    error: Option<anyhow::Error>,
}

impl ReceiverGuard {
    /// The next message; `None` once the receiver has ended.
    pub(super) async fn recv(&mut self) -> Option<Incoming> {
        let next = self.rx.recv().await;
        self.take(next)
    }

    /// Messages received and not yet taken.
    pub(super) fn backlog(&self) -> usize {
        self.rx.len()
    }

    /// The next message if one has arrived.
    pub(super) fn try_recv(&mut self) -> Option<Incoming> {
        let next = self.rx.try_recv().ok();
        self.take(next)
    }

    fn take(&mut self, next: Option<anyhow::Result<Incoming>>) -> Option<Incoming> {
        match next? {
            Ok(message) => Some(message),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    /// Why the receiver ended.
    pub(super) fn ended(&mut self) -> anyhow::Error {
        self.error
            .take()
            .unwrap_or_else(|| anyhow::anyhow!("the message stream ended"))
    }
}

impl Drop for ReceiverGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether deleting a consumer failed only because there was none.
fn consumer_not_found(e: &jetstream::stream::ConsumerError) -> bool {
    matches!(
        e.kind(),
        jetstream::stream::ConsumerErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
    )
}

pub(super) fn incoming(message: jetstream::Message) -> anyhow::Result<Incoming> {
    taken_apart(message).map(|(message, _)| message)
}

/// A message taken apart, and its consumer sequence.
fn taken_apart(message: jetstream::Message) -> anyhow::Result<(Incoming, u64)> {
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!(e))
        .context("read a message's stream sequence")?;
    let (stream_seq, consumer_seq, pending) =
        (info.stream_sequence, info.consumer_sequence, info.pending);
    let position = bus::position_of(message.headers.as_ref());
    Ok((
        Incoming {
            stream_seq,
            subject: message.subject.clone(),
            position,
            log: bus::log_of(message.headers.as_ref()),
            payload: message.payload.clone(),
            pending: Some(pending),
        },
        consumer_seq,
    ))
}

#[cfg(test)]
mod tests {
    use super::Deliveries;

    #[test]
    fn deliveries_in_sequence_pass_from_a_new_or_resumed_consumer() {
        for delivered in [0, 41] {
            let mut deliveries = Deliveries::after(delivered);
            for seq in delivered + 1..=delivered + 1_000 {
                assert!(deliveries.check(seq).is_ok(), "{seq} after {delivered}");
            }
        }
    }

    #[test]
    fn the_default_client_buffer_holds_what_can_arrive_ahead() {
        use clap::Parser as _;
        let config = crate::config::Config::parse_from(["projection"]);
        // The next pull is asked for when half of one is left.
        assert!(config.nats_buffer as usize >= super::PULL_BATCH * 3 / 2);
    }

    #[test]
    fn a_skipped_delivery_is_a_gap_and_so_is_one_out_of_order() {
        let mut deliveries = Deliveries::after(0);
        assert!(deliveries.check(1).is_ok());
        let gap = deliveries.check(5).expect_err("2, 3 and 4 were lost");
        assert_eq!((gap.expected, gap.got), (2, 5));

        let mut deliveries = Deliveries::after(10);
        let first_lost = deliveries.check(12).expect_err("11 was lost");
        assert_eq!((first_lost.expected, first_lost.got), (11, 12));

        let mut deliveries = Deliveries::after(3);
        assert!(deliveries.check(4).is_ok());
        assert!(
            deliveries.check(4).is_err(),
            "a delivery twice is not the next"
        );
    }
}
