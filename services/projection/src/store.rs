//! The read models in SQL: dossier rows, supplement pauses, per-day
//! counters, held and parked events, and the consumer checkpoint. A batch
//! of changes and its checkpoint commit in one transaction.
//!
//! [`ReadStore`] opens a generation's tables ([`schema`]: its migrations) and commits
//! batches ([`BatchWrite`]): on PostgreSQL a batch of dossier events in one
//! statement ([`postgres`]), any other batch in statements any backend runs
//! ([`any`]); a rebuild's [`Fill::Bulk`] holds its counters and the ids it
//! wrote in memory ([`bulk`], [`bloom`]). Reading back is [`read`], taking
//! over from the serving generation [`adopt`].

pub(crate) mod adopt;
pub(crate) mod any;
pub(crate) mod batch;
pub(crate) mod bloom;
pub(crate) mod bulk;
pub(crate) mod postgres;
pub(crate) mod read;
pub(crate) mod rows;
pub(crate) mod schema;
pub(crate) mod sql;

use anyhow::Context as _;
use sqlkit::Backend;
use sqlx::{AnyPool, Row as _};
use tokio::sync::watch;

pub use batch::{BatchWrite, Parked};
use bulk::Bulk;
use sql::Statements;

/// How a read store is being filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Serving reports while following the stream: every table logged and
    /// indexed.
    Live,
    /// A rebuild's new generation, filled from the start of the stream
    /// before anyone reads it, and by nothing else: the reports' indexes
    /// wait ([`ReadStore::finish_bulk_fill`] builds them, once, before the
    /// generation takes over), a dossier the fill never wrote is not
    /// looked up, and the counters' deltas add up in memory, each counter
    /// row written once (see [`Bulk`]). Its tables are logged as a live
    /// generation's: with its new rows copied, PostgreSQL's CPU per event
    /// was the same as into unlogged tables, whose `SET LOGGED` at the end
    /// (a rewrite of each table and its keys) took a sizeable part of a
    /// rebuild's time (BENCHMARKS.md).
    Bulk,
}

#[derive(Clone, Debug)]
pub struct ReadStore {
    pool: AnyPool,
    backend: Backend,
    /// The same PostgreSQL schema through sqlx's native driver, for the
    /// statements that bind arrays (see [`postgres`]).
    pg: Option<sqlx::PgPool>,
    sql: std::sync::Arc<Statements>,
    /// The late feed's last committed position, for live watchers.
    feed_head: std::sync::Arc<watch::Sender<u64>>,
    /// During a [`Fill::Bulk`]: what it keeps in memory until it ends.
    bulk: std::sync::Arc<std::sync::Mutex<Option<Bulk>>>,
}

impl ReadStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_in(url, None, None, Fill::Live).await
    }

    /// Opens the read models in `schema` (PostgreSQL) and announces late-feed
    /// heads on `feed_head` when given (generations share one announcer, so
    /// watchers follow a swap). Commits are [`sqlkit::Durability::Relaxed`]:
    /// each batch commits with its checkpoint, so a batch a crash loses is
    /// applied again from the stream.
    pub async fn open_in(
        url: &str,
        schema: Option<&str>,
        feed_head: Option<std::sync::Arc<watch::Sender<u64>>>,
        fill: Fill,
    ) -> anyhow::Result<Self> {
        let (pool, backend) =
            sqlkit::connect_in(url, schema, 8, sqlkit::Durability::Relaxed).await?;
        let pg = match backend {
            Backend::Postgres => Some(
                sqlkit::connect_postgres(
                    url,
                    schema,
                    3,
                    sqlkit::Durability::Relaxed,
                    sqlkit::ACQUIRE_TIMEOUT,
                )
                .await?,
            ),
            Backend::Sqlite => None,
        };
        let report_indexes = schema::create(&pool, backend, fill).await?;
        let head: i64 = sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM late_feed")
            .fetch_one(&pool)
            .await
            .context("read the late feed's head")?
            .try_get(0)?;
        let head = u64::try_from(head).unwrap_or(0);
        let feed_head = match feed_head {
            Some(sender) => sender,
            None => std::sync::Arc::new(watch::Sender::new(head)),
        };
        Ok(Self {
            pool,
            backend,
            pg,
            sql: std::sync::Arc::new(Statements::new(backend)),
            feed_head,
            bulk: std::sync::Arc::new(std::sync::Mutex::new(
                (fill == Fill::Bulk).then(|| Bulk::new(report_indexes)),
            )),
        })
    }

    /// The announcer of late-feed heads, to share with a new generation.
    pub fn feed_announcer(&self) -> std::sync::Arc<watch::Sender<u64>> {
        self.feed_head.clone()
    }

    /// The late feed's head now, and every later head as batches commit.
    pub fn feed_updates(&self) -> watch::Receiver<u64> {
        self.feed_head.subscribe()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Writes a batch's changes and its checkpoint in one transaction.
    pub async fn commit(&self, consumer: &str, batch: &BatchWrite) -> anyhow::Result<()> {
        // Ids are recorded before the write: a write that fails is written
        // again or dropped, and an id recorded in vain only costs a lookup.
        let holding = self.record_written(batch);
        // A bulk fill's batch leaves its counters to the fill, which holds
        // them until they are many (written first, then) or the fill ends.
        let none = hashbrown::HashMap::new();
        let counters = match holding {
            None => &batch.changes.counters,
            Some(full) => {
                if full {
                    self.write_held_counts().await?;
                }
                &none
            }
        };
        match &self.pg {
            Some(pg) if batch.only_dossier_changes() => {
                self.commit_postgres(pg, consumer, batch, counters).await?;
            }
            _ => self.commit_any(consumer, batch, counters).await?,
        }
        // Held only once the batch is in: a batch written again is not
        // counted twice.
        if holding.is_some() {
            self.hold_counts(batch);
        }
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod tests;
