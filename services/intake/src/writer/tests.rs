//! intake's writer decides a batch without reading the store when the
//! store's unique keys will check its guesses (request ids new, dossiers
//! opened by Receive or SubmitOnline absent). These tests make each guess
//! wrong inside one batch, after a restart emptied the writer's memory, and
//! check that the batch is decided again from the store: the retry gets its
//! first reply, a second Receive is refused, a dossier submitted online is
//! received, and only the right events are appended. A retry refused by the
//! state its first answer made gets that answer.

use domain::{Channel, Command, Procedure, Timestamp};
use futures::FutureExt as _;
use proto::intake::v1::CommandReply;
use testkit::{Backend, TestDb};
use tokio::sync::watch;

use super::{CommandRequest, History, ImportOutcome, Step, Writer, WriterHandle, system_clock};
use crate::{error::IntakeError, store::EventStore};

/// A desk receipt at `office` (province BTH, procedure 1.001, in person)
/// due at `due_at`, as the writer takes it (tests that drive the writer
/// without gRPC).
pub(crate) fn receive_command(office: &str, due_at: Timestamp) -> Command {
    Command::Receive {
        office_code: office.into(),
        province_code: "BTH".into(),
        procedure: Procedure {
            code: "1.001".into(),
            field: "dat-dai".into(),
        },
        channel: Channel::InPerson,
        due_at: Some(due_at),
    }
}

fn submit_online(office: &str) -> Command {
    Command::SubmitOnline {
        office_code: office.into(),
        province_code: "BTH".into(),
        procedure: Procedure {
            code: "1.001".into(),
            field: "dat-dai".into(),
        },
        channel: Channel::OnlineFull,
    }
}

/// A writer over `store` with nothing in memory, running until its handle
/// is dropped.
fn writer(store: &EventStore) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (writer, handle) = Writer::new(store.clone(), watch::Sender::new(0), system_clock(), 64);
    (handle, tokio::spawn(writer.run()))
}

/// Executes `commands` as one batch: every command is queued before the
/// writer starts, so its first `recv_many` takes them all.
async fn one_batch(
    store: &EventStore,
    commands: Vec<(&str, &str, Command)>,
) -> Vec<Result<CommandReply, IntakeError>> {
    let requests = commands
        .into_iter()
        .map(|(request_id, dossier_id, command)| CommandRequest {
            fingerprint: None,
            ..request(request_id, 0, dossier_id, command)
        })
        .collect();
    one_batch_of(store, requests).await
}

/// A request as intake's gRPC layer gives it, at 4/3/2024 9:00, with the
/// fingerprint of its content.
fn request(
    request_id: &str,
    fingerprint: u64,
    dossier_id: &str,
    command: Command,
) -> CommandRequest {
    CommandRequest {
        request_id: request_id.into(),
        fingerprint: Some(fingerprint),
        actor: "clerk".into(),
        dossier_id: dossier_id.into(),
        occurred_at: Some(Timestamp::at_local(
            domain::LocalDay::from_ymd(2024, 3, 4).expect("a date"),
            9,
            0,
        )),
        command,
        caller: None,
    }
}

/// [`one_batch`] of whole requests.
async fn one_batch_of(
    store: &EventStore,
    requests: Vec<CommandRequest>,
) -> Vec<Result<CommandReply, IntakeError>> {
    let (writer, handle) = Writer::new(store.clone(), watch::Sender::new(0), system_clock(), 64);
    let mut replies = Box::pin(futures::future::join_all(
        requests.into_iter().map(|r| handle.submit(r)),
    ));
    // One poll queues every command (each waits for its reply after).
    assert!((&mut replies).now_or_never().is_none());
    let running = tokio::spawn(writer.run());
    let replies = replies.await;
    drop(handle);
    running.await.expect("the writer ends");
    replies
}

async fn wrong_guesses_are_decided_again(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend, "writer_guesses").await?;
    let store = EventStore::open(&db.url).await?;
    let due = Timestamp::at_local(
        domain::LocalDay::from_ymd(2024, 3, 14).expect("a date"),
        17,
        0,
    );

    // Before the restart: X received and resolved (the result's retry
    // comes when X no longer takes a result: its first reply wins over the
    // refusal), Y submitted online.
    let (handle, running) = writer(&store);
    let at = Some(Timestamp::at_local(
        domain::LocalDay::from_ymd(2024, 3, 1).expect("a date"),
        9,
        0,
    ));
    let first = handle
        .execute(
            "r-x".into(),
            "clerk".into(),
            "X".into(),
            at,
            receive_command("TP", due),
        )
        .await?;
    let record_result = || {
        handle.execute(
            "r-res".into(),
            "clerk".into(),
            "X".into(),
            at,
            Command::RecordResult,
        )
    };
    let resolved = record_result().await?;
    let retried = record_result().await?;
    assert_eq!(retried, resolved);
    handle
        .execute(
            "r-y".into(),
            "citizen".into(),
            "Y".into(),
            at,
            submit_online("TP"),
        )
        .await?;
    drop(handle);
    running.await?;
    assert_eq!(store.count().await?, 3);

    // After it, in one batch: the retry of X's receipt, a second receipt of
    // X under a new request id, the desk receiving Y, and a new dossier Z.
    let replies = one_batch(
        &store,
        vec![
            ("r-x", "X", receive_command("TP", due)),
            ("r-x-again", "X", receive_command("TP", due)),
            ("r-y-desk", "Y", receive_command("TP", due)),
            ("r-z", "Z", receive_command("TP", due)),
        ],
    )
    .await;
    let [retry, again, y, z] = <[_; 4]>::try_from(replies).expect("four replies");
    assert_eq!(retry?, first, "a retry gets the first reply");
    match again {
        Err(IntakeError::Refused(refusal)) => {
            assert!(refusal.to_string().contains("already exists"), "{refusal}")
        }
        other => panic!("a second receipt of X must be refused, got {other:?}"),
    }
    let y = y?;
    assert_eq!((y.dossier_id.as_str(), y.version), ("Y", 2));
    let z = z?;
    assert_eq!((z.dossier_id.as_str(), z.version), ("Z", 1));
    // Y's receipt and Z's: nothing else was appended.
    assert_eq!(store.count().await?, 5);
    assert_eq!(store.head().await?, 5);
    assert_eq!([y.position, z.position].iter().max(), Some(&5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_guesses_are_decided_again_on_sqlite() -> anyhow::Result<()> {
    wrong_guesses_are_decided_again(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_guesses_are_decided_again_on_postgres() -> anyhow::Result<()> {
    wrong_guesses_are_decided_again(Backend::Postgres).await
}

/// One history of `steps` for `dossier`, its request id named by `row`.
fn history(row: u64, dossier: &str, steps: Vec<(Timestamp, Command)>) -> History {
    History {
        row,
        request_id: format!("import:{dossier}:{row}"),
        actor: "import".into(),
        dossier_id: dossier.into(),
        steps: steps
            .into_iter()
            .map(|(at, command)| Step {
                column: "received_at",
                at,
                command,
            })
            .collect(),
    }
}

/// Imported dossiers are not kept in the writer's memory: the writer that
/// imported them decides what comes next for them from the store, in a
/// later import and at the desk alike.
async fn imported_dossiers_are_decided_from_the_store(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend, "writer_imported").await?;
    let store = EventStore::open(&db.url).await?;
    let day = |d| domain::LocalDay::from_ymd(2024, 3, d).expect("a date");
    let received = Timestamp::at_local(day(1), 9, 0);
    let due = Timestamp::at_local(day(14), 17, 0);
    let (handle, running) = writer(&store);

    // An open dossier A and a resolved one B, imported.
    let outcomes = handle
        .queue_import(vec![
            history(1, "A", vec![(received, receive_command("TP", due))]),
            history(
                2,
                "B",
                vec![
                    (received, receive_command("TP", due)),
                    (Timestamp::at_local(day(4), 9, 0), Command::RecordResult),
                ],
            ),
        ])
        .await?
        .await??;
    assert!(
        matches!(
            outcomes.as_slice(),
            [
                ImportOutcome::Imported { events: 1, .. },
                ImportOutcome::Imported { events: 2, .. }
            ]
        ),
        "{outcomes:?}"
    );

    // A changed row for A, in a later job of the same writer: refused, from
    // the stored state.
    let again = handle
        .queue_import(vec![history(
            3,
            "A",
            vec![(
                Timestamp::at_local(day(2), 9, 0),
                receive_command("TP", due),
            )],
        )])
        .await?
        .await??;
    match again.as_slice() {
        [ImportOutcome::Rejected(reason)] => {
            assert!(reason.contains("already exists (version 1"), "{reason}")
        }
        other => panic!("a second history of A must be refused, got {other:?}"),
    }

    // At the desk: A takes its result as version 2; B, resolved, takes none.
    let at = Some(Timestamp::at_local(day(5), 9, 0));
    let result = |request: &str, dossier: &str| {
        handle.execute(
            request.into(),
            "clerk".into(),
            dossier.into(),
            at,
            Command::RecordResult,
        )
    };
    let a = result("r-a", "A").await?;
    assert_eq!((a.dossier_id.as_str(), a.version), ("A", 2));
    match result("r-b", "B").await {
        Err(IntakeError::Refused(_)) => {}
        other => panic!("B is resolved already, got {other:?}"),
    }
    drop(handle);
    running.await?;
    assert_eq!(store.count().await?, 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_dossiers_are_decided_from_the_store_on_sqlite() -> anyhow::Result<()> {
    imported_dossiers_are_decided_from_the_store(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_dossiers_are_decided_from_the_store_on_postgres() -> anyhow::Result<()> {
    imported_dossiers_are_decided_from_the_store(Backend::Postgres).await
}

#[track_caller]
fn assert_reused(reply: Result<CommandReply, IntakeError>, request_id: &str) {
    match reply {
        Err(IntakeError::RequestIdReused { request_id: id }) => assert_eq!(id, request_id),
        other => panic!("{request_id} was used for another command, got {other:?}"),
    }
}

/// A request id answers the command it was first used for: a retry gets
/// its reply, another command under it is refused and appends nothing,
/// whether the state would refuse that command or accept it (the writer's
/// optimistic attempt then appends nothing: the replies' unique key sends
/// the batch to be decided again with the stored reply read), after a
/// restart, and within one batch. A store made before fingerprints gets its
/// column, and its replies answer any command as before.
fn request_due() -> Timestamp {
    Timestamp::at_local(
        domain::LocalDay::from_ymd(2024, 3, 14).expect("a date"),
        17,
        0,
    )
}

fn receive_as(id: &str, fingerprint: u64, dossier: &str) -> CommandRequest {
    request(
        id,
        fingerprint,
        dossier,
        receive_command("TP", request_due()),
    )
}

/// One writer: a retry gets the first reply; another command under the
/// same id is refused, whether the state would accept it or not.
async fn one_id_one_command(store: &EventStore) -> anyhow::Result<CommandReply> {
    let (handle, running) = writer(store);
    let first = handle.submit(receive_as("r-1", 1, "X")).await?;
    assert_eq!(handle.submit(receive_as("r-1", 1, "X")).await?, first);
    // Accepted by the state (a new dossier; X's result), refused by the id.
    assert_reused(handle.submit(receive_as("r-1", 2, "W")).await, "r-1");
    assert_reused(
        handle
            .submit(request("r-1", 3, "X", Command::RecordResult))
            .await,
        "r-1",
    );
    // Refused by the state too (X received twice): the id speaks first.
    assert_reused(handle.submit(receive_as("r-1", 4, "X")).await, "r-1");
    drop(handle);
    running.await?;
    assert_eq!(store.count().await?, 1);
    Ok(first)
}

/// After a restart, nothing in memory, in one batch: the retry, the id
/// reused, a new request Z, another command under Z's id, Z's retry.
async fn one_id_one_command_after_a_restart(
    store: &EventStore,
    first: &CommandReply,
) -> anyhow::Result<()> {
    let replies = one_batch_of(
        store,
        vec![
            receive_as("r-1", 1, "X"),
            receive_as("r-1", 2, "W"),
            receive_as("r-2", 5, "Z"),
            receive_as("r-2", 6, "V"),
            receive_as("r-2", 5, "Z"),
        ],
    )
    .await;
    let [retry, reused, z, z_reused, z_retry] = <[_; 5]>::try_from(replies).expect("five replies");
    assert_eq!(&retry?, first, "a retry gets the first reply");
    assert_reused(reused, "r-1");
    let z = z?;
    assert_eq!((z.dossier_id.as_str(), z.version), ("Z", 1));
    assert_reused(z_reused, "r-2");
    assert_eq!(z_retry?, z);
    assert_eq!(store.count().await?, 2);
    Ok(())
}

/// A store from before fingerprints (its column dropped), which was made
/// before migrations too (no migrations table): its replies have none, and
/// answer any command under their ids as before; replies stored after the
/// upgrade have theirs.
async fn replies_from_before_fingerprints(
    db: &TestDb,
    store: EventStore,
    first: &CommandReply,
) -> anyhow::Result<()> {
    let (handle, running) = writer(&store);
    let old = handle
        .execute(
            "r-old".into(),
            "clerk".into(),
            "OLD".into(),
            first_at(),
            receive_command("TP", request_due()),
        )
        .await?;
    drop(handle);
    running.await?;
    sqlx::query("ALTER TABLE command_replies DROP COLUMN fingerprint")
        .execute(store.pool())
        .await?;
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(store.pool())
        .await?;
    store.close().await;
    let store = EventStore::open(&db.url).await?;
    let (handle, running) = writer(&store);
    assert_eq!(handle.submit(receive_as("r-old", 7, "OTHER")).await?, old);
    assert_eq!(&handle.submit(receive_as("r-1", 2, "W")).await?, first);
    let y = handle.submit(receive_as("r-3", 8, "Y")).await?;
    assert_eq!(handle.submit(receive_as("r-3", 8, "Y")).await?, y);
    assert_reused(handle.submit(receive_as("r-3", 9, "V")).await, "r-3");
    drop(handle);
    running.await?;
    // X, Z, OLD and Y.
    assert_eq!(store.count().await?, 4);
    Ok(())
}

async fn a_request_id_answers_one_command(backend: Backend) -> anyhow::Result<()> {
    let db = TestDb::new(backend, "writer_request_ids").await?;
    let first = one_id_one_command(&EventStore::open(&db.url).await?).await?;
    let store = EventStore::open(&db.url).await?;
    one_id_one_command_after_a_restart(&store, &first).await?;
    replies_from_before_fingerprints(&db, store, &first).await
}

fn first_at() -> Option<Timestamp> {
    Some(Timestamp::at_local(
        domain::LocalDay::from_ymd(2024, 3, 1).expect("a date"),
        9,
        0,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_answers_one_command_on_sqlite() -> anyhow::Result<()> {
    a_request_id_answers_one_command(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_answers_one_command_on_postgres() -> anyhow::Result<()> {
    a_request_id_answers_one_command(Backend::Postgres).await
}
