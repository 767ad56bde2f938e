//! A rebuild's bulk fill: what it keeps in memory until it ends (the ids it
//! wrote, the counters' deltas), and its end.

use anyhow::Context as _;

use super::{BatchWrite, ReadStore, bloom::Written, rows::counter_json};
use crate::apply::{CounterDelta, CounterKey};

/// What a [`Fill::Bulk`] keeps in memory until it ends.
///
/// Its counters: a rebuild's batches meet the same counters again and again
/// (an office's day, procedure, channel and metric), and writing each
/// batch's deltas made PostgreSQL update every such row once per batch.
/// The deltas of the batches committed add up here instead, and are written
/// once when the fill ends, or before the next batch once they are
/// [`Bulk::counts_max`] rows. They are lost only with the process, and with
/// it the unfinished generation, which is dropped at the next start.
///
/// [`Fill::Bulk`]: super::Fill::Bulk
#[derive(Debug)]
pub(super) struct Bulk {
    written: Written,
    /// Deltas of committed batches not yet in `daily_counts`.
    counts: hashbrown::HashMap<CounterKey, CounterDelta>,
    counts_max: usize,
    /// The reports' indexes set aside, as the database defined them
    /// (`schema::create`), built when the fill ends.
    indexes: Vec<String>,
}

/// Counter rows a bulk fill holds at most (about 300 bytes each).
pub const HELD_COUNTS_MAX: usize = 100_000;

impl Bulk {
    pub(super) fn new(indexes: Vec<String>) -> Self {
        Self {
            written: Written::new(),
            counts: hashbrown::HashMap::new(),
            counts_max: HELD_COUNTS_MAX,
            indexes,
        }
    }
}

impl ReadStore {
    /// Ends a [`Fill::Bulk`]: writes the counters it held and builds the
    /// reports' indexes; from here on others may write (the live consumer,
    /// after the swap).
    ///
    /// [`Fill::Bulk`]: super::Fill::Bulk
    pub async fn finish_bulk_fill(&self) -> anyhow::Result<()> {
        self.write_held_counts().await?;
        let indexes = self.with_bulk(|bulk| bulk.take().map(|b| b.indexes).unwrap_or_default());
        for index in indexes {
            sqlkit::run_ddl(&self.pool, &index)
                .await
                .context("build the read models' indexes")?;
        }
        Ok(())
    }

    /// Has a [`Fill::Bulk`] hold at most `max` counter rows before it writes
    /// them (by default [`HELD_COUNTS_MAX`]); tests make it write often.
    ///
    /// [`Fill::Bulk`]: super::Fill::Bulk
    #[cfg(test)]
    pub fn hold_counts_up_to(&self, max: usize) {
        self.with_bulk(|bulk| {
            if let Some(bulk) = bulk {
                bulk.counts_max = max;
            }
        });
    }

    pub(super) fn with_bulk<T>(&self, f: impl FnOnce(&mut Option<Bulk>) -> T) -> T {
        match self.bulk.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// During a bulk fill, the ids among `ids` it may have written (the
    /// others have no row); `None` otherwise.
    pub(super) fn maybe_stored<'a>(&self, ids: &[&'a str]) -> Option<Vec<&'a str>> {
        self.with_bulk(|bulk| {
            bulk.as_ref().map(|b| {
                ids.iter()
                    .copied()
                    .filter(|id| b.written.may_hold(id))
                    .collect()
            })
        })
    }

    /// During a bulk fill, records the batch's dossier ids as written and
    /// says whether the counters it holds are full (to be written before
    /// the batch); `None` otherwise.
    pub(super) fn record_written(&self, batch: &BatchWrite) -> Option<bool> {
        self.with_bulk(|bulk| {
            bulk.as_mut().map(|bulk| {
                for id in batch.changes.rows.keys() {
                    bulk.written.record(id);
                }
                bulk.counts.len() >= bulk.counts_max
            })
        })
    }

    /// Holds a committed batch's counter deltas until the fill writes them.
    pub(super) fn hold_counts(&self, batch: &BatchWrite) {
        self.with_bulk(|bulk| {
            if let Some(bulk) = bulk {
                add_counts(&mut bulk.counts, &batch.changes.counters);
            }
        });
    }

    /// Writes the counters a bulk fill holds, in one statement; on failure
    /// it holds them still.
    pub(super) async fn write_held_counts(&self) -> anyhow::Result<()> {
        let Some(counts) =
            self.with_bulk(|bulk| bulk.as_mut().map(|b| std::mem::take(&mut b.counts)))
        else {
            return Ok(());
        };
        if counts.is_empty() {
            return Ok(());
        }
        let written = sqlx::query(sqlx::AssertSqlSafe(self.sql.add_counters.as_str()))
            .bind(counter_json(&counts))
            .execute(&self.pool)
            .await
            .context("write the counters a bulk fill held");
        if written.is_err() {
            self.with_bulk(|bulk| {
                if let Some(bulk) = bulk {
                    add_counts(&mut bulk.counts, &counts);
                }
            });
        }
        written.map(drop)
    }
}

/// Adds counter deltas to others.
fn add_counts(
    into: &mut hashbrown::HashMap<CounterKey, CounterDelta>,
    from: &hashbrown::HashMap<CounterKey, CounterDelta>,
) {
    for (key, delta) in from {
        match into.get_mut(key) {
            Some(sum) => sum.n += delta.n,
            None => {
                into.insert(key.clone(), delta.clone());
            }
        }
    }
}
