//! The district's six years, replayed through intake's gRPC API, read back
//! from projection's yearly series: exactly the file's figures.

use std::time::Duration;

use tests::{Backend, Pair, district, eventually};

async fn district_figures_come_back_exactly(backend: Backend) -> anyhow::Result<()> {
    let pair = Pair::start(backend).await?;
    let desk = pair.desk().await?;
    let province = pair.province().await?;
    let figures = district::figures()?;
    assert_eq!(figures.len(), 6);
    let scripts: Vec<_> = figures.iter().flat_map(district::scripts).collect();
    let dossiers = scripts.len() as u64;
    let commands = district::drive(&desk, scripts, 64).await?;
    assert_eq!(dossiers, figures.iter().map(|y| y.received).sum::<u64>());
    // The drive replays 2015-2020 with today's clock, so intake's deadline
    // monitor marks dossiers late while their results are still on the way
    // (their results, dated before, are still recorded): one desk event per
    // command, and at most one Late per dossier beside them.
    let late = pair.intake_store.kind_counts("late").await?;
    assert!(late.values().all(|n| *n == 1), "one Late per dossier");
    assert_eq!(
        pair.intake_store.count_desk_events().await?,
        commands,
        "one desk event per command"
    );

    let series = eventually(Duration::from_secs(120), || async {
        let series = province.yearly(district::OFFICE).await?;
        let received: u64 = series.rows.iter().map(|r| r.received).sum();
        let surveys: u64 = series.rows.iter().map(|r| r.surveys).sum();
        let resolved: u64 = series.rows.iter().map(|r| r.resolved).sum();
        anyhow::ensure!(
            received == dossiers
                && resolved == dossiers
                && surveys + received + resolved == commands,
            "projection not caught up: {received} received, {resolved} resolved, {surveys} surveys"
        );
        Ok(series)
    })
    .await?;

    assert_eq!(series.rows.len(), figures.len());
    for (row, y) in series.rows.iter().zip(&figures) {
        assert_eq!(row.year, y.year);
        assert_eq!(row.received, y.received, "{} received", y.year);
        assert_eq!(row.resolved_in_time, y.in_time, "{} in time", y.year);
        assert_eq!(row.resolved_late, y.late, "{} late", y.year);
        assert_eq!(
            row.in_time_over_resolved,
            format!("{}/{}", y.in_time, y.received),
            "{}",
            y.year
        );
        assert_eq!(row.surveys, y.surveys, "{} surveys", y.year);
        let coverage = y.surveys as f64 / y.received as f64;
        assert!(
            row.survey_coverage
                .is_some_and(|c| (c - coverage).abs() < 1e-12),
            "{} coverage",
            y.year
        );
        let scale = &row.survey_scales;
        assert_eq!(scale.len(), 1, "{} has one rating scale", y.year);
        assert_eq!(scale[0].scale, i32::from(y.scale));
        assert_eq!(
            scale[0].ratings[0].count, y.rating_top,
            "{} top ratings",
            y.year
        );
        assert_eq!(
            scale[0].ratings[1].count, y.rating_second,
            "{} second ratings",
            y.year
        );
        assert_eq!(scale[0].ratings[2].count, 0);
    }
    // The printed 18.42% for 2017 was wrong; the data says 16.39%.
    let y2017 = series
        .rows
        .iter()
        .find(|r| r.year == 2017)
        .expect("2017 row");
    assert_eq!(
        y2017.survey_coverage.map(|c| format!("{:.2}%", c * 100.0)),
        Some("16.39%".to_owned())
    );
    assert_eq!(y2017.in_time_over_resolved, "8953/8955");
    // 2020 (Q1): the seed printed 2717/2700; in time over resolved is 2700/2717.
    let y2020 = series
        .rows
        .iter()
        .find(|r| r.year == 2020)
        .expect("2020 row");
    assert_eq!(y2020.in_time_over_resolved, "2700/2717");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn district_figures_on_sqlite() -> anyhow::Result<()> {
    district_figures_come_back_exactly(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn district_figures_on_postgres() -> anyhow::Result<()> {
    district_figures_come_back_exactly(Backend::Postgres).await
}
