//! `domain::Event` ⇄ `motcua.events.v1.Event` bytes.

use domain::{
    Channel, Event, Payload, Procedure, ProcedureChange, Rating, RatingScale, Timeliness, Timestamp,
};
use prost::Message as _;
use proto::events::v1 as pb;

use crate::procedure_codec::definition_from;

/// Why stored or published bytes are not an event we can apply.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a motcua.events.v1.Event: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("event has no payload, or one this version does not know")]
    UnknownPayload,
    #[error("field {0} is missing or out of range")]
    BadField(&'static str),
}

pub fn timestamp_to_proto(t: Timestamp) -> prost_types::Timestamp {
    let micros = t.micros();
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        // In 0..1_000_000_000, so the cast cannot truncate.
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub fn timestamp_from_proto(t: &prost_types::Timestamp) -> Option<Timestamp> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    let micros = t
        .seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(t.nanos / 1000))?;
    Some(Timestamp::from_micros(micros))
}

fn ts(t: Option<&prost_types::Timestamp>, field: &'static str) -> Result<Timestamp, DecodeError> {
    t.and_then(timestamp_from_proto)
        .ok_or(DecodeError::BadField(field))
}

fn channel_to(c: Channel) -> pb::Channel {
    match c {
        Channel::InPerson => pb::Channel::InPerson,
        Channel::Postal => pb::Channel::Postal,
        Channel::OnlinePartial => pb::Channel::OnlinePartial,
        Channel::OnlineFull => pb::Channel::OnlineFull,
        Channel::InterAgency => pb::Channel::InterAgency,
    }
}

fn channel_from(c: i32) -> Result<Channel, DecodeError> {
    Channel::from_code(c).ok_or(DecodeError::BadField("channel"))
}

fn procedure_to(p: &Procedure) -> Option<pb::Procedure> {
    Some(pb::Procedure {
        code: p.code.clone(),
        field: p.field.clone(),
    })
}

fn procedure_from(p: Option<&pb::Procedure>) -> Procedure {
    p.map(|p| Procedure {
        code: p.code.clone(),
        field: p.field.clone(),
    })
    .unwrap_or_default()
}

/// Encodes an event as `motcua.events.v1.Event` bytes.
pub fn encode_event(e: &Event) -> Vec<u8> {
    use pb::event::Payload as P;
    let payload = match &e.payload {
        Payload::Submitted { procedure, channel } => P::Submitted(pb::Submitted {
            procedure: procedure_to(procedure),
            channel: channel_to(*channel).into(),
        }),
        Payload::Received {
            procedure,
            channel,
            due_at,
        } => P::Received(pb::Received {
            procedure: procedure_to(procedure),
            channel: channel_to(*channel).into(),
            due_at: Some(timestamp_to_proto(*due_at)),
        }),
        Payload::RefusedAtIntake { reason } => P::RefusedAtIntake(pb::RefusedAtIntake {
            reason: reason.clone(),
        }),
        Payload::SupplementRequested { reason } => {
            P::SupplementRequested(pb::SupplementRequested {
                reason: reason.clone(),
            })
        }
        Payload::SupplementProvided { due_at } => P::SupplementProvided(pb::SupplementProvided {
            due_at: Some(timestamp_to_proto(*due_at)),
        }),
        Payload::Rescheduled { due_at, reason } => P::Rescheduled(pb::Rescheduled {
            due_at: Some(timestamp_to_proto(*due_at)),
            reason: reason.clone(),
        }),
        Payload::Processed { timeliness, due_at } => P::Processed(pb::Processed {
            timeliness: timeliness.code(),
            due_at: Some(timestamp_to_proto(*due_at)),
        }),
        Payload::Returned => P::Returned(pb::Returned {}),
        Payload::Withdrawn { reason } => P::Withdrawn(pb::Withdrawn {
            reason: reason.clone(),
        }),
        Payload::Stopped { reason } => P::Stopped(pb::Stopped {
            reason: reason.clone(),
        }),
        Payload::Late { due_at } => P::Late(pb::Late {
            due_at: Some(timestamp_to_proto(*due_at)),
        }),
        Payload::SurveyRecorded {
            scale,
            rating,
            comment,
        } => P::SurveyRecorded(pb::SurveyRecorded {
            scale: scale.code(),
            rating: rating.code(),
            comment: comment.clone(),
        }),
        Payload::Procedure(change) => crate::procedure_codec::change_to_proto(change),
    };
    pb::Event {
        event_id: e.event_id.clone(),
        dossier_id: e.dossier_id.clone(),
        office_code: e.office_code.clone(),
        province_code: e.province_code.clone(),
        version: e.version,
        occurred_at: Some(timestamp_to_proto(e.occurred_at)),
        recorded_at: Some(timestamp_to_proto(e.recorded_at)),
        actor: e.actor.clone(),
        request_id: e.request_id.clone(),
        payload: Some(payload),
    }
    .encode_to_vec()
}

/// Decodes `motcua.events.v1.Event` bytes into a domain event.
pub fn decode_event(bytes: &[u8]) -> Result<Event, DecodeError> {
    use pb::event::Payload as P;
    let e = pb::Event::decode(bytes)?;
    let payload = match e.payload.as_ref().ok_or(DecodeError::UnknownPayload)? {
        P::Submitted(p) => Payload::Submitted {
            procedure: procedure_from(p.procedure.as_ref()),
            channel: channel_from(p.channel)?,
        },
        P::Received(p) => Payload::Received {
            procedure: procedure_from(p.procedure.as_ref()),
            channel: channel_from(p.channel)?,
            due_at: ts(p.due_at.as_ref(), "received.due_at")?,
        },
        P::RefusedAtIntake(p) => Payload::RefusedAtIntake {
            reason: p.reason.clone(),
        },
        P::SupplementRequested(p) => Payload::SupplementRequested {
            reason: p.reason.clone(),
        },
        P::SupplementProvided(p) => Payload::SupplementProvided {
            due_at: ts(p.due_at.as_ref(), "supplement_provided.due_at")?,
        },
        P::Rescheduled(p) => Payload::Rescheduled {
            due_at: ts(p.due_at.as_ref(), "rescheduled.due_at")?,
            reason: p.reason.clone(),
        },
        P::Processed(p) => Payload::Processed {
            timeliness: Timeliness::from_code(p.timeliness)
                .ok_or(DecodeError::BadField("processed.timeliness"))?,
            due_at: ts(p.due_at.as_ref(), "processed.due_at")?,
        },
        P::Returned(_) => Payload::Returned,
        P::Withdrawn(p) => Payload::Withdrawn {
            reason: p.reason.clone(),
        },
        P::Stopped(p) => Payload::Stopped {
            reason: p.reason.clone(),
        },
        P::Late(p) => Payload::Late {
            due_at: ts(p.due_at.as_ref(), "late.due_at")?,
        },
        P::SurveyRecorded(p) => Payload::SurveyRecorded {
            scale: RatingScale::from_code(p.scale)
                .ok_or(DecodeError::BadField("survey_recorded.scale"))?,
            rating: Rating::from_code(p.rating)
                .ok_or(DecodeError::BadField("survey_recorded.rating"))?,
            comment: p.comment.clone(),
        },
        P::ProcedureRegistered(p) => Payload::Procedure(ProcedureChange::Registered(
            definition_from(p.definition.as_ref())?,
        )),
        P::ProcedureChanged(p) => Payload::Procedure(ProcedureChange::Changed(definition_from(
            p.definition.as_ref(),
        )?)),
        P::ProcedureWithdrawn(p) => Payload::Procedure(ProcedureChange::Withdrawn {
            reason: p.reason.clone(),
        }),
    };
    if e.dossier_id.is_empty() || e.version == 0 {
        return Err(DecodeError::BadField("dossier_id/version"));
    }
    Ok(Event {
        occurred_at: ts(e.occurred_at.as_ref(), "occurred_at")?,
        recorded_at: ts(e.recorded_at.as_ref(), "recorded_at")?,
        event_id: e.event_id,
        dossier_id: e.dossier_id,
        office_code: e.office_code,
        province_code: e.province_code,
        version: e.version,
        actor: e.actor,
        request_id: e.request_id,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: Payload) -> Event {
        Event {
            event_id: "01900000-0000-7000-8000-000000000001".into(),
            dossier_id: "HS-1".into(),
            office_code: "TP".into(),
            province_code: "BTH".into(),
            version: 3,
            occurred_at: Timestamp::from_micros(1_577_822_400_123_456),
            recorded_at: Timestamp::from_micros(-5),
            actor: "clerk".into(),
            request_id: "r-1".into(),
            payload,
        }
    }

    #[test]
    fn every_payload_round_trips() {
        let due = Timestamp::from_unix_seconds(1_600_000_000);
        let procedure = Procedure {
            code: "1.001".into(),
            field: "dat-dai".into(),
        };
        let payloads = [
            Payload::Submitted {
                procedure: procedure.clone(),
                channel: Channel::OnlineFull,
            },
            Payload::Received {
                procedure,
                channel: Channel::Postal,
                due_at: due,
            },
            Payload::RefusedAtIntake { reason: "x".into() },
            Payload::SupplementRequested { reason: "y".into() },
            Payload::SupplementProvided { due_at: due },
            Payload::Rescheduled {
                due_at: due,
                reason: "z".into(),
            },
            Payload::Processed {
                timeliness: Timeliness::Late,
                due_at: due,
            },
            Payload::Returned,
            Payload::Withdrawn { reason: "w".into() },
            Payload::Stopped { reason: "s".into() },
            Payload::Late { due_at: due },
            Payload::SurveyRecorded {
                scale: RatingScale::Quality,
                rating: Rating::Middle,
                comment: "ok".into(),
            },
            Payload::Procedure(ProcedureChange::Registered(definition(
                domain::procedure::ProcessingTime::WorkingDays(3),
                true,
            ))),
            Payload::Procedure(ProcedureChange::Changed(definition(
                domain::procedure::ProcessingTime::WorkingHours(4),
                false,
            ))),
            Payload::Procedure(ProcedureChange::Withdrawn {
                reason: "bãi bỏ".into(),
            }),
        ];
        for p in payloads {
            let e = event(p);
            assert_eq!(decode_event(&encode_event(&e)).unwrap(), e);
        }
    }

    fn definition(
        processing_time: domain::procedure::ProcessingTime,
        supplement_pauses: bool,
    ) -> domain::ProcedureDefinition {
        domain::ProcedureDefinition {
            code: "1.004227".into(),
            name: "Cấp giấy chứng nhận quyền sử dụng đất".into(),
            field: "dat-dai".into(),
            level: domain::Level::District,
            processing_time,
            online: domain::OnlineLevel::Partial,
            supplement_pauses,
        }
    }

    #[test]
    fn garbage_and_empty_payloads_are_errors() {
        assert!(matches!(
            decode_event(&[0xff, 0xff]),
            Err(DecodeError::Protobuf(_))
        ));
        let empty = pb::Event {
            dossier_id: "HS".into(),
            version: 1,
            ..Default::default()
        }
        .encode_to_vec();
        assert!(matches!(
            decode_event(&empty),
            Err(DecodeError::UnknownPayload)
        ));
    }

    #[test]
    fn negative_instants_keep_their_micros() {
        let t = Timestamp::from_micros(-1_500_001);
        assert_eq!(timestamp_from_proto(&timestamp_to_proto(t)), Some(t));
    }
}
