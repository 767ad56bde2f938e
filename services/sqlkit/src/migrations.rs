//! Schema migrations: each database kind's schema is a folder of versioned
//! SQL files per backend (`sqlx::migrate!`), applied at start-up by
//! [`migrate`] on the store's own pool, so on PostgreSQL in the schema its
//! connections work in (their `search_path`), migrations table included.
//!
//! All pending migrations apply in one transaction (both backends have
//! transactional DDL): a failure leaves the database as it was, and the
//! error names the version that failed.
//!
//! A database made before migrations (no migrations table, but some of the
//! tables the migrations create) is adopted: every migration runs over it
//! in order, statement by statement, an `ALTER TABLE … ADD COLUMN` whose
//! column the table already has being passed over (the migrations' other
//! statements are idempotent: `CREATE … IF NOT EXISTS`), and each is then
//! recorded as applied, in the same one transaction.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::{
    AnyPool, Executor as _, Row as _,
    migrate::{Migrate as _, Migration, Migrator},
};

use crate::Backend;

/// The migrations table, in the database (SQLite) or in the connections'
/// schema (PostgreSQL).
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One kind of database's schema: its migrations for each backend.
#[derive(Debug)]
pub struct Migrations {
    /// What the database holds, for messages ("intake's event store").
    pub name: &'static str,
    pub postgres: Migrator,
    pub sqlite: Migrator,
}

impl Migrations {
    pub fn for_backend(&self, backend: Backend) -> &Migrator {
        match backend {
            Backend::Postgres => &self.postgres,
            Backend::Sqlite => &self.sqlite,
        }
    }

    /// The newest version.
    pub fn latest(&self, backend: Backend) -> i64 {
        up_migrations(self.for_backend(backend))
            .map(|m| m.version)
            .max()
            .unwrap_or(0)
    }
}

/// What [`migrate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migrated {
    /// The database was already at the newest version.
    Current,
    /// Migrations after `from` (0: a new database) were applied.
    Upgraded { from: i64, to: i64 },
    /// A database made before migrations was brought to `to`.
    Adopted { to: i64 },
}

/// Brings the database behind `pool` to the newest version of
/// `migrations`, in one transaction (see the module's documentation).
pub async fn migrate(
    pool: &AnyPool,
    backend: Backend,
    migrations: &Migrations,
) -> anyhow::Result<Migrated> {
    let migrator = migrations.for_backend(backend);
    let mut conn = pool
        .acquire()
        .await
        .with_context(|| format!("connect to migrate {}", migrations.name))?;
    // PostgreSQL: an advisory lock, so that two processes starting at once
    // migrate one after the other. SQLite's transaction is the lock.
    conn.lock()
        .await
        .with_context(|| format!("lock {} to migrate it", migrations.name))?;
    let result = migrate_locked(&mut conn, backend, migrations.name, migrator).await;
    let unlocked = conn.unlock().await;
    let migrated = result?;
    unlocked.with_context(|| format!("unlock {} after migrating it", migrations.name))?;
    match migrated {
        Migrated::Current => {}
        Migrated::Upgraded { from, to } => {
            tracing::info!(database = migrations.name, from, to, "schema migrated");
        }
        Migrated::Adopted { to } => tracing::info!(
            database = migrations.name,
            to,
            "schema made before migrations adopted"
        ),
    }
    Ok(migrated)
}

fn up_migrations(migrator: &Migrator) -> impl Iterator<Item = &Migration> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
}

async fn migrate_locked(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    name: &str,
    migrator: &Migrator,
) -> anyhow::Result<Migrated> {
    let latest = up_migrations(migrator)
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    let adopt = made_before_migrations(conn, backend, migrator).await?;
    // SQLite: take the write lock at the start. A deferred transaction that
    // reads the migrations table first, then writes, fails at once with
    // SQLITE_BUSY when the pool's other connection has moved the database
    // since its snapshot; an immediate one waits its busy timeout instead.
    let begin = match backend {
        Backend::Sqlite => sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await,
        Backend::Postgres => sqlx::Connection::begin(&mut *conn).await,
    };
    let mut tx = begin.with_context(|| format!("begin migrating {name}"))?;
    tx.ensure_migrations_table(MIGRATIONS_TABLE)
        .await
        .with_context(|| format!("create the migrations table of {name}"))?;
    if adopt {
        adopt_all(&mut tx, backend, name, migrator).await?;
        tx.commit()
            .await
            .with_context(|| format!("commit the adoption of {name}"))?;
        return Ok(Migrated::Adopted { to: latest });
    }
    let applied = applied_checked(&mut tx, name, migrator, latest).await?;
    let current = applied.keys().copied().max().unwrap_or(0);
    let pending = apply_pending(&mut tx, name, migrator, &applied, current).await?;
    tx.commit()
        .await
        .with_context(|| format!("commit the migrations of {name}"))?;
    Ok(if pending == 0 {
        Migrated::Current
    } else {
        Migrated::Upgraded {
            from: current,
            to: latest,
        }
    })
}

/// No migrations table, but a table the migrations create: a database
/// made by a build from before migrations.
async fn made_before_migrations(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    migrator: &Migrator,
) -> anyhow::Result<bool> {
    if table_exists(conn, backend, MIGRATIONS_TABLE).await? {
        return Ok(false);
    }
    for table in created_tables(migrator) {
        if table_exists(conn, backend, &table).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Brings a database made before migrations to the latest version and
/// records every migration as applied.
async fn adopt_all(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    name: &str,
    migrator: &Migrator,
) -> anyhow::Result<()> {
    for migration in up_migrations(migrator) {
        adopt_one(tx, backend, migration).await.with_context(|| {
            format!(
                "adopt {name}, made before migrations: migration {} ({}) failed; \
                 the database is left as it was",
                migration.version, migration.description
            )
        })?;
        tx.skip(MIGRATIONS_TABLE, migration)
            .await
            .with_context(|| format!("record migration {} of {name}", migration.version))?;
    }
    Ok(())
}

/// The applied migrations' checksums by version, refusing a database left
/// half-migrated or migrated by a newer build.
async fn applied_checked(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    migrator: &Migrator,
    latest: i64,
) -> anyhow::Result<HashMap<i64, Vec<u8>>> {
    if let Some(version) = tx
        .dirty_version(MIGRATIONS_TABLE)
        .await
        .with_context(|| format!("read the migrations of {name}"))?
    {
        anyhow::bail!("{name}: migration {version} is recorded as failed; repair it by hand");
    }
    let applied: HashMap<i64, Vec<u8>> = tx
        .list_applied_migrations(MIGRATIONS_TABLE)
        .await
        .with_context(|| format!("read the migrations of {name}"))?
        .into_iter()
        .map(|m| (m.version, m.checksum.into_owned()))
        .collect();
    if let Some(unknown) = applied
        .keys()
        .copied()
        .filter(|v| !migrator.version_exists(*v))
        .max()
    {
        anyhow::bail!(
            "{name} is at migration {unknown}, which this build does not know (it knows up to \
             {latest}): it was migrated by a newer build"
        );
    }
    Ok(applied)
}

/// Applies the migrations not yet applied, refusing one that changed since
/// it was; returns how many were applied.
async fn apply_pending(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    migrator: &Migrator,
    applied: &HashMap<i64, Vec<u8>>,
    current: i64,
) -> anyhow::Result<usize> {
    let mut pending = 0;
    for migration in up_migrations(migrator) {
        match applied.get(&migration.version) {
            Some(checksum) if **checksum != *migration.checksum => anyhow::bail!(
                "{name}: migration {} ({}) differs from the one applied to the database; \
                 an applied migration must never change",
                migration.version,
                migration.description
            ),
            Some(_) => {}
            None => {
                tx.apply(MIGRATIONS_TABLE, migration)
                    .await
                    .with_context(|| {
                        format!(
                            "migrate {name}: migration {} ({}) failed; the database is left as \
                         it was, at version {current}",
                            migration.version, migration.description
                        )
                    })?;
                pending += 1;
            }
        }
    }
    Ok(pending)
}

/// Runs one migration over a database made before migrations: its
/// statements one by one, passing over a column addition whose column is
/// already there.
async fn adopt_one(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    migration: &Migration,
) -> anyhow::Result<()> {
    for statement in statements(migration.sql.as_str()) {
        if let Some((table, column)) = added_column(&statement)
            && column_exists(conn, backend, &table, &column).await?
        {
            continue;
        }
        conn.execute(sqlx::AssertSqlSafe(statement.clone()))
            .await
            .with_context(|| format!("apply {statement}"))?;
    }
    Ok(())
}

/// A migration's statements, without comment lines. (Ours hold no `;` in
/// literals.)
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn words(statement: &str) -> Vec<String> {
    statement
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn is(word: Option<&String>, keyword: &str) -> bool {
    word.is_some_and(|w| w.eq_ignore_ascii_case(keyword))
}

/// `ALTER TABLE t ADD [COLUMN] [IF NOT EXISTS] c …` → (t, c).
fn added_column(statement: &str) -> Option<(String, String)> {
    let words = words(statement);
    if !(is(words.first(), "ALTER") && is(words.get(1), "TABLE") && is(words.get(3), "ADD")) {
        return None;
    }
    let mut rest = words[4..].iter().peekable();
    if rest
        .peek()
        .is_some_and(|w| w.eq_ignore_ascii_case("COLUMN"))
    {
        rest.next();
    }
    let mut column = rest.next()?;
    if column.eq_ignore_ascii_case("IF") {
        rest.next(); // NOT
        rest.next(); // EXISTS
        column = rest.next()?;
    }
    Some((words[2].to_lowercase(), column.to_lowercase()))
}

/// The tables the migrations create (`CREATE TABLE [IF NOT EXISTS] t`):
/// one of them present without a migrations table marks a database made
/// before migrations.
fn created_tables(migrator: &Migrator) -> Vec<String> {
    let mut tables = Vec::new();
    for migration in up_migrations(migrator) {
        for statement in statements(migration.sql.as_str()) {
            let words = words(&statement);
            if is(words.first(), "CREATE") && is(words.get(1), "TABLE") {
                let name = if is(words.get(2), "IF") {
                    words.get(5)
                } else {
                    words.get(2)
                };
                if let Some(name) = name {
                    tables.push(name.to_lowercase());
                }
            }
        }
    }
    tables
}

async fn table_exists(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    table: &str,
) -> anyhow::Result<bool> {
    let sql = match backend {
        Backend::Postgres => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
        Backend::Sqlite => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM sqlite_schema \
             WHERE type = 'table' AND name = $1"
        }
    };
    let n: i64 = sqlx::query(sql)
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("look for table {table}"))?
        .try_get(0)?;
    Ok(n > 0)
}

async fn column_exists(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    table: &str,
    column: &str,
) -> anyhow::Result<bool> {
    let sql = match backend {
        Backend::Postgres => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2"
        }
        Backend::Sqlite => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pragma_table_info($1) WHERE name = $2"
        }
    };
    let n: i64 = sqlx::query(sql)
        .bind(table)
        .bind(column)
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("look for column {column} of {table}"))?
        .try_get(0)?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use sqlx::{SqlSafeStr as _, migrate::MigrationType};

    use super::*;
    use crate::testing::ScratchDb;

    #[test]
    fn statements_are_read_for_adoption() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE IF NOT EXISTS a (x BIGINT);\n\
                   alter table a add column y TEXT NOT NULL DEFAULT '';\n";
        let statements = statements(sql);
        assert_eq!(statements.len(), 2);
        assert_eq!(added_column(&statements[1]), Some(("a".into(), "y".into())));
        assert_eq!(
            added_column("ALTER TABLE b ADD COLUMN IF NOT EXISTS z BIGINT"),
            Some(("b".into(), "z".into()))
        );
        assert_eq!(added_column("ALTER TABLE b SET (fillfactor = 50)"), None);
        assert_eq!(added_column(&statements[0]), None);
    }

    const V1: &str = "CREATE TABLE IF NOT EXISTS a (x BIGINT NOT NULL)";
    const V2: &str = "ALTER TABLE a ADD COLUMN y BIGINT; CREATE TABLE IF NOT EXISTS b (z BIGINT)";
    const V3_FAILS: &str = "CREATE INDEX IF NOT EXISTS c ON no_such_table (x)";

    fn migrations(sql: &[&'static str]) -> Migrations {
        let list: Vec<Migration> = sql
            .iter()
            .zip(1..)
            .map(|(sql, version)| {
                Migration::new(
                    version,
                    format!("step {version}").into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrations {
            name: "the test database",
            postgres: Migrator::with_migrations(list.clone()),
            sqlite: Migrator::with_migrations(list),
        }
    }

    async fn versions(pool: &AnyPool) -> anyhow::Result<Vec<i64>> {
        sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get(0).map_err(Into::into))
            .collect()
    }

    async fn has_column(pool: &AnyPool, backend: Backend, table: &str, column: &str) -> bool {
        let mut conn = pool.acquire().await.expect("a connection");
        column_exists(&mut conn, backend, table, column)
            .await
            .expect("the catalogue answers")
    }

    async fn a_failed_migration_leaves_the_database_as_it_was(
        backend: Backend,
    ) -> anyhow::Result<()> {
        let db = ScratchDb::new(backend, "sqlkit_failed").await?;
        let (pool, _) = crate::connect(&db.url, 2).await?;
        assert_eq!(
            migrate(&pool, backend, &migrations(&[V1])).await?,
            Migrated::Upgraded { from: 0, to: 1 }
        );
        let err = migrate(&pool, backend, &migrations(&[V1, V2, V3_FAILS]))
            .await
            .expect_err("version 3 fails");
        let message = format!("{err:#}");
        assert!(
            message.contains("migration 3 (step 3) failed")
                && message.contains("left as it was, at version 1"),
            "{message}"
        );
        // Version 2 applied before 3 failed, and is undone with it.
        assert_eq!(versions(&pool).await?, [1]);
        assert!(!has_column(&pool, backend, "a", "y").await);
        let mut conn = pool.acquire().await?;
        assert!(!table_exists(&mut conn, backend, "b").await?);
        drop(conn);
        assert_eq!(
            migrate(&pool, backend, &migrations(&[V1, V2])).await?,
            Migrated::Upgraded { from: 1, to: 2 }
        );
        assert_eq!(
            migrate(&pool, backend, &migrations(&[V1, V2])).await?,
            Migrated::Current
        );
        // An applied migration that changed is refused, by its version.
        let changed = "CREATE TABLE IF NOT EXISTS a (x BIGINT)";
        let err = migrate(&pool, backend, &migrations(&[changed, V2]))
            .await
            .expect_err("version 1 changed");
        assert!(
            format!("{err:#}").contains("migration 1 (step 1) differs"),
            "{err:#}"
        );
        // A build that knows fewer migrations than the database has.
        let err = migrate(&pool, backend, &migrations(&[V1]))
            .await
            .expect_err("version 2 unknown");
        assert!(format!("{err:#}").contains("at migration 2"), "{err:#}");
        pool.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_migration_leaves_the_database_as_it_was_on_sqlite() -> anyhow::Result<()> {
        a_failed_migration_leaves_the_database_as_it_was(Backend::Sqlite).await
    }

    #[tokio::test]
    async fn a_failed_migration_leaves_the_database_as_it_was_on_postgres() -> anyhow::Result<()> {
        a_failed_migration_leaves_the_database_as_it_was(Backend::Postgres).await
    }

    async fn a_database_made_before_migrations_is_adopted(backend: Backend) -> anyhow::Result<()> {
        let db = ScratchDb::new(backend, "sqlkit_adopted").await?;
        let (pool, _) = crate::connect(&db.url, 2).await?;
        // Made before migrations: table a, with y but not b.
        crate::run_ddl(&pool, "CREATE TABLE a (x BIGINT NOT NULL, y BIGINT)").await?;
        assert_eq!(
            migrate(&pool, backend, &migrations(&[V1, V2])).await?,
            Migrated::Adopted { to: 2 }
        );
        assert_eq!(versions(&pool).await?, [1, 2]);
        let mut conn = pool.acquire().await?;
        assert!(table_exists(&mut conn, backend, "b").await?);
        drop(conn);
        // Without y, adopted the same; a failure leaves no migrations table.
        let db = ScratchDb::new(backend, "sqlkit_adopted").await?;
        let (pool, _) = crate::connect(&db.url, 2).await?;
        crate::run_ddl(&pool, "CREATE TABLE a (x BIGINT NOT NULL)").await?;
        let err = migrate(&pool, backend, &migrations(&[V1, V2, V3_FAILS]))
            .await
            .expect_err("version 3 fails");
        assert!(
            format!("{err:#}").contains("migration 3 (step 3) failed"),
            "{err:#}"
        );
        let mut conn = pool.acquire().await?;
        assert!(!table_exists(&mut conn, backend, MIGRATIONS_TABLE).await?);
        drop(conn);
        assert!(!has_column(&pool, backend, "a", "y").await);
        assert_eq!(
            migrate(&pool, backend, &migrations(&[V1, V2])).await?,
            Migrated::Adopted { to: 2 }
        );
        assert!(has_column(&pool, backend, "a", "y").await);
        pool.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_database_made_before_migrations_is_adopted_on_sqlite() -> anyhow::Result<()> {
        a_database_made_before_migrations_is_adopted(Backend::Sqlite).await
    }

    #[tokio::test]
    async fn a_database_made_before_migrations_is_adopted_on_postgres() -> anyhow::Result<()> {
        a_database_made_before_migrations_is_adopted(Backend::Postgres).await
    }
}
