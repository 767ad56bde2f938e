//! Replays the Tuy Phong district's 2015–2020 figures through a running
//! intake and prints the yearly table the projection serves back: the
//! README's worked example.
//!
//!   cargo run -p tests --bin replay-district -- \
//!       --intake 127.0.0.1:50051 --projection 127.0.0.1:50052

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use tests::{Desk, Province, district, eventually};

#[derive(Parser)]
#[command(
    about = "Replay the district report's figures through intake and print the projection's yearly table"
)]
struct Args {
    /// intake's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    intake: SocketAddr,
    /// projection's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50052")]
    projection: SocketAddr,
    /// Dossiers in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match replay(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replay-district: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error as one line; a refusal says the office has another history.
fn one_line(e: &anyhow::Error) -> String {
    let refused = e.downcast_ref::<tonic::Status>().is_some_and(|s| {
        matches!(
            s.code(),
            tonic::Code::FailedPrecondition
                | tonic::Code::InvalidArgument
                | tonic::Code::AlreadyExists
                | tonic::Code::NotFound
        )
    });
    if refused {
        format!(
            "office {} already has a different history in this log ({e:#}); replay onto an empty store (README: starting over)",
            district::OFFICE
        )
    } else {
        format!("{e:#}")
    }
}

async fn replay(args: Args) -> anyhow::Result<()> {
    let desk = Desk::connect(args.intake).await?;
    let province = Province::connect(args.projection).await?;
    let head = log_head(args.intake).await?;
    let figures = district::figures()?;
    let scripts: Vec<_> = figures.iter().flat_map(district::scripts).collect();
    let dossiers = scripts.len() as u64;
    let started = std::time::Instant::now();
    let driven = district::drive_after(&desk, scripts, args.concurrency, head).await?;
    let elapsed = started.elapsed();
    let commands = driven.commands;
    if driven.appended == 0 {
        println!(
            "nothing changed: the log already held all {commands} commands for {dossiers} dossiers (each answered with its first reply)"
        );
    } else {
        println!(
            "sent {commands} commands for {dossiers} dossiers in {:.1} s ({:.0} commands/s)",
            elapsed.as_secs_f64(),
            commands as f64 / elapsed.as_secs_f64()
        );
        if driven.appended < commands {
            println!(
                "{} of them appended; the log already held the rest",
                driven.appended
            );
        }
    }
    let series = eventually(Duration::from_secs(120), || async {
        let series = province.yearly(district::OFFICE).await?;
        let received: u64 = series.rows.iter().map(|r| r.received).sum();
        let resolved: u64 = series.rows.iter().map(|r| r.resolved).sum();
        anyhow::ensure!(
            received >= dossiers && resolved >= dossiers,
            "projection catching up"
        );
        Ok(series)
    })
    .await?;
    println!("office {}", series.office_code);
    println!(
        "{:>4}  {:>8}  {:>16}  {:>4}  {:>7}  {:>8}",
        "year", "received", "in time/resolved", "late", "surveys", "coverage"
    );
    for r in &series.rows {
        // No receipt in the year: no coverage, "/" as the appendix writes it.
        let coverage = r
            .survey_coverage
            .map_or_else(|| "/".to_owned(), |c| format!("{:.2}%", c * 100.0));
        println!(
            "{:>4}  {:>8}  {:>16}  {:>4}  {:>7}  {:>8}",
            r.year, r.received, r.in_time_over_resolved, r.resolved_late, r.surveys, coverage
        );
    }
    Ok(())
}

/// Intake's log head now.
async fn log_head(intake: SocketAddr) -> anyhow::Result<u64> {
    use proto::intake::v1::{ReadEventsRequest, log_client::LogClient};
    let mut log = LogClient::connect(format!("http://{intake}"))
        .await
        .with_context(|| format!("cannot reach intake at {intake}"))?;
    Ok(log
        .read_events(ReadEventsRequest {
            after_position: 0,
            limit: 1,
        })
        .await?
        .into_inner()
        .head)
}
