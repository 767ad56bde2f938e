//! Reports a province can use in one call (issue 20): the yearly series of
//! a province (its offices summed), the list of units with events and
//! their dates, and rates that are absent, not 0, when their base is 0.
//! Both databases.

use std::time::Duration;

use domain::{LocalDay, Timestamp};
use proto::{events::v1 as ev, intake::v1 as pb, reports::v1 as rp};
use tests::{Backend, Pair, Province, eventually, meta, procedure, ts};
use tonic::Code;

fn day(y: i32, m: u8, d: u8) -> LocalDay {
    LocalDay::from_ymd(y, m, d).expect("a real date")
}

fn at(y: i32, m: u8, d: u8, h: u8) -> Timestamp {
    Timestamp::at_local(day(y, m, d), h, 0)
}

/// Far ahead: the deadline monitor never marks such a dossier late, so no
/// Late event (counted on its own date) moves a unit's last event date.
fn far() -> Timestamp {
    at(2099, 12, 31, 17)
}

/// TP and PT in province BTH, NT in province KHA:
/// - TP: A received 2/3/2020, resolved on its due date 10/3; B received
///   1/6/2021, resolved late 15/6, surveyed 16/6; E received 20/12/2021,
///   resolved early 5/1/2022.
/// - PT: C received 4/1/2021, resolved early 8/1/2021.
/// - NT: D received 5/5/2019, resolved early 10/5/2019.
async fn drive(pair: &Pair) -> anyhow::Result<()> {
    let desk = pair.desk().await?;
    desk.receive("A", "TP", at(2020, 3, 2, 8), at(2020, 3, 10, 17))
        .await?;
    desk.record_result("A", at(2020, 3, 10, 9)).await?;
    desk.receive("B", "TP", at(2021, 6, 1, 8), at(2021, 6, 10, 17))
        .await?;
    desk.record_result("B", at(2021, 6, 15, 9)).await?;
    desk.record_survey(
        "B",
        at(2021, 6, 16, 9),
        ev::RatingScale::Satisfaction,
        ev::Rating::Top,
    )
    .await?;
    desk.receive("E", "TP", at(2021, 12, 20, 8), far()).await?;
    desk.record_result("E", at(2022, 1, 5, 9)).await?;
    desk.receive("C", "PT", at(2021, 1, 4, 8), far()).await?;
    desk.record_result("C", at(2021, 1, 8, 9)).await?;
    desk.receive_with(pb::ReceiveDossierRequest {
        meta: meta(at(2019, 5, 5, 8)),
        dossier_id: "D".into(),
        office_code: "NT".into(),
        province_code: "KHA".into(),
        procedure: procedure(),
        channel: ev::Channel::InPerson.into(),
        due_at: ts(far()),
        due_on: None,
    })
    .await?;
    desk.record_result("D", at(2019, 5, 10, 9)).await?;
    Ok(())
}

fn province_request(province: &str) -> rp::YearlySeriesRequest {
    rp::YearlySeriesRequest {
        province_code: province.into(),
        ..Default::default()
    }
}

/// Waits until the projection holds all five dossiers' results and B's survey.
async fn caught_up(province: &Province) -> anyhow::Result<()> {
    eventually(Duration::from_secs(30), || async {
        let units = province.units("").await?;
        let resolved: u64 = [
            province.yearly_with(province_request("BTH")).await?,
            province.yearly_with(province_request("KHA")).await?,
        ]
        .iter()
        .flat_map(|s| &s.rows)
        .map(|r| r.resolved + r.surveys)
        .sum();
        anyhow::ensure!(
            units.offices.len() == 3 && resolved == 6,
            "projection not caught up: {units:?}, {resolved} results and surveys"
        );
        Ok(())
    })
    .await
}

fn row(
    year: i32,
    received: u64,
    (in_time, late): (u64, u64),
    surveys: u64,
    coverage: Option<f64>,
) -> rp::YearRow {
    rp::YearRow {
        year,
        received,
        resolved: in_time + late,
        resolved_in_time: in_time,
        resolved_late: late,
        in_time_over_resolved: format!("{in_time}/{}", in_time + late),
        surveys,
        survey_coverage: coverage,
        survey_scales: if surveys == 0 {
            Vec::new()
        } else {
            vec![rp::ScaleDistribution {
                scale: ev::RatingScale::Satisfaction.into(),
                count: surveys,
                ratings: [
                    (ev::Rating::Top, surveys),
                    (ev::Rating::Middle, 0),
                    (ev::Rating::Bottom, 0),
                ]
                .into_iter()
                .map(|(rating, count)| rp::RatingCount {
                    rating: rating.into(),
                    count,
                })
                .collect(),
            }]
        },
    }
}

async fn yearly_series_of_a_province(backend: Backend) -> anyhow::Result<()> {
    let pair = Pair::start(backend).await?;
    drive(&pair).await?;
    let province = pair.province().await?;
    caught_up(&province).await?;

    // BTH: TP and PT summed, every year with events of either; 2022 has a
    // result but no receipt, so no coverage (not 0%).
    let bth = province.yearly_with(province_request("BTH")).await?;
    assert_eq!(
        (bth.office_code.as_str(), bth.province_code.as_str()),
        ("", "BTH")
    );
    assert_eq!(
        bth.rows,
        [
            row(2020, 1, (1, 0), 0, Some(0.0)),
            row(2021, 3, (1, 1), 1, Some(1.0 / 3.0)),
            row(2022, 0, (1, 0), 0, None),
        ]
    );
    // Each year's row is the sum of its offices' rows.
    let tp = province.yearly_with(rp::YearlySeriesRequest {
        office_code: "TP".into(),
        from_year: 2020,
        to_year: 2022,
        ..Default::default()
    });
    let pt = province.yearly_with(rp::YearlySeriesRequest {
        office_code: "PT".into(),
        from_year: 2020,
        to_year: 2022,
        ..Default::default()
    });
    let (tp, pt) = (tp.await?, pt.await?);
    assert_eq!(tp.office_code, "TP");
    assert_eq!(tp.rows[1], row(2021, 2, (0, 1), 1, Some(0.5)));
    for ((b, t), p) in bth.rows.iter().zip(&tp.rows).zip(&pt.rows) {
        assert_eq!(
            (b.received, b.resolved_in_time, b.resolved_late, b.surveys),
            (
                t.received + p.received,
                t.resolved_in_time + p.resolved_in_time,
                t.resolved_late + p.resolved_late,
                t.surveys + p.surveys
            ),
            "{}",
            b.year
        );
    }
    // A range of years for the province; KHA alone.
    let bth_2021 = province
        .yearly_with(rp::YearlySeriesRequest {
            from_year: 2021,
            to_year: 2021,
            ..province_request("BTH")
        })
        .await?;
    assert_eq!(bth_2021.rows, bth.rows[1..2]);
    let kha = province.yearly_with(province_request("KHA")).await?;
    assert_eq!(kha.rows, [row(2019, 1, (1, 0), 0, Some(0.0))]);

    refusals(&province).await?;
    zero_bases(&province).await
}

/// Exactly one of the two codes, each a code a subject can hold.
async fn refusals(province: &Province) -> anyhow::Result<()> {
    // Exactly one of the two codes.
    for (request, says) in [
        (rp::YearlySeriesRequest::default(), "neither is set"),
        (
            rp::YearlySeriesRequest {
                office_code: "TP".into(),
                ..province_request("BTH")
            },
            "both are set",
        ),
    ] {
        let status = province
            .yearly_with(request)
            .await
            .expect_err("exactly one unit");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("office_code/province_code")
                && status.message().contains(says),
            "{status:?}"
        );
    }
    let status = province
        .yearly_with(province_request("not a province"))
        .await
        .expect_err("a bad code");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("province_code:"), "{status:?}");

    Ok(())
}

/// Rates whose base is 0 are unset; the others as before, by their new names.
async fn zero_bases(province: &Province) -> anyhow::Result<()> {
    // Rates with a zero base are absent: PT resolved and received nothing
    // in 2022.
    let stats = province
        .statistics("PT", day(2022, 1, 1), day(2022, 12, 31))
        .await?;
    assert_eq!((stats.resolved, stats.in_time_rate), (0, None));
    assert_eq!(stats.in_time_over_resolved, "0/0");
    let surveys = province
        .surveys("PT", day(2022, 1, 1), day(2022, 12, 31))
        .await?;
    assert_eq!((surveys.dossiers_received, surveys.coverage), (0, None));
    // TP in 2021 and 2022: B late, E early; nothing on its due date.
    let stats = province
        .statistics("TP", day(2021, 1, 1), day(2022, 12, 31))
        .await?;
    assert_eq!(
        (
            stats.resolved_early,
            stats.resolved_on_due_date,
            stats.resolved_late,
            stats.resolved_in_time
        ),
        (1, 0, 1, 1)
    );
    assert_eq!(stats.in_time_rate, Some(0.5));
    // TP in 2020: A on its due date is in time.
    let stats = province
        .statistics("TP", day(2020, 1, 1), day(2020, 12, 31))
        .await?;
    assert_eq!((stats.resolved_on_due_date, stats.resolved_in_time), (1, 1));
    assert_eq!(stats.in_time_rate, Some(1.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yearly_series_of_a_province_on_sqlite() -> anyhow::Result<()> {
    yearly_series_of_a_province(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yearly_series_of_a_province_on_postgres() -> anyhow::Result<()> {
    yearly_series_of_a_province(Backend::Postgres).await
}

fn unit(
    office: &str,
    province: &str,
    (first, last): (LocalDay, LocalDay),
    received: u64,
    offices: u32,
) -> rp::Unit {
    rp::Unit {
        office_code: office.into(),
        province_code: province.into(),
        first_event_day: tests::date(first),
        last_event_day: tests::date(last),
        dossiers_received: received,
        offices,
    }
}

async fn units_with_their_dates(backend: Backend) -> anyhow::Result<()> {
    let pair = Pair::start(backend).await?;
    drive(&pair).await?;
    let province = pair.province().await?;
    caught_up(&province).await?;

    let tp = unit("TP", "BTH", (day(2020, 3, 2), day(2022, 1, 5)), 3, 1);
    let pt = unit("PT", "BTH", (day(2021, 1, 4), day(2021, 1, 8)), 1, 1);
    let nt = unit("NT", "KHA", (day(2019, 5, 5), day(2019, 5, 10)), 1, 1);
    let units = province.units("").await?;
    assert_eq!(units.offices, [pt.clone(), tp.clone(), nt.clone()]);
    assert_eq!(
        units.provinces,
        [
            unit("", "BTH", (day(2020, 3, 2), day(2022, 1, 5)), 4, 2),
            unit("", "KHA", (day(2019, 5, 5), day(2019, 5, 10)), 1, 1),
        ]
    );
    let kha = province.units("KHA").await?;
    assert_eq!(kha.offices, [nt]);
    assert_eq!(kha.provinces.len(), 1);
    let none = province.units("NOWHERE").await?;
    assert!(none.offices.is_empty() && none.provinces.is_empty());
    let status = province.units("not a code").await.expect_err("a bad code");
    assert_eq!(status.code(), Code::InvalidArgument);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_with_their_dates_on_sqlite() -> anyhow::Result<()> {
    units_with_their_dates(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_with_their_dates_on_postgres() -> anyhow::Result<()> {
    units_with_their_dates(Backend::Postgres).await
}
