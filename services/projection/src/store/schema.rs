//! A generation's schema: its migrations (`migrations/generation/{postgres,
//! sqlite}`: dossiers, pauses, counters, held, parked and late-feed events,
//! checkpoints, the procedure catalog), applied when a store opens, and the
//! reports' indexes, which a rebuild's bulk fill sets aside until it ends.

use std::collections::BTreeMap;

use anyhow::Context as _;
use sqlkit::Backend;
use sqlx::{AnyPool, Row as _};

use super::Fill;

/// A generation's tables: applied in its schema (PostgreSQL, the
/// connections' `search_path`, migrations table included) or its file.
pub static MIGRATIONS: sqlkit::Migrations = sqlkit::Migrations {
    name: "the projection's read models",
    postgres: sqlx::migrate!("migrations/generation/postgres"),
    sqlite: sqlx::migrate!("migrations/generation/sqlite"),
};

/// The indexes reports read through (created by the migrations). A
/// rebuild fills a new generation without them and builds them once, in
/// bulk, before it takes over.
pub(super) const REPORT_INDEXES: [&str; 5] = [
    "dossiers_office_received",
    "dossiers_province_received",
    "daily_counts_province",
    "dossiers_office_open_due",
    "dossiers_province_open_due",
];

/// Creates or migrates a generation's tables. For a [`Fill::Bulk`], then
/// sets the reports' indexes aside: returns their definitions, as the
/// database gives them, for [`ReadStore::finish_bulk_fill`] to build.
///
/// [`ReadStore::finish_bulk_fill`]: super::ReadStore::finish_bulk_fill
pub(crate) async fn create(
    pool: &AnyPool,
    backend: Backend,
    fill: Fill,
) -> anyhow::Result<Vec<String>> {
    sqlkit::migrate(pool, backend, &MIGRATIONS).await?;
    if fill == Fill::Live {
        return Ok(Vec::new());
    }
    let sql = match backend {
        Backend::Postgres => {
            "SELECT CAST(indexname AS TEXT), indexdef FROM pg_indexes \
             WHERE schemaname = current_schema()"
        }
        Backend::Sqlite => "SELECT name, sql FROM sqlite_schema WHERE type = 'index'",
    };
    let mut defined = BTreeMap::new();
    for row in sqlx::query(sql)
        .fetch_all(pool)
        .await
        .context("read the reports' indexes")?
    {
        let name: String = row.try_get(0)?;
        if REPORT_INDEXES.contains(&name.as_str()) {
            defined.insert(name, row.try_get::<String, _>(1)?);
        }
    }
    let mut definitions = Vec::new();
    for name in REPORT_INDEXES {
        let definition = defined
            .remove(name)
            .with_context(|| format!("the migrations create no index {name}"))?;
        sqlkit::run_ddl(pool, &format!("DROP INDEX {name}"))
            .await
            .context("set the reports' indexes aside for a bulk fill")?;
        definitions.push(definition);
    }
    Ok(definitions)
}
