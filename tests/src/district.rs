//! The district report's figures (`fixtures/tuy-phong-one-stop-2015-2020.csv`,
//! a copy of `shared/data/`) and a driver that replays them through intake's
//! gRPC API: one dossier per received count, each resolved on time or late
//! as the file says, surveys with the ratings it gives.

use std::time::Duration;

use anyhow::Context as _;
use domain::{LocalDay, Timestamp};
use futures::StreamExt as _;
use proto::{events::v1 as ev, reports::v1 as rp};

use crate::{Desk, Province};

pub const OFFICE: &str = "TUY-PHONG";

/// One year's row of the district file.
#[derive(Clone, Debug, PartialEq)]
pub struct YearFigures {
    pub year: i32,
    pub received: u64,
    /// Resolved in time (early or on the due date): "đúng hạn".
    pub in_time: u64,
    pub late: u64,
    pub surveys: u64,
    pub scale: ev::RatingScale,
    pub rating_top: u64,
    pub rating_second: u64,
    pub survey_pct_printed: Option<f64>,
}

pub fn fixture() -> &'static str {
    include_str!("../fixtures/tuy-phong-one-stop-2015-2020.csv")
}

pub fn figures() -> anyhow::Result<Vec<YearFigures>> {
    let mut lines = fixture()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .context("the file has no header")?
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no column {name}"))
    };
    let (year, received, on_time, late, surveys, scale, top, second, pct) = (
        col("year")?,
        col("received")?,
        col("returned_on_time")?,
        col("late")?,
        col("surveys")?,
        col("rating_scale")?,
        col("rating_top")?,
        col("rating_second")?,
        col("survey_pct_printed")?,
    );
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let n = |i: usize| {
                f[i].parse::<u64>()
                    .with_context(|| format!("bad number {:?} in {line}", f[i]))
            };
            Ok(YearFigures {
                year: f[year].parse()?,
                received: n(received)?,
                in_time: n(on_time)?,
                late: n(late)?,
                surveys: n(surveys)?,
                scale: match f[scale] {
                    "satisfaction" => ev::RatingScale::Satisfaction,
                    "quality" => ev::RatingScale::Quality,
                    other => anyhow::bail!("unknown rating scale {other}"),
                },
                rating_top: n(top)?,
                rating_second: n(second)?,
                survey_pct_printed: f[pct].parse().ok(),
            })
        })
        .collect()
}

/// One dossier's life in the replay.
#[derive(Clone, Debug)]
pub struct Script {
    pub dossier_id: String,
    pub received_at: Timestamp,
    pub due_at: Timestamp,
    pub resolved_at: Timestamp,
    pub survey: Option<(ev::RatingScale, ev::Rating)>,
}

/// The dossiers of one year: receipts spread over the year's working span
/// (Q1 only for 2020), due ten days later, resolved after three days when
/// on time and two days past the due date when late; all within the year.
pub fn scripts(y: &YearFigures) -> Vec<Script> {
    let first = LocalDay::first_of_year(y.year).unwrap_or(LocalDay::from_days(0));
    let span: i64 = if y.year == 2020 { 70 } else { 340 };
    (0..y.received)
        .map(|i| {
            let day = LocalDay::from_days(
                first.days() + (i as i64 * span / y.received.max(1) as i64) as i32,
            );
            let received_at = Timestamp::at_local(day, 7 + (i % 9) as u8, 30);
            let due_at = Timestamp::at_local(LocalDay::from_days(day.days() + 10), 17, 0);
            let late = i >= y.in_time;
            let resolved_at = if late {
                Timestamp::at_local(LocalDay::from_days(day.days() + 12), 9, 0)
            } else {
                Timestamp::at_local(LocalDay::from_days(day.days() + 3), 15, 0)
            };
            let survey = (i < y.surveys).then(|| {
                let rating = if i < y.rating_top {
                    ev::Rating::Top
                } else {
                    ev::Rating::Middle
                };
                (y.scale, rating)
            });
            Script {
                dossier_id: format!("TP-{}-{i:05}", y.year),
                received_at,
                due_at,
                resolved_at,
                survey,
            }
        })
        .collect()
}

/// Replays `scripts` through intake with `concurrency` dossiers in flight;
/// retries a command that met a transient error (same request id). Returns
/// the commands sent.
pub async fn drive(desk: &Desk, scripts: Vec<Script>, concurrency: usize) -> anyhow::Result<u64> {
    Ok(drive_after(desk, scripts, concurrency, 0).await?.commands)
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Driven {
    pub commands: u64,
    /// Commands whose events are new: their position is after the log's
    /// head before the replay. A command the log already holds (the same
    /// request id) is answered with its first reply and appends nothing.
    pub appended: u64,
}

/// [`drive`], counting the commands that appended after log position
/// `head` (intake's head before the replay).
pub async fn drive_after(
    desk: &Desk,
    scripts: Vec<Script>,
    concurrency: usize,
    head: u64,
) -> anyhow::Result<Driven> {
    let results: Vec<anyhow::Result<Driven>> = futures::stream::iter(scripts)
        .map(|s| {
            let desk = desk.clone();
            async move {
                run_script(&desk, &s, head)
                    .await
                    .with_context(|| format!("dossier {}", s.dossier_id))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut total = Driven::default();
    for r in results {
        let r = r?;
        total.commands += r.commands;
        total.appended += r.appended;
    }
    Ok(total)
}

/// Command metadata whose request id follows from the dossier and the step,
/// so a replay sent again is a retry: intake answers each command with its
/// first reply and appends nothing.
fn step_meta(s: &Script, step: &str, at: Timestamp) -> Option<proto::intake::v1::CommandMeta> {
    Some(proto::intake::v1::CommandMeta {
        request_id: format!("district:{}:{step}", s.dossier_id),
        actor: "clerk-1".into(),
        occurred_at: crate::ts(at),
    })
}

async fn run_script(desk: &Desk, s: &Script, head: u64) -> anyhow::Result<Driven> {
    let mut done = Driven::default();
    let mut count = |reply: &proto::intake::v1::CommandReply| {
        done.commands += 1;
        if reply.position > head {
            done.appended += 1;
        }
    };
    let receive = proto::intake::v1::ReceiveDossierRequest {
        meta: step_meta(s, "receive", s.received_at),
        dossier_id: s.dossier_id.clone(),
        office_code: OFFICE.into(),
        province_code: "BTH".into(),
        procedure: crate::procedure(),
        channel: ev::Channel::InPerson.into(),
        due_at: crate::ts(s.due_at),
        due_on: None,
    };
    count(&retry(|| desk.receive_with(receive.clone())).await?);
    let result = proto::intake::v1::RecordResultRequest {
        meta: step_meta(s, "result", s.resolved_at),
        dossier_id: s.dossier_id.clone(),
    };
    count(&retry(|| desk.record_result_with(result.clone())).await?);
    if let Some((scale, rating)) = s.survey {
        let at = s.resolved_at.plus_micros(3_600_000_000);
        let meta = step_meta(s, "survey", at);
        let reply = retry(|| {
            let desk = desk.clone();
            let meta = meta.clone();
            async move {
                let r = proto::intake::v1::RecordSurveyRequest {
                    meta,
                    dossier_id: s.dossier_id.clone(),
                    scale: scale.into(),
                    rating: rating.into(),
                    comment: String::new(),
                };
                desk.client
                    .clone()
                    .record_survey(r)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
        count(&reply);
    }
    Ok(done)
}

/// Retries a command while intake answers UNAVAILABLE or ABORTED (or cannot
/// be reached), as a desk client would: the request id makes it safe.
pub async fn retry<F, Fut>(mut call: F) -> anyhow::Result<proto::intake::v1::CommandReply>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Reply>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        match call().await {
            Ok(reply) => return Ok(reply),
            Err(status)
                if attempts < 200
                    && matches!(
                        status.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Aborted
                            | tonic::Code::Unknown
                            | tonic::Code::Cancelled
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Typed, so a caller can tell a refusal from a failure.
            Err(status) => return Err(anyhow::Error::new(status)),
        }
    }
}

/// The scripts of the file's `years`.
pub fn years(years: &[i32]) -> anyhow::Result<Vec<Script>> {
    Ok(figures()?
        .iter()
        .filter(|y| years.contains(&y.year))
        .flat_map(scripts)
        .collect())
}

/// Everything a province can read about the district office.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub series: rp::YearlySeries,
    pub whole: rp::Statistics,
}

pub async fn snapshot(province: &Province) -> anyhow::Result<Snapshot> {
    let (from, to) = (
        LocalDay::from_ymd(2015, 1, 1).context("date")?,
        LocalDay::from_ymd(2020, 12, 31).context("date")?,
    );
    Ok(Snapshot {
        series: province.yearly(OFFICE).await?,
        whole: province.statistics(OFFICE, from, to).await?,
    })
}

/// Waits until the projection shows every dossier of `scripts` received,
/// resolved and surveyed as they say.
pub async fn wait_for(province: &Province, scripts: &[Script]) -> anyhow::Result<Snapshot> {
    let dossiers = scripts.len() as u64;
    let surveys = scripts.iter().filter(|s| s.survey.is_some()).count() as u64;
    crate::eventually(Duration::from_secs(120), || async {
        // Two RPCs, so both halves must show everything: the series is read
        // first and could lag the statistics by a batch.
        let s = snapshot(province).await?;
        let sum = |f: fn(&rp::YearRow) -> u64| s.series.rows.iter().map(f).sum::<u64>();
        let (received, resolved, surveyed) =
            (sum(|r| r.received), sum(|r| r.resolved), sum(|r| r.surveys));
        anyhow::ensure!(
            s.whole.received == dossiers
                && s.whole.resolved == dossiers
                && received == dossiers
                && resolved == dossiers
                && surveyed == surveys,
            "behind: {received} received, {resolved} resolved, {surveyed} surveys"
        );
        Ok(s)
    })
    .await
}

/// Asserts that the figures `seen` equal the file's for every year shown.
pub fn assert_figures_match(seen: &Snapshot) -> anyhow::Result<()> {
    let file = figures()?;
    for row in &seen.series.rows {
        let y = file
            .iter()
            .find(|y| y.year == row.year)
            .context("a year the file does not have")?;
        assert_eq!(
            (
                row.received,
                row.resolved_in_time,
                row.resolved_late,
                row.surveys
            ),
            (y.received, y.in_time, y.late, y.surveys),
            "{}",
            row.year
        );
    }
    Ok(())
}
