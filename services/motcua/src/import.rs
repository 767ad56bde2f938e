//! `motcua import FILE.csv`: historic dossiers into intake's log through
//! `ImportDossiers`, a chunk of rows per call (two calls in flight), with a
//! progress bar of the rows intake has answered for, a summary, and every
//! rejected row as `line N: reason`.

mod lines;
mod row;

use std::{collections::HashMap, path::PathBuf, time::Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, stream::FuturesOrdered};
use indicatif::{ProgressBar, ProgressStyle};
use proto::intake::v1::{self as pb, intake_client::IntakeClient};

pub use row::{COLUMNS, local_instant};

use crate::connect::Services;

#[derive(Clone, Debug, clap::Args)]
#[command(
    about = "Import historic dossiers from a CSV file into intake's event log",
    long_about = "\
Import historic dossiers from a CSV file into intake's event log.

One line per dossier, after a header line naming the columns (any order):
  dossier_id, office_code, province_code, procedure_code   required
  procedure_field                                          optional
  channel      in_person | postal | online_partial | online_full | inter_agency
  received_at  required; due_at (else from the catalog), result_at, returned_at,
               withdrawn_at (+ withdraw_reason), stopped_at (+ stop_reason),
               surveyed_at (+ survey_scale satisfaction|quality,
               survey_rating top|middle|bottom; values of several surveys
               are separated by ';', and a dossier takes only one)
Instants are local time in Vietnam (UTC+7): YYYY-MM-DD HH:MM[:SS], or a date
alone (08:00; 17:00 for due_at). Empty cells are absent steps.

Each dossier's history is decided by intake's domain rules in time order and
appended all or nothing: a rejected line appends nothing, and never costs the
other lines. Importing the same line again is skipped (counted as already
imported), so a file can be imported again after fixing its rejected lines.

Every rejected line is printed as `line N: reason` (the header is line 1).
The exit status is 1 if any line was rejected or intake cannot be reached.",
    after_help = "\
Example:
  motcua import services/motcua/examples/import.csv
  MOTCUA_INTAKE=http://10.0.0.5:50051 motcua import ho-so-2019.csv --chunk 2000"
)]
pub struct ImportArgs {
    /// The CSV file (UTF-8, comma-separated, header line first).
    #[arg(value_name = "FILE.csv")]
    pub file: PathBuf,
    /// Lines sent per ImportDossiers call; two calls are in flight.
    #[arg(long, value_name = "ROWS", default_value_t = 8_000)]
    pub chunk: usize,
    /// Recorded as the actor of every imported event.
    #[arg(long, value_name = "NAME", default_value = "motcua-import")]
    pub actor: String,
}

/// What an import came to, for the summary (and the tests).
#[derive(Debug, Default)]
pub struct Summary {
    pub lines: u64,
    pub imported: u64,
    pub events: u64,
    pub already_imported: u64,
    /// (line, reason), in line order.
    pub rejected: Vec<(u64, String)>,
}

pub async fn run(services: &Services, args: ImportArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (rows, mut rejected) = read_file(&args.file, &args.actor)?;
    let target = services.intake();
    let channel = services.connect(&target).await?;
    let client = IntakeClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);

    let total = rows.len() as u64 + rejected.len() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} lines  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.inc(rejected.len() as u64);

    let mut summary = Summary {
        lines: total,
        ..Summary::default()
    };
    let call = |chunk: Vec<pb::ImportDossier>| {
        let mut client = client.clone();
        async move {
            client
                .import_dossiers(futures::stream::iter(chunk))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let mut chunks = rows.chunks(args.chunk.max(1)).map(<[_]>::to_vec);
    // Two calls in flight: intake decides one while the next arrives.
    let mut in_flight = FuturesOrdered::new();
    in_flight.extend(chunks.by_ref().take(2).map(call));
    while let Some(report) = in_flight.next().await {
        if let Some(chunk) = chunks.next() {
            in_flight.push_back(call(chunk));
        }
        let report = report.map_err(|status| target.status(&status))?;
        let answered = report.imported + report.already_imported + report.rejected.len() as u64;
        summary.imported += report.imported;
        summary.events += report.events;
        summary.already_imported += report.already_imported;
        rejected.extend(report.rejected.into_iter().map(|r| (r.row, r.reason)));
        bar.inc(answered);
        bar.set_message(format!("{} rejected", rejected.len()));
    }
    bar.finish_and_clear();
    rejected.sort_by_key(|(line, _)| *line);
    summary.rejected = rejected;

    println!(
        "{}: {} lines; imported {} dossiers ({} events), {} already imported, {} rejected, in {:.1} s",
        args.file.display(),
        summary.lines,
        summary.imported,
        summary.events,
        summary.already_imported,
        summary.rejected.len(),
        started.elapsed().as_secs_f64()
    );
    for (line, reason) in &summary.rejected {
        println!("line {line}: {reason}");
    }
    if !summary.rejected.is_empty() {
        anyhow::bail!(
            "{} of {} lines rejected (nothing of them was imported)",
            summary.rejected.len(),
            summary.lines
        );
    }
    Ok(())
}

/// The file's valid rows as messages, and its lines rejected here (bad
/// CSV, a bad value, a dossier id already on an earlier line).
#[allow(clippy::type_complexity)] // reason: a pair of plain lists reads better than a struct here
fn read_file(
    path: &std::path::Path,
    actor: &str,
) -> anyhow::Result<(Vec<pb::ImportDossier>, Vec<(u64, String)>)> {
    let open =
        || std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()));
    // A second reader of the file counts its lines (see `lines`).
    let lines = lines::LineCounter::new(std::io::BufReader::new(open()?));
    read_rows(open()?, lines, path, actor)
}

/// The rows of an import file held in memory, as [`read_file`] reads a
/// file: for the fuzz target of the parser (`fuzz/`); not an API.
#[doc(hidden)]
#[allow(clippy::type_complexity)] // reason: as read_file
pub fn read_bytes(
    bytes: &[u8],
    actor: &str,
) -> anyhow::Result<(Vec<pb::ImportDossier>, Vec<(u64, String)>)> {
    let lines = lines::LineCounter::new(bytes);
    read_rows(bytes, lines, std::path::Path::new("input.csv"), actor)
}

/// [`read_file`] on `input`, whose lines `lines` counts; `path` names it in
/// errors. Each row's number is the line it starts on (the header is line 1).
#[allow(clippy::type_complexity)] // reason: as read_file
fn read_rows<R: std::io::Read, L: std::io::BufRead>(
    input: R,
    mut lines: lines::LineCounter<L>,
    path: &std::path::Path,
    actor: &str,
) -> anyhow::Result<(Vec<pb::ImportDossier>, Vec<(u64, String)>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header = reader
        .headers()
        .with_context(|| format!("cannot read the header line of {}", path.display()))?
        .clone();
    let header = row::Header::new(&header).with_context(|| path.display().to_string())?;
    let columns = header_len(&mut reader)?;
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    let mut line = 1;
    let mut line_at = |position: Option<&csv::Position>, line: u64| -> anyhow::Result<u64> {
        match position {
            Some(p) => lines
                .line_of(p.byte())
                .with_context(|| format!("cannot read {}", path.display())),
            None => Ok(line + 1),
        }
    };
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                line = line_at(record.position(), line)?;
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                if record.len() != columns {
                    rejected.push((
                        line,
                        format!("has {} fields; the header has {columns}", record.len()),
                    ));
                    continue;
                }
                match header.parse(&record, line, actor) {
                    Ok(dossier) => match first_line.get(&dossier.dossier_id) {
                        Some(first) => rejected.push((
                            line,
                            format!(
                                "dossier_id: {} is already on line {first} of this file",
                                dossier.dossier_id
                            ),
                        )),
                        None => {
                            first_line.insert(dossier.dossier_id.clone(), line);
                            rows.push(dossier);
                        }
                    },
                    Err(reason) => rejected.push((line, reason)),
                }
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                line = line_at(e.position(), line)?;
                rejected.push((line, "is not valid UTF-8".to_owned()));
            }
            Err(e) => {
                let at = line_at(e.position(), line)?;
                anyhow::bail!("{}: line {at}: {e}", path.display());
            }
        }
    }
    Ok((rows, rejected))
}

fn header_len<R: std::io::Read>(reader: &mut csv::Reader<R>) -> anyhow::Result<usize> {
    Ok(reader.headers()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "dossier_id,office_code,province_code,procedure_code,channel,received_at,withdraw_reason";

    /// The file `lines` joined by `eol`, read as `motcua import` reads it:
    /// each kept row's (line, dossier) and each rejected (line, reason).
    #[allow(clippy::type_complexity)] // reason: two plain lists, as read_rows gives them
    fn read(lines: &[&str], eol: &str) -> (Vec<(u64, String)>, Vec<(u64, String)>) {
        let text = lines.join(eol) + eol;
        let counter = lines::LineCounter::new(text.as_bytes());
        let (rows, rejected) = read_rows(
            text.as_bytes(),
            counter,
            std::path::Path::new("t.csv"),
            "test",
        )
        .expect("a readable file");
        let rows = rows.into_iter().map(|r| (r.row, r.dossier_id)).collect();
        (rows, rejected)
    }

    fn rejected_lines(rejected: &[(u64, String)]) -> Vec<u64> {
        rejected.iter().map(|r| r.0).collect()
    }

    #[test]
    fn rows_are_numbered_by_their_line_with_lf_and_crlf() {
        let file = [
            HEADER,
            "A,TP,BTH,1.001,postal,2020-01-02,",
            "B,TP,BTH,1.001,by_pigeon,2020-01-02,",
            "A,TP,BTH,1.001,postal,2020-01-03,",
            "C,TP,BTH,1.001,postal,2020-01-02,",
        ];
        for eol in ["\n", "\r\n"] {
            let (rows, rejected) = read(&file, eol);
            assert_eq!(rows, [(2, "A".to_owned()), (5, "C".to_owned())], "{eol:?}");
            assert_eq!(rejected_lines(&rejected), [3, 4], "{eol:?}");
            assert!(rejected[0].1.starts_with("channel:"), "{rejected:?}");
            assert_eq!(
                rejected[1].1, "dossier_id: A is already on line 2 of this file",
                "{eol:?}"
            );
        }
    }

    #[test]
    fn a_row_with_a_quoted_line_break_is_numbered_by_its_first_line() {
        // Line 2 holds a reason over lines 2-3, line 5 is blank.
        for eol in ["\n", "\r\n"] {
            let file = [
                HEADER,
                &format!("A,TP,BTH,1.001,postal,2020-01-02,\"two{eol}lines\"") as &str,
                "B,TP,BTH,1.001,postal,2020-13-02,",
                "",
                "A,TP,BTH,1.001,postal,2020-01-03,",
                "C,TP,BTH,1.001,postal,2020-01-02,",
            ];
            let (rows, rejected) = read(&file, eol);
            assert_eq!(rows, [(2, "A".to_owned()), (7, "C".to_owned())], "{eol:?}");
            assert_eq!(rejected_lines(&rejected), [4, 6], "{eol:?}");
            assert_eq!(
                rejected[1].1, "dossier_id: A is already on line 2 of this file",
                "{eol:?}"
            );
        }
    }
}
