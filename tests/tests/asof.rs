//! Reports as of an earlier point: the Q1 2020 figures as they stood on
//! 31/3/2020 stay what they were after later corrections, by instant and
//! by log position.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use domain::{LocalDay, Timestamp};
use proto::{
    events::v1 as ev,
    reports::v1::{self as rp, reports_client::ReportsClient},
};
use tests::{Backend, Pair, eventually, office_scope, offset_to, real_now};

fn day(y: i32, m: u8, d: u8) -> LocalDay {
    LocalDay::from_ymd(y, m, d).expect("a real date")
}

fn at(y: i32, m: u8, d: u8, h: u8) -> Timestamp {
    Timestamp::at_local(day(y, m, d), h, 0)
}

fn q1(as_of: Option<rp::AsOf>) -> rp::StatisticsRequest {
    rp::StatisticsRequest {
        scope: office_scope("TP"),
        first_day: tests::date(day(2020, 1, 1)),
        last_day: tests::date(day(2020, 3, 31)),
        as_of,
    }
}

fn recorded_by(t: Timestamp) -> Option<rp::AsOf> {
    Some(rp::AsOf {
        point: Some(rp::as_of::Point::RecordedBy(bus::timestamp_to_proto(t))),
    })
}

fn position(p: u64) -> Option<rp::AsOf> {
    Some(rp::AsOf {
        point: Some(rp::as_of::Point::LogPosition(p)),
    })
}

async fn as_of_reports_keep_the_figures_of_their_day(backend: Backend) -> anyhow::Result<()> {
    // Intake's clock: 31/3/2020 10:00 local, moved later by the test.
    let offset = Arc::new(AtomicI64::new(offset_to(at(2020, 3, 31, 10))));
    let clock: intake::Clock = {
        let offset = offset.clone();
        Arc::new(move || real_now().plus_micros(offset.load(Ordering::Acquire)))
    };
    let pair = Pair::start_with_clock(backend, clock).await?;
    let desk = pair.desk().await?;
    let mut reports = ReportsClient::connect(format!("http://{}", pair.projection.addr)).await?;

    // The quarter as entered by 31/3: two dossiers resolved, one pending.
    desk.receive("A", "TP", at(2020, 2, 10, 8), at(2020, 2, 20, 17))
        .await?;
    desk.record_result("A", at(2020, 2, 18, 9)).await?;
    desk.receive("B", "TP", at(2020, 3, 2, 8), at(2020, 3, 20, 17))
        .await?;
    desk.record_result("B", at(2020, 3, 25, 9)).await?;
    desk.receive("P", "TP", at(2020, 3, 30, 8), at(2020, 4, 10, 17))
        .await?;
    let last_of_march = desk
        .record_survey(
            "A",
            at(2020, 3, 30, 9),
            ev::RatingScale::Satisfaction,
            ev::Rating::Top,
        )
        .await?;
    let then = eventually(Duration::from_secs(20), || {
        let mut reports = reports.clone();
        async move {
            let s = reports.get_statistics(q1(None)).await?.into_inner();
            anyhow::ensure!(s.received == 3 && s.resolved == 2, "{s:?}");
            let surveys = reports.get_surveys(q1(None)).await?.into_inner();
            anyhow::ensure!(surveys.surveys == 1, "{surveys:?}");
            Ok((s, surveys))
        }
    })
    .await?;
    let (then, then_surveys) = then;
    let then_series = reports
        .get_yearly_series(rp::YearlySeriesRequest {
            office_code: "TP".into(),
            province_code: String::new(),
            from_year: 2020,
            to_year: 2020,
            as_of: None,
        })
        .await?
        .into_inner();

    // On 6/4 the desk enters what it had forgotten: a dossier of 15/3
    // resolved on 28/3, and the pending one's result of 31/3.
    offset.store(offset_to(at(2020, 4, 6, 9)), Ordering::Release);
    desk.receive("C", "TP", at(2020, 3, 15, 8), at(2020, 3, 27, 17))
        .await?;
    desk.record_result("C", at(2020, 3, 28, 9)).await?;
    desk.record_result("P", at(2020, 3, 31, 16)).await?;
    let today = eventually(Duration::from_secs(20), || {
        let mut reports = reports.clone();
        async move {
            let s = reports.get_statistics(q1(None)).await?.into_inner();
            anyhow::ensure!(s.received == 4 && s.resolved == 4, "{s:?}");
            Ok(s)
        }
    })
    .await?;
    assert_ne!(today, then, "the corrections changed today's Q1");

    // As of the end of 31/3 (local), the report is the one of that day.
    let end_of_march = at(2020, 4, 1, 0).plus_micros(-1);
    let as_of = reports
        .get_statistics(q1(recorded_by(end_of_march)))
        .await?
        .into_inner();
    assert_eq!(as_of, then);
    let surveys = reports
        .get_surveys(q1(recorded_by(end_of_march)))
        .await?
        .into_inner();
    assert_eq!(surveys, then_surveys);
    let series = reports
        .get_yearly_series(rp::YearlySeriesRequest {
            office_code: "TP".into(),
            province_code: String::new(),
            from_year: 2020,
            to_year: 2020,
            as_of: recorded_by(end_of_march),
        })
        .await?
        .into_inner();
    assert_eq!(series, then_series);
    // The province (TP is its one office) as of the same instant: the
    // same rows, from the province's subjects.
    let province_series = reports
        .get_yearly_series(rp::YearlySeriesRequest {
            office_code: String::new(),
            province_code: "BTH".into(),
            from_year: 2020,
            to_year: 2020,
            as_of: recorded_by(end_of_march),
        })
        .await?
        .into_inner();
    assert_eq!(province_series.province_code, "BTH");
    assert_eq!(province_series.rows, then_series.rows);
    // By log position: the last event entered on 31/3.
    let by_position = reports
        .get_statistics(q1(position(last_of_march.position)))
        .await?
        .into_inner();
    assert_eq!(by_position, then);
    // As of now, the same as without as_of.
    let now = reports
        .get_statistics(q1(recorded_by(real_now())))
        .await?
        .into_inner();
    assert_eq!(now, today);
    // Before anything: nothing.
    let nothing = reports.get_statistics(q1(position(0))).await?.into_inner();
    assert_eq!(nothing.received, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_reports_keep_the_figures_of_their_day_on_sqlite() -> anyhow::Result<()> {
    as_of_reports_keep_the_figures_of_their_day(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_reports_keep_the_figures_of_their_day_on_postgres() -> anyhow::Result<()> {
    as_of_reports_keep_the_figures_of_their_day(Backend::Postgres).await
}
