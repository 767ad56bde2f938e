//! Deadlines end to end: intake's deadline monitor appends Late when a due
//! date ends (under a shifted clock, so tests do not wait for midnight),
//! exactly once across restarts and instances, and the projection's late
//! feed shows it to watchers who may disconnect and resume.

use std::{collections::BTreeSet, time::Duration};

use domain::{LocalDay, Timestamp};
use proto::reports::v1 as rp;
use tests::{
    Backend, ChildService, Deadlines, Desk, NatsServer, Pair, TestDb, eventually, next_notice,
    offset_to,
};

fn day(y: i32, m: u8, d: u8) -> LocalDay {
    LocalDay::from_ymd(y, m, d).expect("a real date")
}

fn at(y: i32, m: u8, d: u8, h: u8) -> Timestamp {
    Timestamp::at_local(day(y, m, d), h, 0)
}

const SECOND: i64 = 1_000_000;
const WAIT: Duration = Duration::from_secs(20);

fn ids(dossiers: &[rp::OpenDossier]) -> Vec<&str> {
    dossiers.iter().map(|d| d.dossier_id.as_str()).collect()
}

fn change(n: &rp::LateNotice) -> rp::LateChange {
    rp::LateChange::try_from(n.change).unwrap_or(rp::LateChange::Unspecified)
}

async fn a_dossier_shows_up_on_a_watch_when_its_due_date_ends(
    backend: Backend,
) -> anyhow::Result<()> {
    // Intake's clock reads 2024-03-11 23:59:58 local: two seconds before the
    // end of dossier A's due date.
    let deadline = Timestamp::at_local(day(2024, 3, 12), 0, 0);
    let clock = intake::offset_clock(offset_to(deadline.plus_micros(-2 * SECOND)));
    let pair = Pair::start_with_clock(backend, clock).await?;
    let desk = pair.desk().await?;
    let deadlines = pair.deadlines().await?;
    let mut feed = deadlines.watch("TP", None).await?;

    desk.receive("A", "TP", at(2024, 3, 11, 8), at(2024, 3, 11, 17))
        .await?;
    desk.receive("B", "TP", at(2024, 3, 11, 8), at(2024, 3, 12, 17))
        .await?;
    desk.receive("C", "TP", at(2024, 3, 11, 8), at(2024, 3, 11, 17))
        .await?;
    desk.record_result("C", at(2024, 3, 11, 16)).await?;
    // Another office's dossier, late at the same instant: not in this feed.
    desk.receive("X", "OTHER", at(2024, 3, 11, 8), at(2024, 3, 11, 17))
        .await?;

    // Before the deadline: A and B are due within two days, nothing overdue.
    eventually(WAIT, || async {
        let soon = deadlines.due_soon("TP", at(2024, 3, 11, 12), 48).await?;
        anyhow::ensure!(ids(&soon) == ["A", "B"], "due soon: {:?}", ids(&soon));
        Ok(())
    })
    .await?;
    let before = deadlines
        .overdue("TP", Some(deadline.plus_micros(-SECOND)), 10)
        .await?;
    assert!(before.is_empty(), "{:?}", ids(&before));

    // The due date ends: A arrives on the watch, and only A.
    let notice = next_notice(&mut feed, WAIT).await?;
    assert_eq!(notice.dossier_id, "A");
    assert_eq!(change(&notice), rp::LateChange::BecameLate);
    assert_eq!(notice.office_code, "TP");
    assert_eq!(notice.due_at, tests::ts(at(2024, 3, 11, 17)));
    assert_eq!(notice.occurred_at, tests::ts(deadline));
    let overdue = deadlines
        .overdue("TP", Some(deadline.plus_micros(SECOND)), 10)
        .await?;
    assert_eq!(ids(&overdue), ["A"]);
    assert!(overdue[0].marked_late);
    // And as of now (the projection's own clock, years later): A and B.
    let now = deadlines.overdue("TP", None, 1).await?;
    assert_eq!(ids(&now), ["A", "B"]);

    // A late dossier resolved: the watch hears it again.
    desk.record_result("A", deadline.plus_micros(SECOND))
        .await?;
    let notice = next_notice(&mut feed, WAIT).await?;
    assert_eq!(
        (notice.dossier_id.as_str(), change(&notice)),
        ("A", rp::LateChange::Resolved)
    );
    let stats = pair
        .province()
        .await?
        .statistics("TP", day(2024, 3, 1), day(2024, 3, 31))
        .await?;
    assert_eq!(
        (
            stats.resolved_early,
            stats.resolved_on_due_date,
            stats.resolved_late
        ),
        (0, 1, 1)
    );

    let late = pair.intake_store.kind_counts("late").await?;
    assert_eq!(late.get("A"), Some(&1));
    assert_eq!(late.get("X"), Some(&1));
    assert_eq!(late.len(), 2, "{late:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dossier_shows_up_on_a_watch_when_its_due_date_ends_on_sqlite() -> anyhow::Result<()> {
    a_dossier_shows_up_on_a_watch_when_its_due_date_ends(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dossier_shows_up_on_a_watch_when_its_due_date_ends_on_postgres() -> anyhow::Result<()> {
    a_dossier_shows_up_on_a_watch_when_its_due_date_ends(Backend::Postgres).await
}

fn intake_env(
    db: &TestDb,
    nats: &NatsServer,
    stream: &str,
    clock_offset: i64,
) -> Vec<(&'static str, String)> {
    vec![
        ("INTAKE_DATABASE_URL", db.url.clone()),
        ("NATS_URL", nats.url()),
        ("MOTCUA_STREAM", stream.to_owned()),
        (
            "MOTCUA_SUBJECT_PREFIX",
            format!("{}.events", stream.to_ascii_lowercase()),
        ),
        ("INTAKE_CLOCK_OFFSET", format!("{}ms", clock_offset / 1000)),
    ]
}

/// Waits until `store` holds `n` Late events, and checks none is repeated.
async fn wait_for_late(store: &intake::EventStore, n: usize) -> anyhow::Result<()> {
    eventually(WAIT, || async {
        let late = store.kind_counts("late").await?;
        anyhow::ensure!(late.len() == n, "{} of {n} dossiers late", late.len());
        Ok(())
    })
    .await?;
    let late = store.kind_counts("late").await?;
    let repeated: Vec<_> = late.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "Late more than once: {repeated:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_killed_before_a_deadline_and_restarted_after_it_emits_late_once()
-> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let db = TestDb::new(Backend::Sqlite, "intake").await?;
    let stream = tests::unique_stream();
    let deadline = Timestamp::at_local(day(2024, 3, 12), 0, 0);
    // An hour before the deadline.
    let before = offset_to(deadline.plus_micros(-3600 * SECOND));
    let mut intake =
        ChildService::start("intake", &intake_env(&db, &nats, &stream, before)).await?;
    let desk = Desk::connect(intake.addr).await?;
    for i in 0..20 {
        desk.receive(
            &format!("D{i}"),
            "TP",
            at(2024, 3, 11, 8),
            at(2024, 3, 11, 17),
        )
        .await?;
    }
    intake.kill();

    // Restarted a minute after the deadline: it finds what it missed.
    let after = offset_to(deadline.plus_micros(60 * SECOND));
    let addr = intake.addr;
    let intake =
        ChildService::start_on("intake", addr, &intake_env(&db, &nats, &stream, after)).await?;
    let store = intake::EventStore::open(&db.url).await?;
    wait_for_late(&store, 20).await?;

    // Killed and restarted again: the Late events are not repeated. A marker
    // dossier imported with a due date already past is marked late by the
    // new instance; the monitor works in deadline order, so by then it
    // would have repeated the others if it were going to.
    drop(intake);
    let intake =
        ChildService::start_on("intake", addr, &intake_env(&db, &nats, &stream, after)).await?;
    let desk = Desk::connect(intake.addr).await?;
    desk.receive("MARK", "TP", at(2024, 3, 11, 9), at(2024, 3, 11, 17))
        .await?;
    wait_for_late(&store, 21).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_intake_instances_emit_late_once() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let db = TestDb::new(Backend::Postgres, "intake").await?;
    let stream = tests::unique_stream();
    // Both clocks two seconds before the deadline: both monitors wake for it.
    let deadline = Timestamp::at_local(day(2024, 3, 12), 0, 0);
    let offset = offset_to(deadline.plus_micros(-2 * SECOND));
    let env = intake_env(&db, &nats, &stream, offset);
    let a = ChildService::start("intake", &env).await?;
    let b = ChildService::start("intake", &env).await?;
    let (desk_a, desk_b) = (Desk::connect(a.addr).await?, Desk::connect(b.addr).await?);
    let receipts = (0..300).map(|i| {
        let desk = if i % 2 == 0 { &desk_a } else { &desk_b };
        let id = format!("D{i}");
        async move {
            desk.receive(&id, "TP", at(2024, 3, 11, 8), at(2024, 3, 11, 17))
                .await
        }
    });
    for reply in futures::future::join_all(receipts).await {
        reply?;
    }
    let store = intake::EventStore::open(&db.url).await?;
    wait_for_late(&store, 300).await?;

    // An imported dossier whose due date had long passed: late at once,
    // once, and nothing repeated meanwhile.
    desk_b
        .receive("OLD", "TP", at(2023, 5, 2, 8), at(2023, 5, 5, 17))
        .await?;
    wait_for_late(&store, 301).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_from_its_position_misses_nothing_and_repeats_nothing() -> anyhow::Result<()>
{
    let deadline = Timestamp::at_local(day(2024, 3, 12), 0, 0);
    let clock = intake::offset_clock(offset_to(deadline.plus_micros(-2 * SECOND)));
    let pair = Pair::start_with_clock(Backend::Postgres, clock).await?;
    let desk = pair.desk().await?;
    let deadlines: Deadlines = pair.deadlines().await?;
    let mut feed = deadlines.watch("TP", None).await?;
    let n = 50;
    for i in 0..n {
        desk.receive(
            &format!("D{i:02}"),
            "TP",
            at(2024, 3, 11, 8),
            at(2024, 3, 11, 17),
        )
        .await?;
    }

    // Twenty notices, then the client goes away.
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(next_notice(&mut feed, WAIT).await?);
    }
    drop(feed);
    let last = seen.last().map(|n| n.position);

    // While it is away: the rest become late, and all are resolved.
    wait_for_late(&pair.intake_store, n).await?;
    for i in 0..n {
        desk.record_result(&format!("D{i:02}"), deadline.plus_micros(SECOND))
            .await?;
    }

    // Back with its position: exactly the rest, in order.
    let mut feed = deadlines.watch("TP", last).await?;
    while seen.len() < 2 * n {
        seen.push(next_notice(&mut feed, WAIT).await?);
    }
    let positions: Vec<u64> = seen.iter().map(|n| n.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions increase: {positions:?}"
    );
    let late: BTreeSet<&str> = seen
        .iter()
        .filter(|n| change(n) == rp::LateChange::BecameLate)
        .map(|n| n.dossier_id.as_str())
        .collect();
    let resolved: BTreeSet<&str> = seen
        .iter()
        .filter(|n| change(n) == rp::LateChange::Resolved)
        .map(|n| n.dossier_id.as_str())
        .collect();
    assert_eq!((late.len(), resolved.len()), (n, n));
    assert_eq!(late, resolved);

    // A third client from the start of the feed sees the same history.
    let mut replay = deadlines.watch("TP", Some(0)).await?;
    for expected in &seen {
        let n = next_notice(&mut replay, WAIT).await?;
        assert_eq!(&n, expected);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_list_pages_through_every_dossier_once() -> anyhow::Result<()> {
    let pair = Pair::start(Backend::Sqlite).await?;
    let desk = pair.desk().await?;
    // Same due instant for many: the page token must break ties by id.
    for i in 0..23 {
        desk.receive(
            &format!("D{i:02}"),
            "TP",
            at(2021, 6, 1, 8),
            at(2021, 6, 3, 17),
        )
        .await?;
    }
    desk.request_supplement("D05", at(2021, 6, 2, 9)).await?;
    let deadlines = pair.deadlines().await?;
    let as_of = Some(at(2021, 6, 10, 12));
    // Until the pause is applied too: 22 overdue while a receipt is still
    // on its way would count D05 and miss another.
    let all = eventually(WAIT, || async {
        let all = deadlines.overdue("TP", as_of, 4).await?;
        anyhow::ensure!(all.len() == 22, "{} overdue", all.len());
        anyhow::ensure!(
            !ids(&all).contains(&"D05"),
            "the pause of D05 is not applied yet"
        );
        Ok(all)
    })
    .await?;
    let unique: BTreeSet<&str> = ids(&all).into_iter().collect();
    assert_eq!(unique.len(), 22, "each dossier once");
    assert!(!unique.contains("D05"), "paused is not overdue");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_follows_the_wall_clock_when_it_jumps() -> anyhow::Result<()> {
    use std::sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    };
    let deadline = Timestamp::at_local(day(2024, 3, 12), 0, 0);
    // Intake's clock: the real one plus an offset the test moves, starting a
    // whole day before the deadline (the monitor would sleep until then).
    let offset = Arc::new(AtomicI64::new(offset_to(
        deadline.plus_micros(-24 * 3600 * SECOND),
    )));
    let clock: intake::Clock = {
        let offset = offset.clone();
        Arc::new(move || tests::real_now().plus_micros(offset.load(Ordering::Acquire)))
    };
    let pair = Pair::start_with_clock(Backend::Sqlite, clock).await?;
    let desk = pair.desk().await?;
    let deadlines = pair.deadlines().await?;
    let mut feed = deadlines.watch("TP", None).await?;
    desk.receive("A", "TP", at(2024, 3, 10, 8), at(2024, 3, 11, 17))
        .await?;

    // The clock jumps forward past the deadline: A is late within seconds.
    offset.store(offset_to(deadline.plus_micros(SECOND)), Ordering::Release);
    let notice = next_notice(&mut feed, Duration::from_secs(10)).await?;
    assert_eq!(
        (notice.dossier_id.as_str(), change(&notice)),
        ("A", rp::LateChange::BecameLate)
    );

    // Back an hour before the deadline: B is due then and not late yet...
    offset.store(
        offset_to(deadline.plus_micros(-3600 * SECOND)),
        Ordering::Release,
    );
    desk.receive("B", "TP", at(2024, 3, 11, 8), at(2024, 3, 11, 17))
        .await?;
    assert!(
        !pair
            .intake_store
            .kind_counts("late")
            .await?
            .contains_key("B")
    );
    // ...until the clock jumps forward again; A is not repeated.
    offset.store(offset_to(deadline.plus_micros(SECOND)), Ordering::Release);
    let notice = next_notice(&mut feed, Duration::from_secs(10)).await?;
    assert_eq!(
        (notice.dossier_id.as_str(), change(&notice)),
        ("B", rp::LateChange::BecameLate)
    );
    wait_for_late(&pair.intake_store, 2).await?;
    Ok(())
}
