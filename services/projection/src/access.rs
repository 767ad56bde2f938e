//! What each of the projection's RPCs asks of the caller, in one place:
//! a read of an office or a province ([`read_scope`], [`read_office`],
//! [`read_province`]) or an operation on the whole projection
//! ([`whole_log`]), judged by [`identity::Identity::may`].
//!
//! A read names an office by its code alone; the province it belongs to is
//! the one its events recorded. A reader may read an office only if no
//! event of that office was recorded in another province. An office with
//! no events yet has nothing to show, whoever asks.

use identity::{Action, Identity, Scope};
use proto::reports::v1 as pb;
use sqlx::AnyPool;
use tonic::Status;

/// Whether `caller` may read `scope` (an office or a province). A missing
/// or empty unit is left to the report's own check (INVALID_ARGUMENT).
pub(crate) async fn read_scope(
    caller: Option<&Identity>,
    scope: Option<&pb::Scope>,
    pool: &AnyPool,
) -> Result<(), Status> {
    match scope.and_then(|s| s.unit.as_ref()) {
        Some(pb::scope::Unit::OfficeCode(office)) if !office.is_empty() => {
            read_office(caller, office, pool).await
        }
        Some(pb::scope::Unit::ProvinceCode(province)) if !province.is_empty() => {
            read_province(caller, province)
        }
        _ => Ok(()),
    }
}

/// Whether `caller` may read every office of `province`.
pub(crate) fn read_province(caller: Option<&Identity>, province: &str) -> Result<(), Status> {
    server::authorize(
        caller,
        Action::Read(Scope::Province(province)),
        &format!("read province {province}"),
    )
}

/// Whether `caller` may read `office`: its role allows that office within
/// the caller's province, and the office recorded no event elsewhere.
pub(crate) async fn read_office(
    caller: Option<&Identity>,
    office: &str,
    pool: &AnyPool,
) -> Result<(), Status> {
    let Some(who) = caller else { return Ok(()) };
    let what = format!("read office {office}");
    server::authorize(
        caller,
        Action::Read(Scope::Office {
            province: &who.province,
            office,
        }),
        &what,
    )?;
    if recorded_elsewhere(pool, office, &who.province).await? {
        return Err(server::permission_denied(who, &what));
    }
    Ok(())
}

/// Whether any event of `office` was counted in a province other than
/// `province` (one row suffices; the counters' key starts with the office).
async fn recorded_elsewhere(pool: &AnyPool, office: &str, province: &str) -> Result<bool, Status> {
    let row = sqlx::query(
        "SELECT 1 FROM daily_counts WHERE office_code = $1 AND province_code <> $2 LIMIT 1",
    )
    .bind(office)
    .bind(province)
    .fetch_optional(pool)
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "checking an office's province failed");
        Status::unavailable("the read models cannot be read now; try again")
    })?;
    Ok(row.is_some())
}

/// Whether `caller` may list the units of `province` (empty: of every
/// province, which no scoped identity may).
pub(crate) fn list_units(caller: Option<&Identity>, province: &str) -> Result<(), Status> {
    match caller {
        Some(who) if province.is_empty() => Err(server::permission_denied(
            who,
            "list the units of every province",
        )),
        _ => read_province(caller, province),
    }
}

/// Whether `caller` may rebuild the projection or handle its parked
/// events: an operator of the province this deployment serves.
pub(crate) fn whole_log(
    caller: Option<&Identity>,
    served: Option<&str>,
    what: &str,
) -> Result<(), Status> {
    server::authorize_whole_log(caller, served, what)
}
