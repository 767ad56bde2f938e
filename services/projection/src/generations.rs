//! Generations of the read models: the one that serves, and at most one
//! being rebuilt beside it.
//!
//! A generation is a complete set of read-model tables: on PostgreSQL a
//! schema `motcua_g<N>` in the configured database, on SQLite a file
//! `<name>.g<N>.db` beside the configured one. The configured database
//! itself keeps only the `projection_generations` table, which says which
//! generation serves; a swap is one update of that table, so a crash leaves
//! either the old generation serving or the new one, never a mix.
//! Requests read the serving generation through [`Serving`], which the
//! swap repoints.

use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use sqlkit::Backend;
use sqlx::{AnyPool, Row as _};
use tokio::sync::watch;

use crate::store::{Fill, ReadStore};

/// The control table's schema, in the configured database (PostgreSQL: the
/// connections' default schema, apart from the generations' schemas, each
/// of which has its own migrations, [`crate::store::MIGRATIONS`]).
pub static CONTROL_MIGRATIONS: sqlkit::Migrations = sqlkit::Migrations {
    name: "the projection's generations table",
    postgres: sqlx::migrate!("migrations/control/postgres"),
    sqlite: sqlx::migrate!("migrations/control/sqlite"),
};

/// The serving generation's read store, repointed by a swap.
#[derive(Debug)]
pub struct Serving {
    current: RwLock<(u64, ReadStore)>,
}

impl Serving {
    pub fn new(generation: u64, store: ReadStore) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new((generation, store)),
        })
    }

    /// The serving store now (a cheap handle: a pool clone).
    pub fn store(&self) -> ReadStore {
        match self.current.read() {
            Ok(guard) => guard.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    pub fn generation(&self) -> u64 {
        match self.current.read() {
            Ok(guard) => guard.0,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    fn set(&self, generation: u64, store: ReadStore) {
        match self.current.write() {
            Ok(mut guard) => *guard = (generation, store),
            Err(poisoned) => *poisoned.into_inner() = (generation, store),
        }
    }
}

/// The control table and where each generation lives.
#[derive(Clone, Debug)]
pub struct Generations {
    url: String,
    control: AnyPool,
    backend: Backend,
}

impl Generations {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let (control, backend) = sqlkit::connect(url, 2).await?;
        sqlkit::migrate(&control, backend, &CONTROL_MIGRATIONS).await?;
        Ok(Self {
            url: url.to_owned(),
            control,
            backend,
        })
    }

    fn schema(generation: u64) -> String {
        format!("motcua_g{generation}")
    }

    /// The SQLite file of a generation, beside the configured one.
    fn sqlite_url(&self, generation: u64) -> String {
        let (path, query) = match self.url.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.url.as_str(), None),
        };
        let stem = path.strip_suffix(".db").unwrap_or(path);
        let mut url = format!("{stem}.g{generation}.db");
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    fn sqlite_path(&self, generation: u64) -> String {
        let url = self.sqlite_url(generation);
        url.trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Opens (creating when needed) the read store of `generation`; see
    /// [`ReadStore::open_in`] and [`Fill`].
    pub async fn open_store(
        &self,
        generation: u64,
        feed: Option<Arc<watch::Sender<u64>>>,
        fill: Fill,
    ) -> anyhow::Result<ReadStore> {
        match self.backend {
            Backend::Postgres => {
                let schema = Self::schema(generation);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}"
                )))
                .execute(&self.control)
                .await
                .with_context(|| format!("create schema {schema}"))?;
                ReadStore::open_in(&self.url, Some(&schema), feed, fill).await
            }
            Backend::Sqlite => {
                ReadStore::open_in(&self.sqlite_url(generation), None, feed, fill).await
            }
        }
    }

    /// The serving generation, creating the first one on a new database.
    pub async fn serving(&self) -> anyhow::Result<u64> {
        let row = sqlx::query("SELECT id FROM projection_generations WHERE state = 'serving'")
            .fetch_optional(&self.control)
            .await
            .context("read the serving generation")?;
        if let Some(row) = row {
            return Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(1));
        }
        sqlx::query("INSERT INTO projection_generations (id, state) VALUES (1, 'serving')")
            .execute(&self.control)
            .await
            .context("record the first generation")?;
        Ok(1)
    }

    /// The serving generation's checkpoint of `consumer` (0 before its first
    /// batch), read without creating or changing anything: for callers that
    /// watch a running projection.
    pub async fn serving_checkpoint(&self, consumer: &str) -> anyhow::Result<u64> {
        let row = sqlx::query("SELECT id FROM projection_generations WHERE state = 'serving'")
            .fetch_optional(&self.control)
            .await
            .context("read the serving generation")?;
        let Some(row) = row else { return Ok(0) };
        let generation = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(1);
        let (pool, _) = match self.backend {
            Backend::Postgres => {
                sqlkit::connect_in(
                    &self.url,
                    Some(&Self::schema(generation)),
                    1,
                    sqlkit::Durability::Durable,
                )
                .await?
            }
            Backend::Sqlite => sqlkit::connect(&self.sqlite_url(generation), 1).await?,
        };
        let row = sqlx::query("SELECT stream_seq FROM checkpoints WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(&pool)
            .await
            .context("read the checkpoint");
        pool.close().await;
        Ok(match row? {
            Some(row) => u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
            None => 0,
        })
    }

    /// Drops what a crashed or abandoned rebuild left behind.
    pub async fn drop_unfinished(&self) -> anyhow::Result<Vec<u64>> {
        let rows = sqlx::query("SELECT id FROM projection_generations WHERE state <> 'serving'")
            .fetch_all(&self.control)
            .await
            .context("find unfinished generations")?;
        let mut dropped = Vec::new();
        for row in rows {
            let generation = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
            self.drop_generation(generation).await?;
            dropped.push(generation);
        }
        Ok(dropped)
    }

    /// Records a new generation being built; returns its number.
    pub async fn begin(&self) -> anyhow::Result<u64> {
        let next: i64 = sqlx::query(
            "SELECT CAST(COALESCE(MAX(id), 0) + 1 AS BIGINT) FROM projection_generations",
        )
        .fetch_one(&self.control)
        .await
        .context("number a new generation")?
        .try_get(0)?;
        sqlx::query("INSERT INTO projection_generations (id, state) VALUES ($1, 'building')")
            .bind(next)
            .execute(&self.control)
            .await
            .context("record a new generation")?;
        Ok(u64::try_from(next).unwrap_or(0))
    }

    /// Makes `generation` the serving one, in one transaction, and points
    /// `serving` at `store`.
    pub async fn promote(
        &self,
        serving: &Serving,
        generation: u64,
        store: ReadStore,
    ) -> anyhow::Result<()> {
        let mut tx = self.control.begin().await.context("begin a swap")?;
        sqlx::query("UPDATE projection_generations SET state = 'retired' WHERE state = 'serving'")
            .execute(&mut *tx)
            .await
            .context("retire the serving generation")?;
        sqlx::query("UPDATE projection_generations SET state = 'serving' WHERE id = $1")
            .bind(generation as i64)
            .execute(&mut *tx)
            .await
            .context("promote the new generation")?;
        tx.commit().await.context("commit a swap")?;
        serving.set(generation, store);
        Ok(())
    }

    /// Deletes a generation's tables and its control row.
    pub async fn drop_generation(&self, generation: u64) -> anyhow::Result<()> {
        match self.backend {
            Backend::Postgres => {
                let schema = Self::schema(generation);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&self.control)
                .await
                .with_context(|| format!("drop schema {schema}"))?;
            }
            Backend::Sqlite => {
                let path = self.sqlite_path(generation);
                for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("remove {file}"));
                        }
                    }
                }
            }
        }
        sqlx::query("DELETE FROM projection_generations WHERE id = $1")
            .bind(generation as i64)
            .execute(&self.control)
            .await
            .context("forget a generation")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.control.close().await;
    }
}
