//! Database plumbing shared by intake's event store and projection's read
//! models: opening a sqlx `AnyPool` on PostgreSQL or an embedded SQLite file,
//! migrating its schema ([`migrate`]), running DDL statements, building
//! placeholder lists that both dialects accept (`$1`, `$2`, …), and
//! PostgreSQL's binary `COPY` rows.
//!
//! It knows SQL connections and nothing of events, dossiers or reports.

mod json_rows;
mod migrations;
mod pg_copy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use json_rows::{Column, JsonRows, Kind, json_texts, select_from_json, texts_from_json};
pub use migrations::{MIGRATIONS_TABLE, Migrated, Migrations, migrate};
pub use pg_copy::CopyRows;

/// A builder of one statement's rows, field by field in its column order
/// (a row ends with its last column): [`JsonRows`] and [`CopyRows`], so a
/// record's fields are listed once for both.
pub trait RowFields {
    fn text(&mut self, value: &str) -> &mut Self;
    fn int(&mut self, value: i64) -> &mut Self;
    fn opt_int(&mut self, value: Option<i64>) -> &mut Self;
}

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context as _;
use sqlx::{
    AnyPool, Executor as _,
    any::{AnyConnectOptions, AnyPoolOptions},
};

/// Which SQL dialect the pool speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            anyhow::bail!(
                "unsupported database URL {url:?}: expected postgres://… or sqlite://path/to/file.db"
            )
        }
    }
}

/// What a commit promises when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The commit is on disk: it survives a crash of the machine.
    Durable,
    /// The commit is visible and atomic but reaches the disk a moment
    /// later: a crash can lose the last commits, never half of one. For
    /// data derived from a log that can be read again (the read models and
    /// their checkpoint commit together, so a lost commit is re-applied).
    /// PostgreSQL `synchronous_commit = off`, SQLite `synchronous = NORMAL`.
    Relaxed,
}

/// Connects, creating an SQLite file (and its folder) when needed.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<(AnyPool, Backend)> {
    connect_in(url, None, max_connections, Durability::Durable).await
}

/// Whether `name` can be used as an SQL identifier without quoting.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A pool of sqlx's native PostgreSQL driver beside an [`AnyPool`] on the
/// same database, with the same session settings (`schema`, `durability`,
/// a plan per execution), for the batch statements that bind arrays: the
/// Any driver binds scalars only.
///
/// Its statements read by key only, so sequential scans are off: a lookup
/// of thousands of keys (`= ANY($1)`) in a table never analyzed (autovacuum
/// may be off, a new generation never was) is otherwise planned as a scan
/// of the whole table, batch after batch, as the table grows to millions.
pub async fn connect_postgres(
    url: &str,
    schema: Option<&str>,
    max_connections: u32,
    durability: Durability,
    acquire_timeout: Duration,
) -> anyhow::Result<sqlx::PgPool> {
    let mut settings = postgres_settings(schema, durability)?;
    settings.push(("enable_seqscan", "off"));
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .with_context(|| format!("parse database URL {}", redact(url)))?
        .options(settings);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("connect to the database at {}", redact(url)))
}

/// The session settings of every PostgreSQL connection: `schema` as the
/// search path, `durability`, and a plan per execution (a generic plan
/// cached while a table was empty, as a new generation's are, scans it
/// whole for ever after, as it grows to millions of rows).
fn postgres_settings(
    schema: Option<&str>,
    durability: Durability,
) -> anyhow::Result<Vec<(&'static str, &str)>> {
    let mut settings = vec![("plan_cache_mode", "force_custom_plan")];
    if let Some(schema) = schema {
        anyhow::ensure!(is_identifier(schema), "{schema:?} is not a schema name");
        settings.push(("search_path", schema));
    }
    if durability == Durability::Relaxed {
        settings.push(("synchronous_commit", "off"));
    }
    Ok(settings)
}

/// One column of a batch, for a statement that binds an array per column.
pub fn column<'a, T, U>(items: &'a [T], value: impl Fn(&'a T) -> U) -> Vec<U> {
    items.iter().map(value).collect()
}

/// How long a caller waits for a pooled connection, unless it says
/// otherwise: long enough for a busy pool to free one.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// As [`connect`]; on PostgreSQL every connection works in `schema`
/// (created when absent). SQLite has no schemas: `schema` must be None.
pub async fn connect_in(
    url: &str,
    schema: Option<&str>,
    max_connections: u32,
    durability: Durability,
) -> anyhow::Result<(AnyPool, Backend)> {
    connect_in_with(url, schema, max_connections, durability, ACQUIRE_TIMEOUT).await
}

/// As [`connect_in`], waiting at most `acquire_timeout` for a connection
/// (also while the database does not answer): a service that would rather
/// fail a call soon than hold it sets it short.
pub async fn connect_in_with(
    url: &str,
    schema: Option<&str>,
    max_connections: u32,
    durability: Durability,
    acquire_timeout: Duration,
) -> anyhow::Result<(AnyPool, Backend)> {
    sqlx::any::install_default_drivers();
    let backend = Backend::from_url(url)?;
    // Statements each new connection runs first.
    let session: Vec<String> = match backend {
        Backend::Sqlite => {
            anyhow::ensure!(schema.is_none(), "SQLite has no schemas");
            // WAL lets readers run beside the one writer; FULL makes every
            // commit durable before it returns, NORMAL at WAL checkpoints.
            let synchronous = match durability {
                Durability::Durable => "FULL",
                Durability::Relaxed => "NORMAL",
            };
            vec![
                "PRAGMA journal_mode = WAL".to_owned(),
                format!("PRAGMA synchronous = {synchronous}"),
                "PRAGMA busy_timeout = 10000".to_owned(),
            ]
        }
        Backend::Postgres => postgres_settings(schema, durability)?
            .into_iter()
            .map(|(name, value)| format!("SET {name} TO {value}"))
            .collect(),
    };
    let mut url = url.to_owned();
    if backend == Backend::Sqlite {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        if path != ":memory:"
            && let Some(parent) = Path::new(&path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create the database folder {}", parent.display()))?;
        }
        if !url.contains("mode=") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("mode=rwc");
        }
    }
    let options =
        AnyConnectOptions::from_str(&url).with_context(|| format!("parse database URL {url:?}"))?;
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            let session = session.clone();
            Box::pin(async move {
                for statement in session {
                    conn.execute(sqlx::AssertSqlSafe(statement)).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("connect to the database at {}", redact(&url)))?;
    Ok((pool, backend))
}

/// Runs DDL statements one by one (SQLite runs one statement per call),
/// each timed at debug (a rebuild's index builds take seconds).
pub async fn run_ddl(pool: &AnyPool, statements: &str) -> anyhow::Result<()> {
    for statement in statements
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let started = std::time::Instant::now();
        pool.execute(sqlx::AssertSqlSafe(statement.to_owned()))
            .await
            .with_context(|| format!("apply schema statement: {statement}"))?;
        tracing::debug!(statement, elapsed = ?started.elapsed(), "schema statement applied");
    }
    Ok(())
}

impl Backend {
    /// Appends the placeholder of the `n`-th parameter (1-based): `$n` for
    /// PostgreSQL, an anonymous `?` for SQLite. SQLite looks named and
    /// numbered parameters up in a list on every bind, so a statement of
    /// thousands of `$n` takes quadratic time; anonymous ones bind in order.
    /// (Statements that reuse a parameter keep `$n`: they are small.)
    pub fn push_placeholder(self, sql: &mut String, n: usize) {
        match self {
            Backend::Postgres => {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            Backend::Sqlite => sql.push('?'),
        }
    }
}

/// `($1, $2), ($3, $4)`: placeholders for `rows` rows of `cols` columns.
pub fn values_placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            backend.push_placeholder(&mut sql, r * cols + c + 1);
        }
        sql.push(')');
    }
    sql
}

/// `$1, $2, $3`: placeholders for an `IN (…)` list.
pub fn list_placeholders(backend: Backend, n: usize) -> String {
    let mut sql = String::with_capacity(n * 4);
    for i in 1..=n {
        if i > 1 {
            sql.push(',');
        }
        backend.push_placeholder(&mut sql, i);
    }
    sql
}

/// Adds one bind argument, with a readable error.
pub fn push<'q, T>(args: &mut sqlx::any::AnyArguments, value: T) -> anyhow::Result<()>
where
    T: sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + 'q,
{
    use sqlx::Arguments as _;
    args.add(value)
        .map_err(|e| anyhow::anyhow!("encode a query argument: {e}"))
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_across_rows() {
        assert_eq!(
            values_placeholders(Backend::Postgres, 2, 2),
            "($1,$2),($3,$4)"
        );
        assert_eq!(values_placeholders(Backend::Sqlite, 1, 2), "(?,?)");
        assert_eq!(list_placeholders(Backend::Sqlite, 2), "?,?");
        assert_eq!(list_placeholders(Backend::Postgres, 3), "$1,$2,$3");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_expected_forms() {
        let err = Backend::from_url("mysql://x").unwrap_err().to_string();
        assert!(err.contains("postgres://"), "{err}");
    }
}
