//! The desk's commands against the real services: refusals append nothing,
//! retries are idempotent, and every indicator counts by its own local date.

use std::time::Duration;

use domain::{LocalDay, Timestamp};
use proto::{events::v1 as ev, intake::v1 as pb};
use tests::{Backend, Desk, Pair, eventually, meta, procedure, ts};
use tonic::Code;

fn day(y: i32, m: u8, d: u8) -> LocalDay {
    LocalDay::from_ymd(y, m, d).expect("a real date")
}

fn at(y: i32, m: u8, d: u8, h: u8) -> Timestamp {
    Timestamp::at_local(day(y, m, d), h, 0)
}

fn code_of(reply: tests::Reply) -> Code {
    match reply {
        Ok(r) => panic!("expected a refusal, got {r:?}"),
        Err(status) => {
            assert!(!status.message().is_empty(), "a refusal explains itself");
            status.code()
        }
    }
}

async fn refusals_append_nothing(backend: Backend) -> anyhow::Result<()> {
    let pair = Pair::start(backend).await?;
    let desk = pair.desk().await?;
    let store = &pair.intake_store;
    let t0 = at(2021, 3, 1, 8);
    let due = at(2021, 3, 10, 17);

    desk.receive("A", "TP", t0, due).await?;
    desk.record_result("A", at(2021, 3, 2, 9)).await?;
    desk.return_result("A", at(2021, 3, 2, 10)).await?;
    desk.receive("W", "TP", t0, due).await?;
    desk.withdraw("W", at(2021, 3, 2, 9)).await?;
    desk.receive("R", "TP", t0, due).await?;
    desk.reschedule("R", at(2021, 3, 2, 9), at(2021, 3, 12, 17))
        .await?;
    desk.receive("P", "TP", t0, due).await?;
    desk.request_supplement("P", at(2021, 3, 2, 9)).await?;
    // Desk events only: the deadline monitor may mark these 2021 dossiers
    // late at any moment (that is not the desk appending).
    let before = store.count_desk_events().await?;
    assert_eq!(before, 9);

    let bad_receive = |f: &dyn Fn(&mut pb::ReceiveDossierRequest)| {
        let mut r = pb::ReceiveDossierRequest {
            meta: meta(t0),
            dossier_id: "NEW".into(),
            office_code: "TP".into(),
            province_code: "BTH".into(),
            procedure: procedure(),
            channel: ev::Channel::InPerson.into(),
            due_at: ts(due),
            due_on: None,
        };
        f(&mut r);
        r
    };
    let cases: Vec<(&str, tests::Reply, Code)> = vec![
        (
            "result of a dossier never received",
            desk.record_result("NOPE", t0).await,
            Code::NotFound,
        ),
        (
            "return before a result",
            desk.return_result("R", at(2021, 3, 3, 9)).await,
            Code::FailedPrecondition,
        ),
        (
            "return twice",
            desk.return_result("A", at(2021, 3, 3, 9)).await,
            Code::FailedPrecondition,
        ),
        (
            "result twice",
            desk.record_result("A", at(2021, 3, 3, 9)).await,
            Code::FailedPrecondition,
        ),
        (
            "receive twice",
            desk.receive("A", "TP", at(2021, 3, 3, 9), at(2021, 3, 20, 9))
                .await,
            Code::FailedPrecondition,
        ),
        (
            "anything after withdrawal",
            desk.record_result("W", at(2021, 3, 3, 9)).await,
            Code::FailedPrecondition,
        ),
        (
            "stop after withdrawal",
            desk.stop("W", at(2021, 3, 3, 9)).await,
            Code::FailedPrecondition,
        ),
        (
            "reschedule twice",
            desk.reschedule("R", at(2021, 3, 3, 9), at(2021, 3, 20, 17))
                .await,
            Code::FailedPrecondition,
        ),
        (
            "result while paused",
            desk.record_result("P", at(2021, 3, 3, 9)).await,
            Code::FailedPrecondition,
        ),
        (
            "supplement twice",
            desk.request_supplement("P", at(2021, 3, 3, 9)).await,
            Code::FailedPrecondition,
        ),
        (
            "refuse a received dossier",
            desk.refuse("A", at(2021, 3, 3, 9), "x").await,
            Code::FailedPrecondition,
        ),
        (
            "survey of an unknown dossier",
            desk.record_survey("NOPE", t0, ev::RatingScale::Quality, ev::Rating::Top)
                .await,
            Code::NotFound,
        ),
        (
            "result dated before receipt",
            desk.record_result("R", at(2021, 2, 1, 9)).await,
            Code::InvalidArgument,
        ),
        (
            "missing meta",
            desk.receive_with(bad_receive(&|r| r.meta = None)).await,
            Code::InvalidArgument,
        ),
        (
            "empty request id",
            desk.receive_with(bad_receive(&|r| {
                r.meta.iter_mut().for_each(|m| m.request_id.clear())
            }))
            .await,
            Code::InvalidArgument,
        ),
        (
            "office code with a space",
            desk.receive_with(bad_receive(&|r| r.office_code = "TUY PHONG".into()))
                .await,
            Code::InvalidArgument,
        ),
        (
            "unspecified channel",
            desk.receive_with(bad_receive(&|r| r.channel = 0)).await,
            Code::InvalidArgument,
        ),
        (
            "unknown channel number",
            desk.receive_with(bad_receive(&|r| r.channel = 99)).await,
            Code::InvalidArgument,
        ),
        (
            // Without a due date it comes from the catalog, which does not
            // know this procedure (tests/tests/catalog.rs has the rest).
            "missing due date and procedure not in the catalog",
            desk.receive_with(bad_receive(&|r| r.due_at = None)).await,
            Code::FailedPrecondition,
        ),
        (
            "due before receipt",
            desk.receive_with(bad_receive(&|r| r.due_at = ts(at(2021, 2, 1, 8))))
                .await,
            Code::InvalidArgument,
        ),
        (
            "missing procedure",
            desk.receive_with(bad_receive(&|r| r.procedure = None))
                .await,
            Code::InvalidArgument,
        ),
        (
            "empty dossier id",
            desk.receive_with(bad_receive(&|r| r.dossier_id.clear()))
                .await,
            Code::InvalidArgument,
        ),
        (
            "occurred in the far future",
            desk.receive_with(bad_receive(&|r| {
                r.meta
                    .iter_mut()
                    .for_each(|m| m.occurred_at = ts(at(2999, 1, 1, 8)))
            }))
            .await,
            Code::InvalidArgument,
        ),
        (
            "bad timestamp nanos",
            desk.receive_with(bad_receive(&|r| {
                r.due_at = Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -5,
                })
            }))
            .await,
            Code::InvalidArgument,
        ),
        (
            "unspecified rating",
            desk.record_survey(
                "A",
                at(2021, 3, 3, 9),
                ev::RatingScale::Quality,
                ev::Rating::Unspecified,
            )
            .await,
            Code::InvalidArgument,
        ),
        (
            "refusal without a reason",
            desk.refuse("A", at(2021, 3, 3, 9), "").await,
            Code::InvalidArgument,
        ),
    ];
    for (name, reply, expected) in cases {
        assert_eq!(code_of(reply), expected, "{name}");
        assert_eq!(
            store.count_desk_events().await?,
            before,
            "{name} appended nothing"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_append_nothing_on_sqlite() -> anyhow::Result<()> {
    refusals_append_nothing(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_append_nothing_on_postgres() -> anyhow::Result<()> {
    refusals_append_nothing(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_request_id_returns_the_first_reply() -> anyhow::Result<()> {
    let pair = Pair::start(Backend::Sqlite).await?;
    let desk = pair.desk().await?;
    let request = pb::ReceiveDossierRequest {
        meta: meta(at(2021, 5, 4, 8)),
        dossier_id: "RETRY-1".into(),
        office_code: "TP".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: ev::Channel::Postal.into(),
        due_at: ts(at(2021, 5, 14, 17)),
        due_on: None,
    };
    let first = desk.receive_with(request.clone()).await?;
    let again = desk.receive_with(request.clone()).await?;
    assert_eq!(first, again);
    // Concurrent duplicates, in the same group commit or not, append once.
    let result = pb::RecordResultRequest {
        meta: meta(at(2021, 5, 5, 8)),
        dossier_id: "RETRY-1".into(),
    };
    let replies =
        futures::future::join_all((0..8).map(|_| desk.record_result_with(result.clone()))).await;
    let replies: Vec<_> = replies.into_iter().collect::<Result<_, _>>()?;
    assert!(replies.windows(2).all(|w| w[0] == w[1]), "{replies:?}");
    // Version 2, or 3 when the deadline monitor marked it late first.
    assert!(matches!(replies[0].version, 2 | 3), "{replies:?}");
    assert_eq!(pair.intake_store.count_desk_events().await?, 2);
    Ok(())
}

/// A request id answers one command: a retry (the same request again) gets
/// the first reply, before and after a restart; another command under the
/// id, whether another dossier or another RPC on the same dossier, is
/// refused with INVALID_ARGUMENT on `meta.request_id` and appends nothing.
async fn a_request_id_answers_one_command(backend: Backend) -> anyhow::Result<()> {
    use tonic_types::StatusExt as _;
    let mut pair = Pair::start(backend).await?;
    let desk = pair.desk().await?;
    let receive = pb::ReceiveDossierRequest {
        meta: meta(at(2021, 5, 4, 8)),
        dossier_id: "RID-1".into(),
        office_code: "TP".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: ev::Channel::Postal.into(),
        due_at: ts(at(2021, 5, 14, 17)),
        due_on: None,
    };
    let first = desk.receive_with(receive.clone()).await?;
    assert_eq!(desk.receive_with(receive.clone()).await?, first);
    let request_id = receive.meta.as_ref().map(|m| m.request_id.clone());
    let request_id = request_id.unwrap_or_default();

    let assert_reused = |reply: tests::Reply| {
        let status = match reply {
            Ok(r) => panic!("a reused request id must be refused, got {r:?}"),
            Err(status) => status,
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("{request_id} was first used for another command")),
            "{status:?}"
        );
        let details = status.get_error_details();
        let bad = details.bad_request().expect("a BadRequest");
        assert_eq!(bad.field_violations[0].field, "meta.request_id");
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "REQUEST_ID_REUSED");
        assert_eq!(info.metadata.get("requestId"), Some(&request_id));
    };
    let another_dossier = pb::ReceiveDossierRequest {
        dossier_id: "RID-2".into(),
        ..receive.clone()
    };
    assert_reused(desk.receive_with(another_dossier.clone()).await);
    // Another RPC for the same dossier under the id.
    let result = pb::RecordResultRequest {
        meta: receive.meta.clone(),
        dossier_id: "RID-1".into(),
    };
    assert_reused(desk.record_result_with(result).await);
    assert_eq!(pair.intake_store.count_desk_events().await?, 1);

    // After a restart, from the store alone.
    let (restarted, store) =
        tests::start_intake(&pair.intake_db.url, &pair.nats.url(), &pair.stream).await?;
    std::mem::replace(&mut pair.intake, restarted)
        .shutdown()
        .await?;
    let desk = pair.desk().await?;
    assert_eq!(desk.receive_with(receive).await?, first);
    assert_reused(desk.receive_with(another_dossier).await);
    assert_eq!(store.count_desk_events().await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_answers_one_command_on_sqlite() -> anyhow::Result<()> {
    a_request_id_answers_one_command(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_answers_one_command_on_postgres() -> anyhow::Result<()> {
    a_request_id_answers_one_command(Backend::Postgres).await
}

/// What a client reads from a refusal without parsing its message: the
/// code, the `google.rpc` details, and an `ErrorInfo` of domain "motcua".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_google_rpc_details() -> anyhow::Result<()> {
    use tonic_types::StatusExt as _;
    let pair = Pair::start(Backend::Sqlite).await?;
    let desk = pair.desk().await?;
    let t0 = at(2021, 3, 1, 8);
    desk.receive("A", "TP", t0, at(2021, 3, 10, 17)).await?;
    let refused = |reply: tests::Reply| match reply {
        Ok(r) => panic!("expected a refusal, got {r:?}"),
        Err(status) => status,
    };
    let reason_of = |status: &tonic::Status| {
        let details = status.get_error_details();
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(info.domain, "motcua");
        (info.reason.clone(), info.metadata.clone())
    };

    // A dossier never received: NOT_FOUND, naming it.
    let status = refused(desk.record_result("NOPE", t0).await);
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let resource = status.get_error_details().resource_info().cloned();
    let resource = resource.expect("a ResourceInfo");
    assert_eq!(
        (
            resource.resource_type.as_str(),
            resource.resource_name.as_str()
        ),
        ("dossier", "NOPE")
    );
    let (reason, metadata) = reason_of(&status);
    assert_eq!(reason, "DOSSIER_NOT_FOUND");
    assert_eq!(metadata.get("dossierId").map(String::as_str), Some("NOPE"));

    // A known dossier in the wrong state: FAILED_PRECONDITION on its status.
    let status = refused(desk.return_result("A", at(2021, 3, 2, 9)).await);
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let failure = status.get_error_details().precondition_failure().cloned();
    let violation = failure.expect("a PreconditionFailure").violations[0].clone();
    assert_eq!(
        (violation.r#type.as_str(), violation.subject.as_str()),
        ("DOSSIER_STATUS", "A")
    );
    assert!(
        violation.description.contains("record the result first"),
        "{violation:?}"
    );
    assert_eq!(reason_of(&status).0, "INVALID_TRANSITION");

    // A receipt whose due date the catalog cannot give: the procedure.
    let mut no_due = pb::ReceiveDossierRequest {
        meta: meta(t0),
        dossier_id: "B".into(),
        office_code: "TP".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: ev::Channel::InPerson.into(),
        due_at: None,
        due_on: None,
    };
    let status = refused(desk.receive_with(no_due.clone()).await);
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let failure = status.get_error_details().precondition_failure().cloned();
    let violation = failure.expect("a PreconditionFailure").violations[0].clone();
    assert_eq!(
        (violation.r#type.as_str(), violation.subject.as_str()),
        ("CATALOG", "procedure/1.004227")
    );
    assert_eq!(reason_of(&status).0, "CATALOG_PRECONDITION");

    // A bad field, by its path in the request, from the gRPC layer and from
    // the domain alike.
    no_due.office_code = "TUY PHONG".into();
    let status = refused(desk.receive_with(no_due).await);
    let result_before_receipt = refused(desk.record_result("A", at(2021, 2, 1, 9)).await);
    for (status, field) in [
        (status, "office_code"),
        (result_before_receipt, "meta.occurred_at"),
    ] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let bad = status.get_error_details().bad_request().cloned();
        let violation = bad.expect("a BadRequest").field_violations[0].clone();
        assert_eq!(violation.field, field);
        assert!(!violation.description.is_empty());
        let (reason, metadata) = reason_of(&status);
        assert_eq!(reason, "INVALID_FIELD");
        assert_eq!(metadata.get("field").map(String::as_str), Some(field));
    }
    assert_eq!(pair.intake_store.count_desk_events().await?, 1);
    Ok(())
}

async fn year_boundaries(backend: Backend) -> anyhow::Result<()> {
    let pair = Pair::start(backend).await?;
    let desk = pair.desk().await?;
    // Received 28/12/2019, resolved 3/1/2020 before its due date 6/1/2020.
    desk.receive("DEC", "TP", at(2019, 12, 28, 9), at(2020, 1, 6, 17))
        .await?;
    desk.record_result("DEC", at(2020, 1, 3, 10)).await?;
    // 2019-12-31 20:00 UTC is 1/1/2020 03:00 in Vietnam: a 2020 receipt.
    let new_year_utc_evening = Timestamp::from_unix_seconds(1_577_822_400);
    desk.receive("NYE", "TP", new_year_utc_evening, at(2020, 1, 10, 17))
        .await?;
    // A marker event so we know the projection has seen everything.
    desk.record_survey(
        "NYE",
        at(2020, 1, 2, 9),
        ev::RatingScale::Quality,
        ev::Rating::Top,
    )
    .await?;
    let province = pair.province().await?;
    let y2020 = eventually(Duration::from_secs(30), || async {
        let s = province
            .surveys("TP", day(2020, 1, 1), day(2020, 12, 31))
            .await?;
        anyhow::ensure!(s.surveys == 1, "not caught up");
        province
            .statistics("TP", day(2020, 1, 1), day(2020, 12, 31))
            .await
    })
    .await?;
    let y2019 = province
        .statistics("TP", day(2019, 1, 1), day(2019, 12, 31))
        .await?;

    assert_eq!(
        (
            y2019.received,
            y2019.resolved,
            y2019.pending,
            y2019.carried_over
        ),
        (1, 0, 1, 0)
    );
    assert_eq!(y2019.pending_not_yet_due, 1);
    assert_eq!(
        (y2020.received, y2020.carried_over, y2020.resolved),
        (1, 1, 1)
    );
    assert_eq!(
        (
            y2020.resolved_early,
            y2020.resolved_on_due_date,
            y2020.resolved_late
        ),
        (1, 0, 0)
    );
    assert_eq!(y2020.in_time_over_resolved, "1/1");
    // NYE is still open at the end of 2020, and overdue by then.
    assert_eq!((y2020.pending, y2020.pending_overdue), (1, 1));

    let series = province.yearly("TP").await?;
    let rows: Vec<(i32, u64, u64)> = series
        .rows
        .iter()
        .map(|r| (r.year, r.received, r.resolved))
        .collect();
    assert_eq!(rows, vec![(2019, 1, 0), (2020, 1, 1)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn year_boundaries_fall_in_local_time_on_sqlite() -> anyhow::Result<()> {
    year_boundaries(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn year_boundaries_fall_in_local_time_on_postgres() -> anyhow::Result<()> {
    year_boundaries(Backend::Postgres).await
}

/// Every indicator of a period on a small, hand-checked office.
async fn every_indicator_of_a_period(backend: Backend) -> anyhow::Result<()> {
    let pair = Pair::start(backend).await?;
    let desk: Desk = pair.desk().await?;
    let due = at(2021, 6, 15, 17);
    // Carried over from May: received 28/5, resolved late on 16/6.
    desk.receive("CARRY", "TP", at(2021, 5, 28, 8), due).await?;
    desk.record_result("CARRY", at(2021, 6, 16, 9)).await?;
    // June receipts.
    desk.receive("EARLY", "TP", at(2021, 6, 1, 8), due).await?;
    desk.record_result("EARLY", at(2021, 6, 10, 9)).await?;
    desk.return_result("EARLY", at(2021, 6, 11, 9)).await?;
    desk.record_survey(
        "EARLY",
        at(2021, 6, 11, 10),
        ev::RatingScale::Quality,
        ev::Rating::Top,
    )
    .await?;
    desk.receive("ONTIME", "TP", at(2021, 6, 2, 8), due).await?;
    desk.record_result("ONTIME", at(2021, 6, 15, 16)).await?;
    desk.record_survey(
        "ONTIME",
        at(2021, 6, 16, 10),
        ev::RatingScale::Quality,
        ev::Rating::Bottom,
    )
    .await?;
    desk.receive("PAUSED", "TP", at(2021, 6, 3, 8), due).await?;
    desk.request_supplement("PAUSED", at(2021, 6, 4, 8)).await?;
    desk.receive("OVERDUE", "TP", at(2021, 6, 3, 8), at(2021, 6, 20, 17))
        .await?;
    desk.receive("NOTDUE", "TP", at(2021, 6, 29, 8), at(2021, 7, 9, 17))
        .await?;
    desk.receive("GONE", "TP", at(2021, 6, 5, 8), due).await?;
    desk.withdraw("GONE", at(2021, 6, 6, 8)).await?;
    desk.receive("HALT", "TP", at(2021, 6, 5, 8), due).await?;
    desk.stop("HALT", at(2021, 6, 7, 8)).await?;
    desk.submit_online(pb::SubmitOnlineRequest {
        meta: meta(at(2021, 6, 8, 8)),
        dossier_id: "WEB".into(),
        office_code: "TP".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: ev::Channel::OnlineFull.into(),
    })
    .await?;
    desk.refuse("WEB", at(2021, 6, 9, 8), "sai thành phần hồ sơ")
        .await?;
    desk.submit_online(pb::SubmitOnlineRequest {
        meta: meta(at(2021, 6, 8, 8)),
        dossier_id: "WEB2".into(),
        office_code: "TP".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: ev::Channel::OnlinePartial.into(),
    })
    .await?;
    desk.receive_with(pb::ReceiveDossierRequest {
        meta: meta(at(2021, 6, 9, 8)),
        dossier_id: "WEB2".into(),
        office_code: "TP".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: ev::Channel::OnlinePartial.into(),
        due_at: ts(at(2021, 6, 25, 17)),
        due_on: None,
    })
    .await?;
    // Another office in the same province.
    desk.receive("OTHER", "LA-GI", at(2021, 6, 1, 8), due)
        .await?;
    assert_eq!(pair.intake_store.count_desk_events().await?, 22);

    let province = pair.province().await?;
    let s = eventually(Duration::from_secs(30), || async {
        let s = province
            .statistics("TP", day(2021, 6, 1), day(2021, 6, 30))
            .await?;
        // WEB2's receipt is the office's last event, and events apply in order.
        anyhow::ensure!(s.received == 8, "not caught up: {s:?}");
        Ok(s)
    })
    .await?;
    assert_eq!(s.carried_over, 1);
    // WEB was refused at intake, never received.
    assert_eq!(s.received, 8);
    let by_channel: Vec<(i32, u64)> = s
        .received_by_channel
        .iter()
        .map(|c| (c.channel, c.count))
        .collect();
    assert_eq!(
        by_channel,
        vec![
            (ev::Channel::InPerson as i32, 7),
            (ev::Channel::OnlinePartial as i32, 1)
        ]
    );
    assert_eq!(
        (s.resolved_early, s.resolved_on_due_date, s.resolved_late),
        (1, 1, 1)
    );
    assert!(
        s.in_time_rate
            .is_some_and(|r| (r - 2.0 / 3.0).abs() < 1e-12)
    );
    assert_eq!(s.resolved_in_time, 2);
    assert_eq!(s.in_time_over_resolved, "2/3");
    assert_eq!(
        (s.returned, s.withdrawn, s.refused, s.stopped),
        (1, 1, 1, 1)
    );
    // Open on 30/6: PAUSED (due 15/6), OVERDUE (due 20/6), WEB2 (due 25/6)
    // are overdue; NOTDUE (due 9/7) is not.
    assert_eq!(s.pending, 4);
    assert_eq!((s.pending_overdue, s.pending_not_yet_due), (3, 1));
    assert_eq!(s.pending_paused, 1);

    let surveys = province
        .surveys("TP", day(2021, 6, 1), day(2021, 6, 30))
        .await?;
    assert_eq!((surveys.surveys, surveys.dossiers_received), (2, 8));
    assert!(
        surveys
            .coverage
            .is_some_and(|c| (c - 2.0 / 8.0).abs() < 1e-12)
    );
    let quality = &surveys.scales[0];
    assert_eq!(quality.scale, ev::RatingScale::Quality as i32);
    let ratings: Vec<u64> = quality.ratings.iter().map(|r| r.count).collect();
    assert_eq!(ratings, vec![1, 0, 1]);

    // A province sees both offices (OTHER's receipt is the last event).
    eventually(Duration::from_secs(30), || async {
        let whole = province_statistics(&province, "BTH").await?;
        anyhow::ensure!(whole.received == 9, "province received {}", whole.received);
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_indicator_of_a_period_on_sqlite() -> anyhow::Result<()> {
    every_indicator_of_a_period(Backend::Sqlite).await
}

/// PostgreSQL writes these batches through its own statement (arrays, not
/// JSON): dossier rows, pauses and counters. (The late feed's path on
/// PostgreSQL is covered by `deadlines`' watch tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_indicator_of_a_period_on_postgres() -> anyhow::Result<()> {
    every_indicator_of_a_period(Backend::Postgres).await
}

async fn province_statistics(
    province: &tests::Province,
    code: &str,
) -> anyhow::Result<proto::reports::v1::Statistics> {
    province
        .statistics_for(
            proto::reports::v1::Scope {
                unit: Some(proto::reports::v1::scope::Unit::ProvinceCode(code.into())),
                ..Default::default()
            },
            day(2021, 6, 1),
            day(2021, 6, 30),
        )
        .await
}
