//! `motcua`, the operator's command line: it talks gRPC to the two services,
//! intake (desk commands, the event log) and projection (reports, read
//! models), and turns their answers into what an operator or a district
//! office needs — first the yearly report as a terminal table, CSV or XLSX.
//!
//! It knows only the services' public gRPC API (the `proto` crate) and their
//! addresses: no database, no NATS, no domain internals. Whatever it shows,
//! any other gRPC client could compute from the same calls.
//!
//! Each subcommand is a module with its `clap` arguments and a `run`
//! function; `connect` holds the shared connection (timeouts, one-line
//! errors naming the service and its address), `vn` the Vietnamese way of
//! writing numbers.

pub mod connect;
pub mod import;
pub mod localtime;
pub mod parked;
pub mod rebuild;
pub mod report;
pub mod republish;
pub mod units;
pub mod vn;
pub mod watch;

use clap::{Parser, Subcommand};

pub use connect::Services;

#[derive(Debug, Parser)]
#[command(
    name = "motcua",
    version,
    about = "Motcua's operator command line: reports, parked events and the late feed, over gRPC",
    after_help = "\
Examples:
  motcua report --office TUY-PHONG --from-year 2015 --to-year 2020
  motcua --projection http://10.0.0.5:50052 report --office TUY-PHONG --format xlsx --output tuy-phong.xlsx
  motcua units
  motcua parked list
  motcua parked replay --from-intake
  motcua watch-late --office TUY-PHONG
  motcua import services/motcua/examples/import.csv
  motcua republish --from 0"
)]
pub struct Cli {
    #[command(flatten)]
    pub services: Services,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Yearly figures of an office or a province: a table, or the report's
    /// appendix (Phụ lục 03) as CSV or XLSX.
    Report(report::ReportArgs),
    /// The offices and provinces that have events, with their first and
    /// last dates of events and the dossiers they received.
    Units(units::UnitsArgs),
    /// Events the projection could not apply: list them, replay them after
    /// a fix (--from-intake: with intake's copy of each).
    Parked(parked::ParkedArgs),
    /// A live feed of dossiers becoming late (and leaving that state) for
    /// an office or a province; reconnects by itself, Ctrl-C stops it.
    WatchLate(watch::WatchLateArgs),
    /// Rebuild the read models from the event log without downtime, with
    /// a progress bar until the new generation serves.
    Rebuild(rebuild::RebuildArgs),
    // About texts (short and long) are on the argument structs.
    Import(import::ImportArgs),
    Republish(republish::RepublishArgs),
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Report(args) => report::run(&cli.services, args).await,
        Command::Units(args) => units::run(&cli.services, args).await,
        Command::Parked(args) => parked::run(&cli.services, args).await,
        Command::WatchLate(args) => watch::run(&cli.services, args).await,
        Command::Rebuild(args) => rebuild::run(&cli.services, args).await,
        Command::Import(args) => import::run(&cli.services, args).await,
        Command::Republish(args) => republish::run(&cli.services, args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn office_and_province_exclude_each_other() {
        let both = Cli::try_parse_from(["motcua", "report", "--office", "A", "--province", "B"]);
        assert!(both.is_err());
        let neither = Cli::try_parse_from(["motcua", "report"]);
        assert!(neither.is_err());
        let half =
            Cli::try_parse_from(["motcua", "report", "--office", "A", "--from-year", "2015"]);
        assert!(half.is_err(), "--from-year needs --to-year");
    }
}
