//! `motcua watch-late`: the projection's live late feed
//! (`motcua.reports.v1.Deadlines/WatchLate`) for an office or a province,
//! one line per notice. When the connection drops it reconnects with the
//! last position it printed, so nothing is missed or printed twice; Ctrl-C
//! stops it.

use std::{fmt::Write as _, time::Duration};

use proto::reports::v1::{self as pb, deadlines_client::DeadlinesClient};
use tonic::Streaming;

use crate::{
    connect::{Services, Target},
    localtime,
};

#[derive(Clone, Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("unit").required(true).args(["office", "province"])),
    after_help = "\
Each line: position, change, dossier, office, procedure, due date, when (local time, UTC+7):
  12  became-late  HS-2025-0042  TUY-PHONG  1.004227  due 2025-03-12 16:30:00  at 2025-03-12 16:30:00

Examples:
  motcua watch-late --office TUY-PHONG
  motcua watch-late --province BTH --json
  motcua watch-late --office TUY-PHONG --from-position 12   # what came after notice 12"
)]
pub struct WatchLateArgs {
    /// Office code, e.g. TUY-PHONG.
    #[arg(long, value_name = "CODE")]
    pub office: Option<String>,
    /// Province code, e.g. BTH: all its offices (instead of --office).
    #[arg(long, value_name = "CODE")]
    pub province: Option<String>,
    /// Start after this feed position (the first column of a line printed
    /// earlier); without it, the feed starts with what happens from now on.
    #[arg(long, value_name = "N")]
    pub from_position: Option<u64>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub async fn run(services: &Services, args: WatchLateArgs) -> anyhow::Result<()> {
    let unit = match (args.office, args.province) {
        (Some(office), _) => pb::scope::Unit::OfficeCode(office),
        (None, Some(province)) => pb::scope::Unit::ProvinceCode(province),
        (None, None) => anyhow::bail!("give --office or --province"),
    };
    let scope = pb::Scope {
        unit: Some(unit),
        ..Default::default()
    };
    let target = services.projection();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut after = args.from_position;
    // The first connection must work: a wrong address or a refused scope is
    // an error, not something to retry forever.
    let mut feed = tokio::select! {
        feed = open(services, &target, &scope, after) => feed?,
        _ = &mut ctrl_c => return Ok(()),
    };
    loop {
        let lost = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            next = feed.message() => match next {
                Ok(Some(notice)) => {
                    println!("{}", if args.json { json(&notice) } else { line(&notice) });
                    after = Some(notice.position);
                    continue;
                }
                Ok(None) => "the feed ended".to_owned(),
                Err(status) if refused(&status) => return Err(target.status(&status)),
                Err(status) => format!("{}", target.status(&status)),
            },
        };
        eprintln!(
            "motcua: lost the late feed ({lost}); reconnecting {}",
            after.map_or_else(
                || "from now (no notice yet)".to_owned(),
                |p| format!("after position {p}")
            )
        );
        // Reconnect until it works, a refusal, or Ctrl-C.
        let mut backoff = Duration::from_millis(200);
        feed = loop {
            tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                () = tokio::time::sleep(backoff) => {}
            }
            match open(services, &target, &scope, after).await {
                Ok(feed) => {
                    eprintln!(
                        "motcua: reconnected to {} at {}",
                        target.service, target.url
                    );
                    break feed;
                }
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Unreachable(_)) => backoff = (backoff * 2).min(MAX_BACKOFF),
            }
        };
    }
}

enum Failure {
    Unreachable(anyhow::Error),
    Refused(anyhow::Error),
}

impl From<Failure> for anyhow::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unreachable(e) | Failure::Refused(e) => e,
        }
    }
}

/// A status that another attempt would get again.
fn refused(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::Unimplemented
            | tonic::Code::FailedPrecondition
            | tonic::Code::OutOfRange
    )
}

async fn open(
    services: &Services,
    target: &Target,
    scope: &pb::Scope,
    after: Option<u64>,
) -> Result<Streaming<pb::LateNotice>, Failure> {
    let channel = services
        .connect(target)
        .await
        .map_err(Failure::Unreachable)?;
    DeadlinesClient::new(channel)
        .watch_late(pb::WatchLateRequest {
            scope: Some(scope.clone()),
            after_position: after,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| {
            let e = target.status(&status);
            if refused(&status) {
                Failure::Refused(e)
            } else {
                Failure::Unreachable(e)
            }
        })
}

fn change(notice: &pb::LateNotice) -> &'static str {
    match pb::LateChange::try_from(notice.change) {
        Ok(pb::LateChange::BecameLate) => "became-late",
        Ok(pb::LateChange::Resolved) => "resolved",
        Ok(pb::LateChange::Withdrawn) => "withdrawn",
        Ok(pb::LateChange::Stopped) => "stopped",
        Ok(pb::LateChange::Rescheduled) => "rescheduled",
        Ok(pb::LateChange::Paused) => "paused",
        Ok(pb::LateChange::Unspecified) | Err(_) => "unknown",
    }
}

/// One notice as a line of text (times in UTC+7).
pub fn line(n: &pb::LateNotice) -> String {
    format!(
        "{}  {}  {}  {}  {}  due {}  at {}",
        n.position,
        change(n),
        n.dossier_id,
        n.office_code,
        n.procedure_code,
        localtime::display(n.due_at.as_ref()),
        localtime::display(n.occurred_at.as_ref()),
    )
}

/// One notice as a JSON object on one line.
pub fn json(n: &pb::LateNotice) -> String {
    let mut out = format!("{{\"position\":{},\"change\":", n.position);
    string(&mut out, change(n));
    for (key, value) in [
        ("dossier_id", n.dossier_id.as_str()),
        ("office_code", &n.office_code),
        ("province_code", &n.province_code),
        ("procedure_code", &n.procedure_code),
        ("field", &n.field),
    ] {
        let _ = write!(out, ",\"{key}\":");
        string(&mut out, value);
    }
    for (key, value) in [
        ("due_at", localtime::rfc3339(n.due_at.as_ref())),
        ("occurred_at", localtime::rfc3339(n.occurred_at.as_ref())),
    ] {
        let _ = write!(out, ",\"{key}\":");
        match value {
            Some(v) => string(&mut out, &v),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

/// A JSON string literal.
fn string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> pb::LateNotice {
        pb::LateNotice {
            position: 12,
            change: pb::LateChange::BecameLate.into(),
            dossier_id: "HS-\"1\"".into(),
            office_code: "TP".into(),
            province_code: "BTH".into(),
            procedure_code: "1.004227".into(),
            field: "đất đai".into(),
            channel: 1,
            due_at: Some(prost_types::Timestamp {
                seconds: 1_710_151_200, // 2024-03-11 17:00 UTC+7
                nanos: 0,
            }),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_710_176_400, // 2024-03-12 00:00 UTC+7
                nanos: 0,
            }),
        }
    }

    #[test]
    fn a_notice_is_one_line_in_local_time() {
        assert_eq!(
            line(&notice()),
            "12  became-late  HS-\"1\"  TP  1.004227  due 2024-03-11 17:00:00  at 2024-03-12 00:00:00"
        );
    }

    #[test]
    fn a_notice_is_one_json_object() {
        assert_eq!(
            json(&notice()),
            "{\"position\":12,\"change\":\"became-late\",\"dossier_id\":\"HS-\\\"1\\\"\",\"office_code\":\"TP\",\
             \"province_code\":\"BTH\",\"procedure_code\":\"1.004227\",\"field\":\"đất đai\",\
             \"due_at\":\"2024-03-11T17:00:00+07:00\",\"occurred_at\":\"2024-03-12T00:00:00+07:00\"}"
        );
    }
}
