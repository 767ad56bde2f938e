//! The `motcua.reports.v1.Reports` service: every indicator of DESIGN.md's
//! "Reports", computed from the read models for any period of local dates.

use std::collections::BTreeMap;

use domain::{Channel, LocalDay, Rating, RatingScale};
use proto::reports::v1 as pb;
use sqlx::{AnyPool, Row as _, any::AnyArguments};
use tonic::{Request, Response, Status};

use crate::{apply::metric, error::ReportError};

mod units;
mod yearly;

/// Where a report reads: the serving generation (repointed by a rebuild's
/// swap), or a fixed store (an as-of scratch store).
#[derive(Clone, Debug)]
enum Source {
    Serving(std::sync::Arc<crate::generations::Serving>),
    Fixed(AnyPool, sqlkit::Backend),
}

#[derive(Clone, Debug)]
pub struct ReportsService {
    source: Source,
    /// The stream, for reports as of an earlier point; none in a scratch store.
    history: Option<crate::asof::History>,
}

/// A validated scope: which rows, as SQL conditions with their arguments.
pub(crate) struct Filter {
    pub(crate) sql: String,
    args: Vec<Arg>,
}

#[derive(Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

impl Filter {
    pub(crate) fn from_scope(scope: Option<&pb::Scope>) -> Result<Self, ReportError> {
        let scope = scope.ok_or_else(|| {
            ReportError::invalid("scope", "is required: an office_code or a province_code")
        })?;
        let mut f = Filter {
            sql: String::new(),
            args: Vec::new(),
        };
        match scope.unit.as_ref() {
            Some(pb::scope::Unit::OfficeCode(code)) if !code.is_empty() => {
                f.push("office_code", Arg::Text(code.clone()))
            }
            Some(pb::scope::Unit::ProvinceCode(code)) if !code.is_empty() => {
                f.push("province_code", Arg::Text(code.clone()))
            }
            _ => {
                return Err(ReportError::invalid(
                    "scope",
                    "needs an office_code or a province_code",
                ));
            }
        }
        if !scope.procedure_code.is_empty() {
            f.push("procedure_code", Arg::Text(scope.procedure_code.clone()));
        }
        if !scope.field.is_empty() {
            f.push("field", Arg::Text(scope.field.clone()));
        }
        if scope.channel != 0 {
            let channel = Channel::from_code(scope.channel)
                .ok_or_else(|| ReportError::invalid("scope.channel", "is not a known channel"))?;
            f.push("channel", Arg::Int(i64::from(channel.code())));
        }
        Ok(f)
    }

    /// Rows whose `column` (office_code or province_code) is `code`.
    fn unit(column: &str, code: &str) -> Self {
        let mut f = Filter {
            sql: String::new(),
            args: Vec::new(),
        };
        f.push(column, Arg::Text(code.to_owned()));
        f
    }

    fn push(&mut self, column: &str, arg: Arg) {
        self.args.push(arg);
        if !self.sql.is_empty() {
            self.sql.push_str(" AND ");
        }
        self.sql
            .push_str(&format!("{column} = ${}", self.args.len()));
    }

    /// Arguments for a query whose own placeholders follow the filter's.
    pub(crate) fn arguments(&self, extra: &[i64]) -> Result<AnyArguments, ReportError> {
        use sqlx::Arguments as _;
        let mut args = AnyArguments::default();
        for a in &self.args {
            match a {
                Arg::Text(s) => args.add(s.clone()),
                Arg::Int(i) => args.add(*i),
            }
            .map_err(|e| ReportError::Internal(anyhow::anyhow!("encode an argument: {e}")))?;
        }
        for i in extra {
            args.add(*i)
                .map_err(|e| ReportError::Internal(anyhow::anyhow!("encode an argument: {e}")))?;
        }
        Ok(args)
    }

    pub(crate) fn next(&self, k: usize) -> String {
        format!("${}", self.args.len() + k)
    }
}

/// Sums of counters by (metric, channel) over [from, to].
async fn counter_sums(
    conn: &mut sqlx::AnyConnection,
    filter: &Filter,
    from: LocalDay,
    to: LocalDay,
) -> Result<BTreeMap<(String, i32), u64>, ReportError> {
    let sql = format!(
        "SELECT metric, channel, CAST(SUM(n) AS BIGINT) FROM daily_counts WHERE {} AND day >= {} AND day <= {} GROUP BY metric, channel",
        filter.sql,
        filter.next(1),
        filter.next(2)
    );
    let args = filter.arguments(&[i64::from(from.days()), i64::from(to.days())])?;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| ReportError::Internal(anyhow::Error::new(e).context("sum daily counters")))?;
    let mut sums = BTreeMap::new();
    for r in rows {
        let metric: String = r.try_get(0).map_err(internal)?;
        let channel: i64 = r.try_get(1).map_err(internal)?;
        let n: i64 = r.try_get(2).map_err(internal)?;
        *sums.entry((metric, channel as i32)).or_insert(0) += u64::try_from(n).unwrap_or(0);
    }
    Ok(sums)
}

pub(crate) fn internal(e: sqlx::Error) -> ReportError {
    ReportError::Internal(anyhow::Error::new(e).context("read a report row"))
}

fn total(sums: &BTreeMap<(String, i32), u64>, metric: &str) -> u64 {
    sums.iter()
        .filter(|((m, _), _)| m == metric)
        .map(|(_, n)| n)
        .sum()
}

fn surveys_of(sums: &BTreeMap<(String, i32), u64>) -> (u64, Vec<pb::ScaleDistribution>) {
    let mut scales = Vec::new();
    let mut all = 0;
    for scale in RatingScale::ALL {
        let ratings: Vec<pb::RatingCount> = Rating::ALL
            .iter()
            .map(|rating| pb::RatingCount {
                rating: rating.code(),
                count: total(sums, &metric::survey(scale, *rating)),
            })
            .collect();
        let count: u64 = ratings.iter().map(|r| r.count).sum();
        if count > 0 {
            all += count;
            scales.push(pb::ScaleDistribution {
                scale: scale.code(),
                count,
                ratings,
            });
        }
    }
    (all, scales)
}

/// a / b as a fraction; none when the base is 0 (a report writes "/" there,
/// not 0.00%).
fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn day(d: Option<&pb::LocalDate>, field: &'static str) -> Result<LocalDay, ReportError> {
    let d = d.ok_or_else(|| ReportError::invalid(field, "is required"))?;
    let (month, dd) = (u8::try_from(d.month).ok(), u8::try_from(d.day).ok());
    month
        .zip(dd)
        .and_then(|(m, dd)| LocalDay::from_ymd(d.year, m, dd))
        .ok_or_else(|| {
            ReportError::invalid(
                field,
                format!("{}-{}-{} is not a date", d.year, d.month, d.day),
            )
        })
}

/// A statistics request's scope and its inclusive local dates.
fn period(request: &pb::StatisticsRequest) -> Result<(Filter, LocalDay, LocalDay), ReportError> {
    let filter = Filter::from_scope(request.scope.as_ref())?;
    let (from, to) = (
        day(request.first_day.as_ref(), "first_day")?,
        day(request.last_day.as_ref(), "last_day")?,
    );
    if from > to {
        return Err(ReportError::invalid(
            "last_day",
            format!("{to} is before first_day {from}"),
        ));
    }
    Ok((filter, from, to))
}

impl ReportsService {
    pub fn new(pool: AnyPool, backend: sqlkit::Backend) -> Self {
        Self {
            source: Source::Fixed(pool, backend),
            history: None,
        }
    }

    /// Reports on whichever generation serves at each request.
    pub fn serving(serving: std::sync::Arc<crate::generations::Serving>) -> Self {
        Self {
            source: Source::Serving(serving),
            history: None,
        }
    }

    fn pool(&self) -> AnyPool {
        match &self.source {
            Source::Serving(serving) => serving.store().pool().clone(),
            Source::Fixed(pool, _) => pool.clone(),
        }
    }

    fn postgres(&self) -> bool {
        let backend = match &self.source {
            Source::Serving(serving) => serving.store().backend(),
            Source::Fixed(_, backend) => *backend,
        };
        backend == sqlkit::Backend::Postgres
    }

    /// Answers "as of" requests by replaying the scope's events from `history`.
    pub fn with_history(mut self, history: crate::asof::History) -> Self {
        self.history = Some(history);
        self
    }

    /// A scratch store with the scope's history up to `point`.
    async fn scratch(
        &self,
        scope: Option<&pb::Scope>,
        point: crate::asof::Point,
    ) -> Result<crate::asof::Scratch, ReportError> {
        let history = self.history.as_ref().ok_or_else(|| {
            ReportError::invalid("as_of", "is not available here (no event stream)")
        })?;
        let subject = crate::asof::scope_subject(&history.settings, scope)?;
        crate::asof::replay(history, &subject, point)
            .await
            .map_err(|e| ReportError::Internal(e.context("replay the history for an as-of report")))
    }

    fn scratch_service(scratch: &crate::asof::Scratch) -> Self {
        Self::new(scratch.store.pool().clone(), scratch.store.backend())
    }

    /// A read transaction: every query of one report sees the same state.
    async fn snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, ReportError> {
        let mut tx =
            self.pool().begin().await.map_err(|e| {
                ReportError::Internal(anyhow::Error::new(e).context("begin a report"))
            })?;
        if self.postgres() {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    ReportError::Internal(anyhow::Error::new(e).context("begin a report"))
                })?;
        }
        Ok(tx)
    }

    /// (carried over at `from`, pending at `to`, of which overdue, of which paused).
    async fn dossier_counts(
        conn: &mut sqlx::AnyConnection,
        filter: &Filter,
        from: i64,
        to: i64,
    ) -> Result<[u64; 4], ReportError> {
        let (f, t) = (filter.next(1), filter.next(2));
        let open_at_to =
            format!("received_day <= {t} AND (closed_day IS NULL OR closed_day > {t})");
        let sql = format!(
            "SELECT \
             CAST(COALESCE(SUM(CASE WHEN received_day < {f} AND (closed_day IS NULL OR closed_day >= {f}) THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN {open_at_to} THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN {open_at_to} AND due_day < {t} THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN {open_at_to} AND pauses > 0 AND EXISTS (SELECT 1 FROM pauses p WHERE p.dossier_id = dossiers.dossier_id \
                  AND p.from_day <= {t} AND (p.until_day IS NULL OR p.until_day > {t})) THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM dossiers WHERE {} AND received_day IS NOT NULL AND received_day <= {t} \
             AND (closed_day IS NULL OR closed_day >= {f})",
            filter.sql
        );
        let row = sqlx::query_with(sqlx::AssertSqlSafe(sql), filter.arguments(&[from, to])?)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| ReportError::Internal(anyhow::Error::new(e).context("count dossiers")))?;
        let mut counts = [0u64; 4];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = u64::try_from(row.try_get::<i64, _>(i).map_err(internal)?).unwrap_or(0);
        }
        Ok(counts)
    }

    pub async fn statistics(
        &self,
        request: &pb::StatisticsRequest,
    ) -> Result<pb::Statistics, ReportError> {
        let (filter, from, to) = period(request)?;
        if let Some(point) = crate::asof::Point::from_proto(request.as_of.as_ref())? {
            let scratch = self.scratch(request.scope.as_ref(), point).await?;
            let now = pb::StatisticsRequest {
                as_of: None,
                ..request.clone()
            };
            return Box::pin(Self::scratch_service(&scratch).statistics(&now)).await;
        }
        let mut tx = self.snapshot().await?;
        let sums = counter_sums(&mut tx, &filter, from, to).await?;
        let received_by_channel: Vec<pb::ChannelCount> = Channel::ALL
            .iter()
            .filter_map(|c| {
                let n = sums
                    .get(&(metric::RECEIVED.to_owned(), c.code()))
                    .copied()
                    .unwrap_or(0);
                (n > 0).then_some(pb::ChannelCount {
                    channel: c.code(),
                    count: n,
                })
            })
            .collect();
        let (early, on_due_date, late) = (
            total(&sums, metric::RESOLVED_EARLY),
            total(&sums, metric::RESOLVED_ON_DUE_DATE),
            total(&sums, metric::RESOLVED_LATE),
        );
        let in_time = early + on_due_date;
        let resolved = in_time + late;
        let [carried_over, pending, pending_overdue, pending_paused] = Self::dossier_counts(
            &mut tx,
            &filter,
            i64::from(from.days()),
            i64::from(to.days()),
        )
        .await?;
        drop(tx);
        Ok(pb::Statistics {
            carried_over,
            received: total(&sums, metric::RECEIVED),
            received_by_channel,
            resolved,
            resolved_early: early,
            resolved_on_due_date: on_due_date,
            resolved_late: late,
            resolved_in_time: in_time,
            in_time_rate: ratio(in_time, resolved),
            returned: total(&sums, metric::RETURNED),
            withdrawn: total(&sums, metric::WITHDRAWN),
            refused: total(&sums, metric::REFUSED),
            stopped: total(&sums, metric::STOPPED),
            pending,
            pending_not_yet_due: pending.saturating_sub(pending_overdue),
            pending_overdue,
            pending_paused,
            in_time_over_resolved: format!("{in_time}/{resolved}"),
        })
    }

    pub async fn surveys(
        &self,
        request: &pb::StatisticsRequest,
    ) -> Result<pb::SurveyAggregate, ReportError> {
        let (filter, from, to) = period(request)?;
        if let Some(point) = crate::asof::Point::from_proto(request.as_of.as_ref())? {
            let scratch = self.scratch(request.scope.as_ref(), point).await?;
            let now = pb::StatisticsRequest {
                as_of: None,
                ..request.clone()
            };
            return Box::pin(Self::scratch_service(&scratch).surveys(&now)).await;
        }
        let mut tx = self.snapshot().await?;
        let sums = counter_sums(&mut tx, &filter, from, to).await?;
        let (surveys, scales) = surveys_of(&sums);
        let received = total(&sums, metric::RECEIVED);
        Ok(pb::SurveyAggregate {
            surveys,
            dossiers_received: received,
            coverage: ratio(surveys, received),
            scales,
        })
    }
}

#[tonic::async_trait]
impl pb::reports_server::Reports for ReportsService {
    async fn get_statistics(
        &self,
        request: Request<pb::StatisticsRequest>,
    ) -> Result<Response<pb::Statistics>, Status> {
        let scope = request.get_ref().scope.as_ref();
        crate::access::read_scope(server::identity_of(&request), scope, &self.pool()).await?;
        Ok(Response::new(self.statistics(request.get_ref()).await?))
    }

    async fn get_surveys(
        &self,
        request: Request<pb::StatisticsRequest>,
    ) -> Result<Response<pb::SurveyAggregate>, Status> {
        let scope = request.get_ref().scope.as_ref();
        crate::access::read_scope(server::identity_of(&request), scope, &self.pool()).await?;
        Ok(Response::new(self.surveys(request.get_ref()).await?))
    }

    async fn get_yearly_series(
        &self,
        request: Request<pb::YearlySeriesRequest>,
    ) -> Result<Response<pb::YearlySeries>, Status> {
        let caller = server::identity_of(&request);
        let r = request.get_ref();
        match (r.office_code.as_str(), r.province_code.as_str()) {
            (office, "") if !office.is_empty() => {
                crate::access::read_office(caller, office, &self.pool()).await?;
            }
            ("", province) if !province.is_empty() => {
                crate::access::read_province(caller, province)?;
            }
            // Neither or both: the series' own check refuses it.
            _ => {}
        }
        Ok(Response::new(self.yearly(request.get_ref()).await?))
    }

    async fn list_units(
        &self,
        request: Request<pb::ListUnitsRequest>,
    ) -> Result<Response<pb::ListUnitsResponse>, Status> {
        let province = &request.get_ref().province_code;
        crate::access::list_units(server::identity_of(&request), province)?;
        Ok(Response::new(self.units(request.get_ref()).await?))
    }

    async fn get_procedure_counts(
        &self,
        request: Request<pb::ProcedureCountsRequest>,
    ) -> Result<Response<pb::ProcedureCounts>, Status> {
        let province = &request.get_ref().province_code;
        crate::access::read_province(server::identity_of(&request), province)?;
        let counts = crate::catalog::procedure_counts(&self.pool(), request.get_ref()).await?;
        Ok(Response::new(counts))
    }
}
