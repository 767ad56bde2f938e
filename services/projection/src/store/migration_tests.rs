//! The projection's migrations, on SQLite and on PostgreSQL (a fresh
//! database per test; `MOTCUA_TEST_POSTGRES` names the server): a
//! generation at each earlier version, and one made before migrations,
//! opened the normal way (`Generations::open_store`), ends with the schema
//! of a fresh generation, as each database's own catalogue describes it;
//! the rows it held read as before. Each generation keeps its own
//! migrations, apart from the control table's.

use super::{Fill, ReadStore, schema::MIGRATIONS};
use crate::{
    generations::{CONTROL_MIGRATIONS, Generations},
    resume::Checkpoint,
};
use sqlkit::{
    Backend, MIGRATIONS_TABLE,
    testing::{SchemaDescription, ScratchDb, describe},
};
use sqlx::{AnyPool, Row as _};

/// A connection to generation `generation`'s schema or file, created when
/// absent, with nothing in it.
async fn connect_generation(db: &ScratchDb, generation: u64) -> anyhow::Result<AnyPool> {
    Ok(match db.backend {
        Backend::Postgres => {
            let (control, _) = sqlkit::connect(&db.url, 1).await?;
            sqlkit::run_ddl(
                &control,
                &format!("CREATE SCHEMA IF NOT EXISTS motcua_g{generation}"),
            )
            .await?;
            control.close().await;
            let schema = format!("motcua_g{generation}");
            sqlkit::connect_in(&db.url, Some(&schema), 1, sqlkit::Durability::Durable)
                .await?
                .0
        }
        Backend::Sqlite => {
            let stem = db.url.strip_suffix(".db").expect("a .db file");
            sqlkit::connect(&format!("{stem}.g{generation}.db"), 1)
                .await?
                .0
        }
    })
}

async fn fresh_schema(backend: Backend) -> anyhow::Result<SchemaDescription> {
    let db = ScratchDb::new(backend, "projection_fresh").await?;
    let generations = Generations::open(&db.url).await?;
    let store = generations.open_store(1, None, Fill::Live).await?;
    let schema = describe(store.pool(), backend).await?;
    store.close().await;
    generations.close().await;
    // The catalogue is read: a comparison with empty sets proves nothing.
    assert_eq!(schema.tables.len(), 9, "{schema:?}");
    assert!(
        schema
            .indexes
            .iter()
            .any(|i| i.contains("dossiers_office_open_due") && i.contains("closed_day IS NULL")),
        "{:?}",
        schema.indexes
    );
    assert!(schema.columns.iter().any(|c| c.contains("parked_at")));
    Ok(schema)
}

/// A checkpoint and a parked event, as a generation before their later
/// columns held them.
async fn old_rows(pool: &AnyPool) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO checkpoints (consumer, stream_seq) VALUES ('projection', 42)")
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO parked_events (stream_seq, subject, reason, payload) \
         VALUES (7, 's', 'old', $1)",
    )
    .bind(vec![0u8])
    .execute(pool)
    .await?;
    Ok(())
}

async fn versions(pool: &AnyPool) -> anyhow::Result<Vec<i64>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {MIGRATIONS_TABLE} WHERE success ORDER BY version"
    )))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| r.try_get(0).map_err(Into::into))
    .collect()
}

/// Opens generation 1 the normal way and checks its schema, its migrations
/// and the rows [`old_rows`] left.
async fn opens_as_fresh(
    db: &ScratchDb,
    fresh: &SchemaDescription,
    from: &str,
) -> anyhow::Result<()> {
    let backend = db.backend;
    let generations = Generations::open(&db.url).await?;
    let store = generations.open_store(1, None, Fill::Live).await?;
    let schema = describe(store.pool(), backend).await?;
    assert_eq!(
        schema.differences(fresh),
        Vec::<String>::new(),
        "{backend:?}, from {from}: the schema differs from a fresh generation's"
    );
    assert_eq!(
        versions(store.pool()).await?,
        (1..=MIGRATIONS.latest(backend)).collect::<Vec<_>>(),
        "{backend:?}, from {from}"
    );
    let legacy = Checkpoint {
        stream_seq: 42,
        stream_created: None,
        log_position: None,
        log: None,
    };
    assert_eq!(store.resume_point("projection").await?, legacy);
    let row = sqlx::query("SELECT reason, position, parked_at FROM parked_events")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(
        (
            row.try_get::<String, _>(0)?,
            row.try_get::<Option<i64>, _>(1)?,
            row.try_get::<i64, _>(2)?
        ),
        ("old".to_owned(), None, 0)
    );
    store.close().await;
    generations.close().await;
    let pool = connect_generation(db, 1).await?;
    assert_eq!(
        sqlkit::migrate(&pool, backend, &MIGRATIONS).await?,
        sqlkit::Migrated::Current,
        "opened again, nothing is left to do"
    );
    pool.close().await;
    Ok(())
}

async fn each_earlier_version_upgrades(backend: Backend) -> anyhow::Result<()> {
    let fresh = fresh_schema(backend).await?;
    let latest = MIGRATIONS.latest(backend);
    assert!(latest >= 3, "versions 1 to {latest}");
    for version in 1..latest {
        let db = ScratchDb::new(backend, "projection_version").await?;
        let pool = connect_generation(&db, 1).await?;
        MIGRATIONS
            .for_backend(backend)
            .run_to(version, &pool)
            .await?;
        old_rows(&pool).await?;
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

/// The DDL of a generation before migrations (a copy of the code's strings).
fn before_migrations(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => include_str!("fixtures/generation_before_migrations.postgres.sql"),
        Backend::Sqlite => include_str!("fixtures/generation_before_migrations.sqlite.sql"),
    }
}

async fn generations_made_before_migrations_are_adopted(backend: Backend) -> anyhow::Result<()> {
    let fresh = fresh_schema(backend).await?;
    let latest = before_migrations(backend);
    // The same, from before the parked events' and the checkpoints' later
    // columns.
    let checkpoint_columns =
        ",\n    stream_created BIGINT,\n    log_position   BIGINT,\n    log_id         TEXT\n";
    let parked_columns = ",\n    position   BIGINT,\n    dossier_id TEXT,\n    version    BIGINT,\n    parked_at  BIGINT NOT NULL DEFAULT 0\n";
    assert!(latest.contains(checkpoint_columns) && latest.contains(parked_columns));
    let older = latest
        .replace(checkpoint_columns, "\n")
        .replace(parked_columns, "\n");
    for (from, ddl) in [("today's DDL", latest.to_owned()), ("older DDL", older)] {
        let db = ScratchDb::new(backend, "projection_adopted").await?;
        // The control table too, from before migrations, serving generation 1.
        let (control, _) = sqlkit::connect(&db.url, 1).await?;
        sqlkit::run_ddl(
            &control,
            "CREATE TABLE IF NOT EXISTS projection_generations (id BIGINT PRIMARY KEY, state TEXT NOT NULL);
             INSERT INTO projection_generations (id, state) VALUES (1, 'serving')",
        )
        .await?;
        control.close().await;
        let pool = connect_generation(&db, 1).await?;
        sqlkit::run_ddl(&pool, &ddl).await?;
        old_rows(&pool).await?;
        pool.close().await;
        opens_as_fresh(&db, &fresh, from).await?;
        let generations = Generations::open(&db.url).await?;
        assert_eq!(generations.serving().await?, 1);
        generations.close().await;
        let (control, _) = sqlkit::connect(&db.url, 1).await?;
        assert_eq!(
            versions(&control).await?,
            (1..=CONTROL_MIGRATIONS.latest(backend)).collect::<Vec<_>>()
        );
        control.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn generations_made_before_migrations_are_adopted_on_sqlite() -> anyhow::Result<()> {
    generations_made_before_migrations_are_adopted(Backend::Sqlite).await
}

#[tokio::test]
async fn generations_made_before_migrations_are_adopted_on_postgres() -> anyhow::Result<()> {
    generations_made_before_migrations_are_adopted(Backend::Postgres).await
}

/// A rebuild's generation is filled without the reports' indexes, and has
/// them, as a fresh generation does, once the fill ends; on PostgreSQL each
/// generation's migrations table is in its own schema.
async fn a_bulk_fill_ends_with_the_fresh_schema(backend: Backend) -> anyhow::Result<()> {
    let fresh = fresh_schema(backend).await?;
    let db = ScratchDb::new(backend, "projection_bulk").await?;
    let generations = Generations::open(&db.url).await?;
    let live = generations.open_store(1, None, Fill::Live).await?;
    let store: ReadStore = generations.open_store(2, None, Fill::Bulk).await?;
    let filling = describe(store.pool(), backend).await?;
    let missing: Vec<String> = fresh.differences(&filling);
    assert_eq!(
        missing.len(),
        5,
        "the reports' five indexes wait: {missing:?}"
    );
    assert!(
        missing.iter().all(|d| d.starts_with("- index ")),
        "{missing:?}"
    );
    store.finish_bulk_fill().await?;
    assert_eq!(
        describe(store.pool(), backend).await?.differences(&fresh),
        Vec::<String>::new()
    );
    if backend == Backend::Postgres {
        let schemas: Vec<String> = sqlx::query(
            "SELECT CAST(table_schema AS TEXT) FROM information_schema.tables \
             WHERE table_name = '_sqlx_migrations' ORDER BY 1",
        )
        .fetch_all(live.pool())
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        assert_eq!(schemas, ["motcua_g1", "motcua_g2", "public"]);
    }
    store.close().await;
    live.close().await;
    generations.close().await;
    Ok(())
}

#[tokio::test]
async fn a_bulk_fill_ends_with_the_fresh_schema_on_sqlite() -> anyhow::Result<()> {
    a_bulk_fill_ends_with_the_fresh_schema(Backend::Sqlite).await
}

#[tokio::test]
async fn a_bulk_fill_ends_with_the_fresh_schema_on_postgres() -> anyhow::Result<()> {
    a_bulk_fill_ends_with_the_fresh_schema(Backend::Postgres).await
}
