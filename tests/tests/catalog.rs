//! The procedure catalog against the real services: procedures registered,
//! changed and withdrawn through intake's gRPC API; receipts without a due
//! date take it from the catalog in working time; supplements move it by the
//! paused working time (or not, as the procedure says); the yearly
//! statistics judge results against those dates; projection counts the
//! procedures in force per year and level.

use std::time::Duration;

use calendar::{Calendar, LocalDate, ProcessingTime};
use domain::{LocalDay, Timestamp};
use proto::{
    events::v1 as ev,
    intake::v1::{self as pb, intake_client::IntakeClient},
    reports::v1::{self as rp, reports_client::ReportsClient},
};
use tests::{Backend, Desk, Pair, eventually, meta, ts};
use tonic::{Code, transport::Channel};

const OFFICE: &str = "TUY-PHONG";
const PROVINCE: &str = "BTH";
const HOUR: i64 = 3_600_000_000;

fn local(y: i32, m: u8, d: u8, h: u8, min: u8) -> Timestamp {
    Timestamp::at_local(LocalDay::from_ymd(y, m, d).expect("a date"), h, min)
}

fn day(y: i32, m: u8, d: u8) -> LocalDay {
    LocalDay::from_ymd(y, m, d).expect("a date")
}

/// The catalog's side of intake, and projection's procedure counts.
struct Catalog {
    intake: IntakeClient<Channel>,
    reports: ReportsClient<Channel>,
}

fn definition(
    code: &str,
    level: ev::ProcedureLevel,
    working_days: u32,
    online: ev::OnlineLevel,
    clock: ev::SupplementClock,
) -> ev::ProcedureDefinition {
    ev::ProcedureDefinition {
        code: code.into(),
        name: format!("Thủ tục {code}"),
        field: "dat-dai".into(),
        level: level.into(),
        processing_time: Some(ev::procedure_definition::ProcessingTime::WorkingDays(
            working_days,
        )),
        online_level: online.into(),
        supplement_clock: clock.into(),
    }
}

impl Catalog {
    async fn connect(pair: &Pair) -> anyhow::Result<Self> {
        Ok(Self {
            intake: IntakeClient::connect(format!("http://{}", pair.intake.addr)).await?,
            reports: ReportsClient::connect(format!("http://{}", pair.projection.addr)).await?,
        })
    }

    async fn register_with(
        &self,
        r: pb::RegisterProcedureRequest,
    ) -> Result<pb::CommandReply, tonic::Status> {
        Ok(self
            .intake
            .clone()
            .register_procedure(r)
            .await?
            .into_inner())
    }

    async fn register(
        &self,
        at: Timestamp,
        d: ev::ProcedureDefinition,
    ) -> Result<pb::CommandReply, tonic::Status> {
        self.register_with(pb::RegisterProcedureRequest {
            meta: meta(at),
            province_code: PROVINCE.into(),
            definition: Some(d),
        })
        .await
    }

    async fn change(
        &self,
        at: Timestamp,
        d: ev::ProcedureDefinition,
    ) -> Result<pb::CommandReply, tonic::Status> {
        Ok(self
            .intake
            .clone()
            .change_procedure(pb::ChangeProcedureRequest {
                meta: meta(at),
                definition: Some(d),
            })
            .await?
            .into_inner())
    }

    async fn withdraw(&self, at: Timestamp, code: &str) -> Result<pb::CommandReply, tonic::Status> {
        Ok(self
            .intake
            .clone()
            .withdraw_procedure(pb::WithdrawProcedureRequest {
                meta: meta(at),
                code: code.into(),
                reason: "bãi bỏ theo quyết định công bố".into(),
            })
            .await?
            .into_inner())
    }

    async fn counts(&self, from_year: i32, to_year: i32) -> anyhow::Result<rp::ProcedureCounts> {
        Ok(self
            .reports
            .clone()
            .get_procedure_counts(rp::ProcedureCountsRequest {
                province_code: PROVINCE.into(),
                from_year,
                to_year,
            })
            .await?
            .into_inner())
    }
}

/// A receipt at `at` without a due date: the catalog gives it.
async fn receive_without_due(
    desk: &Desk,
    dossier: &str,
    code: &str,
    at: Timestamp,
) -> Result<pb::CommandReply, tonic::Status> {
    desk.receive_with(pb::ReceiveDossierRequest {
        meta: meta(at),
        dossier_id: dossier.into(),
        office_code: OFFICE.into(),
        province_code: PROVINCE.into(),
        procedure: Some(ev::Procedure {
            code: code.into(),
            field: String::new(),
        }),
        channel: ev::Channel::InPerson.into(),
        due_at: None,
        due_on: None,
    })
    .await
}

fn due_of(reply: &pb::CommandReply) -> Timestamp {
    bus::timestamp_from_proto(reply.due_at.as_ref().expect("a due date")).expect("valid")
}

#[track_caller]
fn refused(reply: Result<pb::CommandReply, tonic::Status>, code: Code, words: &str) {
    match reply {
        Ok(r) => panic!("expected a refusal, got {r:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(status.message().contains(words), "{}", status.message());
        }
    }
}

/// The last working day before the first day of Tết in `year`, at 10:00.
fn eve_of_tet(calendar: &Calendar, lunar_new_year: LocalDate) -> (i64, LocalDate) {
    let mut d = lunar_new_year;
    while !calendar.is_working_day(d) || calendar.is_working_day(d.add_days(1)) {
        d = d.add_days(-1);
    }
    (d.at(10, 0), d)
}

async fn the_catalog_gives_due_dates_and_counts(backend: Backend) -> anyhow::Result<()> {
    use ev::{OnlineLevel as O, ProcedureLevel as L, SupplementClock as C};
    let pair = Pair::start(backend).await?;
    let desk = pair.desk().await?;
    let catalog = Catalog::connect(&pair).await?;
    let calendar = Calendar::vietnam();

    // --- The catalog ------------------------------------------------------
    let pauses = definition("1.001", L::District, 3, O::Partial, C::Pauses);
    let first = pb::RegisterProcedureRequest {
        meta: meta(local(2018, 1, 2, 8, 0)),
        province_code: PROVINCE.into(),
        definition: Some(pauses.clone()),
    };
    let reply = catalog.register_with(first.clone()).await?;
    assert_eq!(
        (reply.dossier_id.as_str(), reply.version, reply.due_at),
        ("procedure/1.001", 1, None)
    );
    // A retry with the same request id returns the first reply.
    assert_eq!(catalog.register_with(first).await?, reply);
    catalog
        .register(
            local(2018, 1, 2, 8, 0),
            definition("1.002", L::District, 3, O::Full, C::Runs),
        )
        .await?;
    catalog
        .register(
            local(2017, 5, 1, 8, 0),
            definition("1.003", L::District, 10, O::Forms, C::Pauses),
        )
        .await?;
    let changed = catalog
        .change(
            local(2019, 2, 1, 8, 0),
            definition("1.003", L::District, 7, O::Full, C::Pauses),
        )
        .await?;
    assert_eq!(changed.version, 2);
    catalog
        .register(
            local(2017, 3, 1, 8, 0),
            definition("2.001", L::Commune, 2, O::Information, C::Pauses),
        )
        .await?;
    catalog.withdraw(local(2019, 6, 3, 8, 0), "2.001").await?;

    // Refusals a catalog clerk can act on.
    refused(
        catalog
            .register(local(2019, 1, 1, 8, 0), pauses.clone())
            .await,
        Code::FailedPrecondition,
        "already in the catalog",
    );
    refused(
        catalog
            .change(
                local(2019, 1, 1, 8, 0),
                definition("9.999", L::District, 1, O::Information, C::Pauses),
            )
            .await,
        Code::FailedPrecondition,
        "not in the catalog",
    );
    refused(
        catalog.withdraw(local(2019, 7, 1, 8, 0), "2.001").await,
        Code::FailedPrecondition,
        "withdrawn",
    );
    let mut no_time = pauses.clone();
    no_time.code = "1.004".into();
    no_time.processing_time = None;
    refused(
        catalog.register(local(2019, 1, 1, 8, 0), no_time).await,
        Code::InvalidArgument,
        "definition.processing_time",
    );
    let mut no_clock = pauses.clone();
    no_clock.code = "1.004".into();
    no_clock.supplement_clock = 0;
    refused(
        catalog.register(local(2019, 1, 1, 8, 0), no_clock).await,
        Code::InvalidArgument,
        "definition.supplement_clock",
    );
    // A dossier id may not take a procedure's stream.
    let squatter = desk
        .receive(
            "procedure/1.001",
            OFFICE,
            local(2025, 3, 3, 8, 0),
            local(2025, 3, 10, 8, 0),
        )
        .await;
    refused(squatter, Code::InvalidArgument, "dossier_id");

    // --- Due dates from the catalog ---------------------------------------
    // Friday 16:30 + 3 working days = the following Wednesday 16:30.
    let friday = local(2025, 3, 7, 16, 30);
    let reply = receive_without_due(&desk, "FRI", "1.001", friday).await?;
    let predicted = calendar.due(friday.micros(), ProcessingTime::WorkingDays(3));
    assert_eq!(due_of(&reply).micros(), predicted);
    assert_eq!(due_of(&reply), local(2025, 3, 12, 16, 30));

    // On the eve of Tết: after the holiday.
    let tet_2025: LocalDate = "2025-01-29".parse()?;
    let (eve, eve_day) = eve_of_tet(&calendar, tet_2025);
    let reply = receive_without_due(&desk, "TET", "1.001", Timestamp::from_micros(eve)).await?;
    let due = due_of(&reply).micros();
    assert_eq!(due, calendar.due(eve, ProcessingTime::WorkingDays(3)));
    let due_day = LocalDate::from_instant(due);
    assert!(
        due_day > tet_2025.add_days(3) && due_day > eve_day.add_days(7),
        "due {due_day} after the eve {eve_day}"
    );

    // A slip's due date is kept.
    let slip = local(2025, 3, 21, 17, 0);
    let mut with_slip = pb::ReceiveDossierRequest {
        meta: meta(friday),
        dossier_id: "SLIP".into(),
        office_code: OFFICE.into(),
        province_code: PROVINCE.into(),
        procedure: Some(ev::Procedure {
            code: "1.001".into(),
            field: String::new(),
        }),
        channel: ev::Channel::InPerson.into(),
        due_at: ts(slip),
        due_on: None,
    };
    assert_eq!(due_of(&desk.receive_with(with_slip.clone()).await?), slip);

    // Unknown, withdrawn: refused, nothing appended.
    let before = pair.intake_store.count_desk_events().await?;
    refused(
        receive_without_due(&desk, "UNKNOWN", "9.999", friday).await,
        Code::FailedPrecondition,
        "not in the catalog",
    );
    refused(
        receive_without_due(&desk, "GONE", "2.001", local(2020, 3, 2, 9, 0)).await,
        Code::FailedPrecondition,
        "withdrawn",
    );
    assert_eq!(pair.intake_store.count_desk_events().await?, before);
    with_slip.meta = meta(friday);
    with_slip.dossier_id = "GONE-SLIP".into();
    with_slip.procedure = Some(ev::Procedure {
        code: "2.001".into(),
        field: "x".into(),
    });
    desk.receive_with(with_slip).await?;

    // --- Supplements pause the clock in working time ----------------------
    // Monday 9:00 to Wednesday 9:00: 16 working hours.
    let (paused_at, provided_at) = (local(2025, 3, 10, 9, 0), local(2025, 3, 12, 9, 0));
    assert_eq!(
        calendar.working_time_between(paused_at.micros(), provided_at.micros()),
        16 * HOUR
    );
    let due_pause = due_of(&receive_without_due(&desk, "PAUSE", "1.001", friday).await?);
    desk.request_supplement("PAUSE", paused_at).await?;
    let moved = due_of(&desk.provide_supplement("PAUSE", provided_at, None).await?);
    assert_eq!(
        moved.micros(),
        calendar.add_working(due_pause.micros(), 16 * HOUR)
    );
    assert_eq!(moved, local(2025, 3, 14, 16, 30));

    // A procedure whose supplements do not pause the clock keeps the date.
    let due_runs = due_of(&receive_without_due(&desk, "RUNS", "1.002", friday).await?);
    desk.request_supplement("RUNS", paused_at).await?;
    let kept = due_of(&desk.provide_supplement("RUNS", provided_at, None).await?);
    assert_eq!(kept, due_runs);

    // A reschedule moves it, once.
    receive_without_due(&desk, "RESCH", "1.001", friday).await?;
    let new_due = local(2025, 3, 19, 17, 0);
    assert_eq!(
        due_of(
            &desk
                .reschedule("RESCH", local(2025, 3, 11, 9, 0), new_due)
                .await?
        ),
        new_due
    );
    refused(
        desk.reschedule(
            "RESCH",
            local(2025, 3, 11, 10, 0),
            local(2025, 3, 26, 17, 0),
        )
        .await,
        Code::FailedPrecondition,
        "only once",
    );

    // --- Results against those dates --------------------------------------
    desk.record_result("FRI", local(2025, 3, 11, 10, 0)).await?; // early (due 12/3)
    desk.record_result("PAUSE", local(2025, 3, 14, 10, 0))
        .await?; // on time (moved to 14/3)
    desk.record_result("RUNS", local(2025, 3, 13, 10, 0))
        .await?; // late (kept 12/3)
    desk.record_result("RESCH", local(2025, 3, 17, 10, 0))
        .await?; // early (rescheduled 19/3)

    let province = pair.province().await?;
    let stats = eventually(Duration::from_secs(30), || async {
        let s = province
            .statistics(OFFICE, day(2025, 1, 1), day(2025, 12, 31))
            .await?;
        anyhow::ensure!(s.resolved == 4, "not caught up: {s:?}");
        Ok(s)
    })
    .await?;
    assert_eq!(stats.received, 7);
    assert_eq!(
        (
            stats.resolved_early,
            stats.resolved_on_due_date,
            stats.resolved_late
        ),
        (2, 1, 1)
    );
    assert_eq!(stats.in_time_over_resolved, "3/4");
    let series = province.yearly(OFFICE).await?;
    let y2025: Vec<_> = series
        .rows
        .iter()
        .map(|r| {
            (
                r.year,
                r.received,
                r.resolved,
                r.resolved_in_time,
                r.resolved_late,
            )
        })
        .collect();
    assert_eq!(y2025, vec![(2025, 7, 4, 3, 1)]);

    // --- Procedures in force per year and level ---------------------------
    let counts = eventually(Duration::from_secs(30), || async {
        let c = catalog.counts(2016, 2025).await?;
        anyhow::ensure!(
            c.years
                .iter()
                .any(|y| y.year == 2025 && y.online_without_dossiers == 1),
            "not caught up: {c:?}"
        );
        Ok(c)
    })
    .await?;
    let rows: Vec<_> = counts
        .years
        .iter()
        .map(|y| {
            (
                y.year,
                y.district,
                y.commune,
                y.total,
                y.online_level_3,
                y.online_level_4,
                y.online,
                y.online_without_dossiers,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (2016, 0, 0, 0, 0, 0, 0, 0),
            // 1.003 (level 2) and 2.001 (commune).
            (2017, 1, 1, 2, 0, 0, 0, 0),
            // 1.001 (level 3) and 1.002 (level 4) join; no dossier yet.
            (2018, 3, 1, 4, 1, 1, 2, 2),
            // 1.003 goes online at level 4; 2.001 is withdrawn in June.
            (2019, 3, 0, 3, 1, 2, 3, 3),
            (2020, 3, 0, 3, 1, 2, 3, 3),
            (2021, 3, 0, 3, 1, 2, 3, 3),
            (2022, 3, 0, 3, 1, 2, 3, 3),
            (2023, 3, 0, 3, 1, 2, 3, 3),
            (2024, 3, 0, 3, 1, 2, 3, 3),
            // 1.001 and 1.002 had dossiers in 2025; 1.003 none.
            (2025, 3, 0, 3, 1, 2, 3, 1),
        ]
    );
    // Every year with catalog events when no years are given.
    let all = catalog.counts(0, 0).await?;
    assert_eq!(
        all.years.iter().map(|y| y.year).collect::<Vec<_>>(),
        (2017..=2019).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_gives_due_dates_and_counts_on_sqlite() -> anyhow::Result<()> {
    the_catalog_gives_due_dates_and_counts(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_gives_due_dates_and_counts_on_postgres() -> anyhow::Result<()> {
    the_catalog_gives_due_dates_and_counts(Backend::Postgres).await
}

/// The catalog survives a restart of intake: it is folded from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_reloaded_from_the_log_at_start() -> anyhow::Result<()> {
    use ev::{OnlineLevel as O, ProcedureLevel as L, SupplementClock as C};
    let mut pair = Pair::start(Backend::Sqlite).await?;
    let catalog = Catalog::connect(&pair).await?;
    catalog
        .register(
            local(2024, 1, 2, 8, 0),
            definition("1.001", L::District, 3, O::Partial, C::Pauses),
        )
        .await?;
    catalog
        .change(
            local(2025, 3, 10, 0, 0),
            definition("1.001", L::District, 5, O::Partial, C::Pauses),
        )
        .await?;
    let intake = std::mem::replace(
        &mut pair.intake,
        tests::start_intake(&pair.intake_db.url, &pair.nats.url(), &pair.stream)
            .await
            .map(|(p, _)| p)?,
    );
    intake.shutdown().await?;
    let desk = pair.desk().await?;
    // Before the change: 3 days; after: 5 days.
    let before =
        due_of(&receive_without_due(&desk, "A", "1.001", local(2025, 3, 7, 16, 30)).await?);
    assert_eq!(before, local(2025, 3, 12, 16, 30));
    let after = due_of(&receive_without_due(&desk, "B", "1.001", local(2025, 3, 10, 8, 0)).await?);
    assert_eq!(after, local(2025, 3, 17, 8, 0));
    Ok(())
}
