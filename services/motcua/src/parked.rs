//! `motcua parked list | replay`: the events the projection could not apply
//! (`motcua.admin.v1.ParkedEvents`), and their replay after a fix. With
//! `--from-intake`, each parked event's authoritative copy is read from
//! intake's log by its position (`motcua.intake.v1.Log/ReadEvents`) and sent
//! as the replacement payload.

use std::{collections::HashMap, fmt::Write as _};

use proto::{
    admin::v1::{self as pb, parked_events_client::ParkedEventsClient},
    intake::v1::{ReadEventsRequest, log_client::LogClient},
};

use crate::{
    connect::{Connection, Services, Target},
    localtime,
};

#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "\
Examples:
  motcua parked list
  motcua parked replay --from-intake
  motcua --projection http://10.0.0.5:50052 --intake http://10.0.0.4:50051 parked replay --seq 7 --from-intake")]
pub struct ParkedArgs {
    #[command(subcommand)]
    pub command: ParkedCommand,
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum ParkedCommand {
    /// The parked events: stream sequence, log position, dossier, version,
    /// when they were parked and why.
    #[command(after_help = "\
Example:
  motcua parked list
  seq  position  dossier  version  parked at (UTC+7)    reason
    7         5  -        -        2025-03-07 16:30:12  not a motcua.events.v1.Event: …")]
    List,
    /// Applies parked events again (all, or those given with --seq); prints
    /// what applied and what is still parked, and exits non-zero if some
    /// of them are.
    #[command(after_help = "\
Examples:
  motcua parked replay                     # every parked event, as it was parked
  motcua parked replay --from-intake       # each one's authoritative copy from intake's log
  motcua parked replay --seq 7 --seq 9 --from-intake")]
    Replay(ReplayArgs),
}

#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    /// Replay only this stream sequence (repeat for several).
    #[arg(long = "seq", value_name = "N")]
    pub seqs: Vec<u64>,
    /// Replace each parked payload with the event at its log position in
    /// intake's store (the `Motcua-Position` header it arrived with).
    #[arg(long)]
    pub from_intake: bool,
}

pub async fn run(services: &Services, args: ParkedArgs) -> anyhow::Result<()> {
    let target = services.projection();
    let mut client = ParkedEventsClient::new(services.connect(&target).await?);
    match args.command {
        ParkedCommand::List => {
            let (events, held) = list_all(&mut client, &target).await?;
            print!("{}", render_list(&events, held));
            Ok(())
        }
        ParkedCommand::Replay(args) => replay(services, &target, &mut client, args).await,
    }
}

/// Every parked event, following the pages, and the held count.
async fn list_all(
    client: &mut ParkedEventsClient<Connection>,
    target: &Target,
) -> anyhow::Result<(Vec<pb::ParkedEvent>, u64)> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_parked(pb::ListParkedRequest {
                page_size: 500,
                page_token: token,
            })
            .await
            .map_err(|s| target.status(&s))?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return Ok((events, page.held));
        }
        token = page.next_page_token;
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn dossier(id: &str) -> &str {
    if id.is_empty() { "-" } else { id }
}

/// The table `parked list` prints.
pub fn render_list(events: &[pb::ParkedEvent], held: u64) -> String {
    if events.is_empty() {
        return format!("no parked events; {held} held\n");
    }
    let rows: Vec<[String; 6]> = events
        .iter()
        .map(|e| {
            [
                e.stream_seq.to_string(),
                or_dash(e.position),
                dossier(&e.dossier_id).to_owned(),
                or_dash(e.version),
                localtime::display(e.parked_at.as_ref()),
                e.reason.split_whitespace().collect::<Vec<_>>().join(" "),
            ]
        })
        .collect();
    let header = [
        "seq",
        "position",
        "dossier",
        "version",
        "parked at (UTC+7)",
        "reason",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 6]| {
        let _ = writeln!(
            out,
            "{:>w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
    };
    line(&mut out, header);
    for r in &rows {
        line(
            &mut out,
            [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]].map(String::as_str),
        );
    }
    let _ = writeln!(
        out,
        "{} parked; {held} held behind a version gap",
        events.len()
    );
    out
}

async fn replay(
    services: &Services,
    target: &Target,
    client: &mut ParkedEventsClient<Connection>,
    args: ReplayArgs,
) -> anyhow::Result<()> {
    let (parked, _) = list_all(client, target).await?;
    let chosen: Vec<&pb::ParkedEvent> = if args.seqs.is_empty() {
        parked.iter().collect()
    } else {
        let by_seq: HashMap<u64, &pb::ParkedEvent> =
            parked.iter().map(|e| (e.stream_seq, e)).collect();
        let mut chosen = Vec::new();
        for seq in &args.seqs {
            match by_seq.get(seq) {
                Some(e) => chosen.push(*e),
                None => anyhow::bail!(
                    "stream sequence {seq} is not parked (`motcua parked list` shows those that are)"
                ),
            }
        }
        chosen
    };
    if chosen.is_empty() {
        println!("no parked events to replay");
        return Ok(());
    }
    let mut replacements = HashMap::new();
    if args.from_intake {
        let intake = services.intake();
        let mut log = LogClient::new(services.connect(&intake).await?);
        for e in &chosen {
            let Some(position) = e.position else {
                println!(
                    "seq {}: no log position on the message; replayed as parked",
                    e.stream_seq
                );
                continue;
            };
            let reply = log
                .read_events(ReadEventsRequest {
                    after_position: position.saturating_sub(1),
                    limit: 1,
                })
                .await
                .map_err(|s| intake.status(&s))?
                .into_inner();
            match reply.events.into_iter().next() {
                Some(stored) if stored.position == position => {
                    replacements.insert(e.stream_seq, stored.payload);
                }
                _ => println!(
                    "seq {}: position {position} is not in intake's log; replayed as parked",
                    e.stream_seq
                ),
            }
        }
    }
    let reply = client
        .replay_parked(pb::ReplayParkedRequest {
            stream_seqs: chosen.iter().map(|e| e.stream_seq).collect(),
            replacements,
        })
        .await
        .map_err(|s| target.status(&s))?
        .into_inner();
    print!("{}", render_replay(&reply));
    let remaining = reply
        .events
        .iter()
        .filter(|e| e.outcome() == pb::ReplayOutcome::StillParked)
        .count();
    match remaining {
        0 => Ok(()),
        1 => anyhow::bail!("1 replayed event is still parked"),
        n => anyhow::bail!("{n} replayed events are still parked"),
    }
}

/// What `parked replay` prints: one line per event, then the totals.
pub fn render_replay(reply: &pb::ReplayParkedReply) -> String {
    let mut out = String::new();
    let (mut applied, mut already, mut still) = (0, 0, 0);
    for e in &reply.events {
        let what = format!(
            "seq {}  position {}  dossier {} version {}{}",
            e.stream_seq,
            or_dash(e.position),
            dossier(&e.dossier_id),
            or_dash(e.version),
            if e.replaced { "  (intake's copy)" } else { "" },
        );
        let _ = match e.outcome() {
            pb::ReplayOutcome::Applied => {
                applied += 1;
                writeln!(
                    out,
                    "applied        {what}; {} held event(s) applied after it",
                    e.released
                )
            }
            pb::ReplayOutcome::AlreadyApplied => {
                already += 1;
                writeln!(out, "already there  {what}; removed from the parked list")
            }
            _ => {
                still += 1;
                writeln!(out, "still parked   {what}: {}", e.reason)
            }
        };
    }
    let _ = writeln!(
        out,
        "replayed {}: {applied} applied, {already} already applied, {still} still parked; {} parked in all",
        reply.events.len(),
        reply.still_parked
    );
    out
}
