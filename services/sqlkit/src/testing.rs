//! Helpers for tests of the stores' schemas (feature `testing`): a fresh
//! database per test on either backend, and a schema as the database's own
//! catalogue describes it, to compare a migrated database with a fresh one.

use std::collections::BTreeSet;

use anyhow::Context as _;
use sqlx::{AnyPool, Executor as _, Row as _};

use crate::{Backend, MIGRATIONS_TABLE};

/// The PostgreSQL server tests create their databases on
/// (`MOTCUA_TEST_POSTGRES`, else the local one with trust authentication).
pub fn postgres_admin_url() -> String {
    std::env::var("MOTCUA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database, dropped with it: an SQLite file in a folder of
/// its own, or a PostgreSQL database of its own.
#[derive(Debug)]
pub struct ScratchDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    database: Option<String>,
}

impl ScratchDb {
    pub async fn new(backend: Backend, name: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().context("create a database folder")?;
                Ok(Self {
                    url: format!("sqlite://{}/{name}.db", dir.path().display()),
                    backend,
                    _dir: Some(dir),
                    database: None,
                })
            }
            Backend::Postgres => {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let database = format!(
                    "motcua_{name}_{}_{nanos}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                );
                let admin = postgres_admin_url();
                let pool = AnyPool::connect(&admin)
                    .await
                    .with_context(|| format!("connect to PostgreSQL at {admin}"))?;
                pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                    .await
                    .context("create a test database")?;
                pool.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(base, _)| base);
                Ok(Self {
                    url: format!("{base}/{database}"),
                    backend,
                    _dir: None,
                    database: Some(database),
                })
            }
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let Some(database) = self.database.take() else {
            return;
        };
        // Drop is not async: a thread with a runtime of its own drops it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio_runtime()?;
            runtime.block_on(async {
                let pool = AnyPool::connect(&postgres_admin_url()).await?;
                pool.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                )))
                .await?;
                pool.close().await;
                anyhow::Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop a test database: {e:#}"),
            Err(_) => eprintln!("could not drop a test database: the thread panicked"),
        }
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A schema as the database's catalogue describes it, one line per item,
/// leaving out the migrations table: on PostgreSQL the connection's
/// schema (`information_schema.columns`, `pg_indexes`, `pg_constraint`,
/// `pg_class.reloptions`), on SQLite the file (`sqlite_schema`,
/// `pragma_table_info`, `pragma_index_list`, `pragma_index_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaDescription {
    /// Table and storage options.
    pub tables: BTreeSet<String>,
    /// Table, position, name, type, nullability, default, collation or
    /// primary key rank.
    pub columns: BTreeSet<String>,
    /// Table, name, and definition (PostgreSQL) or uniqueness, origin,
    /// partial, columns and partial condition (SQLite).
    pub indexes: BTreeSet<String>,
    /// Table, name, definition (PostgreSQL: keys, checks, not-nulls).
    pub constraints: BTreeSet<String>,
}

impl SchemaDescription {
    /// What differs from `other`, one line per item, `-` for items only in
    /// `self`, `+` for items only in `other`; empty when they agree.
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, mine, theirs) in [
            ("table", &self.tables, &other.tables),
            ("column", &self.columns, &other.columns),
            ("index", &self.indexes, &other.indexes),
            ("constraint", &self.constraints, &other.constraints),
        ] {
            out.extend(mine.difference(theirs).map(|i| format!("- {kind} {i}")));
            out.extend(theirs.difference(mine).map(|i| format!("+ {kind} {i}")));
        }
        out
    }
}

async fn lines(pool: &AnyPool, sql: &str) -> anyhow::Result<BTreeSet<String>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .with_context(|| format!("read the catalogue: {sql}"))?;
    rows.iter()
        .map(|row| row.try_get::<String, _>(0).map_err(Into::into))
        .collect()
}

/// Reads the schema of the database (SQLite) or of the connections'
/// schema (PostgreSQL) behind `pool`.
pub async fn describe(pool: &AnyPool, backend: Backend) -> anyhow::Result<SchemaDescription> {
    let t = MIGRATIONS_TABLE;
    Ok(match backend {
        Backend::Postgres => SchemaDescription {
            tables: lines(
                pool,
                &format!(
                    "SELECT format('%s|%s', relname, COALESCE(array_to_string(reloptions, ','), '')) \
                     FROM pg_class WHERE relnamespace = current_schema()::regnamespace \
                     AND relkind = 'r' AND relname <> '{t}'"
                ),
            )
            .await?,
            columns: lines(
                pool,
                &format!(
                    "SELECT format('%s|%s|%s|%s|%s|%s|%s', table_name, ordinal_position, \
                     column_name, data_type, is_nullable, COALESCE(column_default, '<none>'), \
                     COALESCE(collation_name, '<default>')) \
                     FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name <> '{t}'"
                ),
            )
            .await?,
            indexes: lines(
                pool,
                &format!(
                    "SELECT format('%s|%s|%s', tablename, indexname, \
                     replace(indexdef, current_schema() || '.', '')) \
                     FROM pg_indexes WHERE schemaname = current_schema() AND tablename <> '{t}'"
                ),
            )
            .await?,
            constraints: lines(
                pool,
                &format!(
                    "SELECT format('%s|%s|%s', c.relname, k.conname, pg_get_constraintdef(k.oid)) \
                     FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
                     WHERE k.connamespace = current_schema()::regnamespace AND c.relname <> '{t}'"
                ),
            )
            .await?,
        },
        Backend::Sqlite => {
            let tables = format!(
                "FROM sqlite_schema m WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
                 AND m.name <> '{t}'"
            );
            SchemaDescription {
                tables: lines(pool, &format!("SELECT m.name {tables}")).await?,
                columns: lines(
                    pool,
                    &format!(
                        "SELECT m.name || '|' || p.cid || '|' || p.name || '|' || p.type || '|' || \
                         p.\"notnull\" || '|' || COALESCE(p.dflt_value, '<none>') || '|pk ' || p.pk \
                         FROM sqlite_schema m, pragma_table_info(m.name) p \
                         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '{t}'"
                    ),
                )
                .await?,
                indexes: lines(
                    pool,
                    &format!(
                        "SELECT m.name || '|' || l.name || '|' || l.\"unique\" || '|' || l.origin \
                         || '|' || l.partial || '|' || \
                         COALESCE((SELECT group_concat(name, ',') FROM \
                             (SELECT i.name FROM pragma_index_info(l.name) i ORDER BY i.seqno)), '') \
                         || '|' || COALESCE((SELECT substr(s.sql, instr(upper(s.sql), ' WHERE ')) \
                             FROM sqlite_schema s WHERE s.type = 'index' AND s.name = l.name \
                             AND instr(upper(s.sql), ' WHERE ') > 0), '') \
                         FROM sqlite_schema m, pragma_index_list(m.name) l \
                         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '{t}'"
                    ),
                )
                .await?,
                constraints: BTreeSet::new(),
            }
        }
    })
}
