//! The projection's batch write: a dossier row not yet stored is inserted
//! without first looking for a conflicting row (PostgreSQL's fast path;
//! many are copied); when a row taken as new exists after all, the batch is
//! written again with upserts, so a wrong guess costs a retry, never a
//! failed batch. A bulk fill looks up only the rows it wrote, and holds its
//! counters until it ends or holds many.
//!
//! An older checkpoint table is kept, and its rows learn their stream.

use sqlx::Row as _;
use testkit::{Backend, TestDb};

use super::{BatchWrite, Fill, ReadStore};
use crate::{
    apply::{CounterDelta, CounterKey, DossierRow},
    resume::Checkpoint,
};

#[tokio::test]
async fn an_older_checkpoint_is_kept_and_learns_its_stream() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/p.db", dir.path().display());
    let (pool, _) = sqlkit::connect(&url, 1).await?;
    sqlkit::run_ddl(
        &pool,
        "CREATE TABLE checkpoints (consumer TEXT PRIMARY KEY, stream_seq BIGINT NOT NULL);
         INSERT INTO checkpoints VALUES ('projection', 42)",
    )
    .await?;
    pool.close().await;
    let store = ReadStore::open(&url).await?;
    let legacy = Checkpoint {
        stream_seq: 42,
        stream_created: None,
        log_position: None,
        log: None,
    };
    assert_eq!(store.resume_point("projection").await?, legacy);
    assert_eq!(
        store.resume_point("other").await?.log_position,
        Some(0),
        "a new consumer starts at the log's start"
    );
    let mut batch = BatchWrite {
        checkpoint: 50,
        stream_created: Some(7),
        log_position: Some(45),
        ..BatchWrite::default()
    };
    store.commit("projection", &batch).await?;
    // A writer that knows neither (a parked events' replay) keeps both.
    batch.stream_created = None;
    batch.log_position = None;
    store.commit("projection", &batch).await?;
    let now = Checkpoint {
        stream_seq: 50,
        stream_created: Some(7),
        log_position: Some(45),
        log: None,
    };
    assert_eq!(store.resume_point("projection").await?, now);
    store.close().await;
    Ok(())
}

fn row(id: &str, version: i64, status: &str, stored: bool) -> DossierRow {
    DossierRow {
        dossier_id: id.into(),
        office_code: "OFFICE-1".into(),
        province_code: "P01".into(),
        procedure_code: "1.001".into(),
        field: "dat-dai".into(),
        version,
        status: status.into(),
        received_day: Some(20_000),
        stored,
        ..Default::default()
    }
}

fn batch(checkpoint: u64, rows: Vec<DossierRow>) -> BatchWrite {
    let mut write = BatchWrite {
        checkpoint,
        ..Default::default()
    };
    for r in rows {
        write.changes.rows.insert(r.dossier_id.clone(), r);
    }
    write
}

async fn rows_written_as_new_or_stored(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend, "read_store").await?;
    let store = ReadStore::open(&db.url).await?;

    // Two new dossiers.
    store
        .commit(
            "c",
            &batch(
                2,
                vec![
                    row("A", 1, "received", false),
                    row("B", 1, "received", false),
                ],
            ),
        )
        .await?;
    // A stored one moves on; a new one arrives.
    store
        .commit(
            "c",
            &batch(
                3,
                vec![
                    row("A", 2, "resolved", true),
                    row("C", 1, "received", false),
                ],
            ),
        )
        .await?;
    // B taken as new although batch 2 wrote it (a wrong guess): the batch
    // is written all the same, B updated, D inserted.
    store
        .commit(
            "c",
            &batch(
                5,
                vec![
                    row("B", 2, "returned", false),
                    row("D", 1, "received", false),
                ],
            ),
        )
        .await?;

    let loaded = store.load_rows(&["A", "B", "C", "D", "E"]).await?;
    let seen: Vec<(&str, i64, &str, bool)> = ["A", "B", "C", "D"]
        .iter()
        .map(|id| {
            let r = &loaded[*id];
            (*id, r.version, r.status.as_str(), r.stored)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("A", 2, "resolved", true),
            ("B", 2, "returned", true),
            ("C", 1, "received", true),
            ("D", 1, "received", true),
        ]
    );
    assert!(!loaded.contains_key("E"));
    assert_eq!(store.checkpoint("c").await?, 5);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn rows_written_as_new_or_stored_postgres() -> anyhow::Result<()> {
    rows_written_as_new_or_stored(Backend::Postgres).await
}

#[tokio::test]
async fn rows_written_as_new_or_stored_sqlite() -> anyhow::Result<()> {
    rows_written_as_new_or_stored(Backend::Sqlite).await
}

/// `n` new dossiers from `from`, with every kind of column set or empty.
fn many(from: usize, n: usize) -> Vec<DossierRow> {
    (from..from + n)
        .map(|i| DossierRow {
            channel: (i % 5) as i32,
            due_at: (i % 3 != 0).then_some(i as i64 * 1_000_000),
            closed_day: (i % 2 == 0).then_some(20_010),
            timeliness: (i % 2 == 0).then_some(-1),
            late_at: (i % 7 == 0).then_some(-(i as i64)),
            pauses: (i % 4) as i32,
            ..row(&format!("M{i:06}"), 3, "processed", false)
        })
        .collect()
}

/// Large batches of new rows (PostgreSQL copies them) read back as written,
/// and a row taken as new that exists is updated, not refused.
async fn large_batches_of_new_rows(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend, "read_store").await?;
    let store = ReadStore::open(&db.url).await?;
    let first = many(0, 1_500);
    store.commit("c", &batch(10, first.clone())).await?;
    // A stored dossier among the new ones of the next batch, taken as new.
    let mut second = many(1_500, 1_200);
    second.push(row("M000007", 4, "returned", false));
    store.commit("c", &batch(20, second.clone())).await?;

    let expected: Vec<DossierRow> = first
        .into_iter()
        .filter(|r| r.dossier_id != "M000007")
        .chain(second)
        .map(|r| DossierRow { stored: true, ..r })
        .collect();
    let ids: Vec<&str> = expected.iter().map(|r| r.dossier_id.as_str()).collect();
    let loaded = store.load_rows(&ids).await?;
    assert_eq!(loaded.len(), 2_700);
    for r in &expected {
        assert_eq!(&loaded[&r.dossier_id], r);
    }
    assert_eq!(loaded["M000007"].status, "returned");
    assert_eq!(store.checkpoint("c").await?, 20);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn large_batches_of_new_rows_postgres() -> anyhow::Result<()> {
    large_batches_of_new_rows(Backend::Postgres).await
}

#[tokio::test]
async fn large_batches_of_new_rows_sqlite() -> anyhow::Result<()> {
    large_batches_of_new_rows(Backend::Sqlite).await
}

/// A bulk fill (a rebuild's new generation) is the only writer of its
/// tables until it ends: it looks up only the dossiers it wrote itself, and
/// once it ends, every row.
async fn a_bulk_fill_looks_up_what_it_wrote(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend, "read_store").await?;
    let store = ReadStore::open_in(&db.url, None, None, Fill::Bulk).await?;
    store.commit("c", &batch(1, many(0, 1_500))).await?;
    store
        .commit("c", &batch(2, vec![row("A", 1, "received", false)]))
        .await?;
    // A row written behind the fill's back.
    sqlx::query(
        "INSERT INTO dossiers (dossier_id, office_code, province_code, procedure_code, field, \
         channel, version, status, pauses) VALUES ('Z', 'O', 'P', 'X', 'F', 0, 1, 'received', 0)",
    )
    .execute(store.pool())
    .await?;
    let loaded = store.load_rows(&["A", "M000042", "B", "Z"]).await?;
    let mut seen: Vec<&str> = loaded.keys().map(String::as_str).collect();
    seen.sort_unstable();
    assert_eq!(seen, ["A", "M000042"]);

    store.finish_bulk_fill().await?;
    let loaded = store.load_rows(&["A", "M000042", "B", "Z"]).await?;
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded["Z"].version, 1);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn a_bulk_fill_looks_up_what_it_wrote_postgres() -> anyhow::Result<()> {
    a_bulk_fill_looks_up_what_it_wrote(Backend::Postgres).await
}

#[tokio::test]
async fn a_bulk_fill_looks_up_what_it_wrote_sqlite() -> anyhow::Result<()> {
    a_bulk_fill_looks_up_what_it_wrote(Backend::Sqlite).await
}

/// A batch of `rows` that adds `n` to the "received" counter of each
/// (office, day).
fn counted(checkpoint: u64, rows: Vec<DossierRow>, counts: &[(&str, i32, i64)]) -> BatchWrite {
    let mut write = batch(checkpoint, rows);
    for &(office, day, n) in counts {
        write.changes.counters.insert(
            CounterKey {
                office_code: office.into(),
                day,
                procedure_code: "1.001".into(),
                channel: 1,
                metric: "received".into(),
            },
            CounterDelta {
                province_code: "P01".into(),
                field: "dat-dai".into(),
                n,
            },
        );
    }
    write
}

/// The batches of [`counters_add_up_once`], the second with a row taken as
/// new that the first wrote (PostgreSQL writes it twice: a retry).
fn counted_batches() -> [BatchWrite; 3] {
    [
        counted(
            1,
            many(0, 1_200),
            &[("OFFICE-1", 20_000, 2), ("OFFICE-2", 20_000, 1)],
        ),
        counted(
            2,
            vec![row("M000003", 4, "returned", false)],
            &[("OFFICE-1", 20_000, 3), ("OFFICE-1", 20_001, 1)],
        ),
        counted(3, Vec::new(), &[("OFFICE-2", 20_000, 4)]),
    ]
}

async fn daily_counts(store: &ReadStore) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let rows = sqlx::query(
        "SELECT office_code, CAST(day AS BIGINT), CAST(n AS BIGINT) FROM daily_counts \
         ORDER BY office_code, day",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// A bulk fill's counters equal a live store's, whether it writes them at
/// the end or whenever it holds one, two or three rows: each batch's deltas
/// count once, the batch written twice included. Until it writes them, the
/// fill holds them.
async fn counters_add_up_once(backend: Backend) -> anyhow::Result<()> {
    let expected = vec![
        ("OFFICE-1".to_owned(), 20_000, 5),
        ("OFFICE-1".to_owned(), 20_001, 1),
        ("OFFICE-2".to_owned(), 20_000, 5),
    ];
    let db = TestDb::new(backend, "read_store").await?;
    let live = ReadStore::open(&db.url).await?;
    for b in &counted_batches() {
        live.commit("c", b).await?;
    }
    assert_eq!(daily_counts(&live).await?, expected);
    live.close().await;

    for held in [None, Some(1), Some(2), Some(3)] {
        let db = TestDb::new(backend, "read_store").await?;
        let store = ReadStore::open_in(&db.url, None, None, Fill::Bulk).await?;
        if let Some(max) = held {
            store.hold_counts_up_to(max);
        }
        for b in &counted_batches() {
            store.commit("c", b).await?;
        }
        if held.is_none() {
            assert_eq!(daily_counts(&store).await?, [], "held until the fill ends");
        }
        assert_eq!(store.checkpoint("c").await?, 3);
        store.finish_bulk_fill().await?;
        assert_eq!(
            daily_counts(&store).await?,
            expected,
            "holding up to {held:?}"
        );
        store.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn counters_add_up_once_postgres() -> anyhow::Result<()> {
    counters_add_up_once(Backend::Postgres).await
}

#[tokio::test]
async fn counters_add_up_once_sqlite() -> anyhow::Result<()> {
    counters_add_up_once(Backend::Sqlite).await
}
