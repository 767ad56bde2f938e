//! The log's identity: a UUID the event store draws once, when it is
//! created (or first opened by a version that knows identities), with the
//! position its log had then. Every published event carries it
//! (`Motcua-Log`), so a stream's messages can be tied to the log they came
//! from, and the relay never takes another log's stream for its own.

use anyhow::Context as _;
use sqlx::{AnyPool, Row as _};

use super::EventStore;

/// Which log a store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogIdentity {
    pub log_id: uuid::Uuid,
    /// The log's head when the identity was drawn: events up to it were
    /// published (if at all) without the identity header.
    pub first_position: u64,
}

impl LogIdentity {
    /// Reads the store's identity, drawing it on first use.
    pub(super) async fn load_or_create(pool: &AnyPool) -> anyhow::Result<Self> {
        // One statement: two processes opening a new store at once keep the
        // first identity drawn.
        sqlx::query(
            "INSERT INTO log_identity (id, log_id, first_position) \
             SELECT 1, $1, CAST(COALESCE(MAX(position), 0) AS BIGINT) FROM events WHERE true \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .execute(pool)
        .await
        .context("draw the log's identity")?;
        let row = sqlx::query("SELECT log_id, first_position FROM log_identity WHERE id = 1")
            .fetch_one(pool)
            .await
            .context("read the log's identity")?;
        let log_id: String = row.try_get(0)?;
        Ok(Self {
            log_id: uuid::Uuid::parse_str(&log_id)
                .with_context(|| format!("the stored log identity {log_id:?} is not a UUID"))?,
            first_position: u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
        })
    }
}

impl EventStore {
    /// The log this store holds.
    pub fn identity(&self) -> LogIdentity {
        self.identity
    }

    /// The id of the event at `position`, if the log has one there.
    pub async fn event_id_at(&self, position: u64) -> anyhow::Result<Option<String>> {
        let Ok(position) = i64::try_from(position) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT event_id FROM events WHERE position = $1")
            .bind(position)
            .fetch_optional(&self.pool)
            .await
            .context("read an event's id by its position")?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }
}
