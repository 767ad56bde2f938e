//! The procedure catalog's state machine (registered → changed* → withdrawn)
//! and the rules that read it: a receipt without a due date takes the
//! processing time in force at the receipt, counted in working time; a
//! supplement moves the due date by the paused working time only when the
//! procedure's supplements pause the clock. Given / when / then, as in
//! `state_machine.rs`.

use calendar::Calendar;
use domain::{
    Catalog, Channel, Command, Dossier, Event, Level, LocalDay, OnlineLevel, Payload, Procedure,
    ProcedureChange, ProcedureCommand, ProcedureDefinition, ProcedureRecord, Refusal, Terms,
    Timestamp, decide_procedure, decide_with,
    procedure::{InForce, ProcessingTime, procedure_code_of, procedure_stream},
};

const CODE: &str = "1.004227";
const PROVINCE: &str = "BTH";

fn local(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> Timestamp {
    Timestamp::at_local(
        LocalDay::from_ymd(year, month, day).expect("a date"),
        hour,
        minute,
    )
}

fn definition(time: ProcessingTime, supplement_pauses: bool) -> ProcedureDefinition {
    ProcedureDefinition {
        code: CODE.into(),
        name: "Đăng ký biến động quyền sử dụng đất".into(),
        field: "dat-dai".into(),
        level: Level::District,
        processing_time: time,
        online: OnlineLevel::Partial,
        supplement_pauses,
    }
}

fn three_days() -> ProcedureDefinition {
    definition(ProcessingTime::WorkingDays(3), true)
}

fn register(d: ProcedureDefinition) -> ProcedureCommand {
    ProcedureCommand::Register {
        province_code: PROVINCE.into(),
        definition: d,
    }
}

fn procedure_event(version: u64, at: Timestamp, payload: Payload) -> Event {
    Event {
        event_id: format!("p-{version}"),
        dossier_id: procedure_stream(CODE),
        office_code: domain::procedure::CATALOG_OFFICE.into(),
        province_code: PROVINCE.into(),
        version,
        occurred_at: at,
        recorded_at: at,
        actor: "so-tu-phap".into(),
        request_id: format!("pr-{version}"),
        payload,
    }
}

/// The catalog events already recorded for the procedure.
struct Given {
    record: Option<ProcedureRecord>,
}

fn given(history: &[(Timestamp, ProcedureChange)]) -> Given {
    let mut record = None;
    for (i, (at, change)) in history.iter().enumerate() {
        let event = procedure_event(i as u64 + 1, *at, Payload::Procedure(change.clone()));
        record = Some(ProcedureRecord::apply(record, &event).expect("history applies"));
    }
    Given { record }
}

impl Given {
    fn when(&self, command: ProcedureCommand, at: Timestamp) -> Result<Payload, Refusal> {
        decide_procedure(CODE, self.record.as_ref(), &command, at)
    }

    fn then(&self, command: ProcedureCommand, at: Timestamp) -> ProcedureRecord {
        let payload = self.when(command, at).expect("accepted");
        let version = self.record.as_ref().map_or(1, |r| r.version + 1);
        ProcedureRecord::apply(self.record.clone(), &procedure_event(version, at, payload))
            .expect("an accepted payload applies")
    }

    fn catalog(&self) -> Catalog {
        self.record
            .iter()
            .map(|r| (r.code.clone(), r.clone()))
            .collect()
    }
}

#[track_caller]
fn precondition(result: Result<Payload, Refusal>) -> String {
    match result {
        Err(Refusal::Precondition { reason, .. }) => reason,
        other => panic!("expected a precondition refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The procedure state machine
// ---------------------------------------------------------------------------

#[test]
fn a_new_code_is_registered_then_changed_then_withdrawn() {
    let t0 = local(2017, 1, 3, 8, 0);
    let none = given(&[]);
    assert_eq!(
        none.when(register(three_days()), t0),
        Ok(Payload::Procedure(
            ProcedureChange::Registered(three_days())
        ))
    );
    let registered = none.then(register(three_days()), t0);
    assert_eq!(registered.version, 1);
    assert_eq!(registered.province_code, PROVINCE);
    assert_eq!(registered.current(), Some(&three_days()));

    let five = definition(ProcessingTime::WorkingDays(5), true);
    let t1 = local(2018, 6, 1, 8, 0);
    let changed = Given {
        record: Some(registered),
    }
    .then(
        ProcedureCommand::Change {
            definition: five.clone(),
        },
        t1,
    );
    assert_eq!(changed.version, 2);
    assert_eq!(changed.current(), Some(&five));

    let t2 = local(2019, 5, 2, 8, 0);
    let withdrawn = Given {
        record: Some(changed),
    }
    .then(
        ProcedureCommand::Withdraw {
            reason: "bãi bỏ".into(),
        },
        t2,
    );
    assert_eq!(withdrawn.version, 3);
    assert_eq!(withdrawn.current(), None);
    assert_eq!(withdrawn.withdrawn_at(), Some(t2));

    // Which definition was in force when.
    assert_eq!(
        withdrawn.in_force_at(local(2016, 12, 31, 8, 0)),
        InForce::NotYet { from: t0 }
    );
    assert_eq!(withdrawn.in_force_at(t0), InForce::Yes(&three_days()));
    assert_eq!(
        withdrawn.in_force_at(local(2018, 5, 31, 17, 0)),
        InForce::Yes(&three_days())
    );
    assert_eq!(withdrawn.in_force_at(t1), InForce::Yes(&five));
    assert_eq!(withdrawn.in_force_at(t2), InForce::Withdrawn { at: t2 });
}

#[test]
fn registering_an_existing_code_is_refused() {
    let g = given(&[(
        local(2017, 1, 3, 8, 0),
        ProcedureChange::Registered(three_days()),
    )]);
    let reason = precondition(g.when(register(three_days()), local(2017, 2, 1, 8, 0)));
    assert!(reason.contains("already in the catalog"), "{reason}");
}

#[test]
fn changing_or_withdrawing_an_unknown_procedure_is_refused() {
    let g = given(&[]);
    let reason = precondition(g.when(
        ProcedureCommand::Change {
            definition: three_days(),
        },
        local(2017, 1, 3, 8, 0),
    ));
    assert!(reason.contains("not in the catalog"), "{reason}");
    precondition(g.when(
        ProcedureCommand::Withdraw {
            reason: String::new(),
        },
        local(2017, 1, 3, 8, 0),
    ));
}

#[test]
fn a_withdrawn_procedure_is_final() {
    let g = given(&[
        (
            local(2017, 1, 3, 8, 0),
            ProcedureChange::Registered(three_days()),
        ),
        (
            local(2019, 5, 2, 8, 0),
            ProcedureChange::Withdrawn {
                reason: "bãi bỏ".into(),
            },
        ),
    ]);
    let at = local(2019, 6, 1, 8, 0);
    for command in [
        register(three_days()),
        ProcedureCommand::Change {
            definition: three_days(),
        },
        ProcedureCommand::Withdraw {
            reason: String::new(),
        },
    ] {
        let reason = precondition(g.when(command, at));
        assert!(reason.contains("withdrawn"), "{reason}");
    }
}

#[test]
fn a_catalog_command_before_the_last_change_or_for_another_code_is_an_invalid_field() {
    let g = given(&[(
        local(2017, 1, 3, 8, 0),
        ProcedureChange::Registered(three_days()),
    )]);
    assert!(matches!(
        g.when(
            ProcedureCommand::Change {
                definition: three_days()
            },
            local(2017, 1, 2, 8, 0)
        ),
        Err(Refusal::InvalidField {
            field: "meta.occurred_at",
            ..
        })
    ));
    let mut other = three_days();
    other.code = "2.000001".into();
    assert!(matches!(
        g.when(
            ProcedureCommand::Change { definition: other },
            local(2017, 2, 1, 8, 0)
        ),
        Err(Refusal::InvalidField { field: "code", .. })
    ));
}

#[test]
fn procedure_streams_are_not_dossiers_and_back() {
    assert_eq!(procedure_stream(CODE), "procedure/1.004227");
    assert_eq!(procedure_code_of("procedure/1.004227"), Some(CODE));
    assert_eq!(procedure_code_of("H29.22-240304-0001"), None);
    let e = procedure_event(
        1,
        local(2017, 1, 3, 8, 0),
        Payload::Procedure(ProcedureChange::Registered(three_days())),
    );
    assert!(Dossier::apply(None, &e).is_err());
    let out_of_order = procedure_event(
        2,
        local(2017, 1, 3, 8, 0),
        Payload::Procedure(ProcedureChange::Registered(three_days())),
    );
    assert!(ProcedureRecord::apply(None, &out_of_order).is_err());
}

// ---------------------------------------------------------------------------
// Receipts take their due date from the catalog
// ---------------------------------------------------------------------------

fn receive(due_at: Option<Timestamp>, field: &str) -> Command {
    Command::Receive {
        office_code: "TUY-PHONG".into(),
        province_code: PROVINCE.into(),
        procedure: Procedure {
            code: CODE.into(),
            field: field.into(),
        },
        channel: Channel::InPerson,
        due_at,
    }
}

fn due_of(payload: Payload) -> Timestamp {
    match payload {
        Payload::Received { due_at, .. } | Payload::SupplementProvided { due_at } => due_at,
        other => panic!("no due date in {other:?}"),
    }
}

#[test]
fn a_receipt_without_a_due_date_takes_the_catalogs_processing_time_in_working_time() {
    let calendar = Calendar::vietnam();
    let g = given(&[(
        local(2024, 1, 2, 8, 0),
        ProcedureChange::Registered(three_days()),
    )]);
    let catalog = g.catalog();
    let terms = Terms {
        calendar: &calendar,
        catalog: &catalog,
    };
    // Friday 16:30 + 3 working days = Wednesday 16:30.
    let friday = local(2025, 3, 7, 16, 30);
    let payload = decide_with("HS-1", None, &receive(None, ""), friday, &terms).expect("accepted");
    assert_eq!(
        payload,
        Payload::Received {
            procedure: Procedure {
                code: CODE.into(),
                field: "dat-dai".into(),
            },
            channel: Channel::InPerson,
            due_at: local(2025, 3, 12, 16, 30),
        }
    );
    // A due date from the slip is kept.
    let slip = local(2025, 3, 20, 17, 0);
    let payload =
        decide_with("HS-1", None, &receive(Some(slip), "x"), friday, &terms).expect("accepted");
    assert_eq!(due_of(payload), slip);
    // On the eve of Tết 2025 (Tết holidays 25/01–02/02 by the statutory
    // rule around 29/01), the due date falls after the holiday.
    let eve = local(2025, 1, 24, 10, 0);
    let due = due_of(decide_with("HS-2", None, &receive(None, ""), eve, &terms).expect("accepted"));
    assert_eq!(
        due.micros(),
        calendar.due(eve.micros(), ProcessingTime::WorkingDays(3))
    );
    assert!(due > local(2025, 2, 2, 23, 59), "{due}");
}

#[test]
fn a_receipt_takes_the_definition_in_force_at_its_instant() {
    let calendar = Calendar::vietnam();
    let g = given(&[
        (
            local(2024, 1, 2, 8, 0),
            ProcedureChange::Registered(three_days()),
        ),
        (
            local(2025, 3, 10, 0, 0),
            ProcedureChange::Changed(definition(ProcessingTime::WorkingHours(4), true)),
        ),
    ]);
    let catalog = g.catalog();
    let terms = Terms {
        calendar: &calendar,
        catalog: &catalog,
    };
    let before = local(2025, 3, 7, 16, 30);
    let after = local(2025, 3, 10, 8, 0);
    let due = |at| due_of(decide_with("HS", None, &receive(None, ""), at, &terms).expect("ok"));
    assert_eq!(due(before), local(2025, 3, 12, 16, 30));
    assert_eq!(
        due(after),
        local(2025, 3, 10, 13, 30).plus_micros(30 * 60 * 1_000_000)
    );
}

#[test]
fn a_receipt_without_a_due_date_for_an_unknown_withdrawn_or_foreign_procedure_is_refused() {
    let calendar = Calendar::vietnam();
    let at = local(2020, 3, 2, 9, 0);
    let empty = Catalog::new();
    let terms = Terms {
        calendar: &calendar,
        catalog: &empty,
    };
    let reason = precondition(decide_with("HS", None, &receive(None, ""), at, &terms));
    assert!(
        reason.contains("not in the catalog") && reason.contains("slip"),
        "{reason}"
    );

    let withdrawn = given(&[
        (
            local(2017, 1, 3, 8, 0),
            ProcedureChange::Registered(three_days()),
        ),
        (
            local(2019, 5, 2, 8, 0),
            ProcedureChange::Withdrawn {
                reason: "bãi bỏ".into(),
            },
        ),
    ])
    .catalog();
    let terms = Terms {
        calendar: &calendar,
        catalog: &withdrawn,
    };
    let reason = precondition(decide_with("HS", None, &receive(None, ""), at, &terms));
    assert!(reason.contains("withdrawn"), "{reason}");
    // Before the withdrawal it was in force.
    assert!(
        decide_with(
            "HS",
            None,
            &receive(None, ""),
            local(2018, 3, 2, 9, 0),
            &terms
        )
        .is_ok()
    );
    // Not yet registered at the receipt.
    let reason = precondition(decide_with(
        "HS",
        None,
        &receive(None, ""),
        local(2016, 3, 2, 9, 0),
        &terms,
    ));
    assert!(reason.contains("in force only from"), "{reason}");
    // Another province's catalog.
    let mut foreign = receive(None, "");
    if let Command::Receive { province_code, .. } = &mut foreign {
        *province_code = "HCM".into();
    }
    let reason = precondition(decide_with(
        "HS",
        None,
        &foreign,
        local(2018, 3, 2, 9, 0),
        &terms,
    ));
    assert!(reason.contains("province"), "{reason}");
}

// ---------------------------------------------------------------------------
// Supplements pause the clock in working time
// ---------------------------------------------------------------------------

fn paused_dossier(due: Timestamp, paused_at: Timestamp) -> Dossier {
    let mut d = None;
    for (version, at, payload) in [
        (
            1,
            local(2025, 3, 3, 8, 0),
            Payload::Received {
                procedure: Procedure {
                    code: CODE.into(),
                    field: "dat-dai".into(),
                },
                channel: Channel::InPerson,
                due_at: due,
            },
        ),
        (
            2,
            paused_at,
            Payload::SupplementRequested {
                reason: "thiếu giấy tờ".into(),
            },
        ),
    ] {
        let e = Event {
            event_id: format!("e{version}"),
            dossier_id: "HS".into(),
            office_code: "TUY-PHONG".into(),
            province_code: PROVINCE.into(),
            version,
            occurred_at: at,
            recorded_at: at,
            actor: "clerk".into(),
            request_id: format!("r{version}"),
            payload,
        };
        d = Some(Dossier::apply(d, &e).expect("applies"));
    }
    d.expect("a dossier")
}

#[test]
fn a_supplement_moves_the_due_date_by_the_paused_working_time_when_the_procedure_pauses() {
    let calendar = Calendar::vietnam();
    let due = local(2025, 3, 12, 16, 30);
    // Monday 9:00 to Wednesday 9:00: 16 working hours.
    let paused_at = local(2025, 3, 10, 9, 0);
    let provided_at = local(2025, 3, 12, 9, 0);
    assert_eq!(
        calendar.working_time_between(paused_at.micros(), provided_at.micros()),
        16 * 3_600_000_000
    );
    let d = paused_dossier(due, paused_at);
    let supplement = Command::ProvideSupplement { due_at: None };

    let pauses = given(&[(
        local(2024, 1, 2, 8, 0),
        ProcedureChange::Registered(three_days()),
    )])
    .catalog();
    let terms = Terms {
        calendar: &calendar,
        catalog: &pauses,
    };
    let moved = due_of(decide_with("HS", Some(&d), &supplement, provided_at, &terms).expect("ok"));
    assert_eq!(moved, local(2025, 3, 14, 16, 30));
    assert_eq!(
        moved.micros(),
        calendar.add_working(due.micros(), 16 * 3_600_000_000)
    );

    let runs = given(&[(
        local(2024, 1, 2, 8, 0),
        ProcedureChange::Registered(definition(ProcessingTime::WorkingDays(3), false)),
    )])
    .catalog();
    let terms = Terms {
        calendar: &calendar,
        catalog: &runs,
    };
    let kept = due_of(decide_with("HS", Some(&d), &supplement, provided_at, &terms).expect("ok"));
    assert_eq!(kept, due);

    // A procedure the catalog does not know pauses the clock (the law's default).
    let moved = due_of(
        decide_with(
            "HS",
            Some(&d),
            &supplement,
            provided_at,
            &Terms::statutory(),
        )
        .expect("ok"),
    );
    assert_eq!(moved, local(2025, 3, 14, 16, 30));
}

#[test]
fn a_pause_outside_office_hours_moves_nothing_and_holidays_do_not_count() {
    let calendar = Calendar::vietnam();
    let due = local(2025, 3, 12, 16, 30);
    // Friday 17:30 to Monday 7:00: no working time.
    let d = paused_dossier(due, local(2025, 3, 7, 17, 30));
    let moved = due_of(
        decide_with(
            "HS",
            Some(&d),
            &Command::ProvideSupplement { due_at: None },
            local(2025, 3, 10, 7, 0),
            &Terms::statutory(),
        )
        .expect("ok"),
    );
    assert_eq!(moved, due);
    // Across the holidays 30/4 and 1/5 2025 (Wednesday, Thursday): Tuesday
    // 29/4 9:00–17:00 is 6 h. Friday 2/5 was a day off too, swapped with
    // Saturday 26/4 by the government's decision the calendar ships
    // (Thông báo 6150/TB-BLĐTBXH); by statute alone it was a working day
    // and 7:00–9:00 counted 2 h more.
    let span = (
        local(2025, 4, 29, 9, 0).micros(),
        local(2025, 5, 2, 9, 0).micros(),
    );
    assert_eq!(
        calendar.working_time_between(span.0, span.1),
        6 * 3_600_000_000
    );
    let statute = Calendar::rules_only(Default::default(), &Default::default()).expect("rules");
    assert_eq!(
        statute.working_time_between(span.0, span.1),
        8 * 3_600_000_000
    );
}
