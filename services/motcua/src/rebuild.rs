//! `motcua rebuild`: rebuilds the projection's read models from the event
//! log without downtime, and follows the rebuild with a progress bar until
//! the new generation serves.

use std::{io::IsTerminal as _, time::Duration};

use proto::reports::v1::{self as pb, rebuilds_client::RebuildsClient};

use crate::connect::Services;

#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "\
Examples:
  motcua rebuild                 # start one and follow it to the swap
  motcua rebuild --follow        # follow the one already running
  motcua rebuild --no-wait       # start one and return at once")]
pub struct RebuildArgs {
    /// Follow the rebuild already running instead of starting one.
    #[arg(long, conflicts_with = "no_wait")]
    pub follow: bool,
    /// Start it and return without following it.
    #[arg(long)]
    pub no_wait: bool,
}

fn state(s: &pb::RebuildStatus) -> pb::RebuildState {
    pb::RebuildState::try_from(s.state).unwrap_or(pb::RebuildState::Unspecified)
}

fn line(s: &pb::RebuildStatus) -> String {
    let eta = if s.eta_seconds > 0.0 {
        format!(", about {:.0} s left", s.eta_seconds)
    } else {
        String::new()
    };
    format!(
        "generation {}: {:?}, {} events applied, {} pending, {:.0} events/s{eta}",
        s.generation,
        state(s),
        s.events_applied,
        s.events_pending,
        s.events_per_second
    )
}

pub async fn run(services: &Services, args: RebuildArgs) -> anyhow::Result<()> {
    let target = services.projection();
    let mut client = RebuildsClient::new(services.connect(&target).await?);
    let mut status = if args.follow {
        client
            .get_rebuild(pb::GetRebuildRequest {})
            .await
            .map_err(|s| target.status(&s))?
            .into_inner()
    } else {
        client
            .start_rebuild(pb::StartRebuildRequest {})
            .await
            .map_err(|s| target.status(&s))?
            .into_inner()
    };
    if args.no_wait {
        println!("{}", line(&status));
        return Ok(());
    }
    if state(&status) == pb::RebuildState::Idle {
        anyhow::bail!("no rebuild is running (start one with `motcua rebuild`)");
    }
    let bar = indicatif::ProgressBar::new(status.events_applied + status.events_pending);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} rebuild [{bar:40}] {pos}/{len} events {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    loop {
        bar.set_length(status.events_applied + status.events_pending);
        bar.set_position(status.events_applied);
        bar.set_message(format!("{:.0}/s", status.events_per_second));
        match state(&status) {
            pb::RebuildState::Done => {
                bar.finish_and_clear();
                println!(
                    "rebuilt: generation {} serves ({} events replayed at {:.0} events/s)",
                    status.serving_generation, status.events_applied, status.events_per_second
                );
                return Ok(());
            }
            pb::RebuildState::Failed => {
                bar.abandon();
                anyhow::bail!(
                    "the rebuild failed, the serving generation is untouched: {}",
                    status.error
                );
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = client
            .get_rebuild(pb::GetRebuildRequest {})
            .await
            .map_err(|s| target.status(&s))?
            .into_inner();
        if !std::io::stderr().is_terminal() {
            eprintln!("{}", line(&status));
        }
    }
}
