//! A due date as a local date (`due_on`, issue 20): ReceiveDossier,
//! ProvideSupplement and Reschedule take it as 17:00 local of that day;
//! `due_at` and `due_on` together are refused.

use domain::{LocalDay, Timestamp};
use proto::{events::v1 as ev, intake::v1 as pb};
use tests::{Backend, Pair, meta, procedure, ts};
use tonic::Code;

fn day(y: i32, m: u8, d: u8) -> LocalDay {
    LocalDay::from_ymd(y, m, d).expect("a real date")
}

fn at(y: i32, m: u8, d: u8, h: u8) -> Timestamp {
    Timestamp::at_local(day(y, m, d), h, 0)
}

fn on(y: i32, m: i32, d: i32) -> Option<pb::LocalDate> {
    Some(pb::LocalDate {
        year: y,
        month: m,
        day: d,
    })
}

fn receive(dossier: &str, due_on: Option<pb::LocalDate>) -> pb::ReceiveDossierRequest {
    pb::ReceiveDossierRequest {
        meta: meta(at(2021, 3, 1, 8)),
        dossier_id: dossier.into(),
        office_code: "TP".into(),
        province_code: "BTH".into(),
        procedure: procedure(),
        channel: ev::Channel::InPerson.into(),
        due_at: None,
        due_on,
    }
}

fn due_at(reply: &pb::CommandReply) -> Option<Timestamp> {
    reply.due_at.as_ref().and_then(bus::timestamp_from_proto)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_date_as_a_local_date_is_the_end_of_office_hours() -> anyhow::Result<()> {
    let pair = Pair::start(Backend::Sqlite).await?;
    let desk = pair.desk().await?;

    // Receipt: due 10/3/2021, 17:00 local.
    let reply = desk.receive_with(receive("A", on(2021, 3, 10))).await?;
    assert_eq!(due_at(&reply), Some(at(2021, 3, 10, 17)));

    // Both, or a day that does not exist: refused, nothing appended.
    let both = pb::ReceiveDossierRequest {
        due_at: ts(at(2021, 3, 10, 17)),
        ..receive("B", on(2021, 3, 10))
    };
    let status = desk.receive_with(both).await.expect_err("both set");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("due_on: and due_at are both set"),
        "{status:?}"
    );
    let status = desk
        .receive_with(receive("B", on(2021, 2, 30)))
        .await
        .expect_err("no 30 February");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("2021-2-30 is not a date"),
        "{status:?}"
    );

    // A supplement provided with a new due date as a date.
    desk.request_supplement("A", at(2021, 3, 2, 8)).await?;
    let reply = desk
        .client()
        .provide_supplement(pb::ProvideSupplementRequest {
            meta: meta(at(2021, 3, 4, 8)),
            dossier_id: "A".into(),
            due_at: None,
            due_on: on(2021, 3, 15),
        })
        .await?
        .into_inner();
    assert_eq!(due_at(&reply), Some(at(2021, 3, 15, 17)));

    // Reschedule: exactly one of the two.
    let reschedule = |due_at, due_on| pb::RescheduleRequest {
        meta: meta(at(2021, 3, 5, 8)),
        dossier_id: "A".into(),
        due_at,
        due_on,
        reason: "hẹn lại".into(),
    };
    let status = desk
        .client()
        .reschedule(reschedule(None, None))
        .await
        .expect_err("no new due date");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("due_on is required"),
        "{status:?}"
    );
    let status = desk
        .client()
        .reschedule(reschedule(ts(at(2021, 3, 20, 17)), on(2021, 3, 20)))
        .await
        .expect_err("both set");
    assert_eq!(status.code(), Code::InvalidArgument);
    let reply = desk
        .client()
        .reschedule(reschedule(None, on(2021, 3, 20)))
        .await?
        .into_inner();
    assert_eq!(due_at(&reply), Some(at(2021, 3, 20, 17)));
    Ok(())
}
