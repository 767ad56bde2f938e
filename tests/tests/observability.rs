//! What operators watch: gRPC health and the Prometheus metrics of both
//! services, from their real binaries.

use std::time::Duration;

use tests::{Backend, ChildService, NatsServer, TestDb, eventually, free_port, unique_stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_follow_the_work() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let stream = unique_stream();
    let prefix = format!("{}.events", stream.to_ascii_lowercase());
    let (intake_db, projection_db) = (
        TestDb::new(Backend::Sqlite, "intake").await?,
        TestDb::new(Backend::Sqlite, "projection").await?,
    );
    let (intake_metrics, projection_metrics) = (free_port(), free_port());
    let intake = ChildService::start(
        "intake",
        &[
            ("INTAKE_DATABASE_URL", intake_db.url.clone()),
            ("NATS_URL", nats.url()),
            ("MOTCUA_STREAM", stream.clone()),
            ("MOTCUA_SUBJECT_PREFIX", prefix.clone()),
            (
                "INTAKE_METRICS_LISTEN",
                format!("127.0.0.1:{intake_metrics}"),
            ),
        ],
    )
    .await?;
    let projection = ChildService::start(
        "projection",
        &[
            ("PROJECTION_DATABASE_URL", projection_db.url.clone()),
            ("NATS_URL", nats.url()),
            ("MOTCUA_STREAM", stream.clone()),
            ("MOTCUA_SUBJECT_PREFIX", prefix),
            (
                "PROJECTION_METRICS_LISTEN",
                format!("127.0.0.1:{projection_metrics}"),
            ),
        ],
    )
    .await?;

    for (addr, service) in [
        (intake.addr, "motcua.intake.v1.Intake"),
        (projection.addr, "motcua.reports.v1.Reports"),
    ] {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    let desk = tests::Desk::connect(intake.addr).await?;
    let day = domain::LocalDay::from_ymd(2023, 4, 3).expect("date");
    for i in 0..5 {
        desk.receive(
            &format!("M-{i}"),
            "OBS",
            domain::Timestamp::at_local(day, 9, 0),
            domain::Timestamp::at_local(domain::LocalDay::from_days(day.days() + 5), 17, 0),
        )
        .await?;
    }
    // Five receipts, and five Late events from the deadline monitor: their
    // 2023 due dates are long past.
    eventually(Duration::from_secs(30), || async {
        let m = tests::scrape_metrics(intake_metrics).await?;
        anyhow::ensure!(
            tests::metric(&m, "intake_late_marked_total") == Some(5.0),
            "marked late: {m}"
        );
        anyhow::ensure!(
            tests::metric(&m, "intake_events_appended_total") == Some(10.0),
            "appended: {m}"
        );
        anyhow::ensure!(
            tests::metric(&m, "intake_events_published_total") == Some(10.0),
            "published"
        );
        anyhow::ensure!(m.contains("intake_batch_size"), "batch sizes");
        let p = tests::scrape_metrics(projection_metrics).await?;
        anyhow::ensure!(
            tests::metric(&p, "projection_events_applied_total") == Some(10.0),
            "applied: {p}"
        );
        anyhow::ensure!(p.contains("projection_batch_size"), "batch sizes");
        anyhow::ensure!(p.contains("projection_consumer_lag_events"), "consumer lag");
        Ok(())
    })
    .await?;
    Ok(())
}
