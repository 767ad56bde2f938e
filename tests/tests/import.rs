//! Bulk import and republish, through the real `motcua` binary against
//! running services: an import file with bad lines lands its good lines
//! whole and nothing of the bad ones; importing it again appends nothing;
//! republishing the log (into the live stream, or into a deleted and
//! recreated one read by a fresh projection) changes no figure.
//!
//! Needs the `motcua` binary built beside the tests: `cargo test --workspace`
//! builds it; `cargo test -p tests` alone does not (`cargo build -p motcua`).

use std::{collections::HashMap, path::Path, process::Output, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream;
use domain::LocalDay;
use proto::reports::v1 as rp;
use tests::{Backend, Pair, Province, TestDb, eventually, start_projection_named};

const OFFICE: &str = "IMPORT-1";

async fn motcua(intake: std::net::SocketAddr, args: &[&str]) -> anyhow::Result<Output> {
    tokio::process::Command::new(tests::binary("motcua")?)
        .arg("--intake")
        .arg(format!("http://{intake}"))
        .args(args)
        .env_remove("MOTCUA_PROJECTION")
        .env_remove("MOTCUA_INTAKE")
        .output()
        .await
        .context("run motcua")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const HEADER: &str = "dossier_id,office_code,province_code,procedure_code,procedure_field,channel,received_at,due_at,result_at,returned_at,withdrawn_at,withdraw_reason,stopped_at,stop_reason,survey_scale,survey_rating,surveyed_at";

/// A good line: a dossier of 2019–2020 resolved on time or late, returned,
/// sometimes surveyed, sometimes withdrawn or stopped instead. Returns the
/// line and how many events it makes.
fn good_line(n: u32) -> (String, u64) {
    let year = 2019 + (n % 2);
    let month = 1 + n % 12;
    let day = 1 + n % 20;
    let channels = [
        "in_person",
        "postal",
        "online_partial",
        "online_full",
        "inter_agency",
    ];
    let channel = channels[(n % 5) as usize];
    let received = format!("{year}-{month:02}-{day:02} 08:{:02}", n % 60);
    let due = format!("{year}-{month:02}-{:02}", day + 5);
    let id = format!("IMP-{n:05}");
    let base = format!(
        "{id},{OFFICE},BTH,1.00{},dat-dai,{channel},{received},{due}",
        n % 7
    );
    match n % 10 {
        // Withdrawn.
        7 => (
            format!("{base},,,{year}-{month:02}-{:02} 10:00,đổi ý,,,,,", day + 1),
            2,
        ),
        // Stopped.
        8 => (
            format!(
                "{base},,,,,{year}-{month:02}-{:02} 10:00,thiếu hồ sơ gốc,,,",
                day + 2
            ),
            2,
        ),
        _ => {
            // Late when n % 10 == 3.
            let resolved = if n % 10 == 3 { day + 7 } else { day + 3 };
            let result = format!("{year}-{month:02}-{resolved:02} 14:00");
            let returned = format!("{year}-{month:02}-{resolved:02} 15:00");
            if n.is_multiple_of(3) {
                let rating = ["very_satisfied", "satisfied", "dissatisfied"][(n % 9 / 3) as usize];
                (
                    format!(
                        "{base},{result},{returned},,,,,satisfaction,{rating},{year}-{month:02}-{resolved:02} 15:05"
                    ),
                    4,
                )
            } else {
                (format!("{base},{result},{returned},,,,,,,"), 3)
            }
        }
    }
}

/// The bad lines, each with the line's dossier id and what its reason says.
fn bad_lines() -> Vec<(String, &'static str, &'static str)> {
    vec![
        (
            format!(
                "BAD-CHANNEL,{OFFICE},BTH,1.001,dat-dai,fax,2019-05-06 08:00,2019-05-10,,,,,,,,,"
            ),
            "BAD-CHANNEL",
            "channel: \"fax\" is not one of",
        ),
        (
            format!(
                "BAD-ORDER,{OFFICE},BTH,1.001,dat-dai,in_person,2019-05-06 08:00,2019-05-10,2019-05-01 09:00,,,,,,,,"
            ),
            "BAD-ORDER",
            "result_at: ",
        ),
        (
            format!(
                "BAD-SURVEY,{OFFICE},BTH,1.001,dat-dai,in_person,2019-05-06 08:00,2019-05-10,2019-05-08 09:00,2019-05-08 10:00,,,,,satisfaction,top;middle,2019-05-08 10:05;2019-05-09 10:00"
            ),
            "BAD-SURVEY",
            "already has a survey",
        ),
        (
            format!(
                "BAD-DUE,{OFFICE},BTH,1.001,dat-dai,in_person,2019-05-06 08:00,2019-05-01,,,,,,,,,"
            ),
            "BAD-DUE",
            "due_at: the due date",
        ),
        (
            // A dossier id already on an earlier (good) line.
            format!(
                "IMP-00001,{OFFICE},BTH,1.001,dat-dai,in_person,2019-05-06 08:00,2019-05-10,,,,,,,,,"
            ),
            "IMP-00001",
            "is already on line",
        ),
        (
            format!(
                "BAD-DATE,{OFFICE},BTH,1.001,dat-dai,in_person,2019-02-30 08:00,2019-03-10,,,,,,,,,"
            ),
            "BAD-DATE",
            "received_at: \"2019-02-30 08:00\" is not a day of the calendar",
        ),
    ]
}

struct File {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    /// Line number → (dossier id, expected reason fragment).
    bad: HashMap<u64, (&'static str, &'static str)>,
    good_dossiers: u64,
    good_events: u64,
}

/// `good` good lines with the bad lines spread among them, and one open
/// dossier whose due date has passed (the deadline monitor marks it late).
fn import_file(good: u32) -> anyhow::Result<File> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("import.csv");
    let mut lines = vec![HEADER.to_owned()];
    let mut bad = HashMap::new();
    let mut good_events = 0;
    let mut bads = bad_lines().into_iter();
    for n in 0..good {
        let (line, events) = good_line(n);
        lines.push(line);
        good_events += events;
        if n % 7 == 2
            && let Some((line, id, reason)) = bads.next()
        {
            lines.push(line);
            bad.insert(lines.len() as u64, (id, reason));
        }
    }
    for (line, id, reason) in bads {
        lines.push(line);
        bad.insert(lines.len() as u64, (id, reason));
    }
    lines.push(format!(
        "OPEN-1,{OFFICE},BTH,1.001,dat-dai,postal,2020-11-02 09:00,2020-11-06,,,,,,,,,"
    ));
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(File {
        _dir: dir,
        path,
        bad,
        good_dossiers: u64::from(good) + 1,
        good_events: good_events + 1,
    })
}

async fn figures(province: &Province) -> anyhow::Result<(rp::Statistics, rp::YearlySeries)> {
    let from = LocalDay::from_ymd(2019, 1, 1).context("date")?;
    let to = LocalDay::from_ymd(2020, 12, 31).context("date")?;
    Ok((
        province.statistics(OFFICE, from, to).await?,
        province.yearly(OFFICE).await?,
    ))
}

async fn events_of(store: &intake::EventStore, dossier: &str) -> anyhow::Result<usize> {
    Ok(store.load_dossiers(&[dossier]).await?.len())
}

async fn import_lands_good_lines_whole_and_bad_lines_not_at_all(
    backend: Backend,
) -> anyhow::Result<()> {
    tests::binary("motcua")?;
    let pair = Pair::start(backend).await?;
    let file = import_file(60)?;
    let path = file.path.to_str().context("path")?;

    let out = motcua(pair.intake.addr, &["import", path]).await?;
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "rejected lines make the exit status non-zero: {stdout}"
    );
    assert!(
        stderr.contains(&format!("{} of", file.bad.len())),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "imported {} dossiers ({} events), 0 already imported, {} rejected",
            file.good_dossiers,
            file.good_events,
            file.bad.len()
        )),
        "{stdout}"
    );
    for (line, (id, reason)) in &file.bad {
        let printed = stdout
            .lines()
            .find(|l| l.starts_with(&format!("line {line}: ")))
            .with_context(|| format!("line {line} ({id}) not reported:\n{stdout}"))?;
        assert!(
            printed.contains(reason),
            "line {line}: {printed:?} lacks {reason:?}"
        );
    }

    // Nothing of a bad line is written; the good line sharing a dossier id
    // with a bad one keeps its own events only.
    let store = &pair.intake_store;
    for (id, _) in file.bad.values() {
        let n = events_of(store, id).await?;
        if *id == "IMP-00001" {
            assert_eq!(
                n,
                good_line(1).1 as usize,
                "{id} has its good line's events"
            );
        } else {
            assert_eq!(n, 0, "{id} is half-written");
        }
    }
    // The open, overdue dossier is indexed: the monitor marks it late.
    eventually(Duration::from_secs(20), || async {
        let late = store.kind_counts("late").await?;
        anyhow::ensure!(late.get("OPEN-1") == Some(&1), "not marked late: {late:?}");
        Ok(())
    })
    .await?;
    assert_eq!(store.count_desk_events().await?, file.good_events);
    let total = store.count().await?;
    assert_eq!(total, file.good_events + 1);

    // The projection sees exactly the good lines.
    let expected_resolved = (0..60).filter(|n| n % 10 != 7 && n % 10 != 8).count() as u64;
    let expected_late = (0..60).filter(|n| n % 10 == 3).count() as u64;
    let expected_surveys = (0..60)
        .filter(|n| n % 10 != 7 && n % 10 != 8 && n % 3 == 0)
        .count() as u64;
    let province = pair.province().await?;
    let (stats, _) = eventually(Duration::from_secs(30), || async {
        let (stats, series) = figures(&province).await?;
        anyhow::ensure!(
            stats.received == file.good_dossiers && stats.resolved == expected_resolved,
            "received {} resolved {}",
            stats.received,
            stats.resolved
        );
        Ok((stats, series))
    })
    .await?;
    assert_eq!(stats.resolved_late, expected_late);
    let surveys = province
        .surveys(
            OFFICE,
            LocalDay::from_ymd(2019, 1, 1).context("date")?,
            LocalDay::from_ymd(2020, 12, 31).context("date")?,
        )
        .await?;
    assert_eq!(surveys.surveys, expected_surveys);

    // The same file again appends nothing and reports the same bad lines.
    let again = motcua(pair.intake.addr, &["import", path]).await?;
    let (stdout_again, _) = text(&again);
    assert!(!again.status.success());
    assert!(
        stdout_again.contains(&format!(
            "imported 0 dossiers (0 events), {} already imported, {} rejected",
            file.good_dossiers,
            file.bad.len()
        )),
        "{stdout_again}"
    );
    let rejected = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("line "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(rejected(&stdout), rejected(&stdout_again));
    assert_eq!(store.count().await?, total, "a re-import appended events");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_on_postgres() -> anyhow::Result<()> {
    import_lands_good_lines_whole_and_bad_lines_not_at_all(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_on_sqlite() -> anyhow::Result<()> {
    import_lands_good_lines_whole_and_bad_lines_not_at_all(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_file_imports_cleanly() -> anyhow::Result<()> {
    tests::binary("motcua")?;
    let pair = Pair::start(Backend::Sqlite).await?;
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/motcua/examples/import.csv");
    let out = motcua(
        pair.intake.addr,
        &["import", example.to_str().context("path")?],
    )
    .await?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("imported 6 dossiers"), "{stdout}");
    // Unreachable intake: one line, non-zero.
    let out = tokio::process::Command::new(tests::binary("motcua")?)
        .args(["--intake", "http://127.0.0.1:1", "import"])
        .arg(&example)
        .output()
        .await?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach intake at http://127.0.0.1:1"),
        "{stderr}"
    );
    Ok(())
}

/// Waits until the projection on `database_url` has applied the whole stream.
async fn caught_up(
    js: &jetstream::Context,
    stream: &str,
    database_url: &str,
) -> anyhow::Result<()> {
    eventually(Duration::from_secs(30), || async {
        let mut s = js.get_stream(stream).await?;
        let last = s.info().await?.state.last_sequence;
        let applied = tests::applied_through(database_url).await?;
        anyhow::ensure!(applied >= last, "projection at {applied} of {last}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republishing_changes_no_figure() -> anyhow::Result<()> {
    tests::binary("motcua")?;
    let pair = Pair::start(Backend::Postgres).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("good.csv");
    let mut lines = vec![HEADER.to_owned()];
    let mut events = 0;
    for n in 0..300 {
        let (line, e) = good_line(n);
        lines.push(line);
        events += e;
    }
    std::fs::write(&path, lines.join("\n") + "\n")?;
    let out = motcua(
        pair.intake.addr,
        &["import", path.to_str().context("path")?],
    )
    .await?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");

    let province = pair.province().await?;
    let expected = eventually(Duration::from_secs(30), || async {
        let f = figures(&province).await?;
        anyhow::ensure!(f.0.received == 300, "received {}", f.0.received);
        Ok(f)
    })
    .await?;
    let client = async_nats::connect(pair.nats.url()).await?;
    let js = jetstream::new(client);
    caught_up(&js, &pair.stream, &pair.projection_db.url).await?;

    // 1. Into the live stream, read by the running projection. A short
    // duplicate window first, so the republished messages really reach it.
    let mut config = js
        .get_stream(&pair.stream)
        .await?
        .info()
        .await?
        .config
        .clone();
    config.duplicate_window = Duration::from_millis(200);
    js.update_stream(config).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = motcua(pair.intake.addr, &["republish", "--from", "0"]).await?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "republished {events} events (positions 1–{events})"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("dropped 0 as duplicates"), "{stdout}");
    let last = js
        .get_stream(&pair.stream)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    assert_eq!(last, 2 * events, "the stream holds every event twice");
    caught_up(&js, &pair.stream, &pair.projection_db.url).await?;
    assert_eq!(
        figures(&province).await?,
        expected,
        "republishing moved a figure"
    );

    // 2. The stream deleted: republish recreates it; a fresh projection
    // (new database, new consumer) computes the same figures.
    let desk = pair.desk().await?;
    pair.projection.shutdown().await?;
    js.delete_stream(&pair.stream).await?;
    let out = motcua(pair.intake.addr, &["republish", "--from", "0"]).await?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("republished {events} events")),
        "{stdout}"
    );
    let db = TestDb::new(Backend::Postgres, "rebuilt").await?;
    let rebuilt =
        start_projection_named(&db.url, &pair.nats.url(), &pair.stream, "rebuilt").await?;
    let fresh = Province::connect(rebuilt.addr).await?;
    eventually(Duration::from_secs(30), || async {
        let f = figures(&fresh).await?;
        anyhow::ensure!(f == expected, "not yet the same: received {}", f.0.received);
        Ok(())
    })
    .await?;

    // The relay carries on after the republished positions.
    let day = LocalDay::from_ymd(2020, 6, 1).context("date")?;
    desk.receive(
        "AFTER-1",
        OFFICE,
        domain::Timestamp::at_local(day, 8, 0),
        // Due far ahead: no Late event joins the stream.
        domain::Timestamp::at_local(LocalDay::from_ymd(2099, 6, 5).context("date")?, 17, 0),
    )
    .await?;
    eventually(Duration::from_secs(30), || async {
        let f = figures(&fresh).await?;
        anyhow::ensure!(f.0.received == 301, "received {}", f.0.received);
        Ok(())
    })
    .await?;
    let last = js
        .get_stream(&pair.stream)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    assert_eq!(
        last,
        events + 1,
        "the recreated stream holds each event once"
    );

    // 3. And a rebuild of the read models from the republished stream
    // (a new generation, swapped in) gives the same figures again.
    let now = figures(&fresh).await?;
    let out = motcua(
        pair.intake.addr,
        &[
            "--projection",
            &format!("http://{}", rebuilt.addr),
            "rebuild",
        ],
    )
    .await?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("rebuilt: generation 2 serves"),
        "{stdout}"
    );
    assert_eq!(figures(&fresh).await?, now, "the rebuild moved a figure");
    rebuilt.shutdown().await?;
    Ok(())
}
