//! The event store's migrations, on SQLite and on PostgreSQL (a fresh
//! database per test; `MOTCUA_TEST_POSTGRES` names the server): a store at
//! each earlier version, and one made before migrations, opened the normal
//! way, ends with the schema of a fresh store, as each database's own
//! catalogue describes it; the rows it held read as before.

use super::{EventStore, MIGRATIONS};
use sqlkit::{
    Backend, MIGRATIONS_TABLE,
    testing::{SchemaDescription, ScratchDb, describe},
};
use sqlx::{AnyPool, Row as _};

async fn fresh_schema(backend: Backend) -> anyhow::Result<SchemaDescription> {
    let db = ScratchDb::new(backend, "intake_fresh").await?;
    let store = EventStore::open(&db.url).await?;
    let schema = describe(store.pool(), backend).await?;
    store.close().await;
    // The catalogue is read: a comparison with empty sets proves nothing.
    assert_eq!(schema.tables.len(), 6, "{schema:?}");
    assert!(schema.indexes.iter().any(|i| i.contains("deadlines_at")));
    assert!(schema.columns.iter().any(|c| c.contains("fingerprint")));
    Ok(schema)
}

/// One event and the reply that answered it, as a store before
/// fingerprints held them.
async fn one_event_and_reply(pool: &AnyPool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (position, event_id, dossier_id, version, kind, recorded_at, payload) \
         VALUES (1, 'e-1', 'HS-1', 1, 'Received', 5, $1)",
    )
    .bind(vec![1u8, 2])
    .execute(pool)
    .await?;
    sqlx::query("INSERT INTO command_replies (request_id, position, reply) VALUES ('r-1', 1, $1)")
        .bind(vec![3u8])
        .execute(pool)
        .await?;
    sqlx::query("UPDATE log_head SET position = 1 WHERE id = 1")
        .execute(pool)
        .await?;
    Ok(())
}

/// Opens the store the normal way and checks its schema, its migrations and
/// the rows [`one_event_and_reply`] left.
async fn opens_as_fresh(
    db: &ScratchDb,
    fresh: &SchemaDescription,
    from: &str,
) -> anyhow::Result<()> {
    let backend = db.backend;
    let store = EventStore::open(&db.url).await?;
    let schema = describe(store.pool(), backend).await?;
    assert_eq!(
        schema.differences(fresh),
        Vec::<String>::new(),
        "{backend:?}, from {from}: the schema differs from a fresh store's"
    );
    let versions: Vec<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {MIGRATIONS_TABLE} WHERE success ORDER BY version"
    )))
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    assert_eq!(
        versions,
        (1..=MIGRATIONS.latest(backend)).collect::<Vec<_>>(),
        "{backend:?}, from {from}"
    );
    let replies = store.find_replies(&["r-1"]).await?;
    let reply = &replies["r-1"];
    assert_eq!((reply.position, &reply.reply[..]), (1, &[3u8][..]));
    assert_eq!(reply.fingerprint, None, "a reply from before fingerprints");
    assert_eq!(store.count().await?, 1);
    assert_eq!(
        store.identity().first_position,
        1,
        "the identity is drawn after the events the store held"
    );
    store.close().await;
    // Opened again, nothing is left to do.
    let (pool, _) = sqlkit::connect(&db.url, 1).await?;
    assert_eq!(
        sqlkit::migrate(&pool, backend, &MIGRATIONS).await?,
        sqlkit::Migrated::Current
    );
    pool.close().await;
    Ok(())
}

async fn each_earlier_version_upgrades(backend: Backend) -> anyhow::Result<()> {
    let fresh = fresh_schema(backend).await?;
    let latest = MIGRATIONS.latest(backend);
    assert!(latest >= 3, "versions 1 to {latest}");
    for version in 1..latest {
        let db = ScratchDb::new(backend, "intake_version").await?;
        let (pool, _) = sqlkit::connect(&db.url, 1).await?;
        MIGRATIONS
            .for_backend(backend)
            .run_to(version, &pool)
            .await?;
        one_event_and_reply(&pool).await?;
        pool.close().await;
        opens_as_fresh(&db, &fresh, &format!("version {version}")).await?;
    }
    Ok(())
}

#[tokio::test]
async fn each_earlier_version_upgrades_on_sqlite() -> anyhow::Result<()> {
    each_earlier_version_upgrades(Backend::Sqlite).await
}

#[tokio::test]
async fn each_earlier_version_upgrades_on_postgres() -> anyhow::Result<()> {
    each_earlier_version_upgrades(Backend::Postgres).await
}

/// The DDL intake ran before migrations (a copy of the code's strings).
fn before_migrations(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => include_str!("fixtures/before_migrations.postgres.sql"),
        Backend::Sqlite => include_str!("fixtures/before_migrations.sqlite.sql"),
    }
}

async fn stores_made_before_migrations_are_adopted(backend: Backend) -> anyhow::Result<()> {
    let fresh = fresh_schema(backend).await?;
    let latest = before_migrations(backend);
    // The same, from before fingerprints and log identities.
    let fingerprint = match backend {
        Backend::Postgres => ",\n    fingerprint BIGINT\n",
        Backend::Sqlite => ",\n    fingerprint INTEGER\n",
    };
    assert!(latest.contains(fingerprint));
    let identity = latest
        .find("CREATE TABLE IF NOT EXISTS log_identity")
        .expect("the fixture creates log_identity");
    let older = latest[..identity].replace(fingerprint, "\n");
    for (from, ddl) in [("today's DDL", latest.to_owned()), ("older DDL", older)] {
        let db = ScratchDb::new(backend, "intake_adopted").await?;
        let (pool, _) = sqlkit::connect(&db.url, 1).await?;
        sqlkit::run_ddl(&pool, &ddl).await?;
        one_event_and_reply(&pool).await?;
        pool.close().await;
        opens_as_fresh(&db, &fresh, from).await?;
    }
    Ok(())
}

#[tokio::test]
async fn stores_made_before_migrations_are_adopted_on_sqlite() -> anyhow::Result<()> {
    stores_made_before_migrations_are_adopted(Backend::Sqlite).await
}

#[tokio::test]
async fn stores_made_before_migrations_are_adopted_on_postgres() -> anyhow::Result<()> {
    stores_made_before_migrations_are_adopted(Backend::Postgres).await
}
