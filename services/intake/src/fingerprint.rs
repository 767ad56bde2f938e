//! Fingerprints of commands, stored with each reply beside its request id:
//! a retry must carry the command its request id was first used for, and a
//! different command under a used id is a client bug, refused (see
//! `IntakeError::RequestIdReused`), not answered with another dossier's
//! reply.
//!
//! The hash is FNV-1a, 64 bits: stable across builds and platforms (unlike
//! std's hasher), which a stored value needs. It guards against mistakes,
//! not adversaries: a client can only confuse its own request ids.

/// FNV-1a, 64 bits, of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(0xcbf2_9ce4_8422_2325, bytes)
}

fn fnv1a_from(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A desk request's fingerprint: the RPC's name and the whole request as
/// encoded protobuf, meta included (request id, actor, occurred_at). Every
/// field matters to what is appended, and RecordResult and ReturnResult
/// encode alike, hence the name. A client's true retry sends the same
/// request again, so it gets the same fingerprint.
pub fn of_request(rpc: &str, request: &impl prost::Message) -> u64 {
    let hash = fnv1a_from(fnv1a(rpc.as_bytes()), &[0]);
    fnv1a_from(hash, &request.encode_to_vec())
}

/// `fingerprint` of a request made by the verified `subject`: the same
/// request from another identity is another command.
pub fn with_subject(fingerprint: u64, subject: &str) -> u64 {
    fnv1a_from(fnv1a_from(fingerprint, &[0]), subject.as_bytes())
}

/// The fingerprint of a command whose request id names its content (an
/// import row's `import:<dossier>:<hash of the row>`, the deadline
/// monitor's `late:<dossier>:<due>`): the id's own hash, which a desk
/// request reusing such an id does not match.
pub fn of_named(request_id: &str) -> u64 {
    fnv1a(request_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::intake::v1 as pb;

    #[test]
    fn the_hash_is_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_request_differs_by_rpc_and_by_any_field() {
        let meta = |actor: &str| {
            Some(pb::CommandMeta {
                request_id: "r-1".into(),
                actor: actor.into(),
                occurred_at: None,
            })
        };
        let result = pb::RecordResultRequest {
            meta: meta("clerk"),
            dossier_id: "A".into(),
        };
        let returned = pb::ReturnResultRequest {
            meta: meta("clerk"),
            dossier_id: "A".into(),
        };
        let once = of_request("RecordResult", &result);
        assert_eq!(once, of_request("RecordResult", &result.clone()));
        assert_ne!(once, of_request("ReturnResult", &returned));
        let other_dossier = pb::RecordResultRequest {
            dossier_id: "B".into(),
            ..result.clone()
        };
        assert_ne!(once, of_request("RecordResult", &other_dossier));
        let other_actor = pb::RecordResultRequest {
            meta: meta("another clerk"),
            ..result
        };
        assert_ne!(once, of_request("RecordResult", &other_actor));
    }
}
