//! The `motcua.reports.v1.Deadlines` service: overdue and soon-due dossiers
//! for a scope, paged, and the live late feed.
//!
//! The feed is the `late_feed` table, written by the consumer in the same
//! transaction as the events that caused each notice, and numbered in commit
//! order. A watcher reads the table after the position it holds and then
//! waits for the store to announce a new head, so a client that reconnects
//! with its last position gets exactly what it missed, and nothing twice.

use std::{pin::Pin, sync::Arc, time::Duration};

use domain::{LocalDay, Timestamp};
use futures::Stream;
use proto::reports::v1 as pb;
use sqlx::{AnyPool, Arguments as _, Row as _, any::AnyArguments};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    apply::LateChange,
    error::ReportError,
    generations::Serving,
    reports::{Filter, internal},
};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1_000;
/// Notices read from the table per query while catching a watcher up.
const FEED_CHUNK: i64 = 500;

#[derive(Clone, Debug)]
pub struct DeadlinesService {
    serving: Arc<Serving>,
    feed: watch::Receiver<u64>,
    clock: fn() -> Timestamp,
    /// Ends live watches when the server shuts down.
    shutdown: CancellationToken,
}

fn system_now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    Timestamp::from_micros(micros)
}

impl DeadlinesService {
    pub fn new(serving: Arc<Serving>, shutdown: CancellationToken) -> Self {
        Self {
            feed: serving.store().feed_updates(),
            serving,
            clock: system_now,
            shutdown,
        }
    }
}

fn page_size(requested: u32) -> i64 {
    i64::from(match requested {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    })
}

/// A page token is the last row's (due_at, dossier_id).
fn parse_token(token: &str) -> Result<Option<(i64, String)>, ReportError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ReportError::invalid("page_token", "is not a token from a previous page");
    let (due, id) = token.split_once(':').ok_or_else(bad)?;
    Ok(Some((due.parse().map_err(|_| bad())?, id.to_owned())))
}

fn instant(
    t: Option<&prost_types::Timestamp>,
    now: Timestamp,
    field: &'static str,
) -> Result<Timestamp, ReportError> {
    match t {
        None => Ok(now),
        Some(t) => bus::timestamp_from_proto(t)
            .ok_or_else(|| ReportError::invalid(field, "is not a valid timestamp")),
    }
}

fn dossier(row: &sqlx::any::AnyRow) -> Result<pb::OpenDossier, ReportError> {
    let received_on = row
        .try_get::<Option<i64>, _>(6)
        .map_err(internal)?
        .map(|d| {
            let (year, month, day) = LocalDay::from_days(d as i32).ymd();
            pb::LocalDate {
                year,
                month: i32::from(month),
                day: i32::from(day),
            }
        });
    Ok(pb::OpenDossier {
        dossier_id: row.try_get(0).map_err(internal)?,
        office_code: row.try_get(1).map_err(internal)?,
        province_code: row.try_get(2).map_err(internal)?,
        procedure_code: row.try_get(3).map_err(internal)?,
        field: row.try_get(4).map_err(internal)?,
        channel: row.try_get::<i64, _>(5).map_err(internal)? as i32,
        received_on,
        due_at: row
            .try_get::<Option<i64>, _>(7)
            .map_err(internal)?
            .map(|d| bus::timestamp_to_proto(Timestamp::from_micros(d))),
        marked_late: row
            .try_get::<Option<i64>, _>(8)
            .map_err(internal)?
            .is_some(),
    })
}

const OPEN_COLUMNS: &str = "dossier_id, office_code, province_code, procedure_code, field, channel, received_day, due_at, late_at";

impl DeadlinesService {
    /// Runs `condition` (over the filter's placeholders, then `ints` as
    /// `$k`) with keyset paging on (due_at, dossier_id).
    async fn page(
        &self,
        filter: &Filter,
        condition: &str,
        ints: &[i64],
        size: i64,
        token: &str,
    ) -> Result<pb::DossierPage, ReportError> {
        let cursor = parse_token(token)?;
        let mut extra = ints.to_vec();
        let mut sql = format!(
            "SELECT {OPEN_COLUMNS} FROM dossiers WHERE {} AND {condition}",
            filter.sql
        );
        if let Some((due, _)) = &cursor {
            extra.push(*due);
            let d = filter.next(extra.len());
            let id = filter.next(extra.len() + 1);
            sql.push_str(&format!(
                " AND (due_at > {d} OR (due_at = {d} AND dossier_id > {id}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY due_at, dossier_id LIMIT {}",
            size.saturating_add(1)
        ));
        let mut args: AnyArguments = filter.arguments(&extra)?;
        if let Some((_, id)) = cursor {
            args.add(id)
                .map_err(|e| ReportError::Internal(anyhow::anyhow!("encode an argument: {e}")))?;
        }
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .persistent(false)
            .fetch_all(self.serving.store().pool())
            .await
            .map_err(|e| ReportError::Internal(anyhow::Error::new(e).context("list dossiers")))?;
        let more = rows.len() as i64 > size;
        let mut dossiers = Vec::with_capacity(rows.len());
        for row in rows.iter().take(usize::try_from(size).unwrap_or(0)) {
            dossiers.push(dossier(row)?);
        }
        let next_page_token = match (more, dossiers.last()) {
            (true, Some(last)) => format!(
                "{}:{}",
                last.due_at
                    .as_ref()
                    .and_then(bus::timestamp_from_proto)
                    .map_or(0, Timestamp::micros),
                last.dossier_id
            ),
            _ => String::new(),
        };
        Ok(pb::DossierPage {
            dossiers,
            next_page_token,
        })
    }

    pub async fn overdue(
        &self,
        request: &pb::ListOverdueRequest,
    ) -> Result<pb::DossierPage, ReportError> {
        let filter = Filter::from_scope(request.scope.as_ref())?;
        let now = (self.clock)();
        let as_of = instant(request.as_of.as_ref(), now, "as_of")?;
        let day = i64::from(as_of.local_day().days());
        let t = filter.next(1);
        // Now (or later): the current state is exact. Earlier: open that
        // whole day and not in a supplement pause then, by local date.
        let condition = if as_of >= now {
            format!("closed_day IS NULL AND status = 'received' AND due_day < {t}")
        } else {
            format!(
                "received_day IS NOT NULL AND received_day <= {t} AND (closed_day IS NULL OR closed_day > {t}) \
                 AND due_day < {t} AND (pauses = 0 OR NOT EXISTS (SELECT 1 FROM pauses p WHERE p.dossier_id = dossiers.dossier_id \
                 AND p.from_day <= {t} AND (p.until_day IS NULL OR p.until_day > {t})))"
            )
        };
        self.page(
            &filter,
            &condition,
            &[day],
            page_size(request.page_size),
            &request.page_token,
        )
        .await
    }

    pub async fn due_soon(
        &self,
        request: &pb::ListDueSoonRequest,
    ) -> Result<pb::DossierPage, ReportError> {
        let filter = Filter::from_scope(request.scope.as_ref())?;
        if request.within_hours == 0 {
            return Err(ReportError::invalid(
                "within_hours",
                "must be at least 1 (e.g. 24 for the next day)",
            ));
        }
        let from = instant(request.from.as_ref(), (self.clock)(), "from")?;
        let until = from.plus_micros(i64::from(request.within_hours) * 3_600_000_000);
        let (a, b) = (filter.next(1), filter.next(2));
        let condition = format!(
            "closed_day IS NULL AND status = 'received' AND due_at >= {a} AND due_at <= {b}"
        );
        self.page(
            &filter,
            &condition,
            &[from.micros(), until.micros()],
            page_size(request.page_size),
            &request.page_token,
        )
        .await
    }
}

/// Notices of the feed after `after` for `filter`, at most [`FEED_CHUNK`].
async fn feed_after(
    pool: &AnyPool,
    filter: &Filter,
    after: u64,
) -> Result<Vec<pb::LateNotice>, ReportError> {
    let sql = format!(
        "SELECT seq, change, dossier_id, office_code, province_code, procedure_code, field, channel, due_at, occurred_at \
         FROM late_feed WHERE {} AND seq > {} ORDER BY seq LIMIT {FEED_CHUNK}",
        filter.sql,
        filter.next(1)
    );
    let args = filter.arguments(&[i64::try_from(after).unwrap_or(i64::MAX)])?;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .persistent(false)
        .fetch_all(pool)
        .await
        .map_err(|e| ReportError::Internal(anyhow::Error::new(e).context("read the late feed")))?;
    rows.iter()
        .map(|r| {
            let change = LateChange::from_code(r.try_get::<i64, _>(1).map_err(internal)? as i32)
                .map_or(pb::LateChange::Unspecified, |c| match c {
                    LateChange::BecameLate => pb::LateChange::BecameLate,
                    LateChange::Resolved => pb::LateChange::Resolved,
                    LateChange::Withdrawn => pb::LateChange::Withdrawn,
                    LateChange::Stopped => pb::LateChange::Stopped,
                    LateChange::Rescheduled => pb::LateChange::Rescheduled,
                    LateChange::Paused => pb::LateChange::Paused,
                });
            let ts = |v: Option<i64>| v.map(|m| bus::timestamp_to_proto(Timestamp::from_micros(m)));
            Ok(pb::LateNotice {
                position: u64::try_from(r.try_get::<i64, _>(0).map_err(internal)?).unwrap_or(0),
                change: change.into(),
                dossier_id: r.try_get(2).map_err(internal)?,
                office_code: r.try_get(3).map_err(internal)?,
                province_code: r.try_get(4).map_err(internal)?,
                procedure_code: r.try_get(5).map_err(internal)?,
                field: r.try_get(6).map_err(internal)?,
                channel: r.try_get::<i64, _>(7).map_err(internal)? as i32,
                due_at: ts(r.try_get(8).map_err(internal)?),
                occurred_at: ts(Some(r.try_get(9).map_err(internal)?)),
            })
        })
        .collect()
}

type NoticeStream = Pin<Box<dyn Stream<Item = Result<pb::LateNotice, Status>> + Send>>;

#[tonic::async_trait]
impl pb::deadlines_server::Deadlines for DeadlinesService {
    async fn list_overdue(
        &self,
        request: Request<pb::ListOverdueRequest>,
    ) -> Result<Response<pb::DossierPage>, Status> {
        let scope = request.get_ref().scope.as_ref();
        let pool = self.serving.store().pool().clone();
        crate::access::read_scope(server::identity_of(&request), scope, &pool).await?;
        Ok(Response::new(self.overdue(request.get_ref()).await?))
    }

    async fn list_due_soon(
        &self,
        request: Request<pb::ListDueSoonRequest>,
    ) -> Result<Response<pb::DossierPage>, Status> {
        let scope = request.get_ref().scope.as_ref();
        let pool = self.serving.store().pool().clone();
        crate::access::read_scope(server::identity_of(&request), scope, &pool).await?;
        Ok(Response::new(self.due_soon(request.get_ref()).await?))
    }

    type WatchLateStream = NoticeStream;

    async fn watch_late(
        &self,
        request: Request<pb::WatchLateRequest>,
    ) -> Result<Response<Self::WatchLateStream>, Status> {
        let scope = request.get_ref().scope.as_ref();
        let pool = self.serving.store().pool().clone();
        crate::access::read_scope(server::identity_of(&request), scope, &pool).await?;
        let request = request.into_inner();
        let filter = Filter::from_scope(request.scope.as_ref())?;
        let mut feed = self.feed.clone();
        // Mark the head seen before reading the table: a batch committed
        // after this line wakes the loop below, one committed before it is
        // in the table already.
        let head = *feed.borrow_and_update();
        let mut after = request.after_position.unwrap_or(head);
        let serving = self.serving.clone();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel::<Result<pb::LateNotice, Status>>(256);
        metrics::gauge!("projection_late_watchers").increment(1.0);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            'watch: loop {
                // Catch up with the table.
                loop {
                    // The serving generation's pool, at each read: a
                    // rebuild's swap hands the same feed to a new one.
                    let pool = serving.store().pool().clone();
                    match feed_after(&pool, &filter, after).await {
                        Ok(notices) => {
                            backoff = Duration::from_millis(100);
                            let full = notices.len() as i64 >= FEED_CHUNK;
                            for notice in notices {
                                after = notice.position;
                                if tx.send(Ok(notice)).await.is_err() {
                                    break 'watch;
                                }
                                metrics::counter!("projection_late_notices_sent_total")
                                    .increment(1);
                            }
                            if !full {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "late watch: reading the feed failed; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(backoff) => {}
                                () = shutdown.cancelled() => break 'watch,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                tokio::select! {
                    changed = feed.changed() => if changed.is_err() { break },
                    () = tx.closed() => break,
                    () = shutdown.cancelled() => break,
                }
            }
            metrics::gauge!("projection_late_watchers").decrement(1.0);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
