//! A batch's rows as the statements take them, and dossier rows as they
//! are read back.

use sqlkit::JsonRows;

use super::sql::COUNTER_JSON;
use crate::apply::{CounterDelta, CounterKey, DossierRow};

/// A dossier row's fields, in [`DOSSIER_JSON`]'s order.
///
/// [`DOSSIER_JSON`]: super::sql::DOSSIER_JSON
pub(super) fn dossier_fields<F: sqlkit::RowFields>(out: &mut F, r: &DossierRow) {
    let day = |d: Option<i32>| d.map(i64::from);
    out.text(&r.dossier_id)
        .text(&r.office_code)
        .text(&r.province_code)
        .text(&r.procedure_code)
        .text(&r.field)
        .int(i64::from(r.channel))
        .int(r.version)
        .text(&r.status)
        .opt_int(day(r.received_day))
        .opt_int(r.due_at)
        .opt_int(day(r.due_day))
        .opt_int(day(r.closed_day))
        .opt_int(day(r.resolved_day))
        .opt_int(day(r.timeliness))
        .opt_int(r.late_at)
        .int(i64::from(r.pauses));
}

/// Counter rows as [`Statements::add_counters`] reads them.
///
/// [`Statements::add_counters`]: super::sql::Statements::add_counters
pub(super) fn counter_json(counters: &hashbrown::HashMap<CounterKey, CounterDelta>) -> String {
    let mut json = JsonRows::new(COUNTER_JSON);
    for (k, d) in counters {
        json.text(&k.office_code)
            .int(i64::from(k.day))
            .text(&k.procedure_code)
            .int(i64::from(k.channel))
            .text(&k.metric)
            .text(&d.province_code)
            .text(&d.field)
            .int(d.n);
    }
    json.finish()
}

/// A dossier row read back, its columns in [`DOSSIER_JSON`]'s order.
///
/// [`DOSSIER_JSON`]: super::sql::DOSSIER_JSON
pub(super) fn dossier_row<R: sqlx::Row>(r: &R) -> anyhow::Result<DossierRow>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let int = |i: usize| -> anyhow::Result<Option<i32>> {
        Ok(r.try_get::<Option<i64>, _>(i)?.map(|v| v as i32))
    };
    Ok(DossierRow {
        dossier_id: r.try_get(0)?,
        office_code: r.try_get(1)?,
        province_code: r.try_get(2)?,
        procedure_code: r.try_get(3)?,
        field: r.try_get(4)?,
        channel: r.try_get::<i64, _>(5)? as i32,
        version: r.try_get(6)?,
        status: r.try_get(7)?,
        received_day: int(8)?,
        due_at: r.try_get(9)?,
        due_day: int(10)?,
        closed_day: int(11)?,
        resolved_day: int(12)?,
        timeliness: int(13)?,
        late_at: r.try_get(14)?,
        pauses: r.try_get::<i64, _>(15)? as i32,
        stored: true,
    })
}
