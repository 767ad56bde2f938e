//! `motcua republish --from N`: asks intake to publish its log again from
//! position N to the JetStream stream (recreating the stream if it was
//! deleted), and shows the progress intake streams back.

use indicatif::{ProgressBar, ProgressStyle};
use proto::intake::v1::{self as pb, intake_client::IntakeClient};

use crate::connect::Services;

#[derive(Clone, Debug, clap::Args)]
#[command(
    about = "Publish intake's event log again to the JetStream stream, from a position",
    long_about = "\
Publish intake's event log again to the JetStream stream, from a position.

For a stream that was deleted or lost (it is created again), or to feed a new
projection from the start. Intake publishes in position order from inside its
relay, so the live relay never interleaves with it; each message keeps its
event id as Nats-Msg-Id, so JetStream drops those it still remembers
(duplicate window) and projections ignore the others (each dossier's events
apply once, in version order). Republishing changes no figure.",
    after_help = "\
Examples:
  motcua republish --from 0
  MOTCUA_INTAKE=http://10.0.0.5:50051 motcua republish --from 125000"
)]
pub struct RepublishArgs {
    /// First position to publish again (0: the whole log).
    #[arg(long, value_name = "POSITION")]
    pub from: u64,
}

pub async fn run(services: &Services, args: RepublishArgs) -> anyhow::Result<()> {
    let target = services.intake();
    let channel = services.connect(&target).await?;
    // The whole republish is one call: no request timeout on it.
    let mut client = IntakeClient::new(channel);
    let mut request = tonic::Request::new(pb::RepublishRequest {
        from_position: args.from,
    });
    request.set_timeout(std::time::Duration::from_secs(24 * 3600));
    let mut progress = client
        .republish(request)
        .await
        .map_err(|s| target.status(&s))?
        .into_inner();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} events  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut last = None;
    while let Some(p) = progress.message().await.map_err(|s| target.status(&s))? {
        let total = (p.last_position + 1).saturating_sub(p.first_position);
        bar.set_length(total);
        bar.set_position(p.published);
        bar.set_message(format!("position {}", p.position));
        let done = p.done;
        last = Some(p);
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    match last {
        Some(p) if p.done => {
            if p.published == 0 {
                println!(
                    "nothing to republish: the log ends at position {}",
                    p.last_position
                );
            } else {
                println!(
                    "republished {} events (positions {}–{}) in {:.1} s; JetStream dropped {} as duplicates",
                    p.published,
                    p.first_position,
                    p.position,
                    started.elapsed().as_secs_f64(),
                    p.duplicates
                );
            }
            Ok(())
        }
        Some(p) => anyhow::bail!(
            "intake at {} stopped the republish at position {} ({} published)",
            target.url,
            p.position,
            p.published
        ),
        None => anyhow::bail!("intake at {} sent no progress", target.url),
    }
}
