//! The store's lookup secret (see `crate::lookup`): one row, kept by the
//! first process that opens the store.

use anyhow::Context as _;
use sqlx::Row as _;

use super::EventStore;

impl EventStore {
    /// The lookup secret the store keeps; `fresh` becomes it if the store
    /// has none yet (of two processes opening a new store at once, the
    /// first to write wins, and both read that one).
    pub async fn lookup_secret(&self, fresh: &[u8]) -> anyhow::Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO lookup_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(fresh.to_vec())
        .execute(self.pool())
        .await
        .context("keep a lookup secret")?;
        let row = sqlx::query("SELECT secret FROM lookup_secret WHERE id = 1")
            .fetch_one(self.pool())
            .await
            .context("read the lookup secret")?;
        Ok(row.try_get(0)?)
    }
}
