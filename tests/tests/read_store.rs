//! The projection's batch write: a dossier row not yet stored is inserted
//! without first looking for a conflicting row (PostgreSQL's fast path);
//! when a row taken as new exists after all, the batch is written again
//! with upserts, so a wrong guess costs a retry, never a failed batch.

use projection::{
    apply::DossierRow,
    store::{BatchWrite, ReadStore},
};
use tests::{Backend, TestDb};

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
