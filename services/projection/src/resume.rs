//! Where a consumer resumes, and how it keeps its place in the log.
//!
//! A checkpoint's stream sequence numbers messages of one stream as it was:
//! a stream deleted and restored (`motcua republish --from 0`), rebuilt by
//! mirroring or purged numbers the same log differently, and resuming at
//! the old sequence would skip events for good. So a checkpoint also keeps
//! the identity of the stream it was taken on (its creation time) and the
//! log position every event up to which the read models hold
//! ([`Checkpoint::log_position`]). At start the consumer resumes by
//! sequence only on the same stream with nothing removed after the
//! checkpoint; otherwise it reads the stream from its first message and
//! passes over the events up to that position, which it already holds
//! ([`Resume`]). While it reads, it follows the positions the events carry
//! and notices any it never saw ([`Positions`]).
//!
//! This module must not know about databases or NATS: it decides from
//! numbers, and the consumer does the rest.

/// What a read store remembers of where its consumer is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The stream sequence of the last message taken (0: none).
    pub stream_seq: u64,
    /// When the stream it was taken on was created, in nanoseconds since
    /// the Unix epoch; `None` for a checkpoint written before streams were
    /// told apart.
    pub stream_created: Option<i64>,
    /// Every event of the log up to this position has been taken (applied,
    /// held or parked); `None` for a checkpoint written before positions
    /// were followed.
    pub log_position: Option<u64>,
    /// The log the read store holds (its first event's `Motcua-Log`); `None`
    /// until an event names one.
    pub log: Option<uuid::Uuid>,
}

/// The stream as the server describes it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamNow {
    /// Nanoseconds since the Unix epoch.
    pub created: i64,
    /// The first message's sequence (the last one's + 1 when empty).
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Where delivery starts, and what is passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The first stream sequence to deliver (1: the whole stream).
    pub start_seq: u64,
    /// Messages carrying a log position up to this one are already held
    /// by the read models and are passed over without being applied.
    pub skip_through: u64,
    /// Why the stream is not the one the checkpoint was taken on, when it
    /// is not: the consumer says so before it reads it again.
    pub changed: Option<String>,
}

impl Resume {
    /// Decides where a consumer with `checkpoint` resumes on `stream`.
    pub fn decide(checkpoint: Checkpoint, stream: StreamNow) -> Self {
        let Checkpoint {
            stream_seq: seq,
            stream_created,
            log_position,
            ..
        } = checkpoint;
        let skip_through = log_position.unwrap_or(0);
        if seq == 0 {
            return Self {
                start_seq: 1,
                skip_through,
                changed: None,
            };
        }
        let changed = if stream_created.is_some_and(|c| c != stream.created) {
            Some(format!(
                "the stream was created at {} ns, the checkpoint (sequence {seq}) was taken on one created at {} ns: it was deleted and restored, or is another stream",
                stream.created,
                stream_created.unwrap_or_default()
            ))
        } else if seq > stream.last_seq {
            Some(format!(
                "the checkpoint is at sequence {seq} but the stream ends at {}: it was recreated",
                stream.last_seq
            ))
        } else if stream.first_seq > seq + 1 {
            Some(format!(
                "the stream now starts at sequence {} and the checkpoint is at {seq}: messages after the checkpoint were removed (a purge)",
                stream.first_seq
            ))
        } else {
            None
        };
        match changed {
            None => Self {
                start_seq: seq + 1,
                skip_through: 0,
                changed: None,
            },
            Some(why) => Self {
                start_seq: 1,
                skip_through,
                changed: Some(why),
            },
        }
    }
}

/// The log positions a consumer has taken, one after the other. Intake's
/// relay publishes every position of its log in order, so a position that
/// arrives before the one after [`Positions::through`] means events are
/// missing from the stream: they were removed (a purge) or never copied
/// (a stream restored from part of the log). The consumer goes on (the
/// version rules hold back what follows a missing event of a dossier) and
/// says which positions are missing; `through` stays until they arrive
/// (`motcua republish --from` the first missing one), so a later
/// restart on a changed stream passes over nothing it lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Positions {
    /// Every position up to this one has been taken; `None` until the
    /// first message tells where an old checkpoint's log stood.
    through: Option<u64>,
    /// The highest position taken.
    last: Option<u64>,
    /// Passed over: already held by the read models.
    skip_through: u64,
}

/// What to do with a message carrying a log position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Apply it.
    Apply,
    /// The read models hold it already: pass over it.
    Skip,
    /// Apply it; positions `from..=to` just before it never arrived.
    AfterMissing { from: u64, to: u64 },
}

impl Positions {
    pub fn new(through: Option<u64>, skip_through: u64) -> Self {
        Self {
            through,
            last: through,
            skip_through,
        }
    }

    /// Every position up to this one has been taken, when known.
    pub fn through(&self) -> Option<u64> {
        self.through
    }

    /// Takes the message at `position`.
    pub fn take(&mut self, position: u64) -> Take {
        if position <= self.skip_through {
            return Take::Skip;
        }
        let through = *self.through.get_or_insert(position - 1);
        let last = *self.last.get_or_insert(position - 1);
        if position == through + 1 {
            self.through = Some(position);
        }
        if position > last {
            self.last = Some(position);
        }
        if position > last + 1 {
            Take::AfterMissing {
                from: last + 1,
                to: position - 1,
            }
        } else {
            // The next one, a missing one arriving late, or a copy of one
            // taken before (a republish beyond the duplicate window): the
            // version rules make a copy change nothing.
            Take::Apply
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: i64 = 1_700_000_000_000_000_000;

    fn stream(first_seq: u64, last_seq: u64) -> StreamNow {
        StreamNow {
            created: CREATED,
            first_seq,
            last_seq,
        }
    }

    fn checkpoint(seq: u64, position: u64) -> Checkpoint {
        Checkpoint {
            stream_seq: seq,
            stream_created: Some(CREATED),
            log_position: Some(position),
            log: None,
        }
    }

    #[test]
    fn a_new_consumer_reads_the_whole_stream() {
        let resume = Resume::decide(Checkpoint::default(), stream(1, 500));
        assert_eq!(
            resume,
            Resume {
                start_seq: 1,
                skip_through: 0,
                changed: None
            }
        );
    }

    #[test]
    fn on_the_same_stream_it_resumes_after_its_checkpoint() {
        let resume = Resume::decide(checkpoint(120, 100), stream(1, 500));
        assert_eq!((resume.start_seq, resume.skip_through), (121, 0));
        assert_eq!(resume.changed, None);
        // Caught up exactly, and an old checkpoint that never knew streams.
        assert_eq!(
            Resume::decide(checkpoint(500, 480), stream(1, 500)).start_seq,
            501
        );
        let legacy = Checkpoint {
            stream_seq: 120,
            stream_created: None,
            log_position: None,
            log: None,
        };
        assert_eq!(Resume::decide(legacy, stream(1, 500)).start_seq, 121);
    }

    #[test]
    fn a_restored_stream_is_read_again_passing_over_what_the_store_holds() {
        // Given a checkpoint at sequence 120 (position 100) on a stream that
        // was deleted and restored: the log is numbered afresh.
        let restored = StreamNow {
            created: CREATED + 1,
            first_seq: 1,
            last_seq: 400,
        };
        let resume = Resume::decide(checkpoint(120, 100), restored);
        assert_eq!((resume.start_seq, resume.skip_through), (1, 100));
        assert!(resume.changed.is_some_and(|why| why.contains("created")));
    }

    #[test]
    fn a_purge_or_a_shorter_stream_is_noticed() {
        let purged = Resume::decide(checkpoint(120, 100), stream(301, 300));
        assert_eq!((purged.start_seq, purged.skip_through), (1, 100));
        assert!(purged.changed.is_some_and(|why| why.contains("purge")));
        // Purged up to the checkpoint: nothing was lost, resume as before.
        assert_eq!(
            Resume::decide(checkpoint(120, 100), stream(121, 300)),
            Resume {
                start_seq: 121,
                skip_through: 0,
                changed: None
            }
        );
        let shorter = Resume::decide(checkpoint(120, 100), stream(1, 80));
        assert_eq!(shorter.start_seq, 1);
        assert!(shorter.changed.is_some_and(|why| why.contains("recreated")));
    }

    #[test]
    fn positions_follow_one_another_and_a_missing_one_is_named() {
        let mut positions = Positions::new(Some(10), 0);
        assert_eq!(positions.take(11), Take::Apply);
        assert_eq!(positions.take(15), Take::AfterMissing { from: 12, to: 14 });
        assert_eq!(positions.through(), Some(11), "held until 12 arrives");
        assert_eq!(positions.take(16), Take::Apply, "15 arrived: one gap");
        // The missing ones republished, then the rest again.
        for p in 12..=16 {
            assert_eq!(positions.take(p), Take::Apply);
        }
        assert_eq!(positions.through(), Some(16));
        assert_eq!(positions.take(3), Take::Apply, "a copy changes nothing");
        assert_eq!(positions.through(), Some(16));
    }

    #[test]
    fn what_the_store_holds_is_passed_over() {
        let mut positions = Positions::new(Some(100), 100);
        assert_eq!(positions.take(1), Take::Skip);
        assert_eq!(positions.take(100), Take::Skip);
        assert_eq!(positions.take(101), Take::Apply);
    }

    #[test]
    fn an_old_checkpoint_learns_its_place_from_the_first_message() {
        let mut positions = Positions::new(None, 0);
        assert_eq!(positions.take(5_000), Take::Apply);
        assert_eq!(positions.through(), Some(5_000));
    }
}
